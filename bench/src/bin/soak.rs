//! The soak: the release sidecar for ten minutes (by default) in a pod that
//! keeps changing, sampled every 10 s: resident memory, open file
//! descriptors and, where the machine allows it, the usage of the 32 MiB
//! memory cgroup it runs in (`tests/util/cgroup.rs`). All three should be
//! flat after the first minute.
//!
//! The pod: `app` (1 MB, its data changing at every scrape); `restarting`,
//! whose exporter stops (listener and connections closed) for 5 s every
//! 30 s; `moving`, whose port changes owner every 60 s (one exporter
//! stops, another with other families takes the port). The clients: an HA
//! pair of Prometheus-like scrapers every 5 s (one asking for gzip text,
//! one for gzip protobuf), an identity text client every 10 s, and a
//! client that disconnects mid-body every 10 s.
//!
//! `cd bench && cargo run --release --bin soak [-- --minutes M --sidecar PATH]`

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use multiplexer_bench::args::Args;
use multiplexer_bench::cgroup::Cgroup;
use multiplexer_bench::load::Client;
use multiplexer_bench::procfs;
use multiplexer_bench::runner::{self, free_port, quiet, Running};
use multiplexer_bench::synth;

const ACCEPT_PROTOBUF: &str = "Accept: application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3\r\n";
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    runner::exit("soak", run())
}

/// An exporter that can be stopped whole: listener and every connection.
struct Exporter {
    stop: Arc<AtomicBool>,
}

impl Exporter {
    /// Serves `bodies` in turn (one per request) on `port` (0: any).
    fn start(port: u16, bodies: [Arc<Vec<u8>>; 2]) -> std::io::Result<(Exporter, u16)> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let accept_stop = stop.clone();
        thread::spawn(move || {
            while !accept_stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (stop, bodies) = (accept_stop.clone(), bodies.clone());
                        thread::spawn(move || serve(stream, &bodies, &stop));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok((Exporter { stop }, port))
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut stream: TcpStream, bodies: &[Arc<Vec<u8>>; 2], stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut pending = Vec::new();
    let mut buffer = [0u8; 4096];
    let mut turn = 0;
    while !stop.load(Ordering::Relaxed) {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            let body = &bodies[turn % 2];
            turn += 1;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            if stream.write_all(head.as_bytes()).is_err() || stream.write_all(body).is_err() {
                return;
            }
            continue;
        }
        match stream.read(&mut buffer) {
            Ok(0) => return,
            Ok(read) => pending.extend_from_slice(&buffer[..read]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// Two versions of a body of about `bytes` whose families are named
/// `<prefix>...`.
fn versions(prefix: &str, bytes: usize) -> [Arc<Vec<u8>>; 2] {
    let body = String::from_utf8_lossy(&synth::body(bytes)).replace("bench_", prefix);
    let other = body.replace(" 1", " 2");
    [Arc::new(body.into_bytes()), Arc::new(other.into_bytes())]
}

/// Asks for the output and closes after the first KiB of the answer.
fn disconnect_mid_body(port: u16) {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: s\r\n\r\n");
    let mut first = [0u8; 1024];
    let _ = stream.read(&mut first);
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

fn run() -> Result<(), String> {
    let args = Args::from_env(&["sidecar", "minutes"], &[])?;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sidecar = args.value("sidecar").map(PathBuf::from).unwrap_or_else(|| {
        manifest
            .join("../target/release")
            .join("metrics-multiplexer-sidecar")
    });
    let minutes: f64 = args.parsed_or("minutes", 10.0)?;
    let duration = Duration::from_secs_f64(minutes * 60.0);

    let app = versions("app_", 1_000_000);
    let restarting = versions("restarting_", 200_000);
    let owners = [versions("first_", 300_000), versions("second_", 300_000)];
    let (app_exporter, app_port) = Exporter::start(0, app).map_err(|e| e.to_string())?;
    let (mut restarting_exporter, restarting_port) =
        Exporter::start(0, restarting.clone()).map_err(|e| e.to_string())?;
    let (mut owner, moving_port) =
        Exporter::start(0, owners[0].clone()).map_err(|e| e.to_string())?;
    let mut owner_turn = 0;

    let port = free_port()?;
    let cgroup = match Cgroup::new("multiplexer-soak", 32 << 20) {
        Ok(cgroup) => Some(cgroup),
        Err(why) => {
            eprintln!("no cgroup: {why}");
            None
        }
    };
    let mut command = runner::command_in(cgroup.as_ref(), &sidecar);
    command
        .arg(format!("-mapp:{app_port}"))
        .arg(format!("-mrestarting:{restarting_port}"))
        .arg(format!("-mmoving:{moving_port}"))
        .arg(format!("--export_to={port}"))
        .arg("--log_level=warn");
    quiet(&mut command);
    let mut running = Running(command.spawn().map_err(|e| format!("start sidecar: {e}"))?);
    let pid = running.0.id();
    thread::sleep(Duration::from_millis(500));

    let gzip = "Accept-Encoding: gzip\r\n";
    let mut scrapers = [
        Client::connect_with_headers(port, "/metrics", gzip).map_err(|e| e.to_string())?,
        Client::connect_with_headers(port, "/metrics", &format!("{gzip}{ACCEPT_PROTOBUF}"))
            .map_err(|e| e.to_string())?,
    ];
    let start = Instant::now();
    let mut next_scrape = start;
    let mut next_identity = start;
    let mut next_sample = start;
    let mut next_restart = start + Duration::from_secs(30);
    let mut restart_back: Option<Instant> = None;
    let mut next_owner = start + Duration::from_secs(60);
    let mut errors = 0;
    let mut samples: Vec<(f64, f64, usize, Option<f64>)> = Vec::new();
    print!(
        "{}",
        runner::table_head(&["s", "RSS MiB", "fds", "cgroup MiB"])
    );
    while start.elapsed() < duration {
        let now = Instant::now();
        if let Ok(Some(status)) = running.0.try_wait() {
            return Err(format!(
                "the sidecar exited after {:.0} s: {status}{}",
                start.elapsed().as_secs_f64(),
                cgroup
                    .as_ref()
                    .map_or(String::new(), |c| format!("; {}", c.summary()))
            ));
        }
        if now >= next_scrape {
            for scraper in &mut scrapers {
                if scraper.get().is_err() {
                    errors += 1;
                }
            }
            next_scrape += Duration::from_secs(5);
        }
        if now >= next_identity {
            match Client::connect(port, "/metrics").and_then(|mut client| client.get()) {
                Ok(_) => {}
                Err(_) => errors += 1,
            }
            disconnect_mid_body(port);
            next_identity += Duration::from_secs(10);
        }
        if now >= next_restart {
            // Stopped: listener and connections closed.
            restarting_exporter = Exporter {
                stop: Arc::new(AtomicBool::new(true)),
            };
            restart_back = Some(now + Duration::from_secs(5));
            next_restart += Duration::from_secs(30);
        }
        if restart_back.is_some_and(|at| now >= at) {
            if let Ok((exporter, _)) = Exporter::start(restarting_port, restarting.clone()) {
                restarting_exporter = exporter;
                restart_back = None;
            }
        }
        if now >= next_owner {
            drop(owner);
            owner_turn += 1;
            // The port is free once the old listener is closed.
            let mut taken = None;
            for _ in 0..50 {
                if let Ok((exporter, _)) =
                    Exporter::start(moving_port, owners[owner_turn % 2].clone())
                {
                    taken = Some(exporter);
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
            owner = taken.ok_or("the moving port could not be taken again")?;
            next_owner += Duration::from_secs(60);
        }
        if now >= next_sample {
            let reading = procfs::read(pid).map_err(|e| e.to_string())?;
            let at = start.elapsed().as_secs_f64();
            let rss = reading.rss_kib as f64 / 1024.0;
            let fds = open_fds(pid);
            let usage = cgroup
                .as_ref()
                .map(|c| c.usage_bytes() as f64 / (1 << 20) as f64);
            println!(
                "| {at:.0} | {rss:.1} | {fds} | {} |",
                usage.map_or("-".to_string(), |u| format!("{u:.1}"))
            );
            samples.push((at, rss, fds, usage));
            next_sample += SAMPLE_EVERY;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let after_minute: Vec<_> = samples.iter().filter(|s| s.0 >= 60.0).collect();
    if let (Some(first), Some(last)) = (after_minute.first(), after_minute.last()) {
        let max_rss = after_minute.iter().map(|s| s.1).fold(0.0, f64::max);
        let max_fds = after_minute.iter().map(|s| s.2).max().unwrap_or(0);
        println!(
            "\nafter the first minute: RSS {:.1} -> {:.1} MiB (max {max_rss:.1}), fds {} -> {} (max {max_fds}), cgroup {} -> {}",
            first.1,
            last.1,
            first.2,
            last.2,
            first.3.map_or("-".to_string(), |u| format!("{u:.1} MiB")),
            last.3.map_or("-".to_string(), |u| format!("{u:.1} MiB")),
        );
    }
    if let Some(cgroup) = &cgroup {
        println!("{}", cgroup.summary());
    }
    println!("client errors: {errors} (a scrape during an owner change or restart may fail)");
    drop((app_exporter, restarting_exporter, owner));
    drop(running);
    Ok(())
}
