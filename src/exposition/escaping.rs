//! How metric and label names are written for a client: the one place that
//! says which names are legacy names and what each escaping scheme (see
//! [`Escaping`], chosen by the client's `escaping=`) makes of the others.
//! Every writer (text, OpenMetrics, protobuf) calls these.
//!
//! The rules are prometheus/common's `model/metric.go`:
//! - A legacy metric name is `[a-zA-Z_:][a-zA-Z0-9_:]*` (`isValidLegacyRune`,
//!   the digit rule judged by *byte* index, as Go's `range` over a string
//!   gives it). A legacy label name is the same without `:`. Go's
//!   `EscapeMetricFamily` checks label names with the metric rule, so it lets
//!   `a:b` through as a label name, which no text parser reads; here `:` is
//!   invalid in a label name, so the output stays readable.
//! - Names are escaped only when they are not legacy names, as
//!   `EscapeMetricFamily` does (`EscapeName` itself escapes `_` in a legacy
//!   name under `dots`; its test vectors are checked here all the same).
//! - Characters are read as Go reads a string: UTF-8 runes, each invalid byte
//!   one U+FFFD of width 1.
//!   - `underscores`: each rune that is not valid becomes one `_`.
//!   - `dots`: `_` becomes `__`, `.` becomes `_dot_`, any other invalid rune
//!     `__`; a label name that would then start with the reserved `__`
//!     starts with one `_` (our deviation, to keep the output valid).
//!   - `values`: `U__` first, then `_` becomes `__`, and an invalid rune
//!     `_<lower-case hex code point>_`.
//!   - `allow-utf-8`: names as they are. Text and OpenMetrics writers quote
//!     the names that are not legacy names ([`write_name`]; a metric name
//!     then goes inside the braces, `{"a.b",x="y"} 1`, as Prometheus 3's text
//!     writer does).
//!
//! Nothing here allocates: every function appends to the caller's buffer.
//! Legacy names (nearly all of them) cost one scan and one copy.

use super::negotiate::Escaping;
use super::text::all_name_bytes;

/// Whether `name` is a legacy name, written as it is under every scheme:
/// `[a-zA-Z_:][a-zA-Z0-9_:]*` for a metric, the same without `:` for a
/// label (`label`).
#[inline]
pub(crate) fn is_legacy_name(name: &[u8], label: bool) -> bool {
    match name.split_first() {
        None => false,
        Some((&first, rest)) => {
            // The rest eight bytes at a time: every family's name is
            // looked at.
            is_valid_legacy_byte(first, 0, label) && all_name_bytes(rest, !label)
        }
    }
}

/// Go's `isValidLegacyRune` for an ASCII byte at byte index `i` (`:` not
/// for a label).
#[inline]
fn is_valid_legacy_byte(c: u8, i: usize, label: bool) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || (!label && c == b':') || (c.is_ascii_digit() && i > 0)
}

/// Appends `name` (UTF-8, unescaped) as `scheme` writes it, without quotes
/// (`EscapeMetricFamily`'s rule): legacy names, and every name under
/// `allow-utf-8`, as they are; others escaped (an empty one stays empty,
/// as `EscapeName` leaves it).
pub(crate) fn escape_name(name: &[u8], scheme: Escaping, label: bool, out: &mut Vec<u8>) {
    if scheme == Escaping::AllowUtf8 || name.is_empty() || is_legacy_name(name, label) {
        out.extend_from_slice(name);
    } else {
        escape(name, scheme, label, out);
    }
}

/// Appends a name as text and OpenMetrics output write it for `scheme`:
/// escaped, or under `allow-utf-8` quoted unless it is a legacy name (a
/// metric name then goes inside the braces, `{"a.b",x="y"} 1`, as Prometheus
/// 3's text writer does). Returns whether it was quoted.
pub(crate) fn write_name(name: &[u8], scheme: Escaping, label: bool, out: &mut Vec<u8>) -> bool {
    if scheme == Escaping::AllowUtf8 && !is_legacy_name(name, label) {
        write_quoted(name, out);
        true
    } else {
        escape_name(name, scheme, label, out);
        false
    }
}

/// Appends `"name"` with `\`, `"` and newline escaped (`\\`, `\"`,
/// `\n`), as Prometheus 3's text writer quotes a name.
pub(crate) fn write_quoted(name: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    let mut start = 0;
    for (i, &c) in name.iter().enumerate() {
        let escaped: &[u8] = match c {
            b'\\' => b"\\\\",
            b'"' => b"\\\"",
            b'\n' => b"\\n",
            _ => continue,
        };
        out.extend_from_slice(&name[start..i]);
        out.extend_from_slice(escaped);
        start = i + 1;
    }
    out.extend_from_slice(&name[start..]);
    out.push(b'"');
}

/// prometheus/common's `EscapeName(name, scheme)` exactly (metric rule):
/// unlike [`escape_name`], `dots` escapes `_` in a legacy name too. Only
/// its test vectors use it.
#[cfg(test)]
fn expfmt_escape_name(name: &[u8], scheme: Escaping, out: &mut Vec<u8>) {
    match scheme {
        Escaping::AllowUtf8 => out.extend_from_slice(name),
        Escaping::Underscores | Escaping::Values if is_legacy_name(name, false) => {
            out.extend_from_slice(name)
        }
        _ if name.is_empty() => {}
        _ => escape(name, scheme, false, out),
    }
}

/// The per-rune rewrite of `EscapeName` for the three escaping schemes, the
/// legacy check already done by the caller (for `values` the `U__` prefix
/// is written).
fn escape(name: &[u8], scheme: Escaping, label: bool, out: &mut Vec<u8>) {
    if scheme == Escaping::Values {
        out.extend_from_slice(b"U__");
    }
    let start = out.len();
    let mut i = 0;
    while i < name.len() {
        let (rune, width) = decode_rune(&name[i..]);
        let valid = rune < 0x80 && is_valid_legacy_byte(rune as u8, i, label);
        match scheme {
            Escaping::AllowUtf8 => unreachable!("never escaped"),
            Escaping::Underscores => out.push(if valid { rune as u8 } else { b'_' }),
            Escaping::Dots => match rune {
                0x5F => out.extend_from_slice(b"__"),
                0x2E => out.extend_from_slice(b"_dot_"),
                _ if valid => out.push(rune as u8),
                _ => out.extend_from_slice(b"__"),
            },
            Escaping::Values => match rune {
                0x5F => out.extend_from_slice(b"__"),
                _ if valid => out.push(rune as u8),
                _ => {
                    out.push(b'_');
                    push_hex(rune, out);
                    out.push(b'_');
                }
            },
        }
        i += width;
    }
    // A label name starting with `__` is reserved (Prometheus drops it,
    // prometheus_client refuses it): where `dots` would start one (a `_` or
    // an invalid first character), it starts with one `_`. Our deviation
    // from `EscapeName`, which keeps the output readable.
    if label && scheme == Escaping::Dots && out[start..].starts_with(b"__") {
        out.remove(start);
    }
}

/// Lower-case hex without leading zeros (Go's `strconv.FormatInt(r, 16)`).
fn push_hex(value: u32, out: &mut Vec<u8>) {
    let digits = (32 - (value | 1).leading_zeros()).div_ceil(4);
    for shift in (0..digits).rev() {
        out.push(b"0123456789abcdef"[((value >> (shift * 4)) & 0xF) as usize]);
    }
}

/// U+FFFD, what Go's string `range` yields for each invalid byte.
const RUNE_ERROR: u32 = 0xFFFD;

/// The first rune of `s` and its width, as Go's `utf8.DecodeRune` decodes it:
/// overlong forms, surrogates and code points past U+10FFFF are invalid, and
/// an invalid or truncated sequence is U+FFFD of width 1.
fn decode_rune(s: &[u8]) -> (u32, usize) {
    let first = s[0];
    if first < 0x80 {
        return (u32::from(first), 1);
    }
    // Width and the range the second byte must be in (Go's acceptRanges).
    let (width, low, high) = match first {
        0xC2..=0xDF => (2, 0x80, 0xBF),
        0xE0 => (3, 0xA0, 0xBF),
        0xE1..=0xEC | 0xEE..=0xEF => (3, 0x80, 0xBF),
        0xED => (3, 0x80, 0x9F),
        0xF0 => (4, 0x90, 0xBF),
        0xF1..=0xF3 => (4, 0x80, 0xBF),
        0xF4 => (4, 0x80, 0x8F),
        _ => return (RUNE_ERROR, 1),
    };
    if s.len() < width || !(low..=high).contains(&s[1]) {
        return (RUNE_ERROR, 1);
    }
    if s[2..width].iter().any(|&c| !(0x80..=0xBF).contains(&c)) {
        return (RUNE_ERROR, 1);
    }
    let mut rune = u32::from(first) & (0x7F >> width);
    for &c in &s[1..width] {
        rune = (rune << 6) | (u32::from(c) & 0x3F);
    }
    (rune, width)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Writer = fn(&[u8], Escaping, &mut Vec<u8>);

    fn metric(name: &[u8], scheme: Escaping, out: &mut Vec<u8>) {
        escape_name(name, scheme, false, out)
    }

    fn label(name: &[u8], scheme: Escaping, out: &mut Vec<u8>) {
        escape_name(name, scheme, true, out)
    }

    fn write_metric(name: &[u8], scheme: Escaping, out: &mut Vec<u8>) {
        write_name(name, scheme, false, out);
    }

    fn write_label(name: &[u8], scheme: Escaping, out: &mut Vec<u8>) {
        write_name(name, scheme, true, out);
    }

    fn run(f: Writer, name: &[u8], scheme: Escaping) -> String {
        // Appends after what is there.
        let mut out = b"<".to_vec();
        f(name, scheme, &mut out);
        assert_eq!(out[0], b'<');
        String::from_utf8(out[1..].to_vec()).unwrap()
    }

    /// prometheus/common `model/metric_test.go` `TestEscapeName`: input,
    /// underscores, dots, values.
    #[test]
    fn escape_name_matches_prometheus_common() {
        let table: &[(&str, &str, &str, &str)] = &[
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
                "label with \u{100}",
                "label_with__",
                "label__with____",
                "U__label_20_with_20__100_",
            ),
        ];
        for &(input, underscores, dots, values) in table {
            let name = input.as_bytes();
            let f = expfmt_escape_name;
            assert_eq!(run(f, name, Escaping::Underscores), underscores);
            assert_eq!(run(f, name, Escaping::Dots), dots);
            assert_eq!(run(f, name, Escaping::Values), values);
            assert_eq!(run(f, name, Escaping::AllowUtf8), input);
            // The family rule: the same, but a legacy name is left alone.
            let family_dots = if is_legacy_name(name, false) {
                input
            } else {
                dots
            };
            assert_eq!(run(metric, name, Escaping::Dots), family_dots);
            assert_eq!(run(metric, name, Escaping::Values), values);
        }
    }

    /// `TestEscapeMetricFamily`'s names, and our own edge cases: the
    /// family rule leaves legacy names alone in every scheme.
    #[test]
    fn metric_and_label_names_in_a_family() {
        use Escaping::{AllowUtf8, Dots, Underscores, Values};
        // (name, scheme, as a metric name, as a label name)
        let table: &[(&[u8], Escaping, &str, &str)] = &[
            (b"my_metric", Values, "my_metric", "my_metric"),
            (
                b"some.label",
                Values,
                "U__some_2e_label",
                "U__some_2e_label",
            ),
            (b"my.metric", Values, "U__my_2e_metric", "U__my_2e_metric"),
            (
                b"some?label",
                Values,
                "U__some_3f_label",
                "U__some_3f_label",
            ),
            (b"no_dots_here", Dots, "no_dots_here", "no_dots_here"),
            (b"a.b_c", Dots, "a_dot_b__c", "a_dot_b__c"),
            // `:` is legacy in a metric name, not in a label name.
            (b"a:b", Underscores, "a:b", "a_b"),
            (b"a:b", Dots, "a:b", "a__b"),
            (b"a:b", Values, "a:b", "U__a_3a_b"),
            (b"a:b.c", Values, "U__a:b_2e_c", "U__a_3a_b_2e_c"),
            (b"a:b", AllowUtf8, "a:b", "a:b"),
            // The digit rule is by byte index: a digit after a two-byte
            // rune at index 2 is valid.
            (b"0a", Underscores, "_a", "_a"),
            ("é0".as_bytes(), Underscores, "_0", "_0"),
            ("é0".as_bytes(), Values, "U___e9_0", "U___e9_0"),
            (b"1", Values, "U___31_", "U___31_"),
            // Each invalid byte is one U+FFFD (Go's range over a string).
            (b"a\xffb", Underscores, "a_b", "a_b"),
            (b"a\xe2\x82b", Underscores, "a__b", "a__b"),
            (
                b"a\xe2\x82b",
                Values,
                "U__a_fffd__fffd_b",
                "U__a_fffd__fffd_b",
            ),
            (b"\xed\xa0\x80", Underscores, "___", "___"),
            // A label name never starts with the reserved `__` (ours).
            (b"\xc0\xaf", Dots, "____", "___"),
            (
                b"\xf4\x90\x80\x80",
                Values,
                "U___fffd__fffd__fffd__fffd_",
                "U___fffd__fffd__fffd__fffd_",
            ),
            (
                "\u{10FFFF}".as_bytes(),
                Values,
                "U___10ffff_",
                "U___10ffff_",
            ),
            (b"a.b", AllowUtf8, "a.b", "a.b"),
            (b"", Underscores, "", ""),
        ];
        for &(name, scheme, as_metric, as_label) in table {
            assert_eq!(run(metric, name, scheme), as_metric, "{name:?} {scheme:?}");
            assert_eq!(run(label, name, scheme), as_label, "{name:?} {scheme:?}");
        }
    }

    #[test]
    fn the_legacy_byte_table_is_the_byte_rule() {
        for label in [false, true] {
            for first in 0..=255u8 {
                for rest in [b'a', b'0', b':', 0x80, first] {
                    let name = [first, rest];
                    let by_rule = is_valid_legacy_byte(first, 0, label)
                        && is_valid_legacy_byte(rest, 1, label);
                    assert_eq!(is_legacy_name(&name, label), by_rule, "{name:?} {label}");
                    assert_eq!(
                        is_legacy_name(&[first], label),
                        is_valid_legacy_byte(first, 0, label)
                    );
                }
            }
        }
    }

    #[test]
    fn legacy_names() {
        for (name, metric, label) in [
            (&b"a"[..], true, true),
            (b"_", true, true),
            (b":", true, false),
            (b"a:b_C9", true, false),
            (b"abc_9", true, true),
            (b"9a", false, false),
            (b"", false, false),
            (b"a.b", false, false),
            (b"a b", false, false),
            ("é".as_bytes(), false, false),
        ] {
            assert_eq!(is_legacy_name(name, false), metric, "{name:?}");
            assert_eq!(is_legacy_name(name, true), label, "{name:?}");
        }
    }

    #[test]
    fn quoted_names_for_allow_utf8() {
        use Escaping::{AllowUtf8, Underscores};
        let mut out = Vec::new();
        write_quoted(b"a\\b\"c\nd.e", &mut out);
        assert_eq!(out, b"\"a\\\\b\\\"c\\nd.e\"");
        let table: &[(Writer, &[u8], Escaping, &str)] = &[
            (write_metric, b"a.b", AllowUtf8, "\"a.b\""),
            (write_metric, b"a:b", AllowUtf8, "a:b"),
            (write_metric, b"a.b", Underscores, "a_b"),
            (write_label, b"a:b", AllowUtf8, "\"a:b\""),
            (write_label, b"a_b", AllowUtf8, "a_b"),
            (write_label, "ü".as_bytes(), AllowUtf8, "\"ü\""),
            (write_label, "ü".as_bytes(), Underscores, "_"),
        ];
        for &(f, name, scheme, expected) in table {
            assert_eq!(run(f, name, scheme), expected, "{name:?} {scheme:?}");
        }
        let mut out = Vec::new();
        assert!(write_name(b"a.b", AllowUtf8, false, &mut out));
        assert!(!write_name(b"a:b", AllowUtf8, false, &mut out));
        assert!(write_name(b"a:b", AllowUtf8, true, &mut out));
        assert!(!write_name(b"a.b", Underscores, false, &mut out));
        assert_eq!(out, b"\"a.b\"a:b\"a:b\"a_b");
    }

    /// The decoder against Rust's own UTF-8 validation: a valid sequence
    /// decodes to the char std finds, and everything else is U+FFFD of
    /// width 1 (exhaustive over 1-, 2- and 3-byte prefixes).
    #[test]
    fn decode_rune_agrees_with_std() {
        let check = |bytes: &[u8]| {
            let (rune, width) = decode_rune(bytes);
            let std_first = match std::str::from_utf8(bytes) {
                Ok(s) => s.chars().next().map(|c| (c as u32, c.len_utf8())),
                Err(e) if e.valid_up_to() > 0 => {
                    let s = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap();
                    s.chars().next().map(|c| (c as u32, c.len_utf8()))
                }
                Err(_) => None,
            };
            assert_eq!(
                Some((rune, width)).filter(|_| !(rune == RUNE_ERROR && width == 1)),
                std_first,
                "{bytes:x?}"
            );
        };
        for a in 0..=255u8 {
            check(&[a]);
            for b in 0..=255u8 {
                check(&[a, b]);
                if a >= 0xE0 {
                    for c in [0x00, 0x7F, 0x80, 0xBF, 0xC0] {
                        check(&[a, b, c]);
                        check(&[a, b, c, 0x80]);
                    }
                }
            }
        }
    }

    #[test]
    fn hex_like_format_int() {
        for (value, hex) in [(0, "0"), (0x2e, "2e"), (0x100, "100"), (0x1f631, "1f631")] {
            let mut out = Vec::new();
            push_hex(value, &mut out);
            assert_eq!(out, hex.as_bytes());
        }
    }
}
