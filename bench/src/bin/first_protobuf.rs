//! How long the first protobuf answer of a freshly started sidecar takes in
//! interval mode, against the next ones. Until then nobody wanted protobuf,
//! so the containers were scraped for text; the first protobuf request
//! waits while they are scraped for protobuf (so that it carries their
//! native histograms), the next ones are answered at once.
//!
//! A real node_exporter (Debian's `prometheus-node-exporter`, which answers
//! protobuf when asked) is the one container. Each round starts a fresh
//! sidecar, lets it scrape for 1.5 s, then sends a request as Prometheus
//! with native histograms does (its `Accept`, a 10 s timeout header), then
//! five more; each on a new connection, timed from connect to the last byte.
//!
//! Run: `cargo build --release && cd bench && cargo run --release --bin
//! first_protobuf [ROUNDS]` (default 10; the sidecar binary is
//! `../target/release/metrics-multiplexer-sidecar` or `$MULTIPLEXER_SIDECAR`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use multiplexer_bench::runner::{free_port, wait_for, Running};

/// What Prometheus 2.42 with `--enable-feature=native-histograms` sends.
const PROMETHEUS_NATIVE_ACCEPT: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn wait_for_listener(port: u16) {
    if let Err(error) = wait_for(&format!("a listener on {port}"), || {
        TcpStream::connect(("127.0.0.1", port))
    }) {
        panic!("{error}");
    }
}

/// One GET on a fresh connection: its time and the body's size.
fn get(port: u16, headers: &str) -> (Duration, usize) {
    let start = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let request = format!("GET /metrics HTTP/1.0\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("read");
    let took = start.elapsed();
    let head_end = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    (took, reply.len() - head_end - 4)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(10);
    let sidecar = std::env::var("MULTIPLEXER_SIDECAR")
        .unwrap_or_else(|_| "../target/release/metrics-multiplexer-sidecar".to_string());
    let node_port = free_port().expect("a free port");
    let _node = Running(
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{node_port}"))
            .args(["--no-collector.systemd", "--no-collector.logind"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus-node-exporter (apt-get install prometheus-node-exporter)"),
    );
    wait_for_listener(node_port);
    let headers = format!(
        "Accept: {PROMETHEUS_NATIVE_ACCEPT}\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n"
    );
    let (mut firsts, mut nexts) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let port = free_port().expect("a free port");
        let _sidecar = Running(
            Command::new(&sidecar)
                .args(["-e", &port.to_string(), "-m", &format!("node:{node_port}")])
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|error| panic!("start {sidecar}: {error}")),
        );
        wait_for_listener(port);
        thread::sleep(Duration::from_millis(1500));
        let (first, first_bytes) = get(port, &headers);
        let next: Vec<(Duration, usize)> = (0..5).map(|_| get(port, &headers)).collect();
        let next_ms: Vec<f64> = next.iter().map(|(t, _)| t.as_secs_f64() * 1e3).collect();
        println!(
            "round {round}: first protobuf answer {:.2} ms ({first_bytes} bytes), next {} ms ({} bytes)",
            first.as_secs_f64() * 1e3,
            next_ms
                .iter()
                .map(|ms| format!("{ms:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            next.last().map_or(0, |(_, bytes)| *bytes)
        );
        firsts.push(first.as_secs_f64() * 1e3);
        nexts.extend(next_ms);
    }
    println!(
        "median over {rounds} rounds: first protobuf answer {:.2} ms, next ones {:.2} ms",
        median(firsts),
        median(nexts)
    );
}
