//! Regression tests for what a hostile review found: upstreams and clients
//! that behave legally but unkindly, against the real binary.

mod common;

use std::time::Duration;

use common::{
    container_args, peak_resident_bytes, raw_exchange, wait_until, Behaviour, Sidecar, Stub,
};

const MEMORY_LIMIT_BYTES: u64 = 32 << 20;

/// One sample with `count` distinct labels: `wide{l0="v",l1="v",...} 1`.
fn one_wide_sample(count: usize) -> String {
    let mut body = String::from("wide{");
    for i in 0..count {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!("l{i}=\"v\""));
    }
    body.push_str("} 1\n");
    body
}

/// A sample with 2·10^5 labels (2 MB, inside the default 4 MiB body limit)
/// used to cost a pairwise duplicate-label check: 2·10^10 comparisons, about
/// a minute during which the single-threaded loop scraped and served nothing.
#[test]
fn a_sample_with_200k_labels_does_not_stall_the_loop() {
    let wide = Stub::start(Behaviour::ContentLength(one_wide_sample(200_000)));
    let small = Stub::start(Behaviour::ContentLength("small 1\n".to_string()));
    let sidecar = Sidecar::start(&container_args(&[
        ("wide", wide.port),
        ("small", small.port),
    ]));
    let both_up = wait_until(Duration::from_secs(20), || {
        let metrics = sidecar.metrics();
        metrics.contains("multiplexer_up{container=\"wide\"} 1")
            && metrics.contains("multiplexer_up{container=\"small\"} 1")
    });
    assert!(both_up, "stderr:\n{}", sidecar.stderr());
    let metrics = sidecar.metrics();
    assert!(metrics.contains("l199999=\"v\",container=\"wide\"} 1\n"));
    assert!(metrics.contains("small{container=\"small\"} 1\n"));
}

/// The duplicate check must still catch a repeat far apart in a wide set.
#[test]
fn a_duplicate_label_in_a_wide_sample_is_still_a_parse_error() {
    let mut body = one_wide_sample(1000);
    body.insert_str(body.len() - "} 1\n".len(), ",l7=\"again\"");
    let stub = Stub::start(Behaviour::ContentLength(body));
    let sidecar = Sidecar::start(&container_args(&[("wide", stub.port)]));
    let prefix = "multiplexer_scrape_failures_total{container=\"wide\",reason=\"parse_error\"} ";
    let counted = wait_until(Duration::from_secs(10), || {
        sidecar
            .metrics()
            .lines()
            .any(|line| line.starts_with(prefix) && !line.ends_with(" 0"))
    });
    assert!(counted, "{}", sidecar.metrics());
    assert!(!sidecar.metrics().contains("wide{"));
}

/// RFC 9112 §3.2.2: "a server MUST accept the absolute-form in requests".
#[test]
fn absolute_form_targets_are_served() {
    let stub = Stub::start(Behaviour::ContentLength("a 1\n".to_string()));
    let sidecar = Sidecar::start(&container_args(&[("app", stub.port)]));
    for target in [
        "http://localhost/metrics",
        "HTTP://127.0.0.1:13434/metrics?x=1",
        "http://pod/healthz",
    ] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let bytes = raw_exchange(sidecar.port, request.as_bytes()).unwrap();
        let (response, _) = common::parse_response(&bytes).unwrap();
        assert_eq!(response.status, 200, "{target}");
    }
}

/// 4 MiB of the shortest legal samples (`a 1`, a million of them) is inside
/// the default body limit, but the index (tens of bytes per sample) and the
/// merged body (`a{container="big"} 1`, five times the input) took the
/// sidecar to about 70 MiB, and 4 MiB of distinct one-sample untyped
/// families (`f1a2b 1`, each given a TYPE line) to about 110 MiB. Now a body
/// may hold one line per 64 bytes of `--max_body_bytes`: the first is refused
/// (`too_many_lines`), the largest one allowed is served, both in 32 MiB.
#[test]
fn four_mib_of_tiny_samples_stays_inside_32_mib() {
    let line = "a 1\n";
    let too_many = line.repeat((4 << 20) / line.len() - 16);
    // Distinct untyped names, each its own family: the costliest lines.
    let allowed: String = (0..(4 << 20) / 64).map(|i| format!("f{i:x} 1\n")).collect();
    let refused = Stub::start(Behaviour::ContentLength(too_many));
    let served = Stub::start(Behaviour::ContentLength(allowed));
    let sidecar = Sidecar::start(&container_args(&[
        ("refused", refused.port),
        ("served", served.port),
    ]));
    let refusal =
        "multiplexer_scrape_failures_total{container=\"refused\",reason=\"too_many_lines\"} ";
    assert!(wait_until(Duration::from_secs(30), || {
        let metrics = sidecar.metrics();
        metrics.contains("multiplexer_up{container=\"served\"} 1")
            && metrics.contains(refusal)
            && !metrics.contains(&format!("{refusal}0\n"))
    }));
    for _ in 0..3 {
        let metrics = sidecar.metrics();
        assert!(metrics.contains("fffff{container=\"served\"} 1\n"));
        assert!(!metrics.contains("a{container=\"refused\"}"));
    }
    let peak = peak_resident_bytes(sidecar.pid());
    assert!(peak < MEMORY_LIMIT_BYTES, "peak RSS {} MiB", peak >> 20);
}
