//! The hostile real-world test (issue 11): a real Prometheus scrapes the
//! sidecar while one container serves each poison, beside a real Python
//! `prometheus_client` app and Prometheus' own `/metrics`. Whatever the
//! poisoned containers send, Prometheus keeps the sidecar target up, rejects
//! none of its samples, and stores every series of the good containers.
//!
//! The poisons, each a body that a naive merge passes through to Prometheus:
//! a value out of float64's range (`strconv.ParseFloat: value out of range`
//! fails the whole scrape), a `__name__` label (`label name "__name__" is
//! not unique`), a container's `multiplexer_up` declared a histogram (the
//! sidecar's own health gauge of every container lost to it), and a server
//! that sends a second, unrequested response right after a body that ends
//! exactly where the sidecar's read does (taken as the next scrape's answer).

use super::{
    eventually, own_series_selector, skip_or_fail, Programs, PrometheusApi, Rig, PROMETHEUS,
    PYTHON, SCRAPES, STARTUP,
};
use crate::util::{Behaviour, Stub, FIRST_READ_ROOM_FOR_THE_HEAD};

const OVERFLOW: &str = "overflow";
const NAME_LABEL: &str = "name-label";
const RESERVED: &str = "reserved";
const SMUGGLER: &str = "smuggler";

/// What the smuggler serves when it behaves.
const SMUGGLER_BODY: &str = "# TYPE real gauge\nreal 3\n";

/// Prometheus scrapes of the sidecar to see before judging: each is one
/// chance for a poison to reach Prometheus.
const PROMETHEUS_SCRAPES: f64 = 10.0;

fn poisoned_containers() -> Vec<(&'static str, Stub)> {
    let serve = |body: &str| Stub::start(Behaviour::ContentLength(body.to_string()));
    vec![
        (OVERFLOW, serve("# TYPE x gauge\nx 1e999\n")),
        (NAME_LABEL, serve("x{__name__=\"y\"} 1\n")),
        (
            RESERVED,
            serve(
                "# TYPE multiplexer_up histogram\n\
                 multiplexer_up_bucket{le=\"+Inf\"} 1\n\
                 multiplexer_up_sum 1\n\
                 multiplexer_up_count 1\n",
            ),
        ),
        // Every second scrape ends exactly at the size of the sidecar's read
        // (the previous body plus its room for the head) and is followed by
        // a smuggled response.
        (
            SMUGGLER,
            Stub::start(Behaviour::Alternating(vec![
                Behaviour::ContentLength(SMUGGLER_BODY.to_string()),
                Behaviour::Smuggling {
                    body: SMUGGLER_BODY.to_string(),
                    size: SMUGGLER_BODY.len() + FIRST_READ_ROOM_FOR_THE_HEAD,
                    smuggled: "smuggled 666\n".to_string(),
                },
            ])),
        ),
    ]
}

#[test]
fn poisoned_containers_do_not_take_the_target_down() {
    let programs = match Programs::find() {
        Ok(programs) => programs,
        Err(missing) => return skip_or_fail(&missing),
    };
    let rig = Rig::start(&programs, &[PYTHON], poisoned_containers());
    let api = PrometheusApi {
        port: rig.prometheus_port,
    };

    // Enough scrapes of the sidecar that every poison was served to
    // Prometheus (the smuggler's lie would be served between two of its
    // scrapes).
    eventually(STARTUP + SCRAPES, || {
        let scrapes = api.query("count_over_time(up{job=\"sidecar\"}[1h])")?;
        match scrapes.first() {
            Some((_, count)) if *count >= PROMETHEUS_SCRAPES => Ok(()),
            other => Err(format!("scrapes of the sidecar so far: {other:?}")),
        }
    })
    .unwrap_or_else(|error| rig.fail(&error));
    rig.check_no_scrape_errors(&api);

    // The good containers: the Python app's series exactly as a direct
    // scrape has them, and every container's health in `multiplexer_up`.
    let comparison = eventually(SCRAPES, || {
        let comparison = rig.compare(&api, PYTHON)?;
        match comparison.difference() {
            None => Ok(comparison),
            Some(difference) => Err(difference),
        }
    })
    .unwrap_or_else(|error| rig.fail(&error));
    comparison.print();
    let prometheus_series = api
        .query(&format!("count({})", own_series_selector(PROMETHEUS)))
        .unwrap_or_else(|error| rig.fail(&error));
    if !prometheus_series
        .first()
        .is_some_and(|(_, count)| *count > 0.0)
    {
        rig.fail(&format!("no prometheus series: {prometheus_series:?}"));
    }
    // Every container's health gauge survives the one that declares it a
    // histogram, and the good ones are up.
    eventually(SCRAPES, || {
        let up = api.query("multiplexer_up")?;
        let of = |container: &str| {
            up.iter()
                .find(|(labels, _)| labels.get("container").map(String::as_str) == Some(container))
                .map(|(_, value)| *value)
        };
        let all = [PYTHON, PROMETHEUS, OVERFLOW, NAME_LABEL, RESERVED, SMUGGLER];
        let missing: Vec<&str> = all.into_iter().filter(|c| of(c).is_none()).collect();
        if !missing.is_empty() {
            return Err(format!("no multiplexer_up for {missing:?}: {up:?}"));
        }
        match (of(PYTHON), of(PROMETHEUS)) {
            (Some(1.0), Some(1.0)) => Ok(()),
            other => Err(format!("multiplexer_up of python, prometheus: {other:?}")),
        }
    })
    .unwrap_or_else(|error| rig.fail(&error));

    // The smuggled answer never reached Prometheus.
    let smuggled = api
        .query("count_over_time(smuggled[1h])")
        .unwrap_or_else(|error| rig.fail(&error));
    if !smuggled.is_empty() {
        rig.fail(&format!("a smuggled response was served: {smuggled:?}"));
    }
    println!(
        "real_world: {PROMETHEUS_SCRAPES} scrapes of the sidecar up with four poisoned containers"
    );
    rig.check_no_scrape_errors(&api);
}
