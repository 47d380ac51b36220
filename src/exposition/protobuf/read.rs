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
//! Every message is walked by one loop over its field table (`walk`, and
//! the tables of `metrics.proto` in `table`); the messages whose fields the
//! index records have a reader that the table hands those fields to.
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

use super::wire::{fail, zigzag, Fields, WireType};
pub use super::wire::{ProtoError, ProtoErrorKind};
use crate::exposition::parse::Span;
use crate::exposition::text::{
    all_in_class, hash_name, is_label_start, is_metric_start, same_bytes, NameTable,
    LABEL_CONTINUE, METRIC_CONTINUE,
};

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
        let first_metric = self.metrics.len();
        let mut family = FamilyRead {
            metric_limit: self.metric_limit(),
            index: self,
            name: span(start, start),
            help: None,
            metric_type: MetricType::Counter,
            flags: 0,
        };
        walk(&mut family, b, start, end)?;
        let FamilyRead {
            name,
            help,
            metric_type,
            flags,
            ..
        } = family;
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

    /// Reads one `Metric` message into its record.
    #[inline(always)]
    fn metric(&mut self, b: &[u8], start: usize, end: usize) -> Result<Metric, ProtoError> {
        let mut metric = MetricRead {
            index: self,
            labels_end: start,
            flags: 0,
            label_bits: 0,
            repeating: true,
            labels: 0,
        };
        walk(&mut metric, b, start, end)?;
        let MetricRead {
            labels_end,
            flags,
            label_bits,
            repeating,
            labels,
            ..
        } = metric;
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

// The walk. Every client_model message is read by one loop, `walk`, that
// looks each field's key (number << 3 | wire type) up in the message's
// table and does what the table says: read a number or a double and drop
// it, check a string is UTF-8, walk a nested message by its own table, or
// hand the value to the message's reader (the family's name, a metric's
// labels, a histogram's spans...), which records what the index needs. A
// key the table does not declare is refused when its number is one of the
// message's (another wire type: what Go's unmarshaller refuses) and
// skipped by its wire type otherwise (a newer client_model's field).
//
// A table is written as rows, `number, wire type => what to do`, and
// compiled into a `match` on the key (`Message::then`) that is inlined with
// `walk` into each message's reader, where the table is a constant. The
// messages with nothing to record that a recording message holds (a
// histogram's buckets, a metric's value) are walked inline in its reader,
// those they hold in turn (exemplars, timestamps) out of line, which also
// ends the recursion. This costs the instructions the hand-written readers
// did, within about 1% (callgrind on the protobuf_throughput bodies);
// tables as arrays indexed by the key, walked through a reference, cost
// 17% more on native histograms (a call per bucket, a load and a second
// jump per field).

/// What the walk does with a field whose key its message's table declares.
#[derive(Clone, Copy)]
enum Then<H> {
    /// No row: refused when the number is the message's, skipped by its
    /// wire type otherwise.
    Other,
    /// A number (varint), read and dropped.
    Varint,
    /// A double or fixed64, read and dropped.
    Fixed64,
    /// A string: it must be UTF-8.
    Text,
    /// A `LabelPair` outside a metric's labels (an exemplar's): its value
    /// UTF-8, its name a label name.
    Label,
    /// A message with nothing to record, walked by its own table.
    Walk(Plain),
    /// The same for `Gauge`, `Untyped` and `Counter`, whose `value` field
    /// alone (tag 0x09 and eight bytes: what every producer writes) is
    /// taken without walking.
    Value(Plain),
    /// A field the message's [`Reader`] records: handed to it with the
    /// fields positioned at its value.
    Hook(H),
}

/// A client_model message: its field table.
trait Message {
    /// The fields its reader records.
    type Hook: Copy;
    /// Fields 1 to `LAST` are the message's (client_model numbers its
    /// fields without gaps).
    const LAST: u32;
    /// The table's row for a key.
    fn then(key: u64) -> Then<Self::Hook>;
}

/// Checked when compiled, for each row: its action reads its wire type,
/// and its number is one of the message's.
// Called only from `const _` items, which Rust 1.80's dead-code lint does
// not count as uses.
#[allow(dead_code)]
const fn row_is_sound<H: Copy>(number: u32, wire: WireType, last: u32, then: Then<H>) -> bool {
    let reads = match then {
        Then::Varint => WireType::Varint,
        Then::Fixed64 => WireType::Fixed64,
        Then::Text | Then::Label | Then::Walk(_) | Then::Value(_) => WireType::Len,
        Then::Hook(_) => wire,
        Then::Other => return false,
    };
    reads as u8 == wire as u8 && number >= 1 && number <= last
}

/// A row's key as a constant (as `wire::key` makes it), so that a table is
/// a `match` on the key.
struct Key<const NUMBER: u32, const WIRE: u8>;

impl<const NUMBER: u32, const WIRE: u8> Key<NUMBER, WIRE> {
    const KEY: u64 = (NUMBER as u64) << 3 | WIRE as u64;
}

/// A message and its table, written as `metrics.proto` declares it:
/// `Name: hooks, last number; number, wire type => what to do, ...`.
macro_rules! message {
    ($(#[$doc:meta])* $name:ident: $hook:ty, last $last:expr;
     $($number:expr, $wire:ident => $then:expr,)*) => {
        $(#[$doc])*
        pub(super) struct $name;

        impl Message for $name {
            type Hook = $hook;

            const LAST: u32 = $last;

            #[inline(always)]
            fn then(key: u64) -> Then<$hook> {
                match key {
                    $(Key::<{ $number }, { WireType::$wire as u8 }>::KEY => $then,)*
                    _ => Then::Other,
                }
            }
        }

        const _: () = {
            $(assert!(row_is_sound::<$hook>($number, WireType::$wire, $last, $then));)*
        };
    };
}

/// What a message's reader does with the fields its table hooks.
trait Reader {
    type Message: Message;

    /// Walks a message with nothing to record that this one holds:
    /// inline, but in the reader of such a message (out of line there,
    /// which also ends the recursion).
    #[inline(always)]
    fn plain(plain: Plain, b: &[u8], start: usize, end: usize) -> Result<(), ProtoError> {
        walk_plain(plain, b, start, end)
    }

    /// Reads the value of a hooked field whose key was at `at`.
    fn hook(
        &mut self,
        hook: <Self::Message as Message>::Hook,
        b: &[u8],
        fields: &mut Fields<'_>,
        at: usize,
    ) -> Result<(), ProtoError>;
}

/// Walks the message `b[start..end]` by its table: the one loop of the
/// reader. Inlined into each reader, where the table is a constant.
#[inline(always)]
fn walk<R: Reader>(reader: &mut R, b: &[u8], start: usize, end: usize) -> Result<(), ProtoError> {
    let mut fields = Fields::new(b, start, end);
    while !fields.is_done() {
        let at = fields.at;
        let key = fields.varint()?;
        match R::Message::then(key) {
            Then::Other => fields.other(key, at, R::Message::LAST)?,
            Then::Varint => {
                fields.varint()?;
            }
            Then::Fixed64 => {
                fields.fixed64()?;
            }
            Then::Text => {
                let (s, e) = fields.len_delimited()?;
                utf8(b, s, e)?;
            }
            Then::Label => {
                let (s, e) = fields.len_delimited()?;
                let name = label_pair(b, s, e)?;
                if !is_label_name(name.of(b)) {
                    return fail(ProtoErrorKind::LabelName, name.start as usize);
                }
            }
            Then::Walk(plain) => {
                let (s, e) = fields.len_delimited()?;
                R::plain(plain, b, s, e)?;
            }
            Then::Value(plain) => {
                let (s, e) = fields.len_delimited()?;
                if !(e - s == 9 && b[s] == 0x09) {
                    R::plain(plain, b, s, e)?;
                }
            }
            Then::Hook(hook) => reader.hook(hook, b, &mut fields, at)?,
        }
    }
    Ok(())
}

/// The hooks of a message with nothing to record: none.
#[derive(Clone, Copy)]
enum Nothing {}

/// The messages with nothing to record.
#[derive(Clone, Copy)]
enum Plain {
    Gauge,
    Counter,
    Summary,
    Quantile,
    Bucket,
    Exemplar,
    Timestamp,
}

/// The reader of a message with nothing to record.
struct PlainRead<M>(std::marker::PhantomData<M>);

impl<M: Message<Hook = Nothing>> Reader for PlainRead<M> {
    type Message = M;

    fn plain(plain: Plain, b: &[u8], start: usize, end: usize) -> Result<(), ProtoError> {
        walk_plain_out_of_line(plain, b, start, end)
    }

    fn hook(
        &mut self,
        hook: Nothing,
        _: &[u8],
        _: &mut Fields<'_>,
        _: usize,
    ) -> Result<(), ProtoError> {
        match hook {}
    }
}

/// Walks a message with nothing to record, by its table.
#[inline(always)]
fn walk_plain(plain: Plain, b: &[u8], start: usize, end: usize) -> Result<(), ProtoError> {
    #[inline(always)]
    fn by<M: Message<Hook = Nothing>>(
        b: &[u8],
        start: usize,
        end: usize,
    ) -> Result<(), ProtoError> {
        walk(&mut PlainRead::<M>(std::marker::PhantomData), b, start, end)
    }
    match plain {
        Plain::Gauge => by::<table::Gauge>(b, start, end),
        Plain::Counter => by::<table::Counter>(b, start, end),
        Plain::Summary => by::<table::Summary>(b, start, end),
        Plain::Quantile => by::<table::Quantile>(b, start, end),
        Plain::Bucket => by::<table::Bucket>(b, start, end),
        Plain::Exemplar => by::<table::Exemplar>(b, start, end),
        Plain::Timestamp => by::<table::Timestamp>(b, start, end),
    }
}

#[inline(never)]
fn walk_plain_out_of_line(
    plain: Plain,
    b: &[u8],
    start: usize,
    end: usize,
) -> Result<(), ProtoError> {
    walk_plain(plain, b, start, end)
}

/// The tables: client_model `metrics.proto` (Prometheus main's), message
/// by message. Deltas are packed (or one varint each), counts packed (or
/// one double each): both encodings are rows.
mod table {
    use super::histogram_field as h;
    use super::metric_field as m;
    use super::{
        row_is_sound, FamilyField, HistogramField, Key, Message, MetricField, Nothing, PairField,
        Plain, Side, SpanField, Then, WireType,
    };

    message! { MetricFamily: FamilyField, last 5;
        1, Len => Then::Hook(FamilyField::Name),
        2, Len => Then::Hook(FamilyField::Help),
        3, Varint => Then::Hook(FamilyField::Type),
        4, Len => Then::Hook(FamilyField::Metric),
        // Prometheus ignores the unit.
        5, Len => Then::Text,
    }

    message! { Metric: MetricField, last m::HISTOGRAM;
        m::LABEL, Len => Then::Hook(MetricField::Label),
        m::GAUGE, Len => Then::Value(Plain::Gauge),
        m::COUNTER, Len => Then::Value(Plain::Counter),
        m::SUMMARY, Len => Then::Walk(Plain::Summary),
        m::UNTYPED, Len => Then::Value(Plain::Gauge),
        m::TIMESTAMP_MS, Varint => Then::Hook(MetricField::TimestampMs),
        m::HISTOGRAM, Len => Then::Hook(MetricField::Histogram),
    }

    message! { LabelPair: PairField, last 2;
        1, Len => Then::Hook(PairField::Name),
        2, Len => Then::Text,
    }

    message! {
        /// `Gauge`, and `Untyped` (the same table): value.
        Gauge: Nothing, last 1;
        1, Fixed64 => Then::Fixed64,
    }

    message! {
        /// value, exemplar, created_timestamp.
        Counter: Nothing, last 3;
        1, Fixed64 => Then::Fixed64,
        2, Len => Then::Walk(Plain::Exemplar),
        3, Len => Then::Walk(Plain::Timestamp),
    }

    message! {
        /// sample_count, sample_sum, quantile, created_timestamp.
        Summary: Nothing, last 4;
        1, Varint => Then::Varint,
        2, Fixed64 => Then::Fixed64,
        3, Len => Then::Walk(Plain::Quantile),
        4, Len => Then::Walk(Plain::Timestamp),
    }

    message! {
        /// quantile, value.
        Quantile: Nothing, last 2;
        1, Fixed64 => Then::Fixed64,
        2, Fixed64 => Then::Fixed64,
    }

    message! {
        /// Classic buckets and native-histogram fields.
        Histogram: HistogramField, last h::EXEMPLARS;
        h::SAMPLE_COUNT, Varint => Then::Varint,
        h::SAMPLE_SUM, Fixed64 => Then::Fixed64,
        h::BUCKET, Len => Then::Walk(Plain::Bucket),
        h::SAMPLE_COUNT_FLOAT, Fixed64 => Then::Fixed64,
        h::SCHEMA, Varint => Then::Hook(HistogramField::Schema),
        h::ZERO_THRESHOLD, Fixed64 => Then::Hook(HistogramField::ZeroThreshold),
        h::ZERO_COUNT, Varint => Then::Hook(HistogramField::ZeroCount),
        h::ZERO_COUNT_FLOAT, Fixed64 => Then::Fixed64,
        h::NEGATIVE_SPAN, Len => Then::Hook(HistogramField::Span(Side::Negative)),
        h::NEGATIVE_DELTA, Len => Then::Hook(HistogramField::Deltas(Side::Negative)),
        h::NEGATIVE_DELTA, Varint => Then::Hook(HistogramField::Delta(Side::Negative)),
        h::NEGATIVE_COUNT, Len => Then::Hook(HistogramField::Counts(Side::Negative)),
        h::NEGATIVE_COUNT, Fixed64 => Then::Hook(HistogramField::Count(Side::Negative)),
        h::POSITIVE_SPAN, Len => Then::Hook(HistogramField::Span(Side::Positive)),
        h::POSITIVE_DELTA, Len => Then::Hook(HistogramField::Deltas(Side::Positive)),
        h::POSITIVE_DELTA, Varint => Then::Hook(HistogramField::Delta(Side::Positive)),
        h::POSITIVE_COUNT, Len => Then::Hook(HistogramField::Counts(Side::Positive)),
        h::POSITIVE_COUNT, Fixed64 => Then::Hook(HistogramField::Count(Side::Positive)),
        h::CREATED_TIMESTAMP, Len => Then::Walk(Plain::Timestamp),
        h::EXEMPLARS, Len => Then::Walk(Plain::Exemplar),
    }

    message! {
        /// cumulative_count, upper_bound, exemplar, cumulative_count_float.
        Bucket: Nothing, last 4;
        1, Varint => Then::Varint,
        2, Fixed64 => Then::Fixed64,
        3, Len => Then::Walk(Plain::Exemplar),
        4, Fixed64 => Then::Fixed64,
    }

    message! {
        /// offset (sint32), length (uint32).
        BucketSpan: SpanField, last 2;
        1, Varint => Then::Hook(SpanField::Offset),
        2, Varint => Then::Hook(SpanField::Length),
    }

    message! {
        /// label, value, timestamp.
        Exemplar: Nothing, last 3;
        1, Len => Then::Label,
        2, Fixed64 => Then::Fixed64,
        3, Len => Then::Walk(Plain::Timestamp),
    }

    message! {
        /// `google.protobuf.Timestamp`: seconds, nanos.
        Timestamp: Nothing, last 2;
        1, Varint => Then::Varint,
        2, Varint => Then::Varint,
    }
}

// The readers of the messages that record something.

#[derive(Clone, Copy)]
enum FamilyField {
    Name,
    Help,
    Type,
    Metric,
}

struct FamilyRead<'i> {
    index: &'i mut Index,
    metric_limit: usize,
    name: Span,
    help: Option<Span>,
    metric_type: MetricType,
    /// The union of its metrics' flags.
    flags: u8,
}

impl Reader for FamilyRead<'_> {
    type Message = table::MetricFamily;

    #[inline(always)]
    fn hook(
        &mut self,
        field: FamilyField,
        b: &[u8],
        fields: &mut Fields<'_>,
        at: usize,
    ) -> Result<(), ProtoError> {
        match field {
            FamilyField::Name => {
                let (s, e) = fields.len_delimited()?;
                self.name = span(s, e);
            }
            FamilyField::Help => {
                let (s, e) = fields.len_delimited()?;
                utf8(b, s, e)?;
                self.help = Some(span(s, e));
            }
            FamilyField::Type => {
                let value = fields.varint()?;
                self.metric_type = MetricType::from_wire(value)
                    .map_or_else(|| fail(ProtoErrorKind::MetricType, at), Ok)?;
            }
            FamilyField::Metric => {
                let (s, e) = fields.len_delimited()?;
                let metric = self.index.metric(b, s, e)?;
                self.flags |= metric.flags;
                self.index.metrics.push(metric);
                if self.index.metrics.len() > self.metric_limit {
                    return fail(ProtoErrorKind::TooManyMetrics, s);
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum MetricField {
    Label,
    TimestampMs,
    Histogram,
}

struct MetricRead<'i> {
    index: &'i mut Index,
    /// End of the label fields that open the message (its start when none).
    labels_end: usize,
    flags: u8,
    label_bits: u16,
    /// Whether every label so far repeats the previous metric's, in order
    /// (then none is recorded), and how many there were.
    repeating: bool,
    labels: usize,
}

impl Reader for MetricRead<'_> {
    type Message = table::Metric;

    #[inline(always)]
    fn hook(
        &mut self,
        field: MetricField,
        b: &[u8],
        fields: &mut Fields<'_>,
        at: usize,
    ) -> Result<(), ProtoError> {
        match field {
            MetricField::Label => {
                let (s, e) = fields.len_delimited()?;
                self.label(b, s, e)?;
                // A label right after the labels that open the message
                // extends them; any field in between interleaves them.
                if at == self.labels_end {
                    self.labels_end = fields.at;
                } else {
                    self.flags |= LABELS_INTERLEAVED;
                }
            }
            MetricField::TimestampMs => {
                // int64: a negative one is a ten-byte varint. Text readers
                // refuse a negative timestamp (the text parser too), and it
                // would be one once converted down.
                if (fields.varint()? as i64) < 0 {
                    return fail(ProtoErrorKind::NegativeTimestamp, at);
                }
            }
            MetricField::Histogram => {
                let (s, e) = fields.len_delimited()?;
                if histogram(b, s, e)? {
                    self.flags |= NATIVE_HISTOGRAM;
                    self.index.native_histograms += 1;
                }
            }
        }
        Ok(())
    }
}

impl MetricRead<'_> {
    /// One of the metric's labels, the `LabelPair` at `s..e`: a name
    /// that repeats the previous metric's in order is compared, not
    /// validated again.
    #[inline(always)]
    fn label(&mut self, b: &[u8], s: usize, e: usize) -> Result<(), ProtoError> {
        let name = label_pair(b, s, e)?;
        let bytes = name.of(b);
        let index = &mut *self.index;
        let repeats = self.repeating
            && index
                .previous_labels
                .get(self.labels)
                .is_some_and(|previous| same_bytes(previous.of(b), bytes));
        if !repeats {
            if self.repeating {
                self.repeating = false;
                index.seen_labels.clear();
                index
                    .seen_labels
                    .extend_from_slice(&index.previous_labels[..self.labels]);
            }
            if !is_label_name(bytes) {
                return fail(ProtoErrorKind::LabelName, name.start as usize);
            }
            // Reserved for Prometheus: a second `__name__` fails the scrape,
            // Python's parser refuses any `__` name (as the text parser does).
            if bytes.starts_with(b"__") {
                return fail(ProtoErrorKind::ReservedLabelName, name.start as usize);
            }
            index.label_names.insert(bytes);
            if index.seen_labels.len() < PAIRWISE_LABEL_CHECK
                && index.seen_labels.iter().any(|seen| seen.of(b) == bytes)
            {
                return fail(ProtoErrorKind::DuplicateLabel, s);
            }
            index.seen_labels.push(name);
        }
        self.labels += 1;
        self.label_bits |= label_bit(bytes);
        if bytes == b"le" {
            self.flags |= HAS_LE;
        } else if bytes == b"quantile" {
            self.flags |= HAS_QUANTILE;
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Side {
    Negative,
    Positive,
}

#[derive(Clone, Copy)]
enum HistogramField {
    Schema,
    ZeroThreshold,
    ZeroCount,
    Span(Side),
    Deltas(Side),
    Delta(Side),
    Counts(Side),
    Count(Side),
}

/// Per-side counts of a native histogram, checked when its message ends.
#[derive(Default)]
struct Buckets {
    spans: u32,
    announced: u64,
    deltas: u64,
    counts: u64,
}

#[derive(Default)]
struct HistogramRead {
    schema: i64,
    schema_at: usize,
    zero_bucket: bool,
    /// By [`Side`].
    sides: [Buckets; 2],
}

impl Reader for HistogramRead {
    type Message = table::Histogram;

    #[inline(always)]
    fn hook(
        &mut self,
        field: HistogramField,
        b: &[u8],
        fields: &mut Fields<'_>,
        at: usize,
    ) -> Result<(), ProtoError> {
        match field {
            HistogramField::Schema => {
                self.schema_at = at;
                self.schema = zigzag(fields.varint()?);
            }
            HistogramField::ZeroThreshold => self.zero_bucket |= fields.double()? > 0.0,
            HistogramField::ZeroCount => self.zero_bucket |= fields.varint()? > 0,
            HistogramField::Span(side) => {
                let (s, e) = fields.len_delimited()?;
                let mut span = SpanRead::default();
                walk(&mut span, b, s, e)?;
                let side = &mut self.sides[side as usize];
                if side.spans > 0 && span.offset < 0 {
                    return fail(ProtoErrorKind::SpanOffset, s);
                }
                side.spans += 1;
                side.announced += span.length;
            }
            HistogramField::Deltas(side) => {
                let (s, e) = fields.len_delimited()?;
                self.sides[side as usize].deltas += packed_varints(b, s, e)?;
            }
            HistogramField::Delta(side) => {
                fields.varint()?;
                self.sides[side as usize].deltas += 1;
            }
            HistogramField::Counts(side) => {
                let (s, e) = fields.len_delimited()?;
                if (e - s) % 8 != 0 {
                    return fail(ProtoErrorKind::Truncated, s);
                }
                self.sides[side as usize].counts += ((e - s) / 8) as u64;
            }
            HistogramField::Count(side) => {
                fields.fixed64()?;
                self.sides[side as usize].counts += 1;
            }
        }
        Ok(())
    }
}

/// `Histogram`: returns whether it is a native histogram (the rule of
/// Prometheus' `isNativeHistogram`: any span, or a zero bucket), whose
/// spans must announce as many buckets as there are deltas or counts,
/// and whose schema must be from -4 to 8.
#[inline(never)]
fn histogram(b: &[u8], start: usize, end: usize) -> Result<bool, ProtoError> {
    let mut histogram = HistogramRead {
        schema_at: start,
        ..HistogramRead::default()
    };
    walk(&mut histogram, b, start, end)?;
    for side in &histogram.sides {
        let matches = (side.deltas == side.announced && side.counts == 0)
            || (side.counts == side.announced && side.deltas == 0);
        if !matches {
            return fail(ProtoErrorKind::BucketCount, start);
        }
    }
    let native = histogram.sides.iter().any(|side| side.spans > 0) || histogram.zero_bucket;
    if native && !(-4..=8).contains(&histogram.schema) {
        return fail(ProtoErrorKind::Schema, histogram.schema_at);
    }
    Ok(native)
}

#[derive(Clone, Copy)]
enum SpanField {
    Offset,
    Length,
}

#[derive(Default)]
struct SpanRead {
    offset: i64,
    length: u64,
}

impl Reader for SpanRead {
    type Message = table::BucketSpan;

    #[inline(always)]
    fn hook(
        &mut self,
        field: SpanField,
        _: &[u8],
        fields: &mut Fields<'_>,
        _: usize,
    ) -> Result<(), ProtoError> {
        match field {
            SpanField::Offset => self.offset = zigzag(fields.varint()?),
            SpanField::Length => self.length = fields.varint()? & u64::from(u32::MAX),
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum PairField {
    Name,
}

struct PairRead {
    name: Span,
}

impl Reader for PairRead {
    type Message = table::LabelPair;

    #[inline(always)]
    fn hook(
        &mut self,
        field: PairField,
        _: &[u8],
        fields: &mut Fields<'_>,
        _: usize,
    ) -> Result<(), ProtoError> {
        match field {
            PairField::Name => {
                let (s, e) = fields.len_delimited()?;
                self.name = span(s, e);
            }
        }
        Ok(())
    }
}

/// `LabelPair`: checks the value is UTF-8 and returns the name's span (the
/// caller checks the name). The encoding every producer writes (name, then
/// value, each shorter than 128 bytes) is read without walking.
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
    let mut pair = PairRead {
        name: span(start, start),
    };
    walk(&mut pair, b, start, end)?;
    Ok(pair.name)
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
