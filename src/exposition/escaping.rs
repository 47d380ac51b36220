//! How metric and label names are written for a client: the four schemes of
//! prometheus/common's `model.EscapeName` (`model/metric.go`), chosen by the
//! client's `escaping=` (see [`Escaping`]).
//!
//! - A legacy name (`[a-zA-Z_:][a-zA-Z0-9_:]*` for metrics, no `:` for
//!   labels) is written as it is under every scheme, as
//!   `EscapeMetricFamily` leaves them (it escapes only names that are not
//!   legacy-valid).
//! - `allow-utf-8`: any other name is written quoted where text needs it
//!   (`{"a.b",x="y"} 1`, `# TYPE "a.b" counter`).
//! - `underscores`: each character not valid at its place becomes `_`.
//! - `dots`: `_` becomes `__`, `.` becomes `_dot_`, other invalid
//!   characters `__`.
//! - `values`: `U__`, then `_` as `__`, valid characters as they are, and
//!   every other one as `_<hex code point>_`.
//!
//! Digits are valid after the first byte (Go ranges over a string by byte
//! offset, and the first character is at offset 0). A label name is
//! escaped like a metric name except that `:` is not valid in it: expfmt
//! would let `a:b` through as a label name, which no text parser reads, so
//! here it is escaped to keep the output valid.

use super::negotiate::Escaping;

fn is_legacy_start(c: char, label: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || (c == ':' && !label)
}

fn is_legacy_continue(c: char, label: bool) -> bool {
    is_legacy_start(c, label) || c.is_ascii_digit()
}

/// Whether `name` is written as it is under every scheme.
pub(crate) fn is_legacy_name(name: &[u8], label: bool) -> bool {
    let Some((&first, rest)) = name.split_first() else {
        return false;
    };
    is_legacy_start(char::from(first), label)
        && first.is_ascii()
        && rest
            .iter()
            .all(|&c| c.is_ascii() && is_legacy_continue(char::from(c), label))
}

/// Appends `name` (UTF-8, unescaped) as `scheme` writes it, without quotes:
/// under `allow-utf-8` as it is.
pub(crate) fn escape_name(name: &[u8], scheme: Escaping, label: bool, out: &mut Vec<u8>) {
    if name.is_empty() || scheme == Escaping::AllowUtf8 || is_legacy_name(name, label) {
        out.extend_from_slice(name);
        return;
    }
    let text = String::from_utf8_lossy(name);
    let valid = |i: usize, c: char| {
        if i == 0 {
            is_legacy_start(c, label)
        } else {
            is_legacy_continue(c, label)
        }
    };
    let mut buffer = [0u8; 4];
    match scheme {
        Escaping::AllowUtf8 => {}
        Escaping::Underscores => {
            for (i, c) in text.char_indices() {
                out.push(if valid(i, c) { c as u8 } else { b'_' });
            }
        }
        Escaping::Dots => {
            for (i, c) in text.char_indices() {
                match c {
                    '_' => out.extend_from_slice(b"__"),
                    '.' => out.extend_from_slice(b"_dot_"),
                    c if valid(i, c) => {
                        out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes())
                    }
                    _ => out.extend_from_slice(b"__"),
                }
            }
        }
        Escaping::Values => {
            out.extend_from_slice(b"U__");
            for (i, c) in text.char_indices() {
                match c {
                    '_' => out.extend_from_slice(b"__"),
                    c if valid(i, c) => {
                        out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes())
                    }
                    c => {
                        out.push(b'_');
                        out.extend_from_slice(format!("{:x}", u32::from(c)).as_bytes());
                        out.push(b'_');
                    }
                }
            }
        }
    }
}

/// Appends `"name"` with `\\`, `\"` and `\n` escaped.
pub(crate) fn write_quoted(name: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    super::text::escape_label_value(name, out);
    out.push(b'"');
}

/// Appends a name as text and OpenMetrics output write it for `scheme`:
/// escaped, or under `allow-utf-8` quoted unless it is a legacy name.
/// Returns whether it was quoted.
pub(crate) fn write_name(name: &[u8], scheme: Escaping, label: bool, out: &mut Vec<u8>) -> bool {
    if scheme == Escaping::AllowUtf8 && !is_legacy_name(name, label) {
        write_quoted(name, out);
        true
    } else {
        escape_name(name, scheme, label, out);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// prometheus/common `model/metric_test.go`'s `TestEscapeName` vectors
    /// (metric names).
    #[test]
    fn escape_name_vectors() {
        let cases: &[(&str, &str, &str, &str)] = &[
            // (input, underscores, dots, values)
            ("", "", "", ""),
            (
                "no:escaping_required",
                "no:escaping_required",
                "no:escaping__required",
                "no:escaping_required",
            ),
            (
                "mysystem.prod.west.cpu.load",
                "mysystem_prod_west_cpu_load",
                "mysystem_dot_prod_dot_west_dot_cpu_dot_load",
                "U__mysystem_2e_prod_2e_west_2e_cpu_2e_load",
            ),
            (
                "mysystem.prod.west.cpu.load_total",
                "mysystem_prod_west_cpu_load_total",
                "mysystem_dot_prod_dot_west_dot_cpu_dot_load__total",
                "U__mysystem_2e_prod_2e_west_2e_cpu_2e_load__total",
            ),
            (
                "http.status:sum",
                "http_status:sum",
                "http_dot_status:sum",
                "U__http_2e_status:sum",
            ),
            (
                "label with 😱",
                "label_with__",
                "label__with____",
                "U__label_20_with_20__1f631_",
            ),
            ("花火", "__", "____", "U___82b1__706b_"),
            (
                "label with \u{0100}",
                "label_with__",
                "label__with____",
                "U__label_20_with_20__100_",
            ),
        ];
        for &(input, underscores, dots, values) in cases {
            let escaped = |scheme| {
                let mut out = Vec::new();
                escape_name(input.as_bytes(), scheme, false, &mut out);
                String::from_utf8(out).unwrap()
            };
            assert_eq!(escaped(Escaping::Underscores), underscores, "{input}");
            assert_eq!(escaped(Escaping::Values), values, "{input}");
            assert_eq!(escaped(Escaping::AllowUtf8), input, "{input}");
            // Dots escapes legacy names' underscores too in EscapeName, but
            // EscapeMetricFamily never escapes a legacy name at all.
            if !is_legacy_name(input.as_bytes(), false) {
                assert_eq!(escaped(Escaping::Dots), dots, "{input}");
            }
        }
    }

    #[test]
    fn label_names_never_keep_a_colon() {
        let mut out = Vec::new();
        escape_name(b"a:b.c", Escaping::Underscores, true, &mut out);
        assert_eq!(out, b"a_b_c");
        let mut out = Vec::new();
        assert!(write_name(b"a.b", Escaping::AllowUtf8, true, &mut out));
        assert_eq!(out, b"\"a.b\"");
        let mut out = Vec::new();
        assert!(!write_name(b"ab", Escaping::AllowUtf8, true, &mut out));
        assert_eq!(out, b"ab");
    }
}
