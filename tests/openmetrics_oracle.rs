//! The OpenMetrics oracle (`fuzz/oracle/openmetrics.rs`, shared with the
//! fuzz targets) proven against prometheus_client's strict OpenMetrics
//! parser over the corpus `tests/fixtures/openmetrics/`: real
//! prometheus_client and expfmt output, and one body per rule. A file named
//! `ok-*` is accepted by the oracle, `no-*` refused.
//!
//! Where Python refuses, the oracle must refuse too; where Python accepts,
//! the oracle may refuse only by a rule it says is Prometheus' (main's or
//! 2.42's), and those bodies are listed with the rule. A missing python3 or
//! prometheus_client is a loud skip, or a failure when `CI=true`.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::util::skip;

/// Would every OpenMetrics reader of a client take a body? Written from
/// their rules, not from the sidecar's parser.
#[path = "../fuzz/oracle/openmetrics.rs"]
mod oracle;

use oracle::{judge, Readers, Refusal, Source};

/// prometheus_client's strict parser over many bodies (JSON strings, `null`
/// for one that is not UTF-8) in one process: one line per body.
const PYTHON_BATCH: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse
for text in json.load(sys.stdin):
    if text is None:
        print("error: not UTF-8")
        continue
    try:
        samples = [s for family in parse(text) for s in family.samples]
        print("ok", len(samples), sum(1 for s in samples if s.exemplar is not None))
    except Exception as error:
        print("error: " + repr(error).replace("\n", " "))
"#;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = format!("{}/tests/fixtures/openmetrics", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|entry| {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("read fixture"))
        })
        .collect();
    files.sort();
    files
}

/// Python's verdicts, or `None` (after a loud skip) when it cannot run.
fn python_verdicts(bodies: &[&[u8]]) -> Option<Vec<Result<(usize, usize), String>>> {
    let probe = Command::new("python3")
        .args(["-c", "import prometheus_client.openmetrics.parser"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|status| status.success()) {
        skip(
            "openmetrics_oracle",
            "python3 with prometheus_client is not installed (.ci/run installs it)",
            false,
        );
        return None;
    }
    let texts: Vec<Option<&str>> = bodies
        .iter()
        .map(|body| std::str::from_utf8(body).ok())
        .collect();
    let mut child = Command::new("python3")
        .args(["-c", PYTHON_BATCH])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let input = serde_json::to_vec(&texts).expect("json");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&input)
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait python3");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let verdicts: Vec<_> = text
        .lines()
        .map(|line| match line.strip_prefix("ok ") {
            Some(counts) => {
                let (samples, exemplars) = counts.split_once(' ').expect("two counts");
                Ok((samples.parse().unwrap(), exemplars.parse().unwrap()))
            }
            None => Err(line.to_string()),
        })
        .collect();
    assert_eq!(verdicts.len(), bodies.len(), "python3 output:\n{text}");
    Some(verdicts)
}

#[test]
fn the_corpus_verdicts_follow_the_file_names() {
    let corpus = corpus();
    assert!(corpus.len() > 100, "{} bodies", corpus.len());
    for (name, body) in &corpus {
        let verdict = judge(body, Readers::Utf8);
        if name.starts_with("ok-") {
            assert!(verdict.is_ok(), "{name}: {verdict:?}");
        } else {
            assert!(name.starts_with("no-"), "{name}: ok- or no-");
            assert!(verdict.is_err(), "{name}: accepted {verdict:?}");
        }
    }
}

#[test]
fn the_oracle_agrees_with_prometheus_client_where_python_is_stricter() {
    let corpus = corpus();
    let bodies: Vec<&[u8]> = corpus.iter().map(|(_, body)| body.as_slice()).collect();
    let Some(python) = python_verdicts(&bodies) else {
        return;
    };
    let mut disagreements = Vec::new();
    let mut prometheus_only: Vec<(&str, Refusal)> = Vec::new();
    let (mut both_accept, mut both_refuse) = (0, 0);
    for ((name, body), python) in corpus.iter().zip(&python) {
        match (judge(body, Readers::Utf8), python) {
            (Ok(accepted), Ok((samples, exemplars))) => {
                both_accept += 1;
                if (accepted.samples, accepted.exemplars) != (*samples, *exemplars) {
                    disagreements.push(format!(
                        "{name}: oracle {accepted:?}, python {samples} samples {exemplars} exemplars"
                    ));
                }
            }
            (Ok(_), Err(error)) => disagreements.push(format!(
                "{name}: python refuses ({error}), the oracle accepts"
            )),
            (Err(refusal), Ok(_)) if refusal.source == Source::Python => disagreements.push(
                format!("{name}: the oracle refuses by a rule it says is python's: {refusal:?}"),
            ),
            (Err(refusal), Ok(_)) => prometheus_only.push((name, refusal)),
            (Err(_), Err(_)) => both_refuse += 1,
        }
    }
    let mut report = format!(
        "openmetrics oracle vs prometheus_client over {} bodies: {both_accept} both accept, \
         {both_refuse} both refuse, {} refused by Prometheus' rules alone:\n",
        corpus.len(),
        prometheus_only.len()
    );
    for (name, refusal) in &prometheus_only {
        report += &format!(
            "  {name}: line {}: {} ({:?})\n",
            refusal.line, refusal.rule, refusal.source
        );
    }
    let _ = writeln!(std::io::stderr(), "{report}");
    assert!(
        disagreements.is_empty(),
        "{}\n{report}",
        disagreements.join("\n")
    );
}

/// Prometheus 2.42 reads every accepted body of the corpus but those with
/// quoted names, which it refuses by its own rule.
#[test]
fn legacy_readers_refuse_quoted_names_only() {
    let corpus = corpus();
    let mut refused = Vec::new();
    for (name, body) in corpus.iter().filter(|(name, _)| name.starts_with("ok-")) {
        match judge(body, Readers::Legacy) {
            Ok(_) => {}
            Err(refusal) => {
                assert_eq!(refusal.source, Source::Prometheus242, "{name}: {refusal:?}");
                refused.push(name.as_str());
            }
        }
    }
    assert_eq!(
        refused,
        [
            "ok-python-client-app-allow-utf-8.txt",
            "ok-quoted-legacy-name-after-labels.txt",
            "ok-quoted-names.txt",
        ]
    );
}
