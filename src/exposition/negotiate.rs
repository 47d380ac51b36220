//! Which exposition format each side speaks, decided from HTTP headers, and
//! when to ask containers for protobuf.
//!
//! - A client's `Accept` picks the output as prometheus/common's
//!   `expfmt.Negotiate` does: media ranges in order of preference (q, then
//!   specificity, then position), the first that is delimited protobuf
//!   (`application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
//!   encoding=delimited`) or text 0.0.4 (`text/plain`, version 0.0.4 or none)
//!   wins; anything else, or nothing, means text. `q=0` refuses a range.
//! - A container's `Content-Type` says how its body is read: delimited
//!   protobuf, or text (0.0.4 and OpenMetrics alike, the text parser tells
//!   them apart); a missing or unknown type is read as text, as Prometheus
//!   does. Other protobuf encodings (`text`, `compact-text`) are refused.
//! - Containers are asked for protobuf (text and OpenMetrics as fallbacks)
//!   only while a client that wants protobuf has asked within
//!   [`PROTOBUF_DEMAND_WINDOW`]: a text-only Prometheus costs nothing extra.

use std::time::{Duration, Instant};

/// How the merged output is written for one client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// Text 0.0.4.
    Text,
    /// OpenMetrics 1.0 text (versions 1.0.0 and 0.0.1 are the same body).
    OpenMetrics,
    /// Delimited `io.prometheus.client.MetricFamily` messages.
    Protobuf,
}

impl OutputFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Text => TEXT_CONTENT_TYPE,
            OutputFormat::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            OutputFormat::Protobuf => PROTOBUF_CONTENT_TYPE,
        }
    }
}

/// How metric and label names that are not legacy names are written: the
/// four schemes of prometheus/common's `model.EscapingScheme`, named by the
/// `escaping=` parameter of `Accept` and `Content-Type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Escaping {
    /// As they are: quoted in text and OpenMetrics (`{"a.b"} 1`).
    AllowUtf8,
    /// Each character not valid in a legacy name becomes `_` (what a client
    /// that names no scheme gets).
    #[default]
    Underscores,
    /// `.` becomes `_dot_`, `_` becomes `__`, others `__`.
    Dots,
    /// `U__` then `_` as `__` and others as `_<hex code point>_`.
    Values,
}

impl Escaping {
    /// The scheme an `escaping=` parameter value names (prometheus/common's
    /// `ToEscapingScheme`: exact, case-sensitive names), None for others.
    pub fn from_param(value: &[u8]) -> Option<Escaping> {
        match value {
            b"allow-utf-8" => Some(Escaping::AllowUtf8),
            b"underscores" => Some(Escaping::Underscores),
            b"dots" => Some(Escaping::Dots),
            b"values" => Some(Escaping::Values),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Escaping::AllowUtf8 => "allow-utf-8",
            Escaping::Underscores => "underscores",
            Escaping::Dots => "dots",
            Escaping::Values => "values",
        }
    }
}

/// What one client is answered with: the format and how names are escaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputKind {
    pub format: OutputFormat,
    pub escaping: Escaping,
}

impl From<OutputFormat> for OutputKind {
    fn from(format: OutputFormat) -> OutputKind {
        OutputKind {
            format,
            escaping: Escaping::Underscores,
        }
    }
}

/// How a container's body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    /// Text 0.0.4 or OpenMetrics 1.0.
    Text,
    Protobuf,
    /// A protobuf encoding we do not read (`text`, `compact-text`).
    Unsupported,
}

pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// What client_golang sends (expfmt.FmtProtoDelim).
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// The upstream `Accept` when nobody wants protobuf.
pub const ACCEPT_TEXT: &str =
    "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1";
/// The upstream `Accept` while a client wants protobuf: text 0.0.4 and
/// OpenMetrics remain, for containers that do not speak protobuf.
pub const ACCEPT_PROTOBUF: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=1,text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,*/*;q=0.1";

/// How long one request for protobuf keeps containers asked for protobuf:
/// longer than any sane scrape interval (Prometheus' default is 1 minute),
/// short enough that a protobuf scraper that went away stops costing.
pub const PROTOBUF_DEMAND_WINDOW: Duration = Duration::from_secs(300);

/// Media ranges of an `Accept` header considered; the rest is ignored
/// (a client's header is untrusted input; Prometheus sends five).
const MAX_MEDIA_RANGES: usize = 16;

/// One media range of an `Accept` header, as far as the choice needs it.
#[derive(Clone, Copy)]
struct Range {
    format: Option<OutputFormat>,
    /// Thousandths.
    quality: u16,
    /// 0 for `*/*`, 1 for `type/*`, 2 for `type/subtype`, 3 with parameters
    /// (RFC 9110 §12.5.1: the most specific range takes precedence).
    specificity: u8,
    position: u8,
}

/// The output a client's `Accept` header asks for (None: no header).
pub fn client_format(accept: Option<&[u8]>) -> OutputFormat {
    let Some(accept) = accept else {
        return OutputFormat::Text;
    };
    let mut ranges = [Range {
        format: None,
        quality: 0,
        specificity: 0,
        position: 0,
    }; MAX_MEDIA_RANGES];
    let mut count = 0;
    for (position, text) in accept
        .split(|&c| c == b',')
        .take(MAX_MEDIA_RANGES)
        .enumerate()
    {
        if let Some(range) = media_range(text, position as u8) {
            ranges[count] = range;
            count += 1;
        }
    }
    let ranges = &mut ranges[..count];
    ranges.sort_by(|a, b| {
        b.quality
            .cmp(&a.quality)
            .then(b.specificity.cmp(&a.specificity))
            .then(a.position.cmp(&b.position))
    });
    ranges
        .iter()
        .filter(|range| range.quality > 0)
        .find_map(|range| range.format)
        .unwrap_or(OutputFormat::Text)
}

fn media_range(text: &[u8], position: u8) -> Option<Range> {
    let mut parts = text.split(|&c| c == b';');
    let media = parts.next()?.trim_ascii();
    let (kind, subtype) = {
        let slash = media.iter().position(|&c| c == b'/')?;
        (&media[..slash], &media[slash + 1..])
    };
    let mut quality = 1000;
    let mut version: Option<&[u8]> = None;
    let mut proto: Option<&[u8]> = None;
    let mut encoding: Option<&[u8]> = None;
    let mut parameters = false;
    for parameter in parts {
        let Some(equals) = parameter.iter().position(|&c| c == b'=') else {
            continue;
        };
        let name = parameter[..equals].trim_ascii();
        let value = parameter[equals + 1..].trim_ascii();
        let value = value
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(value);
        if name.eq_ignore_ascii_case(b"q") {
            quality = parse_quality(value)?;
            continue;
        }
        parameters = true;
        if name.eq_ignore_ascii_case(b"version") {
            version = Some(value);
        } else if name.eq_ignore_ascii_case(b"proto") {
            proto = Some(value);
        } else if name.eq_ignore_ascii_case(b"encoding") {
            encoding = Some(value);
        }
    }
    let specificity = match (kind, subtype) {
        (b"*", b"*") => 0,
        (_, b"*") => 1,
        _ if parameters => 3,
        _ => 2,
    };
    let format = if kind.eq_ignore_ascii_case(b"application")
        && subtype.eq_ignore_ascii_case(b"vnd.google.protobuf")
        && proto == Some(b"io.prometheus.client.MetricFamily")
        && encoding == Some(b"delimited")
    {
        Some(OutputFormat::Protobuf)
    } else if kind.eq_ignore_ascii_case(b"text")
        && subtype.eq_ignore_ascii_case(b"plain")
        && version.map_or(true, |v| v == b"0.0.4")
    {
        Some(OutputFormat::Text)
    } else {
        None
    };
    Some(Range {
        format,
        quality,
        specificity,
        position,
    })
}

/// `q` as thousandths (RFC 9110 §12.4.2: `0[.ddd]` or `1[.000]`).
fn parse_quality(value: &[u8]) -> Option<u16> {
    let (integer, fraction) = match value.iter().position(|&c| c == b'.') {
        Some(dot) => (&value[..dot], &value[dot + 1..]),
        None => (value, &b""[..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + fraction.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match integer {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// How a container's body with this `Content-Type` is read.
pub fn body_format(content_type: Option<&[u8]>) -> BodyFormat {
    let Some(content_type) = content_type else {
        return BodyFormat::Text;
    };
    let mut parts = content_type.split(|&c| c == b';');
    let media = parts.next().unwrap_or_default().trim_ascii();
    if !media.eq_ignore_ascii_case(b"application/vnd.google.protobuf") {
        return BodyFormat::Text;
    }
    let mut proto: Option<&[u8]> = None;
    let mut encoding: Option<&[u8]> = None;
    for parameter in parts {
        let Some(equals) = parameter.iter().position(|&c| c == b'=') else {
            continue;
        };
        let name = parameter[..equals].trim_ascii();
        let value = parameter[equals + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"proto") {
            proto = Some(value);
        } else if name.eq_ignore_ascii_case(b"encoding") {
            encoding = Some(value);
        }
    }
    if proto == Some(b"io.prometheus.client.MetricFamily") && encoding == Some(b"delimited") {
        BodyFormat::Protobuf
    } else {
        BodyFormat::Unsupported
    }
}

/// Remembers when a client last wanted protobuf; handed `now`, no clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProtobufDemand {
    last_request: Option<Instant>,
}

impl ProtobufDemand {
    /// Notes one request for the metrics and the format it was answered in.
    pub fn note(&mut self, now: Instant, format: OutputFormat) {
        if format == OutputFormat::Protobuf {
            self.last_request = Some(now);
        }
    }

    /// Whether containers should be asked for protobuf now.
    pub fn wants_protobuf(&self, now: Instant) -> bool {
        self.last_request
            .is_some_and(|at| now.saturating_duration_since(at) < PROTOBUF_DEMAND_WINDOW)
    }

    /// The upstream `Accept` header value for a scrape starting now.
    pub fn upstream_accept(&self, now: Instant) -> &'static str {
        if self.wants_protobuf(now) {
            ACCEPT_PROTOBUF
        } else {
            ACCEPT_TEXT
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_accept_headers() {
        use OutputFormat::{Protobuf, Text};
        let table: &[(Option<&str>, OutputFormat)] = &[
            (None, Text),
            (Some(""), Text),
            (Some("*/*"), Text),
            // Prometheus 2.42 with native histograms enabled.
            (Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"), Protobuf),
            // Prometheus 2.42 without.
            (Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"), Text),
            // Prometheus 3 without native histograms: text 0.0.4 is the
            // first range we write (1.0.0 is not ours).
            (Some("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"), Text),
            // Prometheus 3 with native histograms (escaping is ignored: our
            // names are legacy names).
            (Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;escaping=underscores;q=0.7,text/plain;version=0.0.4;q=0.3"), Protobuf),
            // What curl users and client_golang's own docs write.
            (Some("application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"), Protobuf),
            // Preference by q, not by position.
            (Some("text/plain;version=0.0.4;q=0.5,application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.9"), Protobuf),
            (Some("text/plain;q=0.9,application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5"), Text),
            // q=0 refuses; other protobuf encodings and messages are not ours.
            (Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0"), Text),
            (Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text"), Text),
            (Some("application/vnd.google.protobuf;proto=other.Message;encoding=delimited"), Text),
            (Some("text/plain;version=1.0.0,application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.1"), Protobuf),
            // Garbage never panics.
            (Some(";;;,,=/;q=2,application/vnd.google.protobuf;q=abc"), Text),
        ];
        for (accept, expected) in table {
            assert_eq!(
                client_format(accept.map(str::as_bytes)),
                *expected,
                "{accept:?}"
            );
        }
    }

    #[test]
    fn container_content_types() {
        let table: &[(Option<&str>, BodyFormat)] = &[
            (None, BodyFormat::Text),
            (Some("text/plain; version=0.0.4; charset=utf-8"), BodyFormat::Text),
            (Some("application/openmetrics-text; version=1.0.0; charset=utf-8"), BodyFormat::Text),
            (Some("application/json"), BodyFormat::Text),
            (Some(PROTOBUF_CONTENT_TYPE), BodyFormat::Protobuf),
            (
                Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"),
                BodyFormat::Protobuf,
            ),
            (
                Some("application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=text"),
                BodyFormat::Unsupported,
            ),
        ];
        for (content_type, expected) in table {
            assert_eq!(
                body_format(content_type.map(str::as_bytes)),
                *expected,
                "{content_type:?}"
            );
        }
    }

    #[test]
    fn protobuf_is_asked_for_only_while_a_client_wants_it() {
        let start = Instant::now();
        let mut demand = ProtobufDemand::default();
        assert_eq!(demand.upstream_accept(start), ACCEPT_TEXT);
        demand.note(start, OutputFormat::Text);
        assert!(!demand.wants_protobuf(start));
        demand.note(start, OutputFormat::Protobuf);
        assert_eq!(demand.upstream_accept(start), ACCEPT_PROTOBUF);
        let later = start + PROTOBUF_DEMAND_WINDOW - Duration::from_millis(1);
        demand.note(later, OutputFormat::Text);
        assert!(demand.wants_protobuf(later));
        assert!(!demand.wants_protobuf(start + PROTOBUF_DEMAND_WINDOW));
    }

    /// The headers the sidecar sends read back as what they ask for.
    #[test]
    fn upstream_accept_headers_say_what_they_mean() {
        assert_eq!(
            client_format(Some(ACCEPT_PROTOBUF.as_bytes())),
            OutputFormat::Protobuf
        );
        assert_eq!(
            client_format(Some(ACCEPT_TEXT.as_bytes())),
            OutputFormat::Text
        );
    }
}
