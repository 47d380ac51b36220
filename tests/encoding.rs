//! gzip on the served endpoint: chosen by the request's `Accept-Encoding`,
//! `Vary` on every metrics response, built once per change of data, and the
//! same samples in both codings, small outputs (kept as text) and large ones
//! (only held compressed, inflated for identity clients). The gzip bodies
//! are decoded by flate2, which the sidecar does not use.

use std::time::Duration;

use crate::util::{
    container_args, get_with, gunzip, lines_of, raw_exchange, wait_until, Behaviour, Response,
    Sidecar, Stub,
};

const NODE_EXPORTER: &str = include_str!("fixtures/node_exporter.prom");

/// One scrape at start, then none for a minute: every response below is
/// built from the same data, so both codings must carry the same bytes.
fn steady_sidecar(containers: &[(&str, u16)]) -> Sidecar {
    let mut args = container_args(containers);
    args.push("--scrape_interval=60000".to_string());
    let sidecar = Sidecar::start(&args);
    let names: Vec<&str> = containers.iter().map(|(name, _)| *name).collect();
    let all_up = wait_until(Duration::from_secs(10), || {
        let metrics = sidecar.metrics();
        names
            .iter()
            .all(|name| metrics.contains(&format!("multiplexer_up{{container=\"{name}\"}} 1")))
    });
    assert!(all_up, "stderr:\n{}", sidecar.stderr());
    sidecar
}

fn is_gzip(response: &Response) -> bool {
    response.header("content-encoding") == Some("gzip")
}

#[test]
fn gzip_only_when_the_request_accepts_it() {
    let stub = Stub::start(Behaviour::ContentLength(NODE_EXPORTER.to_string()));
    let sidecar = steady_sidecar(&[("node", stub.port)]);
    let identity = get_with(sidecar.port, "/metrics", "");
    assert_eq!(identity.status, 200);
    assert!(!is_gzip(&identity));
    assert_eq!(identity.header("vary"), Some("Accept, Accept-Encoding"));
    let cases: &[(&str, bool)] = &[
        ("Accept-Encoding: gzip\r\n", true),
        // With an Accept for the same output (text; an OpenMetrics or
        // protobuf Accept gets another body, tests/protobuf.rs).
        (
            "Accept-Encoding: gzip\r\nAccept: text/plain;version=0.0.4;q=0.3,*/*;q=0.1\r\n",
            true,
        ),
        ("Accept-Encoding: deflate, gzip;q=0.5\r\n", true),
        ("Accept-Encoding: *\r\n", true),
        ("Accept-Encoding: gzip;q=0\r\n", false),
        ("Accept-Encoding: br, deflate\r\n", false),
        ("Accept-Encoding: identity\r\n", false),
        ("Accept-Encoding: *, gzip;q=0\r\n", false),
    ];
    for (headers, gzip) in cases {
        let response = get_with(sidecar.port, "/metrics", headers);
        assert_eq!(response.status, 200, "{headers:?}");
        assert_eq!(is_gzip(&response), *gzip, "{headers:?}");
        assert_eq!(
            response.header("vary"),
            Some("Accept, Accept-Encoding"),
            "{headers:?}"
        );
        let text = if *gzip {
            assert!(response.body.len() * 4 < identity.body.len(), "{headers:?}");
            gunzip(&response.body)
        } else {
            response.body.clone()
        };
        assert!(text == identity.body, "{headers:?}: not the same output");
    }
    // Health and errors are never coded, and do not vary.
    let health = get_with(sidecar.port, "/healthz", "Accept-Encoding: gzip\r\n");
    assert_eq!(health.body, b"ok\n");
    assert!(!is_gzip(&health));
    assert_eq!(health.header("vary"), None);
}

#[test]
fn head_gives_the_length_of_the_coding_asked_for() {
    let stub = Stub::start(Behaviour::ContentLength(NODE_EXPORTER.to_string()));
    let sidecar = steady_sidecar(&[("node", stub.port)]);
    let gzip = get_with(sidecar.port, "/metrics", "Accept-Encoding: gzip\r\n");
    for (headers, length) in [
        ("Accept-Encoding: gzip\r\n", gzip.body.len()),
        ("", gunzip(&gzip.body).len()),
    ] {
        let request =
            format!("HEAD /metrics HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n");
        let bytes = raw_exchange(sidecar.port, request.as_bytes()).unwrap();
        let text = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
        assert!(
            text.contains(&format!("content-length: {length}\r\n")),
            "{headers:?}: {text}"
        );
        assert!(text.ends_with("\r\n\r\n"), "HEAD has no body: {text}");
    }
}

/// An output larger than the text kept for identity clients (512 KiB) is
/// held only compressed: identity clients get it inflated as their socket
/// takes it, and must get every byte, keep-alive after it included.
#[test]
fn a_large_output_is_the_same_in_both_codings() {
    let huge = Stub::start(Behaviour::Huge(3 << 20));
    let node = Stub::start(Behaviour::ContentLength(NODE_EXPORTER.to_string()));
    let sidecar = steady_sidecar(&[("huge", huge.port), ("node", node.port)]);
    let gzip = get_with(sidecar.port, "/metrics", "Accept-Encoding: gzip\r\n");
    assert!(is_gzip(&gzip));
    let text = gunzip(&gzip.body);
    assert!(text.len() > 3 << 20, "{}", text.len());
    let identity = get_with(sidecar.port, "/metrics", "");
    assert!(!is_gzip(&identity));
    assert_eq!(identity.body.len(), text.len());
    assert!(
        identity.body == text,
        "identity text differs from the gzip's"
    );
    let text = String::from_utf8(text).unwrap();
    assert_eq!(
        lines_of(&text, "container", "node").len(),
        NODE_EXPORTER
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .count()
    );
    // Two identity responses in a row on one kept-alive connection, read
    // slowly: the second starts exactly where the first ended.
    let request = b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\nGET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let bytes = raw_exchange(sidecar.port, request).unwrap();
    let (first, used) = crate::util::parse_response(&bytes).unwrap();
    let (second, _) = crate::util::parse_response(&bytes[used..]).unwrap();
    assert!(first.body == identity.body && second.body == identity.body);
}

/// Samples read in either coding are the same while the data changes
/// under them (interval mode): each response is whole and valid.
#[test]
fn gzip_and_identity_carry_the_same_samples_while_data_changes() {
    let node = Stub::start(Behaviour::ContentLength(NODE_EXPORTER.to_string()));
    let huge = Stub::start(Behaviour::Huge(1 << 20));
    let mut args = container_args(&[("node", node.port), ("huge", huge.port)]);
    args.push("--scrape_interval=20".to_string());
    let sidecar = Sidecar::start(&args);
    assert!(wait_until(Duration::from_secs(10), || {
        sidecar
            .metrics()
            .contains("multiplexer_up{container=\"huge\"} 1")
    }));
    for _ in 0..10 {
        let gzip = get_with(sidecar.port, "/metrics", "Accept-Encoding: gzip\r\n");
        let identity = get_with(sidecar.port, "/metrics", "");
        let gzip_text = String::from_utf8(gunzip(&gzip.body)).unwrap();
        let identity_text = String::from_utf8(identity.body).unwrap();
        for name in ["node", "huge"] {
            assert_eq!(
                lines_of(&gzip_text, "container", name),
                lines_of(&identity_text, "container", name),
                "{name}"
            );
        }
    }
}
