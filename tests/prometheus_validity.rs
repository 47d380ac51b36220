//! Whatever one container sends, the merged output stays valid for
//! Prometheus 2.42's scraper, promtool and Python's parser (issue 11, items 1
//! and 5). Judged by those programs and by an independent checker written
//! from Prometheus' own rules (`fuzz/oracle/prometheus_text.rs`, shared with
//! the fuzz targets), never by the sidecar's parser.

use std::io::Write;
use std::process::{Command, Stdio};

use multiplexer::exposition::{Merger, Snapshot, Source};

#[path = "../fuzz/oracle/prometheus_text.rs"]
mod oracle;

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

fn read(path: &str) -> Vec<u8> {
    let path = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A snapshot of `body`, indexed; Err is the parse error's message.
fn indexed(body: &[u8]) -> (Snapshot, Result<(), String>) {
    let mut snapshot = Snapshot::new();
    snapshot.replace(&mut body.to_vec());
    let result = snapshot.index().map_err(|error| error.to_string());
    (snapshot, result)
}

/// Merges bodies as the sidecar does: every snapshot is a source, a body
/// that failed to parse contributes nothing. Returns the output and the
/// conflicts as (source, family).
fn merge(inputs: &[(Option<&str>, &[u8])]) -> (Vec<u8>, Vec<(usize, String)>) {
    let snapshots: Vec<Snapshot> = inputs.iter().map(|(_, body)| indexed(body).0).collect();
    let sources: Vec<Source<'_>> = snapshots
        .iter()
        .zip(inputs)
        .map(|(snapshot, (container, _))| Source {
            container: *container,
            snapshot,
        })
        .collect();
    let mut merger = Merger::new("container");
    let mut out = Vec::new();
    merger.merge(&sources, &mut out);
    let conflicts = merger
        .conflicts()
        .map(|(source, name)| (source, String::from_utf8_lossy(name).into_owned()))
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
        eprintln!("\n!!!!! SKIPPING: {program} not found; the check is not run !!!!!\n");
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

/// promtool exits 0, or 3 with lint remarks only (upstream names are not
/// ours to fix); a parse error is "error while linting".
fn promtool_refusal(out: &[u8]) -> Option<String> {
    let (code, text) = run_with_stdin("promtool", &["check", "metrics"], out);
    let accepted = code == 0 || (code == 3 && !text.contains("error while linting"));
    (!accepted).then_some(format!("exit {code}: {text}"))
}

/// Python's parser over many outputs in one process: one line per output,
/// the sample count or the error.
const PYTHON_BATCH: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families as parse
for text in json.load(sys.stdin):
    try:
        print(sum(len(family.samples) for family in parse(text)))
    except Exception as error:
        print("error: " + repr(error).replace("\n", " "))
"#;

fn python_results(outputs: &[Vec<u8>]) -> Vec<String> {
    let texts: Vec<String> = outputs
        .iter()
        .map(|out| String::from_utf8(out.clone()).expect("outputs are UTF-8"))
        .collect();
    let input = serde_json::to_vec(&texts).expect("json");
    let (code, text) = run_with_stdin("python3", &["-c", PYTHON_BATCH], &input);
    assert_eq!(code, 0, "python3 failed:\n{text}");
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert_eq!(lines.len(), outputs.len(), "python3 output:\n{text}");
    lines
}

/// Every output is judged by the oracle, promtool and Python's parser; all
/// three must take it, with the same number of samples.
fn assert_all_accept(cases: &[(String, Vec<u8>)]) {
    let promtool = tool_available("promtool");
    let python = tool_available("python3");
    let outputs: Vec<Vec<u8>> = cases.iter().map(|(_, out)| out.clone()).collect();
    let python = if python {
        python_results(&outputs)
    } else {
        Vec::new()
    };
    for (i, (label, out)) in cases.iter().enumerate() {
        let text = String::from_utf8_lossy(out);
        let samples = match oracle::judge(out) {
            Ok(accepted) => accepted.samples,
            Err(refusal) => panic!("{label}: oracle refuses {refusal:?}:\n{text}"),
        };
        if promtool {
            if let Some(refusal) = promtool_refusal(out) {
                panic!("{label}: promtool refuses ({refusal}):\n{text}");
            }
        }
        if let Some(result) = python.get(i) {
            assert_eq!(*result, samples.to_string(), "{label}: python:\n{text}");
        }
    }
}

/// Bodies that parse as text but that Prometheus 2.42, promtool or Python's
/// parser would refuse in the merged output: each fails with a reason that
/// says why (issue 11, item 1). Before, every one of them was accepted.
#[test]
fn poison_bodies_are_refused_with_exact_messages() {
    const RANGE: &str =
        "expected a value within float64 range (Prometheus refuses the whole scrape otherwise)";
    const RESERVED: &str =
        "expected no label name starting with __ (Prometheus refuses __name__, Python's parser any)";
    const NEGATIVE: &str =
        "expected a timestamp not before 1970 (Prometheus' text parser refuses a negative one)";
    let huge_integer = format!("x 1{}\n", "0".repeat(309));
    let largest_integer = format!("x {}\n", "9".repeat(308));
    let table: Vec<(&str, String)> = vec![
        ("x 1e999\n", format!("line 1: {RANGE}")),
        (
            "ok 1\nx -1.7976931348623159e308\n",
            format!("line 2: {RANGE}"),
        ),
        ("x{a=\"b\"} +1E+999 5\n", format!("line 1: {RANGE}")),
        (huge_integer.as_str(), format!("line 1: {RANGE}")),
        ("x 1e999\n# EOF\n", format!("line 1: {RANGE}")),
        ("x{__name__=\"y\"} 1\n", format!("line 1: {RESERVED}")),
        (
            "x{a=\"1\",__meta_x=\"y\"} 1\n",
            format!("line 1: {RESERVED}"),
        ),
        (
            "{\"x\",\"__name__\"=\"y\"} 1\n",
            format!("line 1: {RESERVED}"),
        ),
        (
            "x{a=\"1\"} 1\nx{a=\"1\",__b=\"2\"} 1\n",
            format!("line 2: {RESERVED}"),
        ),
        ("x 1 -3\n", format!("line 1: {NEGATIVE}")),
        ("x 1 -0\n", format!("line 1: {NEGATIVE}")),
        ("x 1 5\ny 2 -1\n", format!("line 2: {NEGATIVE}")),
        ("x 1 -0.5\n# EOF\n", format!("line 1: {NEGATIVE}")),
        (
            "# TYPE h histogram\nh_bucket{le=\"1e999\"} 1\n",
            "line 2: expected a number as the value of the le label".to_string(),
        ),
        (
            "# TYPE s summary\ns{quantile=\"-1e999\"} 1\n",
            "line 2: expected a number as the value of the quantile label".to_string(),
        ),
        // What Prometheus, promtool and Python all take stays accepted.
        ("x 1e-999\n", "ok".to_string()),
        ("x 1.7976931348623157e308\n", "ok".to_string()),
        (largest_integer.as_str(), "ok".to_string()),
        ("x 1 -0\n# EOF\n", "ok".to_string()),
        ("x 1 0\n", "ok".to_string()),
        ("x{_a=\"1\"} 1\n__x 2\n", "ok".to_string()),
        ("x +1\ny .5\nz 1.\n", "ok".to_string()),
    ];
    for (input, expected) in &table {
        let (snapshot, result) = indexed(input.as_bytes());
        let got = result.err().unwrap_or_else(|| "ok".to_string());
        assert_eq!(got, *expected, "input {input:?}");
        if got != "ok" {
            assert_eq!(snapshot.sample_count(), 0, "a refused body serves nothing");
        }
    }
}

/// One container sending each poison beside a healthy one: the merged
/// output keeps every sample of the healthy one and stays valid for all
/// three readers. Before, the poison was merged and each reader refused the
/// whole output.
#[test]
fn a_poisoned_container_leaves_the_merged_output_valid() {
    let good = read("tests/fixtures/python_client.prom");
    let (good_alone, _) = merge(&[(Some("good"), &good)]);
    let poisons: &[&str] = &[
        "x 1e999\n",
        "x -1e999\n",
        "x{__name__=\"y\"} 1\n",
        "x{__name__=\"1y\"} 1\n",
        "x{__foo=\"y\"} 1\n",
        "x 1 -3\n",
        "x 1 -1.5\n# EOF\n",
        "# TYPE x histogram\nx_bucket{le=\"1e999\"} 1\nx_bucket{le=\"+Inf\"} 1\nx_sum 1\nx_count 1\n",
        "# TYPE x summary\nx{quantile=\"1e999\"} 1\nx_sum 1\nx_count 1\n",
        "{\"x\",\"__y\"=\"z\"} 1\n",
    ];
    let mut cases = Vec::new();
    for poison in poisons {
        let (out, conflicts) = merge(&[(Some("good"), &good), (Some("bad"), poison.as_bytes())]);
        assert!(conflicts.is_empty(), "{poison:?}: {conflicts:?}");
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&good_alone),
            "{poison:?}: the healthy container's output, nothing of the poison"
        );
        cases.push((format!("poison {poison:?}"), out));
    }
    assert_all_accept(&cases);
}

/// The sidecar's own `multiplexer_*` families win every conflict (issue
/// 11, item 5): before, a container declaring `# TYPE multiplexer_up
/// histogram` won (first source) and every `multiplexer_up` disappeared.
#[test]
fn own_metric_names_win_every_conflict() {
    let container: &[u8] = b"# TYPE multiplexer_up histogram\nmultiplexer_up_bucket{le=\"+Inf\"} 1\nmultiplexer_up_sum 1\nmultiplexer_up_count 1\napp_requests_total 5\n";
    let own: &[u8] = b"# HELP multiplexer_up Whether the container's last scrape succeeded.\n# TYPE multiplexer_up gauge\nmultiplexer_up{container=\"app\"} 1\n";
    let (out, conflicts) = merge(&[(Some("app"), container), (None, own)]);
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(
        text.contains("# TYPE multiplexer_up gauge\nmultiplexer_up{container=\"app\"} 1\n"),
        "{text}"
    );
    assert!(!text.contains("multiplexer_up_bucket"), "{text}");
    assert!(
        text.contains("app_requests_total{container=\"app\"} 5\n"),
        "{text}"
    );
    assert_eq!(conflicts, vec![(0, "multiplexer_up".to_string())]);
    assert_all_accept(&[("own metrics reserved".to_string(), out)]);
}

/// The merged output of every committed fuzz corpus input (merged as its
/// target merges it) and of every fixture alone and in pairs, judged by the
/// three readers. (Triples of fixtures are checked by promtool and Python
/// in `exposition.rs`.)
#[test]
fn corpus_and_fixture_outputs_are_valid_for_every_reader() {
    let mut cases = Vec::new();
    for target in ["exposition_parse", "exposition_merge"] {
        let dir = format!("{}/fuzz/corpus/{target}", env!("CARGO_MANIFEST_DIR"));
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|entry| entry.expect("dir entry").path())
            .collect();
        entries.sort();
        assert!(!entries.is_empty(), "{dir} is empty");
        for path in entries {
            let data = std::fs::read(&path).expect("corpus file");
            let out = if target == "exposition_parse" {
                merge(&[(Some("c\"1\\"), &data)]).0
            } else {
                // As the merge target: up to three bodies split at 0xFF.
                let containers = [Some("a"), Some("container"), None];
                let inputs: Vec<(Option<&str>, &[u8])> = containers
                    .into_iter()
                    .zip(data.splitn(3, |&b| b == 0xFF))
                    .collect();
                merge(&inputs).0
            };
            cases.push((path.display().to_string(), out));
        }
    }
    let bodies: Vec<Vec<u8>> = FIXTURES
        .iter()
        .map(|name| read(&format!("tests/fixtures/{name}")))
        .collect();
    for (name, body) in FIXTURES.iter().zip(&bodies) {
        let (_, result) = indexed(body);
        assert_eq!(result, Ok(()), "{name} must parse to be judged");
    }
    for a in 0..FIXTURES.len() {
        for b in a..FIXTURES.len() {
            let mut inputs = vec![(Some(FIXTURES[a]), bodies[a].as_slice())];
            if b != a {
                inputs.push((Some(FIXTURES[b]), bodies[b].as_slice()));
            }
            let (out, conflicts) = merge(&inputs);
            assert!(
                conflicts.is_empty(),
                "{} + {}: {conflicts:?}",
                FIXTURES[a],
                FIXTURES[b]
            );
            cases.push((format!("{} + {}", FIXTURES[a], FIXTURES[b]), out));
        }
    }
    assert_all_accept(&cases);
}
