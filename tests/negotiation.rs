//! The sidecar's choice of output from `Accept`, against real Go: a small
//! program (`negotiation/negotiate.go`) built offline against Debian's
//! prometheus/common 0.39 prints what `expfmt.NegotiateIncludingOpenMetrics`
//! answers to each header of a table, and the sidecar's negotiation
//! (`multiplexer::exposition::negotiate`, which follows prometheus/common
//! main's `NegotiateAccept`) must answer the same media type.
//!
//! Where main and 0.39 differ, the row names the rule ([`Differs`]) and the
//! test asserts that the answers do differ, so every listed exception is
//! real. Escaping is not compared: 0.39 has none (the unit tests of
//! `negotiate.rs` check it against main's test vectors).
//!
//! A missing Go toolchain or Debian package is a loud SKIP, a failure when
//! `CI=true` (`.ci/run` installs both).
//!
//! Then what containers are asked for, through the real binary against a
//! stub that answers by `Accept` (UTF-8 names when asked with
//! `escaping=allow-utf-8`, underscores otherwise) and records every
//! `Accept`: text-only clients cost nothing extra; a Prometheus 3 client's
//! first answer already has the names as the container writes them, in
//! either scrape mode, and the containers are asked for them from then on.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiplexer::exposition::negotiate::{
    negotiate, MediaType, ACCEPT_OPENMETRICS, ACCEPT_PROTOBUF, ACCEPT_PROTOBUF_OPENMETRICS,
    ACCEPT_TEXT,
};

use super::real_world::ScratchDir;
use crate::util::{accept_container, container_args, get_metrics_as, wait_until, Sidecar};

/// Where Debian's golang-github-prometheus-common-dev puts its sources.
const GOPATH: &str = "/usr/share/gocode";

/// Why prometheus/common main (which the sidecar follows) answers
/// differently from 0.39 for a row.
#[derive(Clone, Copy, Debug)]
enum Differs {
    /// main's `matchFormat` matches `*/*` with the first offered format
    /// (text); 0.39 skips `*/*` and goes on to the next range.
    Wildcard,
    /// main matches `application/*;version=1.0.0` when the parameters
    /// match; 0.39 compares `type/subtype` as one string.
    WildcardSubtype,
    /// 0.39 knows OpenMetrics 0.0.1 only: a `version=1.0.0` range matches
    /// nothing there, and main answers OpenMetrics 1.0.0.
    OpenMetrics1,
    /// 0.39 answers protobuf `encoding=text` and `compact-text`, which the
    /// sidecar does not offer (main with our offered list goes on).
    ProtobufText,
    /// main's goautoneg skips a parameter with no value (`q=`) or with two
    /// `=`; 0.39's older copy reads it, and a bad `q` is 0.
    Parameters,
    /// The sidecar keeps the first 12 clauses of an untrusted header
    /// (`MAX_ACCEPT_CLAUSES`); Go reads them all.
    Budget,
}

const OPENMETRICS_0: &str = "application/openmetrics-text; version=0.0.1; charset=utf-8";

/// The media type as expfmt's `Format` string (escaping left out).
fn expfmt_format(media_type: MediaType) -> &'static str {
    match media_type {
        MediaType::Text => "text/plain; version=0.0.4; charset=utf-8",
        MediaType::OpenMetrics1 => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        MediaType::OpenMetrics0 => OPENMETRICS_0,
        MediaType::Protobuf => {
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
        }
    }
}

fn table() -> Vec<(String, Option<Differs>)> {
    use Differs::*;
    let proto = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily";
    let mut rows: Vec<(String, Option<Differs>)> = [
        ("", None),
        ("*/*", None),
        ("*", None),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", None),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7", None),
        // Prometheus 2.42, without and with native histograms.
        ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", Some(OpenMetrics1)),
        ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", None),
        // Prometheus 2.53, 3.x, 3.x proto-first, 3.0 to 3.3.
        ("application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2", Some(OpenMetrics1)),
        ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2", Some(OpenMetrics1)),
        ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1", None),
        ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;escaping=allow-utf-8;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;escaping=allow-utf-8;q=0.3,*/*;escaping=allow-utf-8;q=0.2", Some(OpenMetrics1)),
        ("text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=0.0.4;q=0.4", None),
        // The sidecar's own upstream headers.
        (multiplexer::exposition::negotiate::ACCEPT_TEXT, None),
        (multiplexer::exposition::negotiate::ACCEPT_PROTOBUF, None),
        ("text/plain, application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;encoding=delimited", None),
        ("application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited", None),
        ("application/vnd.google.protobuf;proto=other.Message;encoding=delimited", None),
        ("text/plain;version=0.0.4", None),
        ("text/plain;version=0.0.4; escaping=values;", None),
        ("text/plain", None),
        ("application/openmetrics-text", None),
        ("application/openmetrics-text;version=0.0.1; escaping=underscores", None),
        ("application/openmetrics-text;version=1.0.0", Some(OpenMetrics1)),
        ("application/openmetrics-text;version=2.0.0", None),
        ("application/openmetrics-text;version=0.0.4", None),
        ("application/openmetrics-text;version=1.0.0;q=0.8, application/openmetrics-text;version=2.0.0;q=0.9", Some(OpenMetrics1)),
        ("application/unknown", None),
        // q: order, ties, bad values, no exclusion at 0.
        ("text/plain;q=0.9,application/openmetrics-text;q=0.5", None),
        ("text/plain;q=0.5,application/openmetrics-text;q=0.9", None),
        ("application/openmetrics-text;q=0.5,text/plain;q=0.5", None),
        ("application/openmetrics-text;q=0", None),
        ("application/openmetrics-text;q=0.5,text/plain;q= 0.9", None),
        ("application/openmetrics-text;q=0.5,text/plain;q=abc", None),
        ("application/openmetrics-text;q=0.5,text/plain;q=1_0", None),
        ("application/openmetrics-text;q=0.5,text/plain;q=Inf", None),
        ("text/plain;q=0.5,application/openmetrics-text;q=NaN", None),
        ("text/plain;q=0.5,application/openmetrics-text;q=1e-50", None),
        ("text/plain;q=0.3,application/openmetrics-text;q=0.30000001", None),
        ("text/plain;q=0.5,application/openmetrics-text;q=", Some(Parameters)),
        ("text/plain;q=0.5,application/openmetrics-text;q=0.1=x", Some(Parameters)),
        // Case, quotes and tabs are not forgiven; spaces are trimmed.
        ("Text/Plain;q=0.9,application/openmetrics-text;q=0.5", None),
        ("text/plain;version=\"0.0.4\";q=0.9,application/openmetrics-text;q=0.5", None),
        ("application/openmetrics-text;q=0.5,\ttext/plain;q=0.9", None),
        ("  text/plain ; version=0.0.4 ; q=0.9 ,application/openmetrics-text;q=0.5", None),
        // Wildcards, and Less, which is not an order.
        ("*/*;q=0.9,application/openmetrics-text;q=0.5", None),
        ("*;q=0.9,application/openmetrics-text;q=0.5", None),
        ("application/openmetrics-text;q=0.5,*/*;q=0.9", Some(Wildcard)),
        ("application/openmetrics-text;q=0.1,*/*;q=0.5", Some(Wildcard)),
        ("text/*", None),
        ("application/*;q=0.9,text/plain;q=0.1", None),
        ("application/*;version=1.0.0", Some(WildcardSubtype)),
        // Garbage.
        (";;;,,=/;q=2,application/vnd.google.protobuf;q=abc", None),
        ("/,//,a//b,/a,a/,*/,=,;=;,\u{ff}/\u{ff}", None),
    ]
    .into_iter()
    .map(|(header, differs)| (header.to_string(), differs))
    .collect();
    for encoding in ["text", "compact-text"] {
        rows.push((format!("{proto};encoding={encoding}"), Some(ProtobufText)));
        rows.push((
            format!("{proto};encoding={encoding}; escaping=allow-utf-8;"),
            Some(ProtobufText),
        ));
    }
    rows.push((
        format!("{}application/openmetrics-text", "x/y,".repeat(12)),
        Some(Budget),
    ));
    rows.push((
        format!("{}application/openmetrics-text", "x/y,".repeat(11)),
        None,
    ));
    rows
}

/// Loud, and a failure in CI.
fn skip_or_fail(missing: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and {missing}; .ci/run installs it");
    }
    let rule = "#".repeat(72);
    let _ = writeln!(
        std::io::stderr(),
        "\n{rule}\nSKIP negotiation: {missing}\n     \
         install it with .ci/run; CI=true makes this a failure\n{rule}\n"
    );
}

#[test]
fn negotiation_matches_expfmt() {
    let common = Path::new(GOPATH).join("src/github.com/prometheus/common/expfmt");
    if !common.is_dir() {
        return skip_or_fail(&format!(
            "{} is missing (golang-github-prometheus-common-dev)",
            common.display()
        ));
    }
    let dir = ScratchDir::new();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/negotiation/negotiate.go");
    let binary = dir.0.join("negotiate");
    let build = Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOCACHE", dir.0.join("gocache"))
        .env("GOFLAGS", "")
        .stdin(Stdio::null())
        .output();
    let build = match build {
        Ok(build) => build,
        Err(error) => return skip_or_fail(&format!("go does not run: {error}")),
    };
    assert!(
        build.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&build.stderr)
    );

    let rows = table();
    let mut input = String::new();
    for (header, _) in &rows {
        assert!(!header.contains('\n'));
        input.push_str(header);
        input.push('\n');
    }
    let mut child = Command::new(&binary)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the Go program");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let answers = String::from_utf8(output.stdout).unwrap();
    let answers: Vec<&str> = answers.lines().collect();
    assert_eq!(answers.len(), rows.len());

    let mut exceptions = 0;
    for ((header, differs), go) in rows.iter().zip(&answers) {
        let ours = expfmt_format(negotiate(&[header.as_bytes()]).media_type);
        match differs {
            None => assert_eq!(ours, *go, "Accept: {header:?}"),
            Some(rule) => {
                assert_ne!(ours, *go, "Accept: {header:?} is listed as {rule:?}");
                exceptions += 1;
            }
        }
    }
    println!(
        "negotiation: {} Accept headers, the same media type as expfmt 0.39 for {}, {exceptions} differ by a listed rule of main",
        rows.len(),
        rows.len() - exceptions
    );
}

/// Prometheus 3.x's `Accept`.
const PROMETHEUS_3: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
/// Prometheus 2.42's.
const PROMETHEUS_2: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

const UTF8_BODY: &str = "# HELP \"http.server.requests_total\" Requests.\n# TYPE \"http.server.requests_total\" counter\n{\"http.server.requests_total\",code=\"200\"} 3\n";
const ESCAPED_BODY: &str = "# HELP http_server_requests_total Requests.\n# TYPE http_server_requests_total counter\nhttp_server_requests_total{code=\"200\"} 3\n";

/// A keep-alive container answering UTF-8 names (text 1.0.0) when its
/// `Accept` allows them, underscores (text 0.0.4) otherwise; returns its
/// port and the `Accept` of each request, in order.
fn utf8_container() -> (u16, Arc<Mutex<Vec<String>>>) {
    accept_container(|accept| {
        if accept.contains("escaping=allow-utf-8") {
            (
                "text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8",
                UTF8_BODY.as_bytes(),
            )
        } else {
            (
                "text/plain; version=0.0.4; charset=utf-8",
                ESCAPED_BODY.as_bytes(),
            )
        }
    })
}

fn get(sidecar: &Sidecar, accept: &str) -> (String, String) {
    let (content_type, body) = get_metrics_as(sidecar, accept);
    // Lossy: a protobuf answer is looked at for its type only.
    (content_type, String::from_utf8_lossy(&body).into_owned())
}

fn accepts_of(log: &Mutex<Vec<String>>) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// What a Prometheus 3 client gets: the name as the container writes it.
fn assert_utf8_answer(content_type: &str, body: &str) {
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8"
    );
    assert!(body.contains("\"http.server.requests_total\""), "{body}");
    assert!(!body.contains("http_server_requests_total"), "{body}");
}

/// What a client naming no escaping gets: underscores.
fn assert_underscores_answer(body: &str) {
    assert!(
        body.contains("http_server_requests_total{code=\"200\",container=\"app\"} 3\n"),
        "{body}"
    );
}

/// Interval mode, the container scraped once at the start
/// (`-i 60000`) for text. Text clients are answered from that scrape:
/// nothing more is asked (a Prometheus 2, which takes OpenMetrics, would
/// ask for it). The first Prometheus 3 request waits
/// for one scrape that asks for UTF-8 names, and gets them; later ones are
/// answered from what is held, and every client gets its own escaping.
#[test]
fn the_first_utf8_answer_waits_once_for_an_openmetrics_scrape() {
    let (port, accepts) = utf8_container();
    let mut args = container_args(&[("app", port)]);
    args.push("--scrape_interval=60000".to_string());
    let sidecar = Sidecar::start(&args);
    let scraped = wait_until(Duration::from_secs(10), || {
        get(&sidecar, "text/plain")
            .1
            .contains("http_server_requests_total{")
    });
    assert!(scraped, "the first scrape never arrived");
    for accept in ["text/plain", "*/*", ""] {
        let (_, body) = get(&sidecar, accept);
        assert_underscores_answer(&body);
    }
    assert_eq!(accepts_of(&accepts), vec![ACCEPT_TEXT.to_string()]);

    let (content_type, body) = get(&sidecar, PROMETHEUS_3);
    assert_utf8_answer(&content_type, &body);
    assert_eq!(
        accepts_of(&accepts),
        vec![ACCEPT_TEXT.to_string(), ACCEPT_OPENMETRICS.to_string()]
    );
    for _ in 0..3 {
        let (content_type, body) = get(&sidecar, PROMETHEUS_3);
        assert_utf8_answer(&content_type, &body);
        assert_underscores_answer(&get(&sidecar, PROMETHEUS_2).1);
        let (content_type, body) = get(&sidecar, "text/plain;version=0.0.4;escaping=values");
        assert_eq!(
            content_type,
            "text/plain; version=0.0.4; charset=utf-8; escaping=values"
        );
        assert!(
            body.contains(
                "U__http_2e_server_2e_requests__total{code=\"200\",container=\"app\"} 3\n"
            ),
            "{body}"
        );
    }
    assert_eq!(accepts_of(&accepts).len(), 2);
}

/// On demand: the round a Prometheus 3 request starts already asks for
/// UTF-8 names, and so do the rounds of any client within the demand
/// window; a protobuf client then gets containers asked for both.
#[test]
fn on_demand_the_first_utf8_answer_has_the_names_as_written() {
    let (port, accepts) = utf8_container();
    let mut args = container_args(&[("app", port)]);
    args.push("--scrape_interval=0".to_string());
    let sidecar = Sidecar::start(&args);
    let (content_type, body) = get(&sidecar, PROMETHEUS_3);
    assert_utf8_answer(&content_type, &body);
    assert_eq!(accepts_of(&accepts), vec![ACCEPT_OPENMETRICS.to_string()]);
    // A text client's rounds (once past the reuse window of that one) ask
    // as the demand says, and it gets underscores.
    let asked_again = wait_until(Duration::from_secs(10), || {
        assert_underscores_answer(&get(&sidecar, "text/plain").1);
        accepts_of(&accepts).len() >= 2
    });
    assert!(asked_again, "a text client's request never started a round");
    assert!(
        accepts_of(&accepts)
            .iter()
            .all(|accept| accept == ACCEPT_OPENMETRICS),
        "{:?}",
        accepts_of(&accepts)
    );
    let (content_type, _) = get(&sidecar, ACCEPT_PROTOBUF);
    assert!(
        content_type.starts_with("application/vnd.google.protobuf;"),
        "{content_type}"
    );
    assert_eq!(
        accepts_of(&accepts).last().map(String::as_str),
        Some(ACCEPT_PROTOBUF_OPENMETRICS)
    );
}

/// On demand, a Prometheus 3 request right after a round a text request
/// started (within the window in which that round's result is reused) is
/// not answered from its text body: the container is scraped again.
#[test]
fn on_demand_a_utf8_request_after_a_text_round_has_the_names_as_written() {
    let (port, accepts) = utf8_container();
    let mut args = container_args(&[("app", port)]);
    args.push("--scrape_interval=0".to_string());
    let sidecar = Sidecar::start(&args);
    assert_underscores_answer(&get(&sidecar, "text/plain;version=0.0.4").1);
    assert_eq!(accepts_of(&accepts), vec![ACCEPT_TEXT.to_string()]);
    let (content_type, body) = get(&sidecar, PROMETHEUS_3);
    assert_utf8_answer(&content_type, &body);
    assert_eq!(
        accepts_of(&accepts),
        vec![ACCEPT_TEXT.to_string(), ACCEPT_OPENMETRICS.to_string()]
    );
}
