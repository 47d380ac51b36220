//! The differential test of issue 18: the verdict on a container's body is
//! Prometheus' verdict for the format its `Content-Type` names.
//!
//! One real Prometheus (2.42, from Debian) scrapes, for every body of the
//! corpus (`corpus.rs`), a stub serving it directly (job `direct`, label
//! `case`) and a sidecar in front of the same stub (job `sidecar`, one
//! sidecar per body, as bodies share names of different types). For each body the sidecar's verdict (`multiplexer_up`) must
//! equal Prometheus' direct verdict (`up`), and for accepted bodies the
//! series stored both ways (names, labels less `container`, values) must be
//! equal.
//!
//! The reference is Prometheus main's parsers. Where 2.42 decides otherwise
//! the corpus says so (`Rule::MainDiffers`, with the rule and the place in
//! main that decides it); the sidecar then follows main, and the test checks
//! that 2.42 does decide otherwise (so the list stays true). Where the
//! sidecar knowingly departs from main, because its merged output must stay
//! valid for Prometheus 2.42, promtool and Python's parser (DESIGN.md), the
//! corpus says why (`Rule::SidecarDeviates`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::real_world::{
    eventually, first_runnable, http_get, skip_or_fail, Process, PrometheusApi, ScratchDir,
};
use crate::util::{container_args, free_port, Sidecar};

mod corpus;

use corpus::{Case, Rule, CORPUS};

/// Long enough for Prometheus to start and scrape every target twice, on a
/// loaded machine too (80 stubs and 80 sidecars share its cores).
const STARTUP: Duration = Duration::from_secs(120);
const SETTLE: Duration = Duration::from_secs(30);

#[test]
fn every_body_gets_prometheus_verdict_and_series() {
    let prometheus = match first_runnable(&["prometheus"], &["--version"]) {
        Ok(prometheus) => prometheus,
        Err(missing) => return skip_or_fail(&missing),
    };
    corpus::check_ids();
    let stubs: Vec<BodyServer> = CORPUS.iter().map(BodyServer::start).collect();
    // One sidecar per body: bodies share metric names of different types,
    // which one sidecar would resolve as conflicts between containers.
    let sidecars: Vec<Sidecar> = CORPUS
        .iter()
        .zip(&stubs)
        .map(|(case, stub)| {
            let mut args = container_args(&[(case.id, stub.port)]);
            args.push("--scrape_interval=500".to_string());
            Sidecar::start(&args)
        })
        .collect();

    let dir = ScratchDir::new();
    let prometheus_port = free_port();
    let mut config = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  \
         - job_name: sidecar\n    static_configs:\n",
    );
    for (case, sidecar) in CORPUS.iter().zip(&sidecars) {
        config.push_str(&format!(
            "      - targets: [\"127.0.0.1:{}\"]\n        labels: {{case: \"{}\"}}\n",
            sidecar.port, case.id
        ));
    }
    config.push_str("  - job_name: direct\n    static_configs:\n");
    for (case, stub) in CORPUS.iter().zip(&stubs) {
        config.push_str(&format!(
            "      - targets: [\"127.0.0.1:{}\"]\n        labels: {{case: \"{}\"}}\n",
            stub.port, case.id
        ));
    }
    let config_path = dir.0.join("prometheus.yml");
    fs::write(&config_path, config).expect("write the Prometheus configuration");
    let process = Process::start(
        "prometheus",
        &prometheus,
        &[
            format!("--config.file={}", config_path.display()),
            format!("--storage.tsdb.path={}", dir.0.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{prometheus_port}"),
            "--log.level=error".to_string(),
        ],
        dir.0.join("prometheus.log"),
    );
    let api = PrometheusApi {
        port: prometheus_port,
    };
    let fail = |message: &str| -> ! {
        panic!(
            "{message}\n--- prometheus log tail ---\n{}",
            process.log_tail()
        )
    };

    // Every direct target scraped, the sidecar scraped and up (its merged
    // output must never be refused), and the sidecar's verdict on every
    // body stored.
    let (direct, through) = eventually(STARTUP, || {
        match http_get(prometheus_port, "/-/ready", "*/*") {
            Ok((200, _)) => {}
            other => return Err(format!("not ready: {other:?}")),
        }
        let direct = by_label(&api, "up{job=\"direct\"}", "case")?;
        let sidecars_up = by_label(&api, "up{job=\"sidecar\"}", "case")?;
        let through = by_label(&api, "multiplexer_up{job=\"sidecar\"}", "container")?;
        if let Some((case, _)) = sidecars_up.iter().find(|(_, up)| **up != 1.0) {
            return Err(format!("the sidecar of {case} is not up"));
        }
        if direct.len() < CORPUS.len() || through.len() < CORPUS.len() {
            return Err(format!(
                "{} direct and {} sidecar verdicts of {}",
                direct.len(),
                through.len(),
                CORPUS.len()
            ));
        }
        Ok((direct, through))
    })
    .unwrap_or_else(|error| fail(&error));

    let mut problems = Vec::new();
    let (mut agreements, mut main_differs, mut deviations) = (0, 0, 0);
    for case in CORPUS {
        let direct_up = direct[case.id] == 1.0;
        let sidecar_up = through[case.id] == 1.0;
        let expected_direct = match case.rule {
            Rule::MainDiffers { .. } => !case.main_up,
            _ => case.main_up,
        };
        let expected_sidecar = match case.rule {
            Rule::SidecarDeviates(_) => !case.main_up,
            _ => case.main_up,
        };
        if direct_up != expected_direct {
            problems.push(format!(
                "{}: Prometheus 2.42 says up={direct_up}, the corpus expects {expected_direct} ({:?})",
                case.id, case.rule
            ));
        }
        if sidecar_up != expected_sidecar {
            problems.push(format!(
                "{}: the sidecar says up={sidecar_up}, the corpus expects {expected_sidecar} ({:?})",
                case.id, case.rule
            ));
        }
        match case.rule {
            Rule::Agree => agreements += usize::from(direct_up == sidecar_up),
            Rule::MainDiffers { .. } => main_differs += 1,
            Rule::SidecarDeviates(_) => deviations += 1,
        }
    }
    if !problems.is_empty() {
        fail(&format!("verdicts differ:\n{}", problems.join("\n")));
    }

    // The series of every body both accept, stored both ways, are equal
    // (retried while the latest scrapes catch up).
    let both: Vec<&Case> = CORPUS
        .iter()
        .filter(|case| direct[case.id] == 1.0 && through[case.id] == 1.0)
        .collect();
    eventually(SETTLE, || {
        let mut differences = Vec::new();
        for case in &both {
            let stored_direct = series(
                &api,
                &format!(
                    "{{job=\"direct\",case=\"{}\",__name__!~\"up|scrape_.*\"}}",
                    case.id
                ),
            )?;
            let stored_through = series(
                &api,
                &format!(
                    "{{job=\"sidecar\",container=\"{}\",__name__!~\"multiplexer_.*|up|scrape_.*\"}}",
                    case.id
                ),
            )?;
            if stored_direct != stored_through {
                differences.push(format!(
                    "{}:\n  direct  {stored_direct:?}\n  sidecar {stored_through:?}",
                    case.id
                ));
            }
        }
        if differences.is_empty() {
            Ok(())
        } else {
            Err(format!("stored series differ:\n{}", differences.join("\n")))
        }
    })
    .unwrap_or_else(|error| fail(&error));
    println!(
        "verdicts: {} bodies; {agreements} agreed verdicts, {} of them accepted with equal \
         series; {main_differs} where 2.42 and main differ (the sidecar follows main); \
         {deviations} listed sidecar deviations",
        CORPUS.len(),
        both.len()
    );
    for case in CORPUS {
        match case.rule {
            Rule::Agree => {}
            Rule::MainDiffers { rule, decided_by } => {
                println!(
                    "verdicts: {}: 2.42 differs from main: {rule} ({decided_by})",
                    case.id
                )
            }
            Rule::SidecarDeviates(why) => {
                println!(
                    "verdicts: {}: the sidecar refuses what main takes: {why}",
                    case.id
                )
            }
        }
    }
}

/// The value of each series of `promql`, by the value of its `label`.
fn by_label(
    api: &PrometheusApi,
    promql: &str,
    label: &str,
) -> Result<BTreeMap<String, f64>, String> {
    Ok(api
        .query(promql)?
        .into_iter()
        .filter_map(|(labels, value)| Some((labels.get(label)?.clone(), value)))
        .collect())
}

/// The series of `promql` with their values (as text, so NaN equals NaN),
/// less the labels the scrape adds.
fn series(api: &PrometheusApi, promql: &str) -> Result<BTreeSet<String>, String> {
    Ok(api
        .query(promql)?
        .into_iter()
        .map(|(mut labels, value)| {
            for added in ["job", "instance", "case", "container"] {
                labels.remove(added);
            }
            format!("{labels:?} {value}")
        })
        .collect())
}

/// A loopback server answering every request with one body and its
/// `Content-Type`, keep-alive, a thread per connection.
struct BodyServer {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl BodyServer {
    fn start(case: &Case) -> BodyServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().expect("local address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let response = Arc::new(
            [
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
                    case.content_type,
                    case.body.len()
                )
                .into_bytes(),
                case.body.as_bytes().to_vec(),
            ]
            .concat(),
        );
        let stopped = stop.clone();
        thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (response, stopped) = (response.clone(), stopped.clone());
                        thread::spawn(move || serve(stream, &response, &stopped));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        BodyServer { port, stop }
    }
}

impl Drop for BodyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut stream: TcpStream, response: &[u8], stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut pending = Vec::new();
    let mut buffer = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            if stream.write_all(response).is_err() {
                return;
            }
            continue;
        }
        match stream.read(&mut buffer) {
            Ok(0) => return,
            Ok(read) => pending.extend_from_slice(&buffer[..read]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}
