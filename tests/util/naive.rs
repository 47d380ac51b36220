//! A naive reference parser: line by line, on `String`s, slow and obviously
//! correct. It reads sample lines only (comments are skipped) and returns
//! each sample with its name and labels in escaped legacy form, label values
//! unescaped, the value as an f64 and the timestamp in milliseconds.

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub struct NaiveSample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

impl NaiveSample {
    /// A comparable key: NaN equals NaN here.
    pub fn key(&self) -> String {
        let value = if self.value.is_nan() {
            "NaN".to_string()
        } else {
            format!("{:?}", self.value)
        };
        format!(
            "{}{:?} {} {:?}",
            self.name, self.labels, value, self.timestamp_ms
        )
    }
}

/// Returns the samples, or the 1-based number of the first bad line.
pub fn parse(text: &str) -> Result<Vec<NaiveSample>, usize> {
    let openmetrics = text
        .lines()
        .any(|line| line.trim_end_matches('\r') == "# EOF");
    let mut samples = Vec::new();
    for (number, line) in text.split('\n').enumerate() {
        let line = line
            .strip_suffix('\r')
            .unwrap_or(line)
            .trim_start_matches([' ', '\t']);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_sample(line, openmetrics) {
            Some(sample) => samples.push(sample),
            None => return Err(number + 1),
        }
    }
    Ok(samples)
}

fn legacy(name: &str, label: bool) -> bool {
    let mut chars = name.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (!label && c == ':');
    match chars.next() {
        Some(c) if ok_first(c) => chars.all(|c| ok_first(c) || c.is_ascii_digit()),
        _ => false,
    }
}

fn escape_name(name: &str, label: bool) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            let ok = c.is_ascii_alphabetic()
                || c == '_'
                || (!label && c == ':')
                || (i > 0 && c.is_ascii_digit());
            if ok {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Reads a quoted string starting at `s[0] == '"'`; returns (unescaped, rest).
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.strip_prefix('"')?.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 2..])),
            '\\' => match chars.next()?.1 {
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                'n' => out.push('\n'),
                // Prometheus keeps any other escape as written.
                other => {
                    out.push('\\');
                    out.push(other);
                }
            },
            _ => out.push(c),
        }
    }
    None
}

fn value(token: &str) -> Option<f64> {
    let lower = token.to_ascii_lowercase();
    match lower.as_str() {
        "nan" => return Some(f64::NAN),
        "inf" | "+inf" | "infinity" | "+infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    let digits = token.trim_start_matches(['+', '-']);
    let ok = token.len() - digits.len() <= 1
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && digits.starts_with(|c: char| c.is_ascii_digit() || c == '.');
    if !ok {
        return None;
    }
    token.parse().ok()
}

fn parse_sample(line: &str, openmetrics: bool) -> Option<NaiveSample> {
    let mut labels = BTreeMap::new();
    let mut rest;
    let mut name = String::new();
    if !line.starts_with('{') {
        let end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(line.len());
        name = line[..end].to_string();
        if !legacy(&name, false) {
            return None;
        }
        rest = line[end..].trim_start_matches([' ', '\t']);
        if !rest.starts_with('{') && end == line.len() - rest.len() {
            return None; // no blank before the value
        }
    } else {
        rest = line;
    }
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        let mut first = true;
        loop {
            rest = rest.trim_start_matches([' ', '\t']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label_name, after) = if rest.starts_with('"') {
                let (n, after) = quoted(rest)?;
                if n.is_empty() {
                    return None;
                }
                (n, after)
            } else {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                let n = rest[..end].to_string();
                if !legacy(&n, true) {
                    return None;
                }
                (n, &rest[end..])
            };
            let after = after.trim_start_matches([' ', '\t']);
            if first && name.is_empty() && !after.starts_with('=') {
                name = escape_name(&label_name, false);
                rest = after;
            } else {
                let after = after.strip_prefix('=')?.trim_start_matches([' ', '\t']);
                let (label_value, after) = quoted(after)?;
                let key = escape_name(&label_name, true);
                if labels.insert(key, label_value).is_some() {
                    return None;
                }
                rest = after;
            }
            first = false;
            rest = rest.trim_start_matches([' ', '\t']);
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if !rest.starts_with('}') {
                return None;
            }
        }
        if name.is_empty() {
            return None;
        }
    }
    let mut tokens = rest.split([' ', '\t']).filter(|t| !t.is_empty());
    let value = value(tokens.next()?)?;
    let mut timestamp_ms = None;
    if let Some(token) = tokens.next() {
        if token != "#" {
            timestamp_ms = Some(if openmetrics {
                // Prometheus: int64(seconds * 1000), i64::MIN out of range
                // (amd64). A sample before 1970 is one its TSDB drops as out
                // of bounds; text output writes it at 0, dropped alike, so
                // both read as 0 here.
                let millis = value_ts(token)? * 1000.0;
                if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&millis) {
                    (millis as i64).max(0)
                } else {
                    0
                }
            } else {
                token.parse::<i64>().ok()?
            });
        }
    }
    Some(NaiveSample {
        name,
        labels,
        value,
        timestamp_ms,
    })
}

fn value_ts(token: &str) -> Option<f64> {
    value(token).filter(|v| v.is_finite())
}
