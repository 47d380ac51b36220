//! Whatever one container sends, the merged output stays valid for
//! Prometheus 2.42's scraper, promtool and Python's parser (issue 11, items 1
//! and 5). Judged by those programs and by the oracle
//! (`fuzz/oracle/prometheus_text.rs`), never by the sidecar's parser.

use super::{assert_all_accept, fixture, index_error, merge, FIXTURES};

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
        // Prometheus main takes any finite OpenMetrics timestamp and then
        // drops a sample before 1970 as out of bounds; text output writes
        // it at 0, which it drops alike.
        ("x 1 -0.5\n# EOF\n", "ok".to_string()),
        ("x 1 0\n", "ok".to_string()),
        ("x{_a=\"1\"} 1\n__x 2\n", "ok".to_string()),
        ("x +1\ny .5\nz 1.\n", "ok".to_string()),
    ];
    for (input, expected) in &table {
        // A refused body serves nothing: `index_error` checks it.
        assert_eq!(index_error(input), *expected, "input {input:?}");
    }
}

/// One container sending each poison beside a healthy one: the merged
/// output keeps every sample of the healthy one and stays valid for all
/// three readers. Before, the poison was merged and each reader refused the
/// whole output.
#[test]
fn a_poisoned_container_leaves_the_merged_output_valid() {
    let good = fixture("python_client.prom");
    let (good_alone, _) = merge(&[(Some("good"), &good)]);
    let poisons: &[&str] = &[
        "x 1e999\n",
        "x -1e999\n",
        "x{__name__=\"y\"} 1\n",
        "x{__name__=\"1y\"} 1\n",
        "x{__foo=\"y\"} 1\n",
        "x 1 -3\n",
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
/// three readers (triples of fixtures in
/// `fixtures_merged_three_at_a_time_stay_valid_and_complete`).
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
    // Each fixture parses (`every_fixture_parses`), so none is judged empty.
    let bodies: Vec<Vec<u8>> = FIXTURES.iter().map(|name| fixture(name)).collect();
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
