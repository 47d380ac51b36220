//! The memory runner: the release sidecar's peak resident memory (`VmHWM`)
//! for pod shapes, with a Prometheus-like client attached (every second,
//! `Accept-Encoding: gzip`) and without. Writes `results/memory.md` and
//! `results/rss_vs_bytes.svg` (peak RSS against bytes held by the pod).
//!
//! Where the machine allows it (root, a memory controller), the sidecar
//! runs inside a 32 MiB memory cgroup, as Kubernetes runs it
//! (`tests/util/cgroup.rs`, shared with the tests), and every row reports
//! the cgroup's peak usage beside `VmHWM`: the kernel kills by the former
//! (anonymous memory, page cache, kernel memory), which may be more or less
//! than the resident set.
//!
//! Groups:
//! - `rows`: issue 12's pods (3 x 1 MB, 2 x 4 MB, 4 x 4 MB, 16 x 1 MB) and
//!   S (3 x the node_exporter fixture), with the gzip client; 4 x 4 MB and
//!   16 x 1 MB again with two gzip clients every second, one asking for
//!   text and one for protobuf (an edition of each format at once);
//! - `hostile`: issue 11's shapes: one container of 65,536 lines (4 MiB)
//!   changing every scrape with 6 stalled clients; 3 containers of 65,536
//!   one-sample families with no TYPE; 4 containers with 63-character
//!   names and 65,536-line bodies; the one-sample families and the long
//!   names again with clients of both formats; an Envoy-like pod (10,000
//!   one-sample families of 100-byte names beside two 1 MB containers);
//!   one container of 65,536 one-sample families beside one of 65,536
//!   samples in one family of the same bytes (their difference is what a
//!   family costs);
//! - `sweep`: 1 to 16 containers of 100 KB, 1 MB and 4 MB, each with the
//!   gzip client and with no client.
//!
//! Every stub alternates between two versions of its body, so the data
//! changes at every scrape as a real exporter's does. After the window the
//! runner reads the peak, then asks once for the whole output and checks
//! that every container is up in it.
//!
//! Build the sidecar first (`cargo build --release` at the repository root),
//! then `cd bench && cargo run --release --bin memory`.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use multiplexer_bench::args::Args;
use multiplexer_bench::cgroup::Cgroup;
use multiplexer_bench::load::Client;
use multiplexer_bench::procfs;
use multiplexer_bench::runner::{self, free_port, wait_healthy, Running};
use multiplexer_bench::stub::{find_head_end, Framing, Stub, StubOptions};
use multiplexer_bench::synth;

/// The limit of the cgroup the sidecar runs in, and what its peak may reach.
const CGROUP_LIMIT: u64 = 32 << 20;
const CGROUP_PEAK_MIB: f64 = 28.0;

const SIDECAR_BINARY: &str = "metrics-multiplexer-sidecar";
const HELP: &str = "\
memory: peak resident memory of the release sidecar for pod shapes

    cd bench && cargo run --release --bin memory [-- OPTIONS]

OPTIONS (seconds unless stated):
    --sidecar PATH     release binary [env MULTIPLEXER_SIDECAR, else
                       $CARGO_TARGET_DIR/release or ../target/release]
    --window S         measuring window of each scenario [10]
    --warmup S         time before the window [2]
    --only LIST        comma list of groups (rows,hostile,sweep) or of
                       the starts of scenario names (\"S:\", \"3 x 1 MB\")
    --out DIR          where results go [bench/results]
";

/// Own metrics' name for a container's health.
const UP: &str = "multiplexer_up{container=\"";

fn main() -> ExitCode {
    runner::exit("memory", run())
}

struct Settings {
    sidecar: PathBuf,
    window: Duration,
    warmup: Duration,
    only: Option<Vec<String>>,
    out: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientKind {
    None,
    /// One keep-alive client every second asking for gzip, as Prometheus does.
    GzipEverySecond,
    /// Two such clients, one asking for text and one for delimited
    /// protobuf (as a Prometheus with native histograms does).
    GzipBothFormats,
}

/// The `Accept` of a Prometheus with native histograms enabled.
const ACCEPT_PROTOBUF: &str = "Accept: application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3\r\n";

struct Scenario {
    name: String,
    group: &'static str,
    /// Container names; each gets a stub.
    names: Vec<String>,
    /// The two versions of the body every stub alternates between.
    bodies: [Arc<Vec<u8>>; 2],
    /// Containers after `names` with bodies of their own (name, versions).
    others: Vec<(String, [Arc<Vec<u8>>; 2])>,
    client: ClientKind,
    /// Clients that ask for the output and never read, started one by one
    /// during the window (half of them ask for gzip).
    stalled: usize,
}

struct Outcome {
    name: String,
    group: &'static str,
    containers: usize,
    /// Bytes of every container's first body together.
    held_bytes: usize,
    client: ClientKind,
    /// What the model says the bodies' indexes take (see `index_bytes`).
    index_bytes: usize,
    peak_kib: u64,
    /// The cgroup's peak usage, when the sidecar ran in one.
    cgroup_peak_kib: Option<u64>,
    /// Why the sidecar is gone, if it did not live through the window
    /// (exit status, OOM kills).
    died: Option<String>,
    rss_kib: u64,
    cpu_mcores: f64,
    /// Containers up in the output read after the window.
    up: usize,
    /// Bytes and encoding of the client's last response.
    reply: Option<(usize, bool)>,
}

impl Outcome {
    fn held_bytes(&self) -> usize {
        self.held_bytes
    }
}

/// The indexes one text body costs while an output is built, by the
/// memory model (docs/MEMORY.md): about 16 bytes a sample, and 75 a family
/// plus 72 for the merge. A family is a `# TYPE` line, or a name with no
/// TYPE (histogram and summary series count under their family).
fn index_bytes(body: &[u8]) -> usize {
    let mut typed = std::collections::HashSet::new();
    let mut untyped = std::collections::HashSet::new();
    let mut samples = 0;
    for line in body.split(|&byte| byte == b'\n') {
        if let Some(declaration) = line.strip_prefix(b"# TYPE ") {
            let name = declaration
                .split(|&byte| byte == b' ')
                .next()
                .unwrap_or(b"");
            typed.insert(name);
        } else if !line.is_empty() && line[0] != b'#' {
            samples += 1;
            let end = line
                .iter()
                .position(|&byte| byte == b'{' || byte == b' ')
                .unwrap_or(line.len());
            let name = &line[..end];
            let family = [&b"_bucket"[..], b"_sum", b"_count"]
                .iter()
                .filter_map(|suffix| name.strip_suffix(*suffix))
                .find(|base| typed.contains(base))
                .unwrap_or(name);
            if !typed.contains(family) {
                untyped.insert(family);
            }
        }
    }
    16 * samples + (75 + 72) * (typed.len() + untyped.len())
}

fn run() -> Result<(), String> {
    let args = Args::from_env(&["sidecar", "window", "warmup", "only", "out"], &["help"])?;
    if args.switch("help") {
        print!("{HELP}");
        return Ok(());
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sidecar = match (
        args.value("sidecar"),
        std::env::var_os("MULTIPLEXER_SIDECAR"),
    ) {
        (Some(path), _) => PathBuf::from(path),
        (None, Some(path)) => PathBuf::from(path),
        (None, None) => match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => PathBuf::from(dir).join("release").join(SIDECAR_BINARY),
            None => manifest.join("../target/release").join(SIDECAR_BINARY),
        },
    };
    if !sidecar.is_file() {
        return Err(format!(
            "no sidecar binary at {}: build it with `cargo build --release` at the \
             repository root, or pass --sidecar PATH",
            sidecar.display()
        ));
    }
    let settings = Settings {
        sidecar,
        window: Duration::from_secs_f64(args.parsed_or("window", 10.0)?),
        warmup: Duration::from_secs_f64(args.parsed_or("warmup", 2.0)?),
        only: args
            .value("only")
            .map(|list| list.split(',').map(str::to_string).collect()),
        out: args
            .value("out")
            .map(PathBuf::from)
            .unwrap_or_else(|| manifest.join("results")),
    };
    std::fs::create_dir_all(settings.out.join("tmp")).map_err(|e| e.to_string())?;
    let scenarios = scenarios(&settings)?;
    eprintln!(
        "{} scenarios, about {:.0} s; sidecar {}",
        scenarios.len(),
        scenarios.len() as f64 * (settings.window + settings.warmup).as_secs_f64(),
        settings.sidecar.display()
    );
    let mut outcomes = Vec::new();
    for scenario in &scenarios {
        let outcome = measure(&settings, scenario)?;
        eprintln!("{}", row(&outcome));
        outcomes.push(outcome);
    }
    let markdown = markdown(&outcomes, &settings);
    for (name, text) in [
        ("memory.md", markdown.clone()),
        ("rss_vs_bytes.svg", svg(&outcomes)),
    ] {
        let path = settings.out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!("{markdown}");
    Ok(())
}

fn scenarios(settings: &Settings) -> Result<Vec<Scenario>, String> {
    let names = |count: usize| (0..count).map(|i| format!("c{i}")).collect::<Vec<_>>();
    let synthetic = |size: usize| -> [Arc<Vec<u8>>; 2] {
        let body = synth::body(size);
        // The second version differs in every value's first digit.
        let other: Vec<u8> = varied(&body);
        [Arc::new(body), Arc::new(other)]
    };
    let mut list = Vec::new();
    {
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/node_exporter.prom");
        let node = std::fs::read(&fixture).map_err(|e| format!("{}: {e}", fixture.display()))?;
        let node_versions = [Arc::new(varied(&node)), Arc::new(node)];
        for (count, size) in [
            (3, 1_000_000),
            (2, 4_000_000),
            (4, 4_000_000),
            (16, 1_000_000),
        ] {
            list.push(Scenario {
                name: format!("{count} x {} MB", size / 1_000_000),
                group: "rows",
                names: names(count),
                bodies: synthetic(size),
                client: ClientKind::GzipEverySecond,
                stalled: 0,
                others: Vec::new(),
            });
        }
        list.push(Scenario {
            name: "S: 3 x 57 KB (node_exporter)".to_string(),
            group: "rows",
            names: names(3),
            bodies: node_versions,
            client: ClientKind::GzipEverySecond,
            stalled: 0,
            others: Vec::new(),
        });
        for (count, size) in [(4, 4_000_000), (16, 1_000_000)] {
            list.push(Scenario {
                name: format!(
                    "{count} x {} MB, text and protobuf clients",
                    size / 1_000_000
                ),
                group: "rows",
                names: names(count),
                bodies: synthetic(size),
                client: ClientKind::GzipBothFormats,
                stalled: 0,
                others: Vec::new(),
            });
        }
    }
    {
        let wide = || {
            [
                Arc::new(synth::many_lines(65_536, 4 << 20, 1)),
                Arc::new(synth::many_lines(65_536, 4 << 20, 2)),
            ]
        };
        list.push(Scenario {
            name: "1 x 65,536 lines (4 MiB), 6 stalled clients".to_string(),
            group: "hostile",
            names: names(1),
            bodies: wide(),
            client: ClientKind::GzipEverySecond,
            stalled: 6,
            others: Vec::new(),
        });
        for client in [ClientKind::GzipEverySecond, ClientKind::GzipBothFormats] {
            let clients = match client {
                ClientKind::GzipBothFormats => ", text and protobuf clients",
                _ => "",
            };
            list.push(Scenario {
                name: format!("3 x 65,536 one-sample families{clients}"),
                group: "hostile",
                names: names(3),
                bodies: [
                    Arc::new(synth::one_sample_families(65_536, 1)),
                    Arc::new(synth::one_sample_families(65_536, 2)),
                ],
                client,
                stalled: 0,
                others: Vec::new(),
            });
            list.push(Scenario {
                name: format!("4 x 65,536 lines, 63-character names{clients}"),
                group: "hostile",
                // DNS-1123 labels of the longest length Kubernetes allows.
                names: (0..4)
                    .map(|i| format!("{:x<61}-{i}", "long-container-name-"))
                    .collect(),
                bodies: wide(),
                client,
                stalled: 0,
                others: Vec::new(),
            });
        }
    }
    {
        // Envoy's /stats/prometheus: thousands of one-sample families with
        // long names, beside the app's own metrics.
        let envoy = |seed: u64| {
            let mut text = String::new();
            for i in 0..10_000u64 {
                let name = format!("envoy_cluster_upstream_rq_{i:05}_{:x<68}", "");
                let _ = write!(
                    text,
                    "# TYPE {name} counter\n{name}{{envoy_cluster_name=\"backend\"}} {}\n",
                    seed * 7 + i
                );
            }
            Arc::new(text.into_bytes())
        };
        for client in [ClientKind::GzipEverySecond, ClientKind::GzipBothFormats] {
            let clients = match client {
                ClientKind::GzipBothFormats => ", text and protobuf clients",
                _ => "",
            };
            list.push(Scenario {
                name: format!("Envoy-like: 10,000 one-sample families + 2 x 1 MB{clients}"),
                group: "hostile",
                names: vec!["envoy".to_string()],
                bodies: [envoy(1), envoy(2)],
                client,
                stalled: 0,
                others: (0..2)
                    .map(|i| (format!("app{i}"), synthetic(1_000_000)))
                    .collect(),
            });
            // What a family costs: the same samples and bytes, one family
            // per sample against one family for all.
            let families = synth::one_sample_families(65_536, 1);
            let bytes = families.len();
            list.push(Scenario {
                name: format!("family cost: 1 x 65,536 one-sample families{clients}"),
                group: "hostile",
                names: names(1),
                bodies: [
                    Arc::new(families),
                    Arc::new(synth::one_sample_families(65_536, 2)),
                ],
                client,
                stalled: 0,
                others: Vec::new(),
            });
            list.push(Scenario {
                name: format!("family cost: 1 x 65,536 samples of one family{clients}"),
                group: "hostile",
                names: names(1),
                bodies: [
                    Arc::new(synth::many_lines(65_536, bytes, 1)),
                    Arc::new(synth::many_lines(65_536, bytes, 2)),
                ],
                client,
                stalled: 0,
                others: Vec::new(),
            });
        }
    }
    {
        let grid: [(usize, &[usize]); 3] = [
            (100_000, &[1, 4, 16]),
            (1_000_000, &[1, 2, 4, 8, 16]),
            (4_000_000, &[1, 2, 4, 6]),
        ];
        for (size, counts) in grid {
            let bodies = synthetic(size);
            for &count in counts {
                for client in [ClientKind::None, ClientKind::GzipEverySecond] {
                    let label = match client {
                        ClientKind::None => "no client",
                        _ => "gzip client",
                    };
                    list.push(Scenario {
                        name: format!("sweep {count} x {}, {label}", human(size)),
                        group: "sweep",
                        names: names(count),
                        bodies: bodies.clone(),
                        client,
                        stalled: 0,
                        others: Vec::new(),
                    });
                }
            }
        }
    }
    // Kept: the groups named, and the scenarios whose names start with a
    // name given.
    if let Some(only) = &settings.only {
        list.retain(|scenario| {
            only.iter()
                .any(|name| name == scenario.group || scenario.name.starts_with(name.as_str()))
        });
    }
    Ok(list)
}

/// The same body with every sample value's first digit changed (`1` to
/// `2`...), so that two versions differ the way successive scrapes do.
fn varied(body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    let mut at_line_start = true;
    let mut comment = false;
    let mut after_space = false;
    let mut in_quotes = false;
    for byte in out.iter_mut() {
        match *byte {
            b'\n' => {
                at_line_start = true;
                comment = false;
                in_quotes = false;
                after_space = false;
                continue;
            }
            b'#' if at_line_start => comment = true,
            b'"' => in_quotes = !in_quotes,
            b' ' if !in_quotes && !comment => after_space = true,
            digit @ b'1'..=b'8' if after_space && !comment => {
                *byte = digit + 1;
                after_space = false;
            }
            _ => after_space = false,
        }
        at_line_start = false;
    }
    out
}

fn human(bytes: usize) -> String {
    if bytes >= 1_000_000 {
        format!("{} MB", bytes / 1_000_000)
    } else {
        format!("{} KB", bytes / 1_000)
    }
}

fn measure(settings: &Settings, scenario: &Scenario) -> Result<Outcome, String> {
    let mut stubs = Vec::new();
    let bodies: Vec<&[Arc<Vec<u8>>; 2]> = scenario
        .names
        .iter()
        .map(|_| &scenario.bodies)
        .chain(scenario.others.iter().map(|(_, bodies)| bodies))
        .collect();
    let names: Vec<&String> = scenario
        .names
        .iter()
        .chain(scenario.others.iter().map(|(name, _)| name))
        .collect();
    for versions in &bodies {
        let options = StubOptions {
            body: versions[0].clone(),
            alternate: Some(versions[1].clone()),
            framing: Framing::ContentLength,
            delay: Duration::ZERO,
            port: 0,
        };
        stubs.push(Stub::start(options).map_err(|e| format!("stub: {e}"))?);
    }
    let port = free_port()?;
    let log_name: String = scenario
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let log_path = settings
        .out
        .join("tmp")
        .join(format!("memory_{log_name}.log"));
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let cgroup = match Cgroup::new(&format!("multiplexer-bench-{log_name}"), CGROUP_LIMIT) {
        Ok(cgroup) => Some(cgroup),
        Err(why) => {
            eprintln!("{}: no cgroup: {why}", scenario.name);
            None
        }
    };
    let mut command = runner::command_in(cgroup.as_ref(), &settings.sidecar);
    for (name, stub) in names.iter().zip(&stubs) {
        command.arg(format!("-m={name}:{}", stub.port));
    }
    command
        .arg(format!("--export_to={port}"))
        .arg("--log_level=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let sidecar = Running(command.spawn().map_err(|e| format!("start sidecar: {e}"))?);
    let pid = sidecar.0.id();
    wait_healthy(port)?;
    let gzip = "Accept-Encoding: gzip\r\n";
    let mut clients = Vec::new();
    if scenario.client != ClientKind::None {
        clients
            .push(Client::connect_with_headers(port, "/metrics", gzip).map_err(|e| e.to_string())?);
    }
    if scenario.client == ClientKind::GzipBothFormats {
        let headers = format!("{gzip}{ACCEPT_PROTOBUF}");
        clients.push(
            Client::connect_with_headers(port, "/metrics", &headers).map_err(|e| e.to_string())?,
        );
    }
    let start = Instant::now();
    let end = start + settings.warmup + settings.window;
    let before_window = start + settings.warmup;
    let mut before = None;
    let mut reply = None;
    let mut stalled = Vec::new();
    let stall_every = settings.window / (scenario.stalled as u32 + 1);
    let mut next_stall = before_window;
    let mut next_scrape = start;
    while Instant::now() < end {
        let now = Instant::now();
        if before.is_none() && now >= before_window {
            before = Some(procfs::read(pid).map_err(|e| format!("read /proc/{pid}: {e}"))?);
        }
        if !clients.is_empty() && now >= next_scrape {
            for (at, client) in clients.iter_mut().enumerate() {
                let answer = client.get().map_err(|e| format!("client: {e}"))?;
                // The text client's.
                if at == 0 {
                    reply = Some((answer.body_bytes, answer.gzip));
                }
            }
            next_scrape += Duration::from_secs(1);
        }
        if stalled.len() < scenario.stalled && now >= next_stall {
            stalled.push(stalled_client(port, stalled.len() % 2 == 1)?);
            next_stall += stall_every;
        }
        let mut wake = end.min(next_stall.max(before_window));
        if !clients.is_empty() {
            wake = wake.min(next_scrape);
        }
        thread::sleep(
            wake.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(5)),
        );
    }
    let before = match before {
        Some(reading) => reading,
        None => procfs::read(pid).map_err(|e| e.to_string())?,
    };
    let after = procfs::read(pid).map_err(|e| format!("read /proc/{pid}: {e}"))?;
    let mut sidecar = sidecar;
    let oom_kills = cgroup.as_ref().map_or(0, Cgroup::oom_kills);
    let died = match sidecar.0.try_wait() {
        Ok(Some(status)) => Some(format!(
            "exited ({status}, {oom_kills} OOM kills); see {}",
            log_path.display()
        )),
        _ if oom_kills > 0 => Some(format!("{oom_kills} OOM kills")),
        _ => None,
    };
    drop(stalled);
    let up = match died {
        Some(_) => 0,
        None => {
            let output = whole_output(port)?;
            names
                .iter()
                .filter(|name| output.contains(&format!("{UP}{name}\"}} 1\n")))
                .count()
        }
    };
    let cgroup_peak_kib = cgroup.as_ref().map(|cgroup| cgroup.peak_bytes() >> 10);
    drop(sidecar);
    drop(cgroup);
    let seconds = after.at.duration_since(before.at).as_secs_f64().max(1e-9);
    Ok(Outcome {
        name: scenario.name.clone(),
        group: scenario.group,
        containers: names.len(),
        held_bytes: bodies.iter().map(|versions| versions[0].len()).sum(),
        client: scenario.client,
        index_bytes: bodies
            .iter()
            .map(|versions| index_bytes(&versions[0]))
            .sum(),
        peak_kib: after.peak_rss_kib,
        cgroup_peak_kib,
        died,
        rss_kib: after.rss_kib,
        cpu_mcores: (after.cpu_ns - before.cpu_ns) as f64 / 1e6 / seconds,
        up,
        reply,
    })
}

/// Asks for the output (gzip or identity) and never reads the answer.
fn stalled_client(port: u16, gzip: bool) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let encoding = if gzip {
        "Accept-Encoding: gzip\r\n"
    } else {
        ""
    };
    stream
        .write_all(format!("GET /metrics HTTP/1.1\r\nHost: b\r\n{encoding}\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// The identity output, read to the end of a `Connection: close` response
/// (chunked framing removed).
fn whole_output(port: u16) -> Result<String, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    stream
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading the output: {e}"))?;
    let head_end = find_head_end(&bytes).ok_or("no response head")?;
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    let mut body = bytes[head_end..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body).ok_or("bad chunked body")?;
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn dechunk(mut framed: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = framed.windows(2).position(|pair| pair == b"\r\n")?;
        let size_text = std::str::from_utf8(&framed[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        framed = &framed[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(framed.get(..size)?);
        framed = framed.get(size + 2..)?;
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The memory model's promise, checked on every row (docs/MEMORY.md):
/// peak RSS at most 3.5 MiB (static: the binary and libc, the loop's
/// buffers, the compressor) plus two and a quarter times the bytes of
/// bodies held (the quarter: the parser's series memo) plus their indexes,
/// and never past the 32 MiB limit whatever the pod.
fn bound_mib(outcome: &Outcome) -> f64 {
    let variable = 2 * outcome.held_bytes() + outcome.held_bytes() / 4 + outcome.index_bytes;
    (3.5 + variable as f64 / (1 << 20) as f64).min(32.0)
}

fn row(outcome: &Outcome) -> String {
    let reply = match outcome.reply {
        Some((bytes, gzip)) => format!(
            "{:.0} KB{}",
            bytes as f64 / 1e3,
            if gzip { " gzip" } else { "" }
        ),
        None => "-".to_string(),
    };
    let reply = match &outcome.died {
        Some(why) => format!("DIED: {why}"),
        None => reply,
    };
    let bound = bound_mib(outcome);
    let verdict = if mib(outcome.peak_kib) <= bound {
        "met"
    } else {
        "MISSED"
    };
    let cgroup = match outcome.cgroup_peak_kib {
        Some(kib) if mib(kib) <= CGROUP_PEAK_MIB => format!("{:.1}", mib(kib)),
        Some(kib) => format!("{:.1} OVER", mib(kib)),
        None => "-".to_string(),
    };
    format!(
        "| {} | {:.1} MB | {:.1} | {cgroup} | {bound:.1} {verdict} | {:.1} | {}/{} | {:.1} | {} |",
        outcome.name,
        outcome.held_bytes() as f64 / 1e6,
        mib(outcome.peak_kib),
        mib(outcome.rss_kib),
        outcome.up,
        outcome.containers,
        outcome.cpu_mcores,
        reply,
    )
}

fn markdown(outcomes: &[Outcome], settings: &Settings) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Memory: peak resident memory (VmHWM) by pod shape\n\n\
         Default flags (200 ms interval, 4 MiB body limit); every stub's data \
         changes at every scrape; {} s warm-up, {} s window. Peak and end RSS in MiB \
         (2^20 bytes); bytes held in MB (10^6). `cgroup` is the peak usage of the 32 MiB \
         memory cgroup the sidecar ran in (`memory.max_usage_in_bytes` or `memory.peak`: \
         what Kubernetes kills by; OVER past 28 MiB). `up` counts the containers up in the \
         output read after the window; `reply` is the client's last response. `bound` is \
         the memory model's promise for the peak RSS: 3.5 MiB plus two and a quarter times \
         the bodies held plus their indexes (16 bytes a sample, 147 a family), at most 32 MiB.\n",
        settings.warmup.as_secs_f64(),
        settings.window.as_secs_f64()
    );
    for (group, title) in [
        ("rows", "Issue 12's pods, a gzip client every second"),
        (
            "hostile",
            "Issue 11's hostile shapes, a gzip client every second",
        ),
        ("sweep", "Growth sweep"),
    ] {
        let rows: Vec<&Outcome> = outcomes.iter().filter(|o| o.group == group).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(s, "## {title}\n");
        s.push_str(&runner::table_head(&[
            "scenario",
            "held",
            "peak MiB",
            "cgroup MiB",
            "bound MiB",
            "end MiB",
            "up",
            "CPU mc",
            "reply",
        ]));
        for outcome in rows {
            let _ = writeln!(s, "{}", row(outcome));
        }
        s.push('\n');
    }
    s
}

/// Peak RSS (MiB) against bytes held (MB), both linear, one series with the
/// client and one without; the 32 MiB limit drawn across.
fn svg(outcomes: &[Outcome]) -> String {
    let sweep: Vec<&Outcome> = outcomes.iter().filter(|o| o.group == "sweep").collect();
    let (width, height, left, right, top, bottom) = (720.0, 480.0, 70.0, 170.0, 30.0, 50.0);
    let (plot_w, plot_h) = (width - left - right, height - top - bottom);
    let x_max = sweep
        .iter()
        .map(|o| o.held_bytes() as f64 / 1e6)
        .fold(16.0, f64::max)
        .ceil();
    let y_max = sweep
        .iter()
        .map(|o| mib(o.peak_kib))
        .fold(40.0, f64::max)
        .ceil();
    let px = |x: f64| left + x / x_max * plot_w;
    let py = |y: f64| top + plot_h - y / y_max * plot_h;
    let mut s = String::new();
    let _ = writeln!(s, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">");
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(s, "<text x=\"{}\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">Sidecar peak RSS against bytes held by the pod (200 ms interval)</text>", left + plot_w / 2.0);
    let step_x = if x_max > 40.0 { 10.0 } else { 4.0 };
    let mut x = 0.0;
    while x <= x_max {
        let _ = writeln!(
            s,
            "<line x1=\"{0:.1}\" y1=\"{top}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#ddd\"/><text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{x}</text>",
            px(x),
            top + plot_h,
            top + plot_h + 16.0
        );
        x += step_x;
    }
    let mut y = 0.0;
    while y <= y_max {
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"#ddd\"/><text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"end\">{y}</text>",
            py(y),
            left + plot_w,
            left - 6.0,
            py(y) + 4.0
        );
        y += 8.0;
    }
    let _ = writeln!(s, "<rect x=\"{left}\" y=\"{top}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"black\"/>");
    let limit = py(32.0);
    let _ = writeln!(s, "<line x1=\"{left}\" y1=\"{limit:.1}\" x2=\"{:.1}\" y2=\"{limit:.1}\" stroke=\"#c00\" stroke-dasharray=\"6 4\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#c00\">32 MiB limit</text>", left + plot_w, left + plot_w + 6.0, limit + 4.0);
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">MB of bodies held (containers x body)</text>",
        left + plot_w / 2.0,
        height - 10.0
    );
    let _ = writeln!(s, "<text transform=\"translate(18,{:.1}) rotate(-90)\" text-anchor=\"middle\">peak RSS, MiB</text>", top + plot_h / 2.0);
    for (index, (client, colour, label)) in [
        (ClientKind::None, "#1f77b4", "no client"),
        (
            ClientKind::GzipEverySecond,
            "#ff7f0e",
            "gzip client every 1 s",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut points: Vec<(f64, f64)> = sweep
            .iter()
            .filter(|o| o.client == client)
            .map(|o| (o.held_bytes() as f64 / 1e6, mib(o.peak_kib)))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (x, y) in &points {
            let _ = writeln!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{colour}\"/>",
                px(*x),
                py(*y)
            );
        }
        let legend_y = top + 20.0 + index as f64 * 18.0;
        let _ = writeln!(s, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{:.1}\">{label}</text>", left + plot_w + 12.0, legend_y, left + plot_w + 22.0, legend_y + 4.0);
    }
    s.push_str("</svg>\n");
    s
}
