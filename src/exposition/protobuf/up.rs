//! Conversion up: a family of a text body (0.0.4 or OpenMetrics, as the
//! text index gives it: names and types already in their 0.0.4 form) as
//! `Metric` messages of a `MetricFamily`, each with the container label.
//!
//! - counter, gauge, untyped: one metric per sample;
//! - histogram and summary: the samples are grouped by label set (without
//!   `le`/`quantile`; label order does not matter), in order of each
//!   group's first sample. `_bucket` samples become buckets in input order
//!   (the `+Inf` bucket included, so Prometheus reads back exactly the text's
//!   value); `_sum` and `_count` fill their fields. A count that is not a
//!   whole number goes to the `_float` field of a histogram; a summary has
//!   none, so its count is rounded. A group without `_count` takes the
//!   `+Inf` bucket's value as its count; one without `_sum` reads back a sum
//!   of 0 (protobuf has no absent sum);
//! - the first timestamp of a group is the metric's; OpenMetrics seconds
//!   become milliseconds;
//! - values: NaN is written with the bits Go's `math.NaN()` has, so a
//!   Prometheus sees the same value it parses from text;
//! - from an OpenMetrics body: a counter's and a bucket's exemplar go to
//!   their `exemplar` fields, and a metric's `_created` sample (on the line
//!   right after its `_total`, `_sum` or `_count`, where producers write it)
//!   to its `created_timestamp`. The `_created` samples are also written as
//!   their own gauge family, as in text: Prometheus stores them as series
//!   when it reads OpenMetrics, and a direct scrape would have them.
//!
//! Nothing is allocated per sample: buffers are kept in [`UpConverter`].

use super::read::{histogram_field as h, metric_field, MetricType};
use super::wire::{put_bytes, put_double, put_tag, put_uint, put_varint, WireType};
use super::write::{put_label_pair_field, Target};
use crate::exposition::escaping::escape_name;
use crate::exposition::labels::LabelIter;
use crate::exposition::negotiate::Escaping;
use crate::exposition::parse::{ExemplarSpans, IndexView, Kind, Sample, SampleFlags, Span};
use crate::exposition::text::{
    hash_name, om_millis, om_timestamp_millis, parse_int_timestamp, unescape_into, NameTable,
    ValueForm,
};

/// Go's `math.NaN()`: what Prometheus' text parser produces for `NaN`.
const GO_NAN: u64 = 0x7FF8_0000_0000_0001;

/// The text type a protobuf type is written as (a gauge histogram's series
/// are a histogram's).
pub(in crate::exposition) fn metric_kind(metric_type: MetricType) -> Kind {
    match metric_type {
        MetricType::Counter => Kind::Counter,
        MetricType::Gauge => Kind::Gauge,
        MetricType::Summary => Kind::Summary,
        MetricType::Untyped => Kind::Untyped,
        MetricType::Histogram | MetricType::GaugeHistogram => Kind::Histogram,
    }
}

pub(in crate::exposition) fn metric_type(kind: Kind) -> MetricType {
    match kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
        Kind::Histogram => MetricType::Histogram,
        Kind::Summary => MetricType::Summary,
        Kind::Untyped => MetricType::Untyped,
    }
}

/// Decodes a raw HELP text (0.0.4 escapes `\\` and `\n`; OpenMetrics also
/// `\"`; any other backslash means itself) into the help string.
pub(in crate::exposition) fn unescape_help(raw: &[u8], openmetrics: bool, out: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        match (raw[i], raw.get(i + 1)) {
            (b'\\', Some(b'\\')) => {
                out.push(b'\\');
                i += 2;
            }
            (b'\\', Some(b'n')) => {
                out.push(b'\n');
                i += 2;
            }
            (b'\\', Some(b'"')) if openmetrics => {
                out.push(b'"');
                i += 2;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
}

/// What a text sample is within its histogram or summary group.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Bound,
    Sum,
    Count,
    /// A sample named like the family (summary quantiles).
    Plain,
}

#[derive(Clone, Copy)]
struct Member {
    group: u32,
    /// Position in the family: keeps input order within a group.
    order: u32,
    role: Role,
    sample: Sample,
}

struct Group {
    /// In `UpConverter::keys`.
    key: Span,
}

/// Scratch of the conversion, reused from family to family.
#[derive(Default)]
pub(in crate::exposition) struct UpConverter {
    groups: Vec<Group>,
    table: NameTable,
    members: Vec<Member>,
    keys: Vec<u8>,
    key: Vec<u8>,
    pairs: Vec<(Span, Span)>,
    names: Vec<u8>,
    metric: Vec<u8>,
    value: Vec<u8>,
    unescaped: Vec<u8>,
    number: Vec<u8>,
    sample_name: Vec<u8>,
    /// An `Exemplar` or `Timestamp` message being built.
    exemplar: Vec<u8>,
    /// How label names are written (protobuf quotes nothing: under
    /// `allow-utf-8` they are as the source wrote them).
    pub(in crate::exposition) escaping: Escaping,
}

/// A text body's index, as the conversion reads it.
#[derive(Clone, Copy)]
pub(in crate::exposition) struct TextSource<'a> {
    pub(in crate::exposition) view: IndexView<'a>,
}

impl TextSource<'_> {
    fn timestamp(&self, sample: &Sample) -> Option<i64> {
        if sample.timestamp.is_empty() {
            return None;
        }
        let text = sample.timestamp.of(self.view.body());
        if self.view.is_openmetrics() {
            // What a direct scrape stores (Go's `int64(ts * 1000)`, i64::MIN
            // past int64 milliseconds), which `timestamp_ms` carries as is.
            om_millis(text)
        } else {
            parse_int_timestamp(text)
        }
    }

    fn value(&self, sample: &Sample) -> f64 {
        match sample.value_form {
            ValueForm::NaN => f64::from_bits(GO_NAN),
            ValueForm::PosInf => f64::INFINITY,
            ValueForm::NegInf => f64::NEG_INFINITY,
            ValueForm::Decimal => parse_number(sample.value.of(self.view.body())),
        }
    }
}

/// A number the text parser validated (decimal, or NaN/Inf in any case).
fn parse_number(text: &[u8]) -> f64 {
    match crate::exposition::text::value_form(text) {
        Some(ValueForm::NaN) => f64::from_bits(GO_NAN),
        Some(ValueForm::PosInf) => f64::INFINITY,
        Some(ValueForm::NegInf) => f64::NEG_INFINITY,
        _ => std::str::from_utf8(text)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0),
    }
}

/// A whole, non-negative number that fits a u64, or None.
fn as_count(value: f64) -> Option<u64> {
    ((0.0..18_446_744_073_709_551_616.0).contains(&value) && value.trunc() == value)
        .then_some(value as u64)
}

/// Where converted metrics go, one `Metric` message at a time.
pub(in crate::exposition) trait MetricSink {
    fn metric(&mut self, message: &[u8]);
}

/// Appends each as a `metric` field (`4: Metric`) of its family.
impl MetricSink for Vec<u8> {
    fn metric(&mut self, message: &[u8]) {
        put_bytes(4, message, self);
    }
}

impl UpConverter {
    /// Appends the `metric` fields (`4: Metric`) of `family` to `out`.
    pub(in crate::exposition) fn metrics(
        &mut self,
        source: TextSource<'_>,
        family: u32,
        target: Option<Target<'_>>,
        out: &mut impl MetricSink,
    ) {
        let kind = source.view.family_kind(family);
        self.metrics_as(source, family, kind, target, out);
    }

    /// `metrics` written as `kind`: the family's own, or `untyped` when a
    /// conflict downgraded a simple family (values move to that field).
    pub(in crate::exposition) fn metrics_as(
        &mut self,
        source: TextSource<'_>,
        family: u32,
        kind: Kind,
        target: Option<Target<'_>>,
        out: &mut impl MetricSink,
    ) {
        match kind {
            Kind::Counter | Kind::Gauge | Kind::Untyped => {
                let number = match kind {
                    Kind::Counter => metric_field::COUNTER,
                    Kind::Gauge => metric_field::GAUGE,
                    _ => metric_field::UNTYPED,
                };
                let created_name = (kind == Kind::Counter && source.view.is_openmetrics())
                    .then(|| source.view.family(family).name.strip_suffix(b"_total"))
                    .flatten();
                for sample in source.view.samples(family) {
                    self.metric.clear();
                    self.labels(source, &sample, None, target);
                    // Gauge, Counter, Untyped: value = 1; a counter's
                    // exemplar = 2 and created_timestamp = 3.
                    self.value.clear();
                    put_double(1, source.value(&sample), &mut self.value);
                    if kind == Kind::Counter {
                        if let Some(exemplar) = source.view.exemplar(&sample) {
                            self.exemplar_field(source, &exemplar, 2);
                        }
                        if let Some(base) = created_name {
                            self.created_field(source, &sample, base, 3);
                        }
                    }
                    put_tag(number, WireType::Len, &mut self.metric);
                    put_varint(self.value.len() as u64, &mut self.metric);
                    self.metric.extend_from_slice(&self.value);
                    if let Some(ms) = source.timestamp(&sample) {
                        put_uint(metric_field::TIMESTAMP_MS, ms as u64, &mut self.metric);
                    }
                    out.metric(&self.metric);
                }
            }
            Kind::Histogram | Kind::Summary => self.grouped(source, family, kind, target, out),
        }
    }

    /// Appends to `self.value` field `number` holding the `Exemplar` of an
    /// OpenMetrics exemplar: labels = 1, value = 2, timestamp = 3.
    fn exemplar_field(&mut self, source: TextSource<'_>, exemplar: &ExemplarSpans, number: u32) {
        let body = source.view.body();
        self.exemplar.clear();
        for label in LabelIter::new(exemplar.labels.of(body)) {
            self.sample_name.clear();
            if label.quoted {
                self.unescaped.clear();
                unescape_into(label.raw_name, &mut self.unescaped);
                escape_name(&self.unescaped, self.escaping, true, &mut self.sample_name);
            } else {
                self.sample_name.extend_from_slice(label.raw_name);
            }
            let name = &self.sample_name;
            self.unescaped.clear();
            unescape_into(label.value, &mut self.unescaped);
            put_label_pair_field(name, &self.unescaped, &mut self.exemplar);
        }
        put_double(2, parse_number(exemplar.value.of(body)), &mut self.exemplar);
        if !exemplar.timestamp.is_empty() {
            put_timestamp(3, exemplar.timestamp.of(body), &mut self.exemplar);
        }
        put_bytes(number, &self.exemplar, &mut self.value);
    }

    /// Appends to `self.value` field `number` holding the created timestamp
    /// of the `<base>_created` line after `sample`, if there is one.
    fn created_field(&mut self, source: TextSource<'_>, sample: &Sample, base: &[u8], number: u32) {
        self.key.clear();
        self.key.extend_from_slice(base);
        self.key.extend_from_slice(b"_created");
        if let Some(value) = source.view.created_after(sample, &self.key) {
            self.exemplar.clear();
            put_timestamp_fields(value.of(source.view.body()), &mut self.exemplar);
            put_bytes(number, &self.exemplar, &mut self.value);
        }
    }

    /// The label fields of a sample, without `skip` (the bound label), then
    /// the target; a label named like the target is renamed `exported_...`.
    fn labels(
        &mut self,
        source: TextSource<'_>,
        sample: &Sample,
        skip: Option<&[u8]>,
        target: Option<Target<'_>>,
    ) {
        self.collect_pairs(source, sample);
        let target_name = target.map(|t| t.name());
        for i in 0..self.pairs.len() {
            let (name, value) = self.pairs[i];
            let name_bytes = name.of(&self.names);
            if Some(name_bytes) == skip {
                continue;
            }
            self.unescaped.clear();
            unescape_into(value.of(source.view.body()), &mut self.unescaped);
            if Some(name_bytes) == target_name {
                self.key.clear();
                self.key.extend_from_slice(name_bytes);
                loop {
                    self.key.splice(0..0, b"exported_".iter().copied());
                    let taken = self
                        .pairs
                        .iter()
                        .any(|(n, _)| n.of(&self.names) == self.key.as_slice());
                    if !taken {
                        break;
                    }
                }
                put_label_pair_field(&self.key, &self.unescaped, &mut self.metric);
            } else {
                put_label_pair_field(name_bytes, &self.unescaped, &mut self.metric);
            }
        }
        if let Some(target) = target {
            self.metric.extend_from_slice(target.field());
        }
    }

    /// The sample's labels as (name in `names`, raw value in the body).
    fn collect_pairs(&mut self, source: TextSource<'_>, sample: &Sample) {
        self.pairs.clear();
        self.names.clear();
        let labels = sample.labels.of(source.view.body());
        for label in LabelIter::new(labels) {
            let start = self.names.len();
            if label.quoted {
                self.unescaped.clear();
                unescape_into(label.raw_name, &mut self.unescaped);
                escape_name(&self.unescaped, self.escaping, true, &mut self.names);
            } else {
                self.names.extend_from_slice(label.raw_name);
            }
            let value_start = sample.labels.start as usize + label.value_start;
            self.pairs.push((
                Span {
                    start: start as u32,
                    end: self.names.len() as u32,
                },
                Span {
                    start: value_start as u32,
                    end: (value_start + label.value.len()) as u32,
                },
            ));
        }
    }

    fn grouped(
        &mut self,
        source: TextSource<'_>,
        family: u32,
        kind: Kind,
        target: Option<Target<'_>>,
        out: &mut impl MetricSink,
    ) {
        let histogram = kind == Kind::Histogram;
        let bound_label: &[u8] = if histogram { b"le" } else { b"quantile" };
        self.groups.clear();
        self.table.clear();
        self.members.clear();
        self.keys.clear();
        let family_name = source.view.family(family).name;
        let body = source.view.body();
        for (at, sample) in source.view.samples(family).enumerate() {
            let raw = sample.name.of(body);
            let name: &[u8] = if sample.flags.contains(SampleFlags::QUOTED_NAME) {
                self.sample_name.clear();
                unescape_into(raw, &mut self.sample_name);
                &self.sample_name
            } else {
                raw
            };
            let role = match name.strip_prefix(family_name) {
                Some(b"_bucket") if histogram => Role::Bound,
                Some(b"_sum") => Role::Sum,
                Some(b"_count") => Role::Count,
                _ => Role::Plain,
            };
            // The group key: sorted `name=value` pairs without the bound.
            self.collect_pairs(source, &sample);
            let names = &self.names;
            self.pairs
                .sort_unstable_by(|a, b| a.0.of(names).cmp(b.0.of(names)));
            self.key.clear();
            for (name, value) in &self.pairs {
                if name.of(names) == bound_label {
                    continue;
                }
                self.key.extend_from_slice(name.of(names));
                self.key.push(0);
                self.key.extend_from_slice(value.of(body));
                self.key.push(0);
            }
            let hash = hash_name(&self.key);
            let (groups, keys, key) = (&self.groups, &self.keys, &self.key);
            let group = match self
                .table
                .find(hash, |g| groups[g as usize].key.of(keys) == key.as_slice())
            {
                Some(group) => group,
                None => {
                    let start = self.keys.len();
                    self.keys.extend_from_slice(&self.key);
                    let id = self.groups.len() as u32;
                    self.groups.push(Group {
                        key: Span {
                            start: start as u32,
                            end: self.keys.len() as u32,
                        },
                    });
                    self.table.insert(hash, id);
                    id
                }
            };
            self.members.push(Member {
                group,
                order: at as u32,
                role,
                sample,
            });
        }
        self.members.sort_unstable_by_key(|m| (m.group, m.order));
        let mut begin = 0;
        while begin < self.members.len() {
            let group = self.members[begin].group;
            let mut end = begin;
            while end < self.members.len() && self.members[end].group == group {
                end += 1;
            }
            self.write_group(
                source,
                family_name,
                histogram,
                bound_label,
                begin..end,
                target,
                out,
            );
            begin = end;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write_group(
        &mut self,
        source: TextSource<'_>,
        family_name: &[u8],
        histogram: bool,
        bound_label: &[u8],
        members: std::ops::Range<usize>,
        target: Option<Target<'_>>,
        out: &mut impl MetricSink,
    ) {
        // The group's first sample keeps its labels (minus the bound).
        let first = self.members[members.start].sample;
        self.metric.clear();
        self.labels(source, &first, Some(bound_label), target);
        let (mut sum, mut count, mut infinity_bucket) = (0.0, None, None);
        let mut timestamp = None;
        // The group's last `_sum` or `_count`: its `_created` comes next.
        let mut last_total: Option<Sample> = None;
        self.value.clear();
        for i in members {
            let member = self.members[i];
            let sample = member.sample;
            if timestamp.is_none() {
                timestamp = source.timestamp(&sample);
            }
            let value = source.value(&sample);
            if matches!(member.role, Role::Sum | Role::Count)
                && last_total.map_or(true, |last| last.name.start < sample.name.start)
            {
                last_total = Some(sample);
            }
            match member.role {
                Role::Sum => sum = value,
                Role::Count => count = Some(value),
                Role::Bound | Role::Plain => {
                    let bound = self.bound(source, &sample, bound_label);
                    if histogram && bound == f64::INFINITY {
                        infinity_bucket = Some(value);
                    }
                    if histogram {
                        // Bucket: cumulative_count = 1 or _float = 4,
                        // upper_bound = 2, exemplar = 3.
                        let mut bucket = std::mem::take(&mut self.number);
                        bucket.clear();
                        match as_count(value) {
                            Some(n) => put_uint(1, n, &mut bucket),
                            None => put_double(4, value, &mut bucket),
                        }
                        put_double(2, bound, &mut bucket);
                        if let Some(exemplar) = source.view.exemplar(&sample) {
                            let value = std::mem::replace(&mut self.value, bucket);
                            self.exemplar_field(source, &exemplar, 3);
                            bucket = std::mem::replace(&mut self.value, value);
                        }
                        put_bytes(h::BUCKET, &bucket, &mut self.value);
                        self.number = bucket;
                    } else {
                        // Quantile: quantile = 1, value = 2.
                        put_tag(3, WireType::Len, &mut self.value);
                        put_varint(18, &mut self.value);
                        put_double(1, bound, &mut self.value);
                        put_double(2, value, &mut self.value);
                    }
                }
            }
        }
        // Histogram: sample_count = 1 (or _float = 4), sample_sum = 2;
        // Summary: sample_count = 1, sample_sum = 2. Counts first, as
        // client_golang writes them.
        // Without `_count`, the `+Inf` bucket holds the count.
        let count = count.or(infinity_bucket).unwrap_or(0.0);
        self.number.clear();
        match as_count(count) {
            Some(n) => put_uint(1, n, &mut self.number),
            None if histogram => put_double(h::SAMPLE_COUNT_FLOAT, count, &mut self.number),
            None => {
                let rounded = if count.is_finite() && count > 0.0 {
                    count.round() as u64
                } else {
                    0
                };
                put_uint(1, rounded, &mut self.number);
            }
        }
        put_double(2, sum, &mut self.number);
        if let (Some(last), true) = (last_total, source.view.is_openmetrics()) {
            // Histogram created_timestamp = 15, Summary = 4.
            let field = if histogram { h::CREATED_TIMESTAMP } else { 4 };
            let base = family_name;
            let numbers = std::mem::replace(&mut self.value, std::mem::take(&mut self.number));
            self.created_field(source, &last, base, field);
            self.number = std::mem::replace(&mut self.value, numbers);
        }
        let number = if histogram {
            metric_field::HISTOGRAM
        } else {
            metric_field::SUMMARY
        };
        put_tag(number, WireType::Len, &mut self.metric);
        put_varint(
            (self.number.len() + self.value.len()) as u64,
            &mut self.metric,
        );
        self.metric.extend_from_slice(&self.number);
        self.metric.extend_from_slice(&self.value);
        if let Some(ms) = timestamp {
            put_uint(metric_field::TIMESTAMP_MS, ms as u64, &mut self.metric);
        }
        out.metric(&self.metric);
    }

    /// The value of the sample's bound label as a number (+Inf if absent).
    /// Quoted or not (`"le"="0.5"`, text 1.0): `le` and `quantile` have no
    /// escapes, so the raw name is the name either way.
    fn bound(&self, source: TextSource<'_>, sample: &Sample, bound_label: &[u8]) -> f64 {
        let body = source.view.body();
        for label in LabelIter::new(sample.labels.of(body)) {
            if label.raw_name == bound_label {
                let start = sample.labels.start as usize + label.value_start;
                return parse_number(&body[start..start + label.value.len()]);
            }
        }
        f64::INFINITY
    }
}

/// Field `number` holding a `google.protobuf.Timestamp` of OpenMetrics
/// seconds text.
fn put_timestamp(number: u32, seconds: &[u8], out: &mut Vec<u8>) {
    let mut message = Vec::with_capacity(16);
    put_timestamp_fields(seconds, &mut message);
    put_bytes(number, &message, out);
}

/// The fields of a `google.protobuf.Timestamp` (seconds = 1, nanos = 2)
/// of OpenMetrics seconds text, such that Prometheus reads back from them
/// (`seconds*1000 + nanos/1e6`, in wrapping int64) the milliseconds it
/// reads from the text directly (`int64(ts * 1000)`: truncated after a
/// float product, i64::MIN past int64 milliseconds): a plain decimal's
/// exact seconds and nanoseconds where they give the same, else the
/// seconds and milliseconds of that product.
fn put_timestamp_fields(text: &[u8], out: &mut Vec<u8>) {
    let of_float = || {
        let value = parse_number(text);
        let seconds = value.floor();
        (
            seconds as i64,
            ((value - seconds) * 1e9).round().min(999_999_999.0) as i32,
        )
    };
    let (seconds, nanos) = match om_timestamp_millis(text) {
        Some(millis) => decimal_seconds(text)
            .filter(|&(seconds, nanos)| {
                seconds
                    .wrapping_mul(1000)
                    .wrapping_add(i64::from(nanos / 1_000_000))
                    == millis
            })
            .unwrap_or((
                millis.div_euclid(1000),
                (millis.rem_euclid(1000) * 1_000_000) as i32,
            )),
        None => of_float(),
    };
    if seconds != 0 {
        put_uint(1, seconds as u64, out);
    }
    if nanos != 0 {
        put_uint(2, nanos as u64, out);
    }
}

/// `123.456` as (123, 456000000); None for anything but a plain,
/// non-negative decimal.
fn decimal_seconds(text: &[u8]) -> Option<(i64, i32)> {
    let (integer, fraction) = match text.iter().position(|&c| c == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &b""[..]),
    };
    if integer.is_empty() || !integer.iter().chain(fraction).all(u8::is_ascii_digit) {
        return None;
    }
    let seconds = std::str::from_utf8(integer).ok()?.parse().ok()?;
    let mut nanos = 0i32;
    for i in 0..9 {
        nanos = nanos * 10 + fraction.get(i).map_or(0, |d| i32::from(d - b'0'));
    }
    Some((seconds, nanos))
}
