"""A small real prometheus_client application for tests/real_world.rs.

Usage: python3 app.py PORT

Serves every metric type the client library has (counter, gauge, histogram,
summary, info, enum) on 127.0.0.1:PORT with `start_http_server`. Every
labelled child is created at start, so the set of series never changes while
the app runs: only values move. Exits by itself when its parent (the test)
dies, so a test killed without unwinding leaves nothing behind.
"""

import os
import sys
import time

from prometheus_client import (
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    Summary,
    start_http_server,
)

REQUESTS = Counter(
    "app_requests", "Requests handled, by method and code.", ["method", "code"]
)
IN_FLIGHT = Gauge("app_in_flight_requests", "Requests being handled now.")
TEMPERATURE = Gauge(
    "app_temperature_celsius", "A gauge with a label and a negative value.", ["room"]
)
LATENCY = Histogram(
    "app_request_duration_seconds",
    "Request latency.",
    ["route"],
    buckets=(0.005, 0.05, 0.5, 5.0),
)
PAYLOAD = Summary("app_payload_bytes", "Payload sizes.")
BUILD = Info("app_build", "Build information.")
STATE = Enum(
    "app_state", "Lifecycle state.", states=["starting", "serving", "draining"]
)


def main():
    port = int(sys.argv[1])
    parent = os.getppid()
    for method in ("GET", "POST"):
        for code in ("200", "500"):
            REQUESTS.labels(method, code)
    for room in ("lab", "freezer"):
        TEMPERATURE.labels(room)
    for route in ("/", "/api"):
        LATENCY.labels(route)
    BUILD.info({"version": "1.2.3", "revision": "abc\"quoted\\"})
    STATE.state("starting")
    start_http_server(port, addr="127.0.0.1")
    STATE.state("serving")
    tick = 0
    while os.getppid() == parent:
        tick += 1
        REQUESTS.labels("GET", "200").inc()
        if tick % 7 == 0:
            REQUESTS.labels("POST", "500").inc()
        IN_FLIGHT.set(tick % 5)
        TEMPERATURE.labels("lab").set(21.5 + tick % 3)
        TEMPERATURE.labels("freezer").set(-18.25)
        LATENCY.labels("/" if tick % 2 else "/api").observe((tick % 10) / 10.0)
        PAYLOAD.observe(100 + tick % 50)
        time.sleep(0.1)


if __name__ == "__main__":
    main()
