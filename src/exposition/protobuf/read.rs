//! The reader: one pass over a body of delimited `io.prometheus.client.MetricFamily`
//! messages (each a varint length, then the message) that validates it whole and
//! builds an index of families and metrics as offsets into the body.
//!
//! What is checked, and why: everything Prometheus' scraper (2.42,
//! `model/textparse/protobufparse.go` and the scrape loop) would refuse, so a
//! container's bad body fails alone instead of the whole merged response:
//! well-formed wire data (varints, lengths inside their message, known fields
//! with their declared wire type), legacy metric and label names (we never ask
//! for UTF-8 names) not starting with `__`, UTF-8 strings, no negative
//! timestamp (text readers refuse one), each label name once per metric, no `le`
//! label on a histogram's metric nor `quantile` on a summary's (they would
//! clash with the bucket and quantile labels), a known metric type, and native
//! histograms whose spans announce as many buckets as there are deltas or
//! counts, with a schema from -4 to 8. Unknown fields are skipped by wire type.
//!
//! Invariants of a successfully built [`Index`]:
//! - every span points inside the body it was built from (bodies < 4 GiB);
//! - families appear in order of their first message and have at least one
//!   metric (empty families are dropped, as Prometheus skips them); a name
//!   that comes back in a body joins its first family if the type agrees
//!   (what client_golang's `Gatherers` would have done), else the body is
//!   refused;
//! - `metrics` is grouped by family (`Family::metrics` is a range of it);
//! - the index costs at most the body's size plus [`INDEX_SLACK_BYTES`]: a body
//!   of tiny metrics is refused (`TooManyMetrics`) rather than indexed.

use std::fmt;

use super::wire::{fail, key, zigzag, Fields, WireType};
use crate::exposition::parse::Span;
use crate::exposition::text::{
    all_in_class, hash_name, is_label_start, is_metric_start, same_bytes, NameTable,
    LABEL_CONTINUE, METRIC_CONTINUE,
};

/// Why a protobuf body was rejected, and at which byte of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtoError {
    pub offset: u64,
    pub kind: ProtoErrorKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoErrorKind {
    TooLarge,
    Truncated,
    Varint,
    WireType,
    FieldNumber,
    Nesting,
    MetricName,
    LabelName,
    DuplicateLabel,
    ReservedLabel,
    InvalidUtf8,
    MetricType,
    Schema,
    SpanOffset,
    BucketCount,
    TooManyMetrics,
    FamilyType,
    ReservedLabelName,
    NegativeTimestamp,
}

impl ProtoErrorKind {
    pub fn message(self) -> &'static str {
        match self {
            ProtoErrorKind::TooLarge => "expected a body smaller than 4 GiB",
            ProtoErrorKind::Truncated => "expected a length or value that ends inside its message",
            ProtoErrorKind::Varint => "expected a varint of at most 10 bytes",
            ProtoErrorKind::WireType => "expected the wire type the field is declared with",
            ProtoErrorKind::FieldNumber => "expected a field number from 1 to 2^29-1",
            ProtoErrorKind::Nesting => "expected groups nested at most 16 deep",
            ProtoErrorKind::MetricName => "expected a metric name [a-zA-Z_:][a-zA-Z0-9_:]*",
            ProtoErrorKind::LabelName => "expected a label name [a-zA-Z_][a-zA-Z0-9_]*",
            ProtoErrorKind::DuplicateLabel => "expected each label name at most once per metric",
            ProtoErrorKind::ReservedLabel => {
                "expected no le label on a histogram's metric nor quantile on a summary's"
            }
            ProtoErrorKind::InvalidUtf8 => "expected a UTF-8 string",
            ProtoErrorKind::MetricType => {
                "expected a metric type from 0 (counter) to 5 (gauge histogram)"
            }
            ProtoErrorKind::Schema => "expected a native histogram schema from -4 to 8",
            ProtoErrorKind::SpanOffset => {
                "expected a non-negative offset for every span after the first"
            }
            ProtoErrorKind::BucketCount => {
                "expected as many bucket deltas or counts as the spans announce, not both"
            }
            ProtoErrorKind::TooManyMetrics => "expected fewer metrics for the body's size",
            ProtoErrorKind::FamilyType => "expected a family name that comes back to keep its type",
            ProtoErrorKind::ReservedLabelName => {
                "expected a label name that does not start with __"
            }
            ProtoErrorKind::NegativeTimestamp => "expected a timestamp of 0 or more milliseconds",
        }
    }
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte {}: {}", self.offset, self.kind.message())
    }
}

impl std::error::Error for ProtoError {}

/// `io.prometheus.client.MetricType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::exposition) enum MetricType {
    Counter,
    Gauge,
    Summary,
    Untyped,
    Histogram,
    GaugeHistogram,
}

impl MetricType {
    pub(in crate::exposition) fn from_wire(value: u64) -> Option<MetricType> {
        Some(match value {
            0 => MetricType::Counter,
            1 => MetricType::Gauge,
            2 => MetricType::Summary,
            3 => MetricType::Untyped,
            4 => MetricType::Histogram,
            5 => MetricType::GaugeHistogram,
            _ => return None,
        })
    }

    pub(in crate::exposition) fn to_wire(self) -> u64 {
        match self {
            MetricType::Counter => 0,
            MetricType::Gauge => 1,
            MetricType::Summary => 2,
            MetricType::Untyped => 3,
            MetricType::Histogram => 4,
            MetricType::GaugeHistogram => 5,
        }
    }
}

/// Field numbers of `Metric`.
pub(in crate::exposition) mod metric_field {
    pub(in crate::exposition) const LABEL: u32 = 1;
    pub(in crate::exposition) const GAUGE: u32 = 2;
    pub(in crate::exposition) const COUNTER: u32 = 3;
    pub(in crate::exposition) const SUMMARY: u32 = 4;
    pub(in crate::exposition) const UNTYPED: u32 = 5;
    pub(in crate::exposition) const TIMESTAMP_MS: u32 = 6;
    pub(in crate::exposition) const HISTOGRAM: u32 = 7;
}

/// Field numbers of `Histogram`.
pub(in crate::exposition) mod histogram_field {
    pub(in crate::exposition) const SAMPLE_COUNT: u32 = 1;
    pub(in crate::exposition) const SAMPLE_SUM: u32 = 2;
    pub(in crate::exposition) const BUCKET: u32 = 3;
    pub(in crate::exposition) const SAMPLE_COUNT_FLOAT: u32 = 4;
    pub(in crate::exposition) const SCHEMA: u32 = 5;
    pub(in crate::exposition) const ZERO_THRESHOLD: u32 = 6;
    pub(in crate::exposition) const ZERO_COUNT: u32 = 7;
    pub(in crate::exposition) const ZERO_COUNT_FLOAT: u32 = 8;
    pub(in crate::exposition) const NEGATIVE_SPAN: u32 = 9;
    pub(in crate::exposition) const NEGATIVE_DELTA: u32 = 10;
    pub(in crate::exposition) const NEGATIVE_COUNT: u32 = 11;
    pub(in crate::exposition) const POSITIVE_SPAN: u32 = 12;
    pub(in crate::exposition) const POSITIVE_DELTA: u32 = 13;
    pub(in crate::exposition) const POSITIVE_COUNT: u32 = 14;
    pub(in crate::exposition) const CREATED_TIMESTAMP: u32 = 15;
    pub(in crate::exposition) const EXEMPLARS: u32 = 16;
}

/// The metric's label fields are not all before its other fields: the
/// writer cannot insert the container label with two copies.
pub(in crate::exposition) const LABELS_INTERLEAVED: u8 = 1;
/// The metric carries a native histogram (spans, zero bucket).
pub(in crate::exposition) const NATIVE_HISTOGRAM: u8 = 2;
/// The metric has a label named `le` / `quantile` (checked against the
/// family's type once the whole family message is read).
const HAS_LE: u8 = 4;
const HAS_QUANTILE: u8 = 8;

/// One `Metric` message: its content's range in the body.
#[derive(Clone, Copy, Debug)]
pub(in crate::exposition) struct Metric {
    pub(in crate::exposition) start: u32,
    pub(in crate::exposition) end: u32,
    /// End of the label fields that open the message (`start` when none).
    pub(in crate::exposition) labels_end: u32,
    pub(in crate::exposition) flags: u8,
    /// One bit per label name (by [`label_bit`]): the writer looks for a
    /// label named like the container label only in metrics whose bit is
    /// set. Fits in the record's padding.
    pub(in crate::exposition) label_bits: u16,
}

/// A label name's bit in [`Metric::label_bits`]: cheap (length and two
/// bytes), since it is computed for every label of a body.
#[inline]
pub(in crate::exposition) fn label_bit(name: &[u8]) -> u16 {
    let first = name.first().copied().unwrap_or(0) as usize;
    let last = name.last().copied().unwrap_or(0) as usize;
    1 << ((name.len().wrapping_mul(7) ^ first ^ last.wrapping_mul(3)) & 15)
}

#[derive(Clone, Copy, Debug)]
pub(in crate::exposition) struct Family {
    /// In the body: the raw bytes of the `name` string.
    pub(in crate::exposition) name: Span,
    pub(in crate::exposition) hash: u32,
    /// In the body: the raw (unescaped) help string.
    pub(in crate::exposition) help: Option<Span>,
    pub(in crate::exposition) metric_type: MetricType,
    /// Range of `Index::metrics`.
    pub(in crate::exposition) metrics: Span,
    /// Of its metrics, what lets the writer size and copy them without
    /// looking at each: the sum and the largest of their message sizes,
    /// the union of their `label_bits` and of their flags, and how many
    /// carry a native histogram.
    pub(in crate::exposition) metric_bytes: u32,
    pub(in crate::exposition) largest_metric: u32,
    pub(in crate::exposition) label_bits: u16,
    pub(in crate::exposition) flags: u8,
    pub(in crate::exposition) native_histograms: u32,
}

/// Extra bytes of index allowed beyond the body's size.
pub const INDEX_SLACK_BYTES: usize = 64 * 1024;

/// Label sets up to this many names are checked for duplicates pairwise;
/// wider ones by sorting (a hostile metric with 10^5 labels stays n log n).
const PAIRWISE_LABEL_CHECK: usize = 16;

/// Two bits per label name present anywhere in a body (a Bloom filter of
/// 1024 bits, k = 2: about 1% false positives for 60 names): lets the writer
/// skip looking for the container label in bodies without it. Only names
/// that do not repeat the previous metric's are inserted, so the hash is
/// rarely computed.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(in crate::exposition) struct NameFilter([u64; 16]);

impl NameFilter {
    fn bits(name: &[u8]) -> [usize; 2] {
        let hash = hash_name(name) as usize;
        [hash & 1023, (hash >> 10) & 1023]
    }

    fn insert(&mut self, name: &[u8]) {
        for bit in NameFilter::bits(name) {
            self.0[bit / 64] |= 1 << (bit % 64);
        }
    }

    pub(in crate::exposition) fn may_contain(&self, name: &[u8]) -> bool {
        NameFilter::bits(name)
            .iter()
            .all(|&bit| self.0[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

/// The index of one protobuf body; buffers are kept for the next body.
#[derive(Default)]
pub(in crate::exposition) struct Index {
    pub(in crate::exposition) families: Vec<Family>,
    pub(in crate::exposition) metrics: Vec<Metric>,
    pub(in crate::exposition) label_names: NameFilter,
    /// Metrics that carry a native histogram.
    pub(in crate::exposition) native_histograms: usize,
    /// Scratch: names equal to the label names of the metric read last
    /// (consecutive metrics of a family repeat their names in order: a
    /// repeated name is compared, not validated again), and the names of
    /// the metric being read once one of them does not repeat.
    previous_labels: Vec<Span>,
    seen_labels: Vec<Span>,
    sorted_labels: Vec<Span>,
    /// Bytes the index may take for the current body.
    budget: usize,
    /// Family by name, to join the messages of one name.
    table: NameTable,
    /// (family, metrics) of each family message, in body order: enough to
    /// regroup the metrics when a name comes back.
    runs: Vec<(u32, u32)>,
    regrouped: Vec<Metric>,
    starts: Vec<u32>,
}

/// Per-side counts of a native histogram, checked when its message ends.
#[derive(Default)]
struct Buckets {
    spans: u32,
    announced: u64,
    deltas: u64,
    counts: u64,
}

impl Index {
    pub(in crate::exposition) fn clear(&mut self) {
        self.families.clear();
        self.metrics.clear();
        self.label_names = NameFilter::default();
        self.native_histograms = 0;
        self.seen_labels.clear();
        self.previous_labels.clear();
        self.table.clear();
        self.runs.clear();
    }

    pub(in crate::exposition) fn shrink(&mut self) {
        fn shrink_vec<T>(v: &mut Vec<T>) {
            if v.capacity() > 1024 && v.len() * 4 < v.capacity() {
                v.shrink_to(v.len() * 2);
            }
        }
        shrink_vec(&mut self.families);
        shrink_vec(&mut self.metrics);
        shrink_vec(&mut self.runs);
        self.sorted_labels = Vec::new();
        self.regrouped = Vec::new();
        self.starts = Vec::new();
        self.table.shrink();
    }

    pub(in crate::exposition) fn capacity_bytes(&self) -> usize {
        fn bytes<T>(v: &Vec<T>) -> usize {
            v.capacity() * std::mem::size_of::<T>()
        }
        bytes(&self.families)
            + bytes(&self.metrics)
            + bytes(&self.seen_labels)
            + bytes(&self.previous_labels)
            + bytes(&self.sorted_labels)
            + bytes(&self.runs)
            + bytes(&self.regrouped)
            + bytes(&self.starts)
            + self.table.capacity_bytes()
    }

    fn used_bytes(&self) -> usize {
        self.families.len() * std::mem::size_of::<Family>()
            + self.metrics.len() * std::mem::size_of::<Metric>()
            + self.runs.len() * std::mem::size_of::<(u32, u32)>()
    }

    /// The most metrics the index may hold while families and runs stay
    /// as they are: past it, `used_bytes` would exceed the budget.
    fn metric_limit(&self) -> usize {
        let others = self.families.len() * std::mem::size_of::<Family>()
            + self.runs.len() * std::mem::size_of::<(u32, u32)>();
        self.budget.saturating_sub(others) / std::mem::size_of::<Metric>()
    }

    /// Validates `body` and indexes it. On error the index is left empty.
    /// Out of line: a snapshot's `index` stays small where a text body's
    /// parser is inlined.
    #[inline(never)]
    pub(in crate::exposition) fn build(&mut self, body: &[u8]) -> Result<(), ProtoError> {
        self.clear();
        let result = self.parse(body);
        if result.is_err() {
            self.clear();
        }
        result
    }

    fn parse(&mut self, b: &[u8]) -> Result<(), ProtoError> {
        if b.len() >= u32::MAX as usize {
            return fail(ProtoErrorKind::TooLarge, 0);
        }
        self.budget = b.len() + INDEX_SLACK_BYTES;
        let mut stream = Fields::new(b, 0, b.len());
        let mut joined = false;
        while !stream.is_done() {
            let (start, end) = stream.len_delimited()?;
            joined |= self.family(b, start, end)?;
        }
        self.group(joined);
        Ok(())
    }

    /// Turns each family's metric count into its range of `metrics`, makes
    /// the metrics of a name that came back contiguous (a stable counting
    /// sort by family, through `regrouped`), then sums each family's
    /// metrics up for the writer.
    fn group(&mut self, joined: bool) {
        self.regroup(joined);
        for family in &mut self.families {
            let metrics = &self.metrics[family.metrics.start as usize..family.metrics.end as usize];
            let (mut bytes, mut largest, mut label_bits, mut flags, mut natives) = (0, 0, 0, 0, 0);
            for metric in metrics {
                let size = metric.end - metric.start;
                bytes += size;
                largest = largest.max(size);
                label_bits |= metric.label_bits;
                flags |= metric.flags;
                natives += u32::from(metric.flags & NATIVE_HISTOGRAM != 0);
            }
            family.metric_bytes = bytes;
            family.largest_metric = largest;
            family.label_bits = label_bits;
            family.flags = flags & (LABELS_INTERLEAVED | NATIVE_HISTOGRAM);
            family.native_histograms = natives;
        }
    }

    fn regroup(&mut self, joined: bool) {
        self.starts.clear();
        let mut next = 0u32;
        for family in &mut self.families {
            let count = family.metrics.end;
            family.metrics = Span {
                start: next,
                end: next + count,
            };
            self.starts.push(next);
            next += count;
        }
        if !joined {
            return;
        }
        self.regrouped.clear();
        self.regrouped.extend_from_slice(&self.metrics);
        let mut input = 0usize;
        for &(family, count) in &self.runs {
            for _ in 0..count {
                let at = &mut self.starts[family as usize];
                self.regrouped[*at as usize] = self.metrics[input];
                *at += 1;
                input += 1;
            }
        }
        std::mem::swap(&mut self.metrics, &mut self.regrouped);
    }

    /// Reads one `MetricFamily` message; returns whether its name came
    /// before (its metrics join that family's).
    fn family(&mut self, b: &[u8], start: usize, end: usize) -> Result<bool, ProtoError> {
        let mut fields = Fields::new(b, start, end);
        let mut name = span(start, start);
        let mut help = None;
        let mut metric_type = MetricType::Counter;
        let first_metric = self.metrics.len();
        let metric_limit = self.metric_limit();
        let mut flags = 0u8;
        const NAME: u64 = key(1, WireType::Len);
        const HELP: u64 = key(2, WireType::Len);
        const TYPE: u64 = key(3, WireType::Varint);
        const METRIC: u64 = key(4, WireType::Len);
        const UNIT: u64 = key(5, WireType::Len);
        while !fields.is_done() {
            let tag_at = fields.at;
            match fields.varint()? {
                NAME => {
                    let (s, e) = fields.len_delimited()?;
                    name = span(s, e);
                }
                HELP => {
                    let (s, e) = fields.len_delimited()?;
                    utf8(b, s, e)?;
                    help = Some(span(s, e));
                }
                TYPE => {
                    let value = fields.varint()?;
                    metric_type = MetricType::from_wire(value)
                        .map_or_else(|| fail(ProtoErrorKind::MetricType, tag_at), Ok)?;
                }
                METRIC => {
                    let (s, e) = fields.len_delimited()?;
                    let metric = self.metric(b, s, e)?;
                    flags |= metric.flags;
                    self.metrics.push(metric);
                    if self.metrics.len() > metric_limit {
                        return fail(ProtoErrorKind::TooManyMetrics, s);
                    }
                }
                // Prometheus 2.42 ignores the unit.
                UNIT => {
                    let (s, e) = fields.len_delimited()?;
                    utf8(b, s, e)?;
                }
                other => fields.other(other, tag_at, 5)?,
            }
        }
        if !is_metric_name(name.of(b)) {
            return fail(ProtoErrorKind::MetricName, name.start as usize);
        }
        let clash = match metric_type {
            MetricType::Histogram | MetricType::GaugeHistogram => HAS_LE,
            MetricType::Summary => HAS_QUANTILE,
            _ => 0,
        };
        if flags & clash != 0 {
            let at = self.metrics[first_metric..]
                .iter()
                .find(|m| m.flags & clash != 0)
                .map_or(start, |m| m.start as usize);
            return fail(ProtoErrorKind::ReservedLabel, at);
        }
        let count = (self.metrics.len() - first_metric) as u32;
        if count == 0 {
            return Ok(false);
        }
        let name_bytes = name.of(b);
        let hash = hash_name(name_bytes);
        let families = &self.families;
        let id = families.len() as u32;
        let earlier = self.table.find_or_insert(hash, id, |f| {
            let family = &families[f as usize];
            family.hash == hash && same_bytes(family.name.of(b), name_bytes)
        });
        if let Some(earlier) = earlier {
            let family = &mut self.families[earlier as usize];
            if family.metric_type != metric_type {
                return fail(ProtoErrorKind::FamilyType, name.start as usize);
            }
            family.metrics.end += count;
            if family.help.is_none() {
                family.help = help;
            }
            self.runs.push((earlier, count));
            return Ok(true);
        }
        self.runs.push((id, count));
        // `metrics.end` counts the family's metrics until `group`.
        self.families.push(Family {
            name,
            hash,
            help,
            metric_type,
            metrics: span(0, count as usize),
            metric_bytes: 0,
            largest_metric: 0,
            label_bits: 0,
            flags: 0,
            native_histograms: 0,
        });
        if self.used_bytes() > self.budget {
            return fail(ProtoErrorKind::TooManyMetrics, start);
        }
        Ok(false)
    }

    fn metric(&mut self, b: &[u8], start: usize, end: usize) -> Result<Metric, ProtoError> {
        let mut fields = Fields::new(b, start, end);
        let mut labels_end = start;
        let mut other_fields = false;
        let mut flags = 0u8;
        let mut label_bits = 0u16;
        // Whether every label so far repeats the previous metric's, in order
        // (then none is recorded), and how many there were.
        let mut repeating = true;
        let mut labels = 0;
        use metric_field as m;
        const LABEL: u64 = key(m::LABEL, WireType::Len);
        const GAUGE: u64 = key(m::GAUGE, WireType::Len);
        const UNTYPED: u64 = key(m::UNTYPED, WireType::Len);
        const COUNTER: u64 = key(m::COUNTER, WireType::Len);
        const SUMMARY: u64 = key(m::SUMMARY, WireType::Len);
        const HISTOGRAM: u64 = key(m::HISTOGRAM, WireType::Len);
        const TIMESTAMP_MS: u64 = key(m::TIMESTAMP_MS, WireType::Varint);
        while !fields.is_done() {
            let tag_at = fields.at;
            let tag = fields.varint()?;
            match tag {
                LABEL => {
                    let (s, e) = fields.len_delimited()?;
                    let name = label_pair(b, s, e)?;
                    let bytes = name.of(b);
                    let repeats = repeating
                        && self
                            .previous_labels
                            .get(labels)
                            .is_some_and(|previous| same_bytes(previous.of(b), bytes));
                    if !repeats {
                        if repeating {
                            repeating = false;
                            self.seen_labels.clear();
                            self.seen_labels
                                .extend_from_slice(&self.previous_labels[..labels]);
                        }
                        if !is_label_name(bytes) {
                            return fail(ProtoErrorKind::LabelName, name.start as usize);
                        }
                        // Reserved for Prometheus: a second `__name__` fails
                        // the scrape, Python's parser refuses any `__` name
                        // (as the text parser does).
                        if bytes.starts_with(b"__") {
                            return fail(ProtoErrorKind::ReservedLabelName, name.start as usize);
                        }
                        self.label_names.insert(bytes);
                        if self.seen_labels.len() < PAIRWISE_LABEL_CHECK
                            && self.seen_labels.iter().any(|seen| seen.of(b) == bytes)
                        {
                            return fail(ProtoErrorKind::DuplicateLabel, s);
                        }
                        self.seen_labels.push(name);
                    }
                    labels += 1;
                    label_bits |= label_bit(bytes);
                    if bytes == b"le" {
                        flags |= HAS_LE;
                    } else if bytes == b"quantile" {
                        flags |= HAS_QUANTILE;
                    }
                    if other_fields {
                        flags |= LABELS_INTERLEAVED;
                    } else {
                        labels_end = fields.at;
                    }
                }
                GAUGE | UNTYPED => {
                    let (s, e) = fields.len_delimited()?;
                    simple_value(b, s, e)?;
                }
                COUNTER => {
                    let (s, e) = fields.len_delimited()?;
                    counter(b, s, e)?;
                }
                SUMMARY => {
                    let (s, e) = fields.len_delimited()?;
                    summary(b, s, e)?;
                }
                HISTOGRAM => {
                    let (s, e) = fields.len_delimited()?;
                    if histogram(b, s, e)? {
                        flags |= NATIVE_HISTOGRAM;
                        self.native_histograms += 1;
                    }
                }
                TIMESTAMP_MS => {
                    // int64: a negative one is a ten-byte varint. Text
                    // readers refuse a negative timestamp (the text parser
                    // too), and it would be one once converted down.
                    if (fields.varint()? as i64) < 0 {
                        return fail(ProtoErrorKind::NegativeTimestamp, tag_at);
                    }
                }
                other => fields.other(other, tag_at, 7)?,
            }
            if tag != LABEL {
                other_fields = true;
            }
        }
        if repeating {
            // Its names are the first `labels` of the previous metric's.
            self.previous_labels.truncate(labels);
        } else {
            if self.seen_labels.len() > PAIRWISE_LABEL_CHECK {
                self.sorted_labels.clear();
                self.sorted_labels.extend_from_slice(&self.seen_labels);
                self.sorted_labels
                    .sort_unstable_by(|x, y| x.of(b).cmp(y.of(b)));
                if let Some(pair) = self
                    .sorted_labels
                    .windows(2)
                    .find(|pair| pair[0].of(b) == pair[1].of(b))
                {
                    return fail(ProtoErrorKind::DuplicateLabel, pair[1].start as usize);
                }
            }
            std::mem::swap(&mut self.seen_labels, &mut self.previous_labels);
        }
        Ok(Metric {
            start: start as u32,
            end: end as u32,
            labels_end: labels_end as u32,
            flags: flags & (LABELS_INTERLEAVED | NATIVE_HISTOGRAM | HAS_LE | HAS_QUANTILE),
            label_bits,
        })
    }
}

fn span(start: usize, end: usize) -> Span {
    Span {
        start: start as u32,
        end: end as u32,
    }
}

#[inline(always)]
fn utf8(b: &[u8], start: usize, end: usize) -> Result<(), ProtoError> {
    // Nearly every label value and help text is ASCII: a cheaper test.
    if is_ascii(&b[start..end]) {
        return Ok(());
    }
    utf8_slow(b, start, end)
}

/// `<[u8]>::is_ascii`, inline for the short strings of a body: the high
/// bits of its 8-byte words or-ed together, and of its last 8 bytes for the
/// rest (shorter than 8 bytes: two overlapping halves, or each byte).
#[inline(always)]
fn is_ascii(bytes: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word = |at: usize| {
        bytes
            .get(at..)
            .and_then(|rest| rest.first_chunk::<8>())
            .map_or(HIGH, |word| u64::from_le_bytes(*word))
    };
    let half = |at: usize| {
        bytes
            .get(at..)
            .and_then(|rest| rest.first_chunk::<4>())
            .map_or(HIGH, |half| u64::from(u32::from_le_bytes(*half)))
    };
    let high = match bytes.len() {
        len @ 8.. => bytes.chunks_exact(8).fold(word(len - 8), |high, chunk| {
            high | chunk
                .first_chunk::<8>()
                .map_or(HIGH, |word| u64::from_le_bytes(*word))
        }),
        len @ 4..=7 => half(0) | half(len - 4),
        _ => u64::from(bytes.iter().fold(0, |all, &c| all | c)),
    };
    high & HIGH == 0
}

#[cold]
fn utf8_slow(b: &[u8], start: usize, end: usize) -> Result<(), ProtoError> {
    match std::str::from_utf8(&b[start..end]) {
        Ok(_) => Ok(()),
        Err(e) => fail(ProtoErrorKind::InvalidUtf8, start + e.valid_up_to()),
    }
}

pub(in crate::exposition) fn is_metric_name(name: &[u8]) -> bool {
    match name.split_first() {
        Some((&first, rest)) => is_metric_start(first) && all_in_class(rest, METRIC_CONTINUE),
        None => false,
    }
}

pub(in crate::exposition) fn is_label_name(name: &[u8]) -> bool {
    match name.split_first() {
        Some((&first, rest)) => is_label_start(first) && all_in_class(rest, LABEL_CONTINUE),
        None => false,
    }
}

const LABEL_NAME: u64 = key(1, WireType::Len);
const LABEL_VALUE: u64 = key(2, WireType::Len);

/// `LabelPair`: checks the value is UTF-8 and returns the name's span (the
/// caller checks the name). The encoding every producer writes (name, then
/// value, each shorter than 128 bytes) is read without the field loop.
#[inline(always)]
fn label_pair(b: &[u8], start: usize, end: usize) -> Result<Span, ProtoError> {
    if let (Some(&0x0a), Some(&name_len)) = (b.get(start), b.get(start + 1)) {
        let name_end = start + 2 + name_len as usize;
        if name_len < 0x80 && b.get(name_end) == Some(&0x12) {
            if let Some(&value_len) = b.get(name_end + 1) {
                if value_len < 0x80 && name_end + 2 + value_len as usize == end {
                    utf8(b, name_end + 2, end)?;
                    return Ok(span(start + 2, name_end));
                }
            }
        }
    }
    label_pair_slow(b, start, end)
}

#[inline(never)]
fn label_pair_slow(b: &[u8], start: usize, end: usize) -> Result<Span, ProtoError> {
    let mut fields = Fields::new(b, start, end);
    let mut name = span(start, start);
    while !fields.is_done() {
        let tag_at = fields.at;
        match fields.varint()? {
            LABEL_NAME => {
                let (s, e) = fields.len_delimited()?;
                name = span(s, e);
            }
            LABEL_VALUE => {
                let (s, e) = fields.len_delimited()?;
                utf8(b, s, e)?;
            }
            other => fields.other(other, tag_at, 2)?,
        }
    }
    Ok(name)
}

/// A message whose known fields are all doubles or varints with the given
/// numbers (`Gauge`, `Untyped`, `Quantile`, `Timestamp`...).
fn scalars(
    b: &[u8],
    start: usize,
    end: usize,
    doubles: &[u32],
    varints: &[u32],
) -> Result<(), ProtoError> {
    let mut fields = Fields::new(b, start, end);
    while !fields.is_done() {
        let tag_at = fields.at;
        let tag = fields.tag()?;
        if doubles.contains(&tag.number) {
            if tag.wire != WireType::Fixed64 {
                return fail(ProtoErrorKind::WireType, tag_at);
            }
            fields.fixed64()?;
        } else if varints.contains(&tag.number) {
            if tag.wire != WireType::Varint {
                return fail(ProtoErrorKind::WireType, tag_at);
            }
            fields.varint()?;
        } else {
            fields.skip(tag)?;
        }
    }
    Ok(())
}

/// `Gauge`, `Untyped`: value = 1. What every producer writes (the value
/// alone: tag 0x09 and eight bytes) needs no field loop.
#[inline]
fn simple_value(b: &[u8], start: usize, end: usize) -> Result<(), ProtoError> {
    if end - start == 9 && b.get(start) == Some(&0x09) {
        return Ok(());
    }
    scalars(b, start, end, &[1], &[])
}

/// `google.protobuf.Timestamp`: seconds = 1, nanos = 2.
fn timestamp(b: &[u8], start: usize, end: usize) -> Result<(), ProtoError> {
    scalars(b, start, end, &[], &[1, 2])
}

/// `Exemplar`: label = 1, value = 2, timestamp = 3.
fn exemplar(b: &[u8], start: usize, end: usize) -> Result<(), ProtoError> {
    let mut fields = Fields::new(b, start, end);
    const LABEL: u64 = key(1, WireType::Len);
    const VALUE: u64 = key(2, WireType::Fixed64);
    const TIMESTAMP: u64 = key(3, WireType::Len);
    while !fields.is_done() {
        let tag_at = fields.at;
        match fields.varint()? {
            LABEL => {
                let (s, e) = fields.len_delimited()?;
                let name = label_pair(b, s, e)?;
                if !is_label_name(name.of(b)) {
                    return fail(ProtoErrorKind::LabelName, name.start as usize);
                }
            }
            VALUE => {
                fields.fixed64()?;
            }
            TIMESTAMP => {
                let (s, e) = fields.len_delimited()?;
                timestamp(b, s, e)?;
            }
            other => fields.other(other, tag_at, 3)?,
        }
    }
    Ok(())
}

/// `Counter`: value = 1, exemplar = 2, created_timestamp = 3.
#[inline]
fn counter(b: &[u8], start: usize, end: usize) -> Result<(), ProtoError> {
    if end - start == 9 && b.get(start) == Some(&0x09) {
        return Ok(());
    }
    counter_fields(b, start, end)
}

#[inline(never)]
fn counter_fields(b: &[u8], start: usize, end: usize) -> Result<(), ProtoError> {
    let mut fields = Fields::new(b, start, end);
    const VALUE: u64 = key(1, WireType::Fixed64);
    const EXEMPLAR: u64 = key(2, WireType::Len);
    const CREATED: u64 = key(3, WireType::Len);
    while !fields.is_done() {
        let tag_at = fields.at;
        match fields.varint()? {
            VALUE => {
                fields.fixed64()?;
            }
            EXEMPLAR => {
                let (s, e) = fields.len_delimited()?;
                exemplar(b, s, e)?;
            }
            CREATED => {
                let (s, e) = fields.len_delimited()?;
                timestamp(b, s, e)?;
            }
            other => fields.other(other, tag_at, 3)?,
        }
    }
    Ok(())
}

/// `Summary`: sample_count = 1, sample_sum = 2, quantile = 3 (quantile = 1,
/// value = 2), created_timestamp = 4.
#[inline(never)]
fn summary(b: &[u8], start: usize, end: usize) -> Result<(), ProtoError> {
    let mut fields = Fields::new(b, start, end);
    const COUNT: u64 = key(1, WireType::Varint);
    const SUM: u64 = key(2, WireType::Fixed64);
    const QUANTILE: u64 = key(3, WireType::Len);
    const CREATED: u64 = key(4, WireType::Len);
    while !fields.is_done() {
        let tag_at = fields.at;
        match fields.varint()? {
            COUNT => {
                fields.varint()?;
            }
            SUM => {
                fields.fixed64()?;
            }
            QUANTILE => {
                let (s, e) = fields.len_delimited()?;
                scalars(b, s, e, &[1, 2], &[])?;
            }
            CREATED => {
                let (s, e) = fields.len_delimited()?;
                timestamp(b, s, e)?;
            }
            other => fields.other(other, tag_at, 4)?,
        }
    }
    Ok(())
}

/// `Bucket`: cumulative_count = 1, upper_bound = 2, exemplar = 3,
/// cumulative_count_float = 4.
fn bucket(b: &[u8], start: usize, end: usize) -> Result<(), ProtoError> {
    let mut fields = Fields::new(b, start, end);
    const COUNT: u64 = key(1, WireType::Varint);
    const UPPER_BOUND: u64 = key(2, WireType::Fixed64);
    const EXEMPLAR: u64 = key(3, WireType::Len);
    const COUNT_FLOAT: u64 = key(4, WireType::Fixed64);
    while !fields.is_done() {
        let tag_at = fields.at;
        match fields.varint()? {
            COUNT => {
                fields.varint()?;
            }
            UPPER_BOUND | COUNT_FLOAT => {
                fields.fixed64()?;
            }
            EXEMPLAR => {
                let (s, e) = fields.len_delimited()?;
                exemplar(b, s, e)?;
            }
            other => fields.other(other, tag_at, 4)?,
        }
    }
    Ok(())
}

/// `BucketSpan`: offset = 1 (sint32), length = 2 (uint32). Returns both.
fn bucket_span(b: &[u8], start: usize, end: usize) -> Result<(i64, u64), ProtoError> {
    let mut fields = Fields::new(b, start, end);
    let (mut offset, mut length) = (0i64, 0u64);
    const OFFSET: u64 = key(1, WireType::Varint);
    const LENGTH: u64 = key(2, WireType::Varint);
    while !fields.is_done() {
        let tag_at = fields.at;
        match fields.varint()? {
            OFFSET => offset = zigzag(fields.varint()?),
            LENGTH => length = fields.varint()? & u64::from(u32::MAX),
            other => fields.other(other, tag_at, 2)?,
        }
    }
    Ok((offset, length))
}

/// Varints in a packed run: the bytes without their high bit each end one.
/// The last byte must end one, and no varint may exceed 10 bytes.
fn packed_varints(b: &[u8], start: usize, end: usize) -> Result<u64, ProtoError> {
    let run = &b[start..end];
    let count = run.iter().filter(|&&byte| byte < 0x80).count();
    if run.last().is_some_and(|&byte| byte >= 0x80) {
        return fail(ProtoErrorKind::Truncated, start);
    }
    if run.len() - count >= 10 {
        // Enough continuation bytes for an overlong varint: decode them.
        let mut fields = Fields::new(b, start, end);
        while !fields.is_done() {
            fields.varint()?;
        }
    }
    Ok(count as u64)
}

/// `Histogram` (classic buckets and native-histogram fields). Returns
/// whether it is a native histogram (the rule of Prometheus'
/// `isNativeHistogram`: any span, or a zero bucket).
#[inline(never)]
fn histogram(b: &[u8], start: usize, end: usize) -> Result<bool, ProtoError> {
    use histogram_field as h;
    use WireType::{Fixed64, Len, Varint};
    const SAMPLE_COUNT: u64 = key(h::SAMPLE_COUNT, Varint);
    const SAMPLE_SUM: u64 = key(h::SAMPLE_SUM, Fixed64);
    const SAMPLE_COUNT_FLOAT: u64 = key(h::SAMPLE_COUNT_FLOAT, Fixed64);
    const ZERO_COUNT_FLOAT: u64 = key(h::ZERO_COUNT_FLOAT, Fixed64);
    const ZERO_THRESHOLD: u64 = key(h::ZERO_THRESHOLD, Fixed64);
    const ZERO_COUNT: u64 = key(h::ZERO_COUNT, Varint);
    const SCHEMA: u64 = key(h::SCHEMA, Varint);
    const BUCKET: u64 = key(h::BUCKET, Len);
    const CREATED_TIMESTAMP: u64 = key(h::CREATED_TIMESTAMP, Len);
    const EXEMPLARS: u64 = key(h::EXEMPLARS, Len);
    const NEGATIVE_SPAN: u64 = key(h::NEGATIVE_SPAN, Len);
    const POSITIVE_SPAN: u64 = key(h::POSITIVE_SPAN, Len);
    // Deltas are packed (or one varint each), counts packed (or one
    // double each).
    const NEGATIVE_DELTAS: u64 = key(h::NEGATIVE_DELTA, Len);
    const NEGATIVE_DELTA: u64 = key(h::NEGATIVE_DELTA, Varint);
    const POSITIVE_DELTAS: u64 = key(h::POSITIVE_DELTA, Len);
    const POSITIVE_DELTA: u64 = key(h::POSITIVE_DELTA, Varint);
    const NEGATIVE_COUNTS: u64 = key(h::NEGATIVE_COUNT, Len);
    const NEGATIVE_COUNT: u64 = key(h::NEGATIVE_COUNT, Fixed64);
    const POSITIVE_COUNTS: u64 = key(h::POSITIVE_COUNT, Len);
    const POSITIVE_COUNT: u64 = key(h::POSITIVE_COUNT, Fixed64);
    let mut fields = Fields::new(b, start, end);
    let mut schema = 0i64;
    let mut schema_at = start;
    let mut zero_bucket = false;
    let mut negative = Buckets::default();
    let mut positive = Buckets::default();
    while !fields.is_done() {
        let tag_at = fields.at;
        let tag = fields.varint()?;
        // Fields 9 to 11 are the negative side's, 12 to 14 the positive's.
        let side = if tag < POSITIVE_SPAN {
            &mut negative
        } else {
            &mut positive
        };
        match tag {
            SAMPLE_COUNT => {
                fields.varint()?;
            }
            SAMPLE_SUM | SAMPLE_COUNT_FLOAT | ZERO_COUNT_FLOAT => {
                fields.fixed64()?;
            }
            ZERO_THRESHOLD => {
                zero_bucket |= fields.double()? > 0.0;
            }
            ZERO_COUNT => {
                zero_bucket |= fields.varint()? > 0;
            }
            SCHEMA => {
                schema_at = tag_at;
                schema = zigzag(fields.varint()?);
            }
            BUCKET => {
                let (s, e) = fields.len_delimited()?;
                bucket(b, s, e)?;
            }
            CREATED_TIMESTAMP => {
                let (s, e) = fields.len_delimited()?;
                timestamp(b, s, e)?;
            }
            EXEMPLARS => {
                let (s, e) = fields.len_delimited()?;
                exemplar(b, s, e)?;
            }
            NEGATIVE_SPAN | POSITIVE_SPAN => {
                let (s, e) = fields.len_delimited()?;
                let (offset, length) = bucket_span(b, s, e)?;
                if side.spans > 0 && offset < 0 {
                    return fail(ProtoErrorKind::SpanOffset, s);
                }
                side.spans += 1;
                side.announced += length;
            }
            NEGATIVE_DELTAS | POSITIVE_DELTAS => {
                let (s, e) = fields.len_delimited()?;
                side.deltas += packed_varints(b, s, e)?;
            }
            NEGATIVE_DELTA | POSITIVE_DELTA => {
                fields.varint()?;
                side.deltas += 1;
            }
            NEGATIVE_COUNTS | POSITIVE_COUNTS => {
                let (s, e) = fields.len_delimited()?;
                if (e - s) % 8 != 0 {
                    return fail(ProtoErrorKind::Truncated, s);
                }
                side.counts += ((e - s) / 8) as u64;
            }
            NEGATIVE_COUNT | POSITIVE_COUNT => {
                fields.fixed64()?;
                side.counts += 1;
            }
            other => fields.other(other, tag_at, 16)?,
        }
    }
    for side in [&negative, &positive] {
        let matches = (side.deltas == side.announced && side.counts == 0)
            || (side.counts == side.announced && side.deltas == 0);
        if !matches {
            return fail(ProtoErrorKind::BucketCount, start);
        }
    }
    let native = negative.spans > 0 || positive.spans > 0 || zero_bucket;
    if native && !(-4..=8).contains(&schema) {
        return fail(ProtoErrorKind::Schema, schema_at);
    }
    Ok(native)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_ascii_matches_the_standard_library() {
        for len in 0..40 {
            let ascii = vec![b'a'; len];
            assert!(is_ascii(&ascii), "{len}");
            for at in 0..len {
                let mut bytes = ascii.clone();
                bytes[at] = 0x80 | (at as u8);
                assert_eq!(is_ascii(&bytes), bytes.is_ascii(), "{len} {at}");
            }
        }
    }
}
