"""One scrape answer as canonical JSON, for tests/real_world/invisible.rs.

Usage: python3 canonical.py CONTENT-TYPE < BODY > JSON

The body is read by the parser its Content-Type names, each written by
others than the sidecar's authors:

- `application/openmetrics-text`: prometheus_client's strict OpenMetrics
  parser (`prometheus_client.openmetrics.parser`), which refuses a body
  without `# EOF`, exemplars where OpenMetrics forbids them, bad UNITs...;
- `application/vnd.google.protobuf` (delimited `io.prometheus.client.
  MetricFamily`): a decoder below, written from client_model's
  `metrics.proto`, turning each metric into the samples Prometheus'
  `protobufparse.go` makes of it (`_bucket` with `le`, `_sum`, `_count`, a
  `+Inf` bucket where none is written; a native histogram as one record);
- anything else: prometheus_client's text parser (`prometheus_client.parser`).

A body a parser refuses exits with status 1 and the parser's message on
stderr. The output is one JSON object:

    {"format": "openmetrics" | "text" | "protobuf",
     "families": [{"name", "type", "help", "unit"}],
     "samples": [{"family", "name", "labels", "value", "timestamp", "exemplar"}],
     "histograms": [{"family", "name", "labels", "histogram"}]}

Values and exemplar values are Python's `repr` of the float (NaN as "nan"),
timestamps (sample and exemplar) are milliseconds as Prometheus stores them,
`le` and `quantile` label values are the float they name, written as Python's
`repr` (Prometheus 3 normalises them so since 3.0: `1`, `1.0` and `1e0` are
one series). Label sets are objects; the order of samples is the body's.
"""

import json
import math
import struct
import sys


def float_text(value):
    value = float(value)
    if math.isnan(value):
        return "nan"
    return repr(value)


def timestamp_text(timestamp):
    """Milliseconds, as Prometheus stores a sample's or an exemplar's time
    (truncated: `int64(ts * 1000)` in openmetricsparse.go, `UnixMilli` of a
    protobuf Timestamp), so that `1.79638794833782e+09` and
    `1796387948.337820053` are one time."""
    if timestamp is None:
        return None
    seconds = getattr(timestamp, "sec", None)
    if seconds is not None:
        return str(seconds * 1000 + timestamp.nsec // 1000000)
    return str(int(timestamp * 1000))


def normalised_labels(labels):
    out = dict(labels)
    for bound in ("le", "quantile"):
        if bound in out:
            try:
                out[bound] = float_text(float(out[bound]))
            except ValueError:
                pass
    return out


def exemplar_json(exemplar):
    if exemplar is None:
        return None
    return {
        "labels": dict(exemplar.labels),
        "value": float_text(exemplar.value),
        "timestamp": timestamp_text(exemplar.timestamp),
    }


def from_families(kind, families):
    out = {"format": kind, "families": [], "samples": [], "histograms": []}
    for family in families:
        out["families"].append(
            {
                "name": family.name,
                "type": family.type,
                "help": family.documentation,
                "unit": getattr(family, "unit", "") or "",
            }
        )
        for sample in family.samples:
            if getattr(sample, "native_histogram", None) is not None:
                out["histograms"].append(
                    {
                        "family": family.name,
                        "name": sample.name,
                        "labels": dict(sample.labels),
                        "histogram": repr(sample.native_histogram),
                    }
                )
                continue
            out["samples"].append(
                {
                    "family": family.name,
                    "name": sample.name,
                    "labels": normalised_labels(sample.labels),
                    "value": float_text(sample.value),
                    "timestamp": timestamp_text(sample.timestamp),
                    "exemplar": exemplar_json(sample.exemplar),
                }
            )
    return out


# --- delimited protobuf, from client_model's metrics.proto -----------------

TYPES = {
    0: "counter",
    1: "gauge",
    2: "summary",
    3: "untyped",
    4: "histogram",
    5: "gaugehistogram",
}


class Reader:
    def __init__(self, data):
        self.data = data
        self.at = 0

    def done(self):
        return self.at >= len(self.data)

    def varint(self):
        shift = 0
        result = 0
        while True:
            if self.at >= len(self.data):
                raise ValueError("truncated varint")
            byte = self.data[self.at]
            self.at += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise ValueError("varint too long")

    def take(self, length):
        if self.at + length > len(self.data):
            raise ValueError("truncated field")
        chunk = self.data[self.at : self.at + length]
        self.at += length
        return chunk

    def fields(self):
        """(field number, wire type, value): value is an int (varint), the
        bytes (length-delimited) or the 8/4 raw bytes (fixed)."""
        while not self.done():
            key = self.varint()
            number, wire = key >> 3, key & 7
            if wire == 0:
                yield number, wire, self.varint()
            elif wire == 1:
                yield number, wire, self.take(8)
            elif wire == 2:
                yield number, wire, self.take(self.varint())
            elif wire == 5:
                yield number, wire, self.take(4)
            else:
                raise ValueError(f"wire type {wire} of field {number}")


def double(raw):
    return struct.unpack("<d", raw)[0]


def signed64(value):
    return value - (1 << 64) if value >= 1 << 63 else value


def zigzag(value):
    return (value >> 1) ^ -(value & 1)


def label_pair(raw):
    name = value = ""
    for number, _, field in Reader(raw).fields():
        if number == 1:
            name = field.decode("utf-8")
        elif number == 2:
            value = field.decode("utf-8")
    return name, value


def proto_timestamp(raw):
    seconds = nanos = 0
    for number, _, field in Reader(raw).fields():
        if number == 1:
            seconds = signed64(field)
        elif number == 2:
            nanos = field
    return str(seconds * 1000 + nanos // 1000000)


def proto_exemplar(raw):
    labels, value, timestamp = {}, 0.0, None
    for number, _, field in Reader(raw).fields():
        if number == 1:
            name, label_value = label_pair(field)
            labels[name] = label_value
        elif number == 2:
            value = double(field)
        elif number == 3:
            timestamp = proto_timestamp(field)
    return {"labels": labels, "value": float_text(value), "timestamp": timestamp}


def message(raw):
    """A sub-message's fields by number, repeated ones in lists."""
    fields = {}
    for number, wire, field in Reader(raw).fields():
        fields.setdefault(number, []).append((wire, field))
    return fields


def last_double(fields, number, default=0.0):
    return double(fields[number][-1][1]) if number in fields else default


def last_varint(fields, number, default=0):
    return fields[number][-1][1] if number in fields else default


def packed(fields, number, decode):
    values = []
    for wire, field in fields.get(number, []):
        if wire == 2:
            reader = Reader(field)
            if decode == "double":
                while not reader.done():
                    values.append(double(reader.take(8)))
            else:
                while not reader.done():
                    values.append(zigzag(reader.varint()))
        elif decode == "double":
            values.append(double(field))
        else:
            values.append(zigzag(field))
    return values


def spans(fields, number):
    out = []
    for _, raw in fields.get(number, []):
        span = message(raw)
        out.append([zigzag(last_varint(span, 1)), last_varint(span, 2)])
    return out


def from_protobuf(body):
    out = {"format": "protobuf", "families": [], "samples": [], "histograms": []}
    reader = Reader(body)
    while not reader.done():
        family = message(reader.take(reader.varint()))
        name = family[1][-1][1].decode("utf-8") if 1 in family else ""
        kind = TYPES.get(last_varint(family, 3), "unknown")
        out["families"].append(
            {
                "name": name,
                "type": kind,
                "help": family[2][-1][1].decode("utf-8") if 2 in family else "",
                "unit": family[5][-1][1].decode("utf-8") if 5 in family else "",
            }
        )
        for _, raw in family.get(4, []):
            metric = message(raw)
            labels = dict(label_pair(field) for _, field in metric.get(1, []))
            timestamp = None
            if 6 in metric:
                ms = signed64(last_varint(metric, 6))
                timestamp = str(ms)

            def sample(sample_name, value, extra=None, exemplar=None):
                sample_labels = dict(labels)
                sample_labels.update(extra or {})
                out["samples"].append(
                    {
                        "family": name,
                        "name": sample_name,
                        "labels": normalised_labels(sample_labels),
                        "value": float_text(value),
                        "timestamp": timestamp,
                        "exemplar": exemplar,
                    }
                )

            if kind == "counter" and 3 in metric:
                counter = message(metric[3][-1][1])
                exemplar = proto_exemplar(counter[2][-1][1]) if 2 in counter else None
                sample(name, last_double(counter, 1), exemplar=exemplar)
            elif kind == "gauge" and 2 in metric:
                sample(name, last_double(message(metric[2][-1][1]), 1))
            elif kind == "untyped" and 5 in metric:
                sample(name, last_double(message(metric[5][-1][1]), 1))
            elif kind == "summary" and 4 in metric:
                summary = message(metric[4][-1][1])
                for _, quantile_raw in summary.get(3, []):
                    quantile = message(quantile_raw)
                    sample(
                        name,
                        last_double(quantile, 2),
                        {"quantile": float_text(last_double(quantile, 1))},
                    )
                sample(name + "_sum", last_double(summary, 2))
                sample(name + "_count", last_varint(summary, 1))
            elif kind in ("histogram", "gaugehistogram") and 7 in metric:
                histogram = message(metric[7][-1][1])
                count = (
                    last_double(histogram, 4)
                    if 4 in histogram
                    else last_varint(histogram, 1)
                )
                native = any(n in histogram for n in (5, 6, 7, 8, 9, 12))
                if native:
                    out["histograms"].append(
                        {
                            "family": name,
                            "name": name,
                            "labels": dict(labels),
                            "histogram": json.dumps(
                                {
                                    "count": float_text(count),
                                    "sum": float_text(last_double(histogram, 2)),
                                    "schema": zigzag(last_varint(histogram, 5)),
                                    "zero_threshold": float_text(
                                        last_double(histogram, 6)
                                    ),
                                    "zero_count": float_text(
                                        last_double(histogram, 8)
                                        if 8 in histogram
                                        else last_varint(histogram, 7)
                                    ),
                                    "negative_spans": spans(histogram, 9),
                                    "negative_deltas": packed(histogram, 10, "sint"),
                                    "negative_counts": packed(histogram, 11, "double"),
                                    "positive_spans": spans(histogram, 12),
                                    "positive_deltas": packed(histogram, 13, "sint"),
                                    "positive_counts": packed(histogram, 14, "double"),
                                    "exemplars": [
                                        proto_exemplar(raw)
                                        for _, raw in histogram.get(16, [])
                                    ],
                                },
                                sort_keys=True,
                            ),
                        }
                    )
                infinity_written = False
                for _, bucket_raw in histogram.get(3, []):
                    bucket = message(bucket_raw)
                    bound = last_double(bucket, 2)
                    infinity_written |= math.isinf(bound) and bound > 0
                    cumulative = (
                        last_double(bucket, 4) if 4 in bucket else last_varint(bucket, 1)
                    )
                    exemplar = proto_exemplar(bucket[3][-1][1]) if 3 in bucket else None
                    sample(
                        name + "_bucket",
                        cumulative,
                        {"le": float_text(bound)},
                        exemplar,
                    )
                # protobufparse.go: classic buckets end with a +Inf bucket of
                # the count, written or not, when any classic bucket is there
                # (a native-only histogram has no classic series at all when
                # native histograms are ingested).
                if 3 in histogram and not infinity_written:
                    sample(name + "_bucket", count, {"le": float_text(math.inf)})
                if 3 in histogram or not native:
                    sample(name + "_sum", last_double(histogram, 2))
                    sample(name + "_count", count)
    return out


def exact_timestamp(text):
    """prometheus_client's `_parse_timestamp` with one mend: it reads
    `1.79638794833782e+09` (client_golang writes exemplar times so) as
    `Timestamp(1, 796387948)`, cutting the exponent off before its integer
    test; a timestamp with an exponent is read as the float it is. Every
    refusal of the original is kept."""
    from prometheus_client.openmetrics import parser

    joined = "".join(text)
    if "e" in joined.lower() and joined == joined.strip() and "_" not in joined:
        value = float(joined)
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"Invalid timestamp: {joined!r}")
        return value
    return ORIGINAL_PARSE_TIMESTAMP(text)


ORIGINAL_PARSE_TIMESTAMP = None


def main():
    global ORIGINAL_PARSE_TIMESTAMP
    from prometheus_client.openmetrics import parser as openmetrics_parser

    ORIGINAL_PARSE_TIMESTAMP = openmetrics_parser._parse_timestamp
    openmetrics_parser._parse_timestamp = exact_timestamp
    content_type = sys.argv[1]
    body = sys.stdin.buffer.read()
    media_type = content_type.split(";")[0].strip().lower()
    try:
        if media_type == "application/openmetrics-text":
            from prometheus_client.openmetrics.parser import (
                text_string_to_metric_families,
            )

            out = from_families(
                "openmetrics", text_string_to_metric_families(body.decode("utf-8"))
            )
        elif media_type == "application/vnd.google.protobuf":
            out = from_protobuf(body)
        else:
            from prometheus_client.parser import text_string_to_metric_families

            out = from_families(
                "text", text_string_to_metric_families(body.decode("utf-8"))
            )
    except Exception as error:  # noqa: BLE001 - any refusal is the verdict
        print(f"{media_type} refused: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
    json.dump(out, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
