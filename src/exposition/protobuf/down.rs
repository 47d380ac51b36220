//! Conversion down: the metrics of a protobuf family as text 0.0.4 sample
//! lines, written as client_golang's text encoder (prometheus/common
//! `expfmt.MetricFamilyToText`) writes them, plus the container label:
//!
//! - labels in message order, then `le`/`quantile`, then the container
//!   label (the text merge also appends it last); a label named like the
//!   container label becomes `exported_<label>`;
//! - values and bounds as Go's `strconv.FormatFloat(v, 'g', -1, 64)`, with
//!   `+Inf`, `-Inf`, `NaN`;
//! - a summary is its quantiles, `_sum`, `_count`; a histogram its buckets,
//!   an added `le="+Inf"` bucket holding the sample count when the message
//!   has none, `_sum`, `_count`. A native-only histogram therefore becomes
//!   `_bucket{le="+Inf"}`, `_sum` and `_count`; its native buckets cannot be
//!   written in text 0.0.4 and are dropped;
//! - a gauge histogram is written as a histogram (client_golang refuses it;
//!   Prometheus names its series the same way);
//! - float counts (`*_count_float`) are used when positive, as Prometheus'
//!   own protobuf parser does (client_golang's encoder would write 0);
//! - the timestamp when the message has one other than 0 (which Prometheus'
//!   protobuf parser reads as none, and client_golang never sends); exemplars and created
//!   timestamps are dropped (0.0.4 has no place for them).
//!
//! A metric without the value field its type names reads as 0, as in
//! Prometheus' parser.

use super::read::{histogram_field as h, metric_field, Metric, MetricType};
use super::wire::{Fields, WireType};
use super::write::{for_each_label, label_pair};
use crate::exposition::openmetrics::{
    takes_exemplar, write_seconds_of_millis, Check, CheckedSample, GroupHash, OpenMetricsType,
    Suffix, EXEMPLAR_LABEL_CHARACTERS,
};
use crate::exposition::text::escape_label_value;

/// The text label added to every line, escaped: `name="value"`.
pub(in crate::exposition) struct TextTarget<'a> {
    pub(in crate::exposition) name: &'a [u8],
    pub(in crate::exposition) pair: &'a [u8],
}

/// Writes the sample lines of `metrics` of a family named `name`.
/// `labels` is scratch for one metric's label text. `line_done` is handed
/// `out` after every line: a merge in pieces hands it on there when it is
/// full. A metric is bounded by its body, its text is not (each line
/// repeats the metric's labels: one histogram of 4,096 buckets and a
/// 16 KiB label is 64 MiB of text), so pieces end inside a metric too.
#[allow(clippy::too_many_arguments)]
pub(in crate::exposition) fn write_metrics(
    body: &[u8],
    name: &[u8],
    metric_type: MetricType,
    metrics: &[Metric],
    target: Option<&TextTarget<'_>>,
    labels: &mut Vec<u8>,
    out: &mut Vec<u8>,
    line_done: &mut impl FnMut(&mut Vec<u8>),
) {
    for metric in metrics {
        labels.clear();
        label_text(body, metric, target, labels);
        let line = Line {
            name,
            labels,
            target: target.map(|t| t.pair),
            // Prometheus reads a protobuf timestamp of 0 as none.
            timestamp: timestamp_ms(body, metric).filter(|&ms| ms != 0),
        };
        let value_field = |number| value_message(body, metric, number);
        match metric_type {
            MetricType::Counter | MetricType::Gauge | MetricType::Untyped => {
                let number = match metric_type {
                    MetricType::Counter => metric_field::COUNTER,
                    MetricType::Gauge => metric_field::GAUGE,
                    _ => metric_field::UNTYPED,
                };
                let value = value_field(number).map_or(0.0, |(s, e)| double_field(body, s, e, 1));
                line.write(b"", None, value, out, line_done);
            }
            MetricType::Summary => {
                let (s, e) = value_field(metric_field::SUMMARY).unwrap_or((0, 0));
                let mut fields = Fields::new(body, s, e);
                while let Some((number, start, end)) = next_len_field(&mut fields) {
                    if number == 3 {
                        let quantile = double_field(body, start, end, 1);
                        let value = double_field(body, start, end, 2);
                        line.write(b"", Some((b"quantile", quantile)), value, out, line_done);
                    }
                }
                line.write(b"_sum", None, double_field(body, s, e, 2), out, line_done);
                line.write(
                    b"_count",
                    None,
                    varint_field(body, s, e, 1) as f64,
                    out,
                    line_done,
                );
            }
            MetricType::Histogram | MetricType::GaugeHistogram => {
                let (s, e) = value_field(metric_field::HISTOGRAM).unwrap_or((0, 0));
                let count = prefer_float(
                    double_field(body, s, e, h::SAMPLE_COUNT_FLOAT),
                    varint_field(body, s, e, h::SAMPLE_COUNT),
                );
                let mut infinity_seen = false;
                let mut fields = Fields::new(body, s, e);
                while let Some((number, start, end)) = next_len_field(&mut fields) {
                    if number == h::BUCKET {
                        let bound = double_field(body, start, end, 2);
                        let cumulative = prefer_float(
                            double_field(body, start, end, 4),
                            varint_field(body, start, end, 1),
                        );
                        line.write(b"_bucket", Some((b"le", bound)), cumulative, out, line_done);
                        infinity_seen |= bound == f64::INFINITY;
                    }
                }
                if !infinity_seen {
                    line.write(
                        b"_bucket",
                        Some((b"le", f64::INFINITY)),
                        count,
                        out,
                        line_done,
                    );
                }
                line.write(
                    b"_sum",
                    None,
                    double_field(body, s, e, h::SAMPLE_SUM),
                    out,
                    line_done,
                );
                line.write(b"_count", None, count, out, line_done);
            }
        }
    }
}

/// Prometheus' rule: the float field overrides the integer one if positive.
fn prefer_float(float: f64, integer: u64) -> f64 {
    if float > 0.0 {
        float
    } else {
        integer as f64
    }
}

struct Line<'a> {
    name: &'a [u8],
    /// `a="1",b="2"` (escaped, renamed), without braces.
    labels: &'a [u8],
    target: Option<&'a [u8]>,
    timestamp: Option<i64>,
}

impl Line<'_> {
    fn write(
        &self,
        suffix: &[u8],
        bound: Option<(&[u8], f64)>,
        value: f64,
        out: &mut Vec<u8>,
        line_done: &mut impl FnMut(&mut Vec<u8>),
    ) {
        out.extend_from_slice(self.name);
        out.extend_from_slice(suffix);
        let mut separator = b'{';
        if !self.labels.is_empty() {
            out.push(separator);
            out.extend_from_slice(self.labels);
            separator = b',';
        }
        if let Some((label, bound)) = bound {
            out.push(separator);
            out.extend_from_slice(label);
            out.extend_from_slice(b"=\"");
            write_go_float(bound, out);
            out.push(b'"');
            separator = b',';
        }
        if let Some(target) = self.target {
            out.push(separator);
            out.extend_from_slice(target);
            separator = b',';
        }
        if separator == b',' {
            out.push(b'}');
        }
        out.push(b' ');
        write_go_float(value, out);
        if let Some(timestamp) = self.timestamp {
            out.push(b' ');
            out.extend_from_slice(itoa::Buffer::new().format(timestamp).as_bytes());
        }
        out.push(b'\n');
        line_done(out);
    }
}

/// `a="1",b="2"`: the metric's labels escaped for 0.0.4, the one named like
/// the target renamed `exported_...`.
fn label_text(body: &[u8], metric: &Metric, target: Option<&TextTarget<'_>>, out: &mut Vec<u8>) {
    let mut first = true;
    for_each_label(body, metric, |name, value| {
        if !first {
            out.push(b',');
        }
        first = false;
        match target {
            Some(target) if name == target.name => {
                let mut prefixes = 1;
                while has_exported_label(body, metric, target.name, prefixes) {
                    prefixes += 1;
                }
                for _ in 0..prefixes {
                    out.extend_from_slice(b"exported_");
                }
                out.extend_from_slice(name);
            }
            _ => out.extend_from_slice(name),
        }
        out.extend_from_slice(b"=\"");
        escape_label_value(value, out);
        out.push(b'"');
    });
}

/// Whether the metric has a label `exported_` × `prefixes` + `name`.
fn has_exported_label(body: &[u8], metric: &Metric, name: &[u8], prefixes: usize) -> bool {
    let mut found = false;
    for_each_label(body, metric, |label, _| {
        let mut rest = label;
        for _ in 0..prefixes {
            match rest.strip_prefix(b"exported_") {
                Some(tail) => rest = tail,
                None => return,
            }
        }
        found |= rest == name;
    });
    found
}

/// The `# TYPE` word of a protobuf type in text 0.0.4.
pub(in crate::exposition) fn text_type(metric_type: MetricType) -> &'static str {
    match metric_type {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Summary => "summary",
        MetricType::Untyped => "untyped",
        MetricType::Histogram | MetricType::GaugeHistogram => "histogram",
    }
}

/// A help string as expfmt writes it: `\\` and `\n` escaped.
pub(in crate::exposition) fn escape_help(raw: &[u8], out: &mut Vec<u8>) {
    for &c in raw {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(c),
        }
    }
}

/// The escaped `name="value"` of a text target.
pub(in crate::exposition) fn text_target_pair(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(name);
    out.extend_from_slice(b"=\"");
    escape_label_value(value, out);
    out.push(b'"');
}

fn next_len_field(fields: &mut Fields<'_>) -> Option<(u32, usize, usize)> {
    while !fields.is_done() {
        let tag = fields.tag().ok()?;
        if tag.wire == WireType::Len {
            let (start, end) = fields.len_delimited().ok()?;
            return Some((tag.number, start, end));
        }
        fields.skip(tag).ok()?;
    }
    None
}

/// The content of the metric's last length-delimited field `number`.
fn value_message(body: &[u8], metric: &Metric, number: u32) -> Option<(usize, usize)> {
    let mut fields = Fields::new(body, metric.labels_end as usize, metric.end as usize);
    let mut found = None;
    while let Some((n, start, end)) = next_len_field(&mut fields) {
        if n == number {
            found = Some((start, end));
        }
    }
    found
}

fn timestamp_ms(body: &[u8], metric: &Metric) -> Option<i64> {
    let mut fields = Fields::new(body, metric.labels_end as usize, metric.end as usize);
    let mut found = None;
    while !fields.is_done() {
        let tag = fields.tag().ok()?;
        if tag.number == metric_field::TIMESTAMP_MS && tag.wire == WireType::Varint {
            found = Some(fields.varint().ok()? as i64);
        } else {
            fields.skip(tag).ok()?;
        }
    }
    found
}

/// The last double field `number` of a message (0 when absent).
fn double_field(body: &[u8], start: usize, end: usize, number: u32) -> f64 {
    let mut fields = Fields::new(body, start, end);
    let mut value = 0.0;
    while !fields.is_done() {
        let Ok(tag) = fields.tag() else { break };
        if tag.number == number && tag.wire == WireType::Fixed64 {
            match fields.double() {
                Ok(v) => value = v,
                Err(_) => break,
            }
        } else if fields.skip(tag).is_err() {
            break;
        }
    }
    value
}

/// The last varint field `number` of a message (0 when absent).
fn varint_field(body: &[u8], start: usize, end: usize, number: u32) -> u64 {
    let mut fields = Fields::new(body, start, end);
    let mut value = 0;
    while !fields.is_done() {
        let Ok(tag) = fields.tag() else { break };
        if tag.number == number && tag.wire == WireType::Varint {
            match fields.varint() {
                Ok(v) => value = v,
                Err(_) => break,
            }
        } else if fields.skip(tag).is_err() {
            break;
        }
    }
    value
}

/// Appends `value` as expfmt's `writeFloat` does: `strconv.AppendFloat(value,
/// 'g', -1, 64)` after its special cases. That is the shortest digits that
/// read back to the same double, in exponent form (`3.626995e+07`, `1e-05`,
/// at least two exponent digits) when the decimal exponent is below -4 or at
/// least 6 (strconv/ftoa.go: shortest `%g` decides with precision 6).
pub(in crate::exposition) fn write_go_float(value: f64, out: &mut Vec<u8>) {
    if value.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 { b"+Inf" } else { b"-Inf" });
        return;
    }
    if value == 0.0 {
        // expfmt writes `0` for both zeros (f == 0 is true for -0).
        out.push(b'0');
        return;
    }
    // Rust's `{:e}` gives the same shortest round-trip digits as Go:
    // `[-]d[.ddd]e[-]x`.
    let mut buffer = StackBuffer::default();
    let _ = std::fmt::Write::write_fmt(&mut buffer, format_args!("{value:e}"));
    let text = buffer.as_bytes();
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let e = text.iter().position(|&c| c == b'e').unwrap_or(text.len());
    let exponent: i32 = std::str::from_utf8(&text[(e + 1).min(text.len())..])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut digits = [0u8; 32];
    let mut count = 0;
    for &c in &text[..e] {
        if c.is_ascii_digit() && count < digits.len() {
            digits[count] = c;
            count += 1;
        }
    }
    let digits = &digits[..count];
    if negative {
        out.push(b'-');
    }
    if go_exponent_form(exponent) {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exponent < 0 { b'-' } else { b'+' });
        let magnitude = exponent.unsigned_abs();
        if magnitude < 10 {
            out.push(b'0');
        }
        out.extend_from_slice(itoa::Buffer::new().format(magnitude).as_bytes());
    } else if exponent < 0 {
        out.extend_from_slice(b"0.");
        for _ in 0..(-exponent - 1) {
            out.push(b'0');
        }
        out.extend_from_slice(digits);
    } else {
        let integer = exponent as usize + 1;
        if digits.len() <= integer {
            out.extend_from_slice(digits);
            for _ in digits.len()..integer {
                out.push(b'0');
            }
        } else {
            out.extend_from_slice(&digits[..integer]);
            out.push(b'.');
            out.extend_from_slice(&digits[integer..]);
        }
    }
}

fn go_exponent_form(exponent: i32) -> bool {
    !(-4..6).contains(&exponent)
}

struct StackBuffer {
    bytes: [u8; 40],
    len: usize,
}

impl Default for StackBuffer {
    fn default() -> StackBuffer {
        StackBuffer {
            bytes: [0; 40],
            len: 0,
        }
    }
}

impl StackBuffer {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl std::fmt::Write for StackBuffer {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.bytes.len() {
            return Err(std::fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// One OpenMetrics sample of a protobuf metric.
struct OpenMetricsSample {
    suffix: &'static [u8],
    /// `le` or `quantile` and its value.
    bound: Option<(&'static [u8], f64)>,
    value: f64,
    /// The `Exemplar` message, where OpenMetrics 1.0 may carry it.
    exemplar: Option<(usize, usize)>,
}

/// The samples a protobuf metric of `metric_type` is written as in an
/// OpenMetrics family of `family_type` (a conflict may have made it
/// `unknown`), in order: what expfmt's `MetricFamilyToOpenMetrics` writes,
/// with `_created` from the created timestamp and exemplars.
fn openmetrics_samples(
    body: &[u8],
    metric_type: MetricType,
    family_type: OpenMetricsType,
    metric: &Metric,
    mut each: impl FnMut(OpenMetricsSample),
) {
    let value_field = |number| value_message(body, metric, number);
    let simple = |value: f64, each: &mut dyn FnMut(OpenMetricsSample)| {
        each(OpenMetricsSample {
            suffix: b"",
            bound: None,
            value,
            exemplar: None,
        })
    };
    let created = |message: Option<(usize, usize)>, number: u32| {
        let (s, e) = message?;
        let (ts_start, ts_end) = len_field(body, s, e, number)?;
        Some(timestamp_seconds(body, ts_start, ts_end))
    };
    match metric_type {
        MetricType::Counter => {
            let message = value_field(metric_field::COUNTER);
            let value = message.map_or(0.0, |(s, e)| double_field(body, s, e, 1));
            if family_type != OpenMetricsType::Counter {
                return simple(value, &mut each);
            }
            each(OpenMetricsSample {
                suffix: b"_total",
                bound: None,
                value,
                exemplar: message.and_then(|(s, e)| len_field(body, s, e, 2)),
            });
            if let Some(seconds) = created(message, 3) {
                each(OpenMetricsSample {
                    suffix: b"_created",
                    bound: None,
                    value: seconds,
                    exemplar: None,
                });
            }
        }
        MetricType::Gauge | MetricType::Untyped => {
            let number = if metric_type == MetricType::Gauge {
                metric_field::GAUGE
            } else {
                metric_field::UNTYPED
            };
            let value = value_field(number).map_or(0.0, |(s, e)| double_field(body, s, e, 1));
            simple(value, &mut each);
        }
        MetricType::Summary => {
            let message = value_field(metric_field::SUMMARY);
            let (s, e) = message.unwrap_or((0, 0));
            let mut fields = Fields::new(body, s, e);
            while let Some((number, start, end)) = next_len_field(&mut fields) {
                if number == 3 {
                    each(OpenMetricsSample {
                        suffix: b"",
                        bound: Some((b"quantile", double_field(body, start, end, 1))),
                        value: double_field(body, start, end, 2),
                        exemplar: None,
                    });
                }
            }
            each(OpenMetricsSample {
                suffix: b"_sum",
                bound: None,
                value: double_field(body, s, e, 2),
                exemplar: None,
            });
            each(OpenMetricsSample {
                suffix: b"_count",
                bound: None,
                value: varint_field(body, s, e, 1) as f64,
                exemplar: None,
            });
            if let Some(seconds) = created(message, 4) {
                each(OpenMetricsSample {
                    suffix: b"_created",
                    bound: None,
                    value: seconds,
                    exemplar: None,
                });
            }
        }
        MetricType::Histogram | MetricType::GaugeHistogram => {
            let gauge = family_type == OpenMetricsType::GaugeHistogram;
            let message = value_field(metric_field::HISTOGRAM);
            let (s, e) = message.unwrap_or((0, 0));
            let count = prefer_float(
                double_field(body, s, e, h::SAMPLE_COUNT_FLOAT),
                varint_field(body, s, e, h::SAMPLE_COUNT),
            );
            let mut infinity_seen = false;
            let mut fields = Fields::new(body, s, e);
            while let Some((number, start, end)) = next_len_field(&mut fields) {
                if number == h::BUCKET {
                    let bound = double_field(body, start, end, 2);
                    infinity_seen |= bound == f64::INFINITY;
                    each(OpenMetricsSample {
                        suffix: b"_bucket",
                        bound: Some((b"le", bound)),
                        value: prefer_float(
                            double_field(body, start, end, 4),
                            varint_field(body, start, end, 1),
                        ),
                        exemplar: len_field(body, start, end, 3),
                    });
                }
            }
            if !infinity_seen {
                each(OpenMetricsSample {
                    suffix: b"_bucket",
                    bound: Some((b"le", f64::INFINITY)),
                    value: count,
                    exemplar: None,
                });
            }
            let (count_suffix, sum_suffix): (&'static [u8], &'static [u8]) = if gauge {
                (b"_gcount", b"_gsum")
            } else {
                (b"_count", b"_sum")
            };
            each(OpenMetricsSample {
                suffix: count_suffix,
                bound: None,
                value: count,
                exemplar: None,
            });
            each(OpenMetricsSample {
                suffix: sum_suffix,
                bound: None,
                value: double_field(body, s, e, h::SAMPLE_SUM),
                exemplar: None,
            });
            if !gauge {
                if let Some(seconds) = created(message, h::CREATED_TIMESTAMP) {
                    each(OpenMetricsSample {
                        suffix: b"_created",
                        bound: None,
                        value: seconds,
                        exemplar: None,
                    });
                }
            }
        }
    }
}

/// Feeds a protobuf metric's OpenMetrics samples to the family's check.
pub(in crate::exposition) fn check_openmetrics(
    body: &[u8],
    metric_type: MetricType,
    family_type: OpenMetricsType,
    metric: &Metric,
    source: u32,
    check: &mut Check,
) {
    let mut group = GroupHash::new();
    group.add(b"", &source.to_le_bytes());
    for_each_label(body, metric, |name, value| group.add(name, value));
    let group = group.finish();
    let timestamp = timestamp_ms(body, metric)
        .filter(|&ms| ms != 0)
        .map(super::super::openmetrics::stamp_of_millis);
    openmetrics_samples(body, metric_type, family_type, metric, |sample| {
        check.sample(&CheckedSample {
            suffix: Suffix::of(sample.suffix),
            group,
            bound: sample.bound.map(|(_, bound)| bound),
            value: sample.value,
            timestamp,
            has_state_label: false,
        });
    });
}

/// Writes a protobuf metric's OpenMetrics sample lines under the family
/// name `name` (only those with suffix `only`, when given, and then no
/// exemplars: see `openmetrics.rs`). `labels` is scratch; `line_done` is
/// handed `out` after every line, as in [`write_metrics`].
#[allow(clippy::too_many_arguments)]
pub(in crate::exposition) fn write_openmetrics(
    body: &[u8],
    name: &[u8],
    metric_type: MetricType,
    family_type: OpenMetricsType,
    metric: &Metric,
    target: Option<&TextTarget<'_>>,
    only: Option<&[u8]>,
    labels: &mut Vec<u8>,
    out: &mut Vec<u8>,
    line_done: &mut impl FnMut(&mut Vec<u8>),
) {
    labels.clear();
    label_text(body, metric, target, labels);
    let timestamp = timestamp_ms(body, metric).filter(|&ms| ms != 0);
    openmetrics_samples(body, metric_type, family_type, metric, |sample| {
        if only.is_some_and(|only| only != sample.suffix) {
            return;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(sample.suffix);
        let mut separator = b'{';
        if !labels.is_empty() {
            out.push(separator);
            out.extend_from_slice(labels);
            separator = b',';
        }
        if let Some((label, bound)) = sample.bound {
            out.push(separator);
            out.extend_from_slice(label);
            out.extend_from_slice(b"=\"");
            write_go_float(bound, out);
            out.push(b'"');
            separator = b',';
        }
        if let Some(target) = target {
            out.push(separator);
            out.extend_from_slice(target.pair);
            separator = b',';
        }
        if separator == b',' {
            out.push(b'}');
        }
        out.push(b' ');
        write_go_float(sample.value, out);
        if let Some(timestamp) = timestamp {
            out.push(b' ');
            write_seconds_of_millis(timestamp, out);
        }
        let exemplar = sample
            .exemplar
            .filter(|_| only.is_none() && takes_exemplar(family_type, sample.suffix));
        if let Some((start, end)) = exemplar {
            write_exemplar(body, start, end, out);
        }
        out.push(b'\n');
        line_done(out);
    });
}

/// ` # {labels} value [timestamp]` of an `Exemplar` message, unless its
/// labels are longer than OpenMetrics allows or a value holds a quote
/// (then nothing).
fn write_exemplar(body: &[u8], start: usize, end: usize, out: &mut Vec<u8>) {
    let mut characters = 0;
    let mut fields = Fields::new(body, start, end);
    while let Some((number, s, e)) = next_len_field(&mut fields) {
        if number == 1 {
            let (name, value) = label_pair(body, s, e);
            if value.contains(&b'"') {
                // Written `\"`, which prometheus_client reads as the end of
                // a quoted part (see `exemplar_fits` in merge.rs).
                return;
            }
            characters += utf8_characters(name) + utf8_characters(value);
        }
    }
    if characters > EXEMPLAR_LABEL_CHARACTERS {
        return;
    }
    out.extend_from_slice(b" # {");
    let mut first = true;
    let mut fields = Fields::new(body, start, end);
    while let Some((number, s, e)) = next_len_field(&mut fields) {
        if number == 1 {
            let (name, value) = label_pair(body, s, e);
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(name);
            out.extend_from_slice(b"=\"");
            escape_label_value(value, out);
            out.push(b'"');
        }
    }
    out.extend_from_slice(b"} ");
    write_go_float(double_field(body, start, end, 2), out);
    if let Some((ts_start, ts_end)) = len_field(body, start, end, 3) {
        out.push(b' ');
        let seconds = varint_field(body, ts_start, ts_end, 1) as i64;
        let nanos = varint_field(body, ts_start, ts_end, 2) as i64;
        write_seconds_and_nanos(seconds, nanos, out);
    }
}

fn utf8_characters(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b & 0xc0 != 0x80).count()
}

/// `seconds.nanos` as a decimal (trailing zeros of the fraction dropped).
fn write_seconds_and_nanos(seconds: i64, nanos: i64, out: &mut Vec<u8>) {
    let nanos = nanos.clamp(0, 999_999_999);
    out.extend_from_slice(itoa::Buffer::new().format(seconds).as_bytes());
    if nanos > 0 {
        let mut digits = *b"000000000";
        let text = itoa::Buffer::new().format(nanos).as_bytes().to_vec();
        digits[9 - text.len()..].copy_from_slice(&text);
        let used = 9 - digits.iter().rev().take_while(|&&d| d == b'0').count();
        out.push(b'.');
        out.extend_from_slice(&digits[..used]);
    }
}

/// A `google.protobuf.Timestamp` as float seconds.
fn timestamp_seconds(body: &[u8], start: usize, end: usize) -> f64 {
    let seconds = varint_field(body, start, end, 1) as i64;
    let nanos = varint_field(body, start, end, 2) as i64;
    seconds as f64 + nanos as f64 / 1e9
}

/// The content of a message's last length-delimited field `number`.
fn len_field(body: &[u8], start: usize, end: usize, number: u32) -> Option<(usize, usize)> {
    let mut fields = Fields::new(body, start, end);
    let mut found = None;
    while let Some((n, s, e)) = next_len_field(&mut fields) {
        if n == number {
            found = Some((s, e));
        }
    }
    found
}
