//! Real-world interoperability: the real sidecar binary between real programs
//! from the distribution's packages (issue 5).
//!
//! On loopback ports picked by binding `:0` this starts a real
//! `prometheus-node-exporter`, a real Python `prometheus_client` app
//! (`tests/real_world/app.py`), a real Prometheus server whose own `/metrics`
//! is the third upstream, and the sidecar scraping the three. That Prometheus
//! server scrapes the sidecar every second (`tests/real_world/
//! prometheus.yml.template`), and everything is checked through its HTTP API,
//! which is the point: Prometheus' own scraper and storage are the judge of
//! the merged output, not a parser written here.
//!
//! Every child is killed and reaped when dropped, also while unwinding from a
//! failed assertion (whose message then carries the tails of their logs).
//! Waits are conditions with deadlines. A missing program is a loud SKIP, or
//! a failure when `CI=true`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{container_args, free_port, Sidecar, Stub};

/// Real programs against poisoned containers.
mod hostile;
/// What Prometheus stores and clients get through the sidecar = direct (issue 18).
mod invisible;
mod protobuf;

/// What the sidecar asks every upstream for (DESIGN.md, "Semantics"). Direct
/// scrapes ask the same so that they see the very format the sidecar saw:
/// `prometheus_client` answers OpenMetrics when asked, with other samples.
const ACCEPT_TEXT: &str = "text/plain;version=0.0.4";

const NODE: &str = "node";
const PYTHON: &str = "python";
const PROMETHEUS: &str = "prometheus";
const CONTAINERS: [&str; 3] = [NODE, PYTHON, PROMETHEUS];

/// Starting a program; generous because two cores are shared and Prometheus
/// takes seconds to open its storage.
pub(super) const STARTUP: Duration = Duration::from_secs(60);
/// A handful of Prometheus scrapes of the sidecar, one second apart.
pub(super) const SCRAPES: Duration = Duration::from_secs(30);
/// Between two looks at a condition: each look is a scrape or a query, so
/// not every 10 ms as `util::wait_until` does.
const POLL_PAUSE: Duration = Duration::from_millis(250);

/// Prometheus counts a target's rejected samples here; every one must stay 0.
/// Parse errors do not have a counter: they fail the scrape (`up` 0 and
/// `lastError`), which is checked separately.
const SCRAPE_ERROR_COUNTERS: [&str; 6] = [
    "prometheus_target_scrapes_sample_duplicate_timestamp_total",
    "prometheus_target_scrapes_sample_out_of_order_total",
    "prometheus_target_scrapes_sample_out_of_bounds_total",
    "prometheus_target_scrapes_exceeded_sample_limit_total",
    "prometheus_target_scrapes_exceeded_body_size_limit_total",
    "prometheus_target_scrapes_exemplar_out_of_order_total",
];

#[test]
fn real_programs_through_a_real_prometheus() {
    let programs = match Programs::find() {
        Ok(programs) => programs,
        Err(missing) => return skip_or_fail(&missing),
    };
    let mut rig = Rig::start(&programs, &[NODE, PYTHON], Vec::new());
    let api = PrometheusApi {
        port: rig.prometheus_port,
    };

    let target = eventually(STARTUP, || {
        let target = api.sidecar_target()?;
        (target.health == "up" && target.last_error.is_empty())
            .then_some(target.clone())
            .ok_or_else(|| format!("sidecar target not up yet: {target:?}"))
    })
    .unwrap_or_else(|error| rig.fail(&error));
    println!("real_world: sidecar target {target:?}");

    // The latest scrape of the sidecar holds all three containers once each
    // has series: a container missing from a scrape would have been marked
    // stale by it.
    eventually(STARTUP, || {
        let present = api.series_counts_by_container()?;
        CONTAINERS
            .iter()
            .all(|container| present.get(*container).is_some_and(|&count| count > 0))
            .then_some(())
            .ok_or_else(|| format!("not every container ingested yet: {present:?}"))
    })
    .unwrap_or_else(|error| rig.fail(&error));

    // node_exporter and the Python app expose a fixed set of series (every
    // labelled child of the app exists from its start), so one comparison
    // must match exactly.
    for container in [NODE, PYTHON] {
        let comparison = rig
            .compare(&api, container)
            .unwrap_or_else(|error| rig.fail(&error));
        comparison.print();
        if let Some(difference) = comparison.difference() {
            rig.fail(&difference);
        }
    }
    // Prometheus' own series set moves while it works: a handler, a dialer,
    // an interval quantile gets its series the first time it is used. The
    // three views compared (its storage, the sidecar's latest snapshot, a
    // direct scrape) are up to about 1.2 s apart, so they match once it has
    // settled; until then a difference is retried, never tolerated in the end.
    let mut attempts = 0;
    let comparison = eventually(SCRAPES, || {
        attempts += 1;
        let comparison = rig.compare(&api, PROMETHEUS)?;
        match comparison.difference() {
            None => Ok(comparison),
            Some(difference) => Err(difference),
        }
    })
    .unwrap_or_else(|error| rig.fail(&error));
    comparison.print();
    println!("real_world: container=prometheus matched after {attempts} comparison(s)");

    rig.check_no_scrape_errors(&api);
    eventually(SCRAPES, || {
        expect_up(&api, &[(NODE, 1.0), (PYTHON, 1.0), (PROMETHEUS, 1.0)])
    })
    .unwrap_or_else(|error| rig.fail(&error));
    println!("real_world: multiplexer_up is 1 for node, python and prometheus");

    // Stop node_exporter. The sidecar's next scrape of it fails, so it serves
    // nothing for it; Prometheus' next scrape of the sidecar then writes
    // staleness markers for every node series. Without those markers an
    // instant query would still find them for its 5 minute lookback, so an
    // empty answer within seconds proves they were written.
    rig.stop(NODE);
    let stale_query = format!("count({})", own_series_selector(NODE));
    eventually(SCRAPES, || {
        let samples = api.query(&stale_query)?;
        match samples.first() {
            None => Ok(()),
            Some((_, count)) if *count == 0.0 => Ok(()),
            Some((_, count)) => Err(format!("{count} node series not stale yet")),
        }
    })
    .unwrap_or_else(|error| rig.fail(&error));
    eventually(SCRAPES, || {
        expect_up(&api, &[(NODE, 0.0), (PYTHON, 1.0), (PROMETHEUS, 1.0)])
    })
    .unwrap_or_else(|error| rig.fail(&error));
    let present = api
        .series_counts_by_container()
        .unwrap_or_else(|error| rig.fail(&error));
    println!("real_world: after stopping node_exporter, series per container {present:?}");
    for container in [PYTHON, PROMETHEUS] {
        if !present.get(container).is_some_and(|&count| count > 0) {
            rig.fail(&format!(
                "{container} lost its series with node: {present:?}"
            ));
        }
    }
    println!("real_world: node series stale, multiplexer_up node 0, python and prometheus 1");
    rig.check_no_scrape_errors(&api);
}

/// A missing real program fails in CI and is a loud skip elsewhere.
pub(super) fn skip_or_fail(missing: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and a real program is missing: {missing}; .ci/run installs it");
    }
    // Straight to the stderr handle: the test harness captures `eprintln!`
    // of passing tests, and this must be seen without `--nocapture`.
    let rule = "#".repeat(72);
    let _ = writeln!(
        std::io::stderr(),
        "\n{rule}\nSKIP real_world: {missing}\n     \
         install the programs with .ci/run; CI=true makes this a failure\n{rule}\n"
    );
}

/// The programs to run, by the names they answered to.
struct Programs {
    prometheus: String,
    node_exporter: String,
    python: String,
}

impl Programs {
    fn find() -> Result<Programs, String> {
        Ok(Programs {
            prometheus: first_runnable(&["prometheus"], &["--version"])?,
            // Debian's name, then upstream's.
            node_exporter: first_runnable(
                &["prometheus-node-exporter", "node_exporter"],
                &["--version"],
            )?,
            python: first_runnable(&["python3"], &["-c", "import prometheus_client"])?,
        })
    }
}

/// The first of `names` that runs `args` successfully.
pub(super) fn first_runnable(names: &[&str], args: &[&str]) -> Result<String, String> {
    names
        .iter()
        .find(|name| {
            Command::new(name)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        })
        .map(|name| name.to_string())
        .ok_or_else(|| format!("none of {names:?} runs `{}`", args.join(" ")))
}

/// A child process writing its output to a log file; killed and reaped when
/// dropped.
pub(super) struct Process {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    pub(super) fn start(
        name: &'static str,
        program: &str,
        args: &[String],
        log: PathBuf,
    ) -> Process {
        let output = File::create(&log).expect("create a log file");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("clone a log file"))
            .stderr(output)
            .spawn()
            .unwrap_or_else(|error| panic!("start {name} ({program}): {error}"));
        Process {
            name,
            child: Some(child),
            log,
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(super) fn name(&self) -> &'static str {
        self.name
    }

    pub(super) fn log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A directory for logs, configuration and Prometheus' storage, removed when
/// dropped.
pub(super) struct ScratchDir(pub(super) PathBuf);

impl ScratchDir {
    pub(super) fn new() -> ScratchDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "multiplexer-real-world-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&path).expect("create a scratch directory");
        ScratchDir(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A real exporter the sidecar scrapes as container `container`.
struct Exporter {
    container: &'static str,
    port: u16,
    process: Process,
}

/// Everything running: real exporters and stub exporters as containers, the
/// sidecar scraping them and Prometheus' own `/metrics` (container
/// `prometheus`), and that Prometheus scraping the sidecar. Fields drop in
/// order: the processes, then the directory holding their files.
struct Rig {
    exporters: Vec<Exporter>,
    stubs: Vec<(&'static str, Stub)>,
    prometheus: Process,
    sidecar: Sidecar,
    prometheus_port: u16,
    _dir: ScratchDir,
}

impl Rig {
    /// Starts the real exporters named in `real` (of `NODE` and `PYTHON`)
    /// and the sidecar scraping them, the `stubs` and Prometheus.
    fn start(programs: &Programs, real: &[&'static str], stubs: Vec<(&'static str, Stub)>) -> Rig {
        let dir = ScratchDir::new();
        let exporters: Vec<Exporter> = real
            .iter()
            .map(|&container| {
                let port = free_port();
                let process = match container {
                    NODE => Process::start(
                        "node_exporter",
                        &programs.node_exporter,
                        &[
                            format!("--web.listen-address=127.0.0.1:{port}"),
                            // Both ask systemd over D-Bus, which a test machine or a
                            // container may not run: an error line per scrape, no data.
                            "--no-collector.systemd".to_string(),
                            "--no-collector.logind".to_string(),
                        ],
                        dir.0.join("node_exporter.log"),
                    ),
                    PYTHON => {
                        let app =
                            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real_world/app.py");
                        Process::start(
                            "python app",
                            &programs.python,
                            &[app.display().to_string(), port.to_string()],
                            dir.0.join("python.log"),
                        )
                    }
                    other => panic!("no real exporter is called {other}"),
                };
                Exporter {
                    container,
                    port,
                    process,
                }
            })
            .collect();
        for exporter in &exporters {
            let answering = eventually(STARTUP, || scrape(exporter.port, "/metrics").map(|_| ()));
            if let Err(error) = answering {
                panic!(
                    "{} never answered: {error}\n{}",
                    exporter.process.name,
                    exporter.process.log_tail()
                );
            }
        }

        // The sidecar first (it picks its own port), Prometheus' port known
        // in advance: the sidecar waits for upstreams that are not up yet.
        let prometheus_port = free_port();
        let mut containers: Vec<(&str, u16)> = exporters
            .iter()
            .map(|exporter| (exporter.container, exporter.port))
            .collect();
        containers.extend(
            stubs
                .iter()
                .map(|(container, stub)| (*container, stub.port)),
        );
        containers.push((PROMETHEUS, prometheus_port));
        let sidecar = Sidecar::start(&container_args(&containers));
        let template = fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real_world/prometheus.yml.template"),
        )
        .expect("read the Prometheus configuration template");
        let config_path = dir.0.join("prometheus.yml");
        fs::write(
            &config_path,
            template.replace("SIDECAR_ADDRESS", &format!("127.0.0.1:{}", sidecar.port)),
        )
        .expect("write the Prometheus configuration");
        let prometheus = Process::start(
            "prometheus",
            &programs.prometheus,
            &[
                format!("--config.file={}", config_path.display()),
                format!("--storage.tsdb.path={}", dir.0.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{prometheus_port}"),
                "--log.level=warn".to_string(),
            ],
            dir.0.join("prometheus.log"),
        );
        let rig = Rig {
            exporters,
            stubs,
            prometheus,
            sidecar,
            prometheus_port,
            _dir: dir,
        };
        let ready = eventually(STARTUP, || {
            match http_get(prometheus_port, "/-/ready", "*/*") {
                Ok((200, _)) => Ok(()),
                Ok((status, body)) => Err(format!("/-/ready: {status} {body}")),
                Err(error) => Err(error),
            }
        });
        if let Err(error) = ready {
            rig.fail(&format!("Prometheus never became ready: {error}"));
        }
        rig
    }

    /// Stops the real exporter of `container`.
    fn stop(&mut self, container: &str) {
        for exporter in &mut self.exporters {
            if exporter.container == container {
                exporter.process.stop();
            }
        }
    }

    /// Panics with `message` and the tails of every log.
    fn fail(&self, message: &str) -> ! {
        let mut report = format!("{message}\n");
        let processes = self.exporters.iter().map(|exporter| &exporter.process);
        for process in processes.chain([&self.prometheus]) {
            report.push_str(&format!(
                "--- {} log tail ---\n{}\n",
                process.name,
                process.log_tail()
            ));
        }
        for (container, stub) in &self.stubs {
            report.push_str(&format!(
                "--- stub {container}: {} requests ---\n",
                stub.request_count()
            ));
        }
        report.push_str(&format!(
            "--- sidecar stderr ---\n{}\n",
            self.sidecar.stderr()
        ));
        panic!("{report}");
    }

    fn upstream_port(&self, container: &str) -> u16 {
        self.exporters
            .iter()
            .find(|exporter| exporter.container == container)
            .map_or(self.prometheus_port, |exporter| exporter.port)
    }

    /// The container's series in Prometheus' storage now, next to a direct
    /// scrape of the container.
    fn compare(&self, api: &PrometheusApi, container: &'static str) -> Result<Comparison, String> {
        let stored = api.query(&own_series_selector(container))?;
        let stored: BTreeSet<SeriesKey> = stored
            .into_iter()
            .map(|(mut labels, _)| {
                // The labels Prometheus and the sidecar add; none of the
                // three upstreams has labels of those names.
                for added in ["container", "instance", "job"] {
                    labels.remove(added);
                }
                labels
            })
            .collect();
        let body = scrape(self.upstream_port(container), "/metrics")?;
        let (direct_samples, direct) = exposition_series(&body)?;
        Ok(Comparison {
            container,
            stored,
            direct_samples,
            direct,
        })
    }

    /// The sidecar target is healthy, every scrape of it so far succeeded,
    /// and Prometheus rejected none of its samples.
    fn check_no_scrape_errors(&self, api: &PrometheusApi) {
        let target = api
            .sidecar_target()
            .unwrap_or_else(|error| self.fail(&error));
        if target.health != "up" || !target.last_error.is_empty() {
            self.fail(&format!("sidecar target unhealthy: {target:?}"));
        }
        let worst = api
            .query("min_over_time(up{job=\"sidecar\"}[1h])")
            .unwrap_or_else(|error| self.fail(&error));
        let scrapes = api
            .query("count_over_time(up{job=\"sidecar\"}[1h])")
            .unwrap_or_else(|error| self.fail(&error));
        match (worst.first(), scrapes.first()) {
            (Some((_, worst)), Some((_, scrapes))) if *worst == 1.0 => {
                let served = api
                    .query("scrape_samples_scraped{job=\"sidecar\"}")
                    .unwrap_or_else(|error| self.fail(&error));
                let served = served.first().map_or(0.0, |(_, samples)| *samples);
                println!(
                    "real_world: {scrapes} scrapes of the sidecar so far, every one up; \
                     the latest had {served} samples"
                );
            }
            other => self.fail(&format!("a scrape of the sidecar failed: {other:?}")),
        }
        // Straight from Prometheus' /metrics: these counters cover every
        // target, and the sidecar is its only one.
        let own =
            scrape(self.prometheus_port, "/metrics").unwrap_or_else(|error| self.fail(&error));
        for counter in SCRAPE_ERROR_COUNTERS {
            let value = own
                .lines()
                .find_map(|line| line.strip_prefix(counter)?.strip_prefix(' '))
                .and_then(|value| value.trim().parse::<f64>().ok());
            match value {
                Some(0.0) => {}
                other => self.fail(&format!("{counter} is {other:?}, not 0")),
            }
        }
        println!(
            "real_world: no rejected samples ({})",
            SCRAPE_ERROR_COUNTERS.join(", ")
        );
    }
}

/// A series as Prometheus stores it: `__name__` and every label with a
/// non-empty value (an empty label value is the same as no label).
pub(super) type SeriesKey = BTreeMap<String, String>;

/// One container seen through Prometheus' storage and directly.
struct Comparison {
    container: &'static str,
    /// Series in Prometheus' storage with this container's label, less the
    /// labels Prometheus and the sidecar added.
    stored: BTreeSet<SeriesKey>,
    /// Sample lines of the direct scrape.
    direct_samples: usize,
    /// Distinct series of those samples.
    direct: BTreeSet<SeriesKey>,
}

impl Comparison {
    fn print(&self) {
        println!(
            "real_world: container={} series_in_prometheus={} samples_in_direct_scrape={}",
            self.container,
            self.stored.len(),
            self.direct_samples
        );
    }

    /// What differs, if anything: a sample repeated in the direct scrape
    /// (Prometheus would reject it), or a series on one side only.
    fn difference(&self) -> Option<String> {
        if self.direct_samples == self.direct.len() && self.stored == self.direct {
            return None;
        }
        let only_stored: Vec<_> = self.stored.difference(&self.direct).take(10).collect();
        let only_direct: Vec<_> = self.direct.difference(&self.stored).take(10).collect();
        Some(format!(
            "container {}: {} series in Prometheus, {} samples ({} distinct) in a direct scrape\n\
             only in Prometheus (first 10): {only_stored:?}\n\
             only in the direct scrape (first 10): {only_direct:?}",
            self.container,
            self.stored.len(),
            self.direct_samples,
            self.direct.len()
        ))
    }
}

/// `{container="<name>"}` less the sidecar's own `multiplexer_*` series about
/// that container, which no upstream exposes.
fn own_series_selector(container: &str) -> String {
    format!("{{container=\"{container}\",__name__!~\"multiplexer_.*\"}}")
}

/// `multiplexer_up` in Prometheus' storage is `expected` for each container.
fn expect_up(api: &PrometheusApi, expected: &[(&str, f64)]) -> Result<(), String> {
    let samples = api.query("multiplexer_up")?;
    let seen: BTreeMap<String, f64> = samples
        .into_iter()
        .filter_map(|(labels, value)| Some((labels.get("container")?.clone(), value)))
        .collect();
    let wanted: BTreeMap<String, f64> = expected
        .iter()
        .map(|(container, value)| (container.to_string(), *value))
        .collect();
    (seen == wanted)
        .then_some(())
        .ok_or_else(|| format!("multiplexer_up is {seen:?}, want {wanted:?}"))
}

/// The samples of a text exposition (format 0.0.4) and the series they make,
/// as Prometheus would ingest them.
fn exposition_series(body: &str) -> Result<(usize, BTreeSet<SeriesKey>), String> {
    let mut samples = 0;
    let mut series = BTreeSet::new();
    for line in body.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        samples += 1;
        series.insert(series_of_line(line).map_err(|error| format!("{error} in {line:?}"))?);
    }
    Ok((samples, series))
}

/// The series of one sample line:
/// `name [{label="value",...}] value [timestamp]`, label values unescaped
/// (`\\`, `\"`, `\n`), empty ones dropped.
pub(super) fn series_of_line(line: &str) -> Result<SeriesKey, String> {
    let name_end = line
        .find(['{', ' ', '\t'])
        .ok_or("a sample without a value")?;
    let mut series = SeriesKey::new();
    series.insert("__name__".to_string(), line[..name_end].to_string());
    let mut rest = &line[name_end..];
    if let Some(labels) = rest.strip_prefix('{') {
        rest = labels;
        loop {
            rest = rest.trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (name, after) = rest.split_once('=').ok_or("a label without '='")?;
            let quoted = after
                .trim_start()
                .strip_prefix('"')
                .ok_or("a label value without '\"'")?;
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next() {
                    Some((at, '"')) => break at + 1,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, escaped)) => value.push(escaped),
                        None => return Err("a label value ending in '\\'".to_string()),
                    },
                    Some((_, other)) => value.push(other),
                    None => return Err("an unterminated label value".to_string()),
                }
            };
            rest = &quoted[end..];
            if !value.is_empty() {
                series.insert(name.trim().to_string(), value);
            }
        }
    }
    if rest.split_whitespace().next().is_none() {
        return Err("a sample without a value".to_string());
    }
    Ok(series)
}

/// An instant query's answer: each sample's labels and value.
pub(super) type InstantVector = Vec<(BTreeMap<String, String>, f64)>;

/// The sidecar target as `/api/v1/targets` reports it.
#[derive(Clone, Debug)]
pub(super) struct Target {
    pub(super) health: String,
    pub(super) last_error: String,
}

/// Prometheus' HTTP API on loopback.
pub(super) struct PrometheusApi {
    pub(super) port: u16,
}

impl PrometheusApi {
    /// The `data` of a successful API answer.
    pub(super) fn get(&self, target: &str) -> Result<Value, String> {
        let (status, body) = http_get(self.port, target, "application/json")?;
        let answer: Value = serde_json::from_str(&body)
            .map_err(|error| format!("GET {target}: {status}, not JSON ({error}): {body}"))?;
        if status != 200 || answer["status"] != "success" {
            return Err(format!("GET {target}: {status} {body}"));
        }
        Ok(answer["data"].clone())
    }

    /// An instant query's vector: each sample's labels and value.
    pub(super) fn query(&self, promql: &str) -> Result<InstantVector, String> {
        let data = self.get(&format!("/api/v1/query?query={}", percent_encode(promql)))?;
        let result = data["result"]
            .as_array()
            .ok_or_else(|| format!("{promql}: no result vector in {data}"))?;
        result
            .iter()
            .map(|sample| {
                let labels = sample["metric"]
                    .as_object()
                    .ok_or_else(|| format!("{promql}: no labels in {sample}"))?
                    .iter()
                    .map(|(name, value)| (name.clone(), value.as_str().unwrap_or("").to_string()))
                    .collect();
                let value = sample["value"][1]
                    .as_str()
                    .and_then(|value| value.parse().ok())
                    .ok_or_else(|| format!("{promql}: no value in {sample}"))?;
                Ok((labels, value))
            })
            .collect()
    }

    /// How many series each container has in storage now, less the
    /// sidecar's own.
    fn series_counts_by_container(&self) -> Result<BTreeMap<String, usize>, String> {
        let samples =
            self.query("count by (container) ({container!=\"\",__name__!~\"multiplexer_.*\"})")?;
        Ok(samples
            .into_iter()
            .filter_map(|(labels, count)| Some((labels.get("container")?.clone(), count as usize)))
            .collect())
    }

    pub(super) fn sidecar_target(&self) -> Result<Target, String> {
        let data = self.get("/api/v1/targets?state=active")?;
        let targets = data["activeTargets"]
            .as_array()
            .ok_or_else(|| format!("no activeTargets in {data}"))?;
        let target = targets
            .iter()
            .find(|target| target["labels"]["job"] == "sidecar")
            .ok_or_else(|| format!("no sidecar target in {data}"))?;
        Ok(Target {
            health: target["health"].as_str().unwrap_or("").to_string(),
            last_error: target["lastError"].as_str().unwrap_or("").to_string(),
        })
    }
}

/// A query string value, percent-encoded except for RFC 3986 unreserved
/// characters.
pub(super) fn percent_encode(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// A direct scrape, as the sidecar asks for it; the body of a 200.
fn scrape(port: u16, path: &str) -> Result<String, String> {
    match http_get(port, path, ACCEPT_TEXT)? {
        (200, body) => Ok(body),
        (status, body) => Err(format!("GET {path} on {port}: {status} {body}")),
    }
}

/// One HTTP/1.0 `GET`: the server then ends the body by closing (no chunked
/// encoding to decode, RFC 9112 §6.3 rule 8) and sends no compressed body
/// unless asked. Returns the status and the body.
pub(super) fn http_get(port: u16, target: &str, accept: &str) -> Result<(u16, String), String> {
    let exchange = || -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(
            format!("GET {target} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: {accept}\r\n\r\n")
                .as_bytes(),
        )?;
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let bytes = exchange().map_err(|error| format!("GET {target} on {port}: {error}"))?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("GET {target} on {port}: not UTF-8"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {target} on {port}: no complete head in {text:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("GET {target} on {port}: bad status line in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// Retries `attempt` every `POLL_PAUSE` until it succeeds or `limit` passes;
/// then returns its last error.
pub(super) fn eventually<T>(
    limit: Duration,
    mut attempt: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + limit;
    loop {
        let error = match attempt() {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if Instant::now() >= deadline {
            return Err(format!("after {limit:?}: {error}"));
        }
        thread::sleep(POLL_PAUSE);
    }
}
