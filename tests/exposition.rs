//! The exposition engine against real and hand-written expositions, the
//! external parsers (promtool, Python's prometheus_client) and a naive
//! reference parser.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use common::naive::{self, NaiveSample};
use multiplexer::exposition::{Merger, Snapshot, Source};

const FIXTURES: &[&str] = &[
    "node_exporter.prom",
    "prometheus.prom",
    "python_client.prom",
    "python_client_openmetrics.txt",
    "edge_labels.prom",
    "edge_values.prom",
    "edge_crlf_no_final_newline.prom",
    "edge_openmetrics.txt",
    "edge_quoted_names.prom",
    "edge_container_label.prom",
];

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn snapshot(body: &[u8]) -> Snapshot {
    let mut snapshot = Snapshot::new();
    snapshot.replace(&mut body.to_vec());
    snapshot
}

fn merge(bodies: &[(&str, &[u8])]) -> (Vec<u8>, Vec<(usize, String)>) {
    let mut snapshots: Vec<Snapshot> = bodies.iter().map(|(_, body)| snapshot(body)).collect();
    for (snapshot, (name, _)) in snapshots.iter_mut().zip(bodies) {
        snapshot.index().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let sources: Vec<Source<'_>> = snapshots
        .iter()
        .zip(bodies)
        .map(|(snapshot, (name, _))| Source {
            container: Some(name),
            snapshot,
        })
        .collect();
    let mut merger = Merger::new("container");
    let mut out = Vec::new();
    merger.merge(&sources, &mut out);
    let conflicts = merger
        .conflicts()
        .map(|(i, name)| (i, String::from_utf8_lossy(name).into_owned()))
        .collect();
    (out, conflicts)
}

/// External tools are required under CI=true, skipped loudly otherwise.
fn tool_available(program: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{program} is required when CI=true");
        }
        eprintln!(
            "\n!!!!! SKIPPING: {program} not found; install it or the check is not run !!!!!\n"
        );
    }
    found
}

fn run_with_stdin(program: &str, args: &[&str], input: &[u8]) -> (i32, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

/// promtool exits 1 on a parse error, 3 on lint remarks only.
fn check_promtool(label: &str, out: &[u8]) {
    let (code, text) = run_with_stdin("promtool", &["check", "metrics"], out);
    assert!(
        code == 0 || (code == 3 && !text.contains("error while linting")),
        "{label}: promtool failed ({code}):\n{text}"
    );
}

const PYTHON_COUNT: &str = "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as f\nprint(sum(len(m.samples) for m in f(sys.stdin.read())))";

fn check_python(label: &str, out: &[u8], expected_samples: usize) {
    let (code, text) = run_with_stdin("python3", &["-c", PYTHON_COUNT], out);
    assert_eq!(code, 0, "{label}: python parser failed:\n{text}");
    assert_eq!(
        text.trim(),
        expected_samples.to_string(),
        "{label}: python sample count"
    );
}

/// What the output must hold for one input: its samples plus the container
/// label, an existing one renamed `exported_...` as Prometheus does.
fn expected_samples(body: &[u8], container: &str) -> Vec<NaiveSample> {
    let samples = naive::parse(std::str::from_utf8(body).expect("utf-8")).expect("naive parse");
    samples
        .into_iter()
        .map(|mut sample| {
            if let Some(existing) = sample.labels.remove("container") {
                let mut name = "exported_container".to_string();
                while sample.labels.contains_key(&name) {
                    name = format!("exported_{name}");
                }
                sample.labels.insert(name, existing);
            }
            sample.labels.insert("container".into(), container.into());
            sample
        })
        .collect()
}

fn counts(samples: &[NaiveSample]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for sample in samples {
        *counts.entry(sample.key()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn every_fixture_parses() {
    for name in FIXTURES {
        let body = fixture(name);
        let mut snapshot = snapshot(&body);
        snapshot.index().unwrap_or_else(|e| panic!("{name}: {e}"));
        let naive = naive::parse(std::str::from_utf8(&body).unwrap()).unwrap();
        assert_eq!(snapshot.sample_count(), naive.len(), "{name}");
    }
}

#[test]
#[allow(clippy::needless_range_loop)] // three nested indices read clearer
fn fixtures_merged_three_at_a_time_stay_valid_and_complete() {
    let promtool = tool_available("promtool");
    let python = tool_available("python3");
    let bodies: Vec<Vec<u8>> = FIXTURES.iter().map(|name| fixture(name)).collect();
    let mut combinations = 0;
    for a in 0..FIXTURES.len() {
        for b in a + 1..FIXTURES.len() {
            for c in b + 1..FIXTURES.len() {
                let picked = [a, b, c];
                let label = format!("{} + {} + {}", FIXTURES[a], FIXTURES[b], FIXTURES[c]);
                let inputs: Vec<(&str, &[u8])> = picked
                    .iter()
                    .map(|&i| (FIXTURES[i], bodies[i].as_slice()))
                    .collect();
                let (out, conflicts) = merge(&inputs);
                assert!(conflicts.is_empty(), "{label}: {conflicts:?}");
                let mut expected = Vec::new();
                for (name, body) in &inputs {
                    expected.extend(expected_samples(body, name));
                }
                let got = naive::parse(std::str::from_utf8(&out).expect("utf-8 output"))
                    .unwrap_or_else(|line| panic!("{label}: output line {line} does not parse"));
                assert_eq!(counts(&got), counts(&expected), "{label}");
                if promtool {
                    check_promtool(&label, &out);
                }
                if python {
                    check_python(&label, &out, got.len());
                }
                combinations += 1;
            }
        }
    }
    assert_eq!(combinations, 120);
}
