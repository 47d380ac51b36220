//! The real binary against scripted stub exporters on loopback: every body
//! framing the sidecar must read, every failure it must survive, and the
//! scrape cadence. Waits are conditions with deadlines; the only time bounds
//! are generous ones that the issue itself sets (cadence, two intervals).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::util::{
    container_args, failures, lines_of, sample, up, wait_until, Behaviour, Sidecar, Stub,
    FIRST_READ_ROOM_FOR_THE_HEAD,
};

/// A body with several families and enough lines that half of it is
/// recognisable.
fn body(prefix: &str, value: u64) -> String {
    let mut text = format!(
        "# HELP {prefix}_requests_total Requests.\n# TYPE {prefix}_requests_total counter\n"
    );
    for code in 0..20 {
        text.push_str(&format!(
            "{prefix}_requests_total{{code=\"{code}\"}} {value}\n"
        ));
    }
    text.push_str(&format!(
        "# TYPE {prefix}_temperature gauge\n{prefix}_temperature 21.5\n"
    ));
    text
}

fn start(containers: &[(&str, u16)], extra: &[&str]) -> Sidecar {
    let mut args = container_args(containers);
    args.extend(extra.iter().map(|arg| arg.to_string()));
    Sidecar::start(&args)
}

fn assert_serves(sidecar: &Sidecar, container: &str, prefix: &str, value: u64) {
    let served = wait_until(Duration::from_secs(10), || {
        let metrics = sidecar.metrics();
        lines_of(&metrics, "container", container).len() == 21
            && sample(
                &metrics,
                &format!("{prefix}_requests_total"),
                &["code=\"7\"", &format!("container=\"{container}\"")],
            ) == Some(value as f64)
    });
    assert!(
        served,
        "{container} not served; last output:\n{}\nstderr:\n{}",
        sidecar.metrics(),
        sidecar.stderr()
    );
}

#[test]
fn every_body_framing_is_read() {
    let framings = [
        ("length", Behaviour::ContentLength(body("length", 1))),
        ("chunked", Behaviour::Chunked(body("chunked", 2), 7)),
        ("http10", Behaviour::Http10(body("http10", 3))),
        ("close", Behaviour::ConnectionClose(body("close", 4))),
    ];
    let stubs: Vec<(&str, Stub)> = framings
        .into_iter()
        .map(|(name, behaviour)| (name, Stub::start(behaviour)))
        .collect();
    let containers: Vec<(&str, u16)> = stubs
        .iter()
        .map(|(name, stub)| (*name, stub.port))
        .collect();
    let sidecar = start(&containers, &["--scrape_interval=50"]);
    for (value, (name, _)) in stubs.iter().enumerate() {
        assert_serves(&sidecar, name, name, value as u64 + 1);
    }
    let metrics = sidecar.metrics();
    for (name, _) in &stubs {
        assert_eq!(up(&metrics, name), Some(1.0), "{name}");
    }
}

#[test]
fn keep_alive_connections_are_reused() {
    let stub = Stub::start(Behaviour::ContentLength(body("reuse", 1)));
    let sidecar = start(&[("app", stub.port)], &["--scrape_interval=20"]);
    assert!(wait_until(Duration::from_secs(10), || stub.request_count() >= 20));
    assert_eq!(
        stub.connections.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    let metrics = sidecar.metrics();
    for reason in [
        "refused",
        "reset",
        "closed",
        "timeout",
        "bad_response",
        "io_error",
    ] {
        assert_eq!(
            failures(&metrics, "app", reason),
            0.0,
            "{reason}\n{metrics}"
        );
    }
}

/// RFC 9112 §9.3.1: a kept-alive connection may be closed by the server
/// just as the client reuses it. That request is retried once on a new
/// connection and is not a failure: the container stays up and no failure
/// is counted or logged.
#[test]
fn a_reused_connection_closed_by_the_server_is_retried_uncounted() {
    let stub = Stub::start(Behaviour::CloseOnReuse(body("retried", 1)));
    let sidecar = start(&[("app", stub.port)], &["--scrape_interval=50"]);
    assert!(wait_until(Duration::from_secs(10), || {
        stub.connections.load(std::sync::atomic::Ordering::SeqCst) >= 6
    }));
    assert_serves(&sidecar, "app", "retried", 1);
    let metrics = sidecar.metrics();
    assert_eq!(up(&metrics, "app"), Some(1.0));
    for reason in multiplexer::scrape::FailureReason::ALL {
        assert_eq!(
            failures(&metrics, "app", reason.as_str()),
            0.0,
            "{reason}\n{metrics}"
        );
    }
    // Each reuse was answered by closing: every scrape after the first
    // needed the retry, and each retry was a new connection.
    assert!(stub.request_count() > stub.connections.load(std::sync::atomic::Ordering::SeqCst));
    assert!(
        !sidecar.stderr().contains("is down"),
        "{}",
        sidecar.stderr()
    );
}

/// Two containers disagree on a family's type: the first container's type
/// wins, the other's samples of it are dropped, and that container counts
/// the conflict in `multiplexer_family_conflicts_total` and logs it once,
/// however often the merged body is rebuilt.
#[test]
fn a_type_conflict_is_counted_and_logged_once() {
    let first = Stub::start(Behaviour::ContentLength(
        "# TYPE shared gauge\nshared 1\n".into(),
    ));
    let second = Stub::start(Behaviour::ContentLength(
        "# TYPE shared histogram\nshared_bucket{le=\"+Inf\"} 1\nshared_sum 1\nshared_count 1\nother 2\n"
            .into(),
    ));
    let sidecar = start(
        &[("first", first.port), ("second", second.port)],
        &["--scrape_interval=50"],
    );
    let conflicts = |metrics: &str, container: &str| {
        sample(
            metrics,
            "multiplexer_family_conflicts_total",
            &[&format!("container=\"{container}\"")],
        )
    };
    // Both containers served once first: on a loaded machine the first
    // container's first answer can come after the second's.
    assert!(wait_until(Duration::from_secs(30), || {
        let metrics = sidecar.metrics();
        metrics.contains("shared{container=\"first\"} 1\n")
            && metrics.contains("other{container=\"second\"} 2\n")
    }));
    // Several rebuilds, each after new scrapes.
    for _ in 0..5 {
        let before = second.request_count();
        assert!(wait_until(Duration::from_secs(10), || second
            .request_count()
            > before));
        let metrics = sidecar.metrics();
        assert!(metrics.contains("# TYPE shared gauge\n"), "{metrics}");
        assert!(
            metrics.contains("shared{container=\"first\"} 1\n"),
            "{metrics}"
        );
        assert!(!metrics.contains("shared_bucket"), "{metrics}");
        assert!(
            metrics.contains("other{container=\"second\"} 2\n"),
            "{metrics}"
        );
    }
    let metrics = sidecar.metrics();
    assert!(
        conflicts(&metrics, "second").unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );
    assert_eq!(conflicts(&metrics, "first"), Some(0.0), "{metrics}");
    let log = sidecar.stderr();
    let logged = log
        .lines()
        .filter(|line| line.contains("container second: metric family shared"))
        .count();
    assert_eq!(logged, 1, "{log}");
}

/// Every hostile behaviour, each next to a healthy container that must keep
/// its cadence and stay in the output, and none of whose partial bodies may
/// ever be served.
#[test]
fn failures_affect_only_their_container() {
    let cases: Vec<(&str, Behaviour, &str)> = vec![
        ("hangs", Behaviour::HangBeforeHead, "timeout"),
        (
            "hangsmid",
            Behaviour::HangMidBody(body("bad", 9)),
            "timeout",
        ),
        (
            "drips",
            Behaviour::Drip(body("bad", 9), Duration::from_millis(50)),
            "timeout",
        ),
        ("resets", Behaviour::ResetMidBody(body("bad", 9)), "reset"),
        ("fails", Behaviour::Status(500), "http_status"),
        ("garbage", Behaviour::Garbage, "bad_response"),
        ("huge", Behaviour::Huge(1 << 20), "body_too_large"),
        ("gzip", Behaviour::Gzip(body("bad", 9)), "encoding"),
        ("unparsable", Behaviour::BadExposition, "parse_error"),
    ];
    let good = Stub::start(Behaviour::ContentLength(body("good", 5)));
    let bad_stubs: Vec<(&str, Stub, &str)> = cases
        .into_iter()
        .map(|(name, behaviour, reason)| (name, Stub::start(behaviour), reason))
        .collect();
    let mut containers = vec![("good", good.port)];
    containers.extend(bad_stubs.iter().map(|(name, stub, _)| (*name, stub.port)));
    let sidecar = start(
        &containers,
        &[
            "--scrape_interval=100",
            "--scrape_timeout=500",
            "--max_body_bytes=65536",
        ],
    );
    assert_serves(&sidecar, "good", "good", 5);

    for (name, _, reason) in &bad_stubs {
        let failed = wait_until(Duration::from_secs(10), || {
            failures(&sidecar.metrics(), name, reason) >= 1.0
        });
        let metrics = sidecar.metrics();
        assert!(failed, "{name}: no {reason} failure counted:\n{metrics}");
        assert_eq!(up(&metrics, name), Some(0.0), "{name}");
        assert!(
            lines_of(&metrics, "container", name).is_empty(),
            "{name} served:\n{metrics}"
        );
        assert!(
            !metrics.contains("bad_requests_total"),
            "partial body served:\n{metrics}"
        );
    }

    // The healthy container keeps its cadence (10 per second) in spite of
    // the others; the bound is generous so a busy machine does not fail it.
    let before = good.request_count();
    let started = Instant::now();
    assert!(wait_until(Duration::from_secs(10), || good.request_count()
        >= before + 10));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "good container slowed down"
    );
    assert_serves(&sidecar, "good", "good", 5);

    // A down container is logged once, not once per failed scrape.
    let log = sidecar.stderr();
    for (name, _, _) in &bad_stubs {
        let lines = log
            .lines()
            .filter(|line| line.contains(&format!("container {name} is down")))
            .count();
        assert_eq!(lines, 1, "{name}:\n{log}");
    }
    // The size and the limit are in the line, to choose a new limit by.
    let huge = log
        .lines()
        .find(|line| line.contains("container huge is down (body_too_large)"))
        .unwrap_or_default();
    assert!(
        huge.contains(": Content-Length of ")
            && huge.contains("over the body limit of 65536 bytes (--max_body_bytes)"),
        "{log}"
    );
}

#[test]
fn a_container_that_starts_late_appears_within_two_intervals() {
    let reserved = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port();
    drop(reserved);
    let sidecar = start(&[("late", port)], &["--scrape_interval=1000"]);
    assert!(wait_until(Duration::from_secs(10), || {
        failures(&sidecar.metrics(), "late", "refused") >= 1.0
    }));
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let listening_since = Instant::now();
    let stub = Stub::start_on(listener, Behaviour::ContentLength(body("late", 1)));
    assert_serves(&sidecar, "late", "late", 1);
    let first_request = stub.request_times.lock().unwrap()[0];
    assert!(
        first_request.duration_since(listening_since) <= Duration::from_millis(2000),
        "first scrape {:?} after the container started listening",
        first_request.duration_since(listening_since)
    );
    // Not started yet is not a problem: waiting, at INFO, and no warning.
    let log = sidecar.stderr();
    assert!(log.contains("container late is up"), "{log}");
    assert!(
        log.contains(
            "INFO  [multiplexer::scrape::container] container late is not up yet, waiting (refused): "
        ),
        "{log}"
    );
    assert!(!log.contains("WARN"), "{log}");
}

/// The wiring of the cadence: both containers keep being scraped, and never
/// more often than the interval allows. The grid itself (fixed ticks, missed
/// ticks skipped) is timer.rs's `next_tick_keeps_the_grid_and_skips_missed_ticks`
/// on a fake clock; here only bounds that load cannot break are checked (a
/// loaded machine scrapes less often, never more), so the test cannot flake.
#[test]
fn each_container_is_scraped_at_the_configured_cadence() {
    let a = Stub::start(Behaviour::ContentLength(body("a", 1)));
    let b = Stub::start(Behaviour::Chunked(body("b", 1), 100));
    let _sidecar = start(&[("a", a.port), ("b", b.port)], &["--scrape_interval=100"]);
    assert!(wait_until(Duration::from_secs(10), || a.request_count()
        >= 3
        && b.request_count() >= 3));
    let (a_before, b_before) = (a.request_count(), b.request_count());
    let started = Instant::now();
    // Three more scrapes of each, however long a loaded machine takes.
    assert!(wait_until(Duration::from_secs(30), || a.request_count()
        >= a_before + 3
        && b.request_count() >= b_before + 3));
    let elapsed = started.elapsed().as_secs_f64();
    for (name, stub, before) in [("a", &a, a_before), ("b", &b, b_before)] {
        let count = (stub.request_count() - before) as f64;
        // One tick per 100 ms, plus the request in flight at each end.
        let most = elapsed / 0.1 + 2.0;
        assert!(
            count <= most,
            "{name}: {count} requests in {elapsed:.2} s, at most {most:.0} allowed"
        );
    }
}

#[test]
fn a_hung_container_does_not_stop_fresh_data_of_another() {
    let hung = Stub::start(Behaviour::HangBeforeHead);
    let live = Stub::start(Behaviour::ContentLength(body("live", 1)));
    let sidecar = start(
        &[("hung", hung.port), ("live", live.port)],
        &["--scrape_interval=100", "--scrape_timeout=5000"],
    );
    assert_serves(&sidecar, "live", "live", 1);
    for value in 2..5 {
        live.set(Behaviour::ContentLength(body("live", value)));
        assert_serves(&sidecar, "live", "live", value);
    }
    // The hung scrape is never doubled: one request in flight at a time.
    assert_eq!(hung.request_count(), 1);
}

#[test]
fn the_scrape_request_asks_for_text_and_identity() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // A container that refuses on port 1 beside it: its failures must
    // not disturb the request sent to the other.
    let _sidecar = start(
        &[("app", port)],
        &["--scrape_interval=100", "-mother:1/custom/path"],
    );
    let (mut stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        use std::io::Read;
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("GET /metrics HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("Host: 127.0.0.1:{port}\r\n")),
        "{head}"
    );
    assert!(head.contains("Accept: text/plain;version=0.0.4"), "{head}");
    assert!(head.contains("Accept-Encoding: identity\r\n"), "{head}");
    assert!(
        head.contains("User-Agent: metrics-multiplexer-sidecar/"),
        "{head}"
    );
}

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

/// A response that ended exactly at the size of a read left what followed it
/// in the socket, where no readiness edge reported it; the next scrape took
/// it as its answer and `smuggled 666` was served instead of `real 3`.
/// On-demand mode makes each scrape's outcome the answer to the request
/// that started it, so every outcome is seen.
#[test]
fn a_response_smuggled_after_a_body_that_ends_at_the_read_size_is_never_served() {
    let first = "real 1\n";
    let stub = Stub::start(Behaviour::ContentLength(first.to_string()));
    let sidecar = start(&[("app", stub.port)], &["--scrape_interval=0"]);
    let mut served = Vec::new();
    let mut scrape_until = |requests: usize| {
        let answered = wait_until(Duration::from_secs(10), || {
            served.push(sidecar.metrics());
            stub.request_count() >= requests
        });
        assert!(answered, "scrape {requests} never happened");
    };
    scrape_until(1);
    stub.set(Behaviour::Smuggling {
        body: "real 2\n".to_string(),
        size: first.len() + FIRST_READ_ROOM_FOR_THE_HEAD,
        smuggled: "smuggled 666\n".to_string(),
    });
    scrape_until(2);
    stub.set(Behaviour::ContentLength("real 3\n".to_string()));
    scrape_until(3);
    let last = served.last().unwrap();
    for metrics in &served {
        assert!(!metrics.contains("smuggled"), "served:\n{metrics}");
    }
    assert_eq!(
        lines_of(last, "container", "app"),
        ["real{container=\"app\"} 3"]
    );
    assert_eq!(failures(last, "app", "bad_response"), 1.0, "{last}");
    assert!(sidecar
        .stderr()
        .contains("bytes after the end of the response"));
}

/// Issue 19, item 5: a container listening on `[::1]` only (a Node.js app
/// listening on `localhost`, an exporter started with
/// `--web.listen-address=[::1]:9100`) was never scraped: the sidecar
/// connected to 127.0.0.1 only, and said after 60 s that the port might be
/// wrong. Now it connects to `::1` where 127.0.0.1 refuses, names the
/// address in the up line, and tries 127.0.0.1 again when `::1` refuses
/// later (the app restarted and listens there now).
#[test]
fn a_container_listening_on_the_ipv6_loopback_only_is_scraped() {
    let Ok(listener) = TcpListener::bind("[::1]:0") else {
        crate::util::skip(
            "a_container_listening_on_the_ipv6_loopback_only_is_scraped",
            "this host has no IPv6 loopback",
            true,
        );
        return;
    };
    let port = listener.local_addr().unwrap().port();
    let stub = Stub::start_on(listener, Behaviour::ContentLength(body("six", 6)));
    let sidecar = start(&[("app", port)], &["--scrape_interval=100"]);
    assert_serves(&sidecar, "app", "six", 6);
    let up_line = format!("container app is up on [::1]:{port}");
    assert!(sidecar.stderr().contains(&up_line), "{}", sidecar.stderr());

    // Restarted, the app listens on 127.0.0.1 only (the same port).
    drop(stub);
    let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) else {
        return; // Another process took the port meanwhile: nothing to see.
    };
    let _stub = Stub::start_on(listener, Behaviour::ContentLength(body("four", 4)));
    assert_serves(&sidecar, "app", "four", 4);
}
