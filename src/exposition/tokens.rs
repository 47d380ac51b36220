//! What the parser (parse.rs) and the label-set scanner (labels.rs) share:
//! byte spans, what a sample line's flags say, the 0.0.4 type of a family,
//! the refusals, and the quoted-string and blank scanners. Both import it;
//! it imports neither, so the scanner does not depend on the parser that
//! uses it.

use super::text::scan_quote_stop;

/// What the parser expected and did not find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseErrorKind {
    TooLarge,
    InvalidUtf8,
    MetricName,
    NameEnd,
    LabelName,
    LabelEquals,
    LabelValueStart,
    UnterminatedQuote,
    InvalidEscape,
    LabelSeparator,
    DuplicateLabel,
    BucketBound,
    Quantile,
    Value,
    ValueRange,
    Timestamp,
    NegativeTimestamp,
    ReservedLabelName,
    Exemplar,
    LineEnd,
    MetricType,
    DuplicateType,
    FamilyType,
    AfterEof,
    MissingEof,
    Comment,
    Unit,
}

impl ParseErrorKind {
    pub fn message(self) -> &'static str {
        match self {
            ParseErrorKind::TooLarge => "expected a body smaller than 4 GiB",
            ParseErrorKind::InvalidUtf8 => "expected UTF-8 text",
            ParseErrorKind::MetricName => "expected a metric name",
            ParseErrorKind::NameEnd => "expected a space after the metric name",
            ParseErrorKind::LabelName => "expected a label name or '}'",
            ParseErrorKind::LabelEquals => "expected '=' after the label name",
            ParseErrorKind::LabelValueStart => "expected '\"' to open the label value",
            ParseErrorKind::UnterminatedQuote => "expected '\"' to close the quoted string on its line",
            ParseErrorKind::InvalidEscape => {
                "expected an escape sequence (a backslash and a character on its line)"
            }
            ParseErrorKind::LabelSeparator => "expected ',' or '}' after the label",
            ParseErrorKind::DuplicateLabel => "expected each label name at most once per sample",
            ParseErrorKind::BucketBound => "expected a number as the value of the le label",
            ParseErrorKind::Quantile => "expected a number as the value of the quantile label",
            ParseErrorKind::Value => "expected a value (decimal number, NaN, +Inf or -Inf)",
            ParseErrorKind::ValueRange => {
                "expected a value within float64 range (Prometheus refuses the whole scrape otherwise)"
            }
            ParseErrorKind::Timestamp => {
                "expected a timestamp (integer milliseconds, or seconds in OpenMetrics)"
            }
            ParseErrorKind::NegativeTimestamp => {
                "expected a timestamp not before 1970 (Prometheus' text parser refuses a negative one)"
            }
            ParseErrorKind::ReservedLabelName => {
                "expected no label name starting with __ (Prometheus refuses __name__, Python's parser any)"
            }
            ParseErrorKind::Exemplar => "expected an exemplar '# {labels} value [timestamp]'",
            ParseErrorKind::LineEnd => "expected the end of the line",
            ParseErrorKind::MetricType => "expected a metric type of the body's format (text: counter, gauge, histogram, summary, untyped; OpenMetrics: counter, gauge, histogram, gaugehistogram, summary, info, stateset, unknown)",
            ParseErrorKind::DuplicateType => "expected one TYPE line per metric name",
            ParseErrorKind::FamilyType => {
                "expected the samples of a family to agree with its TYPE (TYPE after samples, or a sample name its TYPE does not allow)"
            }
            ParseErrorKind::AfterEof => "expected nothing after # EOF",
            ParseErrorKind::MissingEof => {
                "expected an OpenMetrics body to end with # EOF (else it was cut short)"
            }
            ParseErrorKind::Comment => {
                "expected '# HELP ', '# TYPE ', '# UNIT ' or '# EOF' (OpenMetrics has no other comments)"
            }
            ParseErrorKind::Unit => "expected a UNIT that is the metric name's suffix after '_'",
        }
    }
}

/// The type a family is written with in text 0.0.4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
            Kind::Untyped => "untyped",
        }
    }

    /// Counter, gauge and untyped samples all read the same way, so a
    /// conflict between them can be written as untyped without loss.
    pub(crate) fn is_simple(self) -> bool {
        matches!(self, Kind::Counter | Kind::Gauge | Kind::Untyped)
    }
}

/// A byte range, as u32 offsets (bodies are limited far below 4 GiB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    pub(crate) fn is_empty(self) -> bool {
        self.start >= self.end
    }

    pub(crate) fn of(self, bytes: &[u8]) -> &[u8] {
        bytes
            .get(self.start as usize..self.end as usize)
            .unwrap_or(&[])
    }
}

/// What the parser learnt about a sample's line that tells the writer how
/// it may copy it. One byte, because it is kept per sample in the index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SampleFlags(u8);

impl SampleFlags {
    /// The sample's name is the content of a quoted string, to be escaped.
    pub(crate) const QUOTED_NAME: SampleFlags = SampleFlags(1);
    /// The label set is not in canonical form (quoted names, blanks,
    /// trailing comma): the writer re-tokenises it instead of copying it.
    pub(crate) const SLOW_LABELS: SampleFlags = SampleFlags(2);
    /// The sample has braces; `labels.end` is the position of its `}`.
    pub(crate) const BRACES: SampleFlags = SampleFlags(4);
    /// A timestamp follows the value (found again by `Index::sample`).
    pub(crate) const TIMESTAMP: SampleFlags = SampleFlags(8);
    /// The sample is kept whole in `Index::long_samples` (see
    /// `PackedSample` in parse.rs).
    pub(crate) const LONG: SampleFlags = SampleFlags(16);
    /// The line ends ` <decimal>\n` right after the name or the `}`: the
    /// writer may copy it from there through the newline.
    pub(crate) const PLAIN_END: SampleFlags = SampleFlags(32);
    /// An OpenMetrics exemplar follows the value (and timestamp), found
    /// again by `IndexView::exemplar`.
    pub(crate) const EXEMPLAR: SampleFlags = SampleFlags(64);

    /// Whether every flag of `other` is set.
    #[inline]
    pub(crate) fn contains(self, other: SampleFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag of `other` is set.
    #[inline]
    pub(crate) fn intersects(self, other: SampleFlags) -> bool {
        self.0 & other.0 != 0
    }

    #[inline]
    pub(crate) fn insert(&mut self, other: SampleFlags) {
        self.0 |= other.0;
    }
}

impl std::ops::BitOr for SampleFlags {
    type Output = SampleFlags;

    fn bitor(self, other: SampleFlags) -> SampleFlags {
        SampleFlags(self.0 | other.0)
    }
}

/// An error and the body position it is reported at.
pub(crate) type Fail = (ParseErrorKind, usize);

pub(crate) fn skip_blanks(b: &[u8], mut p: usize) -> usize {
    while p < b.len() && (b[p] == b' ' || b[p] == b'\t') {
        p += 1;
    }
    p
}

/// A quoted string at `p` (which holds `"`): returns the content's span and
/// the position of the closing quote. Both of Prometheus' lexers take a
/// backslash and any character but a newline as an escape; `\\`, `\"` and
/// `\n` are decoded, any other is kept as written (promparse.go
/// `lvalReplacer`), so `\z` means a backslash and `z`. Such a string sets
/// [`SampleFlags::SLOW_LABELS`] in `flags`: the writer must write its
/// backslash escaped for expfmt and Python, which refuse `\z`.
pub(crate) fn scan_quoted(
    b: &[u8],
    p: usize,
    flags: &mut SampleFlags,
) -> Result<(Span, usize), Fail> {
    let mut i = p + 1;
    loop {
        i = scan_quote_stop(b, i);
        match b.get(i) {
            Some(b'"') => return Ok((Span::new(p + 1, i), i)),
            Some(b'\\') => match b.get(i + 1) {
                Some(b'\\' | b'"' | b'n') => i += 2,
                Some(b'\n') | None => return Err((ParseErrorKind::InvalidEscape, i)),
                Some(_) => {
                    flags.insert(SampleFlags::SLOW_LABELS);
                    i += 2;
                }
            },
            Some(b'\n') | None => return Err((ParseErrorKind::UnterminatedQuote, p)),
            Some(_) => i += 1,
        }
    }
}
