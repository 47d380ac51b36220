//! Byte-level rules of the exposition formats shared by the parser and the
//! writer: character classes of names, value syntax, escaping, and a small
//! open-addressing name table that is reused across bodies (no allocation
//! after warm-up).

use super::openmetrics::{hash_key, mix};

/// Byte classes, one lookup per byte in the hot loops.
pub(crate) const METRIC_START: u8 = 1;
pub(crate) const METRIC_CONTINUE: u8 = 2;
pub(crate) const LABEL_START: u8 = 4;
pub(crate) const LABEL_CONTINUE: u8 = 8;
/// Ends the plain run of a quoted string: `"`, `\\` or a newline.
pub(crate) const QUOTE_STOP: u8 = 16;
/// Ends a whitespace-delimited token: space, tab, CR, LF.
pub(crate) const TOKEN_END: u8 = 32;

pub(crate) static CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let alpha = b.is_ascii_alphabetic() || b == b'_';
        let digit = b.is_ascii_digit();
        let mut class = 0;
        // Exposition format: metric names [a-zA-Z_:][a-zA-Z0-9_:]*,
        // label names [a-zA-Z_][a-zA-Z0-9_]*.
        if alpha || b == b':' {
            class |= METRIC_START | METRIC_CONTINUE;
        }
        if digit {
            class |= METRIC_CONTINUE | LABEL_CONTINUE;
        }
        if alpha {
            class |= LABEL_START | LABEL_CONTINUE;
        }
        if b == b'"' || b == b'\\' || b == b'\n' {
            class |= QUOTE_STOP;
        }
        if b == b' ' || b == b'\t' || b == b'\r' || b == b'\n' {
            class |= TOKEN_END;
        }
        table[c] = class;
        c += 1;
    }
    table
};

pub(crate) fn is_metric_start(c: u8) -> bool {
    CLASS[c as usize] & METRIC_START != 0
}

pub(crate) fn is_metric_continue(c: u8) -> bool {
    CLASS[c as usize] & METRIC_CONTINUE != 0
}

pub(crate) fn is_label_start(c: u8) -> bool {
    CLASS[c as usize] & LABEL_START != 0
}

pub(crate) fn is_label_continue(c: u8) -> bool {
    CLASS[c as usize] & LABEL_CONTINUE != 0
}

/// Whether every byte of `bytes` is in `class` (one bit): the lookups are
/// and-ed together without a branch per byte, as the names checked whole
/// (the protobuf reader's) are short and nearly always valid.
#[inline]
pub(crate) fn all_in_class(bytes: &[u8], class: u8) -> bool {
    bytes.iter().fold(class, |all, &c| all & CLASS[c as usize]) != 0
}

/// First position from `p` whose byte is not in `class` (or the end).
#[inline]
pub(crate) fn scan_class(b: &[u8], p: usize, class: u8) -> usize {
    match b.get(p..) {
        Some(rest) => rest
            .iter()
            .position(|&c| CLASS[c as usize] & class == 0)
            .map_or(b.len(), |i| p + i),
        None => b.len(),
    }
}

/// The class of a name's bytes after its first: a metric name's (with `:`,
/// `colon`) or a label name's.
#[inline]
pub(crate) fn name_class(colon: bool) -> u8 {
    if colon {
        METRIC_CONTINUE
    } else {
        LABEL_CONTINUE
    }
}

/// First position from `p` whose byte cannot continue a name (or the end):
/// `[a-zA-Z0-9_]`, and `:` when `colon` (a metric name's). Eight bytes at
/// a time: names are the most scanned bytes of a body's metadata (each
/// HELP and TYPE line names its family), and a byte loop with a table
/// lookup costs about four instructions a byte.
#[inline]
pub(crate) fn scan_name(b: &[u8], mut p: usize, colon: bool) -> usize {
    while p + 8 <= b.len() {
        let outside = outside_name(word_at(b, p), colon);
        if outside != 0 {
            return p + (outside.trailing_zeros() / 8) as usize;
        }
        p += 8;
    }
    scan_class(b, p, name_class(colon))
}

/// Whether every byte of `bytes` may continue a name (see [`scan_name`]):
/// eight at a time, the last eight overlapping those before.
#[inline]
pub(crate) fn all_name_bytes(bytes: &[u8], colon: bool) -> bool {
    let len = bytes.len();
    if len < 8 {
        return all_in_class(bytes, name_class(colon));
    }
    let mut at = 0;
    while at + 8 < len {
        if outside_name(word_at(bytes, at), colon) != 0 {
            return false;
        }
        at += 8;
    }
    outside_name(word_at(bytes, len - 8), colon) == 0
}

/// The high bit of each byte of `word` that is not a name's (see
/// [`scan_name`]). Each byte's low seven bits are compared with a range by
/// adding to them: the sum of a 7-bit value and at most 0x80 does not
/// carry into the next byte, and its high bit tells the comparison.
#[inline]
fn outside_name(word: u64, colon: bool) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let low = word & !HIGHS;
    // High bit set where the byte is at least `lo` and at most `hi`.
    let within = |x: u64, lo: u8, hi: u8| {
        (x + ONES * u64::from(0x80 - lo)) & !(x + ONES * u64::from(0x7f - hi)) & HIGHS
    };
    let digits = within(low, b'0', if colon { b':' } else { b'9' });
    // Upper case folds onto lower; `@` and `[` to `_` fold outside it.
    let letters = within(low | (ONES * 0x20), b'a', b'z');
    let underscore = !((low ^ (ONES * u64::from(b'_'))) + ONES * 0x7f) & HIGHS;
    // A byte with its high bit set is never a name's.
    (!(digits | letters | underscore) | word) & HIGHS
}

/// Equality of short byte strings (names) without a call to `memcmp`: eight
/// bytes at a time, then one overlapping load for the tail, so no byte loop.
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let len = a.len();
    if len != b.len() {
        return false;
    }
    if len >= 8 {
        let mut at = 0;
        while at + 8 <= len {
            if word_at(a, at) != word_at(b, at) {
                return false;
            }
            at += 8;
        }
        // The last eight bytes, overlapping what was already compared.
        return at == len || word_at(a, len - 8) == word_at(b, len - 8);
    }
    if len >= 4 {
        return half_at(a, 0) == half_at(b, 0) && half_at(a, len - 4) == half_at(b, len - 4);
    }
    // Up to three bytes: first, middle and last cover them all.
    len == 0 || (a.first() == b.first() && a.get(len / 2) == b.get(len / 2) && a.last() == b.last())
}

#[inline]
fn word_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(chunk) = bytes.get(at..at + 8) {
        word.copy_from_slice(chunk);
    }
    u64::from_le_bytes(word)
}

#[inline]
fn half_at(bytes: &[u8], at: usize) -> u32 {
    let mut half = [0u8; 4];
    if let Some(chunk) = bytes.get(at..at + 4) {
        half.copy_from_slice(chunk);
    }
    u32::from_le_bytes(half)
}

/// First `"`, `\\` or newline from `p` (or the end). Eight bytes at a time
/// (SWAR zero-byte test): label values are the bulk of a body.
#[inline]
pub(crate) fn scan_quote_stop(b: &[u8], mut p: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Lowest set bit is exact; borrows only disturb bits above it.
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let stops = |word: u64| {
        has_zero(word ^ (ONES * u64::from(b'"')))
            | has_zero(word ^ (ONES * u64::from(b'\\')))
            | has_zero(word ^ (ONES * u64::from(b'\n')))
    };
    // Sixteen bytes a step: most label values end within the first, so the
    // loop's exit is one well-predicted branch rather than one per word.
    while p + 16 <= b.len() {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&b[p..p + 16]);
        let both = u128::from_le_bytes(bytes);
        let (low, high) = (stops(both as u64), stops((both >> 64) as u64));
        if low | high != 0 {
            let at = if low != 0 {
                low.trailing_zeros() / 8
            } else {
                8 + high.trailing_zeros() / 8
            };
            return p + at as usize;
        }
        p += 16;
    }
    while p + 8 <= b.len() {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&b[p..p + 8]);
        let found = stops(u64::from_le_bytes(bytes));
        if found != 0 {
            return p + (found.trailing_zeros() / 8) as usize;
        }
        p += 8;
    }
    scan_until_class(b, p, QUOTE_STOP)
}

/// First `byte` from `p` (or the end), eight bytes at a time like
/// [`scan_quote_stop`]: HELP lines are long.
pub(crate) fn find_byte(b: &[u8], mut p: usize, byte: u8) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    while p + 8 <= b.len() {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&b[p..p + 8]);
        let x = u64::from_le_bytes(bytes) ^ (ONES * u64::from(byte));
        let found = x.wrapping_sub(ONES) & !x & HIGHS;
        if found != 0 {
            return p + (found.trailing_zeros() / 8) as usize;
        }
        p += 8;
    }
    match b.get(p..) {
        Some(rest) => rest
            .iter()
            .position(|&c| c == byte)
            .map_or(b.len(), |i| p + i),
        None => b.len(),
    }
}

/// First position from `p` whose byte is in `class` (or the end).
#[inline]
pub(crate) fn scan_until_class(b: &[u8], p: usize, class: u8) -> usize {
    match b.get(p..) {
        Some(rest) => rest
            .iter()
            .position(|&c| CLASS[c as usize] & class != 0)
            .map_or(b.len(), |i| p + i),
        None => b.len(),
    }
}

/// What a value token means to the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueForm {
    /// A decimal number, written verbatim (Python's `float()` and Go's
    /// `strconv.ParseFloat` both read every form accepted here).
    Decimal,
    NaN,
    PosInf,
    NegInf,
}

/// Accepts the sane subset of what Prometheus' parser (Go `ParseFloat`)
/// accepts: `[+-]?(d+(.d*)?|.d+)([eE][+-]?d+)?`, `NaN` and `[+-]?Inf(inity)?`,
/// case-insensitive. Hex floats and underscores are refused.
pub(crate) fn value_form(v: &[u8]) -> Option<ValueForm> {
    classify_value(v).map(|(form, _)| form)
}

/// A value token's form, and whether it is a decimal that may be out of
/// float64 range: only those need [`decimal_in_range`]'s full parse. A
/// mantissa of `n` integer digits is below `10^n`, so with an exponent `e`
/// the value is below `10^(n+e)`, in range while `n + e` is at most
/// [`MAX_IN_RANGE_INTEGER_DIGITS`].
#[inline]
pub(crate) fn classify_value(v: &[u8]) -> Option<(ValueForm, bool)> {
    let (negative, signed, rest) = match v.first() {
        Some(b'-') => (true, true, &v[1..]),
        Some(b'+') => (false, true, &v[1..]),
        _ => (false, false, v),
    };
    match rest.first() {
        Some(c) if c.is_ascii_digit() || *c == b'.' => {}
        _ => {
            if rest.eq_ignore_ascii_case(b"inf") || rest.eq_ignore_ascii_case(b"infinity") {
                let form = if negative {
                    ValueForm::NegInf
                } else {
                    ValueForm::PosInf
                };
                return Some((form, false));
            }
            // Go's ParseFloat refuses a signed NaN.
            if !signed && rest.eq_ignore_ascii_case(b"nan") {
                return Some((ValueForm::NaN, false));
            }
            return None;
        }
    }
    let mut i = 0;
    let mut digits = 0;
    while i < rest.len() && rest[i].is_ascii_digit() {
        i += 1;
        digits += 1;
    }
    let integer_digits = digits as i64;
    let mut exponent: i64 = 0;
    if i < rest.len() && rest[i] == b'.' {
        i += 1;
        while i < rest.len() && rest[i].is_ascii_digit() {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    if i < rest.len() && (rest[i] == b'e' || rest[i] == b'E') {
        i += 1;
        let mut exponent_sign = 1;
        if i < rest.len() && (rest[i] == b'+' || rest[i] == b'-') {
            if rest[i] == b'-' {
                exponent_sign = -1;
            }
            i += 1;
        }
        let start = i;
        while i < rest.len() && rest[i].is_ascii_digit() {
            // Saturating: any exponent past a few thousand decides alike.
            exponent = (exponent * 10 + i64::from(rest[i] - b'0')).min(1 << 20);
            i += 1;
        }
        exponent *= exponent_sign;
        if i == start {
            return None;
        }
    }
    if i == rest.len() {
        let maybe_out_of_range = integer_digits + exponent > MAX_IN_RANGE_INTEGER_DIGITS as i64;
        Some((ValueForm::Decimal, maybe_out_of_range))
    } else {
        None
    }
}

/// Decimal values with at most this many integer digits and no exponent
/// are below `f64::MAX` (1.797...e308, 309 integer digits) whatever the
/// digits.
pub(crate) const MAX_IN_RANGE_INTEGER_DIGITS: usize = 308;

/// Whether a token `value_form` read as [`ValueForm::Decimal`] is within
/// float64 range. Go's `strconv.ParseFloat` (Prometheus' parser and
/// promtool's) fails with "value out of range" exactly when the correctly
/// rounded value is infinite; Rust's parser rounds the same way and returns
/// infinity there. Underflow (`1e-999`) is no error in either: it reads as 0.
/// Callers that hold [`classify_value`]'s answer call it only when that
/// says the value may be out of range.
pub(crate) fn decimal_in_range(v: &[u8]) -> bool {
    std::str::from_utf8(v)
        .ok()
        .and_then(|text| text.parse::<f64>().ok())
        .is_some_and(f64::is_finite)
}

/// Whether a token reads as a float64 as Go's `strconv.ParseFloat` reads
/// it after Prometheus refused `p`, `P` and `_`: what promtool requires of
/// `le` and `quantile` label values.
pub(crate) fn is_float64(v: &[u8]) -> bool {
    match classify_value(v) {
        Some((_, maybe_out_of_range)) => !maybe_out_of_range || decimal_in_range(v),
        None => false,
    }
}

/// Parses an integer timestamp (`-?[0-9]+` fitting an i64), as Go's
/// `strconv.ParseInt` would.
pub(crate) fn parse_int_timestamp(t: &[u8]) -> Option<i64> {
    let (negative, digits) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: i64 = 0;
    for d in digits {
        n = n.checked_mul(10)?;
        n = if negative {
            n.checked_sub(i64::from(d - b'0'))?
        } else {
            n.checked_add(i64::from(d - b'0'))?
        };
    }
    Some(n)
}

/// Converts an OpenMetrics timestamp (seconds, decimal) to milliseconds as
/// Prometheus does (openmetricsparse.go `int64(ts * 1000)`: truncated, and
/// on amd64 `i64::MIN` when out of int64 range, a sample the TSDB then drops
/// as out of bounds). None when it is not a finite decimal.
pub(crate) fn om_timestamp_millis(t: &[u8]) -> Option<i64> {
    if value_form(t) != Some(ValueForm::Decimal) {
        return None;
    }
    let seconds: f64 = std::str::from_utf8(t).ok()?.parse().ok()?;
    let millis = seconds * 1000.0;
    if !millis.is_finite() {
        return None;
    }
    // 2^63 is exact in f64; CVTTSD2SI gives i64::MIN for anything outside.
    if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&millis) {
        Some(millis as i64)
    } else {
        Some(i64::MIN)
    }
}

/// [`om_timestamp_millis`], with whole seconds below 2^40 (whose product
/// is exact in a double) converted without a float.
pub(crate) fn om_millis(timestamp: &[u8]) -> Option<i64> {
    match parse_int_timestamp(timestamp) {
        Some(seconds) if seconds.unsigned_abs() < 1 << 40 => Some(seconds * 1000),
        _ => om_timestamp_millis(timestamp),
    }
}

/// Decodes the escapes of a quoted string's content (`\\`, `\"`, `\n`; any
/// other backslash is kept literally) into `out`.
pub(crate) fn unescape_into(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c == b'\\' && i + 1 < raw.len() {
            match raw[i + 1] {
                b'\\' => out.push(b'\\'),
                b'"' => out.push(b'"'),
                b'n' => out.push(b'\n'),
                other => {
                    out.push(b'\\');
                    out.push(other);
                }
            }
            i += 2;
        } else {
            out.push(c);
            i += 1;
        }
    }
}

/// Which legacy character set a quoted UTF-8 name is escaped to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameRule {
    Label,
}

/// Appends the underscore-escaped legacy form of a quoted name's raw content
/// (Prometheus' `UnderscoreEscaping`: every character, not byte, that is not
/// valid in a legacy name becomes `_`). Returns false if the name is empty.
pub(crate) fn escape_quoted_name(raw: &[u8], rule: NameRule, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    unescape_into(raw, out);
    let decoded_len = out.len() - start;
    if decoded_len == 0 {
        return false;
    }
    // Map in place: each UTF-8 sequence collapses to one byte, so the write
    // cursor never overtakes the read cursor.
    let mut read = start;
    let mut write = start;
    while read < out.len() {
        let c = out[read];
        let width = utf8_width(c);
        let first = write == start;
        let valid = width == 1
            && match rule {
                NameRule::Label => {
                    if first {
                        is_label_start(c)
                    } else {
                        is_label_continue(c)
                    }
                }
            };
        out[write] = if valid { c } else { b'_' };
        write += 1;
        read += width;
    }
    out.truncate(write);
    true
}

fn utf8_width(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// Appends `value` escaped as a 0.0.4 label value (`\\`, `\"`, `\n`).
pub(crate) fn escape_label_value(value: &[u8], out: &mut Vec<u8>) {
    for &c in value {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(c),
        }
    }
}

/// Appends a label value as its raw (still escaped) form in a body reads,
/// with only the escapes expfmt and Python accept: `\\`, `\"` and `\n`
/// are copied, a backslash before any other character (which Prometheus
/// keeps as written, so `\z` means a backslash and `z`) is written `\\`.
pub(crate) fn write_label_value(raw: &[u8], out: &mut Vec<u8>) {
    if !raw.contains(&b'\\') {
        out.extend_from_slice(raw);
        return;
    }
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c == b'\\' {
            match raw.get(i + 1) {
                Some(&next @ (b'\\' | b'"' | b'n')) => {
                    out.push(b'\\');
                    out.push(next);
                    i += 2;
                }
                _ => {
                    out.extend_from_slice(b"\\\\");
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
}

/// Appends HELP text in 0.0.4 escaping (`\\` and `\n` only) from its raw
/// form in a body. `openmetrics` also decodes `\"`, which 0.0.4 does not
/// know (there it is a literal backslash and quote).
pub(crate) fn write_help(raw: &[u8], openmetrics: bool, out: &mut Vec<u8>) {
    if !raw.contains(&b'\\') {
        out.extend_from_slice(raw);
        return;
    }
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        let next = raw.get(i + 1).copied();
        if c == b'\\' {
            match next {
                Some(b'\\') => {
                    out.extend_from_slice(b"\\\\");
                    i += 2;
                }
                Some(b'n') => {
                    out.extend_from_slice(b"\\n");
                    i += 2;
                }
                Some(b'"') if openmetrics => {
                    out.push(b'"');
                    i += 2;
                }
                _ => {
                    // A lone backslash means itself.
                    out.extend_from_slice(b"\\\\");
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
}

/// Hash of a name for the name tables: [`mix`] a word (a multiply, its high
/// half folded down each time). (FxHash's rotate-and-multiply, used before, lets
/// a difference in a word's high bytes reach only the product's high bits:
/// names that differ by digits in the middle, Envoy's
/// `envoy_cluster_N_upstream_rq_total`, collided 1,700 times in 65,536,
/// and `bench_family_NNNNNNN` filled under a third of a table's slots.)
/// It starts from the process' random key: a container cannot write names
/// that fall on one slot, whose probes would cost the square of their
/// number (the event loop serves every container).
#[inline]
pub(crate) fn hash_name(name: &[u8]) -> u32 {
    hash_name_from(hash_key(), name)
}

/// [`hash_name`] from `seed` instead of the process' key: the same on
/// every run, for what a chosen collision cannot make slow (the label
/// bloom: a false "may have" costs a walk of one body's label sets).
pub(crate) fn hash_name_from(seed: u64, name: &[u8]) -> u32 {
    let mut h: u64 = name.len() as u64 ^ seed;
    let mut chunks = name.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = mix(h, u64::from_le_bytes(word));
    }
    // The last 0 to 7 bytes as a little-endian word padded with zeros, read
    // as overlapping words rather than copied byte by byte (a call to
    // memcpy): the name's last 8 bytes shifted when it has 8, else its
    // first and last 4 (or its first, middle and last byte) or-ed in place.
    let rest = chunks.remainder();
    let tail = match (name.len(), rest.len()) {
        (_, 0) => 0,
        (len, rest) if len >= 8 => word_at(name, len - 8) >> (64 - 8 * rest),
        (len, _) if len >= 4 => {
            u64::from(half_at(name, 0)) | u64::from(half_at(name, len - 4)) << (8 * (len - 4))
        }
        (len, _) => {
            u64::from(name[0])
                | u64::from(name[len / 2]) << (8 * (len / 2))
                | u64::from(name[len - 1]) << (8 * (len - 1))
        }
    };
    mix(h, tail) as u32
}

/// Open-addressing table from a name's hash to an index in some list owned
/// by the caller, which also supplies key equality. Cleared, never freed.
#[derive(Default)]
pub(crate) struct NameTable {
    /// (hash, index + 1); index 0 marks an empty slot.
    slots: Vec<(u32, u32)>,
    len: usize,
}

/// The slots a table needs for `entries` without growing (it grows past
/// half full).
fn slots_for(entries: usize) -> usize {
    (2 * entries).next_power_of_two().max(64)
}

impl NameTable {
    /// Makes an empty table as large as `entries` need, unless it is, so
    /// that they go in without the table growing (each growth rehashes
    /// what it holds).
    pub(crate) fn make_room(&mut self, entries: usize) {
        debug_assert_eq!(self.len, 0);
        if entries > 0 && self.slots.len() < slots_for(entries) {
            self.slots = vec![(0, 0); slots_for(entries)];
        }
    }

    pub(crate) fn clear(&mut self) {
        if self.len > 0 {
            self.slots.iter_mut().for_each(|slot| *slot = (0, 0));
            self.len = 0;
        }
    }

    pub(crate) fn find(&self, hash: u32, mut matches: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut at = hash as usize & mask;
        loop {
            let (slot_hash, slot) = self.slots[at];
            if slot == 0 {
                return None;
            }
            if slot_hash == hash && matches(slot - 1) {
                return Some(slot - 1);
            }
            at = (at + 1) & mask;
        }
    }

    /// The entry of `hash` that `matches`, else None once `index` is
    /// inserted for `hash` (one probe where `find` then `insert` take two).
    pub(crate) fn find_or_insert(
        &mut self,
        hash: u32,
        index: u32,
        mut matches: impl FnMut(u32) -> bool,
    ) -> Option<u32> {
        if !self.slots.is_empty() {
            let mask = self.slots.len() - 1;
            let mut at = hash as usize & mask;
            loop {
                let (slot_hash, slot) = self.slots[at];
                if slot == 0 {
                    break;
                }
                if slot_hash == hash && matches(slot - 1) {
                    return Some(slot - 1);
                }
                at = (at + 1) & mask;
            }
            if (self.len + 1) * 2 <= self.slots.len() {
                self.slots[at] = (hash, index + 1);
                self.len += 1;
                return None;
            }
        }
        self.insert(hash, index);
        None
    }

    /// Gives every entry the index `renumber` maps its index to.
    pub(crate) fn renumber(&mut self, renumber: impl Fn(u32) -> u32) {
        for slot in self.slots.iter_mut().filter(|slot| slot.1 != 0) {
            slot.1 = renumber(slot.1 - 1) + 1;
        }
    }

    /// Inserts an index the caller has just checked is absent.
    pub(crate) fn insert(&mut self, hash: u32, index: u32) {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut at = hash as usize & mask;
        while self.slots[at].1 != 0 {
            at = (at + 1) & mask;
        }
        self.slots[at] = (hash, index + 1);
        self.len += 1;
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(64);
        let old = std::mem::replace(&mut self.slots, vec![(0, 0); size]);
        let mask = size - 1;
        for (hash, slot) in old.into_iter().filter(|s| s.1 != 0) {
            let mut at = hash as usize & mask;
            while self.slots[at].1 != 0 {
                at = (at + 1) & mask;
            }
            self.slots[at] = (hash, slot);
        }
    }

    pub(crate) fn capacity_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<(u32, u32)>()
    }

    pub(crate) fn shrink(&mut self) {
        if self.slots.len() > 4096 && self.len * 8 < self.slots.len() {
            self.slots = Vec::new();
            self.len = 0;
        }
    }
}

/// A [`NameTable`] that keeps only indexes (4 bytes a slot where it keeps
/// 8): for a caller whose entries keep their own hash, which `matches`
/// compares before the name. Its growth asks the caller for the hash of
/// each entry again (`hash_of`).
#[derive(Default)]
pub(crate) struct IndexTable {
    /// index + 1; 0 marks an empty slot.
    slots: Vec<u32>,
    len: usize,
}

impl IndexTable {
    /// [`NameTable::make_room`].
    pub(crate) fn make_room(&mut self, entries: usize) {
        debug_assert_eq!(self.len, 0);
        if entries > 0 && self.slots.len() < slots_for(entries) {
            self.slots = vec![0; slots_for(entries)];
        }
    }

    pub(crate) fn find(&self, hash: u32, mut matches: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut at = hash as usize & mask;
        loop {
            let slot = self.slots[at];
            if slot == 0 {
                return None;
            }
            if matches(slot - 1) {
                return Some(slot - 1);
            }
            at = (at + 1) & mask;
        }
    }

    /// Inserts an index the caller has just checked is absent.
    pub(crate) fn insert(&mut self, hash: u32, index: u32, hash_of: impl Fn(u32) -> u32) {
        if (self.len + 1) * 2 > self.slots.len() {
            let size = (self.slots.len() * 2).max(64);
            let old = std::mem::replace(&mut self.slots, vec![0; size]);
            for slot in old.into_iter().filter(|&slot| slot != 0) {
                self.place(hash_of(slot - 1), slot);
            }
        }
        self.place(hash, index + 1);
        self.len += 1;
    }

    fn place(&mut self, hash: u32, slot: u32) {
        let mask = self.slots.len() - 1;
        let mut at = hash as usize & mask;
        while self.slots[at] != 0 {
            at = (at + 1) & mask;
        }
        self.slots[at] = slot;
    }

    pub(crate) fn capacity_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table given room for its entries takes them without growing.
    #[test]
    fn tables_given_room_do_not_grow() {
        for entries in [1, 31, 32, 33, 100, 1000] {
            let mut names = NameTable::default();
            let mut indexes = IndexTable::default();
            names.make_room(entries);
            indexes.make_room(entries);
            let (name_slots, index_slots) = (names.slots.len(), indexes.slots.len());
            for i in 0..entries as u32 {
                let hash = i.wrapping_mul(0x9e37_79b9);
                names.insert(hash, i);
                indexes.insert(hash, i, |i| i.wrapping_mul(0x9e37_79b9));
            }
            assert_eq!(names.slots.len(), name_slots, "{entries}");
            assert_eq!(indexes.slots.len(), index_slots, "{entries}");
            // No larger than growing to them would have made it.
            let mut grown = NameTable::default();
            for i in 0..entries as u32 {
                grown.insert(i, i);
            }
            assert_eq!(grown.slots.len(), name_slots, "{entries}");
        }
    }

    /// `hash_name` as first written: the tail copied into a zeroed word.
    fn hash_name_naive(name: &[u8]) -> u32 {
        let mix = |h: u64, word: [u8; 8]| mix(h, u64::from_le_bytes(word));
        let whole = name.len() / 8 * 8;
        let mut h = name.len() as u64 ^ hash_key();
        for chunk in name[..whole].chunks(8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            h = mix(h, word);
        }
        let mut tail = [0u8; 8];
        tail[..name.len() - whole].copy_from_slice(&name[whole..]);
        mix(h, tail) as u32
    }

    /// Names that differ only by digits, at their end or in their middle,
    /// hash apart and spread over a table as random keys would (about
    /// 39% of slots for as many keys as half the slots).
    #[test]
    fn hash_name_spreads_names_that_differ_by_digits() {
        let shapes: [fn(u32) -> String; 3] = [
            |i| format!("bench_family_{i:07}"),
            |i| format!("envoy_cluster_{i}_upstream_rq_total"),
            |i| format!("m{i}"),
        ];
        for shape in shapes {
            let hashes: Vec<u32> = (0..65_536)
                .map(|i| hash_name(shape(i).as_bytes()))
                .collect();
            let distinct: std::collections::HashSet<u32> = hashes.iter().copied().collect();
            let slots: std::collections::HashSet<u32> =
                hashes.iter().map(|hash| hash & (131_072 - 1)).collect();
            assert!(distinct.len() >= 65_530, "{}: {}", shape(0), distinct.len());
            assert!(slots.len() >= 48_000, "{}: {} slots", shape(0), slots.len());
        }
    }

    /// The tables' hash depends on the process' key, whole: another seed
    /// moves every name, so names a container finds colliding under one
    /// key do not collide under the sidecar's.
    #[test]
    fn hash_name_starts_from_the_process_key() {
        let names: Vec<String> = (0..1_000).map(|i| format!("family_{i}_total")).collect();
        for name in &names {
            let name = name.as_bytes();
            assert_eq!(hash_name(name), hash_name_from(hash_key(), name));
        }
        let moved = names
            .iter()
            .filter(|name| {
                hash_name_from(hash_key(), name.as_bytes())
                    != hash_name_from(hash_key() ^ 1, name.as_bytes())
            })
            .count();
        assert!(moved >= 995, "{moved}");
    }

    #[test]
    fn hash_name_matches_the_naive_version_at_every_length() {
        let bytes: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
        for len in 0..bytes.len() {
            for start in 0..3 {
                let name = &bytes[start..start + len.min(bytes.len() - start)];
                assert_eq!(hash_name(name), hash_name_naive(name), "{name:?}");
            }
        }
    }

    /// Keys that repeat, with hashes that collide often and a table that
    /// grows: find_or_insert finds the first index of a key, as find does,
    /// and inserts each new key once.
    #[test]
    fn find_or_insert_finds_what_find_finds() {
        let keys: Vec<u32> = (0..2000u32).map(|i| i.wrapping_mul(7919) % 600).collect();
        let mut table = NameTable::default();
        let mut first: std::collections::HashMap<u32, u32> = Default::default();
        for (index, &key) in keys.iter().enumerate() {
            let index = index as u32;
            let hash = key % 37;
            let same = |other: u32| keys[other as usize] == key;
            let found = table.find(hash, same);
            assert_eq!(table.find_or_insert(hash, index, same), found);
            assert_eq!(found, first.get(&key).copied());
            first.entry(key).or_insert(index);
            assert_eq!(table.find(hash, same), Some(first[&key]));
        }
        assert_eq!(table.len, first.len());
    }

    /// The index table finds what the name table finds, through growth
    /// and colliding hashes.
    #[test]
    fn index_table_finds_what_name_table_finds() {
        let keys: Vec<u32> = (0..2000u32).map(|i| i.wrapping_mul(7919) % 600).collect();
        let hash = |key: u32| key % 37;
        let mut names = NameTable::default();
        let mut indexes = IndexTable::default();
        let mut entries: Vec<u32> = Vec::new();
        for &key in &keys {
            let same = |other: u32| entries[other as usize] == key;
            let found = indexes.find(hash(key), same);
            assert_eq!(found, names.find(hash(key), same));
            if found.is_none() {
                let index = entries.len() as u32;
                entries.push(key);
                names.insert(hash(key), index);
                indexes.insert(hash(key), index, |i| hash(entries[i as usize]));
            }
        }
        assert_eq!(indexes.len, 600);
        for (index, &key) in entries.iter().enumerate() {
            let same = |other: u32| entries[other as usize] == key;
            assert_eq!(indexes.find(hash(key), same), Some(index as u32));
        }
    }

    #[test]
    fn all_in_class_is_every_byte_in_its_class() {
        for c in 0..=255u8 {
            for len in [1, 17] {
                let mut name = vec![b'a'; len];
                name[len / 2] = c;
                for class in [METRIC_CONTINUE, LABEL_CONTINUE] {
                    assert_eq!(
                        all_in_class(&name, class),
                        CLASS[c as usize] & class != 0,
                        "{c:#x} in {len}"
                    );
                }
            }
        }
        assert!(all_in_class(b"", METRIC_CONTINUE));
    }

    #[test]
    fn same_bytes_matches_slice_equality() {
        let words: &[&[u8]] = &[
            b"",
            b"a",
            b"b",
            b"ab",
            b"ac",
            b"abc",
            b"abd",
            b"xbc",
            b"axc",
            b"abcd",
            b"abce",
            b"le",
            b"code",
            b"method",
            b"methox",
            b"quantile",
            b"quantilf",
            b"quantile_",
            b"app_requests_17_total",
            b"app_requests_17_totax",
            b"bpp_requests_17_total",
            b"app_requests_18_total",
        ];
        for a in words {
            for b in words {
                assert_eq!(same_bytes(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn find_byte_matches_a_byte_loop() {
        let body = b"# HELP a_long_name Some text that spans words.\nx 1\n\nlast line no newline";
        for from in 0..=body.len() {
            let naive = body[from..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(body.len(), |i| from + i);
            assert_eq!(find_byte(body, from, b'\n'), naive, "from {from}");
        }
        assert_eq!(find_byte(body, body.len() + 1, b'\n'), body.len());
    }

    #[test]
    fn all_name_bytes_matches_the_class_table() {
        for colon in [true, false] {
            let class = name_class(colon);
            for len in 0..20 {
                for byte in 0..=255u8 {
                    for at in 0..len.max(1) {
                        let mut name = b"Zz_09:aQ_mm7Kk_:x9yA"[..len].to_vec();
                        if let Some(c) = name.get_mut(at) {
                            *c = byte;
                        }
                        let naive = name.iter().all(|&c| CLASS[c as usize] & class != 0);
                        assert_eq!(all_name_bytes(&name, colon), naive, "{name:?} {colon}");
                    }
                }
            }
        }
    }

    #[test]
    fn scan_name_matches_the_class_table() {
        // Every byte at every position of a 20-byte name (in the first and
        // second word and in the tail), after each start, for both classes.
        for colon in [true, false] {
            let class = name_class(colon);
            for byte in 0..=255u8 {
                for at in 0..20 {
                    let mut body =
                        b"abcdefghijklmnopqrstuvwxyz_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:"
                            [at..at + 20]
                            .to_vec();
                    body[at % 20] = byte;
                    for from in 0..=body.len() {
                        let naive = body[from..]
                            .iter()
                            .position(|&c| CLASS[c as usize] & class == 0)
                            .map_or(body.len(), |i| from + i);
                        assert_eq!(scan_name(&body, from, colon), naive, "{byte} {at} {from}");
                    }
                }
            }
        }
    }

    #[test]
    fn scan_quote_stop_matches_a_byte_loop() {
        // Each stop at every position of a 40-byte string (so in the first
        // and second word of a 16-byte step, and in the tail), also with
        // high bytes beside it, which the zero-byte test must not take.
        for stop in [b'"', b'\\', b'\n'] {
            for at in 0..40 {
                for filler in [b'a', 0xe9, 0x21] {
                    let mut body = vec![filler; 40];
                    body[at] = stop;
                    for from in 0..=body.len() {
                        let naive = body[from..]
                            .iter()
                            .position(|c| matches!(c, b'"' | b'\\' | b'\n'))
                            .map_or(body.len(), |i| from + i);
                        assert_eq!(scan_quote_stop(&body, from), naive, "{stop} {at} {from}");
                    }
                }
            }
        }
    }

    #[test]
    fn value_forms() {
        let table: &[(&str, Option<ValueForm>)] = &[
            ("1", Some(ValueForm::Decimal)),
            ("-1.5e-3", Some(ValueForm::Decimal)),
            ("+.5", Some(ValueForm::Decimal)),
            ("1.", Some(ValueForm::Decimal)),
            ("1E+10", Some(ValueForm::Decimal)),
            ("NaN", Some(ValueForm::NaN)),
            ("nan", Some(ValueForm::NaN)),
            ("+Inf", Some(ValueForm::PosInf)),
            ("inf", Some(ValueForm::PosInf)),
            ("-Infinity", Some(ValueForm::NegInf)),
            ("-NaN", None),
            ("0x1p3", None),
            ("1_000", None),
            (".", None),
            ("1e", None),
            ("", None),
            ("1.2.3", None),
        ];
        for (input, expected) in table {
            assert_eq!(value_form(input.as_bytes()), *expected, "{input}");
        }
    }

    /// Go's ParseFloat: out of range (after rounding) is an error,
    /// underflow is not.
    #[test]
    fn decimal_range() {
        let table: &[(&str, bool)] = &[
            ("1", true),
            ("1e308", true),
            ("1.7976931348623157e308", true),
            ("1.7976931348623158e308", true),
            ("1.7976931348623159e308", false),
            ("-1.7976931348623159e308", false),
            ("1e309", false),
            ("1e999", false),
            ("-1e999", false),
            ("+1E+999", false),
            ("1e-999", true),
            ("0e999", true),
            ("0.0000e99999", true),
            ("1.5", true),
        ];
        for (input, in_range) in table {
            assert_eq!(decimal_in_range(input.as_bytes()), *in_range, "{input}");
        }
        let digits = |n: usize| "9".repeat(n);
        assert!(decimal_in_range(digits(308).as_bytes()));
        assert!(decimal_in_range(format!("{}.5", digits(308)).as_bytes()));
        assert!(!decimal_in_range(digits(309).as_bytes()));
        assert!(decimal_in_range(format!("0{}", "0".repeat(400)).as_bytes()));
        assert!(is_float64(b"+Inf") && is_float64(b"NaN") && is_float64(b"0.5"));
        // classify_value's shortcut decides exactly like the full parse.
        for (input, in_range) in table {
            assert_eq!(is_float64(input.as_bytes()), *in_range, "{input}");
        }
        for input in [
            "1e308",
            "9.99e307",
            "10e307",
            "99e307",
            "0.1e309",
            "1e-400",
            "123.4e306",
        ] {
            let full = decimal_in_range(input.as_bytes());
            assert_eq!(is_float64(input.as_bytes()), full, "{input}");
        }
        assert!(!is_float64(b"1e999") && !is_float64(b"x") && !is_float64(b""));
    }

    #[test]
    fn quoted_names_escape_to_legacy() {
        let table: &[(&str, NameRule, &str)] = &[
            ("a:b", NameRule::Label, "a_b"),
            ("é€x", NameRule::Label, "__x"),
            ("q\\\"", NameRule::Label, "q_"),
        ];
        for (raw, rule, expected) in table {
            let mut out = Vec::new();
            assert!(escape_quoted_name(raw.as_bytes(), *rule, &mut out));
            assert_eq!(String::from_utf8_lossy(&out), *expected, "{raw}");
        }
    }

    /// A value re-read by Prometheus' rules (`lvalReplacer`: unknown
    /// escapes kept) means the same after `write_label_value`, which writes
    /// only the escapes expfmt accepts.
    #[test]
    fn label_values_keep_their_meaning_with_canonical_escapes() {
        let table: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("b\\\\a\\z", "b\\\\a\\\\z"),
            ("q\\\"n\\n", "q\\\"n\\n"),
            ("\\", "\\\\"),
            ("a\\\\\\t", "a\\\\\\\\t"),
        ];
        for (raw, written) in table {
            let mut out = Vec::new();
            write_label_value(raw.as_bytes(), &mut out);
            assert_eq!(String::from_utf8_lossy(&out), *written, "{raw}");
            let (mut meant, mut reread) = (Vec::new(), Vec::new());
            unescape_into(raw.as_bytes(), &mut meant);
            unescape_into(&out, &mut reread);
            assert_eq!(meant, reread, "{raw}");
            let canonical = out.windows(2).enumerate().all(|(i, pair)| {
                pair[0] != b'\\'
                    || out[..i].iter().rev().take_while(|&&c| c == b'\\').count() % 2 == 1
                    || matches!(pair[1], b'\\' | b'"' | b'n')
            });
            assert!(canonical, "{written}");
        }
    }

    #[test]
    fn om_timestamps_become_millis() {
        assert_eq!(om_timestamp_millis(b"1520879607.789"), Some(1520879607789));
        assert_eq!(om_timestamp_millis(b"12"), Some(12000));
        assert_eq!(om_timestamp_millis(b"1e300"), Some(i64::MIN));
        assert_eq!(
            om_timestamp_millis(b"12345678901234567890.1234567890"),
            Some(i64::MIN)
        );
        assert_eq!(om_timestamp_millis(b"-1.5"), Some(-1500));
        assert_eq!(om_timestamp_millis(b"0.0019"), Some(1));
        assert_eq!(om_timestamp_millis(b"1e999"), None);
        assert_eq!(om_timestamp_millis(b"NaN"), None);
    }
}
