//! An independent judge of an OpenMetrics 1.0 body: would every reader a
//! client of the given kind runs take it? Written from the readers' rules,
//! not from the sidecar's parser:
//!
//! - Prometheus main `model/textparse/openmetricslex.l` and
//!   `openmetricsparse.go` (cited "main" below): the token grammar (one
//!   space between tokens, nothing else), quoted names, Go's `ParseFloat`
//!   for values and timestamps, the eight TYPE words, UNIT as the name's
//!   suffix, `# EOF` last; and `scrape/scrape.go`'s label validation (a
//!   label name is not empty).
//! - Prometheus v2.42.0's same files (cited "2.42"), for the clients that
//!   do not ask for `escaping=allow-utf-8` ([`Readers::Legacy`]): no quoted
//!   names, no trailing comma in a label set, exemplars only after names
//!   ending `_total` or `_bucket`.
//! - prometheus_client 0.26 `openmetrics/parser.py` (cited "python"), the
//!   strict reader: families as it groups them (allowed names per type,
//!   clashing names, metadata before samples), the histogram checks, the
//!   counter, info, stateset and summary value rules, exemplar placement
//!   and their 128-character label limit, UNIT rules, no `__` label names.
//!
//! Each refusal names its rule and the reader it comes from ([`Source`]),
//! so that a test can hold the rules said to be Python's to Python's own
//! verdict. Slow and plain on purpose: every rule is a few lines that can
//! be read against its source. Used by the fuzz targets and the tests.

use std::collections::HashSet;

/// Go's `strconv.ParseFloat` behind Prometheus' `parseFloat` (the same in
/// both parsers of Prometheus), shared with the text judge (which a test
/// binary may hold twice, as that judge and as this module's part).
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "prometheus_text.rs"]
mod prometheus_text;
use prometheus_text::go_parse_float;

/// Which clients read the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    /// A client that asked for `escaping=allow-utf-8`: Prometheus main and
    /// prometheus_client. Names that are not legacy names come quoted.
    Utf8,
    /// Any other escaping scheme: Prometheus 2.42 reads it too, so no name
    /// is quoted.
    Legacy,
}

/// The reader whose rule refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// prometheus_client's strict parser (Prometheus may refuse too).
    Python,
    /// Prometheus main (and 2.42) only, or the token grammar both read
    /// where Python's looser line splitting may read otherwise.
    Prometheus,
    /// Prometheus 2.42 only (its lexer and parser as they were).
    Prometheus242,
}

/// Why the judge refuses a body: the 1-based line, the rule broken and the
/// reader that has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub line: usize,
    pub rule: &'static str,
    pub source: Source,
}

/// What the judge learnt of a body it accepts: its sample lines and
/// exemplars, as Prometheus reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub samples: usize,
    pub exemplars: usize,
}

type Rule = (&'static str, Source);

const PY: Source = Source::Python;
const PROM: Source = Source::Prometheus;
const P242: Source = Source::Prometheus242;

/// Judges `body` for `readers`; see the module documentation for the rules.
pub fn judge(body: &[u8], readers: Readers) -> Result<Accepted, Refusal> {
    let refuse = |line: usize, (rule, source): Rule| Refusal { line, rule, source };
    // python reads a str; main checks HELP and label values.
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(refuse(1, ("UTF-8", PY)));
    };
    let mut lines: Vec<&str> = text.split('\n').collect();
    // main: every token but `# EOF` ends with a line feed (`\n` in the
    // lexer's rules); `"EOF"\n?` may end the body without one.
    if lines.last() == Some(&"") {
        lines.pop();
    } else if lines.last() != Some(&"# EOF") {
        return Err(refuse(
            lines.len(),
            ("every line ends with a line feed", PROM),
        ));
    }
    let mut python = Python::default();
    let mut samples = 0;
    let mut exemplars = 0;
    let mut eof = false;
    for (index, line) in lines.iter().enumerate() {
        let number = index + 1;
        // main: "unexpected data after # EOF"; python: "Received line
        // after # EOF".
        if eof {
            return Err(refuse(number, ("nothing after # EOF", PY)));
        }
        // main: a line feed starts no token; python: "Received blank line".
        if line.is_empty() {
            return Err(refuse(number, ("no blank line", PY)));
        }
        if *line == "# EOF" {
            eof = true;
        } else if line.starts_with('#') {
            let meta = metadata(line, readers).map_err(|rule| refuse(number, rule))?;
            python
                .metadata(&meta)
                .map_err(|rule| refuse(python.failed_line.unwrap_or(number), rule))?;
        } else {
            let sample = sample(line, readers).map_err(|rule| refuse(number, rule))?;
            samples += 1;
            exemplars += usize::from(sample.exemplar.is_some());
            python
                .sample(&sample, number)
                .map_err(|rule| refuse(python.failed_line.unwrap_or(number), rule))?;
        }
    }
    // main: "data does not end with # EOF"; python: "Missing # EOF at end".
    if !eof {
        return Err(refuse(lines.len().max(1), ("ends with # EOF", PY)));
    }
    python
        .finish()
        .map_err(|rule| refuse(python.failed_line.unwrap_or(lines.len()), rule))?;
    Ok(Accepted { samples, exemplars })
}

// ---------------------------------------------------------------------------
// The token grammar: Prometheus main's lexer (openmetricslex.l) and parser,
// with 2.42's narrower one for `Readers::Legacy`.

/// A `# HELP`, `# TYPE` or `# UNIT` line.
struct Metadata<'a> {
    keyword: &'a str,
    /// As written, without the quotes of a quoted name.
    raw_name: &'a str,
    quoted: bool,
    text: &'a str,
}

/// One label of a sample or exemplar: its name as written (without quotes)
/// and its value as written (without quotes, escapes kept).
#[derive(Clone)]
struct Label<'a> {
    name: &'a str,
    name_quoted: bool,
    value: &'a str,
}

struct Exemplar<'a> {
    labels: Vec<Label<'a>>,
}

struct Sample<'a> {
    /// As written, without the quotes of a quoted name.
    name: &'a str,
    name_quoted: bool,
    labels: Vec<Label<'a>>,
    value: &'a str,
    /// The line after the value: python reads it again its own way.
    after_value: &'a str,
    timestamp: Option<&'a str>,
    exemplar: Option<Exemplar<'a>>,
}

/// The lexer's `{M}({M}|{D})*`: the length of the legacy metric name at the
/// start of `s`.
fn metric_name_len(s: &str) -> usize {
    let mut len = 0;
    for (i, c) in s.char_indices() {
        let ok = c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + 1;
    }
    len
}

/// The lexer's `{L}({L}|{D})*`: the length of the legacy label name at the
/// start of `s`.
fn label_name_len(s: &str) -> usize {
    let mut len = 0;
    for (i, c) in s.char_indices() {
        let ok = c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + 1;
    }
    len
}

/// The lexer's `\"(\\.|[^\\"])*\"` at the start of `s`: the string's length
/// including both quotes, if it closes.
fn quoted_len(s: &str) -> Option<usize> {
    let mut chars = s.char_indices();
    if chars.next()?.1 != '"' {
        return None;
    }
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some(i + 1),
            '\\' => {
                chars.next()?;
            }
            _ => {}
        }
    }
    None
}

fn metadata(line: &str, readers: Readers) -> Result<Metadata<'_>, Rule> {
    // main: `#{S}` then `HELP{S}`, `TYPE{S}`, `UNIT{S}` or `"EOF"`; any
    // other comment is an invalid token (python: "Invalid line" too, but
    // it splits at runs of blanks).
    let rest = line
        .strip_prefix("# ")
        .ok_or(("'# ' opens a comment", PROM))?;
    let (keyword, rest) = ["HELP ", "TYPE ", "UNIT "]
        .iter()
        .find_map(|k| rest.strip_prefix(k).map(|r| (&k[..4], r)))
        .ok_or(("a comment is # HELP, # TYPE, # UNIT or # EOF", PROM))?;
    // main: `<sMeta1>` a quoted or a legacy name; 2.42: legacy only.
    let (raw_name, quoted, rest) = if rest.starts_with('"') {
        if readers == Readers::Legacy {
            return Err(("2.42 reads no quoted metric name", P242));
        }
        let len = quoted_len(rest).ok_or(("a closing quote", PROM))?;
        (&rest[1..len - 1], true, &rest[len..])
    } else {
        let len = metric_name_len(rest);
        if len == 0 {
            return Err(("a metric name after HELP, TYPE or UNIT", PROM));
        }
        (&rest[..len], false, &rest[len..])
    };
    // main: `<sMeta2>{S}{C}*\n`: one space, then the text.
    let text = rest
        .strip_prefix(' ')
        .ok_or(("a space after the metadata's name", PROM))?;
    match keyword {
        // main: "invalid metric type" (python takes any word but
        // `untyped`).
        "TYPE" => {
            let types = [
                "counter",
                "gauge",
                "histogram",
                "gaugehistogram",
                "summary",
                "info",
                "stateset",
                "unknown",
            ];
            if !types.contains(&text) {
                return Err(("one of the eight OpenMetrics types", PROM));
            }
        }
        // main: "unit not a suffix of metric" (the name as written).
        "UNIT" if !text.is_empty() && !raw_name.ends_with(&format!("_{text}")) => {
            return Err(("UNIT is the suffix after '_' of the name as written", PROM));
        }
        _ => {}
    }
    Ok(Metadata {
        keyword,
        raw_name,
        quoted,
        text,
    })
}

/// main `parseLVals`: labels after `{` up to and including `}`; returns them,
/// the metric name if one is quoted among them, and what follows `}`.
fn labels(
    mut rest: &str,
    readers: Readers,
    exemplar: bool,
) -> Result<(Vec<Label<'_>>, Option<&str>, &str), Rule> {
    let mut labels = Vec::new();
    let mut name = None;
    let mut after_comma = false;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            // python (OpenMetrics): "empty term" after a comma; 2.42:
            // "expected label name" after a comma.
            if after_comma {
                return Err(("no trailing comma in a label set", PY));
            }
            return Ok((labels, name, after));
        }
        let (label, label_quoted) = if rest.starts_with('"') {
            if readers == Readers::Legacy {
                return Err(("2.42 reads no quoted names", P242));
            }
            let len = quoted_len(rest).ok_or(("a closing quote", PROM))?;
            let label = &rest[1..len - 1];
            rest = &rest[len..];
            // main: a quoted string followed by `,` or `}` is the metric
            // name; not in an exemplar, and only once.
            if rest.starts_with([',', '}']) {
                if exemplar {
                    return Err(("an exemplar has no metric name", PROM));
                }
                if name.is_some() {
                    return Err(("one metric name", PROM));
                }
                name = Some(label);
                if let Some(after) = rest.strip_prefix(',') {
                    rest = after;
                    after_comma = true;
                } else {
                    after_comma = false;
                }
                continue;
            }
            (label, true)
        } else {
            let len = label_name_len(rest);
            if len == 0 {
                return Err(("a label name", PROM));
            }
            let label = &rest[..len];
            rest = &rest[len..];
            (label, false)
        };
        rest = rest
            .strip_prefix('=')
            .ok_or(("'=' after a label name", PROM))?;
        // main: `<sLValue>\"(\\.|[^\\"\n])*\"`.
        let len = quoted_len(rest).ok_or(("a quoted label value", PROM))?;
        labels.push(Label {
            name: label,
            name_quoted: label_quoted,
            value: &rest[1..len - 1],
        });
        rest = &rest[len..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
            after_comma = true;
        } else if rest.starts_with('}') {
            after_comma = false;
        } else {
            return Err(("',' or '}' after a label value", PROM));
        }
    }
}

/// `{S}[^ \n]+`: one space and a token; returns it and the rest.
fn spaced_token(rest: &str) -> Option<(&str, &str)> {
    let rest = rest.strip_prefix(' ')?;
    let end = rest.find(' ').unwrap_or(rest.len());
    (end > 0).then(|| rest.split_at(end))
}

fn sample(line: &str, readers: Readers) -> Result<Sample<'_>, Rule> {
    let (name, name_quoted, mut labels_found, rest);
    if let Some(inside) = line.strip_prefix('{') {
        // main: `\{` may start a line (the name quoted inside); 2.42: no.
        if readers == Readers::Legacy {
            return Err(("2.42 reads no quoted metric name", P242));
        }
        let (found, quoted_name, after) = labels(inside, readers, false)?;
        name = quoted_name.ok_or(("a metric name", PROM))?;
        name_quoted = true;
        labels_found = found;
        rest = after;
    } else {
        // main: `{M}({M}|{D})*` starts a sample.
        let len = metric_name_len(line);
        if len == 0 {
            return Err(("a line starts with a metric name, '{' or '#'", PROM));
        }
        name = &line[..len];
        name_quoted = false;
        labels_found = Vec::new();
        let after = &line[len..];
        if let Some(inside) = after.strip_prefix('{') {
            let (found, quoted_name, after) = labels(inside, readers, false)?;
            if quoted_name.is_some() {
                return Err(("one metric name", PROM));
            }
            labels_found = found;
            rest = after;
        } else {
            rest = after;
        }
    }
    // main scrape: `labels.IsValid` wants a non-empty metric name.
    if name.is_empty() {
        return Err(("a metric name is not empty", PROM));
    }
    // main scrape: `labels.IsValid` wants non-empty label names.
    if labels_found.iter().any(|label| label.name.is_empty()) {
        return Err(("a label name is not empty", PROM));
    }
    // main: `<sValue>{S}[^ \n]+`, then Go's ParseFloat.
    let (value, rest) = spaced_token(rest).ok_or(("one space, then a value", PROM))?;
    if go_parse_float(value).is_none() {
        return Err(("a value Go's ParseFloat reads (no p, P or _)", PROM));
    }
    let after_value = rest;
    // main: `<sTimestamp>{S}#{S}\{` (the longer match) or `{S}[^ \n]+`.
    let (timestamp, rest) = if rest.is_empty() || rest.starts_with(" # {") {
        (None, rest)
    } else {
        let (timestamp, rest) =
            spaced_token(rest).ok_or(("one space, then a timestamp or ' # {'", PROM))?;
        timestamp_ok(timestamp)?;
        (Some(timestamp), rest)
    };
    let exemplar = if rest.is_empty() {
        None
    } else {
        let inside = rest
            .strip_prefix(" # {")
            .ok_or(("the end of the line or ' # {' after the timestamp", PROM))?;
        // 2.42 `validateNameForExemplar`: the series name (`_total` or
        // `_bucket`).
        if readers == Readers::Legacy && !(name.ends_with("_total") || name.ends_with("_bucket")) {
            return Err(("2.42: exemplars only after _total or _bucket", P242));
        }
        let (exemplar_labels, _, after) = labels(inside, readers, true)?;
        // main: `<sEValue>{S}[^ \n]+` then `<sETimestamp>{S}[^ \n]+` then `\n`.
        let (value, rest) =
            spaced_token(after).ok_or(("one space, then the exemplar's value", PROM))?;
        if go_parse_float(value).is_none() {
            return Err(("an exemplar value Go's ParseFloat reads", PROM));
        }
        if !rest.is_empty() {
            let (timestamp, rest) =
                spaced_token(rest).ok_or(("one space, then the exemplar's timestamp", PROM))?;
            if !rest.is_empty() {
                return Err(("the end of the line after the exemplar's timestamp", PROM));
            }
            timestamp_ok(timestamp)?;
        }
        Some(Exemplar {
            labels: exemplar_labels,
        })
    };
    Ok(Sample {
        name,
        name_quoted,
        labels: labels_found,
        value,
        after_value,
        timestamp,
        exemplar,
    })
}

/// main: a timestamp is Go's ParseFloat of the token, neither NaN nor
/// infinite ("invalid timestamp"); python `_parse_timestamp` must read it.
fn timestamp_ok(timestamp: &str) -> Result<PyTimestamp, Rule> {
    match go_parse_float(timestamp) {
        Some(value) if value.is_finite() => {}
        _ => return Err(("a finite timestamp Go's ParseFloat reads", PROM)),
    }
    python_timestamp(timestamp).ok_or(("a timestamp python reads", PY))
}

// ---------------------------------------------------------------------------
// Python's numbers.

/// A number as python's `_parse_value` holds it: `int(s)` first, else
/// `float(s)`.
#[derive(Clone, Copy)]
struct PyNumber {
    value: f64,
    int: bool,
}

impl PyNumber {
    /// Of a token Go's ParseFloat took: python's `int` takes `[+-]?[0-9]+`,
    /// its `float` takes every other such token.
    fn of(s: &str) -> PyNumber {
        let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
        let int = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        let value = go_parse_float(s).unwrap_or(f64::NAN);
        PyNumber { value, int }
    }

    /// python: `isinstance(v, int) or v.is_integer()`.
    fn is_integer(self) -> bool {
        self.int || (self.value.is_finite() && self.value.fract() == 0.0)
    }
}

/// python's `float(s)` for an ASCII string: blanks around, an optional sign,
/// `inf`, `infinity` or `nan` in any case, or decimal digits (single `_`
/// between digits) with an optional exponent. Overflow gives infinity.
fn python_float(s: &str) -> Option<f64> {
    let s = s.trim_matches(|c: char| c.is_ascii_whitespace());
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let negative = s.starts_with('-');
    let lower = unsigned.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        return Some(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if lower == "nan" {
        return Some(f64::NAN);
    }
    // Underscores only between digits.
    let bytes = unsigned.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'_' {
            let before = i > 0 && bytes[i - 1].is_ascii_digit();
            let after = bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
            if !(before && after) {
                return None;
            }
        }
    }
    let plain: String = s.chars().filter(|&c| c != '_').collect();
    if plain.contains(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c))) {
        return None;
    }
    // Rust's grammar for these characters is Python's.
    plain.parse::<f64>().ok()
}

/// python `samples.Timestamp` or a float, as `_parse_timestamp` returns it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum PyTimestamp {
    Exact { sec: i128, nsec: i64 },
    Float(f64),
}

/// python `int(s)` for the ASCII strings a timestamp may hold.
fn python_int(s: &str) -> Option<i128> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// python `_parse_timestamp`: no blanks around and no `_`; `int(s)`; else
/// `a.b` as `Timestamp(int(a), int(b[:9].ljust(9, "0")))` (refused if the
/// nanoseconds are out of range); else `float(s)`, neither NaN nor infinite.
fn python_timestamp(s: &str) -> Option<PyTimestamp> {
    if s.trim() != s || s.contains('_') {
        return None;
    }
    if let Some(sec) = python_int(s) {
        return Some(PyTimestamp::Exact { sec, nsec: 0 });
    }
    if let Some((a, b)) = s.split_once('.') {
        if let Some(sec) = python_int(a) {
            let mut fraction: String = b.chars().take(9).collect();
            while fraction.chars().count() < 9 {
                fraction.push('0');
            }
            if let Some(nsec) = python_int(&fraction) {
                if (0..1_000_000_000).contains(&nsec) {
                    let nsec = nsec as i64;
                    let nsec = if sec < 0 { -nsec } else { nsec };
                    return Some(PyTimestamp::Exact { sec, nsec });
                }
            }
        }
    }
    let value = python_float(s)?;
    value.is_finite().then_some(PyTimestamp::Float(value))
}

/// python `_isUncanonicalNumber` after `float(s)`: only +Inf must be
/// written canonically (`+Inf`).
fn python_canonical(s: &str) -> Option<bool> {
    let value = python_float(s)?;
    Some(value != f64::INFINITY || s == "+Inf")
}

/// python `_unquote_unescape`: strip, drop the quotes of a quoted string,
/// then replace `\\`, `\n` and `\"`. `None` for "missing close quote".
fn python_unquote(s: &str) -> Option<(String, bool)> {
    if s.is_empty() {
        return Some((String::new(), false));
    }
    let s = s.trim();
    let (inner, quoted) = if let Some(inner) = s.strip_prefix('"') {
        if inner.is_empty() || !s.ends_with('"') {
            return None;
        }
        (&s[1..s.len() - 1], true)
    } else {
        (s, false)
    };
    Some((unescape(inner), quoted))
}

/// The escapes both readers replace (`lvalReplacer`, python
/// `_replace_escaping`): `\\`, `\n`, `\"`; any other is kept as written.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// python `METRIC_NAME_RE`.
fn is_legacy_metric_name(name: &str) -> bool {
    !name.is_empty() && metric_name_len(name) == name.len()
}

// ---------------------------------------------------------------------------
// Python's families: `text_fd_to_metric_families` as a state machine.

type Group = Vec<(String, String)>;

/// One sample as `_check_histogram` needs it.
struct PySample {
    name: String,
    labels: Group,
    value: PyNumber,
    timestamp: Option<PyTimestamp>,
    line: usize,
}

#[derive(Default)]
struct Family {
    name: String,
    /// `None` until a TYPE (a family a sample starts is `unknown`).
    typ: Option<String>,
    help: bool,
    unit: Option<String>,
    samples: Vec<PySample>,
    allowed: Vec<String>,
    group: Option<Group>,
    seen_groups: HashSet<Group>,
    group_timestamp: Option<PyTimestamp>,
    group_timestamp_samples: HashSet<(String, Group)>,
}

#[derive(Default)]
struct Python {
    family: Option<Family>,
    /// python `seen_names`: every name a finished family claimed.
    seen_names: HashSet<String>,
    /// Where a refusal found at a later line belongs (a family's checks run
    /// when the next one starts).
    failed_line: Option<usize>,
}

/// python `type_suffixes`.
fn type_suffixes(typ: &str) -> Option<&'static [&'static str]> {
    Some(match typ {
        "counter" => &["_total", "_created"],
        "summary" => &["", "_count", "_sum", "_created"],
        "histogram" => &["_count", "_sum", "_bucket", "_created"],
        "gaugehistogram" => &["_gcount", "_gsum", "_bucket"],
        "info" => &["_info"],
        _ => return None,
    })
}

fn new_family(name: String) -> Family {
    Family {
        allowed: vec![name.clone()],
        name,
        ..Family::default()
    }
}

impl Python {
    fn metadata(&mut self, meta: &Metadata<'_>) -> Result<(), Rule> {
        self.failed_line = None;
        // python: `parts[2]` through `_unquote_unescape`; an unquoted name
        // must be a legacy name.
        let written = if meta.quoted {
            format!("\"{}\"", meta.raw_name)
        } else {
            meta.raw_name.to_string()
        };
        let (name, quoted) = python_unquote(&written).ok_or(("a closing quote", PY))?;
        if !quoted && !is_legacy_metric_name(&name) {
            return Err(("an unquoted metric name is a legacy name", PY));
        }
        let current = self.family.as_ref().map(|family| family.name.as_str());
        if current == Some(name.as_str()) {
            if !self.family.as_ref().unwrap().samples.is_empty() {
                return Err(("no metadata after the family's samples", PY));
            }
        } else {
            self.finish()?;
            self.family = Some(new_family(name.clone()));
        }
        let family = self.family.as_mut().unwrap();
        match meta.keyword {
            "HELP" => {
                if std::mem::replace(&mut family.help, true) {
                    return Err(("one HELP per family", PY));
                }
            }
            "TYPE" => {
                if family.typ.is_some() {
                    return Err(("one TYPE per family", PY));
                }
                family.typ = Some(meta.text.to_string());
                family.allowed = match type_suffixes(meta.text) {
                    Some(suffixes) => suffixes.iter().map(|s| format!("{name}{s}")).collect(),
                    None => vec![name],
                };
            }
            _ => {
                if family.unit.is_some() {
                    return Err(("one UNIT per family", PY));
                }
                family.unit = Some(meta.text.to_string());
            }
        }
        Ok(())
    }

    fn sample(&mut self, sample: &Sample<'_>, line: usize) -> Result<(), Rule> {
        self.failed_line = None;
        // python `parse_labels`: a quoted name's label is `__name__`; every
        // other label name through `_validate_labelname` (no `__`), each
        // once; `metric name specified more than once`.
        let mut labels: Group = Vec::new();
        for label in &sample.labels {
            let (name, _) = python_unquote(&quote_if(label.name, label.name_quoted))
                .ok_or(("a closing quote", PY))?;
            if name.starts_with("__") {
                return Err(("no label name starting with __", PY));
            }
            if labels.iter().any(|(seen, _)| *seen == name) {
                return Err(("each label name once", PY));
            }
            labels.push((name, unescape(label.value)));
        }
        let sample_name = if sample.name_quoted {
            unescape(sample.name)
        } else {
            sample.name.to_string()
        };
        let value = PyNumber::of(sample.value);
        let timestamp = sample.timestamp.and_then(python_timestamp);
        if let Some(rest) = sample.after_value.strip_prefix(' ') {
            python_remaining_text(rest)?;
        }
        if let Some(exemplar) = &sample.exemplar {
            python_exemplar(exemplar)?;
        }

        let starts_family = match &self.family {
            Some(family) => !family.allowed.contains(&sample_name),
            None => true,
        };
        if starts_family {
            self.finish()?;
            // python: `_unquote_unescape(sample.name)`; not quoted, it must
            // be a legacy name: a UTF-8 name needs its metadata first.
            let (name, quoted) = python_unquote(&sample_name).ok_or(("a closing quote", PY))?;
            if !quoted && !is_legacy_metric_name(&name) {
                return Err((
                    "a sample of a name that is not a legacy name follows its metadata",
                    PY,
                ));
            }
            let mut family = new_family(name);
            family.typ = Some("unknown".to_string());
            family.allowed = vec![sample_name.clone()];
            self.family = Some(family);
        }
        let family = self.family.as_mut().unwrap();
        let name = family.name.clone();
        let typ = family.typ.clone().unwrap_or_default();
        let label = |key: &str| {
            labels
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };

        if typ == "stateset" && label(&name).is_none() {
            return Err(("a stateset sample has its family's label", PY));
        }
        if sample_name == format!("{name}_bucket") {
            let le = label("le").unwrap_or("NaN");
            if le == "NaN" || python_canonical(le) != Some(true) {
                return Err(("a bucket's le is a float, +Inf written so", PY));
            }
            if !value.is_integer() {
                return Err(("a bucket's value is a whole number", PY));
            }
        }
        if (sample_name == format!("{name}_count") || sample_name == format!("{name}_gcount"))
            && !value.is_integer()
        {
            return Err(("a count is a whole number", PY));
        }
        if typ == "summary" && sample_name == name {
            let quantile = label("quantile").map_or(Some(-1.0), python_float);
            let in_range = quantile.is_some_and(|q| (0.0..=1.0).contains(&q));
            if !in_range || python_canonical(label("quantile").unwrap()) != Some(true) {
                return Err(("a quantile label between 0 and 1", PY));
            }
        }

        // python: metric grouping and timestamps within a group.
        let mut group = labels.clone();
        match typ.as_str() {
            "info" => group.clear(),
            "summary" if sample_name == name => group.retain(|(k, _)| k != "quantile"),
            "stateset" => group.retain(|(k, _)| *k != name),
            "histogram" | "gaugehistogram" if sample_name == format!("{name}_bucket") => {
                group.retain(|(k, _)| k != "le")
            }
            _ => {}
        }
        group.sort();
        if family.group.is_some()
            && family.group.as_ref() != Some(&group)
            && family.seen_groups.contains(&group)
        {
            return Err(("a group's samples together", PY));
        }
        if family.group.as_ref() == Some(&group) {
            if timestamp.is_none() != family.group_timestamp.is_none() {
                return Err(("all or none of a group's samples have timestamps", PY));
            }
            if let (Some(before), Some(now)) = (family.group_timestamp, timestamp) {
                match python_later(before, now) {
                    None => return Err(("a group's timestamps written alike", PY)),
                    Some(true) if typ != "info" => {
                        return Err(("a group's timestamps do not go backwards", PY))
                    }
                    _ => {}
                }
            }
        } else {
            family.group_timestamp_samples.clear();
        }
        let mut sorted_labels = labels.clone();
        sorted_labels.sort();
        let series = (sample_name.clone(), sorted_labels);
        if timestamp != family.group_timestamp || !family.group_timestamp_samples.contains(&series)
        {
            family.samples.push(PySample {
                name: sample_name.clone(),
                labels: labels.clone(),
                value,
                timestamp,
                line,
            });
        }
        family.group_timestamp_samples.insert(series);
        family.seen_groups.insert(group.clone());
        family.group = Some(group);
        family.group_timestamp = timestamp;

        let v = value.value;
        if typ == "stateset" && v != 0.0 && v != 1.0 {
            return Err(("a stateset's values are 0 or 1", PY));
        }
        if typ == "info" && v != 1.0 {
            return Err(("an info's value is 1", PY));
        }
        if typ == "summary" && sample_name == name && v < 0.0 {
            return Err(("a quantile's value is not negative", PY));
        }
        let suffix = sample_name.get(name.len()..).unwrap_or("");
        let counter_like = ["_total", "_sum", "_count", "_bucket", "_gcount", "_gsum"];
        if counter_like.contains(&suffix) && v.is_nan() {
            return Err(("a counter-like sample is not NaN", PY));
        }
        if counter_like[..5].contains(&suffix) && v < 0.0 {
            return Err(("a counter-like sample is not negative", PY));
        }
        let exemplar_ok = (matches!(typ.as_str(), "histogram" | "gaugehistogram")
            && sample_name.ends_with("_bucket"))
            || (typ == "counter" && sample_name.ends_with("_total"));
        if sample.exemplar.is_some() && !exemplar_ok {
            return Err((
                "exemplars only on a counter's _total and a histogram's _bucket",
                PY,
            ));
        }
        Ok(())
    }

    /// python `build_metric`, run when the next family starts and at the
    /// end.
    fn finish(&mut self) -> Result<(), Rule> {
        let Some(family) = self.family.take() else {
            return Ok(());
        };
        self.failed_line = family.samples.last().map(|sample| sample.line);
        let typ = family.typ.clone().unwrap_or_else(|| "unknown".to_string());
        let mut suffixes: Vec<&str> = type_suffixes(&typ).unwrap_or(&[]).to_vec();
        suffixes.push("");
        suffixes.sort();
        suffixes.dedup();
        for suffix in suffixes {
            if !self.seen_names.insert(format!("{}{suffix}", family.name)) {
                return Err(("no two families claim a name", PY));
            }
        }
        if let Some(unit) = family.unit.as_deref().filter(|unit| !unit.is_empty()) {
            if !family.name.ends_with(&format!("_{unit}")) {
                return Err(("UNIT is the name's suffix after '_'", PY));
            }
            if typ == "info" || typ == "stateset" {
                return Err(("no UNIT for info and stateset", PY));
            }
        }
        if typ == "histogram" || typ == "gaugehistogram" {
            check_histogram(&family.samples, &family.name)
                .map_err(|(rule, line)| {
                    self.failed_line = Some(line);
                    rule
                })
                .map_err(|rule| (rule, PY))?;
        }
        if family.name.is_empty() {
            return Err(("a metric name is not empty", PY));
        }
        self.failed_line = None;
        Ok(())
    }
}

fn quote_if(s: &str, quoted: bool) -> String {
    if quoted {
        format!("\"{s}\"")
    } else {
        s.to_string()
    }
}

/// python compares `Timestamp`s with each other and floats with each
/// other; a `Timestamp` against a float raises. `Some(true)` when `before`
/// is later than `now`.
fn python_later(before: PyTimestamp, now: PyTimestamp) -> Option<bool> {
    match (before, now) {
        (PyTimestamp::Exact { sec: a, nsec: b }, PyTimestamp::Exact { sec: c, nsec: d }) => {
            Some(if a == c { b > d } else { a > c })
        }
        (PyTimestamp::Float(a), PyTimestamp::Float(b)) => Some(a > b),
        _ => None,
    }
}

/// python's exemplar rules in `_parse_remaining_text` and `parse_labels`.
fn python_exemplar(exemplar: &Exemplar<'_>) -> Result<(), Rule> {
    let mut names: Vec<String> = Vec::new();
    let mut length = 0;
    for label in &exemplar.labels {
        let (name, _) = python_unquote(&quote_if(label.name, label.name_quoted))
            .ok_or(("a closing quote", PY))?;
        if name.starts_with("__") {
            return Err(("no label name starting with __", PY));
        }
        if names.contains(&name) {
            return Err(("each label name once", PY));
        }
        length += name.chars().count() + unescape(label.value).chars().count();
        names.push(name);
    }
    if length > 128 {
        return Err(("an exemplar's labels hold at most 128 characters", PY));
    }
    Ok(())
}

/// python `_parse_remaining_text`: the line after the value and a space,
/// read by a state machine that flips "in quotes" at every `"`, escaped or
/// not, and skips what is inside; the exemplar's labels are read apart (as
/// the grammar read them). What it collects must read as python numbers.
fn python_remaining_text(text: &str) -> Result<(), Rule> {
    #[derive(PartialEq)]
    enum State {
        Timestamp,
        Hash,
        Space,
        StartOfLabels,
        ParsedLabels,
        ValueSpace,
        Value,
        ExemplarTimestamp,
    }
    let invalid = ("python's reading of the text after the value", PY);
    let (mut timestamp, mut value, mut exemplar_timestamp) =
        (String::new(), String::new(), String::new());
    let mut state = State::Timestamp;
    let mut in_quotes = false;
    for c in text.chars() {
        if c == '"' {
            in_quotes = !in_quotes;
        }
        if in_quotes {
            continue;
        }
        match state {
            State::Timestamp if c == '#' && timestamp.is_empty() => state = State::Space,
            State::Timestamp if c == ' ' => state = State::Hash,
            State::Timestamp => timestamp.push(c),
            State::Hash if c == '#' => state = State::Space,
            State::Space if c == ' ' => state = State::StartOfLabels,
            State::StartOfLabels if c == '{' => state = State::ParsedLabels,
            State::Hash | State::Space | State::StartOfLabels => return Err(invalid),
            State::ParsedLabels if c == '}' => state = State::ValueSpace,
            State::ParsedLabels => {}
            State::ValueSpace if c == ' ' => state = State::Value,
            State::ValueSpace => return Err(invalid),
            State::Value if c == ' ' && value.is_empty() => return Err(invalid),
            State::Value if c == ' ' => state = State::ExemplarTimestamp,
            State::Value => value.push(c),
            State::ExemplarTimestamp => exemplar_timestamp.push(c),
        }
    }
    let trailing_space = (state == State::Timestamp && timestamp.is_empty())
        || (state == State::ExemplarTimestamp && exemplar_timestamp.is_empty());
    let incomplete = matches!(
        state,
        State::Hash | State::Space | State::StartOfLabels | State::ParsedLabels
    );
    if trailing_space || incomplete {
        return Err(invalid);
    }
    if !timestamp.is_empty() && python_timestamp(&timestamp).is_none() {
        return Err(invalid);
    }
    if state != State::Timestamp {
        // `_parse_value`: no blanks around, no `_`, then int or float.
        if value.trim() != value || value.contains('_') || python_float(&value).is_none() {
            return Err(invalid);
        }
        if !exemplar_timestamp.is_empty() && python_timestamp(&exemplar_timestamp).is_none() {
            return Err(invalid);
        }
    }
    Ok(())
}

/// python `_check_histogram`: per group (labels without `le`, and
/// timestamp), buckets in increasing `le` with non-decreasing values, a
/// `+Inf` bucket equal to `_count`, `_sum`/`_gsum` with `_count`/`_gcount`,
/// no `_sum` with negative buckets, no negative `_gsum` without them.
fn check_histogram(samples: &[PySample], name: &str) -> Result<(), (&'static str, usize)> {
    struct State {
        count: Option<f64>,
        bucket: Option<f64>,
        negative_buckets: bool,
        sum: bool,
        gsum: bool,
        negative_gsum: bool,
        value: f64,
        line: usize,
    }
    let checks = |s: &State| -> Result<(), (&'static str, usize)> {
        let fail = |rule| Err((rule, s.line));
        if s.bucket != Some(f64::INFINITY) {
            return fail("a histogram's group has a +Inf bucket");
        }
        if s.count.is_some_and(|count| count != s.value) {
            return fail("a histogram's _count equals its +Inf bucket");
        }
        if (s.sum || s.gsum) && s.count.is_none() {
            return fail("a histogram's _sum comes with _count");
        }
        if !(s.sum || s.gsum) && s.count.is_some() {
            return fail("a histogram's _count comes with _sum");
        }
        if s.negative_buckets && s.sum {
            return fail("no _sum with negative buckets");
        }
        if !s.negative_buckets && s.negative_gsum {
            return fail("no negative _gsum without negative buckets");
        }
        Ok(())
    };
    let mut group: Option<(Group, Option<PyTimestamp>)> = None;
    let mut state: Option<State> = None;
    for sample in samples {
        let suffix = &sample.name[name.len().min(sample.name.len())..];
        if suffix.is_empty() {
            continue;
        }
        let mut g = sample.labels.clone();
        if suffix == "_bucket" {
            g.retain(|(k, _)| k != "le");
        }
        // python compares dicts: in any order.
        g.sort();
        let key = (g, sample.timestamp);
        if group.as_ref() != Some(&key) {
            if let Some(s) = &state {
                checks(s)?;
            }
            state = Some(State {
                count: None,
                bucket: None,
                negative_buckets: false,
                sum: false,
                gsum: false,
                negative_gsum: false,
                value: 0.0,
                line: sample.line,
            });
        }
        group = Some(key);
        let s = state.as_mut().unwrap();
        s.line = sample.line;
        let value = sample.value.value;
        match suffix {
            "_bucket" => {
                let le = sample
                    .labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .and_then(|(_, v)| python_float(v))
                    .unwrap_or(f64::NAN);
                if le < 0.0 {
                    s.negative_buckets = true;
                }
                if s.bucket.is_some_and(|bucket| le <= bucket) {
                    return Err(("a histogram's buckets in increasing le", sample.line));
                }
                if value < s.value {
                    return Err(("a histogram's bucket values do not decrease", sample.line));
                }
                s.bucket = Some(le);
                s.value = value;
            }
            "_count" | "_gcount" => s.count = Some(value),
            "_sum" => s.sum = true,
            "_gsum" => {
                s.gsum = true;
                if value < 0.0 {
                    s.negative_gsum = true;
                }
            }
            _ => {}
        }
    }
    if let Some(s) = &state {
        checks(s)?;
    }
    Ok(())
}
