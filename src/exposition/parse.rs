//! The parser: one pass over a body that validates it whole and builds an
//! index of families and samples as offsets into the body.
//!
//! Invariants of a successfully built [`Index`]:
//! - every span points inside the body it was built from (bodies are < 4 GiB);
//! - family names are unique and already in their 0.0.4 form (legacy
//!   characters, OpenMetrics suffixes applied); families appear in the order
//!   of their first sample and have at least one sample;
//! - `samples` is grouped by family (`Family::samples` is a range of it),
//!   samples of a family keep their input order;
//! - a sample is kept packed (16 bytes, offsets relative to its name's start,
//!   see [`PackedSample`]); [`Index::sample`] decodes it;
//! - every label set, value and timestamp has been validated, so the writer
//!   may copy them without checking again.
//!
//! Label sets are read by [`LabelScanner`] (labels.rs); the merge writer
//! reads a built index only through [`IndexView`].
//!
//! The series memo: as Prometheus' scrape cache knows a series by its text,
//! a build keeps a keyed hash of each sample's name and label set, and a
//! plain set's length (10 bytes a sample, kept through
//! [`Index::retire`] and [`Index::release`] while the body is of a shape
//! it pays for), and the next build takes a set whose text hashes as the
//! same sample's did without scanning it ([`Index::remembered_set`]). The
//! merge's fingerprints of remembered families are made of these hashes.

use std::fmt;

use super::labels::{LabelBloom, LabelScanner};
use super::openmetrics::{fingerprint_text, hash_key};
use super::text::IndexTable;
use super::text::{classify_value, decimal_in_range, is_float64, MAX_IN_RANGE_INTEGER_DIGITS};
use super::text::{
    find_byte, hash_name, is_metric_continue, is_metric_start, parse_int_timestamp, same_bytes,
    scan_name, scan_quote_stop, scan_until_class, unescape_into, value_form, NameTable, ValueForm,
    TOKEN_END,
};
pub use super::tokens::ParseErrorKind;
pub(super) use super::tokens::{scan_quoted, skip_blanks, Fail, Kind, SampleFlags, Span};

/// Why a body was rejected, and on which line (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: u32,
    pub kind: ParseErrorKind,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.kind.message())
    }
}

impl std::error::Error for ParseError {}

/// The type a `# TYPE` line declares (0.0.4 and OpenMetrics; in an
/// OpenMetrics body `Untyped` is its `unknown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Declared {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
    Info,
    StateSet,
    GaugeHistogram,
}

impl Declared {
    fn from_word(word: &[u8]) -> Option<Declared> {
        Some(match word {
            b"counter" => Declared::Counter,
            b"gauge" => Declared::Gauge,
            b"histogram" => Declared::Histogram,
            b"summary" => Declared::Summary,
            b"untyped" | b"unknown" => Declared::Untyped,
            b"info" => Declared::Info,
            b"stateset" => Declared::StateSet,
            b"gaugehistogram" => Declared::GaugeHistogram,
            _ => return None,
        })
    }
}

/// Where a sample's family name comes from once its declaration matched.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FamilyName {
    Declared,
    Sample,
}

/// Family membership by name and suffix, following the conversion Python's
/// `generate_latest` applies to OpenMetrics families: counter `foo` keeps
/// `foo_total` as family `foo_total`, `_created` becomes a gauge family,
/// info `foo` is gauge `foo_info`, stateset is a gauge, gaugehistogram is a
/// histogram whose `_gsum`/`_gcount` become gauges.
fn classify(declared: Declared, decl: &[u8], sample: &[u8]) -> Option<(FamilyName, Kind)> {
    let suffix = strip_prefix(sample, decl)?;
    use Declared as D;
    Some(match (declared, suffix) {
        (D::Counter, b"") => (FamilyName::Declared, Kind::Counter),
        (D::Counter, b"_total") => (FamilyName::Sample, Kind::Counter),
        (D::Counter | D::Histogram | D::Summary, b"_created") => (FamilyName::Sample, Kind::Gauge),
        (D::Gauge | D::StateSet, b"") => (FamilyName::Declared, Kind::Gauge),
        (D::Untyped, b"") => (FamilyName::Declared, Kind::Untyped),
        (D::Histogram, b"_bucket" | b"_sum" | b"_count") => (FamilyName::Declared, Kind::Histogram),
        (D::GaugeHistogram, b"_bucket") => (FamilyName::Declared, Kind::Histogram),
        (D::GaugeHistogram, b"_gsum" | b"_gcount") => (FamilyName::Sample, Kind::Gauge),
        (D::Summary, b"" | b"_sum" | b"_count") => (FamilyName::Declared, Kind::Summary),
        (D::Info, b"_info") => (FamilyName::Sample, Kind::Gauge),
        _ => return None,
    })
}

/// `name` without `prefix`, compared without a call to `memcmp` (each
/// sample name of a new family is matched with its declaration's).
#[inline]
fn strip_prefix<'a>(name: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let rest = name.get(prefix.len()..)?;
    same_bytes(&name[..prefix.len()], prefix).then_some(rest)
}

/// `name` without `suffix`, as [`strip_prefix`] (each sample name of a new
/// family is tried with every suffix).
#[inline]
fn strip_suffix<'a>(name: &'a [u8], suffix: &[u8]) -> Option<&'a [u8]> {
    let base = name.len().checked_sub(suffix.len())?;
    same_bytes(&name[base..], suffix).then(|| &name[..base])
}

/// Suffixes tried when a sample does not belong to the current declaration.
const SUFFIXES: [&[u8]; 8] = [
    b"_total",
    b"_created",
    b"_bucket",
    b"_sum",
    b"_count",
    b"_info",
    b"_gsum",
    b"_gcount",
];

/// Where a kept name's bytes are: in the body as it wrote them (legacy
/// names), or in `Index::names` (quoted names, unescaped).
#[derive(Clone, Copy, Default)]
struct NameAt {
    span: Span,
    in_names: bool,
}

/// The bytes of a name kept at `at`.
#[inline]
fn kept_name<'a>(names: &'a [u8], body: &'a [u8], at: NameAt) -> &'a [u8] {
    if at.in_names {
        at.span.of(names)
    } else {
        at.span.of(body)
    }
}

/// One 0.0.4 family: 24 bytes, because a body of one-sample families keeps
/// one per sample (issue 19: the index of such a body cost 73 bytes a
/// family, a name copy and an inline HELP span among them). The name is a
/// span of the body unless it was quoted; the HELP text, which most
/// one-sample families lack, is kept in `Index::helps`.
struct Family {
    /// In the body, or in `Index::names` when `name_in_names`.
    name: Span,
    hash: u32,
    /// While parsing: how many samples it has. Then: its first sample in
    /// `Index::samples`; its samples end where the next family's start.
    samples: u32,
    /// Its HELP text in `Index::helps`, or [`NO_HELP`].
    help: u32,
    kind: Kind,
    /// A `# TYPE` line declared it; a family without one is written without.
    typed: bool,
    name_in_names: bool,
    /// Its HELP text is verbatim ([`Declaration::help_verbatim`]).
    help_verbatim: bool,
}

// The budget counts it at that (`help_verbatim` took a byte of padding).
const _: () = assert!(std::mem::size_of::<Family>() == 24);

/// A family without HELP text.
const NO_HELP: u32 = u32::MAX;

impl Family {
    #[inline]
    fn name_at(&self) -> NameAt {
        NameAt {
            span: self.name,
            in_names: self.name_in_names,
        }
    }
}

/// A sample's spans in the body, as [`Index::sample`] decodes them.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sample {
    /// Legacy name, or the raw content of a quoted name (see
    /// [`SampleFlags::QUOTED_NAME`]).
    pub(super) name: Span,
    /// Inside the braces (after a quoted name's comma); empty when none.
    pub(super) labels: Span,
    pub(super) value: Span,
    /// Empty when there is none.
    pub(super) timestamp: Span,
    pub(super) flags: SampleFlags,
    pub(super) value_form: ValueForm,
}

impl Default for Sample {
    fn default() -> Sample {
        Sample {
            name: Span::default(),
            labels: Span::default(),
            value: Span::default(),
            timestamp: Span::default(),
            flags: SampleFlags::default(),
            value_form: ValueForm::Decimal,
        }
    }
}

/// What the index keeps per sample: 16 bytes rather than the 40 of a
/// [`Sample`] with its family, because the index of a body used to cost
/// more memory than the body (32 MiB pod limit). Positions are offsets from
/// the name's start, which fit in 16 bits on every sane line; a line whose
/// value ends 64 KiB or more after its start is kept whole in
/// `Index::long_samples` instead (flag `LONG`, `start` is its position
/// there). The timestamp is found again after the value (flag `TIMESTAMP`);
/// the family is implied by `Family::samples`.
#[derive(Clone, Copy)]
struct PackedSample {
    start: u32,
    name_end: u16,
    labels_start: u16,
    labels_end: u16,
    value_start: u16,
    value_end: u16,
    flags: SampleFlags,
    value_form: ValueForm,
}

impl PackedSample {
    /// None when an offset does not fit in 16 bits. Every span of a sample
    /// lies between its name's start and its value's end, so that one
    /// distance decides.
    fn pack(sample: &Sample) -> Option<PackedSample> {
        let start = sample.name.start;
        if sample.value.end.checked_sub(start)? > u32::from(u16::MAX) {
            return None;
        }
        let offset = |at: u32| at.saturating_sub(start) as u16;
        Some(PackedSample {
            start,
            name_end: offset(sample.name.end),
            labels_start: offset(sample.labels.start),
            labels_end: offset(sample.labels.end),
            value_start: offset(sample.value.start),
            value_end: offset(sample.value.end),
            flags: sample.flags,
            value_form: sample.value_form,
        })
    }
}

/// A sample whose line the writers copy as it is, `name{labels} value\n`:
/// labels in braces, canonical (no quoted name, no blanks); a plain value
/// ([`SampleFlags::PLAIN_END`]: ` <digits>[.<digits>]` and the newline,
/// never negative); no timestamp, no exemplar. Most lines of a body.
#[derive(Clone, Copy)]
pub(super) struct PlainSample {
    pub(super) name: Span,
    /// Where its `}` is.
    pub(super) labels_end: u32,
    pub(super) value: Span,
}

/// A run of consecutive samples of one family, in input order: enough to
/// regroup the samples of a body whose families are interleaved.
#[derive(Clone, Copy)]
struct FamilyRun {
    family: u32,
    samples: u32,
}

struct Declaration {
    name: NameAt,
    /// `hash_name` of the name: a family named as the declaration takes
    /// it, not hashed again.
    hash: u32,
    declared: Declared,
    typed: bool,
    help: Option<Span>,
    /// `help` holds no backslash and no quote: every form escapes it as
    /// it is, so a writer copies it without a scan of its own (told by the
    /// scan that finds the line's end).
    help_verbatim: bool,
    /// `# UNIT` text in the body (OpenMetrics).
    unit: Option<Span>,
}

/// An OpenMetrics family as its body declared it: the parent of the 0.0.4
/// families its samples were sorted into (counter `foo` of `foo_total` and
/// `foo_created`), kept so that OpenMetrics output writes it whole again.
#[derive(Clone, Copy)]
struct OpenMetricsFamily {
    name: NameAt,
    /// `hash_name` of the name, for the merge's table of names (4 bytes
    /// an OpenMetrics family, of an OpenMetrics body alone).
    hash: u32,
    declared: Declared,
    typed: bool,
    help: Option<Span>,
    help_verbatim: bool,
    unit: Option<Span>,
}

/// What [`IndexView::openmetrics_family`] tells of a parent family.
#[derive(Clone, Copy)]
pub(super) struct OpenMetricsFamilyView<'a> {
    pub(super) name: &'a [u8],
    /// `hash_name(name)`, computed once by the parser.
    pub(super) hash: u32,
    /// None: no `# TYPE` line.
    pub(super) declared: Option<Declared>,
    /// Raw HELP text (OpenMetrics escapes).
    pub(super) help: Option<&'a [u8]>,
    /// The HELP text holds no backslash and no quote.
    pub(super) help_verbatim: bool,
    pub(super) unit: Option<&'a [u8]>,
}

/// Where an exemplar's parts are in the body: `# {labels} value [timestamp]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct ExemplarSpans {
    /// Inside the braces.
    pub(super) labels: Span,
    pub(super) value: Span,
    /// Empty when there is none.
    pub(super) timestamp: Span,
}

/// No parent family.
const NO_PARENT: u32 = u32::MAX;

/// The index of one body, with all its buffers kept for the next body.
/// Read through [`IndexView`].
#[derive(Default)]
pub(super) struct Index {
    families: Vec<Family>,
    /// Raw (still escaped) HELP text of the families that have one.
    helps: Vec<Span>,
    samples: Vec<PackedSample>,
    /// Samples whose offsets do not fit a [`PackedSample`].
    long_samples: Vec<Sample>,
    /// Runs of samples by family, kept from the first sample that makes
    /// the body's families interleaved (empty while they are grouped).
    runs: Vec<FamilyRun>,
    /// Quoted names, unescaped (legacy names stay spans of the body).
    names: Vec<u8>,
    /// The body ended with `# EOF`: HELP uses OpenMetrics escapes and
    /// timestamps are seconds.
    openmetrics: bool,
    /// OpenMetrics bodies only: each family's parent in
    /// `openmetrics_families` (or [`NO_PARENT`]); empty for text bodies.
    parents: Vec<u32>,
    openmetrics_families: Vec<OpenMetricsFamily>,
    /// While parsing an OpenMetrics body: each family's declaration (or
    /// [`NO_PARENT`]).
    family_declarations: Vec<u32>,
    declarations: Vec<Declaration>,
    declaration_table: NameTable,
    family_table: IndexTable,
    /// Scratch of `group`: the input position of each grouped sample.
    order: Vec<u32>,
    starts: Vec<u32>,
    labels: LabelScanner,
    sample_name: Vec<u8>,
    /// The series memo ([`Index::remembered_set`]): what a build leaves
    /// the next one, kept through [`Index::retire`] and [`Index::release`].
    memo: Memo,
    /// Label sets of the build under way that the memo took.
    memo_hits: usize,
    /// How many declarations and families the last body parsed had, kept
    /// as the memo is: the next parse makes its tables and declarations
    /// that large at once, rather than grow them from empty (freed after
    /// every build, [`Index::release_scratch`]) and rehash them as they
    /// grow; never larger than its own body could need ([`presized`]).
    /// None after a refused body or a shrink.
    last_counts: (u32, u32),
}

/// One family of an index, as the merge writer reads it.
#[derive(Clone, Copy)]
pub(super) struct FamilyView<'a> {
    /// Unique in its index, in its 0.0.4 form (suffixes applied); UTF-8 as
    /// the source wrote it (quoted names unescaped).
    pub(super) name: &'a [u8],
    /// `hash_name(name)`, computed once by the parser.
    pub(super) hash: u32,
    pub(super) kind: Kind,
    /// A `# TYPE` line declared it.
    pub(super) typed: bool,
    /// Raw (still escaped) HELP text from the body.
    pub(super) help: Option<&'a [u8]>,
    /// The HELP text holds no backslash and no quote: it reads the same in
    /// every format's escapes.
    pub(super) help_verbatim: bool,
}

/// Read access to an index and the body it was built from: everything the
/// merge writer needs of a snapshot, and nothing of how it is stored.
/// Families are numbered `0..family_count()` in order of first appearance.
#[derive(Clone, Copy)]
pub(super) struct IndexView<'a> {
    index: &'a Index,
    body: &'a [u8],
}

impl<'a> IndexView<'a> {
    /// `body` must be the body `index` was last built from (or the index
    /// must be empty).
    pub(super) fn new(index: &'a Index, body: &'a [u8]) -> IndexView<'a> {
        IndexView { index, body }
    }

    pub(super) fn body(self) -> &'a [u8] {
        self.body
    }

    pub(super) fn family_count(self) -> usize {
        self.index.families.len()
    }

    /// Panics if `family` is out of range (a bug in the caller).
    #[inline]
    pub(super) fn family(self, family: u32) -> FamilyView<'a> {
        let entry = &self.index.families[family as usize];
        FamilyView {
            name: kept_name(&self.index.names, self.body, entry.name_at()),
            hash: entry.hash,
            kind: entry.kind,
            typed: entry.typed,
            help: self.index.help(entry).map(|help| help.of(self.body)),
            help_verbatim: entry.help_verbatim,
        }
    }

    #[inline]
    pub(super) fn family_kind(self, family: u32) -> Kind {
        self.index.families[family as usize].kind
    }

    /// The samples of `family`, in input order.
    pub(super) fn samples(self, family: u32) -> impl Iterator<Item = Sample> + 'a {
        let range = self.index.sample_range(family);
        let index = self.index;
        let body = self.body;
        index
            .samples
            .get(range.start as usize..range.end as usize)
            .unwrap_or(&[])
            .iter()
            .map(move |packed| index.sample(packed, body))
    }

    pub(super) fn sample_count(self) -> usize {
        self.index.samples.len()
    }

    pub(super) fn family_sample_count(self, family: u32) -> usize {
        let range = self.index.sample_range(family);
        (range.end - range.start) as usize
    }

    /// The numbers of `family`'s samples among the body's, for
    /// [`IndexView::numbered_sample`] (in input order).
    pub(super) fn sample_numbers(self, family: u32) -> std::ops::Range<u32> {
        let range = self.index.sample_range(family);
        range.start..range.end
    }

    /// The body's sample numbered `number` (in input order); panics if out
    /// of range (a bug in the caller).
    #[inline]
    pub(super) fn numbered_sample(self, number: u32) -> Sample {
        self.index
            .sample(&self.index.samples[number as usize], self.body)
    }

    /// The sample numbered `number` when the writers copy its line as it
    /// is ([`PlainSample`]); None for any other.
    #[inline]
    pub(super) fn plain_sample(self, number: u32) -> Option<PlainSample> {
        let packed = &self.index.samples[number as usize];
        // LONG, TIMESTAMP, EXEMPLAR, SLOW_LABELS or QUOTED_NAME: another.
        if packed.flags != SampleFlags::BRACES | SampleFlags::PLAIN_END
            || packed.labels_start == packed.labels_end
        {
            return None;
        }
        let at = |offset: u16| packed.start + u32::from(offset);
        Some(PlainSample {
            name: Span {
                start: packed.start,
                end: at(packed.name_end),
            },
            labels_end: at(packed.labels_end),
            value: Span {
                start: at(packed.value_start),
                end: at(packed.value_end),
            },
        })
    }

    /// The parser's hash of the sample numbered `number`'s name and label
    /// set ([`Index::remembered_set`]), when
    /// the index keeps them: equal for two samples of one family type whose
    /// text is the same, and different otherwise but by a chance of 2^-64.
    #[inline]
    pub(super) fn series(self, number: u32) -> Option<u64> {
        self.index.memo.hashes.get(number as usize).copied()
    }

    /// The flags of the body's sample numbered `number`, without decoding
    /// the rest of it.
    #[inline]
    pub(super) fn sample_flags(self, number: u32) -> SampleFlags {
        self.index.samples[number as usize].flags
    }

    /// Where the body's sample numbered `number` starts (its name's
    /// position), without decoding the rest of it.
    pub(super) fn sample_position(self, number: u32) -> u32 {
        let packed = &self.index.samples[number as usize];
        if packed.flags.contains(SampleFlags::LONG) {
            self.index
                .long_samples
                .get(packed.start as usize)
                .map_or(0, |sample| sample.name.start)
        } else {
            packed.start
        }
    }

    /// The body was OpenMetrics: HELP uses its escapes and timestamps are
    /// seconds.
    pub(super) fn is_openmetrics(self) -> bool {
        self.index.openmetrics
    }

    /// OpenMetrics bodies: the parent family of `family` (its number for
    /// [`IndexView::openmetrics_family`]); None for a family of its own.
    pub(super) fn parent(self, family: u32) -> Option<u32> {
        self.index
            .parents
            .get(family as usize)
            .copied()
            .filter(|&parent| parent != NO_PARENT)
    }

    pub(super) fn openmetrics_family(self, parent: u32) -> OpenMetricsFamilyView<'a> {
        let entry = &self.index.openmetrics_families[parent as usize];
        OpenMetricsFamilyView {
            name: kept_name(&self.index.names, self.body, entry.name),
            hash: entry.hash,
            declared: entry.typed.then_some(entry.declared),
            help: entry.help.map(|help| help.of(self.body)),
            help_verbatim: entry.help_verbatim,
            unit: entry.unit.map(|unit| unit.of(self.body)),
        }
    }

    /// The exemplar of a sample with [`SampleFlags::EXEMPLAR`] (validated
    /// by the parser, so read again without checks).
    pub(super) fn exemplar(self, sample: &Sample) -> Option<ExemplarSpans> {
        if !sample.flags.contains(SampleFlags::EXEMPLAR) {
            return None;
        }
        let b = self.body;
        let after = if sample.timestamp.is_empty() {
            sample.value.end
        } else {
            sample.timestamp.end
        } as usize;
        let hash = find_byte(b, after, b'#');
        let open = find_byte(b, hash, b'{');
        let close = super::labels::label_set_end(b, open + 1)?;
        let value_start = skip_blanks(b, close + 1);
        let value_end = scan_token(b, value_start);
        let ts_start = skip_blanks(b, value_end);
        let ts_end = scan_token(b, ts_start);
        Some(ExemplarSpans {
            labels: Span::new(open + 1, close),
            value: Span::new(value_start, value_end),
            timestamp: Span::new(ts_start, ts_end),
        })
    }

    /// The value of an OpenMetrics `<name>{<same labels>} value` line right
    /// after `sample`'s line: how an OpenMetrics producer writes a metric's
    /// `_created` sample (prometheus_client and expfmt both put it next).
    /// Only that adjacent line is looked at, so finding it costs nothing.
    pub(super) fn created_after(self, sample: &Sample, name: &[u8]) -> Option<Span> {
        let b = self.body;
        let next = find_newline(b, sample.value.end as usize) + 1;
        let rest = b.get(next..)?;
        let after_name = rest.strip_prefix(name)?;
        let labels = sample.labels.of(b);
        let after_labels = if sample.flags.contains(SampleFlags::BRACES) {
            after_name
                .strip_prefix(b"{")?
                .strip_prefix(labels)?
                .strip_prefix(b"}")?
        } else {
            after_name
        };
        let value_start = next + (rest.len() - after_labels.len()) + 1;
        if after_labels.first() != Some(&b' ') || sample.flags.contains(SampleFlags::QUOTED_NAME) {
            return None;
        }
        let value_end = scan_token(b, value_start);
        (value_end > value_start).then(|| Span::new(value_start, value_end))
    }

    /// Whether a label named `name` may occur in the body (no false
    /// negatives, rare false positives).
    pub(super) fn may_have_label(self, name: &[u8]) -> bool {
        self.index.labels.may_contain(name)
    }
}

/// Per-body parser state that is not part of the index.
struct Cursor {
    current: Option<u32>,
    /// Last legacy sample name and its family, for runs of one name.
    last_name: Span,
    last_family: u32,
    /// The series hash of `last_name` alone (keyed with its family's type,
    /// which a sample line cannot change): what its samples' hashes start
    /// from.
    last_name_hash: u64,
    /// A label set that [`Index::remembered_line`] hashed and the memo did
    /// not take: where its `{` is, where it ends, and its hash, for the
    /// general path reading the same line.
    hashed_set: Option<(usize, usize, u64)>,
    /// The declaration a sample last resolved to by its declared name, and
    /// that family: its next names (a histogram's `_sum` after its
    /// `_bucket`s) find it without a lookup.
    declared_family: (u32, u32),
    grouped: bool,
    eof_seen: bool,
    /// The body is read by the OpenMetrics rules (its `Content-Type`).
    openmetrics: bool,
}

impl Index {
    pub(super) fn clear(&mut self) {
        self.families.clear();
        self.helps.clear();
        self.samples.clear();
        // A refused body's memo goes with its allocation: the next build
        // would only overwrite it.
        self.memo.forget();
        self.long_samples.clear();
        self.runs.clear();
        self.names.clear();
        self.openmetrics = false;
        self.parents.clear();
        self.openmetrics_families.clear();
        self.family_declarations.clear();
        self.declarations.clear();
        // Spans into the previous body: meaningless for the next one.
        self.labels.clear();
        self.declaration_table.clear();
        self.family_table = IndexTable::default();
    }

    /// Label sets of the last build that the series memo took.
    #[cfg(test)]
    pub(super) fn memo_hits(&self) -> usize {
        self.memo_hits
    }

    /// Empties the index when its body goes, as [`Index::clear`], but
    /// keeps the series memo for the next build.
    pub(super) fn retire(&mut self) {
        let memo = std::mem::take(&mut self.memo);
        self.clear();
        self.memo = memo;
    }

    /// Frees the index, as a new one, but for the series memo (10 bytes a
    /// sample, at most a quarter of the body it was built from).
    pub(super) fn release(&mut self) {
        let memo = std::mem::take(&mut self.memo);
        let last_counts = self.last_counts;
        *self = Index::default();
        self.memo = memo;
        self.last_counts = last_counts;
    }

    /// After a successful parse: keeps the series for the merge and the
    /// next build when they were hashed and the body is of the shape the
    /// memo pays for, frees them otherwise; and the next build hashes its
    /// series only when this body is of that shape. That is: grouped (the
    /// series are in body order only then), one and a half samples a
    /// family or more (bodies of one-sample families, Envoy's, cost their
    /// families, not their label sets, and issue 19 holds their index to 48
    /// bytes a family; node_exporter's has 1.8), and a memo of at most a
    /// quarter of its `body_length` and of [`MEMO_BYTES`] (it is held
    /// between builds, beside the body).
    fn keep_memo(&mut self, body_length: usize) {
        let samples = self.samples.len();
        let memo_bytes = samples * Memo::BYTES_A_SAMPLE;
        let shape = self.runs.is_empty()
            && 2 * samples >= 3 * self.families.len()
            && memo_bytes <= (body_length / 4).min(MEMO_BYTES);
        if shape && self.memo.hash {
            self.memo.openmetrics = self.openmetrics;
            self.memo.bloom = self.labels.bloom();
        } else {
            self.memo.forget();
        }
        self.memo.hash = shape;
    }

    pub(super) fn shrink(&mut self) {
        fn shrink_vec<T>(v: &mut Vec<T>) {
            if v.capacity() > 1024 && v.len() * 4 < v.capacity() {
                v.shrink_to(v.len() * 2);
            }
        }
        shrink_vec(&mut self.families);
        shrink_vec(&mut self.helps);
        shrink_vec(&mut self.samples);
        shrink_vec(&mut self.memo.hashes);
        shrink_vec(&mut self.memo.lengths);
        shrink_vec(&mut self.long_samples);
        shrink_vec(&mut self.runs);
        shrink_vec(&mut self.names);
        shrink_vec(&mut self.declarations);
        self.order = Vec::new();
        self.starts = Vec::new();
        self.labels.shrink();
        self.declaration_table.shrink();
        self.family_table = IndexTable::default();
        self.last_counts = (0, 0);
    }

    /// Samples in the index.
    pub(super) fn sample_count(&self) -> usize {
        self.samples.len()
    }

    /// Bytes the index holds (capacity of every buffer, kept between
    /// bodies): what a snapshot costs beyond its body.
    pub(super) fn capacity_bytes(&self) -> usize {
        fn bytes<T>(v: &Vec<T>) -> usize {
            v.capacity() * std::mem::size_of::<T>()
        }
        bytes(&self.families)
            + bytes(&self.helps)
            + bytes(&self.samples)
            + bytes(&self.memo.hashes)
            + bytes(&self.memo.lengths)
            + bytes(&self.names)
            + bytes(&self.declarations)
            + bytes(&self.parents)
            + bytes(&self.openmetrics_families)
            + bytes(&self.family_declarations)
            + self.declaration_table.capacity_bytes()
            + self.family_table.capacity_bytes()
            + bytes(&self.long_samples)
            + bytes(&self.runs)
            + bytes(&self.order)
            + bytes(&self.starts)
            + self.labels.capacity_bytes()
            + bytes(&self.sample_name)
    }

    /// The range of `samples` that holds `family`'s (after `group`).
    #[inline]
    fn sample_range(&self, family: u32) -> Span {
        let start = self.families[family as usize].samples;
        let end = self
            .families
            .get(family as usize + 1)
            .map_or(self.samples.len() as u32, |next| next.samples);
        Span { start, end }
    }

    /// The HELP span of a family, if it has one.
    #[inline]
    fn help(&self, entry: &Family) -> Option<Span> {
        self.helps.get(entry.help as usize).copied()
    }

    /// Decodes a packed sample of this index; `body` is the body it was
    /// built from.
    #[inline]
    fn sample(&self, packed: &PackedSample, body: &[u8]) -> Sample {
        let mut sample = if packed.flags.contains(SampleFlags::LONG) {
            self.long_samples
                .get(packed.start as usize)
                .copied()
                .unwrap_or_default()
        } else {
            let start = packed.start;
            let span = |from: u16, to: u16| Span {
                start: start + u32::from(from),
                end: start + u32::from(to),
            };
            Sample {
                name: span(0, packed.name_end),
                labels: span(packed.labels_start, packed.labels_end),
                value: span(packed.value_start, packed.value_end),
                timestamp: Span::default(),
                flags: packed.flags,
                value_form: packed.value_form,
            }
        };
        if packed.flags.contains(SampleFlags::TIMESTAMP) {
            // The parser took the token after the value's blanks.
            let start = skip_blanks(body, sample.value.end as usize);
            sample.timestamp = Span::new(start, scan_token(body, start));
        }
        sample
    }

    /// Validates `body` by the rules of its format (OpenMetrics, else
    /// Prometheus text) and indexes it. On error the index is left empty.
    pub(super) fn build(&mut self, body: &[u8], openmetrics: bool) -> Result<(), ParseError> {
        // The memo is overwritten in place as the new series are hashed; one
        // of the other format's rules is no memo.
        let mut memo = std::mem::take(&mut self.memo);
        if memo.openmetrics != openmetrics {
            memo.forget();
        }
        self.clear();
        // A body after one the memo was kept from has about as many
        // samples: one allocation instead of a growth by quarters, each
        // copying what came before (the index is freed after every build).
        let expected = memo.len() + memo.len() / 16;
        if self.samples.capacity() < expected {
            self.samples.reserve_exact(expected);
        }
        self.memo = memo;
        self.memo_hits = 0;
        let (declarations, families) = presized(self.last_counts, body.len());
        self.declarations.reserve_exact(declarations);
        self.declaration_table.make_room(declarations);
        self.family_table.make_room(families);
        match self.parse(body, openmetrics) {
            Ok(()) => {
                self.keep_memo(body.len());
                self.release_scratch();
                Ok(())
            }
            Err((kind, at)) => {
                // Nothing of a refused body's parse is kept, and the next
                // parse makes no room for it (its counts are now none).
                self.clear();
                self.release_scratch();
                Err(ParseError {
                    line: line_of(body, at),
                    kind,
                })
            }
        }
    }

    fn parse(&mut self, b: &[u8], openmetrics: bool) -> Result<(), Fail> {
        if b.len() >= u32::MAX as usize {
            return Err((ParseErrorKind::TooLarge, 0));
        }
        if let Some(at) = first_invalid_utf8(b) {
            return Err((ParseErrorKind::InvalidUtf8, at));
        }
        let mut cursor = Cursor {
            current: None,
            last_name: Span::default(),
            last_family: u32::MAX,
            last_name_hash: 0,
            hashed_set: None,
            declared_family: (u32::MAX, u32::MAX),
            grouped: true,
            eof_seen: false,
            openmetrics,
        };
        self.labels.set_openmetrics(openmetrics);
        let mut p = 0;
        if openmetrics {
            // openmetricslex.l: a line starts with `# ` or a sample, never
            // with a blank or a newline; `# EOF` ends the body.
            while p < b.len() {
                if cursor.eof_seen {
                    return Err((ParseErrorKind::AfterEof, p));
                }
                p = match b[p] {
                    b'#' => self.comment(b, p, &mut cursor)?,
                    _ => match self.remembered_line(b, p, &mut cursor)? {
                        Some(next) => next,
                        None => self.sample_line(b, p, &mut cursor)?,
                    },
                };
            }
            // Prometheus main takes an empty body as an empty scrape before
            // any parser runs (scrape.go); 2.42 refuses it as OpenMetrics.
            if !cursor.eof_seen && !b.is_empty() {
                return Err((ParseErrorKind::MissingEof, b.len()));
            }
        } else {
            // promlex.l: blanks between tokens and blank lines are skipped;
            // `\r` is no blank (a CRLF line fails on its value or timestamp).
            while p < b.len() {
                p = skip_blanks(b, p);
                match b.get(p) {
                    None => break,
                    Some(b'\n') => p += 1,
                    Some(b'#') => p = self.comment(b, p, &mut cursor)?,
                    Some(_) => {
                        p = match self.remembered_line(b, p, &mut cursor)? {
                            Some(next) => next,
                            None => self.sample_line(b, p, &mut cursor)?,
                        }
                    }
                }
            }
        }
        self.memo.truncate(self.samples.len());
        if self.memo_hits > 0 {
            // The sets the memo took were not scanned.
            self.labels.add_names_of(self.memo.bloom);
        }
        self.openmetrics = openmetrics;
        self.group(cursor.grouped);
        if self.openmetrics {
            self.keep_parents();
        }
        Ok(())
    }

    /// Keeps, for an OpenMetrics body, the declarations that families were
    /// sorted under as their parents, numbered in order of first use.
    fn keep_parents(&mut self) {
        let mut numbers = vec![NO_PARENT; self.declarations.len()];
        self.parents.clear();
        for &declaration in &self.family_declarations {
            if declaration == NO_PARENT {
                self.parents.push(NO_PARENT);
                continue;
            }
            let number = &mut numbers[declaration as usize];
            if *number == NO_PARENT {
                let d = &self.declarations[declaration as usize];
                *number = self.openmetrics_families.len() as u32;
                self.openmetrics_families.push(OpenMetricsFamily {
                    name: d.name,
                    hash: d.hash,
                    declared: d.declared,
                    typed: d.typed,
                    help: d.help,
                    help_verbatim: d.help_verbatim,
                    unit: d.unit,
                });
            }
            self.parents.push(*number);
        }
    }

    /// Gives back what only parsing needed (name tables, declarations,
    /// grouping scratch) and the growth slack of the samples: an index is
    /// kept until the next body, and with one-sample families the scratch
    /// cost as much again as what the merge reads. The next parse
    /// allocates them again, once.
    fn release_scratch(&mut self) {
        self.last_counts = (self.declarations.len() as u32, self.families.len() as u32);
        self.runs = Vec::new();
        self.starts = Vec::new();
        self.order = Vec::new();
        self.family_declarations = Vec::new();
        self.declarations = Vec::new();
        self.declaration_table = NameTable::default();
        self.family_table = IndexTable::default();
        fn fit<T>(v: &mut Vec<T>) {
            if v.capacity() > v.len() + v.len() / 8 + 64 {
                v.shrink_to(v.len() + v.len() / 16);
            }
        }
        fit(&mut self.samples);
        fit(&mut self.memo.hashes);
        fit(&mut self.memo.lengths);
        fit(&mut self.families);
        fit(&mut self.helps);
        fit(&mut self.names);
    }

    /// Makes each family's samples contiguous (a stable counting sort),
    /// unless they already are, which is the common case.
    fn group(&mut self, grouped: bool) {
        let mut next = 0u32;
        for family in &mut self.families {
            let count = family.samples;
            family.samples = next;
            next += count;
        }
        if grouped {
            return;
        }
        self.starts.clear();
        self.starts
            .extend(self.families.iter().map(|family| family.samples));
        // `order[grouped position] = input position`, then the permutation
        // is applied in place, cycle by cycle: 4 bytes of scratch per
        // sample instead of a second copy of the samples.
        self.order.clear();
        self.order.resize(self.samples.len(), 0);
        let mut input = 0u32;
        for run in &self.runs {
            let at = &mut self.starts[run.family as usize];
            for _ in 0..run.samples {
                self.order[*at as usize] = input;
                *at += 1;
                input += 1;
            }
        }
        const PLACED: u32 = u32::MAX;
        for first in 0..self.order.len() {
            if self.order[first] == PLACED {
                continue;
            }
            let saved = self.samples[first];
            let mut at = first;
            loop {
                let from = self.order[at] as usize;
                self.order[at] = PLACED;
                if from == first {
                    self.samples[at] = saved;
                    break;
                }
                self.samples[at] = self.samples[from];
                at = from;
            }
        }
    }

    /// A line starting with `#`. Text (promlex.l): `#` and blanks, then
    /// `HELP` or `TYPE` and blanks make a metadata line, anything else is a
    /// comment (`# EOF` and `# UNIT` too). OpenMetrics (openmetricslex.l):
    /// `# HELP `, `# TYPE `, `# UNIT ` or `# EOF` and nothing else.
    /// Metadata: the name, then one byte (a blank), then the text through
    /// the newline (OpenMetrics: which must be there).
    fn comment(&mut self, b: &[u8], p: usize, cursor: &mut Cursor) -> Result<usize, Fail> {
        let next_line = |eol: usize| (eol + 1).min(b.len());
        let (keyword, name_start) = if cursor.openmetrics {
            if b.get(p + 1) != Some(&b' ') {
                return Err((ParseErrorKind::Comment, p));
            }
            let rest = &b[p + 2..];
            if let Some(after) = rest.strip_prefix(b"EOF") {
                if matches!(after.first(), None | Some(b'\n')) {
                    cursor.eof_seen = true;
                    return Ok(next_line(p + 5));
                }
                return Err((ParseErrorKind::AfterEof, p + 5));
            }
            let keyword = rest.get(..5).unwrap_or_default();
            if !matches!(keyword, b"HELP " | b"TYPE " | b"UNIT ") {
                return Err((ParseErrorKind::Comment, p));
            }
            (&keyword[..4], p + 7)
        } else {
            let q = skip_blanks(b, p + 1);
            let keyword = b.get(q..q + 4).unwrap_or_default();
            if q == p + 1
                || !matches!(keyword, b"HELP" | b"TYPE")
                || !matches!(b.get(q + 4), Some(b' ' | b'\t'))
            {
                return Ok(next_line(find_newline(b, p))); // a comment
            }
            (keyword, skip_blanks(b, q + 4))
        };
        cursor.last_family = u32::MAX;
        // A family's metadata lines usually follow one another (HELP, then
        // TYPE): the second names the declaration the first left current,
        // which is compared with it rather than scanned and looked up.
        let named_again = self
            .after_declared_name(b, name_start, cursor)
            .filter(|&end| !b.get(end).is_some_and(|&c| is_metric_continue(c)))
            .map(|end| Span::new(name_start, end));
        let (name, after) = match named_again {
            Some(span) => (NameRef::Legacy(span), span.end as usize),
            None => self.metric_name(b, name_start, true)?,
        };
        if cursor.openmetrics && b.get(after) != Some(&b' ') {
            return Err((ParseErrorKind::NameEnd, after));
        }
        // No name holds a newline: the line ends after it. A HELP text's
        // end is found by the scan that tells whether it is verbatim.
        let (eol, help_verbatim) = if keyword == b"HELP" {
            help_line_end(b, after)
        } else {
            (find_newline(b, after), false)
        };
        if cursor.openmetrics && eol >= b.len() {
            return Err((ParseErrorKind::LineEnd, eol));
        }
        // The byte after the name is dropped (promparse.go: `buf()[1:]`),
        // whatever it is: when that cuts a character in two, the text is
        // no longer UTF-8, which Prometheus refuses.
        let text = Span::new((after + 1).min(eol), eol);
        if text.of(b).first().is_some_and(|&c| c & 0xC0 == 0x80) {
            return Err((ParseErrorKind::InvalidUtf8, text.start as usize));
        }
        let decl = match cursor.current {
            Some(current) if named_again.is_some() => current,
            Some(current)
                if same_bytes(
                    kept_name(&self.names, b, self.declarations[current as usize].name),
                    self.name_bytes(b, name),
                ) =>
            {
                current
            }
            _ => self.declaration(b, name),
        };
        cursor.current = Some(decl);
        let declaration = &mut self.declarations[decl as usize];
        match keyword {
            b"UNIT" => {
                let unit = text.of(b);
                if !unit.is_empty() {
                    let raw_name = match name {
                        NameRef::Legacy(span) | NameRef::Quoted(span) => span.of(b),
                    };
                    let is_suffix = raw_name
                        .strip_suffix(unit)
                        .is_some_and(|base| base.last() == Some(&b'_'));
                    if !is_suffix {
                        return Err((ParseErrorKind::Unit, p));
                    }
                    if declaration.unit.is_none() {
                        declaration.unit = Some(text);
                    }
                }
            }
            b"HELP" => {
                if declaration.help.is_none() {
                    declaration.help = Some(text);
                    declaration.help_verbatim = help_verbatim;
                }
            }
            _ => {
                let word = text.of(b);
                let known = if cursor.openmetrics {
                    matches!(
                        word,
                        b"counter"
                            | b"gauge"
                            | b"histogram"
                            | b"gaugehistogram"
                            | b"summary"
                            | b"info"
                            | b"stateset"
                            | b"unknown"
                    )
                } else {
                    matches!(
                        word,
                        b"counter" | b"gauge" | b"histogram" | b"summary" | b"untyped"
                    )
                };
                let declared = Declared::from_word(word)
                    .filter(|_| known)
                    .ok_or((ParseErrorKind::MetricType, text.start as usize))?;
                // Prometheus reads every TYPE line; a repeat that agrees
                // changes nothing, one that disagrees would retype samples
                // already sorted.
                if declaration.typed && declaration.declared != declared {
                    return Err((ParseErrorKind::DuplicateType, p));
                }
                declaration.typed = true;
                declaration.declared = declared;
            }
        }
        Ok(next_line(eol))
    }

    /// Reads a legacy or quoted metric name at `p`; a quoted one is
    /// unescaped into `sample_name` (kept as the source wrote it, UTF-8;
    /// writers escape it for each client). Returns the name's raw span and
    /// the position after it.
    fn metric_name(
        &mut self,
        b: &[u8],
        p: usize,
        quoted_ok: bool,
    ) -> Result<(NameRef, usize), Fail> {
        match b.get(p) {
            Some(b'"') if quoted_ok => {
                let (content, close) = scan_quoted(b, p, &mut SampleFlags::default())?;
                self.sample_name.clear();
                unescape_into(content.of(b), &mut self.sample_name);
                if self.sample_name.is_empty() {
                    return Err((ParseErrorKind::MetricName, p));
                }
                Ok((NameRef::Quoted(content), close + 1))
            }
            Some(&c) if is_metric_start(c) => {
                let end = scan_name(b, p + 1, true);
                Ok((NameRef::Legacy(Span::new(p, end)), end))
            }
            _ => Err((ParseErrorKind::MetricName, p)),
        }
    }

    /// Where the current declaration's name (kept in the body) ends when
    /// the text at `p` starts with it: compared, not scanned. The name
    /// [`Self::metric_name`] reads there is that one when the next byte
    /// cannot continue it, else starts with it and goes on from there.
    fn after_declared_name(&self, b: &[u8], p: usize, cursor: &Cursor) -> Option<usize> {
        let declared = self.declarations.get(cursor.current? as usize)?.name;
        if declared.in_names {
            return None;
        }
        let name = declared.span.of(b);
        let end = p + name.len();
        same_bytes(b.get(p..end)?, name).then_some(end)
    }

    fn name_bytes<'a>(&'a self, b: &'a [u8], name: NameRef) -> &'a [u8] {
        match name {
            NameRef::Legacy(span) => span.of(b),
            NameRef::Quoted(_) => &self.sample_name,
        }
    }

    fn declaration(&mut self, b: &[u8], name: NameRef) -> u32 {
        let bytes = match name {
            NameRef::Legacy(span) => span.of(b),
            NameRef::Quoted(_) => &self.sample_name,
        };
        let hash = hash_name(bytes);
        let index = self.declarations.len() as u32;
        let (declarations, names) = (&self.declarations, &self.names);
        if let Some(found) = self.declaration_table.find_or_insert(hash, index, |i| {
            same_bytes(kept_name(names, b, declarations[i as usize].name), bytes)
        }) {
            return found;
        }
        let name = match name {
            NameRef::Legacy(span) => NameAt {
                span,
                in_names: false,
            },
            NameRef::Quoted(_) => {
                let start = self.names.len();
                self.names.extend_from_slice(&self.sample_name);
                NameAt {
                    span: Span::new(start, self.names.len()),
                    in_names: true,
                }
            }
        };
        self.declarations.push(Declaration {
            name,
            hash,
            declared: Declared::Untyped,
            typed: false,
            help: None,
            help_verbatim: false,
            unit: None,
        });
        index
    }

    fn find_declaration(&self, b: &[u8], name: &[u8]) -> Option<u32> {
        let hash = hash_name(name);
        self.declaration_table.find(hash, |i| {
            same_bytes(
                kept_name(&self.names, b, self.declarations[i as usize].name),
                name,
            )
        })
    }

    /// Decides the family of a sample named `name` (already escaped):
    /// `at` is where it is in the body, None when it is a quoted name's
    /// content (unescaped, to be copied should it name a new family).
    fn resolve(
        &mut self,
        b: &[u8],
        name: &[u8],
        at: Option<Span>,
        cursor: &mut Cursor,
    ) -> Result<u32, ParseErrorKind> {
        // (where the name comes from, kind, declaration)
        let mut found: Option<(FamilyName, Kind, u32)> = None;
        if let Some(current) = cursor.current {
            let d = &self.declarations[current as usize];
            if let Some((from, kind)) =
                classify(d.declared, kept_name(&self.names, b, d.name), name)
            {
                found = Some((from, kind, current));
            }
        }
        // A body without metadata (or a name that ends in no suffix) has no
        // declaration to look for.
        if found.is_none() && !self.declarations.is_empty() {
            let whole = self.find_declaration(b, name).into_iter();
            let stripped = SUFFIXES.iter().filter_map(|suffix| {
                let base = strip_suffix(name, suffix)?;
                self.find_declaration(b, base)
            });
            for d in whole.chain(stripped) {
                let declaration = &self.declarations[d as usize];
                if let Some((from, kind)) = classify(
                    declaration.declared,
                    kept_name(&self.names, b, declaration.name),
                    name,
                ) {
                    found = Some((from, kind, d));
                    break;
                }
            }
        }
        let (from, kind, declaration) =
            found.unwrap_or((FamilyName::Sample, Kind::Untyped, NO_PARENT));
        let declared = from == FamilyName::Declared;
        if declared && cursor.declared_family.0 == declaration {
            // The family named as the declaration: the one the lookup below
            // would find.
            let family = cursor.declared_family.1;
            if self.families[family as usize].kind == kind {
                return Ok(family);
            }
        }
        let (declared_name, declared_hash, help, help_verbatim, typed) =
            match self.declarations.get(declaration as usize) {
                Some(d) => (d.name, d.hash, d.help, d.help_verbatim, d.typed),
                None => (NameAt::default(), 0, None, false, false),
            };
        let hash;
        let existing = {
            // The declaration's name was hashed when it was declared.
            let family_name;
            (hash, family_name) = match from {
                FamilyName::Declared => (declared_hash, kept_name(&self.names, b, declared_name)),
                FamilyName::Sample => (hash_name(name), name),
            };
            let (families, names) = (&self.families, &self.names);
            self.family_table.find(hash, |i| {
                let family = &families[i as usize];
                family.hash == hash
                    && same_bytes(kept_name(names, b, family.name_at()), family_name)
            })
        };
        if let Some(index) = existing {
            if self.families[index as usize].kind != kind {
                return Err(ParseErrorKind::FamilyType);
            }
            if declared {
                cursor.declared_family = (declaration, index);
            }
            return Ok(index);
        }
        let family_name = match (from, at) {
            // The declaration's name is kept already: shared, not copied.
            (FamilyName::Declared, _) => declared_name,
            (FamilyName::Sample, Some(span)) => NameAt {
                span,
                in_names: false,
            },
            (FamilyName::Sample, None) => {
                let start = self.names.len();
                self.names.extend_from_slice(name);
                NameAt {
                    span: Span::new(start, self.names.len()),
                    in_names: true,
                }
            }
        };
        let index = self.families.len() as u32;
        let help = match help {
            Some(help) => {
                self.helps.push(help);
                self.helps.len() as u32 - 1
            }
            None => NO_HELP,
        };
        self.families.push(Family {
            name: family_name.span,
            hash,
            samples: 0,
            help,
            kind,
            typed,
            name_in_names: family_name.in_names,
            help_verbatim,
        });
        if cursor.openmetrics {
            self.family_declarations.push(declaration);
        }
        let families = &self.families;
        self.family_table
            .insert(hash, index, |i| families[i as usize].hash);
        if declared {
            cursor.declared_family = (declaration, index);
        }
        Ok(index)
    }

    /// A sample line: `name[{labels}] value [timestamp] [# exemplar]`, or
    /// `{"quoted.name"[, labels]} value ...` (Prometheus 3 UTF-8 names).
    fn sample_line(&mut self, b: &[u8], p: usize, cursor: &mut Cursor) -> Result<usize, Fail> {
        let mut flags = SampleFlags::default();
        let om = cursor.openmetrics;
        let (name, after_name, in_braces, known_family) = if b[p] == b'{' {
            let q = if om { p + 1 } else { skip_blanks(b, p + 1) };
            if b.get(q) != Some(&b'"') {
                return Err((ParseErrorKind::MetricName, q));
            }
            let (name, after) = self.metric_name(b, q, true)?;
            flags.insert(SampleFlags::QUOTED_NAME | SampleFlags::SLOW_LABELS);
            (name, after, true, None)
        } else if let Some(end) = repeats_last_name(b, p, cursor) {
            // Runs of one name (series of a family, buckets) skip the scan
            // and the family lookup.
            let name = NameRef::Legacy(Span::new(p, end));
            (name, end, false, Some(cursor.last_family))
        } else if let Some(end) = self
            .after_declared_name(b, p, cursor)
            .map(|end| scan_name(b, end, true))
        {
            // A family's first sample is usually named as its metadata
            // (or with a suffix): only what follows that name is scanned.
            (NameRef::Legacy(Span::new(p, end)), end, false, None)
        } else {
            let (name, after) = self.metric_name(b, p, false)?;
            (name, after, false, None)
        };
        let family = match known_family {
            Some(family) => family,
            None => {
                let name_bytes = std::mem::take(&mut self.sample_name);
                let resolved = match name {
                    NameRef::Legacy(span) => self.resolve(b, span.of(b), Some(span), cursor),
                    NameRef::Quoted(_) => self.resolve(b, &name_bytes, None, cursor),
                };
                self.sample_name = name_bytes;
                let family = resolved.map_err(|kind| (kind, p))?;
                if let NameRef::Legacy(span) = name {
                    cursor.last_name = span;
                    cursor.last_family = family;
                    if self.memo.hash {
                        let kind = self.families[family as usize].kind;
                        cursor.last_name_hash =
                            fingerprint_text(series_seed(kind), b, p..span.end as usize);
                    }
                }
                family
            }
        };
        let kind = self.families[family as usize].kind;

        // Empty, but placed on the line so that it packs (see PackedSample).
        let name_span = match name {
            NameRef::Legacy(span) | NameRef::Quoted(span) => span,
        };
        let mut labels = Span::new(name_span.end as usize, name_span.end as usize);
        let mut q = after_name;
        let mut closed_brace = false;
        let mut series = None;
        let mut hashed = None;
        if in_braces {
            let r = if om { q } else { skip_blanks(b, q) };
            match b.get(r) {
                Some(b',') => {
                    q = self.labels.scan(b, r + 1, kind, &mut flags)?;
                    labels = Span::new(r + 1, q - 1);
                }
                Some(b'}') => q = r + 1,
                _ => return Err((ParseErrorKind::LabelSeparator, r)),
            }
            closed_brace = true;
        } else {
            let r = if om { q } else { skip_blanks(b, q) };
            if b.get(r) == Some(&b'{') {
                // Blanks before the `{` are in neither hash (and make the
                // set one the writer must be told of): no memo for them.
                let remembered = if r == q {
                    match cursor.hashed_set.take() {
                        Some((brace, end, hash)) if brace == r => Some((end, hash, false)),
                        _ => self.remembered_set(b, r, cursor.last_name_hash),
                    }
                } else {
                    None
                };
                match remembered {
                    Some((end, hash, true)) => {
                        q = end;
                        series = Some(hash);
                        self.memo_hits += 1;
                    }
                    found => {
                        hashed = found.map(|(end, hash, _)| (end, hash));
                        if r != q {
                            flags.insert(SampleFlags::SLOW_LABELS);
                        }
                        q = self.labels.scan(b, r + 1, kind, &mut flags)?;
                    }
                }
                labels = Span::new(r + 1, q - 1);
                closed_brace = true;
                flags.insert(SampleFlags::BRACES);
            }
        }
        // Sets the memo may take again are hashed apart from the others.
        // The name's hash (once for a run of one name), then its set from
        // the `{`; a quoted name's text whole, from the line's `{`.
        // A set the memo hashed but did not take is hashed once: when it
        // is as long as the one remembered, that hash is its own.
        let series = match (series, hashed) {
            (Some(hash), _) => hash,
            _ if !self.memo.hash => 0,
            (None, Some((end, hash))) if end == q => hash,
            (None, _) if in_braces => fingerprint_text(series_seed(kind), b, p..q),
            (None, _) if closed_brace => {
                fingerprint_text(cursor.last_name_hash, b, labels.start as usize - 1..q)
            }
            (None, _) => cursor.last_name_hash,
        };
        // The memo takes plain sets only: those the writer copies as they
        // are, which it would otherwise have to be told apart.
        // (Looked at only while series are hashed.)
        let plain = self.memo.hash
            && flags.contains(SampleFlags::BRACES)
            && !flags.intersects(SampleFlags::SLOW_LABELS | SampleFlags::QUOTED_NAME);
        let set_length = if plain {
            u16::try_from(q - (labels.start as usize - 1)).unwrap_or(0)
        } else {
            0
        };

        let (value_start, value_end, value_form, next) = match plain_line_end(b, q) {
            Some(value_end) => {
                flags.insert(SampleFlags::PLAIN_END);
                (q + 1, value_end, ValueForm::Decimal, value_end + 1)
            }
            None => self.line_end_slow(b, q, closed_brace, &mut flags, cursor)?,
        };

        let sample = Sample {
            name: name_span,
            labels,
            value: Span::new(value_start, value_end),
            timestamp: Span::default(),
            flags,
            value_form,
        };
        let packed = PackedSample::pack(&sample).unwrap_or_else(|| {
            let at = self.long_samples.len() as u32;
            self.long_samples.push(sample);
            PackedSample {
                start: at,
                name_end: 0,
                labels_start: 0,
                labels_end: 0,
                value_start: 0,
                value_end: 0,
                flags: flags | SampleFlags::LONG,
                value_form,
            }
        });
        // The memo's hash of this number is read (above) before it is
        // overwritten.
        if self.memo.hash {
            self.memo.set(self.samples.len(), series, set_length);
        }
        self.record(family, packed, cursor);
        Ok(next)
    }

    /// The steady state of a scrape, before [`Self::sample_line`]'s general
    /// path: a line of the last line's family (its name again, then `{`)
    /// whose label set is the text the series memo remembers for this
    /// sample; its value and the rest of the line are read as the general
    /// path reads them (a plain value at once). Records what the general
    /// path would, without its choices; the memo's record of the sample
    /// stays as it is, the same. None for any other line, which the
    /// general path then reads from its start.
    #[inline(always)]
    fn remembered_line(
        &mut self,
        b: &[u8],
        p: usize,
        cursor: &mut Cursor,
    ) -> Result<Option<usize>, Fail> {
        if cursor.last_family == u32::MAX {
            return Ok(None);
        }
        let name = cursor.last_name.of(b);
        let brace = p + name.len();
        if b.get(brace) != Some(&b'{')
            || !b.get(p..brace).is_some_and(|here| same_bytes(here, name))
        {
            return Ok(None);
        }
        let (end, hash, remembered) = match self.remembered_set(b, brace, cursor.last_name_hash) {
            Some(answer) => answer,
            None => return Ok(None),
        };
        if !remembered {
            // Its set changed: the general path takes the line, and this
            // hash of its text with it.
            cursor.hashed_set = Some((brace, end, hash));
            return Ok(None);
        }
        let mut flags = SampleFlags::BRACES;
        // The rest of the line as the general path reads it (with the same
        // error, if any).
        let (value_start, value_end, value_form, next) = match plain_line_end(b, end) {
            Some(value_end) => {
                flags.insert(SampleFlags::PLAIN_END);
                (end + 1, value_end, ValueForm::Decimal, value_end + 1)
            }
            None => self.line_end_slow(b, end, true, &mut flags, cursor)?,
        };
        let Some(packed) = PackedSample::pack(&Sample {
            name: Span::new(p, brace),
            labels: Span::new(brace + 1, end - 1),
            value: Span::new(value_start, value_end),
            timestamp: Span::default(),
            flags,
            value_form,
        }) else {
            return Ok(None); // a line of 64 KiB or more
        };
        self.memo_hits += 1;
        self.record(cursor.last_family, packed, cursor);
        Ok(Some(next))
    }

    /// Adds a sample of `family`, the next in body order.
    #[inline(always)]
    fn record(&mut self, family: u32, packed: PackedSample, cursor: &mut Cursor) {
        if cursor.grouped {
            // Grouped so far: each family's samples follow its first, so
            // the runs are the families themselves and none is recorded.
            // A sample of a family other than the last one breaks that.
            if family as usize + 1 != self.families.len() {
                cursor.grouped = false;
                self.runs.clear();
                self.runs.extend(
                    self.families
                        .iter()
                        .enumerate()
                        .map(|(at, entry)| FamilyRun {
                            family: at as u32,
                            samples: entry.samples,
                        }),
                );
                self.runs.push(FamilyRun { family, samples: 1 });
            }
        } else {
            match self.runs.last_mut() {
                Some(run) if run.family == family => run.samples += 1,
                _ => self.runs.push(FamilyRun { family, samples: 1 }),
            }
        }
        self.families[family as usize].samples += 1;
        if self.samples.len() == self.samples.capacity() {
            // Grow by a quarter rather than doubling: the buffer is kept for
            // the next body of about the same size, so doubling would hold
            // up to twice the samples' memory for good.
            self.samples
                .reserve_exact(self.samples.capacity() / 4 + 1024);
        }
        self.samples.push(packed);
    }

    /// The series memo. Prometheus' scrape cache knows a series by its text
    /// and does not parse its labels again; this is that for validation.
    /// Each sample's series hash is its name's (keyed by the process's
    /// random key and the family's type, which decides whether `le` or
    /// `quantile` must be numbers), `name_hash`, continued over its label
    /// set's text; a build keeps it, and the text's length when the set was
    /// plain (no blanks, quoted names or odd escapes). When this sample's
    /// text from its `{` at `brace`, as long as the previous build's sample
    /// of this number, ends in `}` and hashes as that one did, it is that
    /// text: valid and plain. Returns the position after its `}`, the
    /// hash, and whether the set is that one (then it is taken without a
    /// scan). A set of this text is valid or not by its text, the type and
    /// the format alone (the memo is kept for one format).
    #[inline(always)]
    fn remembered_set(&self, b: &[u8], brace: usize, name_hash: u64) -> Option<(usize, u64, bool)> {
        let n = self.samples.len();
        // Those from `n` on are still the previous build's.
        if n >= self.memo.len() {
            return None;
        }
        let (remembered, length) = self.memo.get(n);
        let end = brace + usize::from(length);
        if length < 2 || b.get(end - 1) != Some(&b'}') {
            return None;
        }
        let hash = fingerprint_text(name_hash, b, brace..end);
        Some((end, hash, hash == remembered))
    }

    /// The rest of a sample line from `q` (after the name or the `}`): value,
    /// optional timestamp and exemplar, line end. Returns the value's span
    /// and form and where the next line starts.
    ///
    /// Text (promlex.l, promparse.go): blanks before the value are optional
    /// (`a+1` is `a` with value `+1`); an optional timestamp of digits
    /// (`ParseInt`); blanks; a newline or the body's end; no exemplar.
    /// OpenMetrics (openmetricslex.l, openmetricsparse.go): one space, the
    /// value, optionally one space and a timestamp (seconds, `parseFloat`,
    /// finite), optionally ` # {labels} value [timestamp]`, the newline.
    #[inline(never)]
    fn line_end_slow(
        &mut self,
        b: &[u8],
        q: usize,
        _closed_brace: bool,
        flags: &mut SampleFlags,
        cursor: &mut Cursor,
    ) -> Result<(usize, usize, ValueForm, usize), Fail> {
        let om = cursor.openmetrics;
        let value_start = if om {
            if b.get(q) != Some(&b' ') {
                return Err((ParseErrorKind::NameEnd, q));
            }
            q + 1
        } else {
            skip_blanks(b, q)
        };
        let value_end = scan_token(b, value_start);
        let value = &b[value_start..value_end];
        let (value_form, maybe_out_of_range) =
            classify_value(value).ok_or((ParseErrorKind::Value, value_start))?;
        if maybe_out_of_range && !decimal_in_range(value) {
            return Err((ParseErrorKind::ValueRange, value_start));
        }
        let mut r = if om {
            value_end
        } else {
            skip_blanks(b, value_end)
        };
        let starts_timestamp = |r: usize| {
            if om {
                b.get(r) == Some(&b' ') && !matches!(b.get(r + 1), Some(b'#'))
            } else {
                r > value_end && !matches!(b.get(r), None | Some(b'\n'))
            }
        };
        if starts_timestamp(r) {
            let start = if om { r + 1 } else { r };
            let end = scan_token(b, start);
            self.timestamp(&b[start..end], start, om)?;
            flags.insert(SampleFlags::TIMESTAMP);
            r = if om { end } else { skip_blanks(b, end) };
        }
        if om && b.get(r..r + 4) == Some(b" # {") {
            r = self.exemplar(b, r + 3)?;
            flags.insert(SampleFlags::EXEMPLAR);
        }
        match b.get(r) {
            Some(b'\n') => Ok((value_start, value_end, value_form, r + 1)),
            // Prometheus' text lexer ends the last line at the body's end
            // (2.42 takes `a 1` with no newline; main's lexer is the same).
            None if !om => Ok((value_start, value_end, value_form, r)),
            None => Err((ParseErrorKind::MissingEof, r)),
            _ => Err((ParseErrorKind::LineEnd, r)),
        }
    }

    /// A timestamp token. Text: `[0-9]+` read by `strconv.ParseInt` (no
    /// sign, within int64). OpenMetrics: seconds read by `parseFloat`,
    /// finite; any such value is accepted, as Prometheus main converts it
    /// with `int64(ts*1000)` and only then drops a sample out of bounds.
    fn timestamp(&mut self, t: &[u8], at: usize, openmetrics: bool) -> Result<(), Fail> {
        if openmetrics {
            return match classify_value(t) {
                Some((ValueForm::Decimal, maybe_out_of_range))
                    if !maybe_out_of_range || decimal_in_range(t) =>
                {
                    Ok(())
                }
                _ => Err((ParseErrorKind::Timestamp, at)),
            };
        }
        match t.first() {
            Some(b'-') => Err((ParseErrorKind::NegativeTimestamp, at)),
            Some(c) if c.is_ascii_digit() => {
                let digits = t
                    .iter()
                    .position(|&c| c != b'0')
                    .map_or(&t[t.len() - 1..], |i| &t[i..]);
                parse_int_timestamp(digits)
                    .filter(|_| !digits.starts_with(b"-"))
                    .map(|_| ())
                    .ok_or((ParseErrorKind::Timestamp, at))
            }
            _ => Err((ParseErrorKind::Timestamp, at)),
        }
    }

    /// OpenMetrics exemplar from its `{` at `p`: `{labels} value
    /// [timestamp]` (openmetricsparse.go `parseComment`; any series may
    /// carry one on Prometheus main). Returns the position after it.
    fn exemplar(&mut self, b: &[u8], p: usize) -> Result<usize, Fail> {
        let mut ignored = SampleFlags::default();
        let q = self.labels.scan(b, p + 1, Kind::Untyped, &mut ignored)?;
        if b.get(q) != Some(&b' ') {
            return Err((ParseErrorKind::Exemplar, q));
        }
        let value_start = q + 1;
        let value_end = scan_token(b, value_start);
        if !is_float64(&b[value_start..value_end]) {
            return Err((ParseErrorKind::Exemplar, value_start));
        }
        if b.get(value_end) != Some(&b' ') {
            return Ok(value_end);
        }
        let ts_start = value_end + 1;
        let ts_end = scan_token(b, ts_start);
        let ts = &b[ts_start..ts_end];
        if value_form(ts) != Some(ValueForm::Decimal) || !is_float64(ts) {
            return Err((ParseErrorKind::Exemplar, ts_start));
        }
        Ok(ts_end)
    }
}

/// How many declarations and families a parse of `body_length` bytes
/// makes room for at once: as many as the last body had (`last`), but
/// never more than the body could hold (each takes a line of four bytes
/// or more), so that a body smaller than the last does not pay for it.
fn presized(last: (u32, u32), body_length: usize) -> (usize, usize) {
    let most = body_length / 4 + 1;
    ((last.0 as usize).min(most), (last.1 as usize).min(most))
}

fn repeats_last_name(b: &[u8], p: usize, cursor: &Cursor) -> Option<usize> {
    if cursor.last_family == u32::MAX {
        return None;
    }
    let last = cursor.last_name.of(b);
    let end = p + last.len();
    if same_bytes(b.get(p..end)?, last) && !b.get(end).is_some_and(|&c| is_metric_continue(c)) {
        Some(end)
    } else {
        None
    }
}

#[derive(Clone, Copy)]
enum NameRef {
    Legacy(Span),
    /// Raw content of the quoted string; its escaped form is in `sample_name`.
    Quoted(Span),
}

/// The common line end ` <digits>[.<digits>]\n` from `q`: returns the
/// value's end (the newline's position). Such a value is always a valid
/// decimal, so the general path (blanks, value syntax, timestamp, exemplar,
/// CRLF) is skipped; anything else returns None and takes it.
#[inline(always)]
fn plain_line_end(b: &[u8], q: usize) -> Option<usize> {
    if b.get(q) != Some(&b' ') {
        return None;
    }
    let digits = |from: usize| {
        b.get(from..)
            .and_then(|rest| rest.iter().position(|c| !c.is_ascii_digit()))
            .map(|n| from + n)
    };
    let integer_end = digits(q + 1)?;
    // Up to 308 integer digits is below f64::MAX (about 1.8e308) whatever
    // the digits; longer ones take the general path and its range check.
    if integer_end - (q + 1) > MAX_IN_RANGE_INTEGER_DIGITS {
        return None;
    }
    let mut end = integer_end;
    if b[end] == b'.' {
        end = digits(end + 1)?;
    }
    // At least one digit (`.` alone is no number), then the newline.
    let has_digit = end - (q + 1) > usize::from(end > integer_end);
    (has_digit && b[end] == b'\n').then_some(end)
}

/// Where `b` stops being UTF-8, if it does. Bodies are mostly ASCII, so
/// blocks of it are passed by `<[u8]>::is_ascii` (`str::from_utf8` costs
/// about twice as much on a 1 MB body); from the first block that is not,
/// the standard validator reads the rest. That block starts on a character
/// boundary, as every byte before it is ASCII.
fn first_invalid_utf8(b: &[u8]) -> Option<usize> {
    const BLOCK: usize = 4096;
    let ascii_prefix = b.chunks(BLOCK).take_while(|block| block.is_ascii()).count() * BLOCK;
    // Past the end when every block is ASCII.
    let rest = b.get(ascii_prefix..)?;
    std::str::from_utf8(rest)
        .err()
        .map(|error| ascii_prefix + error.valid_up_to())
}

/// The most a series memo may hold between builds: a pod of bodies at the
/// size limit (4 MiB each, about 500 KiB of memo) keeps none, so its
/// memory is what the model had before the memo (the hostile pod's cgroup
/// peak went from 24.4 to 25.7 MiB with them); a 1 MB body's (140 KiB)
/// is kept.
const MEMO_BYTES: usize = 256 << 10;

/// Where a sample's series hash starts: the process's key and the family's
/// type.
#[inline]
fn series_seed(kind: Kind) -> u64 {
    hash_key() ^ (kind as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The series memo: what a build leaves the next one.
#[derive(Default)]
struct Memo {
    /// Each sample's hash of its name and label set, in body order
    /// ([`Index::remembered_set`]); none when no memo is kept. While a
    /// build parses, those from its current sample on are the previous
    /// build's.
    hashes: Vec<u64>,
    /// For a plain set, the length of its text from the `{`; 0 for others,
    /// and for a text of 64 KiB or more, which the memo does not take.
    lengths: Vec<u16>,
    /// The rules they were read by (a memo is kept for one format).
    openmetrics: bool,
    /// The bloom of label names of the build they were kept from: the
    /// names of the sets the memo takes are in it.
    bloom: LabelBloom,
    /// The last body was of the shape the memo pays for: this build hashes
    /// its series ([`Index::keep_memo`]).
    hash: bool,
}

impl Memo {
    const BYTES_A_SAMPLE: usize = std::mem::size_of::<u64>() + std::mem::size_of::<u16>();

    fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Drops the hashes with their allocation.
    fn forget(&mut self) {
        self.hashes = Vec::new();
        self.lengths = Vec::new();
    }

    fn truncate(&mut self, samples: usize) {
        self.hashes.truncate(samples);
        self.lengths.truncate(samples);
    }

    #[inline]
    fn get(&self, n: usize) -> (u64, u16) {
        (self.hashes[n], self.lengths[n])
    }

    /// Sample `n`'s record: the previous build's is overwritten, past its
    /// end one is added (growing by a quarter, as `samples` does).
    #[inline]
    fn set(&mut self, n: usize, hash: u64, length: u16) {
        if n < self.hashes.len() {
            self.hashes[n] = hash;
            self.lengths[n] = length;
            return;
        }
        if self.hashes.len() == self.hashes.capacity() {
            let more = self.hashes.capacity() / 4 + 1024;
            self.hashes.reserve_exact(more);
            self.lengths.reserve_exact(more);
        }
        self.hashes.push(hash);
        self.lengths.push(length);
    }
}

/// End of a whitespace-delimited token.
fn scan_token(b: &[u8], p: usize) -> usize {
    scan_until_class(b, p, TOKEN_END)
}

#[inline]
fn find_newline(b: &[u8], p: usize) -> usize {
    find_byte(b, p, b'\n')
}

/// The end of a HELP line whose name ends at `after`, and whether its
/// text (from the byte after that one, which is dropped) holds no
/// backslash and no quote: found by one scan for the three bytes, where
/// the writers would scan the text again at every build.
#[inline]
fn help_line_end(b: &[u8], after: usize) -> (usize, bool) {
    if matches!(b.get(after), None | Some(b'\n')) {
        return (after.min(b.len()), true);
    }
    let stop = scan_quote_stop(b, after + 1);
    match b.get(stop) {
        None | Some(b'\n') => (stop, true),
        Some(_) => (find_newline(b, stop), false),
    }
}

fn line_of(b: &[u8], at: usize) -> u32 {
    let at = at.min(b.len());
    let lines = b[..at].iter().filter(|&&c| c == b'\n').count() + 1;
    u32::try_from(lines).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, labels, value, timestamp) of one sample.
    type Texts = (String, String, String, String);

    /// Wide label sets skip the pairwise check and are checked sorted at
    /// their end; a duplicate must be found there too, also in a sample that
    /// repeats the previous sample's names up to the duplicate.
    #[test]
    fn duplicates_in_wide_label_sets() {
        let names: Vec<String> = (0..20).map(|i| format!("l{i}")).collect();
        let set = |names: &[String]| -> String {
            let labels: Vec<String> = names.iter().map(|name| format!("{name}=\"v\"")).collect();
            format!("m{{{}}} 1\n", labels.join(","))
        };
        let unique = set(&names);
        let mut duplicated = names.clone();
        duplicated[18] = "l3".to_string();
        let duplicated = set(&duplicated);
        let cases = [
            (unique.clone(), true),
            (format!("{unique}{unique}"), true),
            (duplicated.clone(), false),
            (format!("{unique}{duplicated}"), false),
        ];
        for (body, parses) in cases {
            let result = Index::default().build(body.as_bytes(), false);
            assert_eq!(result.is_ok(), parses, "{body}");
            if let Err(error) = result {
                assert_eq!(error.kind, ParseErrorKind::DuplicateLabel);
            }
        }
    }

    /// The verdict of each body by its format's rules, as Prometheus main's
    /// promparse.go / openmetricsparse.go give it (the differential test in
    /// tests/verdicts.rs holds the same against a real Prometheus).
    #[test]
    fn verdicts_by_format() {
        use ParseErrorKind as E;
        // (body, openmetrics, None = accepted or the error)
        let table: &[(&str, bool, Option<ParseErrorKind>)] = &[
            ("a 1\n", false, None),
            ("a 1", false, None),
            ("a 1\r\n", false, Some(E::LineEnd)),
            ("\r\n", false, Some(E::MetricName)),
            ("  a{ x = \"1\" ,} 1  2 \n\n\t\n", false, None),
            ("a{x=\"1\" y=\"2\"} 1\n", false, None),
            ("a+1\n", false, None),
            ("a{x=\"b\\\\a\\z\"} 1\n", false, None),
            ("a 1 -1\n", false, Some(E::NegativeTimestamp)),
            ("a 1 1.5\n", false, Some(E::Timestamp)),
            ("a 1 00000000000000000000001\n", false, None),
            ("a 1 9223372036854775808\n", false, Some(E::Timestamp)),
            ("a 1 # {x=\"y\"} 1\n", false, Some(E::Timestamp)),
            ("# TYPE a unknown\na 1\n", false, Some(E::MetricType)),
            ("# TYPE a counter \na 1\n", false, Some(E::MetricType)),
            ("# TYPE a counter\n# TYPE a counter\na 1\n", false, None),
            ("# HELP\n#HELP a b c\n# EOF\na 1\n# UNIT a x\n", false, None),
            ("a 1\n# HELP a x", false, None),
            ("a 1\n# a comment", false, None),
            // promparse.go drops the byte after the name; a HELP text that
            // then starts inside a character is not UTF-8 (fuzz finding).
            (
                "# HELP a\u{73e} counter.\na 1\n",
                false,
                Some(E::InvalidUtf8),
            ),
            ("# HELP a%\u{73e} counter.\na 1\n", false, None),
            ("# HELP a\na 1\n", false, None),
            ("a 1\n# EOF\n", true, None),
            ("a 1\n# EOF", true, None),
            ("", true, None),
            ("a 1\n", true, Some(E::MissingEof)),
            ("a 1\n# EOF\n\n", true, Some(E::AfterEof)),
            ("a 1\n# EOF \n", true, Some(E::AfterEof)),
            ("\na 1\n# EOF\n", true, Some(E::MetricName)),
            (" a 1\n# EOF\n", true, Some(E::MetricName)),
            ("a  1\n# EOF\n", true, Some(E::Value)),
            ("a\t1\n# EOF\n", true, Some(E::NameEnd)),
            ("a 1 \n# EOF\n", true, Some(E::Timestamp)),
            ("a{x=\"1\", y=\"2\"} 1\n# EOF\n", true, Some(E::LabelName)),
            ("a{x=\"1\",} 1\n# EOF\n", true, None),
            ("a {x=\"1\"} 1\n# EOF\n", true, Some(E::Value)),
            ("a_total{foo=\"b\\\\a\\z\"} 2\n# EOF\n", true, None),
            ("a 1 12345678901234567890.1234567890\n# EOF\n", true, None),
            ("a 1 -1.5\n# EOF\n", true, None),
            ("a 1 NaN\n# EOF\n", true, Some(E::Timestamp)),
            ("a 1 1e999\n# EOF\n", true, Some(E::Timestamp)),
            ("# TYPE a gauge\na 1 # {x=\"y\"} 1 2\n# EOF\n", true, None),
            ("a 1 # {x=\"y\"} 1 2 \n# EOF\n", true, Some(E::LineEnd)),
            ("a 1 # {x=\"y\"} NaN\n# EOF\n", true, None),
            ("a 1 # {x=\"y\"} 1 Inf\n# EOF\n", true, Some(E::Exemplar)),
            ("# TYPE a untyped\na 1\n# EOF\n", true, Some(E::MetricType)),
            ("# TYPE a unknown\na 1\n# EOF\n", true, None),
            ("# UNIT a_seconds seconds\na_seconds 1\n# EOF\n", true, None),
            ("# UNIT a_seconds\n# EOF\n", true, Some(E::NameEnd)),
            ("# UNIT a seconds\na 1\n# EOF\n", true, Some(E::Unit)),
            ("# UNIT aseconds seconds\n# EOF\n", true, Some(E::Unit)),
            ("# a comment\n# EOF\n", true, Some(E::Comment)),
            ("#HELP a b\n# EOF\n", true, Some(E::Comment)),
            ("a 1\r\n# EOF\n", true, Some(E::LineEnd)),
        ];
        for &(body, openmetrics, expected) in table {
            let result = Index::default().build(body.as_bytes(), openmetrics);
            assert_eq!(
                result.err().map(|error| error.kind),
                expected,
                "{body:?} as {}",
                if openmetrics { "OpenMetrics" } else { "text" }
            );
        }
    }

    /// All a built index tells its readers, as text: the verdict, and each
    /// family with its samples (spans' text, flags, value form).
    fn everything(index: &Index, result: Result<(), ParseError>, body: &[u8]) -> String {
        use std::fmt::Write;
        let mut out = format!("{result:?}\n");
        let view = IndexView::new(index, body);
        for family in 0..view.family_count() as u32 {
            let f = view.family(family);
            let help = f.help.map(String::from_utf8_lossy);
            let _ = writeln!(
                out,
                "{} {:?} {} {help:?}",
                String::from_utf8_lossy(f.name),
                f.kind,
                f.typed
            );
            for sample in view.samples(family) {
                let text = |span: Span| String::from_utf8_lossy(span.of(body)).into_owned();
                let _ = writeln!(
                    out,
                    "  {} {{{}}} {} {} {:?} {:?}",
                    text(sample.name),
                    text(sample.labels),
                    text(sample.value),
                    text(sample.timestamp),
                    sample.flags,
                    sample.value_form
                );
            }
        }
        out
    }

    /// The series memo: a body built after another (with the index retired
    /// or released between, as snapshots do) reads exactly as when built on
    /// a fresh index, verdict included, whatever the body before it. Each
    /// pair is a way the memo could take a set it should not: a type that
    /// makes `le` a number, the other format's rules, blanks or an odd
    /// escape the writer must be told of, a `}` in a value, a set cut
    /// short, a previous body interleaved or refused; and the bloom must
    /// hold the names of the sets taken without a scan.
    /// A parse makes room at once for the last body's declarations and
    /// families, never for more than its own body could hold; a refused
    /// body keeps no tables and leaves no counts, and neither does a
    /// shrunk index.
    #[test]
    fn a_parse_makes_room_for_no_more_than_its_body_holds() {
        assert_eq!(presized((65_536, 65_536), 10), (3, 3));
        assert_eq!(presized((10, 20), 1_000_000), (10, 20));
        let big: String = (0..10_000)
            .map(|i| format!("# TYPE f{i} gauge\nf{i} 1\n"))
            .collect();
        let mut index = Index::default();
        assert!(index.build(big.as_bytes(), false).is_ok());
        assert_eq!(index.last_counts, (10_000, 10_000));
        assert!(index.build(b"a{\n", false).is_err());
        assert_eq!(index.last_counts, (0, 0));
        assert_eq!(index.declarations.capacity(), 0);
        assert!(index.build(big.as_bytes(), false).is_ok());
        index.shrink();
        assert_eq!(index.last_counts, (0, 0));
    }

    #[test]
    fn a_body_built_after_another_reads_as_on_a_fresh_index() {
        // Buckets of a histogram, or samples of an untyped `h_bucket`
        // beside a gauge `h`, whose `le` need not be a number.
        let buckets = |family_type: &str, le: &str| {
            let mut body = format!("# TYPE h {family_type}\n");
            for path in 0..4 {
                for le in [le, "+Inf"] {
                    body += &format!("h_bucket{{path=\"/api/v1/items/{path}\",le=\"{le}\"}} 1\n");
                }
            }
            body
        };
        let hist = |le: &str| buckets("histogram", le);
        // A histogram whose lines turn from `_bucket` to `_sum` and `_count`
        // and back for each label set; `between` comes after each set's.
        let turning = |between: &str| {
            let mut body = "# TYPE h histogram\n".to_string();
            for path in 0..3 {
                for le in ["0.5", "+Inf"] {
                    body += &format!("h_bucket{{path=\"/{path}\",le=\"{le}\"}} 1\n");
                }
                body += &format!("h_sum{{path=\"/{path}\"}} 2\nh_count{{path=\"/{path}\"}} 1\n");
                body += between;
            }
            body
        };
        let gauge_le = buckets("gauge", "x");
        let labels = |values: [&str; 3]| {
            values
                .iter()
                .map(|v| {
                    format!(
                        "m{{a=\"{v}\",container=\"c\",path=\"/api/v1/items/0\"}} 1\n\
                         m{{a=\"{v}\",b=\"2\",path=\"/api/v1/items/1\"}} 2\n"
                    )
                })
                .collect::<String>()
        };
        let plain = labels(["1", "22", "333"]);
        let bodies: Vec<(String, bool)> = vec![
            (plain.clone(), false),
            (labels(["1", "22", "334"]), false),
            (labels(["1", "2}", "333"]), false),
            (labels(["x\\z", "22", "333"]), false),
            (plain.replace("a=", "a ="), false),
            (plain.replace("m{", "m {"), false),
            (plain.replace("m{", "m\t{"), false),
            (plain.replace("container", "pod"), false),
            (plain.replace("1\n", "5 17\n"), false),
            (format!("{plain}# EOF\n"), true),
            (
                plain.replace("container=\"c\"", "container=\"c\",container=\"d\""),
                false,
            ),
            (format!("x 1\n{plain}"), false),
            (format!("{plain}m{{a=\"1\",container=\"c\"}} 9\n"), false),
            (
                "m{a=\"1\",container=\"c\"} 1\nq 1\nm{a=\"22\",b=\"2\"} 2\n".to_string(),
                false,
            ),
            (plain.replace("} 2\n", "} 2\n\n"), false),
            (plain.replace("{a=", "{\"m\",a="), false),
            (hist("0.5"), false),
            (hist("x"), false),
            (gauge_le.clone(), false),
            (gauge_le.replace("gauge", "histogram"), false),
            (format!("{}# EOF\n", hist("0.5")), true),
            // Remembered sets followed by values that are not plain: an
            // exponent, NaN, a timestamp, exemplars, and values that break
            // the line (the same error at the same line).
            (plain.replace("} 2\n", "} 2e3\n"), false),
            (plain.replace("} 2\n", "} NaN\n"), false),
            (plain.replace("} 2\n", "} x\n"), false),
            (plain.replace("} 2\n", "} 2 1 1\n"), false),
            (
                format!("{}# EOF\n", plain.replace("} 2\n", "} 2 17.5\n")),
                true,
            ),
            (
                format!("{}# EOF\n", plain.replace("} 2\n", "} 2 # {t=\"1\"} 1\n")),
                true,
            ),
            (
                format!(
                    "{}# EOF\n",
                    hist("0.5").replace("} 1\n", "} 1 # {t=\"1\"} 1\n")
                ),
                true,
            ),
            (
                format!(
                    "{}# EOF\n",
                    hist("0.5").replace("} 1\n", "} 1 # {t=\"1\"}\n")
                ),
                true,
            ),
            (turning(""), false),
            (format!("{}# EOF\n", turning("")), true),
            // Another family's line, or metadata, between the turns: the
            // names are resolved again.
            (turning("g{path=\"/\"} 1\n"), false),
            // `h_sum` after another family's line, numbered as in the
            // grouped body after it, whose memo takes its set: it is `h`'s
            // again, not the last line's family's.
            (
                "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum{p=\"/api/v1/items/0\",q=\"a long label value to keep the memo\"} 2\n\
                 h_count 1\ng{p=\"/\"} 1\nh_sum{p=\"/api/v1/items/1\",q=\"a long label value to keep the memo\"} 2\n"
                    .to_string(),
                false,
            ),
            (
                "# TYPE a gauge\na 1\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\n\
                 h_sum{p=\"/api/v1/items/0\",q=\"a long label value to keep the memo\"} 2\nh_count 1\nh_sum{p=\"/api/v1/items/1\",q=\"a long label value to keep the memo\"} 2\n"
                    .to_string(),
                false,
            ),
            (turning("# TYPE h_sum gauge\n"), false),
            (turning("# HELP h x\n"), false),
            (format!("{}# EOF\n", turning("# TYPE g gauge\ng 1\n")), true),
            ("not a body\n".to_string(), false),
            (String::new(), false),
        ];
        let names = ["a", "b", "container", "pod", "le"];
        let mut hits = 0;
        for (before, before_om) in &bodies {
            for (body, om) in &bodies {
                for release in [false, true] {
                    // `before` twice, so that its series are hashed and
                    // kept; then the body twice: after `before`'s memo, and
                    // after its own.
                    let mut index = Index::default();
                    for _ in 0..2 {
                        index.retire();
                        let _ = index.build(before.as_bytes(), *before_om);
                    }
                    for _ in 0..2 {
                        if release {
                            index.release();
                        } else {
                            index.retire();
                        }
                        let result = index.build(body.as_bytes(), *om);
                        // Built twice, so that the second hashes its series
                        // (without a memo: the first did not).
                        let mut fresh = Index::default();
                        let _ = fresh.build(body.as_bytes(), *om);
                        fresh.retire();
                        let fresh_result = fresh.build(body.as_bytes(), *om);
                        assert_eq!(
                            everything(&index, result, body.as_bytes()),
                            everything(&fresh, fresh_result, body.as_bytes()),
                            "{body:?} after {before:?}"
                        );
                        // The bloom may hold more (names of the body the
                        // sets were remembered from), never fewer.
                        for name in names {
                            let name = name.as_bytes();
                            assert!(
                                index.labels.may_contain(name) || !fresh.labels.may_contain(name),
                                "{body:?} after {before:?}"
                            );
                        }
                        // A build hashes its series when the body before
                        // was of the memo's shape: then they are the ones a
                        // build without a memo hashes.
                        if !index.memo.hashes.is_empty() {
                            assert_eq!(
                                index.memo.hashes, fresh.memo.hashes,
                                "{body:?} after {before:?}"
                            );
                        }
                        hits += index.memo_hits;
                    }
                }
            }
        }
        assert!(hits > 0);
        // The same body, built again, is taken whole.
        let mut index = Index::default();
        for _ in 0..3 {
            index.release();
            index.build(plain.as_bytes(), false).unwrap();
        }
        assert_eq!(index.memo_hits, 6);
    }

    /// A HELP text is verbatim exactly when it holds no backslash and no
    /// quote, whatever the byte dropped after the name, and wherever its
    /// line ends (a newline, the body's end); the index keeps that of each
    /// family and parent.
    #[test]
    fn help_is_verbatim_when_it_holds_no_backslash_and_no_quote() {
        let alphabet = [b'a', b'\\', b'"', b'\n'];
        for length in 0..=18u32 {
            // Every string up to five bytes, then longer ones made of runs.
            let count = if length <= 5 {
                alphabet.len().pow(length)
            } else {
                64
            };
            for mut code in 0..count {
                let mut line = vec![b'x'];
                for i in 0..length as usize {
                    let at = if length <= 5 {
                        code % alphabet.len()
                    } else {
                        (code >> (i / 5)) & 3
                    };
                    line.push(alphabet[at]);
                    if length <= 5 {
                        code /= alphabet.len();
                    }
                }
                let eol = line.iter().position(|&c| c == b'\n').unwrap_or(line.len());
                let text = &line[2.min(eol)..eol];
                let verbatim = !text.iter().any(|&c| c == b'\\' || c == b'"');
                assert_eq!(help_line_end(&line, 1), (eol, verbatim), "{line:?}");
            }
        }
        let text = "# HELP a Quoted \"a\".\na 1\n# HELP b Plain.\nb 1\n# HELP c A \\\\.\nc 1\n";
        let openmetrics = format!("{text}# EOF\n");
        for (body, openmetrics) in [(text.to_string(), false), (openmetrics, true)] {
            let mut index = Index::default();
            index.build(body.as_bytes(), openmetrics).unwrap();
            let view = IndexView::new(&index, body.as_bytes());
            for (family, verbatim) in [(0, false), (1, true), (2, false)] {
                assert_eq!(view.family(family).help_verbatim, verbatim, "{body}");
                if openmetrics {
                    let parent = view.openmetrics_family(family);
                    assert_eq!(parent.help_verbatim, verbatim, "{body}");
                }
            }
        }
    }

    /// A name read by comparing it with the current declaration's (the
    /// metadata line after another, a family's first sample) ends where a
    /// scan of it ends: at the first byte no name has, past a longer name
    /// the declared one is the start of, and not inside a quoted one.
    #[test]
    fn names_compared_with_the_declared_one_end_where_a_scan_ends() {
        let body = "# HELP x_y Help.\n# TYPE x_y summary\nx_y{quantile=\"0.5\"} 1\nx_y_sum 2\nx_y_count 3\n\
                    # HELP x_yz Other.\n# TYPE x_yz gauge\nx_yz:w 4\n\
                    # HELP x_y:z Other.\n# TYPE x_y:z counter\nx_y:z 5\n\
                    # TYPE x gauge\nx_y\t6\n";
        let families = decode(body);
        let names: Vec<(&str, Vec<&str>)> = families
            .iter()
            .map(|(family, samples)| {
                (
                    family.as_str(),
                    samples.iter().map(|s| s.0.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("x_y", vec!["x_y", "x_y_sum", "x_y_count", "x_y"]),
                ("x_yz:w", vec!["x_yz:w"]),
                ("x_y:z", vec!["x_y:z"]),
            ]
        );
        // The second TYPE of x_y disagrees with the first: refused, as a
        // lookup of the name refuses it.
        let mut index = Index::default();
        let refused = "# TYPE x_y summary\n# HELP x_y Help.\n# TYPE x_y gauge\n";
        assert!(index.build(refused.as_bytes(), false).is_err());
    }

    /// Every family's name and its samples, as the writer would read them.
    fn decode(body: &str) -> Vec<(String, Vec<Texts>)> {
        let body = body.as_bytes();
        let mut index = Index::default();
        index.build(body, false).expect("body parses");
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (0..index.families.len() as u32)
            .map(|number| {
                let family = &index.families[number as usize];
                let range = index.sample_range(number);
                let range = range.start as usize..range.end as usize;
                let samples = index.samples[range]
                    .iter()
                    .map(|packed| {
                        let sample = index.sample(packed, body);
                        (
                            text(sample.name.of(body)),
                            text(sample.labels.of(body)),
                            text(sample.value.of(body)),
                            text(sample.timestamp.of(body)),
                        )
                    })
                    .collect();
                (
                    text(kept_name(&index.names, body, family.name_at())),
                    samples,
                )
            })
            .collect()
    }

    fn texts(name: &str, labels: &str, value: &str, timestamp: &str) -> Texts {
        (name.into(), labels.into(), value.into(), timestamp.into())
    }

    /// Issue 19: bytes of index a family (the capacity of every buffer the
    /// index holds) on bodies of 65,536 one-sample families: held after
    /// the build (what a snapshot keeps for the merge, and what the memory
    /// budget counts), and at the end of parsing, before the scratch is
    /// given back (the build's peak). Built twice, as scrapes reuse an
    /// index. Was 73.2 held, at most 48 wanted.
    #[test]
    fn an_index_of_one_sample_families_costs_at_most_48_bytes_a_family() {
        const FAMILIES: usize = 65_536;
        let plain: String = (0..FAMILIES)
            .map(|i| format!("bench_family_{i:07} {i}\n"))
            .collect();
        let typed: String = (0..FAMILIES)
            .map(|i| {
                format!("# TYPE envoy_family_{i:07} counter\nenvoy_family_{i:07}{{a=\"b\"}} {i}\n")
            })
            .collect();
        let openmetrics = format!(
            "{}# EOF\n",
            (0..FAMILIES)
                .map(|i| format!("# TYPE om_{i:07} counter\nom_{i:07}_total {i}\n"))
                .collect::<String>()
        );
        // (body, openmetrics, held bound)
        let cases = [
            ("plain", plain.as_str(), false, Some(48)),
            ("typed", typed.as_str(), false, Some(48)),
            ("OpenMetrics", openmetrics.as_str(), true, None),
        ];
        for (shape, body, om, bound) in cases {
            let mut index = Index::default();
            for _ in 0..2 {
                index.clear();
                index.parse(body.as_bytes(), om).expect("parses");
                let peak = index.capacity_bytes() as f64 / FAMILIES as f64;
                // What `build` does after parsing.
                index.keep_memo(body.len());
                index.release_scratch();
                let held = index.capacity_bytes() as f64 / FAMILIES as f64;
                assert_eq!(index.families.len(), FAMILIES);
                eprintln!("{shape}: {held:.1} bytes a family held, {peak:.1} while parsing");
                if let Some(bound) = bound {
                    assert!(
                        held <= f64::from(bound),
                        "{shape}: {held:.1} bytes a family"
                    );
                }
            }
        }
    }

    #[test]
    fn utf8_is_judged_as_the_standard_library_judges_it() {
        // Non-ASCII bytes, valid and not, on and around block boundaries.
        let pieces: [&[u8]; 6] = [
            b"\xc3\xa9",
            b"\xe2\x82\xac",
            b"\xf0\x9f\x98\x80",
            b"\xc3",
            b"\xff",
            b"\xed\xa0\x80",
        ];
        for length in [0usize, 1, 255, 4095, 4096, 4097, 8191, 9000] {
            for piece in pieces {
                for at in [0, length / 2, length.saturating_sub(2), length] {
                    let mut body = vec![b'a'; length];
                    body.splice(at.min(length)..at.min(length), piece.iter().copied());
                    let expected = std::str::from_utf8(&body).err().map(|e| e.valid_up_to());
                    assert_eq!(
                        first_invalid_utf8(&body),
                        expected,
                        "{length} {at} {piece:?}"
                    );
                }
            }
            assert_eq!(first_invalid_utf8(&vec![b'a'; length]), None);
        }
    }

    #[test]
    fn plain_line_ends_are_recognised() {
        // (rest of the line after the name or `}`, value end if plain)
        let table: &[(&str, Option<usize>)] = &[
            (" 1\n", Some(2)),
            (" 12.5\n", Some(5)),
            (" 1.\n", Some(3)),
            (" .5\n", Some(3)),
            (" .\n", None),
            (" \n", None),
            (" 1", None),
            (" 1.5", None),
            (" 1 2\n", None),
            (" 1\r\n", None),
            ("  1\n", None),
            ("\t1\n", None),
            (" 1e3\n", None),
            (" -1\n", None),
            (" 1.2.3\n", None),
        ];
        for (rest, expected) in table {
            assert_eq!(plain_line_end(rest.as_bytes(), 0), *expected, "{rest:?}");
        }
    }

    #[test]
    fn interleaved_families_are_regrouped_in_input_order() {
        let body = "a 1\nb{x=\"1\"} 2\na 3 100\nc 4\nb 5\na 6\n";
        let expected = vec![
            (
                "a".to_string(),
                vec![
                    texts("a", "", "1", ""),
                    texts("a", "", "3", "100"),
                    texts("a", "", "6", ""),
                ],
            ),
            (
                "b".to_string(),
                vec![texts("b", "x=\"1\"", "2", ""), texts("b", "", "5", "")],
            ),
            ("c".to_string(), vec![texts("c", "", "4", "")]),
        ];
        assert_eq!(decode(body), expected);
    }

    #[test]
    fn lines_longer_than_a_packed_offset_are_kept_whole() {
        let long_value = "v".repeat(70_000);
        let long_labels = format!("l=\"{long_value}\"");
        let body = format!("m{{{long_labels}}} 1 5\nm 2\nm{{{long_labels}}} 3\nm 4\n");
        let expected = vec![(
            "m".to_string(),
            vec![
                texts("m", &long_labels, "1", "5"),
                texts("m", "", "2", ""),
                texts("m", &long_labels, "3", ""),
                texts("m", "", "4", ""),
            ],
        )];
        assert_eq!(decode(&body), expected);
    }
}
