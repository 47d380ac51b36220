//! A real Prometheus 2.42 scraping the sidecar while containers send what
//! would poison the merged output (issue 11, items 1 and 5): each poisoned
//! container fails alone, the target stays up, and every series of the
//! healthy container and every `multiplexer_up` reach Prometheus' storage.
//! Prometheus' scraper is the judge here, not a parser written here.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{container_args, free_port, try_get, Behaviour, Sidecar, Stub};

/// Starting Prometheus (it opens its storage) and a few of its scrapes, on
/// two shared cores.
const DEADLINE: Duration = Duration::from_secs(90);

/// Each a container of its own, beside a healthy one.
const POISONS: &[(&str, &str)] = &[
    ("out-of-range", "poison_a 1e999\n"),
    ("name-label", "poison_b{__name__=\"y\"} 1\n"),
    ("reserved-label", "poison_c{__meta=\"y\"} 1\n"),
    ("negative-timestamp", "poison_d 1 -3\n"),
    (
        "bucket-out-of-range",
        "# TYPE poison_e histogram\npoison_e_bucket{le=\"1e999\"} 1\npoison_e_bucket{le=\"+Inf\"} 1\npoison_e_sum 1\npoison_e_count 1\n",
    ),
];

const GOOD: &str = "# TYPE good_requests_total counter\ngood_requests_total{code=\"200\"} 7\ngood_requests_total{code=\"500\"} 1\n# TYPE good_temperature gauge\ngood_temperature -1.5\n";

/// Up, but declares one of the sidecar's own names with another type.
const OWN_NAME: &str = "# TYPE multiplexer_up histogram\nmultiplexer_up_bucket{le=\"+Inf\"} 1\nmultiplexer_up_sum 1\nmultiplexer_up_count 1\nmine_total 3\n";

/// A Prometheus server scraping one target every second; killed, reaped and
/// its storage removed when dropped.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Prometheus {
    fn start(target_port: u16) -> Prometheus {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("hostile-prometheus-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: sidecar\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        Prometheus { child, dir, port }
    }

    fn api(&self, path: &str) -> Result<Value, String> {
        let response = try_get(self.port, path).map_err(|e| format!("GET {path}: {e}"))?;
        if response.status != 200 {
            return Err(format!("GET {path}: status {}", response.status));
        }
        serde_json::from_slice(&response.body).map_err(|e| format!("GET {path}: {e}"))
    }

    /// The sidecar target's (health, lastError, lastScrape).
    fn target(&self) -> Result<(String, String, String), String> {
        let targets = self.api("/api/v1/targets")?;
        let target = &targets["data"]["activeTargets"][0];
        let field = |name: &str| target[name].as_str().unwrap_or_default().to_string();
        Ok((field("health"), field("lastError"), field("lastScrape")))
    }

    /// `metric`'s series now, as (container label, value).
    fn query(&self, metric: &str) -> Result<Vec<(String, String)>, String> {
        let answer = self.api(&format!("/api/v1/query?query={metric}"))?;
        let series = answer["data"]["result"]
            .as_array()
            .ok_or_else(|| format!("{metric}: {answer}"))?;
        let mut found: Vec<(String, String)> = series
            .iter()
            .map(|series| {
                let container = series["metric"]["container"].as_str().unwrap_or_default();
                let value = series["value"][1].as_str().unwrap_or_default();
                (container.to_string(), value.to_string())
            })
            .collect();
        found.sort();
        Ok(found)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn prometheus_available() -> bool {
    let found = Command::new("prometheus")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true and prometheus is missing; .ci/run installs it");
        }
        eprintln!("\n!!!!! SKIPPING: prometheus not found; the test is not run !!!!!\n");
    }
    found
}

/// Polls `check` every 250 ms until it returns Ok or the deadline passes.
fn eventually<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() > deadline => panic!("{what}: {last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

#[test]
fn poisoned_containers_never_take_the_target_down() {
    if !prometheus_available() {
        return;
    }
    let good = Stub::start(Behaviour::ContentLength(GOOD.to_string()));
    let own_name = Stub::start(Behaviour::ContentLength(OWN_NAME.to_string()));
    let poisons: Vec<(&str, Stub)> = POISONS
        .iter()
        .map(|(name, body)| {
            (
                *name,
                Stub::start(Behaviour::ContentLength(body.to_string())),
            )
        })
        .collect();
    let mut containers = vec![("good", good.port), ("own-name", own_name.port)];
    containers.extend(poisons.iter().map(|(name, stub)| (*name, stub.port)));
    let sidecar = Sidecar::start(&container_args(&containers));
    // Every container scraped once before Prometheus looks.
    eventually("every container scraped", || {
        let metrics = sidecar.metrics();
        let missing: Vec<&str> = containers
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| {
                !metrics.contains(&format!(
                    "multiplexer_scrapes_total{{container=\"{name}\"}} "
                )) || metrics.contains(&format!(
                    "multiplexer_scrapes_total{{container=\"{name}\"}} 0\n"
                ))
            })
            .collect();
        missing
            .is_empty()
            .then_some(())
            .ok_or(format!("{missing:?}"))
    });
    let prometheus = Prometheus::start(sidecar.port);
    // Three scrapes in a row that Prometheus took whole.
    let mut scrapes_seen = Vec::new();
    eventually("three clean scrapes of the sidecar", || {
        let (health, error, last) = prometheus.target()?;
        if health != "up" || !error.is_empty() {
            scrapes_seen.clear();
            return Err(format!(
                "target {health}: {error}\nsidecar:\n{}\nprometheus:\n{}",
                sidecar.metrics(),
                prometheus.log()
            ));
        }
        if scrapes_seen.last() != Some(&last) {
            scrapes_seen.push(last);
        }
        (scrapes_seen.len() >= 3)
            .then_some(())
            .ok_or("fewer than 3 scrapes".to_string())
    });
    let good_requests = prometheus.query("good_requests_total").unwrap();
    assert_eq!(
        good_requests,
        vec![
            ("good".to_string(), "1".to_string()),
            ("good".to_string(), "7".to_string())
        ]
    );
    assert_eq!(
        prometheus.query("good_temperature").unwrap(),
        vec![("good".to_string(), "-1.5".to_string())]
    );
    assert_eq!(
        prometheus.query("mine_total").unwrap(),
        vec![("own-name".to_string(), "3".to_string())]
    );
    let mut expected_up: Vec<(String, String)> = containers
        .iter()
        .map(|(name, _)| {
            let up = if matches!(*name, "good" | "own-name") {
                "1"
            } else {
                "0"
            };
            (name.to_string(), up.to_string())
        })
        .collect();
    expected_up.sort();
    assert_eq!(prometheus.query("multiplexer_up").unwrap(), expected_up);
    for poison in [
        "poison_a",
        "poison_b",
        "poison_c",
        "poison_d",
        "poison_e_bucket",
    ] {
        assert_eq!(prometheus.query(poison).unwrap(), vec![], "{poison}");
    }
}
