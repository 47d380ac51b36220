//! OpenMetrics 1.0 output: what a family is called and typed as there, the
//! rules a written family must keep, and its header lines.
//!
//! Every output must be read whole by Prometheus (2.42 and main), and by
//! prometheus_client's strict OpenMetrics parser (the strictest reader
//! there is, `prometheus_client/openmetrics/parser.py`). From any source:
//!
//! - A family is named without the suffixes its type adds to its samples:
//!   counter `foo` has samples `foo_total` and `foo_created`, info `foo` has
//!   `foo_info` ([`OpenMetricsType::suffixes`]). A text 0.0.4 counter whose
//!   name does not end in `_total`, or a protobuf one, cannot be written as
//!   an OpenMetrics counter without renaming its series (which a direct
//!   scrape would store under its own name), so it is written as `unknown`.
//!   So is a text counter `x_total` where some source has a family `x` that
//!   is not a counter (node_exporter's `go_memstats_alloc_bytes`): both
//!   cannot be named `x`, and its series are kept rather than dropped in a
//!   conflict. Names are compared as the output writes them: under
//!   `underscores`, a family `"x.y"` is one beside a counter `x_y_total`.
//! - A text family without a `# TYPE` line gets none; `untyped` is written
//!   `unknown`.
//! - Each family claims its name and its name with every suffix of its
//!   type; no two families of one output may claim a name
//!   (prometheus_client: "Clashing name"). The merge drops the later one.
//! - A family's samples must keep the rules of its type ([`Check`]): a
//!   histogram's buckets per metric in order with `+Inf` last, counts equal,
//!   counter values neither negative nor NaN, each metric's samples
//!   together, and so on. A family that breaks one is written as one
//!   `unknown` family per sample name instead: every series and value is
//!   kept, the type is lost (what a reader stores as series is the same).
//!   What a text family's names and labels passed is remembered by the
//!   merge for the next build: while they are the same bytes, only values
//!   and timestamps are checked ([`Check::known_sample`]), as the family is
//!   written; the merge takes the family back if it does not stand.
//! - Exemplars are written only where OpenMetrics 1.0 has a place for them
//!   (a counter's `_total`, a histogram's or gauge histogram's `_bucket`)
//!   and their label set is at most 128 characters, names counted as
//!   written, with no quote in it; others are dropped.
//! - Timestamps are seconds: a text 0.0.4 timestamp in milliseconds is
//!   written as the shortest decimal that Prometheus reads back to the same
//!   milliseconds (`int64(seconds * 1000)`, as its parser computes).

use std::ops::Range;

use super::parse::{Declared, Kind};
use super::protobuf::read::MetricType;

/// The type of an OpenMetrics family as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OpenMetricsType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
    /// No `# TYPE` line.
    None,
}

impl OpenMetricsType {
    /// Every type, for tests that go through them all.
    #[cfg(test)]
    pub(super) const ALL: [OpenMetricsType; 9] = [
        OpenMetricsType::Counter,
        OpenMetricsType::Gauge,
        OpenMetricsType::Histogram,
        OpenMetricsType::GaugeHistogram,
        OpenMetricsType::Summary,
        OpenMetricsType::Info,
        OpenMetricsType::StateSet,
        OpenMetricsType::Unknown,
        OpenMetricsType::None,
    ];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            OpenMetricsType::Counter => "counter",
            OpenMetricsType::Gauge => "gauge",
            OpenMetricsType::Histogram => "histogram",
            OpenMetricsType::GaugeHistogram => "gaugehistogram",
            OpenMetricsType::Summary => "summary",
            OpenMetricsType::Info => "info",
            OpenMetricsType::StateSet => "stateset",
            OpenMetricsType::Unknown | OpenMetricsType::None => "unknown",
        }
    }

    /// The suffixes a family of this type may give its samples (the name
    /// alone where it is listed as empty), as prometheus_client's parser
    /// allows them.
    pub(super) fn suffixes(self) -> &'static [&'static [u8]] {
        match self {
            OpenMetricsType::Counter => &[b"_total", b"_created"],
            OpenMetricsType::Histogram => &[b"_bucket", b"_count", b"_sum", b"_created"],
            OpenMetricsType::GaugeHistogram => &[b"_bucket", b"_gcount", b"_gsum"],
            OpenMetricsType::Summary => &[b"", b"_count", b"_sum", b"_created"],
            OpenMetricsType::Info => &[b"_info"],
            _ => &[b""],
        }
    }

    /// Counter, gauge, unknown and no type hold samples named as the family
    /// itself (a counter only when written as `unknown`, see the module
    /// documentation), so a conflict between them keeps every sample under
    /// `unknown`.
    pub(super) fn is_simple(self) -> bool {
        matches!(
            self,
            OpenMetricsType::Gauge | OpenMetricsType::Unknown | OpenMetricsType::None
        )
    }

    /// Whether this type's families may carry a `# UNIT` line
    /// (prometheus_client refuses one on info and stateset).
    pub(super) fn takes_unit(self) -> bool {
        !matches!(
            self,
            OpenMetricsType::Info | OpenMetricsType::StateSet | OpenMetricsType::None
        )
    }

    /// The type a text 0.0.4 family is written as, and how many bytes of
    /// its name the OpenMetrics family name keeps.
    pub(super) fn of_text(kind: Kind, typed: bool, name: &[u8]) -> (OpenMetricsType, usize) {
        match kind {
            Kind::Counter => match name.strip_suffix(b"_total") {
                Some(base) if !base.is_empty() => (OpenMetricsType::Counter, base.len()),
                _ => (OpenMetricsType::Unknown, name.len()),
            },
            Kind::Gauge => (OpenMetricsType::Gauge, name.len()),
            Kind::Histogram => (OpenMetricsType::Histogram, name.len()),
            Kind::Summary => (OpenMetricsType::Summary, name.len()),
            Kind::Untyped if typed => (OpenMetricsType::Unknown, name.len()),
            Kind::Untyped => (OpenMetricsType::None, name.len()),
        }
    }

    /// The type an OpenMetrics body declared (None: no `# TYPE`).
    pub(super) fn of_declared(declared: Option<Declared>) -> OpenMetricsType {
        match declared {
            None => OpenMetricsType::None,
            Some(Declared::Counter) => OpenMetricsType::Counter,
            Some(Declared::Gauge) => OpenMetricsType::Gauge,
            Some(Declared::Histogram) => OpenMetricsType::Histogram,
            Some(Declared::GaugeHistogram) => OpenMetricsType::GaugeHistogram,
            Some(Declared::Summary) => OpenMetricsType::Summary,
            Some(Declared::Info) => OpenMetricsType::Info,
            Some(Declared::StateSet) => OpenMetricsType::StateSet,
            Some(Declared::Untyped) => OpenMetricsType::Unknown,
        }
    }

    /// The type a protobuf family is written as, and how many bytes of its
    /// name the OpenMetrics family name keeps.
    pub(super) fn of_protobuf(metric_type: MetricType, name: &[u8]) -> (OpenMetricsType, usize) {
        match metric_type {
            MetricType::Counter => Self::of_text(Kind::Counter, true, name),
            MetricType::Gauge => (OpenMetricsType::Gauge, name.len()),
            MetricType::Summary => (OpenMetricsType::Summary, name.len()),
            MetricType::Untyped => (OpenMetricsType::Unknown, name.len()),
            MetricType::Histogram => (OpenMetricsType::Histogram, name.len()),
            MetricType::GaugeHistogram => (OpenMetricsType::GaugeHistogram, name.len()),
        }
    }
}

/// Where a sample's exemplar may be written (OpenMetrics 1.0: a counter's
/// `_total` and a histogram's `_bucket` only).
pub(super) fn takes_exemplar(family_type: OpenMetricsType, suffix: &[u8]) -> bool {
    match family_type {
        OpenMetricsType::Counter => suffix == b"_total",
        OpenMetricsType::Histogram | OpenMetricsType::GaugeHistogram => suffix == b"_bucket",
        _ => false,
    }
}

/// prometheus_client refuses an exemplar whose label names and values
/// together are longer than this many characters (the OpenMetrics limit).
pub(super) const EXEMPLAR_LABEL_CHARACTERS: usize = 128;

/// Appends HELP text with OpenMetrics escapes (`\\`, `\n`, `\"`) from its
/// unescaped form.
pub(super) fn escape_help(help: &[u8], out: &mut Vec<u8>) {
    for &c in help {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'"' => out.extend_from_slice(b"\\\""),
            _ => out.push(c),
        }
    }
}

/// Appends a text 0.0.4 timestamp (integer milliseconds) as OpenMetrics
/// seconds that Prometheus' parser reads back to the same milliseconds:
/// it computes `int64(float64(seconds) * 1000)`, which for a plain
/// `ms / 1000` decimal is often a millisecond short (1.001 * 1000 is
/// 1000.9999999999999 in binary). So the float whose product truncates to
/// `millis` is searched next to `millis / 1000` and written as the shortest
/// decimal that reads back to that float (Rust's `Display` for `f64`).
pub(super) fn write_seconds_of_millis(millis: i64, out: &mut Vec<u8>) {
    use std::io::Write;
    let mut seconds = millis as f64 / 1000.0;
    for _ in 0..4 {
        let back = (seconds * 1000.0) as i64;
        if back == millis {
            break;
        }
        let bits = seconds.to_bits();
        // One unit in the last place towards the right product.
        let step_up = (back < millis) == (seconds >= 0.0);
        seconds = f64::from_bits(if step_up { bits + 1 } else { bits - 1 });
    }
    let _ = write!(out, "{seconds}");
}

/// A timestamp as the check compares it, in nanoseconds, where the output
/// cannot be compared by a strict reader: [`INEXACT`].
pub(super) const INEXACT: i64 = i64::MIN;

/// The check's timestamp of an OpenMetrics timestamp, which the output
/// copies as written: read as prometheus_client reads it, whole seconds
/// and up to nine digits of fraction, exactly (the fraction takes the sign
/// of the whole seconds, so it reads `-0.5` as half a second after the
/// epoch). Another form (an exponent) it reads as a float, which it
/// refuses to compare with a timestamp of a metric's other samples.
pub(super) fn stamp_of_seconds(text: &[u8]) -> i64 {
    let (whole, fraction) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &b""[..]),
    };
    let (negative, digits) = match whole.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, whole),
    };
    if digits.is_empty() || !digits.iter().chain(fraction).all(u8::is_ascii_digit) {
        return INEXACT;
    }
    let Some(seconds) = digits.iter().try_fold(0i64, |n, &d| {
        n.checked_mul(10)?.checked_add(i64::from(d - b'0'))
    }) else {
        return INEXACT;
    };
    let seconds = if negative { -seconds } else { seconds };
    let nanos = (0..9).fold(0i64, |n, i| {
        n * 10 + fraction.get(i).map_or(0, |&d| i64::from(d - b'0'))
    });
    let nanos = if seconds < 0 { -nanos } else { nanos };
    seconds
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(nanos))
        .filter(|&n| n != INEXACT)
        .unwrap_or(INEXACT)
}

/// The check's timestamp of one in milliseconds (text 0.0.4 and protobuf
/// sources, written as the decimal [`write_seconds_of_millis`] makes).
pub(super) fn stamp_of_millis(millis: i64) -> i64 {
    millis
        .checked_mul(1_000_000)
        .filter(|&n| n != INEXACT)
        .unwrap_or(INEXACT)
}

/// What one sample means to [`Check`].
#[derive(Clone, Copy, Debug)]
pub(super) struct CheckedSample {
    /// The sample name's suffix after the family name ([`Suffix::None`]
    /// for none).
    pub(super) suffix: Suffix,
    /// Hash of the metric's label set without the label its type adds
    /// (`le`, `quantile`, the stateset's own).
    pub(super) group: u64,
    /// `le` of a bucket, `quantile` of a summary's quantile sample.
    pub(super) bound: Option<f64>,
    pub(super) value: f64,
    /// As the check compares it ([`stamp_of_seconds`], [`stamp_of_millis`]).
    pub(super) timestamp: Option<i64>,
    /// Whether the stateset's own label is there (statesets only).
    pub(super) has_state_label: bool,
}

/// Every suffix some type gives its samples ([`OpenMetricsType::suffixes`]),
/// the name alone first.
pub(super) const ALL_SUFFIXES: [&[u8]; 9] = [
    b"",
    b"_total",
    b"_created",
    b"_bucket",
    b"_count",
    b"_sum",
    b"_gcount",
    b"_gsum",
    b"_info",
];

/// A sample name's suffix after its family's name, told apart once per
/// sample (comparing it with each suffix's bytes again cost more than the
/// rest of the check).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Suffix {
    None,
    Total,
    Created,
    Bucket,
    Count,
    Sum,
    GCount,
    GSum,
    Info,
    Other,
}

impl Suffix {
    pub(super) fn of(suffix: &[u8]) -> Suffix {
        match suffix {
            b"" => Suffix::None,
            b"_total" => Suffix::Total,
            b"_created" => Suffix::Created,
            b"_bucket" => Suffix::Bucket,
            b"_count" => Suffix::Count,
            b"_sum" => Suffix::Sum,
            b"_gcount" => Suffix::GCount,
            b"_gsum" => Suffix::GSum,
            b"_info" => Suffix::Info,
            _ => Suffix::Other,
        }
    }

    /// The suffix of `length` bytes that a sample name of a family of
    /// type `t` may have ([`Check::takes_known`]'s types, whose suffixes
    /// differ in length): how a sample of a remembered family, whose names
    /// passed the check, is read without comparing its bytes again.
    pub(super) fn of_length(t: OpenMetricsType, length: usize) -> Suffix {
        match (t, length) {
            (_, 0) => Suffix::None,
            (OpenMetricsType::Counter, 6) => Suffix::Total,
            (_, 8) => Suffix::Created,
            (OpenMetricsType::Histogram, 7) => Suffix::Bucket,
            (OpenMetricsType::Histogram | OpenMetricsType::Summary, 6) => Suffix::Count,
            (OpenMetricsType::Histogram | OpenMetricsType::Summary, 4) => Suffix::Sum,
            _ => Suffix::Other,
        }
    }

    /// [`Suffix::of_length`] of every length, for a family of type `t`.
    pub(super) fn by_length(t: OpenMetricsType) -> SuffixByLength {
        SuffixByLength(std::array::from_fn(|length| Suffix::of_length(t, length)))
    }

    /// Whether [`OpenMetricsType::suffixes`] of `t` lists it.
    fn allowed_in(self, t: OpenMetricsType) -> bool {
        use Suffix as S;
        match t {
            OpenMetricsType::Counter => matches!(self, S::Total | S::Created),
            OpenMetricsType::Histogram => {
                matches!(self, S::Bucket | S::Count | S::Sum | S::Created)
            }
            OpenMetricsType::GaugeHistogram => matches!(self, S::Bucket | S::GCount | S::GSum),
            OpenMetricsType::Summary => matches!(self, S::None | S::Count | S::Sum | S::Created),
            OpenMetricsType::Info => self == S::Info,
            _ => self == S::None,
        }
    }
}

/// The suffix of each length up to the longest (`_created`) that a sample
/// name of one family type may have ([`Suffix::by_length`]): a remembered
/// family's samples are told apart by a load, where matching the length
/// jumped through a table whose target was mispredicted often.
#[derive(Clone, Copy)]
pub(super) struct SuffixByLength([Suffix; 9]);

impl SuffixByLength {
    #[inline(always)]
    pub(super) fn get(&self, length: usize) -> Suffix {
        self.0.get(length).copied().unwrap_or(Suffix::Other)
    }
}

/// The rules prometheus_client's strict parser holds a family to, checked
/// sample by sample in output order (its `text_fd_to_metric_families` and
/// `_check_histogram`); `ok` is false once one is broken.
pub(super) struct Check {
    family_type: OpenMetricsType,
    pub(super) ok: bool,
    /// The current metric (group) and what is known of it.
    group: Option<u64>,
    group_timestamp: Option<Option<i64>>,
    /// Every group seen in the family, but its first while no other came
    /// (`unentered`: most families have one metric, and need no set).
    seen: HashSet,
    unentered: Option<u64>,
    histogram: HistogramState,
}

/// See [`Check::save`].
#[derive(Clone, Copy)]
pub(super) struct SavedCheck {
    ok: bool,
    group: Option<u64>,
    group_timestamp: Option<Option<i64>>,
    histogram: HistogramState,
}

/// The group [`Check::known_sample`] keeps current while it checks.
const KNOWN_GROUP: u64 = 0x6b6e_6f77_6e00_0000;

/// What a value breaks whatever its labels: a counter-like value NaN or
/// negative, a count not whole.
pub(super) fn value_breaks(suffix: Suffix, value: f64) -> bool {
    use Suffix as S;
    match suffix {
        // `is_integral` is false for NaN.
        S::Bucket | S::Count | S::GCount => value < 0.0 || !is_integral(value),
        S::Total | S::Sum => value.is_nan() || value < 0.0,
        S::GSum => value.is_nan(),
        _ => false,
    }
}

/// `value.fract() == 0.0` (false for NaN and the infinities) without
/// libm's `trunc`, which baseline x86-64 has no instruction for: a double
/// of 2^52 or more is integral, and a smaller one is whole exactly when it
/// comes back unchanged from an i64.
fn is_integral(value: f64) -> bool {
    if value.abs() < 4_503_599_627_370_496.0 {
        (value as i64) as f64 == value
    } else {
        value.is_finite()
    }
}

#[derive(Clone, Copy, Default)]
struct HistogramState {
    bucket: Option<f64>,
    value: f64,
    count: Option<f64>,
    has_sum: bool,
    has_gsum: bool,
    negative_buckets: bool,
    negative_gsum: bool,
    any: bool,
}

impl Check {
    pub(super) fn new(family_type: OpenMetricsType) -> Check {
        Check {
            family_type,
            ok: true,
            group: None,
            group_timestamp: None,
            seen: HashSet::default(),
            unentered: None,
            histogram: HistogramState::default(),
        }
    }

    /// Starts a family of `family_type` again, keeping the allocation.
    pub(super) fn reset(&mut self, family_type: OpenMetricsType) {
        self.family_type = family_type;
        self.ok = true;
        self.group = None;
        self.group_timestamp = None;
        self.seen.clear();
        self.unentered = None;
        self.histogram = HistogramState::default();
    }

    pub(super) fn sample(&mut self, sample: &CheckedSample) {
        if !self.ok {
            return;
        }
        let t = self.family_type;
        let suffix = sample.suffix;
        if !suffix.allowed_in(t) {
            self.ok = false;
            return;
        }
        let histogram = matches!(
            t,
            OpenMetricsType::Histogram | OpenMetricsType::GaugeHistogram
        );
        // Metric grouping, and timestamps within a metric. prometheus_client
        // cannot tell the metrics of an info family apart: all are one group.
        let group = if t == OpenMetricsType::Info {
            0
        } else {
            sample.group
        };
        if self.group != Some(group) {
            if histogram && self.group.is_some() {
                self.finish_histogram_group();
            }
            if let Some(first) = self.unentered.take() {
                self.seen.insert(first);
            }
            if self.seen.is_empty() {
                self.unentered = Some(group);
            } else if !self.seen.insert(group) {
                self.ok = false;
                return;
            }
            self.group = Some(group);
            self.group_timestamp = Some(sample.timestamp);
        } else if !self.timestamp_follows(sample.timestamp) {
            self.ok = false;
            return;
        }
        let value = sample.value;
        use Suffix as S;
        if value_breaks(suffix, value) {
            self.ok = false;
            return;
        }
        match t {
            OpenMetricsType::StateSet
                if !sample.has_state_label || (value != 0.0 && value != 1.0) =>
            {
                self.ok = false;
            }
            OpenMetricsType::Info if value != 1.0 => self.ok = false,
            OpenMetricsType::Summary if suffix == S::None => {
                let quantile_ok = sample.bound.is_some_and(|q| (0.0..=1.0).contains(&q));
                if !quantile_ok || value < 0.0 {
                    self.ok = false;
                }
            }
            _ if histogram => self.histogram_sample(suffix, sample.bound, value),
            _ => {}
        }
    }

    /// [`Check::sample`] for a sample of a family whose names and labels,
    /// the same bytes in the same order, passed it in an earlier build
    /// (`merge.rs` remembers such families): only what its value and
    /// timestamp may break is checked. `new_group`: its metric starts
    /// here, as the full check found. Not for the types whose label rules
    /// look at values (info, stateset, gauge histogram).
    #[inline(always)]
    pub(super) fn known_sample(
        &mut self,
        suffix: Suffix,
        new_group: bool,
        value: f64,
        timestamp: Option<i64>,
        breaks: bool,
    ) {
        if !self.ok {
            return;
        }
        let histogram = self.family_type == OpenMetricsType::Histogram;
        if new_group || self.group.is_none() {
            if histogram && self.group.is_some() {
                self.finish_histogram_group();
            }
            // Its value is never compared: `new_group` tells where each
            // metric starts, and `end_known` clears it before another
            // source's samples.
            self.group = Some(KNOWN_GROUP);
            self.group_timestamp = Some(timestamp);
        } else if (timestamp.is_some() || self.group_timestamp != Some(None))
            && !self.timestamp_follows(timestamp)
        {
            // (An untimed sample follows an untimed one.)
            self.ok = false;
            return;
        }
        if breaks {
            self.ok = false;
            return;
        }
        match self.family_type {
            OpenMetricsType::Summary if suffix == Suffix::None && value < 0.0 => self.ok = false,
            OpenMetricsType::Histogram => {
                let h = &mut self.histogram;
                h.any = true;
                match suffix {
                    Suffix::Bucket => {
                        if value < h.value {
                            self.ok = false;
                            return;
                        }
                        // Its bounds were checked: they rise, to `+Inf`.
                        h.bucket = Some(f64::INFINITY);
                        h.value = value;
                    }
                    Suffix::Count => h.count = Some(value),
                    Suffix::Sum => h.has_sum = true,
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// Forgets the groups seen so far (not the current one): those of
    /// another source, which cannot come back in this one's.
    pub(super) fn forget_groups(&mut self) {
        if !self.seen.is_empty() {
            self.seen.clear();
        }
        self.unentered = None;
    }

    /// Ends a contribution checked by [`Check::known_sample`]: its last
    /// metric is finished here and no group is current, so that the next
    /// sample, of another source, starts one whatever its hash (one equal
    /// to the synthetic group left would continue it, and never enter the
    /// groups seen).
    pub(super) fn end_known(&mut self) {
        if self.ok && self.family_type == OpenMetricsType::Histogram && self.group.is_some() {
            self.finish_histogram_group();
        }
        self.group = None;
        self.group_timestamp = None;
    }

    /// Whether the family's type may be checked by [`Check::known_sample`].
    pub(super) fn takes_known(family_type: OpenMetricsType) -> bool {
        matches!(
            family_type,
            OpenMetricsType::Counter
                | OpenMetricsType::Gauge
                | OpenMetricsType::Unknown
                | OpenMetricsType::None
                | OpenMetricsType::Histogram
                | OpenMetricsType::Summary
        )
    }

    /// Whether a sample's timestamp may follow the last of its metric:
    /// there if and only if that one's was, and not earlier (but in an
    /// info family); then it is the metric's last. A (gauge) histogram's
    /// samples share one: prometheus_client checks a histogram per label
    /// set and timestamp, so one bucket at another time is a group of its
    /// own without a `+Inf` bucket.
    fn timestamp_follows(&mut self, timestamp: Option<i64>) -> bool {
        let previous = self.group_timestamp.flatten();
        if previous == Some(INEXACT) || timestamp == Some(INEXACT) {
            return false;
        }
        let histogram = matches!(
            self.family_type,
            OpenMetricsType::Histogram | OpenMetricsType::GaugeHistogram
        );
        let backwards = self.family_type != OpenMetricsType::Info
            && matches!((previous, timestamp), (Some(a), Some(b)) if a > b || (histogram && a != b));
        if self.group_timestamp.map(|ts| ts.is_some()) != Some(timestamp.is_some()) || backwards {
            return false;
        }
        self.group_timestamp = Some(timestamp);
        true
    }

    /// What [`Check::known_sample`] may change, to be put back when the
    /// family turns out not to be the one remembered.
    pub(super) fn save(&self) -> SavedCheck {
        SavedCheck {
            ok: self.ok,
            group: self.group,
            group_timestamp: self.group_timestamp,
            histogram: self.histogram,
        }
    }

    pub(super) fn restore(&mut self, saved: SavedCheck) {
        self.ok = saved.ok;
        self.group = saved.group;
        self.group_timestamp = saved.group_timestamp;
        self.histogram = saved.histogram;
    }

    fn histogram_sample(&mut self, suffix: Suffix, bound: Option<f64>, value: f64) {
        let h = &mut self.histogram;
        h.any = true;
        match suffix {
            Suffix::Bucket => {
                let Some(bound) = bound.filter(|b| !b.is_nan()) else {
                    self.ok = false;
                    return;
                };
                if bound < 0.0 {
                    h.negative_buckets = true;
                }
                if h.bucket.is_some_and(|previous| bound <= previous) || value < h.value {
                    self.ok = false;
                    return;
                }
                h.bucket = Some(bound);
                h.value = value;
            }
            // One count and one sum a metric: a second (the family's
            // samples come back later in a text body) would be compared
            // with the `+Inf` bucket by a reader where the check saw the
            // last one.
            Suffix::Count | Suffix::GCount if h.count.is_some() => self.ok = false,
            Suffix::Sum if h.has_sum => self.ok = false,
            Suffix::GSum if h.has_gsum => self.ok = false,
            Suffix::Count | Suffix::GCount => h.count = Some(value),
            Suffix::Sum => h.has_sum = true,
            Suffix::GSum => {
                h.has_gsum = true;
                h.negative_gsum |= value < 0.0;
            }
            _ => {}
        }
    }

    fn finish_histogram_group(&mut self) {
        let h = std::mem::take(&mut self.histogram);
        if !h.any {
            return;
        }
        let broken = h.bucket != Some(f64::INFINITY)
            || h.count.is_some_and(|count| count != h.value)
            || (h.has_sum && h.count.is_none())
            || (h.has_gsum && h.count.is_none())
            || (!(h.has_sum || h.has_gsum) && h.count.is_some())
            || (h.negative_buckets && h.has_sum)
            || (!h.negative_buckets && h.negative_gsum);
        if broken {
            self.ok = false;
        }
    }

    /// Whether the whole family keeps the rules.
    pub(super) fn finish(&mut self) -> bool {
        if self.ok
            && matches!(
                self.family_type,
                OpenMetricsType::Histogram | OpenMetricsType::GaugeHistogram
            )
        {
            self.finish_histogram_group();
        }
        self.ok
    }
}

/// The hash of a label set, whatever the order of its labels (a sum of
/// each label's hash), as prometheus_client compares them. Two label sets
/// taken for one would hide a label set repeated apart, so every hash
/// starts from the process' [`hash_key`].
#[derive(Clone, Copy)]
pub(super) struct GroupHash {
    sum: u64,
    key: u64,
}

impl GroupHash {
    pub(super) fn new() -> GroupHash {
        GroupHash {
            sum: 0,
            key: hash_key(),
        }
    }

    /// Adds one label (or the source's number, as a label of its own).
    pub(super) fn add(&mut self, name: &[u8], value: &[u8]) {
        let hash = mix_bytes(mix_bytes(self.key ^ name.len() as u64, name), value);
        self.add_hash(hash);
    }

    /// Adds one label of a text body by its text `name="value` (the raw
    /// value, without its closing quote) at `range` in `bytes`: one hash
    /// over one piece, where [`GroupHash::add`] takes two. Every label of a
    /// text source is added so (a label set hashes alike whatever its form:
    /// a quoted or blank-separated label is written out in this form first).
    #[inline]
    pub(super) fn add_text(&mut self, bytes: &[u8], range: std::ops::Range<usize>) {
        self.add_hash(mix_bytes_in(self.key, bytes, range));
    }

    fn add_hash(&mut self, hash: u64) {
        // One avalanche per label, so that a sum of hashes does not cancel.
        let mixed = (hash ^ (hash >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        self.sum = self.sum.wrapping_add(mixed ^ (mixed >> 32));
    }

    pub(super) fn finish(self) -> u64 {
        self.sum
    }
}

/// A key drawn once per process from the operating system's randomness
/// (through std's `RandomState`). The hashes the check trusts (label sets,
/// and the fingerprints of what it remembers) start from it, so that a
/// container cannot write label text that collides on purpose: a
/// collision would let a family the strict parser refuses through, and it
/// would refuse the whole body.
pub(super) fn hash_key() -> u64 {
    static KEY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *KEY.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x006b_6579);
        hasher.finish()
    })
}

const MIX_K: u64 = 0x9e37_79b9_7f4a_7c15;

/// One word into a hash: a multiply, then the high half folded into the
/// low, so that no difference between two words passes a round whatever
/// the hash before it (FxHash's rotate and multiply let a difference in a
/// word's top bit through unchanged, whatever the key).
#[inline]
pub(super) fn mix(hash: u64, word: u64) -> u64 {
    let x = (hash ^ word).wrapping_mul(MIX_K);
    x ^ (x >> 32)
}

#[inline]
fn word_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Bytes into a hash, sixteen at a time: the two words of each step are
/// multiplied into 128 bits (one with the hash so far, one with a fixed odd
/// word) and the halves folded together, so the chain from step to step is
/// one multiply long. (A [`mix`] a word made the parser's series hash, a
/// chain of multiplies on every sample's label set, the hottest lines of a
/// remembered body.) The last step reads the last sixteen bytes (words
/// overlapping those before), or a short piece's bytes as little-endian
/// words padded with zeros, and takes the length. A step's product is
/// zero, forgetting what came before, only where a word equals the hash so
/// far, which starts from the process' random key and is unknown to a
/// container, or where the other word is [`fold`]'s constant (with the
/// length in its low bytes), whose bytes `7f b9` no UTF-8 text holds.
#[inline(always)]
fn mix_bytes(mut hash: u64, bytes: &[u8]) -> u64 {
    let len = bytes.len();
    let mut at = 0;
    while at + 16 < len {
        hash = fold(hash ^ word_at(bytes, at), word_at(bytes, at + 8));
        at += 16;
    }
    let (first, second) = if len >= 16 {
        (word_at(bytes, len - 16), word_at(bytes, len - 8))
    } else if len >= 8 {
        (word_at(bytes, 0), word_at(bytes, len - 8))
    } else {
        (short_word(bytes), 0)
    };
    fold(hash ^ first, second ^ len as u64)
}

/// One step of [`mix_bytes`]: `a` times `b` xor a constant, the 128-bit
/// product's halves folded together.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b ^ MIX_K);
    (product as u64) ^ ((product >> 64) as u64)
}

/// The fingerprint of the text at `range` in `body`, after `hash` (the
/// text before it, or [`hash_key`]): [`mix_bytes`] of it.
#[inline]
pub(super) fn fingerprint_text(hash: u64, body: &[u8], range: Range<usize>) -> u64 {
    mix_bytes_in(hash, body, range)
}

/// `mix_bytes(hash, &body[range])`; a piece shorter than a word is read as
/// one masked word when the body goes on for eight bytes from its start.
#[inline(always)]
fn mix_bytes_in(hash: u64, body: &[u8], range: std::ops::Range<usize>) -> u64 {
    let len = range.len();
    if len < 8 && range.start + 8 <= body.len() {
        let mask = if len == 0 {
            0
        } else {
            u64::MAX >> (64 - 8 * len)
        };
        let word = word_at(body, range.start) & mask;
        return fold(hash ^ word, len as u64);
    }
    mix_bytes(hash, &body[range])
}

fn short_word(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |word, &b| (word << 8) | u64::from(b))
}

/// Keys that are hashes already.
#[derive(Default)]
pub(super) struct IdentityHasher(u64);

impl std::hash::Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// A set of 64-bit hashes, used as they are (hashing them again is waste).
pub(super) type HashSet =
    std::collections::HashSet<u64, std::hash::BuildHasherDefault<IdentityHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A remembered family's suffix told by its length is the one its
    /// bytes name, for every suffix the types it is used for may have
    /// (and none, a text counter's).
    #[test]
    fn suffixes_are_told_apart_by_length_in_the_remembered_types() {
        let mut checked = 0;
        for t in OpenMetricsType::ALL
            .into_iter()
            .filter(|&t| Check::takes_known(t))
        {
            for suffix in t.suffixes().iter().copied().chain([&b""[..]]) {
                assert_eq!(
                    Suffix::of_length(t, suffix.len()),
                    Suffix::of(suffix),
                    "{t:?} {}",
                    String::from_utf8_lossy(suffix)
                );
                assert_eq!(Suffix::by_length(t).get(suffix.len()), Suffix::of(suffix));
                checked += 1;
            }
        }
        assert!(checked >= 14);
    }

    #[test]
    fn integral_values_are_the_ones_without_a_fraction() {
        let values = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            -1.5,
            1e-300,
            4_503_599_627_370_495.5,
            4_503_599_627_370_496.0,
            9_007_199_254_740_993.0,
            9.223_372_036_854_776e18,
            -9.223_372_036_854_776e18,
            1.8e19,
            1e300,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        for value in values {
            assert_eq!(is_integral(value), value.fract() == 0.0, "{value}");
        }
    }

    /// Reads an OpenMetrics timestamp (seconds) as Prometheus does: a
    /// float, times 1000, truncated toward zero (saturating, as Rust's `as`
    /// does; Go's conversion of an out-of-range float is undefined).
    fn millis_of_seconds(seconds: &[u8]) -> Option<i64> {
        let seconds: f64 = std::str::from_utf8(seconds).ok()?.parse().ok()?;
        seconds.is_finite().then_some((seconds * 1000.0) as i64)
    }

    #[test]
    fn timestamps_read_back_to_the_same_milliseconds() {
        let cases = [
            0i64,
            1,
            999,
            1000,
            1001,
            1_395_066_363_000,
            1_395_066_363_123,
            1_700_000_000_001,
            1_700_000_000_999,
            4_102_444_800_007,
            -1,
            -1001,
        ];
        for millis in cases {
            let mut out = Vec::new();
            write_seconds_of_millis(millis, &mut out);
            let text = String::from_utf8(out).unwrap();
            assert_eq!(
                millis_of_seconds(text.as_bytes()),
                Some(millis),
                "{millis} written as {text}"
            );
        }
        // Every millisecond of a whole second round-trips.
        for millis in 1_733_000_000_000..1_733_000_001_000 {
            let mut out = Vec::new();
            write_seconds_of_millis(millis, &mut out);
            assert_eq!(millis_of_seconds(&out), Some(millis));
        }
    }

    fn sample(suffix: &[u8], group: u64, bound: Option<f64>, value: f64) -> CheckedSample {
        CheckedSample {
            suffix: Suffix::of(suffix),
            group,
            bound,
            value,
            timestamp: None,
            has_state_label: false,
        }
    }

    fn timed(sample: CheckedSample, millis: i64) -> CheckedSample {
        CheckedSample {
            timestamp: Some(millis),
            ..sample
        }
    }

    fn checks(family_type: OpenMetricsType, samples: &[CheckedSample]) -> bool {
        let mut check = Check::new(family_type);
        for s in samples {
            check.sample(s);
        }
        check.finish()
    }

    #[test]
    fn labels_hash_alike_in_the_body_and_alone() {
        let body = b"abcdefghijklmnopqrstuvwxyz0123456789";
        for start in 0..body.len() {
            for end in start..=body.len() {
                let mut alone = GroupHash::new();
                alone.add_text(&body[start..end], 0..end - start);
                let mut within = GroupHash::new();
                within.add_text(body, start..end);
                assert_eq!(alone.finish(), within.finish(), "{start} {end}");
            }
        }
    }

    /// prometheus_client's reading of a timestamp, to the nanosecond.
    #[test]
    fn timestamps_compare_as_the_strict_reader_reads_them() {
        let cases: [(&str, i64); 9] = [
            ("1", 1_000_000_000),
            ("1.5", 1_500_000_000),
            ("1.0001", 1_000_100_000),
            ("1.0000000019", 1_000_000_001),
            ("-1.5", -1_500_000_000),
            // Its sign is the whole seconds': `-0` is none.
            ("-0.5", 500_000_000),
            ("1e3", INEXACT),
            ("1.5e3", INEXACT),
            ("99999999999999999999", INEXACT),
        ];
        for (text, stamp) in cases {
            assert_eq!(stamp_of_seconds(text.as_bytes()), stamp, "{text}");
        }
        assert_eq!(stamp_of_millis(1_500), 1_500_000_000);
        assert_eq!(stamp_of_millis(i64::MAX), INEXACT);
    }

    #[test]
    fn suffix_classes_match_the_suffix_lists() {
        use OpenMetricsType as T;
        let others: [&[u8]; 2] = [b"_other", b"_Total"];
        let names: Vec<&[u8]> = ALL_SUFFIXES.iter().chain(&others).copied().collect();
        for t in T::ALL {
            for &name in &names {
                assert_eq!(
                    Suffix::of(name).allowed_in(t),
                    t.suffixes().contains(&name),
                    "{t:?} {}",
                    String::from_utf8_lossy(name)
                );
            }
        }
    }

    #[test]
    fn the_strict_parsers_rules() {
        use OpenMetricsType as T;
        let inf = f64::INFINITY;
        let good_histogram = [
            sample(b"_bucket", 1, Some(0.5), 1.0),
            sample(b"_bucket", 1, Some(inf), 2.0),
            sample(b"_count", 1, None, 2.0),
            sample(b"_sum", 1, None, 3.0),
            sample(b"_bucket", 2, Some(inf), 0.0),
            sample(b"_count", 2, None, 0.0),
            sample(b"_sum", 2, None, 0.0),
        ];
        assert!(checks(T::Histogram, &good_histogram));
        let at_one_time = good_histogram.map(|sample| timed(sample, 1000));
        assert!(checks(T::Histogram, &at_one_time));
        let table: &[(&str, OpenMetricsType, &[CheckedSample])] = &[
            (
                "no +Inf bucket",
                T::Histogram,
                &[sample(b"_bucket", 1, Some(0.5), 1.0)],
            ),
            (
                "count is not the +Inf bucket",
                T::Histogram,
                &[
                    sample(b"_bucket", 1, Some(inf), 2.0),
                    sample(b"_count", 1, None, 3.0),
                    sample(b"_sum", 1, None, 3.0),
                ],
            ),
            (
                "a histogram's samples at two times",
                T::Histogram,
                &[
                    timed(sample(b"_bucket", 1, Some(1.0), 1.0), 1000),
                    timed(sample(b"_bucket", 1, Some(inf), 2.0), 2000),
                    timed(sample(b"_count", 1, None, 2.0), 2000),
                    timed(sample(b"_sum", 1, None, 3.0), 2000),
                ],
            ),
            (
                "a count twice in a metric",
                T::Histogram,
                &[
                    sample(b"_bucket", 1, Some(inf), 4.0),
                    sample(b"_count", 1, None, 2.0),
                    sample(b"_sum", 1, None, 3.0),
                    sample(b"_count", 1, None, 4.0),
                ],
            ),
            (
                "a sum twice in a metric",
                T::Histogram,
                &[
                    sample(b"_bucket", 1, Some(inf), 4.0),
                    sample(b"_count", 1, None, 4.0),
                    sample(b"_sum", 1, None, 3.0),
                    sample(b"_sum", 1, None, 3.0),
                ],
            ),
            (
                "buckets out of order",
                T::Histogram,
                &[
                    sample(b"_bucket", 1, Some(1.0), 1.0),
                    sample(b"_bucket", 1, Some(0.5), 1.0),
                    sample(b"_bucket", 1, Some(inf), 1.0),
                ],
            ),
            (
                "a metric's samples apart",
                T::Counter,
                &[
                    sample(b"_total", 1, None, 1.0),
                    sample(b"_total", 2, None, 1.0),
                    sample(b"_created", 1, None, 1.0),
                ],
            ),
            (
                "negative counter",
                T::Counter,
                &[sample(b"_total", 1, None, -1.0)],
            ),
            (
                "NaN counter",
                T::Counter,
                &[sample(b"_total", 1, None, f64::NAN)],
            ),
            (
                "a counter sample without _total",
                T::Counter,
                &[sample(b"", 1, None, 1.0)],
            ),
            ("info of 2", T::Info, &[sample(b"_info", 1, None, 2.0)]),
            (
                "quantile past 1",
                T::Summary,
                &[sample(b"", 1, Some(1.5), 1.0)],
            ),
            (
                "fractional bucket",
                T::Histogram,
                &[sample(b"_bucket", 1, Some(inf), 0.5)],
            ),
        ];
        for (what, family_type, samples) in table {
            assert!(!checks(*family_type, samples), "{what}");
        }
    }
}
