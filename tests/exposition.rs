//! The exposition engine against real and hand-written expositions, judged
//! by readers it did not write: promtool, Python's prometheus_client parser,
//! an independent checker of Prometheus' own rules
//! (`fuzz/oracle/prometheus_text.rs`, shared with the fuzz targets) and a
//! naive reference parser (`util/naive.rs`).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::util::naive::{self, NaiveSample};
use crate::util::rng::Rng;
use multiplexer::exposition::{BodyError, Merger, Snapshot, Source};

/// Whatever one container sends, the merged output stays valid for every
/// reader (issue 11, items 1 and 5).
mod validity;

/// Would Prometheus, promtool and Python's parser all take a text? Written
/// from their rules, not from the sidecar's parser.
#[path = "../fuzz/oracle/prometheus_text.rs"]
mod oracle;

const FIXTURES: &[&str] = &[
    "node_exporter.prom",
    "prometheus.prom",
    "python_client.prom",
    "python_client_openmetrics.txt",
    "edge_labels.prom",
    "edge_values.prom",
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

/// Merges bodies as the sidecar does: each is a source with its container
/// label (none for the sidecar's own metrics), and a body that fails to
/// parse contributes nothing. Returns the output and the conflicts as
/// (source, family).
fn merge(inputs: &[(Option<&str>, &[u8])]) -> (Vec<u8>, Vec<(usize, String)>) {
    let mut snapshots: Vec<Snapshot> = inputs.iter().map(|(_, body)| snapshot(body)).collect();
    for snapshot in &mut snapshots {
        // A refused body is kept, failed, as the sidecar keeps it.
        let _ = snapshot.index();
    }
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

/// promtool exits 0, or 3 with lint remarks only (upstream names are not
/// ours to fix); a parse error is "error while linting".
fn check_promtool(label: &str, out: &[u8]) {
    let (code, text) = run_with_stdin("promtool", &["check", "metrics"], out);
    assert!(
        code == 0 || (code == 3 && !text.contains("error while linting")),
        "{label}: promtool refuses (exit {code}):\n{text}\n{}",
        String::from_utf8_lossy(out)
    );
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

fn python_results(outputs: &[&[u8]]) -> Vec<String> {
    let texts: Vec<&str> = outputs
        .iter()
        .map(|out| std::str::from_utf8(out).expect("outputs are UTF-8"))
        .collect();
    let input = serde_json::to_vec(&texts).expect("json");
    let (code, text) = run_with_stdin("python3", &["-c", PYTHON_BATCH], &input);
    assert_eq!(code, 0, "python3 failed:\n{text}");
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert_eq!(lines.len(), outputs.len(), "python3 output:\n{text}");
    lines
}

/// Every output, with a label to name it, is judged by the oracle, promtool
/// and Python's parser: all three must take it, Python with as many samples
/// as the oracle. Returns each output's sample count.
fn assert_all_accept(cases: &[(String, Vec<u8>)]) -> Vec<usize> {
    let promtool = tool_available("promtool");
    let python = if tool_available("python3") {
        let outputs: Vec<&[u8]> = cases.iter().map(|(_, out)| out.as_slice()).collect();
        python_results(&outputs)
    } else {
        Vec::new()
    };
    let mut counts = Vec::new();
    for (i, (label, out)) in cases.iter().enumerate() {
        let text = String::from_utf8_lossy(out);
        let samples = match oracle::judge(out) {
            Ok(accepted) => accepted.samples,
            Err(refusal) => panic!("{label}: oracle refuses {refusal:?}:\n{text}"),
        };
        if promtool {
            check_promtool(label, out);
        }
        if let Some(result) = python.get(i) {
            assert_eq!(*result, samples.to_string(), "{label}: python:\n{text}");
        }
        counts.push(samples);
    }
    counts
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
    let bodies: Vec<Vec<u8>> = FIXTURES.iter().map(|name| fixture(name)).collect();
    let mut cases = Vec::new();
    let mut naive_counts = Vec::new();
    for a in 0..FIXTURES.len() {
        for b in a + 1..FIXTURES.len() {
            for c in b + 1..FIXTURES.len() {
                let label = format!("{} + {} + {}", FIXTURES[a], FIXTURES[b], FIXTURES[c]);
                let inputs: Vec<(Option<&str>, &[u8])> = [a, b, c]
                    .iter()
                    .map(|&i| (Some(FIXTURES[i]), bodies[i].as_slice()))
                    .collect();
                let (out, conflicts) = merge(&inputs);
                assert!(conflicts.is_empty(), "{label}: {conflicts:?}");
                let mut expected = Vec::new();
                for &i in &[a, b, c] {
                    expected.extend(expected_samples(&bodies[i], FIXTURES[i]));
                }
                let got = naive::parse(std::str::from_utf8(&out).expect("utf-8 output"))
                    .unwrap_or_else(|line| panic!("{label}: output line {line} does not parse"));
                assert_eq!(counts(&got), counts(&expected), "{label}");
                naive_counts.push(got.len());
                cases.push((label, out));
            }
        }
    }
    let n = FIXTURES.len();
    assert_eq!(cases.len(), n * (n - 1) * (n - 2) / 6);
    assert_eq!(
        assert_all_accept(&cases),
        naive_counts,
        "oracle sample counts"
    );
}

fn index_error(body: &str) -> String {
    let mut snapshot = snapshot(body.as_bytes());
    match snapshot.index() {
        Ok(()) => "ok".to_string(),
        Err(error) => {
            assert_eq!(
                snapshot.sample_count(),
                0,
                "a rejected body contributes nothing"
            );
            error.to_string()
        }
    }
}

#[test]
fn bad_inputs_are_rejected_with_exact_messages() {
    let table: &[(&str, &str)] = &[
        ("foo{a=\"b} 1\n", "line 1: expected '\"' to close the quoted string on its line"),
        ("ok 1\nfoo{a=\"\\t\"} 1\n", "ok"),
        ("foo{1a=\"b\"} 1\n", "line 1: expected a label name or '}'"),
        ("foo{a:b=\"c\"} 1\n", "line 1: expected '=' after the label name"),
        ("foo{a=b} 1\n", "line 1: expected '\"' to open the label value"),
        ("foo{a=\"b\" c=\"d\"} 1\n", "ok"),
        ("foo{a=\"1\",a=\"2\"} 1\n", "line 1: expected each label name at most once per sample"),
        ("foo{\"a.b\"=\"1\",a_b=\"2\"} 1\n", "line 1: expected each label name at most once per sample"),
        ("foo\n", "line 1: expected a value (decimal number, NaN, +Inf or -Inf)"),
        ("foo-1\n", "ok"),
        ("foo 0x10\n", "line 1: expected a value (decimal number, NaN, +Inf or -Inf)"),
        ("foo 1_000\n", "line 1: expected a value (decimal number, NaN, +Inf or -Inf)"),
        ("foo -NaN\n", "line 1: expected a value (decimal number, NaN, +Inf or -Inf)"),
        ("foo\t\n", "line 1: expected a value (decimal number, NaN, +Inf or -Inf)"),
        ("foo 1 12x\n", "line 1: expected a timestamp (integer milliseconds, or seconds in OpenMetrics)"),
        ("foo 1 1.5\n", "line 1: expected a timestamp (integer milliseconds, or seconds in OpenMetrics)"),
        ("foo 1 99999999999999999999\n", "line 1: expected a timestamp (integer milliseconds, or seconds in OpenMetrics)"),
        ("foo 1 1 2\n", "line 1: expected the end of the line"),
        ("foo 1\rbar 2\n", "line 1: expected the end of the line"),
        ("foo 1 # trace\n", "line 1: expected a timestamp (integer milliseconds, or seconds in OpenMetrics)"),
        ("foo 1 # {a=\"b\"} x\n", "line 1: expected a timestamp (integer milliseconds, or seconds in OpenMetrics)"),
        ("{a=\"b\"} 1\n", "line 1: expected a metric name"),
        ("{\"\"} 1\n", "line 1: expected a metric name"),
        ("9foo 1\n", "line 1: expected a metric name"),
        ("# TYPE foo\n", "line 1: expected a metric type of the body's format (text: counter, gauge, histogram, summary, untyped; OpenMetrics: counter, gauge, histogram, gaugehistogram, summary, info, stateset, unknown)"),
        ("# TYPE foo timer\n", "line 1: expected a metric type of the body's format (text: counter, gauge, histogram, summary, untyped; OpenMetrics: counter, gauge, histogram, gaugehistogram, summary, info, stateset, unknown)"),
        ("# TYPE foo gauge extra\n", "line 1: expected a metric type of the body's format (text: counter, gauge, histogram, summary, untyped; OpenMetrics: counter, gauge, histogram, gaugehistogram, summary, info, stateset, unknown)"),
        ("# HELP foo{ x\n", "ok"),
        ("# TYPE foo gauge\n# TYPE foo gauge\n", "ok"),
        ("# TYPE foo gauge\n# TYPE foo counter\n", "line 2: expected one TYPE line per metric name"),
        ("foo 1\n# TYPE foo counter\nfoo 2\n", "line 3: expected the samples of a family to agree with its TYPE (TYPE after samples, or a sample name its TYPE does not allow)"),
        ("# TYPE foo histogram\nfoo_sum 1\nfoo 2\n", "line 3: expected the samples of a family to agree with its TYPE (TYPE after samples, or a sample name its TYPE does not allow)"),
        ("# TYPE foo histogram\nfoo_bucket{le=\"x\"} 1\n", "line 2: expected a number as the value of the le label"),
        ("# TYPE foo summary\nfoo{quantile=\"\"} 1\n", "line 2: expected a number as the value of the quantile label"),
        ("foo 1\n# EOF\nbar 2\n", "ok"),
        ("foo 1 1.5\n# EOF\n", "ok"),
        ("foo 1 9223372036854776\n# EOF\n", "ok"),
        ("foo{a=\"\u{e9}\"} 1\n", "ok"),
    ];
    let wrong: Vec<String> = table
        .iter()
        .filter(|(input, expected)| index_error(input) != *expected)
        .map(|(input, _)| format!("({input:?}, {:?}),", index_error(input)))
        .collect();
    assert!(wrong.is_empty(), "got instead:\n{}", wrong.join("\n"));
    // Invalid UTF-8 cannot be written as a &str literal.
    let mut snapshot = snapshot(b"ok 1\nfoo{a=\"\xff\"} 1\n");
    assert_eq!(
        snapshot.index().unwrap_err().to_string(),
        "line 2: expected UTF-8 text"
    );
}

#[test]
fn merge_rules() {
    struct Case {
        what: &'static str,
        inputs: &'static [(Option<&'static str>, &'static str)],
        output: &'static str,
        conflicts: &'static [(usize, &'static str)],
    }
    let cases = [
        Case {
            what: "families in order of first appearance, source 0 first, one HELP and TYPE",
            inputs: &[
                (Some("a"), "# HELP x X from a.\n# TYPE x gauge\nx 1\ny 2\n"),
                (Some("b"), "z 3\n# HELP x X from b.\n# TYPE x gauge\nx 4\n"),
            ],
            output: "# HELP x X from a.\n# TYPE x gauge\nx{container=\"a\"} 1\nx{container=\"b\"} 4\ny{container=\"a\"} 2\nz{container=\"b\"} 3\n",
            conflicts: &[],
        },
        Case {
            what: "existing container label becomes exported_, then exported_exported_",
            inputs: &[(Some("c\"1"), "m{container=\"x\"} 1\nm{container=\"y\",exported_container=\"z\"} 2\n")],
            output: "m{exported_container=\"x\",container=\"c\\\"1\"} 1\nm{exported_exported_container=\"y\",exported_container=\"z\",container=\"c\\\"1\"} 2\n",
            conflicts: &[],
        },
        Case {
            what: "no container label for a source without a name",
            inputs: &[(None, "m{container=\"x\"} 1\nn 2\n")],
            output: "m{container=\"x\"} 1\nn 2\n",
            conflicts: &[],
        },
        Case {
            what: "simple type conflict is written untyped with every sample",
            inputs: &[
                (Some("a"), "# TYPE m counter\nm 1\n"),
                (Some("b"), "# TYPE m gauge\nm 2\n"),
                (Some("c"), "# TYPE m counter\nm 3\n"),
            ],
            output: "# TYPE m untyped\nm{container=\"a\"} 1\nm{container=\"b\"} 2\nm{container=\"c\"} 3\n",
            conflicts: &[(1, "m")],
        },
        Case {
            what: "complex type conflict: first source's type wins, others dropped",
            inputs: &[
                (Some("a"), "# TYPE m summary\nm_sum 1\nm_count 1\n"),
                (Some("b"), "# TYPE m gauge\nm 2\n"),
            ],
            output: "# TYPE m summary\nm_sum{container=\"a\"} 1\nm_count{container=\"a\"} 1\n",
            conflicts: &[(1, "m")],
        },
        Case {
            what: "a family named like another's histogram sample is dropped",
            inputs: &[
                (Some("a"), "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 1\n"),
                (Some("b"), "h_bucket 5\n# TYPE h_count gauge\nh_count 6\n"),
            ],
            output: "# TYPE h histogram\nh_bucket{le=\"+Inf\",container=\"a\"} 1\nh_count{container=\"a\"} 1\nh_sum{container=\"a\"} 1\n",
            conflicts: &[(1, "h_bucket"), (1, "h_count")],
        },
        Case {
            what: "OpenMetrics families become 0.0.4 families",
            inputs: &[(
                None,
                "# HELP c C \\\"q\\\" \\\\ \\n.\n# TYPE c counter\nc_total 1 1.5 # {t=\"x\"} 1\nc_created 2\n# TYPE i info\ni_info{v=\"1\"} 1\n# TYPE g gaugehistogram\ng_bucket{le=\"+Inf\"} 1\ng_gcount 1\ng_gsum 1\n# TYPE u unknown\nu NaN\n# EOF\n",
            )],
            output: "# HELP c_total C \"q\" \\\\ \\n.\n# TYPE c_total counter\nc_total 1 1500\n# HELP c_created C \"q\" \\\\ \\n.\n# TYPE c_created gauge\nc_created 2\n# TYPE i_info gauge\ni_info{v=\"1\"} 1\n# TYPE g histogram\ng_bucket{le=\"+Inf\"} 1\n# TYPE g_gcount gauge\ng_gcount 1\n# TYPE g_gsum gauge\ng_gsum 1\n# TYPE u untyped\nu NaN\n",
            conflicts: &[],
        },
        Case {
            what: "quoted names are underscore-escaped; values normalised; blanks removed",
            inputs: &[(Some("a"), "{\"my.m\", \"my.l\"=\"v\",} inf\nn { a = \"1\" } -infinity\nn {} nan\n")],
            output: "my_m{my_l=\"v\",container=\"a\"} +Inf\nn{a=\"1\",container=\"a\"} -Inf\nn{container=\"a\"} NaN\n",
            conflicts: &[],
        },
        Case {
            what: "HELP with a lone backslash keeps it literally in 0.0.4 escaping",
            inputs: &[(None, "# HELP m a \\d b\nm 1\n")],
            output: "# HELP m a \\\\d b\nm 1\n",
            conflicts: &[],
        },
    ];
    for case in &cases {
        let inputs: Vec<(Option<&str>, &[u8])> = case
            .inputs
            .iter()
            .map(|(container, body)| (*container, body.as_bytes()))
            .collect();
        let (output, conflicts) = merge(&inputs);
        let output = String::from_utf8(output).expect("utf-8 output");
        assert_eq!(output, case.output, "{}", case.what);
        let expected: Vec<(usize, String)> = case
            .conflicts
            .iter()
            .map(|(i, n)| (*i, n.to_string()))
            .collect();
        assert_eq!(conflicts, expected, "{}", case.what);
        let mut reparsed = snapshot(output.as_bytes());
        reparsed
            .index()
            .unwrap_or_else(|e| panic!("{}: output does not parse: {e}", case.what));
    }
}

#[test]
fn snapshot_lifecycle() {
    let mut snapshot = Snapshot::new();
    assert_eq!(snapshot.index(), Ok(()));
    let mut body = b"a 1\nb 2\n".to_vec();
    let capacity = body.capacity();
    snapshot.replace(&mut body);
    assert!(body.is_empty());
    assert_eq!(snapshot.body_len(), 8);
    assert_eq!(snapshot.sample_count(), 0, "not indexed yet");
    snapshot.index().unwrap();
    assert_eq!(snapshot.sample_count(), 2);
    // The previous allocation comes back for the next scrape.
    body.extend_from_slice(b"bad{ 1\n");
    snapshot.replace(&mut body);
    assert!(body.capacity() >= capacity);
    let error = snapshot.index().unwrap_err();
    assert_eq!(
        snapshot.index(),
        Err(error),
        "stays failed until the next replace"
    );
    assert_eq!((snapshot.sample_count(), snapshot.body_len()), (0, 0));
    snapshot.clear();
    assert_eq!(snapshot.index(), Ok(()));
    snapshot.shrink();
}

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len())]
}

fn generated_body(rng: &mut Rng) -> String {
    let names = ["a", "b_total", "h", "s", "x:y", "h_bucket", "c_created"];
    let types = [
        "counter",
        "gauge",
        "histogram",
        "summary",
        "untyped",
        "info",
        "stateset",
        "gaugehistogram",
        "unknown",
    ];
    let suffixes = [
        "", "", "_total", "_bucket", "_sum", "_count", "_created", "_info", "_gsum",
    ];
    let labels = [
        "",
        "{}",
        "{a=\"1\"}",
        "{le=\"0.5\"}",
        "{quantile=\"0.9\",a=\"x\\\\y\"}",
        "{container=\"c\"}",
        "{a=\"\\\"q\\n\",}",
        "{ b = \"2\" }",
        "{\"a.b\"=\"3\"}",
        "{le=\"+Inf\",container=\"z\",exported_container=\"w\"}",
    ];
    let values = [
        "1", "-2.5", "1e3", "NaN", "+Inf", "-inf", ".5", "0x1", "abc",
    ];
    let timestamps = ["", "", " 1700000000000", " -3", " 1.5"];
    let mut body = String::new();
    for _ in 0..(rng.next_u64() % 12) {
        match rng.next_u64() % 6 {
            0 => body.push_str(&format!(
                "# TYPE {} {}\n",
                pick(rng, &names),
                pick(rng, &types)
            )),
            1 => body.push_str(&format!("# HELP {} some \\\\ help\n", pick(rng, &names))),
            2 => body.push_str(&format!(
                "{{\"{}.q\"}} {}\n",
                pick(rng, &names),
                pick(rng, &values)
            )),
            _ => body.push_str(&format!(
                "{}{}{} {}{}\n",
                pick(rng, &names),
                pick(rng, &suffixes),
                pick(rng, &labels),
                pick(rng, &values),
                pick(rng, &timestamps)
            )),
        }
    }
    if rng.next_u64() % 4 == 0 {
        body.push_str("# EOF\n");
    }
    body
}

#[test]
fn fast_parser_agrees_with_naive_parser_on_generated_inputs() {
    let mut rng = Rng::new(0x2545_f491_4f6c_dd1d);
    let (mut accepted, mut rejected) = (0, 0);
    for round in 0..20_000 {
        let body = generated_body(&mut rng);
        let mut fast = snapshot(body.as_bytes());
        let naive = naive::parse(&body);
        match fast.index() {
            Ok(()) => {
                accepted += 1;
                let naive = naive.unwrap_or_else(|line| {
                    panic!("round {round}: naive rejects line {line} of {body:?}")
                });
                assert_eq!(fast.sample_count(), naive.len(), "round {round}: {body:?}");
                let (out, conflicts) = merge(&[(Some("k"), body.as_bytes())]);
                let out = String::from_utf8(out).expect("utf-8 output");
                let got = naive::parse(&out)
                    .unwrap_or_else(|line| panic!("round {round}: output line {line}: {out}"));
                if conflicts.is_empty() {
                    assert_eq!(
                        counts(&got),
                        counts(&expected_samples(body.as_bytes(), "k")),
                        "round {round}: {body:?}\n{out}"
                    );
                }
                let mut reparsed = snapshot(out.as_bytes());
                reparsed
                    .index()
                    .unwrap_or_else(|e| panic!("round {round}: {e}\n{out}"));
            }
            Err(error) => {
                rejected += 1;
                // The fast parser also enforces family rules the naive one
                // does not know, so it may reject more, never less.
                assert!(
                    matches!(error, BodyError::Text(error) if error.line >= 1),
                    "round {round}"
                );
            }
        }
    }
    assert!(
        accepted > 2_000 && rejected > 2_000,
        "generator balance: {accepted} accepted, {rejected} rejected"
    );
}
