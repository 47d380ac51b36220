"""A prometheus_client application with what OpenMetrics carries, for the
invisibility tests of tests/real_world/invisible.rs (issue 18).

Usage: python3 om_app.py PORT

Serves on 127.0.0.1:PORT, from a registry of its own (no process or platform
collector, whose values move):

- a counter and a histogram with UTF-8 names (`http.server.requests`,
  `http.server.request.duration_seconds`) and a `.`-named label
  (`http.request.method`), carrying exemplars with trace ids;
- a legacy-named counter with an exemplar, a gauge and a counter with a
  `# UNIT`, an info, an enum (a stateset in OpenMetrics) and a summary;
- `_created` for the counters, histograms and summary (prometheus_client
  writes them in OpenMetrics and, as gauge lines, in text).

prometheus_client picks the output from `Accept` itself: OpenMetrics when an
`application/openmetrics-text` entry of version 1.0.0 or more is present (its
`escaping=` names the scheme: `allow-utf-8` keeps the dots, otherwise
underscores), text 1.0.0 for `text/plain;version=1.0.0` (same escaping
rule), text 0.0.4 otherwise (names escaped to underscores, `_created` as gauge
lines, no exemplars, no UNIT).

Every value, exemplar and created timestamp is set before the server starts
and never changes, so a direct scrape and the sidecar's scrape of it agree
whenever they happen. Exits by itself when its parent (the test) dies.
"""

import os
import sys
import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    Summary,
    start_http_server,
)


def main():
    port = int(sys.argv[1])
    parent = os.getppid()
    registry = CollectorRegistry(auto_describe=True)

    requests = Counter(
        "http.server.requests",
        "HTTP requests served, by method and status code.",
        ["http.request.method", "code"],
        registry=registry,
    )
    requests.labels("GET", "200").inc(
        41, exemplar={"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}
    )
    requests.labels("POST", "500").inc(
        # Legacy exemplar label names: prometheus_client escapes metric and
        # label names but not exemplar labels, which Prometheus 2.x reads
        # by the legacy rules (a `.` would fail the whole scrape).
        2, exemplar={"trace_id": "00f067aa0ba902b7", "span_id": "b7ad6b7169203331"}
    )
    # A child with no exemplar: the sidecar must not invent one.
    requests.labels("GET", "404").inc(3)

    duration = Histogram(
        "http.server.request.duration",
        "HTTP request duration.",
        ["http.request.method"],
        unit="seconds",
        buckets=(0.005, 0.05, 0.5, 1.0, 5.0),
        registry=registry,
    )
    for value, trace in [
        (0.003, "a1"),
        (0.04, "b2"),
        (0.2, None),
        (0.7, "d4"),
        (3.5, "e5"),
        (12.0, "f6"),
    ]:
        exemplar = {"trace_id": trace} if trace else None
        duration.labels("GET").observe(value, exemplar=exemplar)
    duration.labels("PUT").observe(0.25)

    jobs = Counter(
        "app_jobs", "Jobs done.", ["queue"], registry=registry
    )
    jobs.labels("default").inc(7, exemplar={"trace_id": "c0ffee"})
    jobs.labels("urgent").inc(0.5)

    processed = Counter(
        "app_processed", "Bytes processed.", unit="bytes", registry=registry
    )
    processed.inc(1048576)

    temperature = Gauge(
        "app_temperature",
        "A gauge with a unit and a label.",
        ["room"],
        unit="celsius",
        registry=registry,
    )
    temperature.labels("lab").set(21.5)
    temperature.labels("freezer").set(-18.25)

    utf8_gauge = Gauge(
        "app.queue.depth", "A UTF-8-named gauge.", ["queue.name"], registry=registry
    )
    utf8_gauge.labels("emails").set(12)

    Info("app_build", "Build information.", registry=registry).info(
        {"version": "1.2.3", "revision": "abc\"quoted\\"}
    )
    Enum(
        "app_state",
        "Lifecycle state.",
        states=["starting", "serving", "draining"],
        registry=registry,
    ).state("serving")
    payload = Summary("app_payload_bytes", "Payload sizes.", registry=registry)
    for size in (100, 250, 4096):
        payload.observe(size)

    start_http_server(port, addr="127.0.0.1", registry=registry)
    while os.getppid() == parent:
        time.sleep(0.2)


if __name__ == "__main__":
    main()
