//! The hostile real-world test (issue 11): a real Prometheus scrapes the
//! sidecar while one container serves each poison, beside a real Python
//! `prometheus_client` app and Prometheus' own `/metrics`. Whatever the
//! poisoned containers send, Prometheus keeps the sidecar target up, rejects
//! none of its samples, and stores every series of the good containers.
//!
//! The poisons, each a body that a naive merge passes through to Prometheus:
//! a value out of float64's range (`strconv.ParseFloat: value out of range`
//! fails the whole scrape), a histogram bucket bound out of that range, a
//! `__name__` label (`label name "__name__" is not unique`), another label
//! starting with `__` (Python's parser refuses it), a negative timestamp
//! (Prometheus' text parser refuses it), a container's `multiplexer_up`
//! declared a histogram (the sidecar's own health gauge of every container
//! lost to it), and a server that sends a second, unrequested response right
//! after a body that ends exactly where the sidecar's read does (taken as the
//! next scrape's answer). The sidecar refuses each of the first five bodies
//! whole (that container is down, the others are not), drops only the
//! conflicting family of the sixth, and never serves the smuggled answer.

use super::{
    eventually, own_series_selector, skip_or_fail, Programs, PrometheusApi, Rig, PROMETHEUS,
    PYTHON, SCRAPES, STARTUP,
};
use crate::util::{Behaviour, Stub, FIRST_READ_ROOM_FOR_THE_HEAD};

const OVERFLOW: &str = "overflow";
const BUCKET_OVERFLOW: &str = "bucket-overflow";
const NAME_LABEL: &str = "name-label";
const RESERVED_LABEL: &str = "reserved-label";
const NEGATIVE_TIMESTAMP: &str = "negative-timestamp";
const OWN_NAME: &str = "own-name";
const SMUGGLER: &str = "smuggler";

/// The containers whose every body the sidecar refuses.
const REFUSED: [&str; 5] = [
    OVERFLOW,
    BUCKET_OVERFLOW,
    NAME_LABEL,
    RESERVED_LABEL,
    NEGATIVE_TIMESTAMP,
];

/// What the smuggler serves when it behaves.
const SMUGGLER_BODY: &str = "# TYPE real gauge\nreal 3\n";

/// Prometheus scrapes of the sidecar to see before judging: each is one
/// chance for a poison to reach Prometheus.
const PROMETHEUS_SCRAPES: f64 = 10.0;

fn poisoned_containers() -> Vec<(&'static str, Stub)> {
    let serve = |body: &str| Stub::start(Behaviour::ContentLength(body.to_string()));
    // Every poisoned series is named `poison_*`: none may reach Prometheus.
    vec![
        (OVERFLOW, serve("# TYPE poison_a gauge\npoison_a 1e999\n")),
        (
            BUCKET_OVERFLOW,
            serve(
                "# TYPE poison_b histogram\n\
                 poison_b_bucket{le=\"1e999\"} 1\n\
                 poison_b_bucket{le=\"+Inf\"} 1\n\
                 poison_b_sum 1\n\
                 poison_b_count 1\n",
            ),
        ),
        (NAME_LABEL, serve("poison_c{__name__=\"y\"} 1\n")),
        (RESERVED_LABEL, serve("poison_d{__meta=\"y\"} 1\n")),
        (NEGATIVE_TIMESTAMP, serve("poison_e 1 -3\n")),
        // Up: only its `multiplexer_up` family loses to the sidecar's own.
        (
            OWN_NAME,
            serve(
                "# TYPE multiplexer_up histogram\n\
                 multiplexer_up_bucket{le=\"+Inf\"} 1\n\
                 multiplexer_up_sum 1\n\
                 multiplexer_up_count 1\n\
                 # TYPE mine_total counter\n\
                 mine_total 3\n",
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
    // histogram; the good ones and that one are up, the refused ones down.
    eventually(SCRAPES, || {
        let up = api.query("multiplexer_up")?;
        let of = |container: &str| {
            up.iter()
                .find(|(labels, _)| labels.get("container").map(String::as_str) == Some(container))
                .map(|(_, value)| *value)
        };
        let all = [PYTHON, PROMETHEUS, OWN_NAME, SMUGGLER]
            .into_iter()
            .chain(REFUSED);
        let missing: Vec<&str> = all.filter(|c| of(c).is_none()).collect();
        if !missing.is_empty() {
            return Err(format!("no multiplexer_up for {missing:?}: {up:?}"));
        }
        let expected = [(PYTHON, 1.0), (PROMETHEUS, 1.0), (OWN_NAME, 1.0)]
            .into_iter()
            .chain(REFUSED.map(|container| (container, 0.0)));
        let wrong: Vec<(&str, Option<f64>)> = expected
            .filter_map(|(container, want)| {
                let got = of(container);
                (got != Some(want)).then_some((container, got))
            })
            .collect();
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(format!("multiplexer_up not as expected: {wrong:?}"))
        }
    })
    .unwrap_or_else(|error| rig.fail(&error));

    // The container that declared `multiplexer_up` lost only that family.
    let mine = api
        .query("mine_total")
        .unwrap_or_else(|error| rig.fail(&error));
    let mine: Vec<(Option<&str>, f64)> = mine
        .iter()
        .map(|(labels, value)| (labels.get("container").map(String::as_str), *value))
        .collect();
    if mine != [(Some(OWN_NAME), 3.0)] {
        rig.fail(&format!("mine_total of {OWN_NAME}: {mine:?}"));
    }

    // Nothing of a poison, of the histogram that lost to the sidecar's own
    // gauge, or of the smuggled answer ever reached Prometheus.
    let leaked = api
        .query(
            "count_over_time({__name__=~\"poison_.*|multiplexer_up_(bucket|sum|count)|smuggled\"}[1h])",
        )
        .unwrap_or_else(|error| rig.fail(&error));
    if !leaked.is_empty() {
        rig.fail(&format!("poisoned series were served: {leaked:?}"));
    }
    println!(
        "real_world: {PROMETHEUS_SCRAPES} scrapes of the sidecar up with seven poisoned containers"
    );
    rig.check_no_scrape_errors(&api);
}
