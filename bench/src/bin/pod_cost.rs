//! The whole pod's cost: what a real node_exporter and the sidecar spend
//! together in each scrape mode, against Prometheus scraping node_exporter
//! directly (no sidecar).
//!
//! Each scenario starts a fresh node_exporter on a loopback port, and the
//! sidecar when the scenario has one, then a Prometheus-like client (keep-alive,
//! Prometheus' request headers, gzip asked for as Prometheus does) that
//! scrapes either node_exporter or the sidecar every `--every` seconds. Both
//! processes are measured from outside by PID (`/proc/<pid>/task/*/schedstat`)
//! over the window; the client's own cost is never counted.
//!
//! ```sh
//! cargo build --release && cd bench && cargo run --release --bin pod_cost
//! ```
//!
//! Writes `results/pod_cost.md` and `results/pod_cost.json`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use multiplexer_bench::args::Args;
use multiplexer_bench::procfs;
use multiplexer_bench::runner::{self, free_port, quiet, wait_for, Running};

const USAGE: &str = "\
pod_cost: node_exporter + sidecar CPU per scrape mode, and Prometheus scraping node_exporter directly

    --node_exporter PATH    node_exporter binary [prometheus-node-exporter, else node_exporter, on PATH]
    --sidecar PATH          sidecar binary [$MULTIPLEXER_SIDECAR, else $CARGO_TARGET_DIR/release or ../target/release]
    --window S              measured seconds per scenario [120]
    --warmup S              seconds before each window [10]
    --every S               the Prometheus-like client's scrape interval [15]
    --only LIST             comma list of scenario keys: idle,direct,direct_identity,i200,i1000,i5000,on_demand
    --out DIR               where pod_cost.md and pod_cost.json go [results]
";

/// What Prometheus 2.x sends when it scrapes (scrape/scrape.go).
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn main() -> ExitCode {
    runner::exit("pod_cost", run())
}

/// Who the Prometheus-like client scrapes.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    /// Nobody scrapes: node_exporter's own idle cost.
    Nobody,
    /// node_exporter directly; `gzip` as Prometheus asks by default.
    NodeExporter { gzip: bool },
    /// The sidecar at this `--scrape_interval` (0: on demand).
    Sidecar { interval_ms: u64 },
}

struct Scenario {
    key: &'static str,
    name: &'static str,
    target: Target,
}

const SCENARIOS: [Scenario; 7] = [
    Scenario {
        key: "idle",
        name: "node_exporter alone, nobody scrapes",
        target: Target::Nobody,
    },
    Scenario {
        key: "direct",
        name: "no sidecar: Prometheus scrapes node_exporter directly (gzip)",
        target: Target::NodeExporter { gzip: true },
    },
    Scenario {
        key: "direct_identity",
        name: "no sidecar: Prometheus scrapes node_exporter directly, compression off",
        target: Target::NodeExporter { gzip: false },
    },
    Scenario {
        key: "i200",
        name: "sidecar, interval 200 ms (the default)",
        target: Target::Sidecar { interval_ms: 200 },
    },
    Scenario {
        key: "i1000",
        name: "sidecar, interval 1 s",
        target: Target::Sidecar { interval_ms: 1000 },
    },
    Scenario {
        key: "i5000",
        name: "sidecar, interval 5 s",
        target: Target::Sidecar { interval_ms: 5000 },
    },
    Scenario {
        key: "on_demand",
        name: "sidecar, on demand (-i 0)",
        target: Target::Sidecar { interval_ms: 0 },
    },
];

struct Settings {
    node_exporter: PathBuf,
    sidecar: PathBuf,
    window: Duration,
    warmup: Duration,
    every: Duration,
    only: Option<Vec<String>>,
    out: PathBuf,
}

struct Outcome {
    key: &'static str,
    name: &'static str,
    window_s: f64,
    node_mc: f64,
    sidecar_mc: Option<f64>,
    node_rss_mb: f64,
    sidecar_rss_mb: Option<f64>,
    node_requests: usize,
    scrapes: usize,
    errors: usize,
    body_bytes: usize,
    load_average: String,
}

fn run() -> Result<(), String> {
    let args = Args::from_env(
        &[
            "node_exporter",
            "sidecar",
            "window",
            "warmup",
            "every",
            "only",
            "out",
        ],
        &["help"],
    )?;
    if args.switch("help") {
        print!("{USAGE}");
        return Ok(());
    }
    let seconds = |name: &str, default: f64| -> Result<Duration, String> {
        match args.value(name) {
            None => Ok(Duration::from_secs_f64(default)),
            Some(text) => text
                .parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("--{name} takes positive seconds, got {text:?}")),
        }
    };
    let settings = Settings {
        node_exporter: match args.value("node_exporter") {
            Some(path) => PathBuf::from(path),
            None => find_on_path(&["prometheus-node-exporter", "node_exporter"])
                .ok_or("no node_exporter on PATH (apt-get install prometheus-node-exporter)")?,
        },
        sidecar: sidecar_path(args.value("sidecar"))?,
        window: seconds("window", 120.0)?,
        warmup: seconds("warmup", 10.0)?,
        every: seconds("every", 15.0)?,
        only: args
            .value("only")
            .map(|list| list.split(',').map(str::to_string).collect()),
        out: PathBuf::from(args.value("out").unwrap_or("results")),
    };
    if let Some(only) = &settings.only {
        for key in only {
            if !SCENARIOS.iter().any(|scenario| scenario.key == key) {
                return Err(format!("unknown scenario {key:?} in --only"));
            }
        }
    }
    std::fs::create_dir_all(&settings.out).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for scenario in &SCENARIOS {
        if let Some(only) = &settings.only {
            if !only.iter().any(|key| key == scenario.key) {
                continue;
            }
        }
        eprintln!(
            "pod_cost: {} ({} s)...",
            scenario.name,
            settings.window.as_secs()
        );
        let outcome = measure(&settings, scenario)?;
        eprintln!("pod_cost:   {}", one_line(&outcome));
        outcomes.push(outcome);
    }
    let version = node_exporter_version(&settings.node_exporter);
    let markdown = markdown(&settings, &outcomes, &version, started.elapsed());
    let json = json(&settings, &outcomes, &version);
    std::fs::write(settings.out.join("pod_cost.md"), &markdown).map_err(|e| e.to_string())?;
    std::fs::write(settings.out.join("pod_cost.json"), json).map_err(|e| e.to_string())?;
    print!("{markdown}");
    Ok(())
}

fn find_on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

fn sidecar_path(given: Option<&str>) -> Result<PathBuf, String> {
    let path = match given {
        Some(path) => PathBuf::from(path),
        None => match std::env::var_os("MULTIPLEXER_SIDECAR") {
            Some(path) => PathBuf::from(path),
            None => {
                let target = std::env::var_os("CARGO_TARGET_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("../target"));
                target.join("release").join("metrics-multiplexer-sidecar")
            }
        },
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "no sidecar binary at {} (cargo build --release at the repository root, or --sidecar)",
            path.display()
        ))
    }
}

fn node_exporter_version(path: &Path) -> String {
    Command::new(path)
        .arg("--version")
        .output()
        .ok()
        .map(|output| {
            // Go programs of that family print it on stderr.
            let text = [output.stdout, output.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

fn measure(settings: &Settings, scenario: &Scenario) -> Result<Outcome, String> {
    let node_port = free_port()?;
    let node = Running(
        quiet(
            Command::new(&settings.node_exporter)
                .arg(format!("--web.listen-address=127.0.0.1:{node_port}")),
        )
        .spawn()
        .map_err(|e| format!("start {}: {e}", settings.node_exporter.display()))?,
    );
    // One identity scrape to learn the body size (and that it is up).
    let body_bytes = wait_for("node_exporter", || {
        PrometheusClient::connect(node_port, false)?.scrape()
    })?
    .body_bytes;

    let mut sidecar = None;
    let client_port = match scenario.target {
        Target::Nobody => None,
        Target::NodeExporter { .. } => Some(node_port),
        Target::Sidecar { interval_ms } => {
            let export_port = free_port()?;
            let child = quiet(
                Command::new(&settings.sidecar)
                    .arg(format!("-m=node:{node_port}"))
                    .arg(format!("--export_to={export_port}"))
                    .arg(format!("--scrape_interval={interval_ms}"))
                    .arg("--log_level=warn"),
            )
            .spawn()
            .map_err(|e| format!("start {}: {e}", settings.sidecar.display()))?;
            sidecar = Some(Running(child));
            Some(export_port)
        }
    };
    let gzip = !matches!(scenario.target, Target::NodeExporter { gzip: false });
    let mut client = match client_port {
        None => None,
        // Steady state: the connection is open, as Prometheus keeps it.
        Some(port) => Some(wait_for("the scraped endpoint", || {
            let mut client = PrometheusClient::connect(port, gzip)?;
            client.scrape()?;
            Ok(client)
        })?),
    };
    thread::sleep(settings.warmup);

    let node_pid = node.0.id();
    let sidecar_pid = sidecar.as_ref().map(|running| running.0.id());
    let load_average = procfs::load_average();
    let read = |pid: u32| procfs::read(pid).map_err(|e| format!("read /proc/{pid}: {e}"));
    let node_before = read(node_pid)?;
    let sidecar_before = sidecar_pid.map(read).transpose()?;
    let (mut scrapes, mut errors) = (0, 0);
    let start = node_before.at;
    let mut next = start;
    while next < start + settings.window {
        thread::sleep(next.saturating_duration_since(Instant::now()));
        if let Some(client) = client.as_mut() {
            match client.scrape() {
                Ok(reply) if reply.status == 200 => scrapes += 1,
                _ => errors += 1,
            }
        }
        next += settings.every;
    }
    thread::sleep((start + settings.window).saturating_duration_since(Instant::now()));
    let node_after = read(node_pid)?;
    let sidecar_after = sidecar_pid.map(read).transpose()?;
    let node_requests = node_requests(node_port).unwrap_or(0);
    drop(client);
    drop(sidecar);
    drop(node);

    let window_s = (node_after.at - node_before.at).as_secs_f64();
    let mc = |before: &procfs::Reading, after: &procfs::Reading| {
        (after.cpu_ns - before.cpu_ns) as f64 / 1e6 / window_s
    };
    Ok(Outcome {
        key: scenario.key,
        name: scenario.name,
        window_s,
        node_mc: mc(&node_before, &node_after),
        sidecar_mc: sidecar_before
            .as_ref()
            .zip(sidecar_after.as_ref())
            .map(|(before, after)| mc(before, after)),
        node_rss_mb: node_after.rss_kib as f64 * 1024.0 / 1e6,
        sidecar_rss_mb: sidecar_after.map(|after| after.rss_kib as f64 * 1024.0 / 1e6),
        node_requests,
        scrapes,
        errors,
        body_bytes,
        load_average,
    })
}

/// node_exporter's own count of `/metrics` requests
/// (`promhttp_metric_handler_requests_total`), read at the end; it includes
/// this read and the first scrapes before the window.
fn node_requests(port: u16) -> io::Result<usize> {
    let mut client = PrometheusClient::connect(port, false)?;
    let reply = client.scrape_keeping_body()?;
    let text = String::from_utf8_lossy(&reply);
    Ok(text
        .lines()
        .filter(|line| line.starts_with("promhttp_metric_handler_requests_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as usize)
}

/// A keep-alive client that asks as Prometheus asks and reads Content-Length
/// or chunked responses (node_exporter streams large bodies chunked).
struct PrometheusClient {
    reader: BufReader<TcpStream>,
    request: Vec<u8>,
}

struct Reply {
    status: u16,
    body_bytes: usize,
}

impl PrometheusClient {
    fn connect(port: u16, gzip: bool) -> io::Result<PrometheusClient> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let encoding = if gzip { "gzip" } else { "identity" };
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: Prometheus/2.42.0\r\n\
             Accept: {PROMETHEUS_ACCEPT}\r\nAccept-Encoding: {encoding}\r\n\
             X-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n"
        );
        Ok(PrometheusClient {
            reader: BufReader::with_capacity(64 * 1024, stream),
            request: request.into_bytes(),
        })
    }

    fn scrape(&mut self) -> io::Result<Reply> {
        self.exchange(None)
    }

    fn scrape_keeping_body(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        self.exchange(Some(&mut body))?;
        Ok(body)
    }

    fn exchange(&mut self, mut keep: Option<&mut Vec<u8>>) -> io::Result<Reply> {
        self.reader.get_mut().write_all(&self.request)?;
        let mut line = String::new();
        self.read_line(&mut line)?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid("status line"))?;
        let (mut length, mut chunked) = (None, false);
        loop {
            self.read_line(&mut line)?;
            if line == "\r\n" {
                break;
            }
            let (name, value) = line.split_once(':').ok_or_else(|| invalid("header"))?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().map_err(|_| invalid("length"))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
        let mut body_bytes = 0;
        if chunked {
            loop {
                self.read_line(&mut line)?;
                let size = line.trim_end().split(';').next().unwrap_or("");
                let size = usize::from_str_radix(size, 16).map_err(|_| invalid("chunk size"))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        self.read_line(&mut line)?;
                        if line == "\r\n" {
                            break;
                        }
                    }
                    break;
                }
                self.take(size, keep.as_deref_mut())?;
                body_bytes += size;
                self.take(2, None)?;
            }
        } else {
            let size = length.ok_or_else(|| invalid("no length"))?;
            self.take(size, keep)?;
            body_bytes = size;
        }
        Ok(Reply { status, body_bytes })
    }

    fn read_line(&mut self, line: &mut String) -> io::Result<()> {
        line.clear();
        if self.reader.read_line(line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    fn take(&mut self, size: usize, keep: Option<&mut Vec<u8>>) -> io::Result<()> {
        let mut limited = (&mut self.reader).take(size as u64);
        let copied = match keep {
            Some(body) => limited.read_to_end(body)?,
            None => io::copy(&mut limited, &mut io::sink())? as usize,
        };
        if copied != size {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("bad response: {what}"))
}

fn pod_mc(outcome: &Outcome) -> f64 {
    outcome.node_mc + outcome.sidecar_mc.unwrap_or(0.0)
}

fn one_line(outcome: &Outcome) -> String {
    let sidecar = outcome
        .sidecar_mc
        .map(|mc| format!("{mc:.2} mc"))
        .unwrap_or_else(|| "-".to_string());
    format!(
        "node_exporter {:.2} mc, sidecar {sidecar}, pod {:.2} mc; node_exporter served {} requests; client {} scrapes, {} errors",
        outcome.node_mc,
        pod_mc(outcome),
        outcome.node_requests,
        outcome.scrapes,
        outcome.errors
    )
}

fn markdown(settings: &Settings, outcomes: &[Outcome], version: &str, elapsed: Duration) -> String {
    let mut text = String::new();
    text.push_str("# Pod cost: node_exporter + sidecar\n\n");
    text.push_str(&format!(
        "`pod_cost`: a fresh {version} per row on loopback, a Prometheus-like client every {} s \
         (keep-alive, Prometheus' Accept and `Accept-Encoding: gzip` unless stated), \
         {} s windows after {} s of warm-up, {:.0} s in all. CPU in millicores from \
         `/proc/<pid>/task/*/schedstat`; RSS at the end of the window, MB of 10^6 bytes. \
         node_exporter's body: {} bytes uncompressed.\n\n",
        settings.every.as_secs_f64(),
        settings.window.as_secs_f64(),
        settings.warmup.as_secs_f64(),
        elapsed.as_secs_f64(),
        outcomes.first().map_or(0, |outcome| outcome.body_bytes),
    ));
    text.push_str(&runner::table_head(&[
        "scenario",
        "node_exporter CPU",
        "sidecar CPU",
        "pod CPU",
        "node_exporter requests",
        "node_exporter RSS",
        "sidecar RSS",
        "load average",
    ]));
    for outcome in outcomes {
        text.push_str(&format!(
            "| {} | {:.2} mc | {} | **{:.2} mc** | {} | {:.1} MB | {} | {} |\n",
            outcome.name,
            outcome.node_mc,
            outcome
                .sidecar_mc
                .map_or("-".to_string(), |mc| format!("{mc:.2} mc")),
            pod_mc(outcome),
            outcome.node_requests,
            outcome.node_rss_mb,
            outcome
                .sidecar_rss_mb
                .map_or("-".to_string(), |mb| format!("{mb:.1} MB")),
            outcome.load_average,
        ));
    }
    text.push_str(
        "\nnode_exporter requests: its own `promhttp_metric_handler_requests_total` at the end \
         of the row, warm-up included. A client error in any row makes it invalid: ",
    );
    let errors: usize = outcomes.iter().map(|outcome| outcome.errors).sum();
    text.push_str(&format!("{errors} errors in this run.\n"));
    text
}

fn json(settings: &Settings, outcomes: &[Outcome], version: &str) -> String {
    let rows: Vec<String> = outcomes
        .iter()
        .map(|outcome| {
            format!(
                "    {{\"key\": \"{}\", \"name\": \"{}\", \"window_s\": {:.1}, \"node_exporter_mc\": {:.3}, \
                 \"sidecar_mc\": {}, \"pod_mc\": {:.3}, \"node_exporter_requests\": {}, \
                 \"node_exporter_rss_mb\": {:.2}, \"sidecar_rss_mb\": {}, \"client_scrapes\": {}, \
                 \"client_errors\": {}, \"body_bytes\": {}, \"load_average\": \"{}\"}}",
                outcome.key,
                outcome.name,
                outcome.window_s,
                outcome.node_mc,
                outcome
                    .sidecar_mc
                    .map_or("null".to_string(), |mc| format!("{mc:.3}")),
                pod_mc(outcome),
                outcome.node_requests,
                outcome.node_rss_mb,
                outcome
                    .sidecar_rss_mb
                    .map_or("null".to_string(), |mb| format!("{mb:.2}")),
                outcome.scrapes,
                outcome.errors,
                outcome.body_bytes,
                outcome.load_average,
            )
        })
        .collect();
    format!(
        "{{\n  \"node_exporter\": \"{}\",\n  \"every_s\": {},\n  \"rows\": [\n{}\n  ]\n}}\n",
        version.replace('"', "'"),
        settings.every.as_secs_f64(),
        rows.join(",\n")
    )
}
