//! Protobuf through the real binary, against a stub container that answers
//! each request in the format its `Accept` names first and records every
//! `Accept` it got: no protobuf is asked of containers while the only
//! client is text-only; once a client asks for protobuf, containers are
//! asked for it and the client gets delimited protobuf with the container
//! label on every metric (native histograms included), from its very first
//! answer, in either scrape mode; a container that answers text when asked
//! for protobuf is not scraped again for each protobuf client.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiplexer::exposition::negotiate::{ACCEPT_PROTOBUF, ACCEPT_TEXT, PROTOBUF_CONTENT_TYPE};
use multiplexer::exposition::protobuf::Converter;

use crate::util::{
    accept_container, container_args, get_metrics_as, gunzip, parse_response, raw_exchange,
    wait_until, Behaviour, Sidecar, Stub,
};

/// The sidecar's `Content-Type` for a protobuf answer (expfmt's, with
/// the escaping scheme).
const PROTOBUF_ANSWER: &str = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited; escaping=underscores";
const PROTOBUF_BODY: &[u8] = include_bytes!("fixtures/client_golang_native.pb");
const TEXT_BODY: &[u8] = include_bytes!("fixtures/client_golang_native.txt");

/// The container's answer: protobuf when asked for it first, else text.
fn answer(accept: &str) -> (&'static str, &'static [u8]) {
    if accept.starts_with("application/vnd.google.protobuf") {
        (PROTOBUF_CONTENT_TYPE, PROTOBUF_BODY)
    } else {
        ("text/plain; version=0.0.4; charset=utf-8", TEXT_BODY)
    }
}

fn container() -> (u16, Arc<Mutex<Vec<String>>>) {
    accept_container(answer)
}

fn get(sidecar: &Sidecar, accept: &str) -> (String, Vec<u8>) {
    get_metrics_as(sidecar, accept)
}

#[test]
fn containers_are_asked_for_protobuf_only_while_a_client_wants_it() {
    let (port, accepts) = container();
    let sidecar = Sidecar::start(&container_args(&[("app", port)]));

    // A text-only client: every request to the container asks for text,
    // over several scrapes.
    let (content_type, body) = get(&sidecar, "text/plain;version=0.0.4");
    assert_eq!(
        content_type,
        "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"
    );
    assert!(String::from_utf8_lossy(&body).contains("container=\"app\""));
    let scraped = wait_until(Duration::from_secs(10), || {
        get(&sidecar, "text/plain;version=0.0.4");
        accepts.lock().unwrap().len() >= 5
    });
    assert!(scraped, "the container was not scraped 5 times");
    let asked_before: Vec<String> = accepts.lock().unwrap().clone();
    assert!(
        asked_before.iter().all(|accept| accept == ACCEPT_TEXT),
        "{asked_before:?}"
    );

    // A protobuf client: its first answer waits for a scrape that asks
    // the container for protobuf, and carries the native histograms.
    let (content_type, body) = get(&sidecar, ACCEPT_PROTOBUF);
    assert_eq!(content_type, PROTOBUF_ANSWER);
    assert_eq!(native_histograms(&body), 3);
    let asked_after: Vec<String> = accepts.lock().unwrap()[asked_before.len()..].to_vec();
    assert!(
        asked_after.iter().any(|accept| accept == ACCEPT_PROTOBUF),
        "{asked_after:?}"
    );

    // Text clients meanwhile get the protobuf bodies converted down.
    let (_, body) = get(&sidecar, "text/plain");
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("app_response_size_bytes_bucket{le=\"+Inf\",container=\"app\"} 208\n"),
        "{text}"
    );
}

fn native_histograms(body: &[u8]) -> usize {
    let mut converter = Converter::new();
    converter.read(body).expect("the answer reads as protobuf");
    converter.native_histograms()
}

/// Interval mode, each container scraped once at the start (`-i 60000`),
/// for text: nobody wants protobuf yet. The first protobuf request waits
/// for one scrape of each container that asks for protobuf, and its answer
/// has the native histograms. The text-only container answered that scrape
/// with text, so it is not scraped again for the next protobuf requests
/// (its body stays text); the other is not either, its body is protobuf.
#[test]
fn the_first_protobuf_answer_waits_once_for_protobuf_scrapes() {
    let (port, accepts) = container();
    let text_only = Stub::start(Behaviour::ContentLength(
        "# TYPE python_requests_total counter\npython_requests_total 7\n".to_string(),
    ));
    let mut args = container_args(&[("app", port), ("python", text_only.port)]);
    args.push("--scrape_interval=60000".to_string());
    let sidecar = Sidecar::start(&args);
    // The first tick's scrapes have started (they may still be in flight:
    // a protobuf request then waits for them, and scrapes again).
    let ticked = wait_until(Duration::from_secs(10), || {
        !accepts.lock().unwrap().is_empty() && text_only.request_count() > 0
    });
    assert!(ticked, "the first scrapes never started");

    let (content_type, body) = get(&sidecar, ACCEPT_PROTOBUF);
    assert_eq!(content_type, PROTOBUF_ANSWER);
    assert_eq!(native_histograms(&body), 3);
    assert_eq!(
        *accepts.lock().unwrap(),
        vec![ACCEPT_TEXT.to_string(), ACCEPT_PROTOBUF.to_string()]
    );
    assert_eq!(text_only.request_count(), 2);

    for _ in 0..3 {
        let (_, body) = get(&sidecar, ACCEPT_PROTOBUF);
        assert_eq!(native_histograms(&body), 3);
        let (_, body) = get(&sidecar, "text/plain");
        assert!(String::from_utf8_lossy(&body)
            .contains("python_requests_total{container=\"python\"} 7\n"));
    }
    assert_eq!(accepts.lock().unwrap().len(), 2);
    assert_eq!(text_only.request_count(), 2);
}

/// On demand, the round a protobuf request starts already asks the
/// containers for protobuf: the first answer has the native histograms.
#[test]
fn on_demand_the_first_protobuf_answer_has_native_histograms() {
    let (port, accepts) = container();
    let mut args = container_args(&[("app", port)]);
    args.push("--scrape_interval=0".to_string());
    let sidecar = Sidecar::start(&args);
    let (content_type, body) = get(&sidecar, ACCEPT_PROTOBUF);
    assert_eq!(content_type, PROTOBUF_ANSWER);
    let mut converter = Converter::new();
    converter.read(&body).expect("the answer reads as protobuf");
    assert_eq!(converter.native_histograms(), 3);
    assert_eq!(*accepts.lock().unwrap(), vec![ACCEPT_PROTOBUF.to_string()]);
}

/// On demand, a protobuf request right after a round a text request
/// started (within the window in which that round's result is reused) is
/// not answered from its text bodies: the container is scraped again, for
/// protobuf, and the answer has the native histograms.
#[test]
fn on_demand_a_protobuf_request_after_a_text_round_has_native_histograms() {
    let (port, accepts) = container();
    let mut args = container_args(&[("app", port)]);
    args.push("--scrape_interval=0".to_string());
    let sidecar = Sidecar::start(&args);
    let (_, body) = get(&sidecar, "text/plain;version=0.0.4");
    assert!(String::from_utf8_lossy(&body).contains("container=\"app\""));
    assert_eq!(*accepts.lock().unwrap(), vec![ACCEPT_TEXT.to_string()]);
    let (content_type, body) = get(&sidecar, ACCEPT_PROTOBUF);
    assert_eq!(content_type, PROTOBUF_ANSWER);
    assert_eq!(native_histograms(&body), 3);
    assert_eq!(
        *accepts.lock().unwrap(),
        vec![ACCEPT_TEXT.to_string(), ACCEPT_PROTOBUF.to_string()]
    );
}

/// Sends `requests` on one connection in one write (the last one closing
/// it) and returns the responses in order.
fn pipelined(sidecar: &Sidecar, requests: &[String]) -> Vec<crate::util::Response> {
    let bytes = raw_exchange(sidecar.port, requests.concat().as_bytes()).expect("ask the sidecar");
    let mut responses = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (response, used) = parse_response(&bytes[at..]).expect("a whole response");
        responses.push(response);
        at += used;
    }
    assert_eq!(responses.len(), requests.len());
    responses
}

/// Format (from `Accept`) and coding (from `Accept-Encoding`) are
/// independent: a protobuf client asking for gzip gets the protobuf
/// edition's gzip member, which inflates (flate2) to the very bytes an
/// identity protobuf client gets; the same holds for text, here converted
/// down from protobuf bodies. Each pair is asked on one connection in one
/// write so that both are answered from the same data; a scrape landing
/// between them changes the sidecar's own metrics, so a pair is asked again
/// until one is answered from one edition (a coding that lost or changed
/// bytes never matches).
#[test]
fn gzip_carries_the_same_bytes_as_identity_in_either_format() {
    let (port, _) = container();
    let sidecar = Sidecar::start(&container_args(&[("app", port)]));
    // Until the containers are asked for protobuf and their native
    // histograms arrive.
    let arrived = wait_until(Duration::from_secs(10), || {
        let (_, body) = get(&sidecar, ACCEPT_PROTOBUF);
        let mut converter = Converter::new();
        converter.read(&body).expect("the answer reads as protobuf");
        converter.native_histograms() == 3
    });
    assert!(arrived, "native histograms never arrived");

    let request = |accept: &str, encoding: &str, last: bool| {
        format!(
            "GET /metrics HTTP/1.1\r\nHost: t\r\nAccept: {accept}\r\nAccept-Encoding: {encoding}\r\n{}\r\n",
            if last { "Connection: close\r\n" } else { "" }
        )
    };
    for (accept, content_type) in [
        (ACCEPT_PROTOBUF, PROTOBUF_ANSWER),
        (
            "text/plain;version=0.0.4",
            "text/plain; version=0.0.4; charset=utf-8; escaping=underscores",
        ),
        // Prometheus 3's Accept: OpenMetrics, UTF-8 names: its own edition.
        (
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
            "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8",
        ),
    ] {
        let mut last = None;
        let same = wait_until(Duration::from_secs(10), || {
            let responses = pipelined(
                &sidecar,
                &[
                    request(accept, "gzip", false),
                    request(accept, "identity", true),
                ],
            );
            let [gzip, identity] = &responses[..] else {
                unreachable!("two responses")
            };
            for response in [gzip, identity] {
                assert_eq!(response.status, 200);
                assert_eq!(response.header("content-type"), Some(content_type));
                assert_eq!(response.header("vary"), Some("Accept, Accept-Encoding"));
            }
            assert_eq!(gzip.header("content-encoding"), Some("gzip"), "{accept}");
            assert_eq!(identity.header("content-encoding"), None, "{accept}");
            let inflated = gunzip(&gzip.body);
            let same = inflated == identity.body;
            last = Some((inflated, identity.body.clone()));
            same
        });
        let (inflated, identity) = last.expect("asked at least once");
        assert!(
            same,
            "{accept}: gzip inflates to {} bytes, identity is {}",
            inflated.len(),
            identity.len()
        );
        if content_type == PROTOBUF_ANSWER {
            let mut converter = Converter::new();
            converter
                .read(&identity)
                .expect("identity reads as protobuf");
            assert_eq!(converter.native_histograms(), 3);
        } else {
            let text = String::from_utf8(identity).unwrap();
            assert!(
                text.contains(
                    "app_response_size_bytes_bucket{le=\"+Inf\",container=\"app\"} 208\n"
                ),
                "{text}"
            );
        }
    }
}
