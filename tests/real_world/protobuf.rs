//! Native histograms end to end (issue 13): a client_golang app with a
//! histogram that has classic and native buckets and one that is native
//! only (`tests/real_world/goapp/app.go`, built here offline from Debian's
//! client_golang sources), node_exporter (protobuf when asked) and a Python
//! `prometheus_client` app (text only) behind the real sidecar.
//!
//! Two real Prometheus servers judge it. One runs with native histograms
//! enabled, so it asks the sidecar for protobuf; a second job of it scrapes
//! each container directly. Per container, the series it stores through the
//! sidecar must equal the direct ones (`le` and `quantile` compared as
//! numbers; the Go app's values and native histograms compared too, its
//! observations are fixed at start), and the native histograms must carry
//! the container label. The other Prometheus asks for text only: it must
//! scrape the same sidecar with no error and see classic buckets.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::{
    eventually, first_runnable, http_get, percent_encode, skip_or_fail, Process, PrometheusApi,
    ScratchDir, SeriesKey, SCRAPES, STARTUP,
};
use crate::util::{container_args, free_port, Sidecar};

const GOAPP: &str = "goapp";
const NODE: &str = "node";
const PYTHON: &str = "python";
const CONTAINERS: [&str; 3] = [GOAPP, NODE, PYTHON];

/// Where Debian's golang-github-prometheus-client-golang-dev puts the
/// sources the Go app builds from, with `GO111MODULE=off`.
const GOPATH: &str = "/usr/share/gocode";

/// Series Prometheus makes up for a target; no container exposes them.
const SYNTHETIC: &str = "up|scrape_.*";

#[test]
fn native_histograms_through_the_sidecar() {
    let programs = match Programs::find() {
        Ok(programs) => programs,
        Err(missing) => return skip_or_fail(&missing),
    };
    let dir = ScratchDir::new();
    let goapp_binary = match build_go_app(&programs.go, &dir.0) {
        Ok(binary) => binary,
        Err(error) => return skip_or_fail(&error),
    };
    let rig = Rig::start(&programs, &goapp_binary, dir);
    let native = PrometheusApi {
        port: rig.native_port,
    };
    let text = PrometheusApi {
        port: rig.text_port,
    };
    for (api, which) in [(&native, "native"), (&text, "text-only")] {
        eventually(STARTUP, || {
            let target = api.sidecar_target()?;
            (target.health == "up" && target.last_error.is_empty())
                .then_some(())
                .ok_or_else(|| format!("{which} Prometheus: sidecar target {target:?}"))
        })
        .unwrap_or_else(|error| rig.fail(&error));
    }

    // The native Prometheus' very first scrape of the sidecar, the first
    // protobuf request the sidecar ever got (it had asked the containers
    // for text until then), already has the Go app's native histograms,
    // with the container label.
    let first_scrape = eventually(SCRAPES, || first_sample(&native, "up{job=\"sidecar\"}"))
        .unwrap_or_else(|error| rig.fail(&error));
    if first_scrape.value != Some(1.0) {
        rig.fail(&format!(
            "the first scrape of the sidecar failed: {first_scrape:?}"
        ));
    }
    for name in ["app_response_size_bytes", "app_request_duration_seconds"] {
        let selector = format!("{name}{{job=\"sidecar\",container=\"{GOAPP}\"}}");
        let first_histogram = first_sample(&native, &selector)
            .ok()
            .filter(|sample| sample.histogram.is_some());
        if first_histogram.as_ref().map(|sample| sample.at) != Some(first_scrape.at) {
            rig.fail(&format!(
                "the first scrape of the sidecar (at {}) stored no native histogram {selector}; \
                 the first stored is {first_histogram:?}",
                first_scrape.at
            ));
        }
    }
    println!(
        "real_world::protobuf: the first scrape of the sidecar (at {}) stored the native \
         histograms with container=\"goapp\"",
        first_scrape.at
    );

    // Through the sidecar = direct, container by container, once
    // Prometheus has scraped each container directly (`eventually`).
    for container in CONTAINERS {
        let mut attempts = 0;
        let matched = eventually(SCRAPES, || {
            attempts += 1;
            let through = stored(&native, &sidecar_selector(container), true)?;
            let direct = stored(&native, &direct_selector(container), false)?;
            if through.is_empty() {
                return Err(format!("no {container} series through the sidecar yet"));
            }
            // Values move on node_exporter and the Python app between the
            // two scrapes; the Go app's are fixed.
            let values = container == GOAPP;
            compare(container, &through, &direct, values).map(|()| through.len())
        })
        .unwrap_or_else(|error| rig.fail(&error));
        println!(
            "real_world::protobuf: container={container}: {matched} series through the sidecar \
             equal the direct ones (after {attempts} comparison(s))"
        );
    }

    // The native histograms, labelled.
    for (name, native_only) in [
        ("app_response_size_bytes", true),
        ("app_request_duration_seconds", false),
    ] {
        let selector = format!("{name}{{job=\"sidecar\"}}");
        let samples = query(&native, &selector).unwrap_or_else(|error| rig.fail(&error));
        let histograms: Vec<_> = samples
            .iter()
            .filter(|sample| sample.histogram.is_some())
            .collect();
        if histograms.is_empty()
            || histograms
                .iter()
                .any(|sample| sample.labels.get("container").map(String::as_str) != Some(GOAPP))
        {
            rig.fail(&format!(
                "{selector}: want native histograms with container=\"goapp\", got {samples:?}"
            ));
        }
        println!(
            "real_world::protobuf: {name} ({}): {} native histogram(s) with container=\"goapp\", e.g. {}",
            if native_only { "native only" } else { "classic and native" },
            histograms.len(),
            histograms[0].histogram.as_ref().map_or(String::new(), Value::to_string)
        );
    }

    // The text-only Prometheus: classic buckets, no scrape error.
    let classic = eventually(SCRAPES, || {
        let buckets = query(
            &text,
            "app_request_duration_seconds_bucket{container=\"goapp\"}",
        )?;
        let infinity = query(
            &text,
            "app_response_size_bytes_bucket{container=\"goapp\",le=\"+Inf\"}",
        )?;
        // GET and POST, 7 bounds and +Inf each.
        (buckets.len() == 16 && infinity.len() == 1)
            .then_some((buckets.len(), infinity[0].value))
            .ok_or_else(|| {
                format!("text-only Prometheus: classic buckets {buckets:?}, +Inf {infinity:?}")
            })
    })
    .unwrap_or_else(|error| rig.fail(&error));
    println!(
        "real_world::protobuf: text-only Prometheus: {} classic buckets of the classic+native \
         histogram, the native-only one as le=\"+Inf\" = {:?}",
        classic.0, classic.1
    );
    for (api, which) in [(&native, "native"), (&text, "text-only")] {
        let worst = query(api, "min_over_time(up{job=\"sidecar\"}[1h])")
            .unwrap_or_else(|error| rig.fail(&error));
        let target = api
            .sidecar_target()
            .unwrap_or_else(|error| rig.fail(&error));
        if worst.first().and_then(|sample| sample.value) != Some(1.0)
            || target.health != "up"
            || !target.last_error.is_empty()
        {
            rig.fail(&format!(
                "{which} Prometheus: a scrape of the sidecar failed: {worst:?} {target:?}"
            ));
        }
    }
    println!("real_world::protobuf: every scrape of the sidecar by both Prometheus servers was up");
}

struct Programs {
    prometheus: String,
    node_exporter: String,
    python: String,
    go: String,
}

impl Programs {
    fn find() -> Result<Programs, String> {
        let go = first_runnable(&["go"], &["version"])?;
        let client_golang = Path::new(GOPATH).join("src/github.com/prometheus/client_golang");
        if !client_golang.is_dir() {
            return Err(format!(
                "{} is missing (golang-github-prometheus-client-golang-dev)",
                client_golang.display()
            ));
        }
        Ok(Programs {
            prometheus: first_runnable(&["prometheus"], &["--version"])?,
            node_exporter: first_runnable(
                &["prometheus-node-exporter", "node_exporter"],
                &["--version"],
            )?,
            python: first_runnable(&["python3"], &["-c", "import prometheus_client"])?,
            go,
        })
    }
}

/// Builds the Go app with no network: Debian's sources, no modules, a
/// build cache of its own in the scratch directory.
fn build_go_app(go: &str, dir: &Path) -> Result<PathBuf, String> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real_world/goapp/app.go");
    let binary = dir.join("goapp");
    let output = Command::new(go)
        .arg("build")
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOCACHE", dir.join("gocache"))
        .env("GOFLAGS", "")
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("run {go} build: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "go build of the test app failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(binary)
}

/// Everything running; the processes drop before the directory.
struct Rig {
    goapp: Process,
    node: Process,
    python: Process,
    native: Process,
    text: Process,
    sidecar: Sidecar,
    native_port: u16,
    text_port: u16,
    _dir: ScratchDir,
}

impl Rig {
    fn start(programs: &Programs, goapp_binary: &Path, dir: ScratchDir) -> Rig {
        let goapp_port = free_port();
        let goapp = Process::start(
            "go app",
            &goapp_binary.display().to_string(),
            &[goapp_port.to_string()],
            dir.0.join("goapp.log"),
        );
        let node_port = free_port();
        let node = Process::start(
            "node_exporter",
            &programs.node_exporter,
            &[
                format!("--web.listen-address=127.0.0.1:{node_port}"),
                "--no-collector.systemd".to_string(),
                "--no-collector.logind".to_string(),
            ],
            dir.0.join("node_exporter.log"),
        );
        let python_port = free_port();
        let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real_world/app.py");
        let python = Process::start(
            "python app",
            &programs.python,
            &[app.display().to_string(), python_port.to_string()],
            dir.0.join("python.log"),
        );
        for (process, port) in [
            (&goapp, goapp_port),
            (&node, node_port),
            (&python, python_port),
        ] {
            let answering = eventually(STARTUP, || match http_get(port, "/metrics", "*/*") {
                Ok((200, _)) => Ok(()),
                Ok((status, _)) => Err(format!("status {status}")),
                Err(error) => Err(error),
            });
            if let Err(error) = answering {
                panic!(
                    "{} never answered: {error}\n{}",
                    process.name(),
                    process.log_tail()
                );
            }
        }
        let sidecar = Sidecar::start(&container_args(&[
            (GOAPP, goapp_port),
            (NODE, node_port),
            (PYTHON, python_port),
        ]));
        let address = |port: u16| format!("127.0.0.1:{port}");
        let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real_world");
        let native_config = fs::read_to_string(templates.join("prometheus_native.yml.template"))
            .expect("read the native Prometheus configuration")
            .replace("SIDECAR_ADDRESS", &address(sidecar.port))
            .replace("GOAPP_ADDRESS", &address(goapp_port))
            .replace("NODE_ADDRESS", &address(node_port))
            .replace("PYTHON_ADDRESS", &address(python_port));
        let text_config = fs::read_to_string(templates.join("prometheus.yml.template"))
            .expect("read the text Prometheus configuration")
            .replace("SIDECAR_ADDRESS", &address(sidecar.port));
        let start_prometheus = |name: &'static str, config: &str, features: &[&str]| {
            let config_path = dir.0.join(format!("{name}.yml"));
            fs::write(&config_path, config).expect("write a Prometheus configuration");
            let port = free_port();
            let mut args = vec![
                format!("--config.file={}", config_path.display()),
                format!(
                    "--storage.tsdb.path={}",
                    dir.0.join(format!("{name}-data")).display()
                ),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--log.level=warn".to_string(),
            ];
            args.extend(features.iter().map(|feature| feature.to_string()));
            let process = Process::start(
                name,
                &programs.prometheus,
                &args,
                dir.0.join(format!("{name}.log")),
            );
            (process, port)
        };
        let (native, native_port) = start_prometheus(
            "prometheus-native",
            &native_config,
            &["--enable-feature=native-histograms"],
        );
        let (text, text_port) = start_prometheus("prometheus-text", &text_config, &[]);
        let rig = Rig {
            goapp,
            node,
            python,
            native,
            text,
            sidecar,
            native_port,
            text_port,
            _dir: dir,
        };
        for port in [native_port, text_port] {
            let ready = eventually(STARTUP, || match http_get(port, "/-/ready", "*/*") {
                Ok((200, _)) => Ok(()),
                Ok((status, body)) => Err(format!("/-/ready: {status} {body}")),
                Err(error) => Err(error),
            });
            if let Err(error) = ready {
                rig.fail(&format!("Prometheus never became ready: {error}"));
            }
        }
        rig
    }

    fn fail(&self, message: &str) -> ! {
        let mut report = format!("{message}\n");
        for process in [
            &self.goapp,
            &self.node,
            &self.python,
            &self.native,
            &self.text,
        ] {
            report.push_str(&format!(
                "--- {} log tail ---\n{}\n",
                process.name(),
                process.log_tail()
            ));
        }
        report.push_str(&format!(
            "--- sidecar stderr ---\n{}\n",
            self.sidecar.stderr()
        ));
        panic!("{report}");
    }
}

fn sidecar_selector(container: &str) -> String {
    format!("{{job=\"sidecar\",container=\"{container}\",__name__!~\"multiplexer_.*\"}}")
}

fn direct_selector(container: &str) -> String {
    format!("{{job=\"direct\",direct_container=\"{container}\",__name__!~\"{SYNTHETIC}\"}}")
}

/// One sample of an instant query: a float, or a native histogram (2.42's
/// API gives it in a `histogram` field).
#[derive(Debug)]
struct Sample {
    labels: BTreeMap<String, String>,
    value: Option<f64>,
    histogram: Option<Value>,
}

fn query(api: &PrometheusApi, promql: &str) -> Result<Vec<Sample>, String> {
    let data = api.get(&format!("/api/v1/query?query={}", percent_encode(promql)))?;
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
                .and_then(|value| value.parse().ok());
            let histogram = sample.get("histogram").map(|h| h[1].clone());
            if value.is_none() && histogram.is_none() {
                return Err(format!(
                    "{promql}: neither a value nor a histogram in {sample}"
                ));
            }
            Ok(Sample {
                labels,
                value,
                histogram,
            })
        })
        .collect()
}

/// The earliest sample stored under `selector` (one series, or the first of
/// several at the same time): its time in seconds and what it is.
#[derive(Debug)]
struct FirstSample {
    at: f64,
    value: Option<f64>,
    histogram: Option<Value>,
}

fn first_sample(api: &PrometheusApi, selector: &str) -> Result<FirstSample, String> {
    let promql = format!("{selector}[1h]");
    let data = api.get(&format!("/api/v1/query?query={}", percent_encode(&promql)))?;
    let series = data["result"]
        .as_array()
        .ok_or_else(|| format!("{promql}: no result matrix in {data}"))?;
    let mut first: Option<FirstSample> = None;
    for series in series {
        // 2.42 gives float samples in `values`, native histograms in
        // `histograms`, each a list of [time, sample].
        for (field, histogram) in [("values", false), ("histograms", true)] {
            let Some(samples) = series.get(field).and_then(Value::as_array) else {
                continue;
            };
            let Some(sample) = samples.first() else {
                continue;
            };
            let at = sample[0]
                .as_f64()
                .ok_or_else(|| format!("{promql}: no time in {sample}"))?;
            if first.as_ref().is_some_and(|first| first.at <= at) {
                continue;
            }
            first = Some(FirstSample {
                at,
                value: (!histogram)
                    .then(|| sample[1].as_str().and_then(|value| value.parse().ok()))
                    .flatten(),
                histogram: histogram.then(|| sample[1].clone()),
            });
        }
    }
    first.ok_or_else(|| format!("{promql}: nothing stored yet"))
}

/// What a series stores, compared: a float's bits or a histogram's JSON.
#[derive(Debug, PartialEq)]
enum Stored {
    Float(u64),
    Histogram(Value),
}

/// The container's series in storage, by their labels as the container
/// exposes them: without the labels Prometheus and the sidecar added (the
/// sidecar's `exported_container` back to `container`), `le` and `quantile`
/// as numbers.
fn stored(
    api: &PrometheusApi,
    selector: &str,
    through_sidecar: bool,
) -> Result<BTreeMap<SeriesKey, Stored>, String> {
    let mut series = BTreeMap::new();
    for sample in query(api, selector)? {
        let mut labels = sample.labels;
        for added in ["instance", "job", "direct_container"] {
            labels.remove(added);
        }
        if through_sidecar {
            labels.remove("container");
            if let Some(value) = labels.remove("exported_container") {
                labels.insert("container".to_string(), value);
            }
        }
        for bound in ["le", "quantile"] {
            if let Some(value) = labels.get_mut(bound) {
                let number: f64 = match value.as_str() {
                    "+Inf" => f64::INFINITY,
                    other => other
                        .parse()
                        .map_err(|_| format!("{bound}=\"{other}\" is not a number"))?,
                };
                *value = format!("{number:?}");
            }
        }
        labels.retain(|_, value| !value.is_empty());
        let stored = match (sample.value, sample.histogram) {
            (_, Some(histogram)) => Stored::Histogram(histogram),
            (Some(value), None) => Stored::Float(value.to_bits()),
            (None, None) => unreachable!("checked by query"),
        };
        series.insert(labels, stored);
    }
    Ok(series)
}

fn compare(
    container: &str,
    through: &BTreeMap<SeriesKey, Stored>,
    direct: &BTreeMap<SeriesKey, Stored>,
    values: bool,
) -> Result<(), String> {
    let only_through: Vec<_> = through
        .keys()
        .filter(|k| !direct.contains_key(*k))
        .take(5)
        .collect();
    let only_direct: Vec<_> = direct
        .keys()
        .filter(|k| !through.contains_key(*k))
        .take(5)
        .collect();
    if !only_through.is_empty() || !only_direct.is_empty() {
        return Err(format!(
            "container {container}: {} series through the sidecar, {} direct\n\
             only through the sidecar (first 5): {only_through:?}\n\
             only direct (first 5): {only_direct:?}",
            through.len(),
            direct.len()
        ));
    }
    if values {
        let kinds = |stored: &BTreeMap<SeriesKey, Stored>| {
            stored
                .values()
                .filter(|s| matches!(s, Stored::Histogram(_)))
                .count()
        };
        if kinds(through) == 0 {
            return Err(format!(
                "container {container}: no native histogram stored yet"
            ));
        }
        for (key, value) in through {
            if direct.get(key) != Some(value) {
                return Err(format!(
                    "container {container}: {key:?} is {value:?} through the sidecar, {:?} direct",
                    direct.get(key)
                ));
            }
        }
    }
    Ok(())
}
