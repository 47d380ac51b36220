//! Invisible (issue 18): what a client gets through the sidecar equals, per
//! container, what it gets from that container directly, plus the
//! `container` label; judged with real programs only.
//!
//! Three real exporters run behind the real sidecar:
//!
//! - `omapp`: a PyPI `prometheus_client` app (`om_app.py`) with UTF-8 names
//!   (`http.server.requests`, a `http.request.method` label), exemplars with
//!   trace ids on counters and histogram buckets, `_created`, `# UNIT`, an
//!   info and a stateset;
//! - `goapp`: a client_golang 1.14 app (`goapp/app.go`, built offline from
//!   Debian's sources) with exemplars on a counter and a histogram, native
//!   histograms, and OpenMetrics enabled;
//! - `node`: node_exporter.
//!
//! The apps' data is fixed at their start, so a direct scrape and the
//! sidecar's scrape agree whenever each happens; node_exporter's values move,
//! so only its series are compared.
//!
//! Test A: one real Prometheus 2.42 with exemplar storage scrapes the
//! sidecar and every container directly, with the same scrape settings (the
//! same `Accept`); a second run adds native histograms (protobuf first).
//! Per container, the series, their latest values and the exemplars stored
//! through the sidecar (`/api/v1/query_exemplars`) must equal the direct
//! ones.
//!
//! Test B: Prometheus' exact `Accept` headers (2.42, 2.53, 3.x, 3.x
//! proto-first, 3.0 to 3.3's) replayed against the sidecar and against each
//! container; both answers read by `canonical.py` (prometheus_client's
//! strict OpenMetrics parser, its text parser, or a protobuf decoder written
//! from metrics.proto) and compared family by family, sample by sample and
//! exemplar by exemplar; the sidecar's `Content-Type` must be the one
//! prometheus/common's `expfmt.NegotiateAccept` gives, escaping scheme
//! included. Test C: each of those answers that is text passes
//! `promtool check metrics`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use super::{
    eventually, first_runnable, percent_encode, skip_or_fail, Process, PrometheusApi, ScratchDir,
    SeriesKey, STARTUP,
};
use crate::util::{container_args, free_port, up, Sidecar};

const OMAPP: &str = "omapp";
const GOAPP: &str = "goapp";
const NODE: &str = "node";
const CONTAINERS: [&str; 3] = [OMAPP, GOAPP, NODE];

/// Where Debian's golang-github-prometheus-client-golang-dev puts the
/// sources the Go app builds from, with `GO111MODULE=off`.
const GOPATH: &str = "/usr/share/gocode";

/// Series Prometheus makes up for a target; no container exposes them.
const SYNTHETIC: &str = "up|scrape_.*";

const PROTOBUF: &str = "application/vnd.google.protobuf; \
                        proto=io.prometheus.client.MetricFamily; encoding=delimited";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One client's `Accept` header, exactly as that client sends it, and the
/// `Content-Type` prometheus/common's `expfmt.NegotiateAccept` (main) answers
/// it with: the first format matched in q order, plus `; escaping=` the
/// last known scheme named by an entry up to the matched one (underscores
/// when none names one).
struct Client {
    name: &'static str,
    accept: &'static str,
    format: &'static str,
    escaping: &'static str,
}

const CLIENTS: [Client; 8] = [
    Client {
        // scrape/scrape.go at v2.42.0, scrapeAcceptHeader.
        name: "Prometheus 2.42",
        accept: "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        format: OPENMETRICS,
        escaping: "underscores",
    },
    Client {
        // The same, scrapeAcceptHeaderWithProtobuf (native histograms on).
        name: "Prometheus 2.42 native histograms",
        accept: "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        format: PROTOBUF,
        escaping: "underscores",
    },
    Client {
        name: "Prometheus 2.53",
        accept: "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
        format: OPENMETRICS,
        escaping: "underscores",
    },
    Client {
        name: "Prometheus 3.x",
        accept: "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
        format: OPENMETRICS,
        escaping: "allow-utf-8",
    },
    Client {
        // The protobuf entry names no scheme and is matched first.
        name: "Prometheus 3.x proto-first",
        accept: "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
        format: PROTOBUF,
        escaping: "underscores",
    },
    Client {
        // scrape/scrape.go acceptHeader at v3.0.0 to v3.3.x: every entry
        // gets `;escaping=allow-utf-8`, text 1.0.0's a second time.
        name: "Prometheus 3.0-3.3",
        accept: "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;escaping=allow-utf-8;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;escaping=allow-utf-8;q=0.3,*/*;q=0.2",
        format: OPENMETRICS,
        escaping: "allow-utf-8",
    },
    Client {
        name: "Prometheus 3.0-3.3 proto-first",
        accept: "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;escaping=allow-utf-8;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;escaping=allow-utf-8;q=0.2,*/*;q=0.1",
        format: PROTOBUF,
        escaping: "allow-utf-8",
    },
    Client {
        // scrape_protocols: [PrometheusText0_0_4], and what the sidecar
        // asks containers for when nobody wants more.
        name: "text 0.0.4",
        accept: "text/plain;version=0.0.4",
        format: TEXT,
        escaping: "underscores",
    },
];

#[test]
fn prometheus_with_exemplar_storage_stores_the_same_through_the_sidecar() {
    prometheus_run("exemplars", &["--enable-feature=exemplar-storage"], false);
}

#[test]
fn prometheus_with_native_histograms_stores_the_same_through_the_sidecar() {
    prometheus_run(
        "native",
        &["--enable-feature=exemplar-storage,native-histograms"],
        true,
    );
}

#[test]
fn prometheus_accept_headers_replayed_get_what_each_container_serves() {
    replay_accept_headers(&[]);
}

/// The same in on-demand mode, what the README's Kubernetes manifests run:
/// each client's first answer comes from a scrape made for it.
#[test]
fn prometheus_accept_headers_replayed_on_demand_get_what_each_container_serves() {
    replay_accept_headers(&["--scrape_interval=0"]);
}

fn replay_accept_headers(sidecar_flags: &[&str]) {
    let Some(rig) = Rig::start_or_skip(sidecar_flags) else {
        return;
    };
    let mut differences = Vec::new();
    for client in &CLIENTS {
        let mut compared = Vec::new();
        let (content_type, through) = match rig.fetch_canonical(rig.sidecar.port, client.accept) {
            Ok(answer) => answer,
            Err(error) => {
                differences.push(format!("{}: the sidecar's answer: {error}", client.name));
                continue;
            }
        };
        if let Err(error) = check_content_type(&content_type, client) {
            differences.push(format!("{}: {error}", client.name));
        }
        for container in CONTAINERS {
            let direct = rig
                .fetch_canonical(rig.port(container), client.accept)
                .map(|(_, answer)| answer);
            let difference = direct
                .and_then(|direct| compare_answers(container, &through, &direct, client.escaping));
            match difference {
                Ok(summary) => compared.push(format!("{container} ({summary})")),
                Err(error) => differences.push(format!("{} / {container}: {error}", client.name)),
            }
        }
        println!(
            "real_world::invisible: {sidecar_flags:?} {}: {content_type:?}; equal: {}",
            client.name,
            compared.join(", ")
        );
    }
    if !differences.is_empty() {
        rig.fail(&format!(
            "sidecar {sidecar_flags:?}: {} difference(s) between its answers and the \
             containers':\n\n{}",
            differences.len(),
            differences.join("\n\n")
        ));
    }
}

#[test]
fn promtool_accepts_every_text_answer_of_the_sidecar() {
    let Some(rig) = Rig::start_or_skip(&[]) else {
        return;
    };
    let promtool = match first_runnable(&["promtool"], &["--version"]) {
        Ok(promtool) => promtool,
        Err(missing) => return skip_or_fail(&missing),
    };
    let mut checked = 0;
    for client in &CLIENTS {
        let answer = rig
            .fetch(rig.sidecar.port, client.accept)
            .unwrap_or_else(|error| rig.fail(&error));
        if !answer.content_type.starts_with("text/plain") {
            continue;
        }
        let mut child = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| rig.fail(&format!("run promtool: {error}")));
        child
            .stdin
            .take()
            .expect("promtool's stdin")
            .write_all(&answer.body)
            .unwrap_or_else(|error| rig.fail(&format!("feed promtool: {error}")));
        let output = child
            .wait_with_output()
            .unwrap_or_else(|error| rig.fail(&format!("wait for promtool: {error}")));
        // 0, or 3 for lint remarks only (upstream names are not ours).
        let code = output.status.code();
        if code != Some(0) && code != Some(3) {
            rig.fail(&format!(
                "{}: promtool check metrics refuses the sidecar's {:?} answer (exit {code:?}):\n{}{}",
                client.name,
                answer.content_type,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        checked += 1;
        println!(
            "real_world::invisible: {}: promtool takes the sidecar's {:?} answer",
            client.name, answer.content_type
        );
    }
    assert!(checked > 0, "no client got text: nothing was checked");
}

// --- Test A: a real Prometheus ---------------------------------------------

fn prometheus_run(run: &'static str, features: &[&str], native: bool) {
    let Some(mut rig) = Rig::start_or_skip(&[]) else {
        return;
    };
    let prometheus = match first_runnable(&["prometheus"], &["--version"]) {
        Ok(prometheus) => prometheus,
        Err(missing) => return skip_or_fail(&missing),
    };
    let api = rig.start_prometheus(&prometheus, run, features);

    // Every target up, each scraped a few times: the first answer of the
    // sidecar to a new kind of client is its test too, so nothing waits for
    // the sidecar to have asked containers anything first.
    eventually(STARTUP, || {
        let scrapes = api_query(&api, "count_over_time(up[1h]) >= 3 and up == 1")?;
        (scrapes.len() == CONTAINERS.len() + 1)
            .then_some(())
            .ok_or_else(|| format!("not every target up for 3 scrapes yet: {scrapes:?}"))
    })
    .unwrap_or_else(|error| rig.fail(&error));
    // The apps' data is fixed: a difference that stays for a few more
    // scrapes is one.
    let mut attempts = 0;
    let outcome = eventually(Duration::from_secs(8), || {
        attempts += 1;
        let mut differences = Vec::new();
        let mut summaries = Vec::new();
        for container in CONTAINERS {
            match compare_stored(&api, container, native) {
                Ok(summary) => summaries.push(summary),
                Err(difference) => differences.push(difference),
            }
        }
        if differences.is_empty() {
            Ok(summaries)
        } else {
            Err(differences.join("\n\n"))
        }
    });
    match outcome {
        Ok(summaries) => {
            for summary in summaries {
                println!("real_world::invisible: {run}: {summary}");
            }
        }
        Err(error) => rig.fail(&format!(
            "Prometheus 2.42 {features:?}: what it stores through the sidecar differs from \
             what it stores scraping the containers (after {attempts} comparisons):\n{error}"
        )),
    }
    let target = api
        .sidecar_target()
        .unwrap_or_else(|error| rig.fail(&error));
    if target.health != "up" || !target.last_error.is_empty() {
        rig.fail(&format!("the sidecar target: {target:?}"));
    }
    // Every scrape of every target, the sidecar's first included, was up.
    let failed =
        api_query(&api, "min_over_time(up[1h]) < 1").unwrap_or_else(|error| rig.fail(&error));
    if !failed.is_empty() {
        rig.fail(&format!("targets with a failed scrape: {failed:?}"));
    }
}

/// What Prometheus stores of a series: a float's bits or a native
/// histogram's JSON.
#[derive(Debug, PartialEq)]
enum Stored {
    Float(u64),
    Histogram(Value),
}

/// A stored exemplar: its labels, value and time as the API gives them.
type StoredExemplar = (BTreeMap<String, String>, String, String);

/// Labels as the container wrote them: without those Prometheus and the
/// sidecar add (the sidecar's `exported_container` back to `container`),
/// empty values dropped (an empty label is no label).
fn own_labels(
    labels: &serde_json::Map<String, Value>,
    through_sidecar: bool,
) -> Result<SeriesKey, String> {
    let mut key = SeriesKey::new();
    for (name, value) in labels {
        let value = value
            .as_str()
            .ok_or_else(|| format!("label {name} is {value}"))?;
        key.insert(name.clone(), value.to_string());
    }
    for added in ["instance", "job", "direct_container"] {
        key.remove(added);
    }
    if through_sidecar {
        key.remove("container");
        if let Some(value) = key.remove("exported_container") {
            key.insert("container".to_string(), value);
        }
    }
    key.retain(|_, value| !value.is_empty());
    Ok(key)
}

fn sidecar_selector(container: &str) -> String {
    format!("{{job=\"sidecar\",container=\"{container}\",__name__!~\"multiplexer_.*\"}}")
}

fn direct_selector(container: &str) -> String {
    format!("{{job=\"direct\",direct_container=\"{container}\",__name__!~\"{SYNTHETIC}\"}}")
}

fn api_query(api: &PrometheusApi, promql: &str) -> Result<Vec<Value>, String> {
    let data = api.get(&format!("/api/v1/query?query={}", percent_encode(promql)))?;
    data["result"]
        .as_array()
        .cloned()
        .ok_or_else(|| format!("{promql}: no result vector in {data}"))
}

/// The latest value of each series under `selector`.
fn stored_series(
    api: &PrometheusApi,
    selector: &str,
    through_sidecar: bool,
) -> Result<BTreeMap<SeriesKey, Stored>, String> {
    let mut series = BTreeMap::new();
    for sample in api_query(api, selector)? {
        let labels = sample["metric"]
            .as_object()
            .ok_or_else(|| format!("{selector}: no labels in {sample}"))?;
        let key = own_labels(labels, through_sidecar)?;
        // 2.42 gives a native histogram in `histogram`, a float in `value`.
        let stored = match (sample.get("histogram"), sample["value"][1].as_str()) {
            (Some(histogram), _) => Stored::Histogram(histogram[1].clone()),
            (None, Some(value)) => Stored::Float(
                value
                    .parse::<f64>()
                    .map_err(|_| format!("{selector}: value {value}"))?
                    .to_bits(),
            ),
            (None, None) => return Err(format!("{selector}: no value in {sample}")),
        };
        if series.insert(key.clone(), stored).is_some() {
            return Err(format!("{selector}: {key:?} twice"));
        }
    }
    Ok(series)
}

/// Every exemplar stored under `selector` in the last hour, by series.
fn stored_exemplars(
    api: &PrometheusApi,
    selector: &str,
    through_sidecar: bool,
) -> Result<BTreeMap<SeriesKey, BTreeSet<StoredExemplar>>, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|error| error.to_string())?
        .as_secs();
    let data = api.get(&format!(
        "/api/v1/query_exemplars?query={}&start={}&end={}",
        percent_encode(selector),
        now - 3600,
        now + 60
    ))?;
    let mut exemplars = BTreeMap::new();
    for series in data
        .as_array()
        .ok_or_else(|| format!("{selector}: {data}"))?
    {
        let labels = series["seriesLabels"]
            .as_object()
            .ok_or_else(|| format!("{selector}: no seriesLabels in {series}"))?;
        let key = own_labels(labels, through_sidecar)?;
        let stored: &mut BTreeSet<StoredExemplar> = exemplars.entry(key).or_default();
        for exemplar in series["exemplars"].as_array().into_iter().flatten() {
            let labels = exemplar["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, value)| (name.clone(), value.as_str().unwrap_or("").to_string()))
                .collect();
            stored.insert((
                labels,
                exemplar["value"].as_str().unwrap_or("").to_string(),
                exemplar["timestamp"].to_string(),
            ));
        }
    }
    Ok(exemplars)
}

/// Through the sidecar = direct for one container: series, their latest
/// values (the apps'; node_exporter's move) and exemplars.
fn compare_stored(api: &PrometheusApi, container: &str, native: bool) -> Result<String, String> {
    let through = stored_series(api, &sidecar_selector(container), true)?;
    let direct = stored_series(api, &direct_selector(container), false)?;
    if direct.is_empty() {
        return Err(format!("{container}: nothing stored directly yet"));
    }
    let mut problems = Vec::new();
    let only_through: Vec<_> = through
        .keys()
        .filter(|k| !direct.contains_key(*k))
        .collect();
    let only_direct: Vec<_> = direct
        .keys()
        .filter(|k| !through.contains_key(*k))
        .collect();
    if !only_through.is_empty() {
        problems.push(format!(
            "{} series only through the sidecar, e.g. {:?}",
            only_through.len(),
            &only_through[..only_through.len().min(6)]
        ));
    }
    if !only_direct.is_empty() {
        problems.push(format!(
            "{} series only direct, e.g. {:?}",
            only_direct.len(),
            &only_direct[..only_direct.len().min(6)]
        ));
    }
    let mut histograms = 0;
    if container != NODE {
        let mut differing = Vec::new();
        for (key, value) in &through {
            if matches!(value, Stored::Histogram(_)) {
                histograms += 1;
            }
            if let Some(direct_value) = direct.get(key) {
                if direct_value != value {
                    differing.push(format!(
                        "{key:?}: {value:?} through the sidecar, {direct_value:?} direct"
                    ));
                }
            }
        }
        if !differing.is_empty() {
            problems.push(format!(
                "{} values differ, e.g.:\n  {}",
                differing.len(),
                differing[..differing.len().min(6)].join("\n  ")
            ));
        }
    }
    let through_exemplars = stored_exemplars(api, &sidecar_selector(container), true)?;
    let direct_exemplars = stored_exemplars(api, &direct_selector(container), false)?;
    let count = |exemplars: &BTreeMap<SeriesKey, BTreeSet<StoredExemplar>>| -> usize {
        exemplars.values().map(BTreeSet::len).sum()
    };
    if through_exemplars != direct_exemplars {
        let mut differing = Vec::new();
        let keys: BTreeSet<&SeriesKey> = through_exemplars
            .keys()
            .chain(direct_exemplars.keys())
            .collect();
        for key in keys {
            let (left, right) = (through_exemplars.get(key), direct_exemplars.get(key));
            if left != right {
                differing.push(format!(
                    "{key:?}: {left:?} through the sidecar, {right:?} direct"
                ));
            }
        }
        problems.push(format!(
            "exemplars: {} stored through the sidecar, {} direct; e.g.:\n  {}",
            count(&through_exemplars),
            count(&direct_exemplars),
            differing[..differing.len().min(6)].join("\n  ")
        ));
    }
    let direct_histograms = direct
        .values()
        .filter(|stored| matches!(stored, Stored::Histogram(_)))
        .count();
    if native && container == GOAPP && direct_histograms == 0 {
        problems.push("no native histogram stored directly: nothing to compare".to_string());
    }
    // The apps' exemplars reach Prometheus directly (exemplar storage is
    // on and the format carries them), or the comparison proves nothing.
    if container != NODE && count(&direct_exemplars) == 0 {
        problems.push("no exemplar stored directly: nothing to compare".to_string());
    }
    if problems.is_empty() {
        Ok(format!(
            "container={container}: {} series ({histograms} native histograms), {} exemplars \
             through the sidecar equal the direct ones",
            through.len(),
            count(&through_exemplars)
        ))
    } else {
        Err(format!(
            "container {container} ({} series through the sidecar, {} direct):\n- {}",
            through.len(),
            direct.len(),
            problems.join("\n- ")
        ))
    }
}

// --- Test B: answers compared ----------------------------------------------

/// The `Content-Type` names the format and the escaping scheme expfmt
/// would; parameters compared as a set (order and spaces aside).
fn check_content_type(content_type: &str, client: &Client) -> Result<(), String> {
    let parameters = |value: &str| -> BTreeSet<String> {
        value
            .split(';')
            .map(|part| part.trim().to_ascii_lowercase())
            .filter(|part| !part.is_empty())
            .collect()
    };
    let want = format!("{}; escaping={}", client.format, client.escaping);
    if parameters(content_type) == parameters(&want) {
        Ok(())
    } else {
        Err(format!(
            "Content-Type is {content_type:?}, expfmt.NegotiateAccept gives {want:?}"
        ))
    }
}

/// A sample as compared: name, labels, value, timestamp, exemplar (JSON).
type SampleKey = (String, BTreeMap<String, String>, String, String, String);

/// One container's part of an answer, canonical.
struct Part {
    format: String,
    /// Family name to (type, help, unit), for families with samples here.
    families: BTreeMap<String, (String, String, String)>,
    samples: Vec<SampleKey>,
    histograms: Vec<(String, BTreeMap<String, String>, String)>,
}

/// The part of `answer` that is `container`'s: every sample of the
/// sidecar's answer with `container="<name>"` (the label taken off,
/// `exported_container` back to `container`), none of the sidecar's own
/// `multiplexer_*` families; the whole answer of a container, its names
/// escaped by `escaping` (the scheme the sidecar must use).
fn part_of(
    answer: &Value,
    container: Option<&str>,
    escaping: &str,
    values: bool,
) -> Result<Part, String> {
    let escape = |name: &str, label: bool| -> String {
        if escaping == "underscores" && container.is_none() {
            escape_underscores(name, label)
        } else {
            name.to_string()
        }
    };
    let labels_of = |value: &Value| -> Result<Option<BTreeMap<String, String>>, String> {
        let mut labels = BTreeMap::new();
        for (name, value) in value.as_object().ok_or("labels not an object")? {
            labels.insert(escape(name, true), value.as_str().unwrap_or("").to_string());
        }
        if let Some(container) = container {
            if labels.remove("container").as_deref() != Some(container) {
                return Ok(None);
            }
            if let Some(inner) = labels.remove("exported_container") {
                labels.insert("container".to_string(), inner);
            }
        }
        labels.retain(|_, value| !value.is_empty());
        Ok(Some(labels))
    };
    let own = |family: &str| container.is_some() && family.starts_with("multiplexer_");
    let mut part = Part {
        format: answer["format"].as_str().unwrap_or("").to_string(),
        families: BTreeMap::new(),
        samples: Vec::new(),
        histograms: Vec::new(),
    };
    let mut with_samples = BTreeSet::new();
    for sample in answer["samples"].as_array().ok_or("no samples")? {
        let family = sample["family"].as_str().unwrap_or("");
        if own(family) {
            continue;
        }
        let Some(labels) = labels_of(&sample["labels"])? else {
            continue;
        };
        with_samples.insert(family.to_string());
        // A JSON string as its text, anything else (null) as JSON.
        let field = |name: &str| -> String {
            match &sample[name] {
                _ if !values => String::new(),
                Value::String(text) => text.clone(),
                other => other.to_string(),
            }
        };
        part.samples.push((
            escape(sample["name"].as_str().unwrap_or(""), false),
            labels,
            field("value"),
            field("timestamp"),
            field("exemplar"),
        ));
    }
    for histogram in answer["histograms"].as_array().ok_or("no histograms")? {
        let family = histogram["family"].as_str().unwrap_or("");
        let Some(labels) = labels_of(&histogram["labels"])? else {
            continue;
        };
        with_samples.insert(family.to_string());
        part.histograms.push((
            escape(histogram["name"].as_str().unwrap_or(""), false),
            labels,
            if values {
                histogram["histogram"].to_string()
            } else {
                String::new()
            },
        ));
    }
    for family in answer["families"].as_array().ok_or("no families")? {
        let name = family["name"].as_str().unwrap_or("");
        if !with_samples.contains(name) {
            continue;
        }
        let text = |field: &str| family[field].as_str().unwrap_or("").to_string();
        part.families.insert(
            escape(name, false),
            (text("type"), text("help"), text("unit")),
        );
    }
    part.samples.sort();
    part.histograms.sort();
    Ok(part)
}

/// prometheus/common `model.EscapeName` with `UnderscoreEscaping`: a name
/// that is not a valid legacy name gets `_` for every rune that is not
/// valid where it stands (a digit is valid after byte 0); `:` counts as
/// invalid in a label name (the sidecar's stated deviation from expfmt).
fn escape_underscores(name: &str, label: bool) -> String {
    let valid = |at: usize, c: char| {
        c.is_ascii_alphabetic()
            || c == '_'
            || (c == ':' && !label)
            || (c.is_ascii_digit() && at > 0)
    };
    if !name.is_empty() && name.char_indices().all(|(at, c)| valid(at, c)) {
        return name.to_string();
    }
    name.char_indices()
        .map(|(at, c)| if valid(at, c) { c } else { '_' })
        .collect()
}

/// The sidecar's answer against a container's own, for one container.
fn compare_answers(
    container: &str,
    through: &Value,
    direct: &Value,
    escaping: &str,
) -> Result<String, String> {
    // node_exporter's values move between the two scrapes.
    let values = container != NODE;
    let through = part_of(through, Some(container), escaping, values)?;
    let direct = part_of(direct, None, escaping, values)?;
    let mut problems = Vec::new();
    if direct.samples.is_empty() {
        problems.push("the container served no sample".to_string());
    }
    // Families are comparable where both answers are in one format (text
    // families are 0.0.4's, OpenMetrics' group `_total`/`_created`/...).
    if through.format == direct.format && through.families != direct.families {
        let keys: BTreeSet<&String> = through
            .families
            .keys()
            .chain(direct.families.keys())
            .collect();
        let differing: Vec<String> = keys
            .into_iter()
            .filter(|key| through.families.get(*key) != direct.families.get(*key))
            .take(8)
            .map(|key| {
                format!(
                    "{key}: {:?} through the sidecar, {:?} direct",
                    through.families.get(key),
                    direct.families.get(key)
                )
            })
            .collect();
        problems.push(format!(
            "families (type, help, unit) differ:\n    {}",
            differing.join("\n    ")
        ));
    }
    let multiset_difference = |left: &[SampleKey], right: &[SampleKey]| -> Vec<String> {
        let mut right: Vec<&SampleKey> = right.iter().collect();
        let mut only = Vec::new();
        for sample in left {
            match right.iter().position(|other| *other == sample) {
                Some(at) => {
                    right.swap_remove(at);
                }
                None => only.push(format!("{sample:?}")),
            }
        }
        only
    };
    let only_through = multiset_difference(&through.samples, &direct.samples);
    let only_direct = multiset_difference(&direct.samples, &through.samples);
    if !only_through.is_empty() || !only_direct.is_empty() {
        problems.push(format!(
            "samples: {} only through the sidecar, {} only direct (name, labels, value, \
             timestamp, exemplar); e.g.\n    through: {}\n    direct:  {}",
            only_through.len(),
            only_direct.len(),
            only_through[..only_through.len().min(5)].join("\n             "),
            only_direct[..only_direct.len().min(5)].join("\n             ")
        ));
    }
    if through.histograms != direct.histograms {
        problems.push(format!(
            "native histograms: {:?} through the sidecar, {:?} direct",
            through.histograms, direct.histograms
        ));
    }
    let exemplars = direct
        .samples
        .iter()
        .filter(|sample| sample.4 != "null" && !sample.4.is_empty())
        .count();
    if problems.is_empty() {
        Ok(format!(
            "{} {} samples, {exemplars} exemplars, {} native histograms",
            direct.samples.len(),
            direct.format,
            direct.histograms.len()
        ))
    } else {
        Err(format!(
            "sidecar answered {}, the container {}:\n  - {}",
            through.format,
            direct.format,
            problems.join("\n  - ")
        ))
    }
}

// --- the rig ---------------------------------------------------------------

/// One answer: its Content-Type and body.
struct Answer {
    content_type: String,
    body: Vec<u8>,
}

/// The programs to run, by the names they answered to.
struct Programs {
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
            node_exporter: first_runnable(
                &["prometheus-node-exporter", "node_exporter"],
                &["--version"],
            )?,
            // 0.26 or later: UTF-8 names and `escaping=` (om_app.py), and
            // the strict OpenMetrics parser (canonical.py).
            python: first_runnable(
                &["python3"],
                &[
                    "-c",
                    "import sys, prometheus_client.openmetrics.parser; \
                     from importlib.metadata import version; \
                     sys.exit(tuple(map(int, version('prometheus_client').split('.')[:2])) < (0, 26))",
                ],
            )
            .map_err(|error| format!("{error} (prometheus_client 0.26 or later)"))?,
            go,
        })
    }
}

/// The Go app, built once per test run with no network: Debian's sources,
/// no modules, a build cache kept under Cargo's target directory so that a
/// second run does not compile client_golang again.
fn go_app(go: &str) -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("real_world_goapp");
            fs::create_dir_all(&dir).map_err(|error| format!("{}: {error}", dir.display()))?;
            let source =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real_world/goapp/app.go");
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
        })
        .clone()
}

/// The three exporters, the sidecar scraping them and, for test A, a
/// Prometheus; processes drop before the directory holding their files.
struct Rig {
    exporters: Vec<(&'static str, u16, Process)>,
    prometheus: Option<Process>,
    sidecar: Sidecar,
    python: String,
    dir: ScratchDir,
}

impl Rig {
    /// Everything started, or `None` after a loud skip (a failure with
    /// `CI=true`) when a program is missing.
    fn start_or_skip(sidecar_flags: &[&str]) -> Option<Rig> {
        let programs = match Programs::find() {
            Ok(programs) => programs,
            Err(missing) => {
                skip_or_fail(&missing);
                return None;
            }
        };
        let goapp = match go_app(&programs.go) {
            Ok(binary) => binary,
            Err(error) => {
                skip_or_fail(&error);
                return None;
            }
        };
        let dir = ScratchDir::new();
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real_world");
        let mut exporters = Vec::new();
        for container in CONTAINERS {
            let port = free_port();
            let log = dir.0.join(format!("{container}.log"));
            let process = match container {
                OMAPP => Process::start(
                    "omapp (prometheus_client)",
                    &programs.python,
                    &[
                        scripts.join("om_app.py").display().to_string(),
                        port.to_string(),
                    ],
                    log,
                ),
                GOAPP => Process::start(
                    "goapp (client_golang)",
                    &goapp.display().to_string(),
                    &[port.to_string()],
                    log,
                ),
                _ => Process::start(
                    "node_exporter",
                    &programs.node_exporter,
                    &[
                        format!("--web.listen-address=127.0.0.1:{port}"),
                        "--no-collector.systemd".to_string(),
                        "--no-collector.logind".to_string(),
                    ],
                    log,
                ),
            };
            exporters.push((container, port, process));
        }
        for (_, port, process) in &exporters {
            let answering = eventually(STARTUP, || {
                fetch(*port, "*/*").and_then(|answer| {
                    (!answer.body.is_empty())
                        .then_some(())
                        .ok_or_else(|| "an empty answer".to_string())
                })
            });
            if let Err(error) = answering {
                panic!(
                    "{} never answered: {error}\n{}",
                    process.name(),
                    process.log_tail()
                );
            }
        }
        let containers: Vec<(&str, u16)> = exporters
            .iter()
            .map(|(container, port, _)| (*container, *port))
            .collect();
        let mut args = container_args(&containers);
        args.extend(sidecar_flags.iter().map(|flag| flag.to_string()));
        let sidecar = Sidecar::start(&args);
        let rig = Rig {
            exporters,
            prometheus: None,
            sidecar,
            python: programs.python,
            dir,
        };
        // Until its first scrape of each container completes, the sidecar
        // rightly serves nothing for it: wait for that (asked with text
        // 0.0.4, what it asks containers for when nobody wants more).
        let scraped = eventually(STARTUP, || {
            let answer = fetch(rig.sidecar.port, "text/plain;version=0.0.4")?;
            let text = String::from_utf8_lossy(&answer.body);
            let down: Vec<&str> = CONTAINERS
                .into_iter()
                .filter(|container| up(&text, container) != Some(1.0))
                .collect();
            down.is_empty()
                .then_some(())
                .ok_or_else(|| format!("multiplexer_up is not 1 yet for {down:?}"))
        });
        if let Err(error) = scraped {
            rig.fail(&error);
        }
        Some(rig)
    }

    fn port(&self, container: &str) -> u16 {
        self.exporters
            .iter()
            .find(|(name, _, _)| *name == container)
            .map(|(_, port, _)| *port)
            .expect("a container of the rig")
    }

    fn start_prometheus(
        &mut self,
        prometheus: &str,
        run: &'static str,
        features: &[&str],
    ) -> PrometheusApi {
        let address = |port: u16| format!("127.0.0.1:{port}");
        let config = fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/real_world/prometheus_invisible.yml.template"),
        )
        .expect("read the Prometheus configuration template")
        .replace("SIDECAR_ADDRESS", &address(self.sidecar.port))
        .replace("OMAPP_ADDRESS", &address(self.port(OMAPP)))
        .replace("GOAPP_ADDRESS", &address(self.port(GOAPP)))
        .replace("NODE_ADDRESS", &address(self.port(NODE)));
        let config_path = self.dir.0.join(format!("prometheus-{run}.yml"));
        fs::write(&config_path, config).expect("write the Prometheus configuration");
        let port = free_port();
        let mut args = vec![
            format!("--config.file={}", config_path.display()),
            format!("--storage.tsdb.path={}", self.dir.0.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--log.level=warn".to_string(),
        ];
        args.extend(features.iter().map(|feature| feature.to_string()));
        self.prometheus = Some(Process::start(
            "prometheus",
            prometheus,
            &args,
            self.dir.0.join("prometheus.log"),
        ));
        let ready = eventually(STARTUP, || match super::http_get(port, "/-/ready", "*/*") {
            Ok((200, _)) => Ok(()),
            Ok((status, body)) => Err(format!("/-/ready: {status} {body}")),
            Err(error) => Err(error),
        });
        if let Err(error) = ready {
            self.fail(&format!("Prometheus never became ready: {error}"));
        }
        PrometheusApi { port }
    }

    fn fetch(&self, port: u16, accept: &str) -> Result<Answer, String> {
        fetch(port, accept)
    }

    /// An answer and its canonical JSON (`canonical.py`); a body its
    /// format's parser refuses is an error naming the parser's reason.
    fn fetch_canonical(&self, port: u16, accept: &str) -> Result<(String, Value), String> {
        let answer = fetch(port, accept)?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real_world/canonical.py");
        let mut child = Command::new(&self.python)
            .arg(&script)
            .arg(&answer.content_type)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("run canonical.py: {error}"))?;
        let mut stdin = child.stdin.take().expect("canonical.py's stdin");
        let body = answer.body.clone();
        let writer = std::thread::spawn(move || stdin.write_all(&body));
        let output = child
            .wait_with_output()
            .map_err(|error| format!("wait for canonical.py: {error}"))?;
        let _ = writer.join();
        if !output.status.success() {
            let body = String::from_utf8_lossy(&answer.body);
            return Err(format!(
                "{:?} answer refused by {}{}\n--- first lines of the body ---\n{}",
                answer.content_type,
                String::from_utf8_lossy(&output.stderr),
                if answer
                    .content_type
                    .starts_with("application/vnd.google.protobuf")
                {
                    " (protobuf decoder)"
                } else {
                    ""
                },
                body.lines().take(12).collect::<Vec<_>>().join("\n")
            ));
        }
        let canonical = serde_json::from_slice(&output.stdout)
            .map_err(|error| format!("canonical.py's output: {error}"))?;
        Ok((answer.content_type, canonical))
    }

    /// Panics with `message` and the tails of every log.
    fn fail(&self, message: &str) -> ! {
        let mut report = format!("{message}\n");
        let processes = self.exporters.iter().map(|(_, _, process)| process);
        for process in processes.chain(self.prometheus.as_ref()) {
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

/// One HTTP/1.0 `GET /metrics` with `accept` and no `Accept-Encoding`: the
/// server ends the body by closing, unencoded. A 200's Content-Type and
/// body.
fn fetch(port: u16, accept: &str) -> Result<Answer, String> {
    let exchange = || -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(
            format!("GET /metrics HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: {accept}\r\n\r\n")
                .as_bytes(),
        )?;
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let bytes = exchange().map_err(|error| format!("GET /metrics on {port}: {error}"))?;
    let head_end = bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| format!("GET /metrics on {port}: no complete head"))?;
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|line| line.split(' ').nth(1));
    if status != Some("200") {
        return Err(format!("GET /metrics on {port}: {head}"));
    }
    let content_type = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| value.trim().to_string())
        .unwrap_or_default();
    Ok(Answer {
        content_type,
        body: bytes[head_end + 4..].to_vec(),
    })
}

#[test]
fn underscore_escaping_follows_expfmt() {
    for (name, label, escaped) in [
        (
            "http.server.requests_total",
            false,
            "http_server_requests_total",
        ),
        ("http.request.method", true, "http_request_method"),
        ("legacy_name:sub", false, "legacy_name:sub"),
        ("a:b", true, "a_b"),
        ("0abc", false, "_abc"),
        ("a0", false, "a0"),
        ("é.x", false, "__x"),
    ] {
        assert_eq!(escape_underscores(name, label), escaped, "{name}");
    }
}
