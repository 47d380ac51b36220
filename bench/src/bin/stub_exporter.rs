//! Serves a fixture file or a synthetic body on N loopback ports until
//! killed, printing each port's request count every 10 s.
//!
//! Run: `cd bench && cargo run --release --bin stub_exporter -- --count 3
//! --body ../tests/fixtures/node_exporter.prom` (or `--size 1000000`;
//! `--base_port 9100` for fixed ports 9100..; `--chunked`; `--delay_ms 5`).

use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use multiplexer_bench::args::Args;
use multiplexer_bench::runner;
use multiplexer_bench::stub::{Framing, Stub, StubOptions};
use multiplexer_bench::synth;

fn main() -> ExitCode {
    runner::exit("stub_exporter", run())
}

fn run() -> Result<(), String> {
    let args = Args::from_env(
        &["count", "base_port", "body", "size", "delay_ms"],
        &["chunked"],
    )?;
    let count: u16 = args.parsed_or("count", 1)?;
    let base_port: u16 = args.parsed_or("base_port", 0)?;
    let body = match (args.value("body"), args.value("size")) {
        (Some(path), None) => std::fs::read(path).map_err(|e| format!("--body {path}: {e}"))?,
        (None, size) => synth::body(size.unwrap_or("60000").parse().map_err(|_| "bad --size")?),
        (Some(_), Some(_)) => return Err("give --body or --size, not both".into()),
    };
    let body = Arc::new(body);
    let framing = if args.switch("chunked") {
        Framing::Chunked
    } else {
        Framing::ContentLength
    };
    let delay = Duration::from_millis(args.parsed_or("delay_ms", 0)?);
    let mut stubs = Vec::new();
    for index in 0..count {
        let port = if base_port == 0 { 0 } else { base_port + index };
        let stub = Stub::start(StubOptions {
            body: body.clone(),
            alternate: None,
            framing,
            delay,
            port,
        })
        .map_err(|e| format!("bind port {port}: {e}"))?;
        println!("serving {} bytes on 127.0.0.1:{}", body.len(), stub.port);
        stubs.push(stub);
    }
    loop {
        thread::sleep(Duration::from_secs(10));
        let counts: Vec<String> = stubs
            .iter()
            .map(|stub| format!("{}={}", stub.port, stub.total_requests()))
            .collect();
        println!("requests so far: {}", counts.join(" "));
    }
}
