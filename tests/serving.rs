//! The serving side of the real binary, attacked the way a pod's network can:
//! every response the server gives, keep-alive and pipelining, many, slow,
//! stalled, vanishing and malicious clients, signals, and the command lines
//! of the design's table. Waits are conditions with deadlines; the only time
//! bounds are the generous ones the issue sets (2 s for a normal client
//! while others misbehave, a few seconds to stop).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::rng::Rng;
use crate::util::{
    container_args, failures, lines_of, parse_response, raw_exchange, stalled_client, try_get, up,
    wait_until, Behaviour, Response, Sidecar, Stub,
};

const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Three samples in two families.
const APP_BODY: &str = "# HELP app_requests_total Requests.\n\
                        # TYPE app_requests_total counter\n\
                        app_requests_total{code=\"200\"} 7\n\
                        app_requests_total{code=\"500\"} 1\n\
                        # TYPE app_temperature gauge\n\
                        app_temperature 21.5\n";
const APP_SAMPLES: usize = 3;

/// A sidecar scraping one stub as container `app`, once it serves the
/// stub's samples. `extra` flags are appended.
fn start_app(behaviour: Behaviour, extra: &[&str]) -> (Stub, Sidecar) {
    let stub = Stub::start(behaviour);
    let mut args = vec![format!("-mapp:{}", stub.port)];
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let sidecar = Sidecar::start(&args);
    wait_for_samples(&sidecar, "/metrics", "container", "app", 1);
    (stub, sidecar)
}

/// Waits until `path` serves at least `count` samples of container `name`.
fn wait_for_samples(sidecar: &Sidecar, path: &str, label: &str, name: &str, count: usize) {
    let served = wait_until(Duration::from_secs(10), || {
        let response = sidecar.get(path);
        response.status == 200
            && lines_of(&String::from_utf8_lossy(&response.body), label, name).len() >= count
    });
    assert!(
        served,
        "{name} not served on {path}; last:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&sidecar.get(path).body),
        sidecar.stderr()
    );
}

/// A body of about `size` bytes of valid samples, as `Behaviour::Huge`.
/// The app serving a body of about 2 MiB (larger than socket buffers),
/// once the sidecar serves it.
fn start_with_large_body(extra: &[&str]) -> (Stub, Sidecar) {
    let (stub, sidecar) = start_app(Behaviour::Huge(2 << 20), extra);
    assert!(wait_until(Duration::from_secs(10), || sidecar
        .get("/metrics")
        .body
        .len()
        > 2 << 20));
    (stub, sidecar)
}

/// One client connection reading responses one at a time.
struct Connection {
    stream: TcpStream,
    received: Vec<u8>,
}

impl Connection {
    fn open(port: u16) -> Connection {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Connection {
            stream,
            received: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    fn get(&mut self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        self.response(false).expect("a response")
    }

    /// Reads one whole response; for a HEAD request (`head_only`) the
    /// Content-Length describes a body that is not sent.
    fn response(&mut self, head_only: bool) -> std::io::Result<Response> {
        let mut buffer = [0u8; 64 * 1024];
        loop {
            if let Some((response, used)) = split_response(&self.received, head_only)? {
                self.received.drain(..used);
                return Ok(response);
            }
            let read = self.stream.read(&mut buffer)?;
            if read == 0 {
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("closed after {} bytes", self.received.len()),
                ));
            }
            self.received.extend_from_slice(&buffer[..read]);
        }
    }

    /// Whether the server closed the connection (end of stream or reset)
    /// within `limit`, with nothing more sent.
    fn closed_within(&mut self, limit: Duration) -> bool {
        self.stream.set_read_timeout(Some(limit)).unwrap();
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => panic!("unexpected bytes after the response"),
            Err(error) => matches!(
                error.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
            ),
        }
    }
}

/// Splits one response off the start of `bytes`, if it is all there.
fn split_response(bytes: &[u8], head_only: bool) -> std::io::Result<Option<(Response, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut headers);
    let head_length = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                format!("{error}: {:?}", String::from_utf8_lossy(bytes)),
            ))
        }
    };
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|header| {
            (
                header.name.to_string(),
                String::from_utf8_lossy(header.value).into_owned(),
            )
        })
        .collect();
    let content_length: usize = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse().ok())
        .expect("every response has a Content-Length");
    let body_length = if head_only { 0 } else { content_length };
    if bytes.len() < head_length + body_length {
        return Ok(None);
    }
    let response = Response {
        status: parsed.code.unwrap_or(0),
        headers,
        body: bytes[head_length..head_length + body_length].to_vec(),
    };
    Ok(Some((response, head_length + body_length)))
}

/// Sends `request`, half-closes, and reads everything until the server
/// closes. A reset counts as a close.
fn exchange_half_closed(port: u16, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    // The server may close before taking everything (a 400 on the first
    // bad byte): a failed write is one way of being closed.
    let _ = stream.write_all(request);
    let _ = stream.shutdown(Shutdown::Write);
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return bytes,
            Ok(read) => bytes.extend_from_slice(&buffer[..read]),
            Err(error) if error.kind() == ErrorKind::ConnectionReset => return bytes,
            Err(error) => panic!("{error} after {} bytes", bytes.len()),
        }
    }
}

fn status_of(bytes: &[u8]) -> Option<u16> {
    split_response(bytes, false)
        .ok()
        .flatten()
        .map(|(response, _)| response.status)
}

fn assert_alive(sidecar: &mut Sidecar) {
    assert!(
        sidecar.child.try_wait().unwrap().is_none(),
        "sidecar died; stderr:\n{}",
        sidecar.stderr()
    );
    let response = sidecar.get("/metrics");
    assert_eq!(response.status, 200);
    assert_eq!(
        lines_of(&String::from_utf8_lossy(&response.body), "container", "app").len(),
        APP_SAMPLES
    );
}

// ---- every response ---------------------------------------------------------

#[test]
fn get_metrics_is_200_with_exact_content_type_and_length() {
    let (_stub, sidecar) = start_app(Behaviour::ContentLength(APP_BODY.into()), &[]);
    let raw = raw_exchange(
        sidecar.port,
        b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let (response, used) = parse_response(&raw).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("Content-Type"), Some(METRICS_CONTENT_TYPE));
    assert_eq!(
        response.header("Content-Length"),
        Some(response.body.len().to_string().as_str())
    );
    assert_eq!(used, raw.len(), "bytes after the announced body");
    let body = String::from_utf8(response.body).unwrap();
    let app = lines_of(&body, "container", "app");
    assert_eq!(
        app,
        [
            "app_requests_total{code=\"200\",container=\"app\"} 7",
            "app_requests_total{code=\"500\",container=\"app\"} 1",
            "app_temperature{container=\"app\"} 21.5",
        ]
    );
    assert!(
        body.contains("multiplexer_up{container=\"app\"} 1\n"),
        "{body}"
    );
}

#[test]
fn head_is_the_same_head_without_a_body() {
    // A long interval keeps the merged body the same between the requests.
    let (_stub, sidecar) = start_app(
        Behaviour::ContentLength(APP_BODY.into()),
        &["--scrape_interval=60000"],
    );
    let mut connection = Connection::open(sidecar.port);
    connection.send(b"HEAD /metrics HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n");
    let head = connection.response(true).unwrap();
    let get = connection.response(false).unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.headers, get.headers);
    assert!(!get.body.is_empty());
    // HEAD with close: nothing follows the head.
    let raw = raw_exchange(
        sidecar.port,
        b"HEAD /metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let text = String::from_utf8(raw).unwrap();
    assert!(text.ends_with("\r\n\r\n"), "{text:?}");
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
}

/// Each request alone on a connection, with its exact status and the
/// headers that matter.
#[test]
fn every_route_and_method() {
    let (_stub, sidecar) = start_app(Behaviour::ContentLength(APP_BODY.into()), &[]);
    let cases: &[(&str, u16, Option<&str>)] = &[
        ("GET /metrics HTTP/1.1", 200, Some(METRICS_CONTENT_TYPE)),
        (
            "GET /metrics?x=1&y=%20 HTTP/1.1",
            200,
            Some(METRICS_CONTENT_TYPE),
        ),
        ("GET /metrics? HTTP/1.1", 200, Some(METRICS_CONTENT_TYPE)),
        ("GET /metrics HTTP/1.0", 200, Some(METRICS_CONTENT_TYPE)),
        ("GET /healthz HTTP/1.1", 200, None),
        ("GET /healthz?probe=1 HTTP/1.1", 200, None),
        ("POST /metrics HTTP/1.1", 405, None),
        ("PUT /metrics HTTP/1.1", 405, None),
        ("DELETE /healthz HTTP/1.1", 405, None),
        ("OPTIONS /metrics HTTP/1.1", 405, None),
        ("GET / HTTP/1.1", 200, Some("text/html; charset=utf-8")),
        (
            "GET /?from=browser HTTP/1.1",
            200,
            Some("text/html; charset=utf-8"),
        ),
        ("POST / HTTP/1.1", 405, None),
        ("GET //metrics HTTP/1.1", 404, None),
        ("GET /metrics/ HTTP/1.1", 404, None),
        ("GET /METRICS HTTP/1.1", 404, None),
        ("GET /stats HTTP/1.1", 404, None),
        ("POST /nowhere HTTP/1.1", 404, None),
    ];
    for (line, status, content_type) in cases {
        let request = format!("{line}\r\nHost: test\r\nConnection: close\r\n\r\n");
        let raw = raw_exchange(sidecar.port, request.as_bytes()).unwrap();
        let (response, used) = parse_response(&raw).unwrap();
        assert_eq!(response.status, *status, "{line}");
        assert_eq!(used, raw.len(), "{line}");
        if let Some(content_type) = content_type {
            assert_eq!(
                response.header("Content-Type"),
                Some(*content_type),
                "{line}"
            );
        }
        match status {
            405 => assert_eq!(response.header("Allow"), Some("GET, HEAD"), "{line}"),
            _ => assert_eq!(response.header("Allow"), None, "{line}"),
        }
        if line.starts_with("GET /healthz") {
            assert_eq!(response.body, b"ok\n");
        }
        if line.starts_with("GET / ") {
            let page = String::from_utf8_lossy(&response.body);
            assert!(page.contains("<a href=\"/metrics\">/metrics</a>"), "{page}");
        }
    }
}

/// Requests that are not HTTP/1.x requests the server can answer: 400, then
/// the connection is closed.
#[test]
fn malformed_requests_are_400_and_closed() {
    let (_stub, mut sidecar) = start_app(Behaviour::ContentLength(APP_BODY.into()), &[]);
    let cases: &[&[u8]] = &[
        b"GET /metrics SPDY/3\r\n\r\n",
        b"GET /metrics HTTP/2.0\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /metrics\r\n\r\n",
        b"GET  /metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ];
    for request in cases {
        let raw = exchange_half_closed(sidecar.port, request);
        let (response, used) = parse_response(&raw)
            .unwrap_or_else(|error| panic!("{error} for {:?}", String::from_utf8_lossy(request)));
        assert_eq!(
            response.status,
            400,
            "{:?}",
            String::from_utf8_lossy(request)
        );
        assert_eq!(response.header("Connection"), Some("close"));
        assert_eq!(used, raw.len());
    }
    assert_alive(&mut sidecar);
}

#[test]
fn oversized_heads_are_431() {
    let (_stub, mut sidecar) = start_app(Behaviour::ContentLength(APP_BODY.into()), &[]);
    let long_header = format!(
        "GET /metrics HTTP/1.1\r\nX-Long: {}\r\n\r\n",
        "a".repeat(5000)
    );
    let long_target = format!("GET /metrics?{} HTTP/1.1\r\n\r\n", "q".repeat(5000));
    let many_headers = format!(
        "GET /metrics HTTP/1.1\r\n{}\r\n",
        (0..40).map(|i| format!("H{i}: v\r\n")).collect::<String>()
    );
    // One byte over the limit, and far above it (the server stops reading).
    let over_limit = format!(
        "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
        "b".repeat(4096 - 30 + 1)
    );
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
        "c".repeat(1 << 20)
    );
    for request in [long_header, long_target, many_headers, over_limit, huge] {
        let mut stream = TcpStream::connect(("127.0.0.1", sidecar.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let writer = {
            let mut stream = stream.try_clone().unwrap();
            let request = request.clone();
            // The server may close before the whole request is sent.
            thread::spawn(move || {
                let _ = stream.write_all(request.as_bytes());
            })
        };
        let mut raw = Vec::new();
        let mut buffer = [0u8; 4096];
        let outcome = loop {
            match stream.read(&mut buffer) {
                Ok(0) => break Ok(()),
                Ok(read) => raw.extend_from_slice(&buffer[..read]),
                Err(error) => break Err(error),
            }
        };
        let _ = writer.join();
        let head = &request[..40.min(request.len())];
        let response = parse_response(&raw).unwrap_or_else(|error| {
            panic!(
                "{error} for {head:?} ({} bytes), read ended with {outcome:?}",
                request.len()
            )
        });
        assert_eq!(response.0.status, 431, "{head:?}");
        assert_eq!(response.0.header("Connection"), Some("close"), "{head:?}");
    }
    // A head of exactly the limit is accepted.
    let at_limit = format!(
        "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
        "b".repeat(4096 - 30)
    );
    assert_eq!(at_limit.len(), 4096);
    let raw = exchange_half_closed(sidecar.port, at_limit.as_bytes());
    assert_eq!(status_of(&raw), Some(200));
    assert_alive(&mut sidecar);
}

#[test]
fn custom_endpoint_is_served_and_metrics_is_then_404() {
    for flag in ["--endpoint=/stats", "-p/stats"] {
        let stub = Stub::start(Behaviour::ContentLength(APP_BODY.into()));
        let sidecar = Sidecar::start(&[format!("-mapp:{}", stub.port), flag.to_string()]);
        wait_for_samples(&sidecar, "/stats", "container", "app", APP_SAMPLES);
        let response = sidecar.get("/stats");
        assert_eq!(response.header("Content-Type"), Some(METRICS_CONTENT_TYPE));
        assert_eq!(sidecar.get("/metrics").status, 404, "{flag}");
        assert_eq!(sidecar.get("/healthz").status, 200, "{flag}");
        // The landing page links the endpoint in use.
        let page = String::from_utf8(sidecar.get("/").body).unwrap();
        assert!(page.contains("<a href=\"/stats\">/stats</a>"), "{page}");
    }
}

// ---- connections ------------------------------------------------------------

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let (_stub, sidecar) = start_app(Behaviour::ContentLength(APP_BODY.into()), &[]);
    let mut connection = Connection::open(sidecar.port);
    for _ in 0..5 {
        let response = connection.get("/metrics");
        assert_eq!(response.status, 200);
        assert_eq!(response.header("Connection"), Some("keep-alive"));
        let body = String::from_utf8(response.body).unwrap();
        assert_eq!(lines_of(&body, "container", "app").len(), APP_SAMPLES);
        assert_eq!(connection.get("/healthz").status, 200);
        assert_eq!(connection.get("/nope").status, 404);
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (_stub, sidecar) = start_app(Behaviour::ContentLength(APP_BODY.into()), &[]);
    let requests: [(&str, u16); 10] = [
        ("GET /metrics", 200),
        ("GET /healthz", 200),
        ("GET /a", 404),
        ("HEAD /metrics", 200),
        ("POST /metrics", 405),
        ("GET /metrics?x", 200),
        ("GET /b", 404),
        ("HEAD /healthz", 200),
        ("GET /metrics", 200),
        ("GET /healthz", 200),
    ];
    let all: String = requests
        .iter()
        .map(|(line, _)| format!("{line} HTTP/1.1\r\nHost: test\r\n\r\n"))
        .collect();
    let mut connection = Connection::open(sidecar.port);
    connection.send(all.as_bytes());
    for (line, status) in requests {
        let response = connection
            .response(line.starts_with("HEAD"))
            .unwrap_or_else(|error| panic!("{line}: {error}"));
        assert_eq!(response.status, status, "{line}");
        if line.starts_with("GET /healthz") {
            assert_eq!(response.body, b"ok\n", "{line}");
        }
    }
    // Still open and usable.
    assert_eq!(connection.get("/healthz").status, 200);
}

#[test]
fn connection_close_is_honoured() {
    let (_stub, sidecar) = start_app(Behaviour::ContentLength(APP_BODY.into()), &[]);
    let mut connection = Connection::open(sidecar.port);
    // A request pipelined after the closing one is never answered.
    connection
        .send(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n");
    let response = connection.response(false).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("Connection"), Some("close"));
    assert!(connection.closed_within(Duration::from_secs(10)));
}

#[test]
fn http10_closes_unless_keep_alive_is_asked() {
    let (_stub, sidecar) = start_app(Behaviour::ContentLength(APP_BODY.into()), &[]);
    let mut connection = Connection::open(sidecar.port);
    connection.send(b"GET /metrics HTTP/1.0\r\n\r\n");
    let response = connection.response(false).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("Connection"), Some("close"));
    assert!(connection.closed_within(Duration::from_secs(10)));

    let mut connection = Connection::open(sidecar.port);
    for _ in 0..3 {
        connection.send(b"GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let response = connection.response(false).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("Connection"), Some("keep-alive"));
    }
    assert!(!connection.closed_within(Duration::from_millis(200)));
}

// ---- the shared body ----------------------------------------------------------

#[test]
fn two_scrapers_1ms_apart_get_the_same_samples() {
    // At the default interval: the same samples (own metrics may move).
    let (_stub, sidecar) = start_app(Behaviour::ContentLength(APP_BODY.into()), &[]);
    let (mut first, mut second) = (
        Connection::open(sidecar.port),
        Connection::open(sidecar.port),
    );
    for _ in 0..20 {
        let a = first.get("/metrics");
        thread::sleep(Duration::from_millis(1));
        let b = second.get("/metrics");
        let (a, b) = (
            String::from_utf8(a.body).unwrap(),
            String::from_utf8(b.body).unwrap(),
        );
        assert_eq!(lines_of(&a, "container", "app").len(), APP_SAMPLES, "{a}");
        assert_eq!(
            lines_of(&a, "container", "app"),
            lines_of(&b, "container", "app")
        );
    }
    // With no scrape in between: the very same bytes.
    let (_stub, sidecar) = start_app(
        Behaviour::ContentLength(APP_BODY.into()),
        &["--scrape_interval=60000"],
    );
    let a = sidecar.get("/metrics");
    thread::sleep(Duration::from_millis(1));
    let b = sidecar.get("/metrics");
    assert_eq!(a.body, b.body);
}

#[test]
fn three_hundred_concurrent_clients_are_all_served() {
    let (_stub, sidecar) = start_app(Behaviour::ContentLength(APP_BODY.into()), &[]);
    let clients = 300;
    let barrier = Arc::new(Barrier::new(clients));
    let port = sidecar.port;
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                barrier.wait();
                stream
                    .write_all(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
                    .unwrap();
                let mut raw = Vec::new();
                stream.read_to_end(&mut raw).unwrap();
                raw
            })
        })
        .collect();
    for handle in handles {
        let raw = handle.join().unwrap();
        let (response, used) = parse_response(&raw).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(used, raw.len());
        let body = String::from_utf8(response.body).unwrap();
        assert_eq!(lines_of(&body, "container", "app").len(), APP_SAMPLES);
    }
}

// ---- hostile clients ----------------------------------------------------------

/// A normal client's `GET /metrics` on a fresh connection, and how long it
/// took.
fn timed_get(port: u16) -> (Response, Duration) {
    let start = Instant::now();
    let response = try_get(port, "/metrics").expect("a normal client is answered");
    (response, start.elapsed())
}

#[test]
fn slowloris_clients_do_not_delay_a_normal_client_and_are_closed() {
    let (_stub, mut sidecar) = start_app(Behaviour::ContentLength(APP_BODY.into()), &[]);
    let port = sidecar.port;
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Instant::now();
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
                .unwrap();
            stream
        })
        .collect();
    // One byte per connection every 100 ms, never ending the head.
    let dripper = {
        let mut streams: Vec<TcpStream> = slow.iter().map(|s| s.try_clone().unwrap()).collect();
        let stop = stop.clone();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for stream in &mut streams {
                    let _ = stream.write_all(b"a");
                }
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    for _ in 0..10 {
        let (response, took) = timed_get(port);
        assert_eq!(response.status, 200);
        assert!(took < Duration::from_secs(2), "took {took:?}");
        thread::sleep(Duration::from_millis(100));
    }
    // The request head timeout (10 s from the first byte) closes them
    // although they keep sending.
    for stream in &mut slow {
        let remaining = Duration::from_secs(20).saturating_sub(opened.elapsed());
        stream
            .set_read_timeout(Some(remaining.max(Duration::from_millis(1))))
            .unwrap();
        let mut buffer = [0u8; 1];
        match stream.read(&mut buffer) {
            Ok(0) => {}
            Ok(_) => panic!("a slowloris client was answered"),
            Err(error) => assert!(
                matches!(
                    error.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ),
                "not closed 20 s after opening: {error}"
            ),
        }
    }
    assert!(
        opened.elapsed() >= Duration::from_secs(9),
        "closed too early"
    );
    stop.store(true, Ordering::Relaxed);
    dripper.join().unwrap();
    assert_alive(&mut sidecar);
}

#[test]
fn clients_that_disconnect_mid_body_do_not_harm_others() {
    let (_stub, mut sidecar) = start_with_large_body(&["--scrape_interval=1000"]);
    let huge_body = |sidecar: &Sidecar| {
        let response = sidecar.get("/metrics");
        assert_eq!(response.status, 200);
        response.body.len()
    };
    for round in 0..20 {
        let mut connection = Connection::open(sidecar.port);
        connection.send(b"GET /metrics HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n");
        let mut some = vec![0u8; 10_000];
        connection.stream.read_exact(&mut some).unwrap();
        if round % 2 == 0 {
            // Unread bytes make this a reset rather than an orderly close.
            drop(connection);
        } else {
            connection.stream.shutdown(Shutdown::Both).unwrap();
        }
    }
    assert!(huge_body(&sidecar) > 2 << 20);
    assert_eq!(sidecar.get("/healthz").status, 200);
    assert!(sidecar.child.try_wait().unwrap().is_none());
    let _ = &mut sidecar;
}

#[test]
fn a_client_that_never_reads_does_not_delay_others() {
    let (_stub, sidecar) = start_with_large_body(&[]);
    // Ten stalled clients, each with 20 pipelined requests of 2 MiB that
    // they never read.
    let stalled: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", sidecar.port)).unwrap();
            let requests = "GET /metrics HTTP/1.1\r\n\r\n".repeat(20);
            stream.write_all(requests.as_bytes()).unwrap();
            stream
        })
        .collect();
    for _ in 0..10 {
        let (response, took) = timed_get(sidecar.port);
        assert_eq!(response.status, 200);
        assert!(response.body.len() > 2 << 20);
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }
    drop(stalled);
    assert_eq!(sidecar.get("/healthz").status, 200);
}

/// The same "random" bytes every run for a given seed.
fn pseudo_random_bytes(seed: u64, length: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed + 1);
    (0..length).map(|_| (rng.next_u64() >> 56) as u8).collect()
}

/// The start of a TLS 1.2/1.3 ClientHello, as a client with the wrong
/// scheme sends.
const TLS_CLIENT_HELLO: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\
    \x8a\x1f\x3c\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\
    \x20\x00\x3e\x13\x02\x13\x03\x13\x01\xc0\x2c\xc0\x30\x00\x9f\xcc\xa9";

#[test]
fn garbage_is_rejected_or_closed_and_the_sidecar_keeps_serving() {
    let (_stub, mut sidecar) = start_app(Behaviour::ContentLength(APP_BODY.into()), &[]);
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("tls client hello".into(), TLS_CLIENT_HELLO.to_vec()),
        ("zeroes".into(), vec![0u8; 10_000]),
        ("one zero".into(), vec![0u8]),
        ("long line".into(), vec![b'A'; 100_000]),
        ("long line with end".into(), {
            let mut line = vec![b'G'; 20_000];
            line.extend_from_slice(b"\r\n\r\n");
            line
        }),
        ("newlines".into(), b"\n\n\n\n\n\n".to_vec()),
        ("empty lines".into(), b"\r\n\r\n".to_vec()),
        (
            "nul in path".into(),
            b"GET /met\0rics HTTP/1.1\r\n\r\n".to_vec(),
        ),
        (
            "utf-8 path".into(),
            "GET /métriques HTTP/1.1\r\n\r\n".into(),
        ),
        (
            "header without end".into(),
            b"GET /metrics HTTP/1.1\r\nHost: x".to_vec(),
        ),
        ("nothing".into(), Vec::new()),
    ];
    for seed in 0..20u64 {
        cases.push((
            format!("random {seed}"),
            pseudo_random_bytes(seed, 1 + (seed as usize * 997) % 9000),
        ));
    }
    for (name, bytes) in &cases {
        let raw = exchange_half_closed(sidecar.port, bytes);
        if !raw.is_empty() {
            let status = status_of(&raw);
            assert!(
                matches!(status, Some(400 | 404 | 431)),
                "{name}: {:?}",
                String::from_utf8_lossy(&raw)
            );
        }
        assert!(
            sidecar.child.try_wait().unwrap().is_none(),
            "{name} killed the sidecar:\n{}",
            sidecar.stderr()
        );
    }
    // RFC 9112 §2.2 lets a server accept a bare LF as a line end; httparse
    // does, so this one is a valid request.
    let raw = exchange_half_closed(sidecar.port, b"GET /metrics HTTP/1.1\n\n");
    assert_eq!(status_of(&raw), Some(200));
    assert_alive(&mut sidecar);
}

// ---- signals --------------------------------------------------------------------

#[test]
fn sigterm_and_sigint_end_with_status_0() {
    for signal in ["-TERM", "-INT"] {
        let (_stub, mut sidecar) = start_app(Behaviour::ContentLength(APP_BODY.into()), &[]);
        // Open clients, idle and mid-request, do not hold the process.
        let mut idle = Connection::open(sidecar.port);
        assert_eq!(idle.get("/healthz").status, 200);
        let mut partial = TcpStream::connect(("127.0.0.1", sidecar.port)).unwrap();
        partial.write_all(b"GET /metr").unwrap();
        let status = Command::new("kill")
            .args([signal, &sidecar.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut exit = None;
        assert!(
            wait_until(Duration::from_secs(5), || {
                exit = sidecar.child.try_wait().unwrap();
                exit.is_some()
            }),
            "{signal}: still running"
        );
        assert_eq!(
            exit.unwrap().code(),
            Some(0),
            "{signal}: {}",
            sidecar.stderr()
        );
    }
}

#[test]
fn sighup_is_ignored_and_logged() {
    let (_stub, mut sidecar) = start_app(Behaviour::ContentLength(APP_BODY.into()), &[]);
    let status = Command::new("kill")
        .args(["-HUP", &sidecar.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(wait_until(Duration::from_secs(5), || sidecar
        .stderr()
        .contains("SIGHUP ignored")));
    assert_eq!(
        sidecar.child.try_wait().unwrap(),
        None,
        "SIGHUP ended the process"
    );
    assert_alive(&mut sidecar);
}

// ---- command lines from the design's table --------------------------------------

#[test]
fn container_path_from_the_map_is_scraped() {
    let custom = Stub::start(Behaviour::ContentLength(APP_BODY.into()));
    let plain = Stub::start(Behaviour::ContentLength("other_metric 1\n".into()));
    let sidecar = Sidecar::start(&[
        format!("-menvoy:{}/stats/prometheus", custom.port),
        format!("--container_to_port_map=app:{}", plain.port),
    ]);
    wait_for_samples(&sidecar, "/metrics", "container", "envoy", APP_SAMPLES);
    wait_for_samples(&sidecar, "/metrics", "container", "app", 1);
    assert_eq!(custom.targets(), ["/stats/prometheus"]);
    assert_eq!(plain.targets(), ["/metrics"]);
}

#[test]
fn endpoint_flag_is_also_the_path_scraped() {
    let stub = Stub::start(Behaviour::ContentLength(APP_BODY.into()));
    let sidecar = Sidecar::start(&[
        "-m".into(),
        format!("app:{}", stub.port),
        "-p".into(),
        "/stats".into(),
    ]);
    wait_for_samples(&sidecar, "/stats", "container", "app", APP_SAMPLES);
    assert_eq!(stub.targets(), ["/stats"]);
}

#[test]
fn excluded_containers_are_not_scraped() {
    let kept = Stub::start(Behaviour::ContentLength(APP_BODY.into()));
    let excluded: Vec<Stub> = (0..3)
        .map(|_| Stub::start(Behaviour::ContentLength("excluded_metric 1\n".into())))
        .collect();
    let sidecar = Sidecar::start(&[
        format!("-mapp:{}", kept.port),
        "-m".into(),
        format!("b:{}", excluded[0].port),
        format!("-mc:{}", excluded[1].port),
        format!("--container_to_port_map=d:{}", excluded[2].port),
        "-xb".into(),
        "--exclude_containers".into(),
        "c,d".into(),
    ]);
    wait_for_samples(&sidecar, "/metrics", "container", "app", APP_SAMPLES);
    // Several scrapes of the kept container later...
    assert!(wait_until(Duration::from_secs(10), || kept.targets().len()
        == 1
        && kept.request_count() >= 5));
    let metrics = sidecar.metrics();
    assert!(!metrics.contains("excluded_metric"), "{metrics}");
    for (name, stub) in ["b", "c", "d"].iter().zip(&excluded) {
        assert!(stub.request_count() == 0, "{name}");
        assert!(
            !metrics.contains(&format!("container=\"{name}\"")),
            "{metrics}"
        );
    }
}

#[test]
fn container_label_flag_renames_the_label() {
    for flag in ["-npod_container", "--container_label=pod_container"] {
        let stub = Stub::start(Behaviour::ContentLength(APP_BODY.into()));
        let sidecar = Sidecar::start(&[format!("-mapp:{}", stub.port), flag.to_string()]);
        wait_for_samples(&sidecar, "/metrics", "pod_container", "app", APP_SAMPLES);
        let metrics = sidecar.metrics();
        assert!(
            !metrics.contains("container=\"app\"") || metrics.contains("pod_container=\"app\"")
        );
        assert!(
            metrics.contains("multiplexer_up{pod_container=\"app\"} 1"),
            "{flag}:\n{metrics}"
        );
        assert!(
            !metrics.contains(",container=\"app\""),
            "{flag}:\n{metrics}"
        );
        assert!(
            !metrics.contains("{container=\"app\""),
            "{flag}:\n{metrics}"
        );
    }
}

// ---- the connection cap ---------------------------------------------------------

/// 600 connections that never send a request, more than the cap of 512:
/// each one past the cap takes the room of the longest-idle client (issue
/// 19, item 3; before, they waited in the kernel's accept queue, and a
/// normal client behind them too, until some left). A normal client behind
/// them is answered, and the connections closed to make room are the
/// oldest ones, the newer ones stay open.
#[test]
fn connections_over_the_cap_take_the_room_of_the_longest_idle() {
    let (_stub, mut sidecar) = start_app(Behaviour::ContentLength(APP_BODY.into()), &[]);
    let port = sidecar.port;
    let mut idle: Vec<TcpStream> = (0..600)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("the accept queue takes it"))
        .collect();
    let mut queued = Connection::open(port);
    assert_eq!(queued.get("/metrics").status, 200);
    // Accepted in order, ours last: 88 over the cap and ours closed as many
    // of the oldest (one more for each slot an earlier client still held).
    let mut byte = [0u8; 1];
    let open: Vec<bool> = idle
        .iter_mut()
        .map(|stream| {
            stream.set_nonblocking(true).unwrap();
            match stream.peek(&mut byte) {
                Err(error) if error.kind() == ErrorKind::WouldBlock => true,
                Ok(0) => false,
                Err(error) if error.kind() == ErrorKind::ConnectionReset => false,
                other => panic!("{other:?}"),
            }
        })
        .collect();
    let closed = open.iter().take_while(|open| !**open).count();
    assert!(
        (89..100).contains(&closed),
        "{closed} oldest closed to make room"
    );
    assert!(
        open[closed..].iter().all(|open| *open),
        "a newer connection was closed before an older one"
    );
    drop(idle);
    assert_alive(&mut sidecar);
}

// ---- regressions ------------------------------------------------------------------

/// Bug: after answering a request that asked to close (or a 400/431), the
/// server closed the socket with request bytes still unread in the kernel.
/// Linux then sends a reset instead of a FIN and throws away the part of the
/// response still in the send buffer: the client got a truncated body and
/// "connection reset". RFC 9112 §9.6: close the sending side first, then
/// drain what the client still sends ("lingering close").
#[test]
fn close_with_unread_request_bytes_truncated_the_body() {
    let (_stub, sidecar) = start_with_large_body(&["--scrape_interval=60000"]);
    for _ in 0..3 {
        let mut connection = Connection::open(sidecar.port);
        // More than the server's 4 KiB request buffer follows the closing
        // request, so some of it is still unread when the body is written.
        let mut request = b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec();
        request.extend(b"GET /healthz HTTP/1.1\r\n\r\n".repeat(400));
        connection.send(&request);
        // Let the server fill the socket buffers before reading.
        thread::sleep(Duration::from_millis(200));
        let response = connection
            .response(false)
            .expect("the whole response, not a reset");
        assert_eq!(response.status, 200);
        assert!(response.body.len() > 2 << 20);
        assert!(connection.closed_within(Duration::from_secs(10)));
    }
}

/// Clients that pipeline many requests for a 2 MiB body and read as fast
/// as they can do not hold the loop: a normal client is still answered.
#[test]
fn a_fast_pipelining_client_does_not_monopolise_the_loop() {
    let (_stub, sidecar) = start_with_large_body(&["--scrape_interval=60000"]);
    // Greedy clients: 100 pipelined requests at a time, written and read
    // as fast as the server goes.
    let streams: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(("127.0.0.1", sidecar.port)).unwrap())
        .collect();
    let mut greedy = Vec::new();
    for stream in &streams {
        let mut writer = stream.try_clone().unwrap();
        let mut reader = stream.try_clone().unwrap();
        greedy.push(thread::spawn(move || {
            let requests = "GET /metrics HTTP/1.1\r\n\r\n".repeat(100);
            while writer.write_all(requests.as_bytes()).is_ok() {}
            0
        }));
        greedy.push(thread::spawn(move || {
            let mut buffer = vec![0u8; 1 << 20];
            let mut total = 0usize;
            while let Ok(read) = reader.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                total += read;
            }
            total
        }));
    }
    thread::sleep(Duration::from_millis(300));
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let start = Instant::now();
        assert_eq!(try_get(sidecar.port, "/healthz").unwrap().status, 200);
        slowest = slowest.max(start.elapsed());
    }
    for stream in &streams {
        stream.shutdown(Shutdown::Both).unwrap();
    }
    let served: usize = greedy.into_iter().map(|g| g.join().unwrap()).sum();
    eprintln!(
        "slowest healthz {slowest:?}, greedy clients read {} MiB",
        served >> 20
    );
    assert!(slowest < Duration::from_secs(2), "slowest {slowest:?}");
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
        let (response, _) = parse_response(&bytes).unwrap();
        assert_eq!(response.status, 200, "{target}");
    }
}

/// Issue 11, item 2: a client that pipelines `/healthz` without a pause (and
/// reads every answer) gets a turn like any other client, not the loop:
/// another client is answered while the flood still goes on, and the
/// container is scraped meanwhile. Before the budget per turn, the loop
/// answered the greedy client for as long as its input held a request,
/// which was until it stopped sending.
#[test]
fn a_pipelining_flood_leaves_turns_to_other_clients_and_to_scrapes() {
    let (stub, sidecar) = start_app(
        Behaviour::ContentLength(APP_BODY.to_string()),
        &["--scrape_interval=100"],
    );
    let greedy = TcpStream::connect(("127.0.0.1", sidecar.port)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicUsize::new(0));
    let writer = {
        let mut stream = greedy.try_clone().unwrap();
        let stop = stop.clone();
        thread::spawn(move || {
            let requests = "GET /healthz HTTP/1.1\r\nHost: g\r\n\r\n".repeat(1000);
            while !stop.load(Ordering::Relaxed) && stream.write_all(requests.as_bytes()).is_ok() {}
        })
    };
    let reader = {
        let mut stream = greedy.try_clone().unwrap();
        let received = received.clone();
        thread::spawn(move || {
            let mut buffer = vec![0u8; 1 << 16];
            while let Ok(read) = stream.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                received.fetch_add(read, Ordering::Relaxed);
            }
        })
    };
    // The flood is under way: a thousand answers or so.
    assert!(wait_until(Duration::from_secs(10), || {
        received.load(Ordering::Relaxed) > 100_000
    }));
    let scrapes_before = stub.request_count();

    // Another client's /healthz is answered (try_get gives up after 10 s)...
    let answer = try_get(sidecar.port, "/healthz");
    let flooding = !writer.is_finished();
    // ... and the container is scraped, while the flood goes on.
    let scraped = wait_until(Duration::from_secs(10), || {
        stub.request_count() >= scrapes_before + 3
    });
    let still_flooding = !writer.is_finished();
    stop.store(true, Ordering::Relaxed);
    greedy.shutdown(Shutdown::Both).unwrap();
    writer.join().unwrap();
    reader.join().unwrap();

    assert_eq!(answer.expect("the other client was answered").status, 200);
    assert!(flooding && still_flooding, "the flood ended by itself");
    assert!(
        scraped,
        "{} scrapes during the flood",
        stub.request_count() - scrapes_before
    );
}

/// Issue 11, item 6: file descriptors are kept back for the scrapes. Under
/// `ulimit -n 64`, 80 idle clients take what the client cap leaves them
/// (the others wait in the accept queue), and the scrapes of a container
/// that closes every connection (one new socket per scrape) still succeed.
/// Before, the sidecar accepted clients up to the limit and every scrape
/// failed with `io_error` until they left.
#[test]
fn idle_clients_cannot_take_the_descriptors_of_the_scrapes() {
    let stub = Stub::start(Behaviour::ConnectionClose(APP_BODY.to_string()));
    let args = [
        format!("-mapp:{}", stub.port),
        "--scrape_interval=100".to_string(),
    ];
    let sidecar = Sidecar::start_with_open_files_limit(64, &args);
    let open_fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", sidecar.pid()))
            .map(|entries| entries.count())
            .unwrap_or(0)
    };
    let idle: Vec<TcpStream> = (0..80)
        .map(|_| TcpStream::connect(("127.0.0.1", sidecar.port)).unwrap())
        .collect();
    // The sidecar has taken all the clients it will.
    assert!(wait_until(Duration::from_secs(10), || open_fds() >= 45));

    let before = stub.request_count();
    let scraped = wait_until(Duration::from_secs(10), || {
        stub.request_count() >= before + 5
    });
    let held = open_fds();
    drop(idle);
    assert!(
        scraped,
        "no scrape while idle clients held {held} descriptors"
    );
    let metrics = sidecar.metrics();
    assert_eq!(up(&metrics, "app"), Some(1.0), "{metrics}");
    assert_eq!(failures(&metrics, "app", "io_error"), 0.0, "{metrics}");
    assert!(sidecar.stderr().contains("at most 46 clients at once"));
}

/// Issue 19, item 4: a HEAD request took an identity-decompression slot it
/// never used. With 32 slow plain-text readers of a large output (each
/// inflating the shared gzip member through a window of its own, at most 32
/// at once), each HEAD closed the reader whose response started first: that
/// reader's body ended short (the connection closed mid-body). Now HEAD gets the same head (the Content-Length
/// a GET gets) without a slot, and every reader receives its whole body.
#[test]
fn head_requests_do_not_cut_slow_identity_readers_short() {
    // Larger than the 4 MiB a socket's send buffer grows to (`tcp_wmem`),
    // so that the sidecar still inflates each reader's body while it waits.
    let (_stub, sidecar) = start_app(
        Behaviour::Huge(6 << 20),
        &["--scrape_interval=60000", "--max_body_bytes=8388608"],
    );
    assert!(wait_until(Duration::from_secs(10), || sidecar
        .get("/metrics")
        .body
        .len()
        > 6 << 20));
    let port = sidecar.port;
    let mut readers: Vec<Connection> = (0..32)
        .map(|_| Connection {
            stream: stalled_client(port),
            received: Vec::new(),
        })
        .collect();
    // Every reader's response has started (one at a time, in order).
    for reader in &mut readers {
        reader
            .stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(
            reader.stream.peek(&mut byte).unwrap(),
            1,
            "no response started"
        );
    }
    let mut lengths = Vec::new();
    for _ in 0..4 {
        let mut head = Connection::open(port);
        head.send(b"HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
        let response = head.response(true).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-type"), Some(METRICS_CONTENT_TYPE));
        let length: usize = response.header("content-length").unwrap().parse().unwrap();
        lengths.push(length);
    }
    for (number, reader) in readers.iter_mut().enumerate() {
        let response = reader
            .response(false)
            .unwrap_or_else(|error| panic!("reader {number} was cut short: {error}"));
        assert_eq!(response.status, 200);
        assert!(response.body.len() > 6 << 20);
        assert!(
            lengths.iter().all(|&length| length == response.body.len()),
            "HEAD said {lengths:?}, GET sent {}",
            response.body.len()
        );
    }
}

/// Issue 19, item 3 (idle keep-alive lockout): connections that each made
/// one valid request and then sat idle filled the client table, and a
/// scrape then waited in the kernel's accept queue until one of them reached
/// the 120 s idle timeout: one misbehaving client took the pod's metrics
/// away. Now a full table closes the longest-idle connection with no request
/// in progress for the new one. The table is filled at the cap `ulimit -n
/// 64` leaves (46 clients, see `idle_clients_cannot_take_the_descriptors_of_the_scrapes`),
/// as 512 such connections fill it under the usual limit.
#[test]
fn idle_keep_alive_clients_do_not_lock_a_scrape_out() {
    let stub = Stub::start(Behaviour::ContentLength(APP_BODY.into()));
    let sidecar = Sidecar::start_with_open_files_limit(64, &[format!("-mapp:{}", stub.port)]);
    wait_for_samples(&sidecar, "/metrics", "container", "app", APP_SAMPLES);
    assert!(sidecar.stderr().contains("at most 46 clients at once"));
    let mut idle: Vec<Connection> = (0..46)
        .map(|_| {
            let mut connection = Connection::open(sidecar.port);
            assert_eq!(connection.get("/metrics").status, 200);
            connection
        })
        .collect();
    // The table is full of idle keep-alive clients: a new scrape is
    // answered before the deadline all the same.
    let mut scrape = Connection::open(sidecar.port);
    scrape.send(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    scrape
        .stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let response = scrape.response(false).unwrap_or_else(|error| {
        panic!(
            "a scrape behind idle clients was not answered: {error}; stderr:\n{}",
            sidecar.stderr()
        )
    });
    assert_eq!(response.status, 200);
    assert!(
        String::from_utf8_lossy(&response.body).contains("app_temperature{container=\"app\"} 21.5")
    );
    // Room was made by closing the longest-idle client, not another one.
    assert!(idle[0].closed_within(Duration::from_secs(10)));
    let last = idle.last_mut().unwrap();
    assert_eq!(
        last.get("/metrics").status,
        200,
        "a newer idle client was closed"
    );
}
