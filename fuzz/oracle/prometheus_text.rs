//! An independent judge of a text 0.0.4 exposition: would Prometheus 2.42's
//! scraper, `promtool check metrics` and Python's `prometheus_client` parser
//! all take it? Written from their rules, not from the sidecar's parser:
//!
//! - Prometheus 2.42 `model/textparse/promlex.l` and `promparse.go`: tokens
//!   separated by `[ \t]+`; metric names `[a-zA-Z_:][a-zA-Z0-9_:]*`, label
//!   names `[a-zA-Z_][a-zA-Z0-9_]*`; a free trailing comma in a label set;
//!   values through `parseFloat` (no `p`, `P` or `_`, then Go's
//!   `strconv.ParseFloat`, which refuses out-of-range values); timestamps
//!   `[0-9]+` through `strconv.ParseInt` (no sign); every entry ends with a
//!   line feed; TYPE is one of five words; HELP and label values UTF-8.
//! - Prometheus 2.42 `scrape/scrape.go` and the TSDB: a label set with a
//!   second `__name__` is refused ("label name is not unique").
//! - prometheus/common `expfmt` (promtool): only the escapes `\\`, `\"` and
//!   `\n` in label values; no duplicate label names; one HELP and one TYPE
//!   per name, TYPE before the family's samples; `le` of a histogram's
//!   `_bucket` and `quantile` of a summary read as floats.
//! - Python `prometheus_client.parser`: no label name starting with `__`.
//!
//! Slow and plain on purpose: every rule is a few lines that can be read
//! against its source. Used by the fuzz targets and the oracle tests.

use std::collections::{HashMap, HashSet};

/// Why the judge refuses a text: the 1-based line and the rule broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub line: usize,
    pub rule: &'static str,
}

/// What the judge learnt of a text it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub samples: usize,
}

/// Judges `text`; see the module documentation for the rules.
pub fn judge(text: &[u8]) -> Result<Accepted, Refusal> {
    let refuse = |line: usize, rule: &'static str| Err(Refusal { line, rule });
    let Ok(text) = std::str::from_utf8(text) else {
        return refuse(1, "UTF-8");
    };
    if !text.is_empty() && !text.ends_with('\n') {
        return refuse(text.lines().count(), "every line ends with a line feed");
    }
    let mut types: HashMap<&str, &str> = HashMap::new();
    let mut helps: HashSet<&str> = HashSet::new();
    // Families (as expfmt groups samples) that already have samples.
    let mut families_with_samples: HashSet<String> = HashSet::new();
    let mut samples = 0;
    for (index, line) in text.split_terminator('\n').enumerate() {
        let number = index + 1;
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            // promlex: `#[ \t]+` then `HELP[\t ]+` or `TYPE[\t ]+`, else a
            // plain comment.
            let after_hash = skip_blanks(comment);
            let keyword_end = after_hash.find([' ', '\t']).unwrap_or(after_hash.len());
            let keyword = &after_hash[..keyword_end];
            let after_keyword = &after_hash[keyword_end..];
            if after_hash.len() == comment.len()
                || !matches!(keyword, "HELP" | "TYPE")
                || after_keyword.is_empty()
            {
                continue;
            }
            let rest = skip_blanks(after_keyword);
            let name_end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let (name, text) = rest.split_at(name_end);
            // Python's parser splits the line at blanks: the name must end
            // at one.
            if !is_metric_name(name) || !(text.is_empty() || text.starts_with([' ', '\t'])) {
                return refuse(number, "a metric name after HELP or TYPE");
            }
            if keyword == "HELP" {
                if !helps.insert(name) {
                    return refuse(number, "one HELP per metric name");
                }
                continue;
            }
            // promparse: the type is the text after the name minus its first
            // character, so exactly one blank and no trailing blank.
            let kind = text.get(1..).unwrap_or("");
            if !matches!(
                kind,
                "counter" | "gauge" | "histogram" | "summary" | "untyped"
            ) {
                return refuse(number, "one blank, then a known metric type");
            }
            if types.insert(name, kind).is_some() {
                return refuse(number, "one TYPE per metric name");
            }
            if families_with_samples.contains(name) {
                return refuse(number, "TYPE before the family's samples");
            }
            continue;
        }
        let sample = match parse_sample(line) {
            Ok(sample) => sample,
            Err(rule) => return refuse(number, rule),
        };
        // The family expfmt files the sample under, and its bound label.
        let mut family = sample.name.to_string();
        let mut bound = None;
        for (suffix, kinds) in [
            ("_bucket", &["histogram"][..]),
            ("_sum", &["histogram", "summary"][..]),
            ("_count", &["histogram", "summary"][..]),
        ] {
            if let Some(base) = sample.name.strip_suffix(suffix) {
                if let Some(kind) = types.get(base).filter(|kind| kinds.contains(kind)) {
                    family = base.to_string();
                    if suffix == "_bucket" && *kind == "histogram" {
                        bound = Some("le");
                    }
                }
            }
        }
        if types.get(sample.name) == Some(&"summary") {
            bound = Some("quantile");
        }
        if let Some(bound) = bound {
            let value = sample.labels.iter().find(|(name, _)| *name == bound);
            if value.is_some_and(|(_, value)| go_parse_float(value).is_none()) {
                return refuse(number, "le and quantile read as floats");
            }
        }
        families_with_samples.insert(family);
        samples += 1;
    }
    Ok(Accepted { samples })
}

struct ParsedSample<'a> {
    name: &'a str,
    /// Names and raw (escaped) values.
    labels: Vec<(&'a str, &'a str)>,
}

fn skip_blanks(s: &str) -> &str {
    s.trim_start_matches([' ', '\t'])
}

fn parse_sample(line: &str) -> Result<ParsedSample<'_>, &'static str> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err("a metric name");
    }
    let mut rest = skip_blanks(&line[name_end..]);
    let mut labels = Vec::new();
    if let Some(inside) = rest.strip_prefix('{') {
        rest = skip_blanks(inside);
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let label_end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let label = &rest[..label_end];
            if !is_label_name(label) {
                return Err("a label name");
            }
            if label.starts_with("__") {
                return Err("no label name starting with __");
            }
            if labels.iter().any(|(seen, _)| *seen == label) {
                return Err("each label name once");
            }
            rest = skip_blanks(&rest[label_end..]);
            rest = skip_blanks(rest.strip_prefix('=').ok_or("'=' after a label name")?);
            rest = rest.strip_prefix('"').ok_or("a quoted label value")?;
            let mut end = None;
            let mut chars = rest.char_indices();
            while let Some((at, c)) = chars.next() {
                match c {
                    '"' => {
                        end = Some(at);
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, '\\' | '"' | 'n')) => {}
                        _ => return Err("only the escapes \\\\, \\\" and \\n"),
                    },
                    _ => {}
                }
            }
            let end = end.ok_or("a closing quote")?;
            labels.push((label, &rest[..end]));
            rest = skip_blanks(&rest[end + 1..]);
            if let Some(after) = rest.strip_prefix(',') {
                rest = skip_blanks(after);
            } else if !rest.starts_with('}') {
                return Err("',' or '}' after a label value");
            }
        }
    }
    // The value: at least one blank after the name, none needed after `}`.
    let after_name = &line[name_end..];
    if !after_name.starts_with(['{', ' ', '\t']) {
        return Err("a blank or '{' after the metric name");
    }
    let rest = skip_blanks(rest);
    let mut tokens = rest.split([' ', '\t']).filter(|token| !token.is_empty());
    let value = tokens.next().ok_or("a value")?;
    if go_parse_float(value).is_none() {
        return Err("a value Go's ParseFloat reads (after Prometheus refuses p, P and _)");
    }
    if let Some(timestamp) = tokens.next() {
        let digits = !timestamp.is_empty() && timestamp.bytes().all(|b| b.is_ascii_digit());
        if !digits || timestamp.parse::<i64>().is_err() {
            return Err("a timestamp of digits that fits an int64");
        }
    }
    if tokens.next().is_some() {
        return Err("the end of the line after the timestamp");
    }
    Ok(ParsedSample { name, labels })
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Prometheus' `parseFloat`: refuse `p`, `P` and `_`, then Go's
/// `strconv.ParseFloat(s, 64)`: an optional sign; `inf` or `infinity` in
/// any case (signed or not) or `nan` in any case (unsigned only); or a
/// decimal mantissa with at least one digit and an optional exponent (hex
/// mantissas need a `p` exponent, refused above). Out of range (the value
/// rounds to infinity) is an error; underflow is not.
pub fn go_parse_float(s: &str) -> Option<f64> {
    if s.contains(['p', 'P', '_']) {
        return None;
    }
    let (sign, unsigned) = match s.as_bytes().first() {
        Some(b'+') => (1.0, &s[1..]),
        Some(b'-') => (-1.0, &s[1..]),
        _ => (1.0, s),
    };
    let lower = unsigned.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        return Some(sign * f64::INFINITY);
    }
    if lower == "nan" {
        return (unsigned.len() == s.len()).then_some(f64::NAN);
    }
    let bytes = unsigned.as_bytes();
    let mut at = 0;
    let mut digits = 0;
    while bytes.get(at).is_some_and(u8::is_ascii_digit) {
        at += 1;
        digits += 1;
    }
    if bytes.get(at) == Some(&b'.') {
        at += 1;
        while bytes.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(bytes.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let exponent_start = at;
        while bytes.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == exponent_start {
            return None;
        }
    }
    if at != bytes.len() {
        return None;
    }
    // Rust rounds a decimal to the nearest float64 as Go does.
    let value: f64 = s.parse().ok()?;
    value.is_finite().then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_parse_float_table() {
        let table: &[(&str, Option<f64>)] = &[
            ("1", Some(1.0)),
            ("+1", Some(1.0)),
            ("-1.5e-3", Some(-0.0015)),
            (".5", Some(0.5)),
            ("1.", Some(1.0)),
            ("1E+2", Some(100.0)),
            ("1e-999", Some(0.0)),
            ("Inf", Some(f64::INFINITY)),
            ("-infinity", Some(f64::NEG_INFINITY)),
            ("+INF", Some(f64::INFINITY)),
            ("1e999", None),
            ("-1e999", None),
            ("1.7976931348623159e308", None),
            ("0x1p3", None),
            ("0x10", None),
            ("1_000", None),
            ("+NaN", None),
            ("infin", None),
            (".", None),
            ("1e", None),
            ("", None),
            ("1 ", None),
        ];
        for (input, expected) in table {
            assert_eq!(go_parse_float(input), *expected, "{input:?}");
        }
        assert!(go_parse_float("nan").is_some_and(f64::is_nan));
        assert!(go_parse_float("NaN").is_some_and(f64::is_nan));
    }

    #[test]
    fn judge_table() {
        let ok = |text: &str, samples: usize| (text.to_string(), Ok(samples));
        let bad = |text: &str, line: usize, rule: &'static str| {
            (text.to_string(), Err(Refusal { line, rule }))
        };
        let table = [
            ok("", 0),
            ok("x 1\n", 1),
            ok("x{} 1\n", 1),
            ok("x{a=\"b\",} 1 123\n", 1),
            ok("x { a = \"b\" } 1\n", 1),
            ok("x{a=\"\\\\ \\\" \\n\"}1\n", 1),
            ok("# HELP x h\n# TYPE x gauge\nx 1\n\n# a comment\n", 1),
            ok(
                "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
                3,
            ),
            ok("x_bucket{le=\"x\"} 1\n", 1),
            ok("__x 1\n", 1),
            bad("x 1", 1, "every line ends with a line feed"),
            bad(
                "x 1e999\n",
                1,
                "a value Go's ParseFloat reads (after Prometheus refuses p, P and _)",
            ),
            bad("x 1 -3\n", 1, "a timestamp of digits that fits an int64"),
            bad("x 1 1.5\n", 1, "a timestamp of digits that fits an int64"),
            bad(
                "x 1 9223372036854775808\n",
                1,
                "a timestamp of digits that fits an int64",
            ),
            bad("x 1 2 3\n", 1, "the end of the line after the timestamp"),
            bad("x{__name__=\"y\"} 1\n", 1, "no label name starting with __"),
            bad("x{__a=\"y\"} 1\n", 1, "no label name starting with __"),
            bad("x{a=\"1\",a=\"2\"} 1\n", 1, "each label name once"),
            bad("x{a=\"\\t\"} 1\n", 1, "only the escapes \\\\, \\\" and \\n"),
            bad("x{a=\"1} 1\n", 1, "a closing quote"),
            bad(
                "x{a=\"1\" b=\"2\"} 1\n",
                1,
                "',' or '}' after a label value",
            ),
            bad("x{1=\"1\"} 1\n", 1, "a label name"),
            bad("x\n", 1, "a blank or '{' after the metric name"),
            bad("1x 1\n", 1, "a metric name"),
            bad(
                "x 1\n# TYPE x gauge\n",
                2,
                "TYPE before the family's samples",
            ),
            bad(
                "# TYPE x gauge\n# TYPE x gauge\n",
                2,
                "one TYPE per metric name",
            ),
            bad("# HELP x a\n# HELP x b\n", 2, "one HELP per metric name"),
            bad("# TYPE x timer\n", 1, "one blank, then a known metric type"),
            bad(
                "# TYPE x  gauge\n",
                1,
                "one blank, then a known metric type",
            ),
            bad(
                "# TYPE x gauge \n",
                1,
                "one blank, then a known metric type",
            ),
            bad("# TYPE x\n", 1, "one blank, then a known metric type"),
            bad("# HELP x{ h\n", 1, "a metric name after HELP or TYPE"),
            ok("# HELP x\n#HELP y\n# HELP\n# TYPE\n#\n", 0),
            ok("# HELP x  two  blanks \n# TYPE x\tgauge\nx 1\n", 1),
            bad(
                "# TYPE h histogram\nh_bucket{le=\"1e999\"} 1\n",
                2,
                "le and quantile read as floats",
            ),
            bad(
                "# TYPE s summary\ns{quantile=\"x\"} 1\n",
                2,
                "le and quantile read as floats",
            ),
            bad(
                "# TYPE h histogram\nh_count 1\n# TYPE h histogram\n",
                3,
                "one TYPE per metric name",
            ),
        ];
        for (text, expected) in table {
            let got = judge(text.as_bytes()).map(|accepted| accepted.samples);
            assert_eq!(got, expected, "{text:?}");
        }
        assert_eq!(
            judge(b"x{a=\"\xff\"} 1\n"),
            Err(Refusal {
                line: 1,
                rule: "UTF-8"
            })
        );
    }
}
