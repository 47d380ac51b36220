//! The footprint runner: for each scenario it starts stub exporters (threads
//! of this process), then the release sidecar, lets it warm up, and measures
//! the sidecar's PID alone over a fixed window: CPU, resident memory,
//! wake-ups, the scrape cadence each stub saw and, where a scenario has
//! clients, their throughput and latency. Writes `results/footprint.md`,
//! `results/footprint.json` and `results/cpu_vs_bytes.svg`.
//!
//! It builds nothing: build the sidecar first with `cargo build --release`
//! at the repository root, then `cd bench && cargo run --release --bin
//! footprint` (`--sidecar PATH` or `MULTIPLEXER_SIDECAR` if the binary is
//! not in `$CARGO_TARGET_DIR/release` or `../target/release`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use multiplexer::exposition::negotiate::ACCEPT_OPENMETRICS;
use multiplexer_bench::args::Args;
use multiplexer_bench::load::{self, Client, LoadReport};
use multiplexer_bench::procfs::{self, Reading};
use multiplexer_bench::runner::{self, free_port, wait_healthy, Running};
use multiplexer_bench::stub::{self, Cadence, Framing, Stub, StubOptions};
use multiplexer_bench::synth;

const SIDECAR_BINARY: &str = "metrics-multiplexer-sidecar";
const HELP: &str = "\
footprint: measure the release sidecar's CPU, memory, wake-ups and serving speed

    cd bench && cargo run --release --bin footprint [-- OPTIONS]

OPTIONS (seconds unless stated):
    --sidecar PATH          release binary [env MULTIPLEXER_SIDECAR, else
                            $CARGO_TARGET_DIR/release or ../target/release]
    --window S              measuring window of S, L, X and served [30]
    --warmup S              time before each window [5]
    --sweep_window S        measuring window of each growth sweep point [10]
    --client_window S       window of the 15 s client scenarios [60]
    --client_every S        interval of the periodic client [15]
    --clients K             keep-alive clients of the served scenario [2]
    --only LIST             comma list of: S,floor,L,X,served,on_demand,openmetrics,sweep
    --out DIR               where results go [bench/results]
    --quick                 short windows for development (5/2/3/30)
";

fn main() -> ExitCode {
    runner::exit("footprint", run())
}

struct Settings {
    sidecar: PathBuf,
    window: Duration,
    warmup: Duration,
    sweep_window: Duration,
    client_window: Duration,
    client_every: Duration,
    clients: usize,
    only: Option<Vec<String>>,
    out: PathBuf,
}

/// What runs against the sidecar during the window, besides the stubs.
#[derive(Clone, Copy)]
enum Clients {
    None,
    /// K keep-alive clients requesting back to back.
    Load(usize),
    /// One keep-alive client requesting at this interval (Prometheus-like).
    Every(Duration),
    /// The same, asking for gzip as Prometheus does.
    EveryGzip(Duration),
    /// The same, with Prometheus 3's `Accept` (OpenMetrics first, UTF-8
    /// names), so the sidecar asks its containers for OpenMetrics and
    /// merges into OpenMetrics.
    EveryOpenMetrics(Duration),
}

/// Which process the window measures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Measured {
    Sidecar,
    /// This program re-run as the least any scraper can do: blocking
    /// keep-alive clients that read every body at the interval and parse
    /// nothing (issue 6's reference point).
    FloorScraper,
}

struct Scenario {
    name: String,
    measured: Measured,
    group: &'static str,
    containers: usize,
    body: Arc<Vec<u8>>,
    interval_ms: u64,
    clients: Clients,
    window: Duration,
}

#[derive(Default)]
struct PeriodicFigures {
    scrapes: usize,
    errors: usize,
    mean_ms: f64,
    max_ms: f64,
    body_bytes: usize,
}

struct Outcome {
    name: String,
    group: &'static str,
    containers: usize,
    body_bytes: usize,
    interval_ms: u64,
    window_s: f64,
    load_average: String,
    cpu_mcores: f64,
    cpu_mcores_ticks: f64,
    wakeups_per_s: f64,
    voluntary_per_s: f64,
    involuntary_per_s: f64,
    rss_kib: u64,
    peak_rss_kib: u64,
    cadences: Vec<Cadence>,
    scrapes_per_s: f64,
    bytes_scraped_per_s: f64,
    load: Option<LoadReport>,
    periodic: Option<PeriodicFigures>,
    verdict: String,
}

fn run() -> Result<(), String> {
    let args = Args::from_env(
        &[
            "sidecar",
            "window",
            "warmup",
            "sweep_window",
            "client_window",
            "client_every",
            "clients",
            "only",
            "out",
            "floor_ports",
            "floor_interval_ms",
        ],
        &["quick", "help"],
    )?;
    if args.switch("help") {
        print!("{HELP}");
        return Ok(());
    }
    if let Some(ports) = args.value("floor_ports") {
        return floor_scraper(ports, args.parsed_or("floor_interval_ms", 200)?);
    }
    let settings = settings(&args)?;
    if !settings.sidecar.is_file() {
        return Err(format!(
            "no sidecar binary at {}: build it with `cargo build --release` at the \
             repository root, or pass --sidecar PATH",
            settings.sidecar.display()
        ));
    }
    std::fs::create_dir_all(settings.out.join("tmp")).map_err(|e| e.to_string())?;
    let scenarios = scenarios(&settings)?;
    let total: f64 = scenarios
        .iter()
        .map(|s| (s.window + settings.warmup).as_secs_f64() + 1.0)
        .sum();
    eprintln!(
        "{} scenarios, about {:.0} s; sidecar {}",
        scenarios.len(),
        total,
        settings.sidecar.display()
    );
    let started = Instant::now();
    let ticks_per_second = procfs::clock_ticks_per_second();
    let mut outcomes = Vec::new();
    for scenario in &scenarios {
        let outcome = measure(&settings, scenario, ticks_per_second)?;
        eprintln!("{}", one_line(&outcome));
        outcomes.push(outcome);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let markdown = markdown(&outcomes, elapsed);
    let files = [
        ("footprint.md", markdown.clone()),
        ("footprint.json", json(&outcomes, elapsed)),
        ("cpu_vs_bytes.svg", svg(&outcomes)),
    ];
    for (name, text) in files {
        let path = settings.out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!("{markdown}");
    eprintln!("results in {}", settings.out.display());
    Ok(())
}

fn settings(args: &Args) -> Result<Settings, String> {
    let quick = args.switch("quick");
    let seconds = |name: &str, full: f64, short: f64| -> Result<Duration, String> {
        let value: f64 = args.parsed_or(name, if quick { short } else { full })?;
        Ok(Duration::from_secs_f64(value))
    };
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
    Ok(Settings {
        sidecar,
        window: seconds("window", 30.0, 5.0)?,
        warmup: seconds("warmup", 5.0, 2.0)?,
        sweep_window: seconds("sweep_window", 10.0, 3.0)?,
        client_window: seconds("client_window", 60.0, 30.0)?,
        client_every: seconds("client_every", 15.0, 15.0)?,
        clients: args.parsed_or("clients", 2)?,
        only: args
            .value("only")
            .map(|list| list.split(',').map(str::to_string).collect()),
        out: args
            .value("out")
            .map(PathBuf::from)
            .unwrap_or_else(|| manifest.join("results")),
    })
}

fn scenarios(settings: &Settings) -> Result<Vec<Scenario>, String> {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/node_exporter.prom");
    let node_exporter =
        Arc::new(std::fs::read(&fixture).map_err(|e| format!("{}: {e}", fixture.display()))?);
    let wanted = |group: &str| {
        settings
            .only
            .as_ref()
            .is_none_or(|only| only.iter().any(|name| name == group))
    };
    let scenario =
        |name: &str, group, containers, body: &Arc<Vec<u8>>, interval_ms, clients, window| {
            Scenario {
                name: name.to_string(),
                measured: Measured::Sidecar,
                group,
                containers,
                body: body.clone(),
                interval_ms,
                clients,
                window,
            }
        };
    let mut list = Vec::new();
    let every = Clients::Every(settings.client_every);
    if wanted("S") {
        list.push(scenario(
            "S",
            "main",
            3,
            &node_exporter,
            200,
            Clients::None,
            settings.window,
        ));
    }
    if wanted("floor") {
        let mut floor = scenario(
            "floor: blocking reader of S",
            "main",
            3,
            &node_exporter,
            200,
            Clients::None,
            settings.window,
        );
        floor.measured = Measured::FloorScraper;
        list.push(floor);
    }
    if wanted("L") {
        let body = Arc::new(synth::body(1_000_000));
        list.push(scenario(
            "L",
            "main",
            3,
            &body,
            200,
            Clients::None,
            settings.window,
        ));
    }
    if wanted("X") {
        let body = Arc::new(synth::body(100_000));
        list.push(scenario(
            "X",
            "main",
            10,
            &body,
            200,
            Clients::None,
            settings.window,
        ));
    }
    if wanted("served") {
        let name = format!("S served to {} keep-alive clients", settings.clients);
        let clients = Clients::Load(settings.clients);
        list.push(scenario(
            &name,
            "main",
            3,
            &node_exporter,
            200,
            clients,
            settings.window,
        ));
    }
    if wanted("on_demand") {
        let every_s = settings.client_every.as_secs_f64();
        let name = format!("S, interval mode, 1 client every {every_s} s");
        list.push(scenario(
            &name,
            "main",
            3,
            &node_exporter,
            200,
            every,
            settings.client_window,
        ));
        let name = format!("S, interval mode, 1 gzip client every {every_s} s");
        list.push(scenario(
            &name,
            "main",
            3,
            &node_exporter,
            200,
            Clients::EveryGzip(settings.client_every),
            settings.client_window,
        ));
        let name = format!("S on demand (-i 0), 1 client every {every_s} s");
        list.push(scenario(
            &name,
            "main",
            3,
            &node_exporter,
            0,
            every,
            settings.client_window,
        ));
    }
    if wanted("openmetrics") {
        // S with a text client, then with an OpenMetrics one (issue 18:
        // no dearer); the stubs answer text whatever they are asked.
        let every_s = settings.client_every.as_secs_f64();
        let name = format!("S, interval mode, 1 client every {every_s} s");
        list.push(scenario(
            &name,
            "main",
            3,
            &node_exporter,
            200,
            every,
            settings.client_window,
        ));
        let name = format!("S, interval mode, 1 OpenMetrics client every {every_s} s");
        list.push(scenario(
            &name,
            "main",
            3,
            &node_exporter,
            200,
            Clients::EveryOpenMetrics(settings.client_every),
            settings.client_window,
        ));
    }
    if wanted("sweep") {
        // Bodies up to 4 MB: under the default --max_body_bytes of 4 MiB.
        let grid: [(usize, &[usize]); 4] = [
            (10_000, &[1, 2, 4, 8, 16]),
            (100_000, &[1, 2, 4, 8, 16]),
            (1_000_000, &[1, 2, 4, 8, 16]),
            (4_000_000, &[1, 2, 4]),
        ];
        for (size, counts) in grid {
            let body = Arc::new(synth::body(size));
            for &count in counts {
                let name = format!("sweep {count} x {}", human_bytes(size as f64));
                list.push(scenario(
                    &name,
                    "sweep",
                    count,
                    &body,
                    200,
                    Clients::None,
                    settings.sweep_window,
                ));
            }
        }
    }
    Ok(list)
}

fn measure(
    settings: &Settings,
    scenario: &Scenario,
    ticks_per_second: u64,
) -> Result<Outcome, String> {
    let mut stubs = Vec::with_capacity(scenario.containers);
    for _ in 0..scenario.containers {
        let options = StubOptions {
            body: scenario.body.clone(),
            alternate: None,
            framing: Framing::ContentLength,
            delay: Duration::ZERO,
            port: 0,
        };
        stubs.push(Stub::start(options).map_err(|e| format!("stub: {e}"))?);
    }
    let export_port = free_port()?;
    let log_name: String = scenario
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let log_path = settings.out.join("tmp").join(format!("{log_name}.log"));
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let mut command = match scenario.measured {
        Measured::Sidecar => {
            let mut command = Command::new(&settings.sidecar);
            for (index, stub) in stubs.iter().enumerate() {
                command.arg(format!("-m=c{index}:{}", stub.port));
            }
            command
                .arg(format!("--export_to={export_port}"))
                .arg(format!("--scrape_interval={}", scenario.interval_ms))
                .arg("--log_level=warn");
            command
        }
        Measured::FloorScraper => {
            let ports: Vec<String> = stubs.iter().map(|stub| stub.port.to_string()).collect();
            let mut command = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
            command
                .arg(format!("--floor_ports={}", ports.join(",")))
                .arg(format!("--floor_interval_ms={}", scenario.interval_ms));
            command
        }
    };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let sidecar = Running(command.spawn().map_err(|e| format!("start sidecar: {e}"))?);
    let pid = sidecar.0.id();
    if scenario.measured == Measured::Sidecar {
        wait_healthy(export_port)?;
    }

    let mut periodic_client = match scenario.clients {
        Clients::Every(_) | Clients::EveryGzip(_) | Clients::EveryOpenMetrics(_) => {
            let headers = match scenario.clients {
                Clients::EveryGzip(_) => "Accept-Encoding: gzip\r\n".to_string(),
                Clients::EveryOpenMetrics(_) => format!("Accept: {ACCEPT_OPENMETRICS}\r\n"),
                _ => String::new(),
            };
            let mut client = Client::connect_with_headers(export_port, "/metrics", &headers)
                .map_err(|e| e.to_string())?;
            // Steady state: connections already open, as with Prometheus.
            client.get().map_err(|e| format!("first scrape: {e}"))?;
            Some(client)
        }
        _ => None,
    };
    thread::sleep(settings.warmup);
    let load_average = procfs::load_average();
    let before = procfs::read(pid).map_err(|e| format!("read /proc/{pid}: {e}"))?;
    let mut load_report = None;
    let mut periodic = None;
    match scenario.clients {
        Clients::None => thread::sleep(scenario.window),
        Clients::Load(clients) => {
            let report = load::run(export_port, "/metrics", clients, scenario.window)
                .map_err(|e| format!("load: {e}"))?;
            load_report = Some(report);
        }
        Clients::Every(every) | Clients::EveryGzip(every) | Clients::EveryOpenMetrics(every) => {
            let client = periodic_client.as_mut().ok_or("no client")?;
            periodic = Some(scrape_periodically(
                client,
                before.at,
                every,
                scenario.window,
            ));
        }
    }
    let after = procfs::read(pid).map_err(|e| format!("read /proc/{pid}: {e}"))?;
    let mut sidecar = sidecar;
    if let Ok(Some(status)) = sidecar.0.try_wait() {
        return Err(format!(
            "sidecar exited during {}: {status}; see {}",
            scenario.name,
            log_path.display()
        ));
    }
    drop(sidecar);

    let cadences: Vec<Cadence> = stubs
        .iter()
        .map(|stub| stub::cadence(&stub.hits_between(before.at, after.at)))
        .collect();
    Ok(outcome(
        scenario,
        &before,
        &after,
        ticks_per_second,
        cadences,
        load_report,
        periodic,
        load_average,
    ))
}

/// Reads every port's body each interval, on a fixed cadence, until killed.
fn floor_scraper(ports: &str, interval_ms: u64) -> Result<(), String> {
    let mut clients = Vec::new();
    for port in ports.split(',') {
        let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
        clients.push(Client::connect(port, "/metrics").map_err(|e| format!("port {port}: {e}"))?);
    }
    let interval = Duration::from_millis(interval_ms.max(1));
    let mut next = Instant::now();
    loop {
        for client in &mut clients {
            client.get().map_err(|e| format!("scrape: {e}"))?;
        }
        next += interval;
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// One request at `start`, `start + every`, ... while inside the window.
fn scrape_periodically(
    client: &mut Client,
    start: Instant,
    every: Duration,
    window: Duration,
) -> PeriodicFigures {
    let mut figures = PeriodicFigures::default();
    let mut total_ms = 0.0;
    let mut next = start;
    while next < start + window {
        let sent = Instant::now();
        match client.get() {
            Ok(reply) if reply.status == 200 => {
                let ms = sent.elapsed().as_secs_f64() * 1e3;
                figures.scrapes += 1;
                figures.body_bytes = reply.body_bytes;
                total_ms += ms;
                figures.max_ms = figures.max_ms.max(ms);
            }
            _ => figures.errors += 1,
        }
        next += every;
        thread::sleep(
            next.min(start + window)
                .saturating_duration_since(Instant::now()),
        );
    }
    if figures.scrapes > 0 {
        figures.mean_ms = total_ms / figures.scrapes as f64;
    }
    figures
}

#[allow(clippy::too_many_arguments)]
fn outcome(
    scenario: &Scenario,
    before: &Reading,
    after: &Reading,
    ticks_per_second: u64,
    cadences: Vec<Cadence>,
    load: Option<LoadReport>,
    periodic: Option<PeriodicFigures>,
    load_average: String,
) -> Outcome {
    let seconds = after.at.duration_since(before.at).as_secs_f64();
    let per_second = |delta: u64| delta as f64 / seconds;
    let scrapes: usize = cadences.iter().map(|c| c.requests).sum();
    let voluntary = after.voluntary_switches - before.voluntary_switches;
    let involuntary = after.involuntary_switches - before.involuntary_switches;
    let mut outcome = Outcome {
        name: scenario.name.clone(),
        group: scenario.group,
        containers: scenario.containers,
        body_bytes: scenario.body.len(),
        interval_ms: scenario.interval_ms,
        window_s: seconds,
        load_average,
        cpu_mcores: (after.cpu_ns - before.cpu_ns) as f64 / 1e6 / seconds,
        cpu_mcores_ticks: (after.cpu_ticks - before.cpu_ticks) as f64 * 1e3
            / ticks_per_second as f64
            / seconds,
        wakeups_per_s: per_second(voluntary + involuntary),
        voluntary_per_s: per_second(voluntary),
        involuntary_per_s: per_second(involuntary),
        rss_kib: after.rss_kib,
        peak_rss_kib: after.peak_rss_kib,
        cadences,
        scrapes_per_s: per_second(scrapes as u64),
        bytes_scraped_per_s: per_second((scrapes * scenario.body.len()) as u64),
        load,
        periodic,
        verdict: String::new(),
    };
    outcome.verdict = verdict(&outcome);
    outcome
}

/// Issue 6's targets; MB is 10^6 bytes.
fn verdict(outcome: &Outcome) -> String {
    let rss_mb = outcome.peak_rss_kib as f64 * 1024.0 / 1e6;
    let mut misses = Vec::new();
    let (cpu_limit, rss_limit) = match outcome.name.as_str() {
        "S" => (1.5, 3.0),
        "L" => (8.0, 12.0),
        _ => (f64::INFINITY, f64::INFINITY),
    };
    if let Some(load) = &outcome.load {
        if load.requests_per_second < 5000.0 {
            misses.push(format!("{:.0} req/s < 5000", load.requests_per_second));
        }
        if load.p99_us > 2000 {
            misses.push(format!("p99 {} us > 2 ms", load.p99_us));
        }
    } else if cpu_limit.is_infinite() {
        return "-".to_string();
    }
    if outcome.cpu_mcores > cpu_limit {
        misses.push(format!("CPU {:.2} > {cpu_limit} mc", outcome.cpu_mcores));
    }
    if rss_mb > rss_limit {
        misses.push(format!("peak RSS {rss_mb:.1} > {rss_limit} MB"));
    }
    if misses.is_empty() {
        "met".to_string()
    } else {
        format!("MISSED: {}", misses.join(", "))
    }
}

fn human_bytes(bytes: f64) -> String {
    if bytes >= 1e6 {
        format!("{:.3} MB", bytes / 1e6).replace(".000", "")
    } else if bytes >= 1e3 {
        format!("{:.1} KB", bytes / 1e3).replace(".0 ", " ")
    } else {
        format!("{bytes:.0} B")
    }
}

fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

/// Mean over stubs of the mean interval, smallest minimum, largest maximum.
fn cadence_summary(cadences: &[Cadence]) -> String {
    let seen: Vec<&Cadence> = cadences.iter().filter(|c| c.requests > 1).collect();
    if seen.is_empty() {
        let requests: usize = cadences.iter().map(|c| c.requests).sum();
        return format!("{requests} requests");
    }
    let mean = seen.iter().map(|c| c.mean_ms).sum::<f64>() / seen.len() as f64;
    let min = seen.iter().map(|c| c.min_ms).fold(f64::INFINITY, f64::min);
    let max = seen.iter().map(|c| c.max_ms).fold(0.0, f64::max);
    format!("{mean:.1} ({min:.0}–{max:.0})")
}

fn clients_summary(outcome: &Outcome) -> String {
    if let Some(load) = &outcome.load {
        return format!(
            "{:.0} req/s, {:.0} MB/s, p50 {} µs, p99 {} µs, max {:.1} ms{}",
            load.requests_per_second,
            load.bytes_per_second / 1e6,
            load.p50_us,
            load.p99_us,
            load.max_us as f64 / 1e3,
            if load.errors > 0 {
                format!(", {} errors", load.errors)
            } else {
                String::new()
            }
        );
    }
    if let Some(periodic) = &outcome.periodic {
        return format!(
            "{} scrapes of {}, mean {:.1} ms, max {:.1} ms{}",
            periodic.scrapes,
            human_bytes(periodic.body_bytes as f64),
            periodic.mean_ms,
            periodic.max_ms,
            if periodic.errors > 0 {
                format!(", {} errors", periodic.errors)
            } else {
                String::new()
            }
        );
    }
    "-".to_string()
}

fn one_line(outcome: &Outcome) -> String {
    format!(
        "{}: {:.2} mc ({:.2} by ticks), RSS {:.2} MB peak {:.2} MB, {:.1} wake-ups/s, cadence {} ms, {}/s scraped, {} [load {}] {}",
        outcome.name,
        outcome.cpu_mcores,
        outcome.cpu_mcores_ticks,
        mb(outcome.rss_kib),
        mb(outcome.peak_rss_kib),
        outcome.wakeups_per_s,
        cadence_summary(&outcome.cadences),
        human_bytes(outcome.bytes_scraped_per_s),
        clients_summary(outcome),
        outcome.load_average,
        outcome.verdict
    )
}

/// Least-squares line `cpu = a + b * MB/s` over the sweep, and its R².
fn fit(points: &[(f64, f64)]) -> Option<(f64, f64, f64)> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let syy: f64 = points.iter().map(|(_, y)| (y - my).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let r2 = if syy == 0.0 {
        1.0
    } else {
        sxy * sxy / (sxx * syy)
    };
    Some((intercept, slope, r2))
}

/// Least squares `cpu = per_scrape * scrapes/s + per_mb * MB/s` (no
/// intercept): CPU ms per scrape and CPU ms per MB, since 1 mc = 1 ms/s.
fn cost_model(outcomes: &[Outcome]) -> Option<(f64, f64)> {
    let (mut ss, mut sm, mut mm, mut sy, mut my) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for o in outcomes.iter().filter(|o| o.group == "sweep") {
        let (scrapes, megabytes, cpu) =
            (o.scrapes_per_s, o.bytes_scraped_per_s / 1e6, o.cpu_mcores);
        ss += scrapes * scrapes;
        sm += scrapes * megabytes;
        mm += megabytes * megabytes;
        sy += scrapes * cpu;
        my += megabytes * cpu;
    }
    let determinant = ss * mm - sm * sm;
    if determinant.abs() < 1e-12 {
        return None;
    }
    Some((
        (sy * mm - my * sm) / determinant,
        (ss * my - sm * sy) / determinant,
    ))
}

fn sweep_points(outcomes: &[Outcome]) -> Vec<(f64, f64)> {
    outcomes
        .iter()
        .filter(|o| o.group == "sweep")
        .map(|o| (o.bytes_scraped_per_s / 1e6, o.cpu_mcores))
        .collect()
}

fn markdown(outcomes: &[Outcome], elapsed_s: f64) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Sidecar footprint\n");
    let _ = writeln!(
        md,
        "Release sidecar measured by PID over each window; CPU in millicores from \
         `/proc/<pid>/task/*/schedstat` (ns) and, in brackets, from utime+stime (clock ticks); \
         RSS and peak (VmRSS, VmHWM) in MB of 10^6 bytes; wake-ups are voluntary + involuntary \
         context switches per second; cadence is the interval between requests each stub saw, \
         mean (min–max) in ms. Load average of the machine (2 cores, shared) at the window's start. \
         Whole run: {elapsed_s:.0} s.\n"
    );
    md.push_str(&runner::table_head(&[
        "scenario",
        "containers × body",
        "interval",
        "CPU mc",
        "RSS / peak MB",
        "wake-ups/s",
        "cadence ms",
        "scraped",
        "clients",
        "load avg",
        "target",
    ]));
    for o in outcomes.iter().filter(|o| o.group == "main") {
        let interval = if o.interval_ms == 0 {
            "on demand".to_string()
        } else {
            format!("{} ms", o.interval_ms)
        };
        let _ = writeln!(
            md,
            "| {} | {} × {} | {} | {:.2} ({:.2}) | {:.2} / {:.2} | {:.1} | {} | {}/s | {} | {} | {} |",
            o.name,
            o.containers,
            human_bytes(o.body_bytes as f64),
            interval,
            o.cpu_mcores,
            o.cpu_mcores_ticks,
            mb(o.rss_kib),
            mb(o.peak_rss_kib),
            o.wakeups_per_s,
            cadence_summary(&o.cadences),
            human_bytes(o.bytes_scraped_per_s),
            clients_summary(o),
            o.load_average,
            o.verdict
        );
    }
    let sweep: Vec<&Outcome> = outcomes.iter().filter(|o| o.group == "sweep").collect();
    if !sweep.is_empty() {
        let _ = writeln!(md, "\n## Growth sweep (200 ms interval)\n");
        md.push_str(&runner::table_head(&[
            "containers",
            "body",
            "scraped MB/s",
            "CPU mc",
            "mc per MB/s",
            "RSS / peak MB",
            "wake-ups/s",
            "cadence ms",
            "load avg",
        ]));
        for o in &sweep {
            let scraped = o.bytes_scraped_per_s / 1e6;
            let _ = writeln!(
                md,
                "| {} | {} | {:.2} | {:.2} ({:.2}) | {:.2} | {:.2} / {:.2} | {:.1} | {} | {} |",
                o.containers,
                human_bytes(o.body_bytes as f64),
                scraped,
                o.cpu_mcores,
                o.cpu_mcores_ticks,
                if scraped > 0.0 {
                    o.cpu_mcores / scraped
                } else {
                    0.0
                },
                mb(o.rss_kib),
                mb(o.peak_rss_kib),
                o.wakeups_per_s,
                cadence_summary(&o.cadences),
                o.load_average
            );
        }
        if let Some((intercept, slope, r2)) = fit(&sweep_points(outcomes)) {
            let _ = writeln!(
                md,
                "\nLeast-squares fit over the sweep: CPU ≈ {intercept:.2} mc + {slope:.2} mc per MB/s scraped (R² = {r2:.3}). Plot: `cpu_vs_bytes.svg`."
            );
        }
        if let Some((per_scrape_ms, per_mb_ms)) = cost_model(outcomes) {
            let _ = writeln!(
                md,
                "\nTwo-term fit (a fixed cost per scrape plus a cost per byte): CPU mc ≈ {:.0} µs × scrapes/s + {:.2} ms × MB/s.",
                per_scrape_ms * 1e3,
                per_mb_ms
            );
        }
    }
    md
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json(outcomes: &[Outcome], elapsed_s: f64) -> String {
    let mut js = String::new();
    let _ = writeln!(
        js,
        "{{\n  \"elapsed_s\": {elapsed_s:.1},\n  \"scenarios\": ["
    );
    for (index, o) in outcomes.iter().enumerate() {
        let cadences: Vec<String> = o
            .cadences
            .iter()
            .map(|c| {
                format!(
                    "{{\"requests\": {}, \"mean_ms\": {:.2}, \"min_ms\": {:.2}, \"max_ms\": {:.2}}}",
                    c.requests, c.mean_ms, c.min_ms, c.max_ms
                )
            })
            .collect();
        let load = match &o.load {
            Some(l) => format!(
                "{{\"clients\": {}, \"seconds\": {:.2}, \"requests\": {}, \"errors\": {}, \"requests_per_s\": {:.1}, \"bytes_per_s\": {:.0}, \"p50_us\": {}, \"p99_us\": {}, \"max_us\": {}}}",
                l.clients, l.seconds, l.requests, l.errors, l.requests_per_second, l.bytes_per_second, l.p50_us, l.p99_us, l.max_us
            ),
            None => "null".to_string(),
        };
        let periodic = match &o.periodic {
            Some(p) => format!(
                "{{\"scrapes\": {}, \"errors\": {}, \"mean_ms\": {:.2}, \"max_ms\": {:.2}, \"body_bytes\": {}}}",
                p.scrapes, p.errors, p.mean_ms, p.max_ms, p.body_bytes
            ),
            None => "null".to_string(),
        };
        let _ = write!(
            js,
            "    {{\"name\": {}, \"group\": {}, \"containers\": {}, \"body_bytes\": {}, \"interval_ms\": {}, \
             \"window_s\": {:.2}, \"load_average\": {}, \"cpu_mcores\": {:.3}, \"cpu_mcores_ticks\": {:.3}, \
             \"wakeups_per_s\": {:.2}, \"voluntary_switches_per_s\": {:.2}, \"involuntary_switches_per_s\": {:.2}, \
             \"rss_kib\": {}, \"peak_rss_kib\": {}, \"scrapes_per_s\": {:.2}, \"bytes_scraped_per_s\": {:.0}, \
             \"cadence\": [{}], \"load\": {}, \"periodic_client\": {}, \"target\": {}}}",
            json_string(&o.name),
            json_string(o.group),
            o.containers,
            o.body_bytes,
            o.interval_ms,
            o.window_s,
            json_string(&o.load_average),
            o.cpu_mcores,
            o.cpu_mcores_ticks,
            o.wakeups_per_s,
            o.voluntary_per_s,
            o.involuntary_per_s,
            o.rss_kib,
            o.peak_rss_kib,
            o.scrapes_per_s,
            o.bytes_scraped_per_s,
            cadences.join(", "),
            load,
            periodic,
            json_string(&o.verdict)
        );
        let _ = writeln!(js, "{}", if index + 1 < outcomes.len() { "," } else { "" });
    }
    let _ = writeln!(js, "  ]\n}}");
    js
}

/// Log-log scatter of the sweep (CPU millicores against MB/s scraped), one
/// colour per body size, with the least-squares line.
fn svg(outcomes: &[Outcome]) -> String {
    let sweep: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.group == "sweep" && o.bytes_scraped_per_s > 0.0 && o.cpu_mcores > 0.0)
        .collect();
    let (width, height, left, right, top, bottom) = (720.0, 480.0, 70.0, 160.0, 30.0, 50.0);
    let (plot_w, plot_h) = (width - left - right, height - top - bottom);
    let log = |v: f64| v.log10();
    let xs: Vec<f64> = sweep
        .iter()
        .map(|o| log(o.bytes_scraped_per_s / 1e6))
        .collect();
    let ys: Vec<f64> = sweep.iter().map(|o| log(o.cpu_mcores)).collect();
    let floor = |values: &[f64]| values.iter().copied().fold(f64::INFINITY, f64::min).floor();
    let ceil = |values: &[f64]| {
        values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
            .ceil()
    };
    let (x0, x1, y0, y1) = if sweep.is_empty() {
        (-2.0, 2.0, -1.0, 2.0)
    } else {
        (
            floor(&xs),
            ceil(&xs).max(floor(&xs) + 1.0),
            floor(&ys),
            ceil(&ys).max(floor(&ys) + 1.0),
        )
    };
    let px = |x: f64| left + (x - x0) / (x1 - x0) * plot_w;
    let py = |y: f64| top + plot_h - (y - y0) / (y1 - y0) * plot_h;
    let mut s = String::new();
    let _ = writeln!(s, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">");
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(s, "<text x=\"{}\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">Sidecar CPU against bytes scraped (200 ms interval, log-log)</text>", left + plot_w / 2.0);
    for decade in (x0 as i32)..=(x1 as i32) {
        let x = px(decade as f64);
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>",
            top + plot_h
        );
        let _ = writeln!(
            s,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            top + plot_h + 16.0,
            10f64.powi(decade)
        );
    }
    for decade in (y0 as i32)..=(y1 as i32) {
        let y = py(decade as f64);
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>",
            left + plot_w
        );
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            y + 4.0,
            10f64.powi(decade)
        );
    }
    let _ = writeln!(s, "<rect x=\"{left}\" y=\"{top}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"black\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">MB scraped per second</text>",
        left + plot_w / 2.0,
        height - 10.0
    );
    let _ = writeln!(s, "<text transform=\"translate(18,{:.1}) rotate(-90)\" text-anchor=\"middle\">CPU millicores</text>", top + plot_h / 2.0);
    if let Some((intercept, slope, r2)) = fit(&sweep_points(outcomes)) {
        let steps = 60;
        let mut path = String::new();
        for step in 0..=steps {
            let x = x0 + (x1 - x0) * step as f64 / steps as f64;
            let y = intercept + slope * 10f64.powf(x);
            if y <= 0.0 || log(y) < y0 || log(y) > y1 {
                continue;
            }
            let _ = write!(
                path,
                "{}{:.1},{:.1} ",
                if path.is_empty() { "M" } else { "L" },
                px(x),
                py(log(y))
            );
        }
        let _ = writeln!(
            s,
            "<path d=\"{path}\" fill=\"none\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>"
        );
        let _ = writeln!(s, "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#555\">fit: {intercept:.2} + {slope:.2}·MB/s (R² {r2:.3})</text>", left + 8.0, top + 16.0);
    }
    let colours = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    ];
    let mut sizes: Vec<usize> = sweep.iter().map(|o| o.body_bytes).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for (o, (x, y)) in sweep.iter().zip(xs.iter().zip(&ys)) {
        let colour =
            colours[sizes.iter().position(|&b| b == o.body_bytes).unwrap_or(0) % colours.len()];
        let _ = writeln!(s, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{colour}\"><title>{} × {}: {:.2} MB/s, {:.2} mc</title></circle>", px(*x), py(*y), o.containers, human_bytes(o.body_bytes as f64), o.bytes_scraped_per_s / 1e6, o.cpu_mcores);
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{}</text>",
            px(*x) + 5.0,
            py(*y) - 5.0,
            o.containers
        );
    }
    for (index, size) in sizes.iter().enumerate() {
        let y = top + 10.0 + index as f64 * 18.0;
        let x = left + plot_w + 14.0;
        let _ = writeln!(
            s,
            "<circle cx=\"{x}\" cy=\"{y}\" r=\"4\" fill=\"{}\"/>",
            colours[index % colours.len()]
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\">body {}</text>",
            x + 10.0,
            y + 4.0,
            human_bytes(*size as f64)
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" font-size=\"10\">labels: containers</text>",
        left + plot_w + 14.0,
        top + 10.0 + sizes.len() as f64 * 18.0
    );
    let _ = writeln!(s, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_of_exact_line_and_of_too_few_points() {
        let (intercept, slope, r2) = fit(&[(1.0, 3.0), (2.0, 5.0), (4.0, 9.0)]).unwrap();
        assert!((intercept - 1.0).abs() < 1e-9);
        assert!((slope - 2.0).abs() < 1e-9);
        assert!((r2 - 1.0).abs() < 1e-9);
        assert!(fit(&[(1.0, 1.0)]).is_none());
        assert!(fit(&[(1.0, 1.0), (1.0, 2.0)]).is_none());
    }

    #[test]
    fn human_bytes_forms() {
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(10_000.0), "10 KB");
        assert_eq!(human_bytes(57_523.0), "57.5 KB");
        assert_eq!(human_bytes(1_000_000.0), "1 MB");
        assert_eq!(human_bytes(15_004_000.0), "15.004 MB");
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
