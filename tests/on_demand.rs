//! `--scrape_interval=0`: the real binary scrapes only when asked. Each
//! request starts one round (one scrape per container), concurrent requests
//! join it, a hung container delays the answer only until the deadline, and
//! Prometheus' timeout header shortens that deadline.

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{
    container_args, lines_of, parse_response, try_get, up, Behaviour, Sidecar, Stub,
};

/// Longer than the sidecar's window in which a finished round's result is
/// reused (500 ms), so the next request starts a new round.
const PAST_REUSE_WINDOW: Duration = Duration::from_millis(700);

fn body(prefix: &str) -> String {
    format!(
        "# TYPE {prefix}_total counter\n{prefix}_total{{a=\"1\"}} 1\n{prefix}_total{{a=\"2\"}} 2\n"
    )
}

fn start(containers: &[(&str, u16)], extra: &[&str]) -> Sidecar {
    let mut args = container_args(containers);
    args.push("--scrape_interval=0".to_string());
    args.extend(extra.iter().map(|arg| arg.to_string()));
    Sidecar::start(&args)
}

#[test]
fn each_request_scrapes_each_container_exactly_once() {
    let a = Stub::start(Behaviour::ContentLength(body("a")));
    let b = Stub::start(Behaviour::Chunked(body("b"), 10));
    let sidecar = start(&[("a", a.port), ("b", b.port)], &[]);
    // Nothing is scraped before the first request.
    thread::sleep(PAST_REUSE_WINDOW);
    assert_eq!((a.request_count(), b.request_count()), (0, 0));
    for round in 1..=3 {
        let metrics = sidecar.metrics();
        assert_eq!(lines_of(&metrics, "container", "a").len(), 2, "{metrics}");
        assert_eq!(lines_of(&metrics, "container", "b").len(), 2, "{metrics}");
        assert_eq!(up(&metrics, "a"), Some(1.0));
        assert_eq!((a.request_count(), b.request_count()), (round, round));
        thread::sleep(PAST_REUSE_WINDOW);
        // And nothing between requests.
        assert_eq!((a.request_count(), b.request_count()), (round, round));
    }
}

#[test]
fn concurrent_requests_join_one_round() {
    let slow = Stub::start(Behaviour::Delayed(body("slow"), Duration::from_millis(600)));
    let fast = Stub::start(Behaviour::ContentLength(body("fast")));
    let sidecar = start(&[("slow", slow.port), ("fast", fast.port)], &[]);
    let port = sidecar.port;
    let clients: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                let response = try_get(port, "/metrics").unwrap();
                String::from_utf8(response.body).unwrap()
            })
        })
        .collect();
    for client in clients {
        let metrics = client.join().unwrap();
        assert_eq!(
            lines_of(&metrics, "container", "slow").len(),
            2,
            "{metrics}"
        );
        assert_eq!(
            lines_of(&metrics, "container", "fast").len(),
            2,
            "{metrics}"
        );
    }
    assert_eq!((slow.request_count(), fast.request_count()), (1, 1));
}

#[test]
fn a_hung_container_delays_the_answer_only_until_the_deadline() {
    let hung = Stub::start(Behaviour::HangBeforeHead);
    let live = Stub::start(Behaviour::ContentLength(body("live")));
    let sidecar = start(
        &[("hung", hung.port), ("live", live.port)],
        &["--scrape_timeout=1000"],
    );
    let started = Instant::now();
    let metrics = sidecar.metrics();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "answered after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}");
    assert_eq!(up(&metrics, "hung"), Some(0.0), "{metrics}");
    assert_eq!(up(&metrics, "live"), Some(1.0), "{metrics}");
    assert!(lines_of(&metrics, "container", "hung").is_empty());
    assert_eq!(lines_of(&metrics, "container", "live").len(), 2);
    assert!(metrics.contains("reason=\"timeout\"} 1"), "{metrics}");
}

#[test]
fn prometheus_timeout_header_shortens_the_deadline() {
    let hung = Stub::start(Behaviour::HangBeforeHead);
    let live = Stub::start(Behaviour::ContentLength(body("live")));
    let sidecar = start(
        &[("hung", hung.port), ("live", live.port)],
        &["--scrape_timeout=60000"],
    );
    let mut stream = TcpStream::connect(("127.0.0.1", sidecar.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    stream
        .write_all(
            b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
              X-Prometheus-Scrape-Timeout-Seconds: 1.5\r\n\r\n",
        )
        .unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut bytes).unwrap();
    let waited = started.elapsed();
    let (response, _) = parse_response(&bytes).unwrap();
    assert_eq!(response.status, 200);
    // 1.5 s less the margin (a tenth): answered at about 1.35 s, well
    // before the 60 s --scrape_timeout.
    assert!(
        waited >= Duration::from_millis(1200),
        "answered after {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "answered after {waited:?}"
    );
    let metrics = String::from_utf8(response.body).unwrap();
    assert_eq!(up(&metrics, "hung"), Some(0.0), "{metrics}");
    assert_eq!(lines_of(&metrics, "container", "live").len(), 2);
}

#[test]
fn requests_right_after_a_round_reuse_it() {
    let stub = Stub::start(Behaviour::ContentLength(body("a")));
    let sidecar = start(&[("a", stub.port)], &[]);
    let first = sidecar.get("/metrics").body;
    let answered = Instant::now();
    let second = sidecar.get("/metrics").body;
    // Only meaningful if the second request came within the window; on a
    // machine too busy for that, the second round is correct too.
    if answered.elapsed() < Duration::from_millis(400) {
        assert_eq!(stub.request_count(), 1);
        assert_eq!(first, second);
    } else {
        assert_eq!(stub.request_count(), 2);
    }
}
