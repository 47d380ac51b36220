//! S with protobuf against S in text: 3 containers serving node_exporter's
//! answer (protobuf when asked for it, else text: two captures of one
//! node_exporter taken together, `tests/fixtures/node_exporter.pb` and
//! `node_exporter_pb_twin.prom`), scraped every 200 ms by the real sidecar,
//! and one client asking for `/metrics` every 15 s like Prometheus, first in
//! text, then in protobuf (so the sidecar asks the containers for protobuf
//! and merges into protobuf). Prints the sidecar's CPU (millicores, from
//! every thread's schedstat) and RSS over each window.
//!
//! Run: `cargo build --release && cd bench && cargo run --release --bin
//! protobuf_footprint [WINDOW_SECONDS]` (default 60; the sidecar binary is
//! `../target/release/metrics-multiplexer-sidecar` or `$MULTIPLEXER_SIDECAR`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use multiplexer_bench::procfs;
use multiplexer_bench::runner::{free_port, wait_for, Running};

const TEXT: &[u8] = include_bytes!("../../../tests/fixtures/node_exporter_pb_twin.prom");
const PROTOBUF: &[u8] = include_bytes!("../../../tests/fixtures/node_exporter.pb");
const PROTOBUF_ACCEPT: &str =
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited";
const TEXT_ACCEPT: &str = "text/plain;version=0.0.4";

fn response(body: &[u8], content_type: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A keep-alive stub answering each request in the format its `Accept`
/// names first.
fn stub() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a stub");
    let port = listener.local_addr().expect("stub address").port();
    let text = response(TEXT, "text/plain; version=0.0.4; charset=utf-8");
    let protobuf = response(
        PROTOBUF,
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
    );
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (text, protobuf) = (text.clone(), protobuf.clone());
            thread::spawn(move || serve(stream, &text, &protobuf));
        }
    });
    port
}

fn serve(mut stream: TcpStream, text: &[u8], protobuf: &[u8]) {
    let mut buffer = vec![0u8; 8192];
    let mut filled = 0;
    loop {
        match stream.read(&mut buffer[filled..]) {
            Ok(0) | Err(_) => return,
            Ok(read) => filled += read,
        }
        while let Some(end) = buffer[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let wants_protobuf = head
                .lines()
                .find_map(|line| line.strip_prefix("accept:"))
                .is_some_and(|accept| {
                    accept
                        .trim_start()
                        .starts_with("application/vnd.google.protobuf")
                });
            let answer = if wants_protobuf { protobuf } else { text };
            if stream.write_all(answer).is_err() {
                return;
            }
            buffer.copy_within(end + 4..filled, 0);
            filled -= end + 4;
        }
        if filled == buffer.len() {
            return;
        }
    }
}

/// One GET with `accept` on a fresh connection; the body's size.
fn get(port: u16, accept: &str) -> usize {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the sidecar");
    let request = format!("GET /metrics HTTP/1.0\r\nAccept: {accept}\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("read");
    let head_end = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
    reply.len() - head_end - 4
}

fn main() {
    let window = Duration::from_secs(
        std::env::args()
            .nth(1)
            .and_then(|arg| arg.parse().ok())
            .unwrap_or(60),
    );
    let binary = std::env::var("MULTIPLEXER_SIDECAR")
        .unwrap_or_else(|_| "../target/release/metrics-multiplexer-sidecar".to_string());
    for (name, accept) in [("text", TEXT_ACCEPT), ("protobuf", PROTOBUF_ACCEPT)] {
        let ports: Vec<u16> = (0..3).map(|_| stub()).collect();
        let port = free_port().expect("a free port");
        let mut args = vec!["-e".to_string(), port.to_string()];
        for (index, stub_port) in ports.iter().enumerate() {
            args.push("-m".to_string());
            args.push(format!("c{index}:{stub_port}"));
        }
        let sidecar = Running(
            Command::new(&binary)
                .args(&args)
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|error| panic!("start {binary}: {error}")),
        );
        let pid = sidecar.0.id();
        // Measured even when it never listens: its figures then say so.
        let _ = wait_for("the sidecar", || TcpStream::connect(("127.0.0.1", port)));
        // Warm up: one request in the format, so the containers are asked
        // for it from then on.
        get(port, accept);
        thread::sleep(Duration::from_secs(5));
        let before = procfs::read(pid).expect("read /proc");
        let start = Instant::now();
        let mut bytes = 0;
        let mut scrapes = 0;
        while start.elapsed() < window {
            bytes = get(port, accept);
            scrapes += 1;
            let next = start + Duration::from_secs(15) * scrapes;
            thread::sleep(
                next.min(start + window)
                    .saturating_duration_since(Instant::now()),
            );
        }
        let after = procfs::read(pid).expect("read /proc");
        let seconds = after.at.duration_since(before.at).as_secs_f64();
        let millicores = (after.cpu_ns - before.cpu_ns) as f64 / 1e6 / seconds;
        println!(
            "S, {name} client every 15 s: {millicores:.2} mc, RSS {:.2} MB (peak {:.2} MB), \
             {scrapes} responses of {bytes} bytes, over {seconds:.0} s",
            after.rss_kib as f64 * 1024.0 / 1e6,
            after.peak_rss_kib as f64 * 1024.0 / 1e6,
        );
        drop(sidecar);
    }
}
