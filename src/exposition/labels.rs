//! The label-set scanner: reads `{name="value",...}` from just after the
//! opening brace, validates it whole (names, escapes, duplicates, numeric
//! `le`/`quantile` bounds) and tells the parser how the writer may copy it
//! ([`SampleFlags::SLOW_LABELS`] when it is not in canonical form).
//!
//! It keeps the previous label set's names between calls: consecutive
//! samples of a body usually repeat them in order, and a repeated name
//! needs no scan, no duplicate check and no bloom update, because the
//! previous set passed them ([`LabelScanner::repeated_label`]). The first
//! name that differs truncates the kept list there; from then on names are
//! checked and pushed. The kept spans point into one body: [`clear`] must
//! run before the next body is scanned.
//!
//! Label names starting with `__` are refused (Prometheus refuses a
//! `__name__` in a label set, Python's parser any such name), in exemplars
//! too, although exemplars are dropped: the kept names are shared between
//! sample and exemplar label sets, so a name checked once must be checked
//! for every set that may repeat it.
//!
//! [`clear`]: LabelScanner::clear

use super::text::{
    escape_quoted_name, hash_name_from, is_float64, is_label_continue, is_label_start, same_bytes,
    scan_name, unescape_into, NameRule,
};
use super::tokens::{scan_quoted, skip_blanks, Fail, Kind, ParseErrorKind, SampleFlags, Span};

/// Label sets up to this many names are checked for duplicates pairwise as
/// each name is read; wider ones once at the closing brace, by sorting.
const PAIRWISE_LABEL_CHECK: usize = 16;

/// A label name as the duplicate check sees it.
#[derive(Clone, Copy)]
struct LabelName {
    span: Span,
    /// In `LabelScanner::escaped_names` (an escaped quoted name) rather
    /// than the body.
    escaped: bool,
    /// `le` or `quantile`: the value may have to be a number.
    bound: bool,
}

/// Two bits per label name (of its name hash, unkeyed: a body says the
/// same of a name on every run) present anywhere in a body:
/// lets the writer skip looking for the container label in bodies without
/// it. With 512 bits, a body of 50 label names says "may" of another name
/// about once in thirty; one bit of a hash of the first two bytes, the
/// last and the length said it of `container` for every node_exporter body
/// (its `collector` label), and every sample then had its labels walked.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct LabelBloom([u64; 8]);

impl LabelBloom {
    fn bits(name: &[u8]) -> [usize; 2] {
        let hash = hash_name_from(0, name) as usize;
        [hash & 511, (hash >> 9) & 511]
    }

    fn insert(&mut self, name: &[u8]) {
        for bit in LabelBloom::bits(name) {
            self.0[bit / 64] |= 1 << (bit % 64);
        }
    }

    pub(super) fn may_contain(&self, name: &[u8]) -> bool {
        LabelBloom::bits(name)
            .iter()
            .all(|&bit| self.0[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

/// Where a label's value leaves the scanner.
enum Next {
    /// After a `,`: another label (or the closing brace) follows from here.
    Label(usize),
    /// After the closing `}`.
    End(usize),
}

/// The label-set scanner and what it learnt of the current body: the names
/// of the previous set and a bloom of every name seen. Buffers are kept
/// from body to body.
#[derive(Default)]
pub(super) struct LabelScanner {
    /// The current (or previous) label set's names, in order.
    names: Vec<LabelName>,
    /// `names` sorted, for the duplicate check of wide label sets.
    sorted_names: Vec<LabelName>,
    /// Escaped forms of the current set's quoted names.
    escaped_names: Vec<u8>,
    bloom: LabelBloom,
    /// The body is OpenMetrics: no blanks anywhere in a label set, a comma
    /// between labels (openmetricslex.l). Text allows blanks between tokens
    /// and even no comma (promparse.go `parseLVals`).
    openmetrics: bool,
}

impl LabelScanner {
    /// Forgets the previous body: the kept names are spans into it.
    pub(super) fn clear(&mut self) {
        self.names.clear();
        self.bloom = LabelBloom::default();
    }

    pub(super) fn shrink(&mut self) {
        self.sorted_names = Vec::new();
    }

    /// Which format's rules the next label sets are read by.
    pub(super) fn set_openmetrics(&mut self, openmetrics: bool) {
        self.openmetrics = openmetrics;
    }

    /// Bytes held by the scanner's buffers between bodies.
    pub(super) fn capacity_bytes(&self) -> usize {
        self.names.capacity() * std::mem::size_of::<LabelName>() + self.escaped_names.capacity()
    }

    /// The bloom of the names seen so far.
    pub(super) fn bloom(&self) -> LabelBloom {
        self.bloom
    }

    /// Adds the names of `bloom` to the body's: those of label sets taken
    /// without a scan (the parser's series memo), which were in it.
    pub(super) fn add_names_of(&mut self, bloom: LabelBloom) {
        for (word, other) in self.bloom.0.iter_mut().zip(bloom.0) {
            *word |= other;
        }
    }

    /// Whether a label named `name` may occur in the body (no false
    /// negatives).
    pub(super) fn may_contain(&self, name: &[u8]) -> bool {
        self.bloom.may_contain(name)
    }

    /// Scans a label set from just after `{` (or a quoted name's comma)
    /// through the closing `}`; returns the position after `}`. `kind` is
    /// the sample's family type (which labels must be numbers).
    pub(super) fn scan(
        &mut self,
        b: &[u8],
        mut p: usize,
        kind: Kind,
        flags: &mut SampleFlags,
    ) -> Result<usize, Fail> {
        // Escaped names of the previous set are never repeated (below), so
        // their spans into `escaped_names` are dead.
        self.escaped_names.clear();
        let mut count = 0;
        let mut repeating = true;
        let end = loop {
            if repeating {
                if let Some(close) = self.repeated_label(b, p, count, kind, flags)? {
                    count += 1;
                    match after_value(b, close, flags, self.openmetrics)? {
                        Next::Label(next) => {
                            p = next;
                            continue;
                        }
                        Next::End(end) => break end,
                    }
                }
            }
            let q = skip_blanks(b, p);
            if q != p {
                if self.openmetrics {
                    return Err((ParseErrorKind::LabelName, p));
                }
                flags.insert(SampleFlags::SLOW_LABELS);
            }
            p = q;
            let mut name = match b.get(p) {
                Some(b'}') => {
                    if count > 0 {
                        flags.insert(SampleFlags::SLOW_LABELS); // trailing comma
                    }
                    break p + 1;
                }
                Some(b'"') => {
                    let (content, close) = scan_quoted(b, p, flags)?;
                    flags.insert(SampleFlags::SLOW_LABELS);
                    repeating = false;
                    let start = self.escaped_names.len();
                    if !escape_quoted_name(content.of(b), NameRule::Label, &mut self.escaped_names)
                    {
                        return Err((ParseErrorKind::LabelName, p));
                    }
                    p = close + 1;
                    LabelName {
                        span: Span::new(start, self.escaped_names.len()),
                        escaped: true,
                        bound: false,
                    }
                }
                Some(&c) if is_label_start(c) => {
                    let end = match self.names.get(count) {
                        Some(previous) if repeating && !previous.escaped => {
                            let name = previous.span.of(b);
                            let end = p + name.len();
                            if b.get(p..end).is_some_and(|here| same_bytes(here, name))
                                && !b.get(end).is_some_and(|&c| is_label_continue(c))
                            {
                                end
                            } else {
                                repeating = false;
                                scan_name(b, p + 1, false)
                            }
                        }
                        _ => {
                            repeating = false;
                            scan_name(b, p + 1, false)
                        }
                    };
                    let span = Span::new(p, end);
                    p = end;
                    LabelName {
                        span,
                        escaped: false,
                        bound: false,
                    }
                }
                _ => return Err((ParseErrorKind::LabelName, p)),
            };
            let q = skip_blanks(b, p);
            if b.get(q) != Some(&b'=') {
                return Err((ParseErrorKind::LabelEquals, q));
            }
            let r = skip_blanks(b, q + 1);
            if q != p || r != q + 1 {
                if self.openmetrics {
                    return Err((ParseErrorKind::LabelEquals, p));
                }
                flags.insert(SampleFlags::SLOW_LABELS);
            }
            if b.get(r) != Some(&b'"') {
                return Err((ParseErrorKind::LabelValueStart, r));
            }
            let (value, close) = scan_quoted(b, r, flags)?;

            let name_bytes = if name.escaped {
                name.span.of(&self.escaped_names)
            } else {
                name.span.of(b)
            };
            if !repeating {
                // Names from here on are this set's own. Every name enters
                // the kept list here, so repeats were checked here too.
                if name_bytes.starts_with(b"__") {
                    return Err((ParseErrorKind::ReservedLabelName, r));
                }
                self.names.truncate(count);
                // Wide sets are checked once, sorted, after the loop: a
                // pairwise check is quadratic in the labels of a sample.
                // (Not a `filter` on the names: that still walks them all,
                // which made the check quadratic in unoptimised builds.)
                if count < PAIRWISE_LABEL_CHECK {
                    for seen in &self.names {
                        let seen_bytes = if seen.escaped {
                            seen.span.of(&self.escaped_names)
                        } else {
                            seen.span.of(b)
                        };
                        if seen_bytes == name_bytes {
                            return Err((ParseErrorKind::DuplicateLabel, r));
                        }
                    }
                }
                self.bloom.insert(name_bytes);
                name.bound = name_bytes == b"le" || name_bytes == b"quantile";
                self.names.push(name);
            }
            check_bound(kind, name_bytes, value.of(b), r)?;
            count += 1;
            match after_value(b, close, flags, self.openmetrics)? {
                Next::Label(next) => p = next,
                Next::End(end) => break end,
            }
        };
        // A shorter set than the previous one: drop the names it lacks.
        self.names.truncate(count);
        if !repeating && self.has_duplicate_among_wide_labels(b) {
            return Err((ParseErrorKind::DuplicateLabel, end - 1));
        }
        Ok(end)
    }

    /// The fast path for the common case: at `p` the previous set's name at
    /// this position, then `="` with no blanks. Returns the position of the
    /// value's closing quote, or None when the label is not such a repeat
    /// (the general path then reads it).
    #[inline]
    fn repeated_label(
        &self,
        b: &[u8],
        p: usize,
        count: usize,
        kind: Kind,
        flags: &mut SampleFlags,
    ) -> Result<Option<usize>, Fail> {
        let Some(previous) = self.names.get(count).filter(|previous| !previous.escaped) else {
            return Ok(None);
        };
        let name = previous.span.of(b);
        let end = p + name.len();
        if b.get(end..end + 2) != Some(b"=\"")
            || !b.get(p..end).is_some_and(|here| same_bytes(here, name))
        {
            return Ok(None);
        }
        let (value, close) = scan_quoted(b, end + 1, flags)?;
        if previous.bound {
            check_bound(kind, name, value.of(b), end + 1)?;
        }
        Ok(Some(close))
    }

    /// The duplicate check of a label set too wide for the pairwise check in
    /// `scan`: sort a copy of the names and compare neighbours, n log n
    /// instead of n² (a hostile sample with 2·10^5 labels otherwise stalls
    /// the loop for a minute).
    fn has_duplicate_among_wide_labels(&mut self, b: &[u8]) -> bool {
        if self.names.len() <= PAIRWISE_LABEL_CHECK {
            return false;
        }
        let escaped_names = &self.escaped_names;
        let bytes = |name: &LabelName| {
            if name.escaped {
                name.span.of(escaped_names)
            } else {
                name.span.of(b)
            }
        };
        self.sorted_names.clear();
        self.sorted_names.extend_from_slice(&self.names);
        self.sorted_names
            .sort_unstable_by(|x, y| bytes(x).cmp(bytes(y)));
        self.sorted_names
            .windows(2)
            .any(|pair| bytes(&pair[0]) == bytes(&pair[1]))
    }
}

/// After a label value's closing quote at `close`: blanks (which make the
/// set non-canonical; OpenMetrics has none), then `,` or `}`; in text also
/// the next label's name with no comma, which promparse.go takes.
#[inline]
fn after_value(
    b: &[u8],
    close: usize,
    flags: &mut SampleFlags,
    openmetrics: bool,
) -> Result<Next, Fail> {
    // Canonical sets have the separator right after the quote.
    match b.get(close + 1) {
        Some(b',') => return Ok(Next::Label(close + 2)),
        Some(b'}') => return Ok(Next::End(close + 2)),
        _ if openmetrics => return Err((ParseErrorKind::LabelSeparator, close + 1)),
        _ => {}
    }
    let s = skip_blanks(b, close + 1);
    flags.insert(SampleFlags::SLOW_LABELS);
    match b.get(s) {
        Some(b',') => Ok(Next::Label(s + 1)),
        Some(b'}') => Ok(Next::End(s + 1)),
        Some(&c) if c == b'"' || is_label_start(c) => Ok(Next::Label(s)),
        _ => Err((ParseErrorKind::LabelSeparator, s)),
    }
}

/// expfmt (promtool) requires `le` of a histogram and `quantile` of a
/// summary to be numbers Go's ParseFloat reads (in float64 range). Called for every label: always inlined, so the
/// common case (neither type) costs one comparison.
#[inline(always)]
fn check_bound(kind: Kind, name: &[u8], value: &[u8], at: usize) -> Result<(), Fail> {
    match kind {
        Kind::Histogram if name == b"le" && !is_float64(value) => {
            Err((ParseErrorKind::BucketBound, at))
        }
        Kind::Summary if name == b"quantile" && !is_float64(value) => {
            Err((ParseErrorKind::Quantile, at))
        }
        _ => Ok(()),
    }
}

/// One label of a validated label set, as [`LabelIter`] yields it.
pub(super) struct Label<'a> {
    /// The name as written: quoted names still escaped, without quotes.
    pub raw_name: &'a [u8],
    pub quoted: bool,
    /// Still escaped, as 0.0.4 wants it.
    pub value: &'a [u8],
    /// Where `value` starts in the label set's bytes (for spans into the body).
    pub value_start: usize,
}

impl<'a> Label<'a> {
    /// The legacy name: unquoted as is, quoted ones escaped into `scratch`.
    pub fn name<'s>(&self, scratch: &'s mut Vec<u8>) -> &'s [u8]
    where
        'a: 's,
    {
        if self.quoted {
            escape_quoted_name(self.raw_name, NameRule::Label, scratch);
            scratch
        } else {
            self.raw_name
        }
    }

    /// The name as it was meant (a quoted one unescaped into `scratch`),
    /// before any escaping scheme is applied.
    pub fn unescaped_name<'s>(&self, scratch: &'s mut Vec<u8>) -> &'s [u8]
    where
        'a: 's,
    {
        if self.quoted {
            scratch.clear();
            unescape_into(self.raw_name, scratch);
            scratch
        } else {
            self.raw_name
        }
    }

    /// Appends [`Label::name`] to `out`.
    pub fn push_name(&self, out: &mut Vec<u8>) {
        if self.quoted {
            escape_quoted_name(self.raw_name, NameRule::Label, out);
        } else {
            out.extend_from_slice(self.raw_name);
        }
    }
}

/// Iterates the labels of a label set the parser validated. Never panics,
/// even on input it did not validate (it then stops early).
pub(super) struct LabelIter<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> LabelIter<'a> {
    pub fn new(bytes: &'a [u8]) -> LabelIter<'a> {
        LabelIter { bytes, at: 0 }
    }

    fn skip(&mut self, accept: impl Fn(u8) -> bool) {
        while self.bytes.get(self.at).is_some_and(|&c| accept(c)) {
            self.at += 1;
        }
    }

    /// Content of the quoted string starting at `at`; moves past it.
    fn quoted(&mut self) -> Option<&'a [u8]> {
        if self.bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        let start = self.at + 1;
        let mut i = start;
        loop {
            match self.bytes.get(i)? {
                b'"' => break,
                b'\\' => i += 2,
                _ => i += 1,
            }
        }
        self.at = i + 1;
        self.bytes.get(start..i)
    }
}

impl<'a> Iterator for LabelIter<'a> {
    type Item = Label<'a>;

    fn next(&mut self) -> Option<Label<'a>> {
        self.skip(|c| c == b' ' || c == b'\t' || c == b',');
        let (raw_name, quoted) = if self.bytes.get(self.at) == Some(&b'"') {
            (self.quoted()?, true)
        } else {
            let start = self.at;
            self.skip(|c| c.is_ascii_alphanumeric() || c == b'_');
            (self.bytes.get(start..self.at)?, false)
        };
        if raw_name.is_empty() && !quoted {
            return None;
        }
        self.skip(|c| c == b' ' || c == b'\t' || c == b'=');
        let value_start = self.at + 1;
        let value = self.quoted()?;
        Some(Label {
            raw_name,
            quoted,
            value,
            value_start,
        })
    }
}

/// The position of the `}` that closes a validated label set starting at
/// `p` (after its `{`): quoted strings are skipped whole.
pub(super) fn label_set_end(b: &[u8], mut p: usize) -> Option<usize> {
    while p < b.len() {
        match b[p] {
            b'}' => return Some(p),
            b'"' => {
                p += 1;
                while p < b.len() && b[p] != b'"' {
                    p += if b[p] == b'\\' { 2 } else { 1 };
                }
                p += 1;
            }
            _ => p += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    type Outcome = Result<bool, ParseErrorKind>;

    /// Scans each label set (the text after `{`) in turn with one scanner,
    /// as consecutive samples of one body: Ok(flags are slow) or the error.
    fn scan_all(kind: Kind, sets: &[&str]) -> Vec<Outcome> {
        let body: String = sets.iter().map(|set| format!("{set}\n")).collect();
        let b = body.as_bytes();
        let mut scanner = LabelScanner::default();
        let mut at = 0;
        let mut results = Vec::new();
        for set in sets {
            let mut flags = SampleFlags::default();
            results.push(
                scanner
                    .scan(b, at, kind, &mut flags)
                    .map(|end| {
                        assert_eq!(b[end - 1], b'}', "{set}");
                        flags.contains(SampleFlags::SLOW_LABELS)
                    })
                    .map_err(|(kind, _)| kind),
            );
            at += set.len() + 1;
        }
        results
    }

    #[test]
    fn label_sets_table() {
        use ParseErrorKind as E;
        let table: &[(Kind, &str, Outcome)] = &[
            (Kind::Gauge, "}", Ok(false)),
            (Kind::Gauge, "a=\"1\"}", Ok(false)),
            (Kind::Gauge, "a=\"1\",b=\"x\\\"y\"}", Ok(false)),
            (Kind::Gauge, "a=\"1\",}", Ok(true)),
            (Kind::Gauge, " a = \"1\" }", Ok(true)),
            (Kind::Gauge, "\"a.b\"=\"1\"}", Ok(true)),
            (Kind::Gauge, "\"\"=\"1\"}", Err(E::LabelName)),
            (Kind::Gauge, "a=\"1\",a=\"2\"}", Err(E::DuplicateLabel)),
            (
                Kind::Gauge,
                "a_b=\"1\",\"a.b\"=\"2\"}",
                Err(E::DuplicateLabel),
            ),
            (Kind::Gauge, "1a=\"1\"}", Err(E::LabelName)),
            (Kind::Gauge, "a\"1\"}", Err(E::LabelEquals)),
            (Kind::Gauge, "a=1}", Err(E::LabelValueStart)),
            (Kind::Gauge, "a=\"1}", Err(E::UnterminatedQuote)),
            // Prometheus keeps unknown escapes as written: valid, but
            // written again with the backslash escaped (the slow path).
            (Kind::Gauge, "a=\"\\t\"}", Ok(true)),
            (Kind::Gauge, "a=\"\\\n\"}", Err(E::InvalidEscape)),
            (Kind::Gauge, "a=\"1\";b=\"2\"}", Err(E::LabelSeparator)),
            (Kind::Histogram, "le=\"0.5\"}", Ok(false)),
            (Kind::Histogram, "le=\"+Inf\"}", Ok(false)),
            (Kind::Histogram, "le=\"x\"}", Err(E::BucketBound)),
            (Kind::Summary, "quantile=\"x\"}", Err(E::Quantile)),
            (Kind::Gauge, "le=\"x\",quantile=\"y\"}", Ok(false)),
            (Kind::Histogram, "le=\"1e999\"}", Err(E::BucketBound)),
            (Kind::Summary, "quantile=\"-1e999\"}", Err(E::Quantile)),
            (Kind::Histogram, "le=\"1e-999\"}", Ok(false)),
            (Kind::Gauge, "__name__=\"y\"}", Err(E::ReservedLabelName)),
            (Kind::Gauge, "a=\"1\",__x=\"y\"}", Err(E::ReservedLabelName)),
            (
                Kind::Gauge,
                "\"__name__\"=\"y\"}",
                Err(E::ReservedLabelName),
            ),
            (Kind::Gauge, "_x=\"y\"}", Ok(false)),
        ];
        for (kind, set, expected) in table {
            assert_eq!(scan_all(*kind, &[set]), vec![*expected], "{set}");
        }
    }

    /// The repeat fast path must judge exactly what the general path judges:
    /// a set repeating the previous one's names is still checked for bounds,
    /// escapes and separators, and a set that departs from it midway is
    /// still checked for duplicates.
    #[test]
    fn repeated_sets_are_checked_like_new_ones() {
        use ParseErrorKind as E;
        let cases: &[(Kind, &[&str], &[Outcome])] = &[
            (
                Kind::Histogram,
                &["le=\"1\"}", "le=\"2\"}", "le=\"x\"}"],
                &[Ok(false), Ok(false), Err(E::BucketBound)],
            ),
            (
                Kind::Gauge,
                &["a=\"1\",b=\"2\"}", "a=\"1\",b=\"\\q\"}"],
                &[Ok(false), Ok(true)],
            ),
            (
                Kind::Gauge,
                &["a=\"1\",b=\"2\"}", "a=\"1\",a=\"2\"}"],
                &[Ok(false), Err(E::DuplicateLabel)],
            ),
            (
                Kind::Gauge,
                &["a=\"1\",b=\"2\"}", "a=\"1\" ,b=\"2\"}", "a=\"1\"}"],
                &[Ok(false), Ok(true), Ok(false)],
            ),
            (
                Kind::Gauge,
                &["ab=\"1\"}", "abc=\"1\",ab=\"2\"}"],
                &[Ok(false), Ok(false)],
            ),
            (
                Kind::Gauge,
                &["a=\"1\",b=\"2\"}", "a=\"1\",b=\"2\";}"],
                &[Ok(false), Err(E::LabelSeparator)],
            ),
            (
                Kind::Gauge,
                &["a=\"1\"}", "a=\"2\",__name__=\"x\"}"],
                &[Ok(false), Err(E::ReservedLabelName)],
            ),
        ];
        for (kind, sets, expected) in cases {
            assert_eq!(scan_all(*kind, sets), expected.to_vec(), "{sets:?}");
        }
    }

    /// node_exporter's label names do not make the bloom say `container`
    /// (the old one said it of `collector`: the same length, first two and
    /// last bytes), nor the usual other names of a pod's exporters.
    #[test]
    fn the_bloom_does_not_take_collector_for_container() {
        let body = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/node_exporter.prom"
        ))
        .unwrap();
        let mut bloom = LabelBloom::default();
        let mut names = 0;
        for line in body.lines().filter(|line| !line.starts_with('#')) {
            let Some(set) = line
                .split_once('{')
                .and_then(|(_, rest)| rest.split_once('}'))
            else {
                continue;
            };
            for pair in set.0.split("\",").filter(|pair| !pair.is_empty()) {
                let name = pair.split_once('=').map_or(pair, |(name, _)| name);
                bloom.insert(name.trim_start_matches(',').as_bytes());
                names += 1;
            }
        }
        assert!(names > 100 && bloom.may_contain(b"collector"));
        for absent in [
            &b"container"[..],
            b"pod",
            b"namespace",
            b"kubernetes_container",
        ] {
            assert!(
                !bloom.may_contain(absent),
                "{:?}",
                String::from_utf8_lossy(absent)
            );
        }
    }

    #[test]
    fn the_bloom_holds_every_name_seen() {
        let body = b"a=\"1\",b=\"2\"}\na=\"1\",\"c.d\"=\"2\"}\n";
        let mut scanner = LabelScanner::default();
        let mut flags = SampleFlags::default();
        let end = scanner.scan(body, 0, Kind::Gauge, &mut flags).unwrap();
        scanner
            .scan(body, end + 1, Kind::Gauge, &mut flags)
            .unwrap();
        for name in [&b"a"[..], b"b", b"c_d"] {
            assert!(scanner.may_contain(name), "{name:?}");
        }
        scanner.clear();
        assert!(!scanner.may_contain(b"a"));
    }
}
