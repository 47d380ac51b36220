//! K concurrent keep-alive clients requesting the sidecar's merged metrics
//! back to back; prints requests/s, bytes/s and latency p50/p99/max.
//!
//! Run: `cd bench && cargo run --release --bin load -- --port 13434
//! --clients 2 --seconds 10` (`--path /metrics` by default).

use std::process::ExitCode;
use std::time::Duration;

use multiplexer_bench::args::Args;
use multiplexer_bench::load;
use multiplexer_bench::runner;

fn main() -> ExitCode {
    runner::exit("load", run())
}

fn run() -> Result<(), String> {
    let args = Args::from_env(&["port", "path", "clients", "seconds"], &[])?;
    let port: u16 = args.parsed_or("port", 13434)?;
    let path = args.value("path").unwrap_or("/metrics");
    let clients: usize = args.parsed_or("clients", 2)?;
    let seconds: f64 = args.parsed_or("seconds", 10.0)?;
    let report = load::run(port, path, clients, Duration::from_secs_f64(seconds))
        .map_err(|e| format!("127.0.0.1:{port}{path}: {e}"))?;
    println!(
        "{} clients, {:.1} s: {} requests ({} errors), {:.0} req/s, {:.1} MB/s, \
         latency p50 {} us, p99 {} us, max {} us",
        report.clients,
        report.seconds,
        report.requests,
        report.errors,
        report.requests_per_second,
        report.bytes_per_second / 1e6,
        report.p50_us,
        report.p99_us,
        report.max_us
    );
    Ok(())
}
