//! Which exposition format each side speaks, decided from HTTP headers, and
//! what to ask containers for.
//!
//! - A client's `Accept` fields pick the output ([`MediaType`]: text 0.0.4,
//!   OpenMetrics 1.0.0 or 0.0.1, delimited protobuf) and the name escaping
//!   ([`Escaping`]) exactly as prometheus/common main's
//!   `expfmt.NegotiateAccept(h, OFFERED...)` does: see [`Accept`] for the
//!   rules, which include goautoneg's odd ones. The response's
//!   `Content-Type` is expfmt's, with `; escaping=<scheme>`
//!   ([`Negotiated::content_type`]).
//! - A container's `Content-Type` says how its body is read: delimited
//!   protobuf, or text (0.0.4 and OpenMetrics alike, the text parser tells
//!   them apart); a missing or unknown type is read as text, as Prometheus
//!   does. Other protobuf encodings (`text`, `compact-text`) are refused.
//! - Containers are asked for what the clients of the last
//!   [`DEMAND_WINDOW`] want ([`Demand`], [`Richness`]): text when nobody
//!   wants more (a text-only Prometheus costs nothing extra), OpenMetrics
//!   with UTF-8 names while a client wants OpenMetrics or names other than
//!   underscore-escaped ones, protobuf first while one wants protobuf.

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
    /// Prometheus text (0.0.4, or 1.0.0 with quoted UTF-8 names).
    Text,
    /// `application/openmetrics-text`: OpenMetrics 1.0 rules.
    OpenMetrics,
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

/// The upstream `Accept` when nobody wants more than text.
pub const ACCEPT_TEXT: &str =
    "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1";
/// The upstream `Accept` while a client wants protobuf and nothing of
/// OpenMetrics: text 0.0.4 and OpenMetrics remain, for containers that do
/// not speak protobuf.
pub const ACCEPT_PROTOBUF: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=1,text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,*/*;q=0.1";
/// The upstream `Accept` while a client wants OpenMetrics or UTF-8 names:
/// Prometheus 3's own, so a container answers the sidecar as it answers a
/// Prometheus 3 scraping it directly (what the sidecar must equal):
/// OpenMetrics 1.0.0 with UTF-8 names first, OpenMetrics 0.0.1 for older
/// client libraries (prometheus/common before 0.50 knows only that
/// version, and its body carries exemplars too), text 1.0.0 (quoted UTF-8
/// names) and 0.0.4 last.
pub const ACCEPT_OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
/// The upstream `Accept` while clients want protobuf and OpenMetrics:
/// Prometheus 3's protobuf-first header. Its protobuf range names no
/// escaping, so a container's protobuf has underscore-escaped names (as a
/// Prometheus 3 scraping it directly gets them; the protobuf reader takes
/// legacy names only); containers that do not speak protobuf answer
/// OpenMetrics with UTF-8 names.
pub const ACCEPT_PROTOBUF_OPENMETRICS: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";

/// How long one request keeps containers asked for what it wanted: longer
/// than any sane scrape interval (Prometheus' default is 1 minute), short
/// enough that a scraper that went away stops costing.
pub const DEMAND_WINDOW: Duration = Duration::from_secs(300);

/// What a scrape asks a container for, or what a client needs of the
/// containers' bodies, beyond text 0.0.4. Not a chain but a set: a scrape's
/// ask *covers* a client's need when it has every part of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Richness {
    /// Protobuf first (native histograms).
    pub protobuf: bool,
    /// OpenMetrics with UTF-8 names (exemplars, created timestamps, units,
    /// names as written).
    pub openmetrics: bool,
}

impl Richness {
    pub const TEXT: Richness = Richness {
        protobuf: false,
        openmetrics: false,
    };

    /// What a client answered `negotiated` needs of the containers:
    /// protobuf for a protobuf answer; OpenMetrics for an OpenMetrics
    /// answer, or for any escaping but `underscores` (it must see the
    /// names as the containers write them).
    pub fn of(negotiated: Negotiated) -> Richness {
        Richness {
            protobuf: negotiated.media_type == MediaType::Protobuf,
            openmetrics: negotiated.media_type.format() == OutputFormat::OpenMetrics
                || negotiated.escaping != Escaping::Underscores,
        }
    }

    /// Whether a scrape that asked `self` gives what `need` needs.
    pub fn covers(self, need: Richness) -> bool {
        (self.protobuf || !need.protobuf) && (self.openmetrics || !need.openmetrics)
    }

    pub fn union(self, other: Richness) -> Richness {
        Richness {
            protobuf: self.protobuf || other.protobuf,
            openmetrics: self.openmetrics || other.openmetrics,
        }
    }

    /// The upstream `Accept` that asks for this.
    pub fn accept(self) -> &'static str {
        match (self.protobuf, self.openmetrics) {
            (false, false) => ACCEPT_TEXT,
            (true, false) => ACCEPT_PROTOBUF,
            (false, true) => ACCEPT_OPENMETRICS,
            (true, true) => ACCEPT_PROTOBUF_OPENMETRICS,
        }
    }
}

/// One offered output of [`OFFERED`]: what the body is and the media type
/// its `Content-Type` names (the two OpenMetrics versions are one body).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MediaType {
    /// `text/plain; version=0.0.4`.
    Text,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics1,
    /// `application/openmetrics-text; version=0.0.1`.
    OpenMetrics0,
    /// Delimited `io.prometheus.client.MetricFamily` messages.
    Protobuf,
}

impl MediaType {
    pub fn format(self) -> OutputFormat {
        match self {
            MediaType::Text => OutputFormat::Text,
            MediaType::OpenMetrics1 | MediaType::OpenMetrics0 => OutputFormat::OpenMetrics,
            MediaType::Protobuf => OutputFormat::Protobuf,
        }
    }
}

/// What the server offers, in `NegotiateAccept`'s order of preference: it
/// decides what `*/*` gets (the first, so curl and browsers get text) and,
/// with no match, the fallback (the first text one).
pub const OFFERED: [MediaType; 4] = [
    MediaType::Text,
    MediaType::OpenMetrics1,
    MediaType::OpenMetrics0,
    MediaType::Protobuf,
];

/// The outcome of negotiation for one request: the media type (and so the
/// format and, for OpenMetrics, the version named) and the escaping scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Negotiated {
    pub media_type: MediaType,
    pub escaping: Escaping,
}

impl Default for Negotiated {
    /// What a request without `Accept` gets.
    fn default() -> Negotiated {
        Negotiated {
            media_type: MediaType::Text,
            escaping: Escaping::Underscores,
        }
    }
}

macro_rules! content_types {
    ($media:expr) => {
        [
            concat!($media, "; escaping=allow-utf-8"),
            concat!($media, "; escaping=underscores"),
            concat!($media, "; escaping=dots"),
            concat!($media, "; escaping=values"),
        ]
    };
}

/// Every response `Content-Type`: expfmt's format string plus
/// `; escaping=<scheme>`, as `NegotiateAccept` returns it.
const CONTENT_TYPES: [[&str; 4]; 4] = [
    content_types!("text/plain; version=0.0.4; charset=utf-8"),
    content_types!("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    content_types!("application/openmetrics-text; version=0.0.1; charset=utf-8"),
    content_types!(
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
    ),
];

impl Negotiated {
    /// The kind of output written for this client.
    pub fn kind(self) -> OutputKind {
        OutputKind {
            format: self.media_type.format(),
            escaping: self.escaping,
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        let escaping = match self.escaping {
            Escaping::AllowUtf8 => 0,
            Escaping::Underscores => 1,
            Escaping::Dots => 2,
            Escaping::Values => 3,
        };
        CONTENT_TYPES[self.media_type as usize][escaping]
    }
}

/// Clauses of the `Accept` fields kept for the choice. goautoneg sorts them
/// with Go's `sort.Sort`, which for up to 12 elements is an insertion sort
/// and above that a pattern-defeating quicksort; because goautoneg's `Less`
/// is not a strict weak order, which of the two runs changes the answer. The
/// input is untrusted, so it gets a budget anyway: the first 12 clauses are
/// kept (Prometheus sends at most 6), sorted exactly as Go sorts them, and
/// the rest are ignored.
pub const MAX_ACCEPT_CLAUSES: usize = 12;

/// One clause of an `Accept` header as goautoneg's `ParseAccept` reads it:
/// type and subtype as written (case-sensitive), `q`, and the parameters
/// the choice looks at (Go keeps all in a map: the last of a name wins;
/// absent and empty are the same).
#[derive(Clone, Copy, Debug)]
struct Clause<'a> {
    kind: &'a [u8],
    subtype: &'a [u8],
    q: f64,
    version: &'a [u8],
    escaping: &'a [u8],
    proto: &'a [u8],
    encoding: &'a [u8],
}

const NO_CLAUSE: Clause<'static> = Clause {
    kind: b"",
    subtype: b"",
    q: 1.0,
    version: b"",
    escaping: b"",
    proto: b"",
    encoding: b"",
};

/// A request's `Accept` fields, read into at most [`MAX_ACCEPT_CLAUSES`]
/// clauses with no allocation, then negotiated as prometheus/common's
/// `expfmt.NegotiateAccept(h, OFFERED...)` does:
///
/// 1. Each field is split as goautoneg's `ParseAccept` splits a header: at
///    `,` into clauses, at `;` into parameters, at `=` into name and value;
///    only spaces are trimmed (not tabs), values are not unquoted; a clause
///    without `/` (other than `*`), with two `/`, is skipped, as is a
///    parameter without `=` or with two. Several `Accept` fields are one
///    list (RFC 9110 §5.3), as if joined by commas. (expfmt itself reads
///    only the first field: Go's `Header.Get`.)
/// 2. `q` is Go's `strconv.ParseFloat(value, 32)` of the untrimmed value: a
///    bad `q` is 0, an overflowing one infinite, and `q=0` is not excluded.
/// 3. Clauses are sorted by goautoneg's `Less` (higher q first; else a
///    concrete type before `*`; else a concrete subtype before `*`) with
///    Go's insertion sort.
/// 4. In that order, a clause's `escaping=` (one of the four names, exact)
///    replaces the scheme so far; then the first offered media type the
///    clause matches is the answer (expfmt's `matchFormat`: `*/*` matches
///    the first offered, otherwise type and subtype must be equal or `*`,
///    and every parameter of the offered type but `charset` must be equal
///    in the clause, `version` defaulting to 0.0.4 for `text/plain` and to
///    0.0.1 for `application/openmetrics-text`).
/// 5. With no match, text with the scheme found; `underscores` when none.
#[derive(Clone, Copy, Debug)]
pub struct Accept<'a> {
    clauses: [Clause<'a>; MAX_ACCEPT_CLAUSES],
    count: usize,
}

impl Default for Accept<'_> {
    fn default() -> Self {
        Accept {
            clauses: [NO_CLAUSE; MAX_ACCEPT_CLAUSES],
            count: 0,
        }
    }
}

/// Go's `nextSplitElement`: before and after the first `separator`; the
/// whole and nothing without one.
fn split_first(s: &[u8], separator: u8) -> (&[u8], &[u8]) {
    match s.iter().position(|&c| c == separator) {
        Some(at) => (&s[..at], &s[at + 1..]),
        None => (s, b""),
    }
}

/// `strings.TrimFunc(s, r == ' ')`.
fn trim_spaces(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&c| c != b' ').unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&c| c != b' ')
        .map_or(start, |at| at + 1);
    &s[start..end]
}

impl<'a> Accept<'a> {
    /// Reads one `Accept` field's clauses (rule 1); those past the budget
    /// are ignored.
    pub fn add_field(&mut self, value: &'a [u8]) {
        let mut remaining = value;
        while !remaining.is_empty() && self.count < MAX_ACCEPT_CLAUSES {
            let part;
            (part, remaining) = split_first(remaining, b',');
            if let Some(clause) = parse_clause(trim_spaces(part)) {
                self.clauses[self.count] = clause;
                self.count += 1;
            }
        }
    }

    /// The answer (rules 3 to 5).
    pub fn negotiate(mut self) -> Negotiated {
        let clauses = &mut self.clauses[..self.count];
        // Go's insertionSort(data, 0, n) with goautoneg's Less(j, j-1).
        for i in 1..clauses.len() {
            let mut j = i;
            while j > 0 && less(&clauses[j], &clauses[j - 1]) {
                clauses.swap(j, j - 1);
                j -= 1;
            }
        }
        let mut escaping = Escaping::Underscores;
        for clause in clauses.iter() {
            if let Some(scheme) = Escaping::from_param(clause.escaping) {
                escaping = scheme;
            }
            if let Some(&media_type) = OFFERED.iter().find(|&&m| matches(clause, m)) {
                return Negotiated {
                    media_type,
                    escaping,
                };
            }
        }
        Negotiated {
            media_type: MediaType::Text,
            escaping,
        }
    }
}

/// The answer to a request with these `Accept` field values (none: text).
pub fn negotiate(fields: &[&[u8]]) -> Negotiated {
    let mut accept = Accept::default();
    for field in fields {
        accept.add_field(field);
    }
    accept.negotiate()
}

fn parse_clause(part: &[u8]) -> Option<Clause<'_>> {
    let mut clause = NO_CLAUSE;
    let (range, mut parameters) = split_first(part, b';');
    let (kind, rest) = split_first(range, b'/');
    clause.kind = trim_spaces(kind);
    if rest.is_empty() {
        if clause.kind != b"*" {
            return None;
        }
        clause.subtype = b"*";
    } else {
        let (subtype, rest) = split_first(rest, b'/');
        if !rest.is_empty() {
            return None;
        }
        clause.subtype = trim_spaces(subtype);
    }
    while !parameters.is_empty() {
        let parameter;
        (parameter, parameters) = split_first(parameters, b';');
        let (name, rest) = split_first(parameter, b'=');
        if rest.is_empty() {
            continue;
        }
        let (value, rest) = split_first(rest, b'=');
        if !rest.is_empty() {
            continue;
        }
        match trim_spaces(name) {
            b"q" => clause.q = go_parse_float32(value),
            b"version" => clause.version = trim_spaces(value),
            b"escaping" => clause.escaping = trim_spaces(value),
            b"proto" => clause.proto = trim_spaces(value),
            b"encoding" => clause.encoding = trim_spaces(value),
            _ => {}
        }
    }
    Some(clause)
}

/// goautoneg's `acceptSlice.Less` (not a strict weak order: `text/*;q=0.5`
/// and `*/*;q=0.9` are each less than the other).
fn less(a: &Clause<'_>, b: &Clause<'_>) -> bool {
    a.q > b.q || (a.kind != b"*" && b.kind == b"*") || (a.subtype != b"*" && b.subtype == b"*")
}

/// expfmt's `matchFormat(clause, media_type)`.
fn matches(clause: &Clause<'_>, media_type: MediaType) -> bool {
    let (kind, subtype): (&[u8], &[u8]) = match media_type {
        MediaType::Text => (b"text", b"plain"),
        MediaType::OpenMetrics1 | MediaType::OpenMetrics0 => (b"application", b"openmetrics-text"),
        MediaType::Protobuf => (b"application", b"vnd.google.protobuf"),
    };
    if clause.kind != b"*" && clause.kind != kind {
        return false;
    }
    if clause.subtype != b"*" && clause.subtype != subtype {
        return false;
    }
    if clause.kind == b"*" && clause.subtype == b"*" {
        return true;
    }
    let mut version = clause.version;
    if version.is_empty() && clause.kind == b"application" && clause.subtype == b"openmetrics-text"
    {
        version = b"0.0.1";
    }
    if version.is_empty() && clause.kind == b"text" && clause.subtype == b"plain" {
        version = b"0.0.4";
    }
    // The offered type's parameters, `charset` left out.
    match media_type {
        MediaType::Text => version == b"0.0.4",
        MediaType::OpenMetrics1 => version == b"1.0.0",
        MediaType::OpenMetrics0 => version == b"0.0.1",
        MediaType::Protobuf => {
            clause.proto == b"io.prometheus.client.MetricFamily" && clause.encoding == b"delimited"
        }
    }
}

/// Go's `strconv.ParseFloat(s, 32)` as goautoneg uses it (error ignored):
/// the value rounded to float32, 0 for a syntax error, ±infinity past
/// float32's range. Decimal forms (with Go's digit-separating underscores),
/// `inf`/`infinity` with a sign and `nan` without, any case, the whole
/// string. Go's hexadecimal floats (`0x1p-1`) are read as a syntax error,
/// 0: no HTTP client writes them.
fn go_parse_float32(s: &[u8]) -> f64 {
    let unsigned = s.strip_prefix(b"+").or_else(|| s.strip_prefix(b"-"));
    let word = unsigned.unwrap_or(s);
    if word.eq_ignore_ascii_case(b"inf") || word.eq_ignore_ascii_case(b"infinity") {
        return if s[0] == b'-' {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
    }
    if s.eq_ignore_ascii_case(b"nan") {
        return f64::NAN;
    }
    if !go_decimal_syntax(word) {
        return 0.0;
    }
    let parse = |text: &[u8]| {
        std::str::from_utf8(text)
            .ok()
            .and_then(|text| text.parse::<f32>().ok())
            .map_or(0.0, f64::from)
    };
    if !s.contains(&b'_') {
        return parse(s);
    }
    // Underscores removed into a small buffer; longer ones are refused.
    let mut buffer = [0u8; 64];
    let mut length = 0;
    for &c in s.iter().filter(|&&c| c != b'_') {
        if length == buffer.len() {
            return 0.0;
        }
        buffer[length] = c;
        length += 1;
    }
    parse(&buffer[..length])
}

/// Go's decimal float syntax after the sign: digits with at most one `.`
/// and at least one digit, then optionally `e`/`E`, a sign and digits;
/// underscores only between digits (`underscoreOK`).
fn go_decimal_syntax(s: &[u8]) -> bool {
    let mut i = 0;
    let mut digits = false;
    let mut dot = false;
    while i < s.len() {
        match s[i] {
            b'0'..=b'9' => digits = true,
            b'_' => {}
            b'.' if !dot => dot = true,
            _ => break,
        }
        i += 1;
    }
    if !digits || (i < s.len() && s[i] == b'.') {
        return false;
    }
    if i < s.len() && (s[i] == b'e' || s[i] == b'E') {
        i += 1;
        if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
            i += 1;
        }
        if i >= s.len() || !s[i].is_ascii_digit() {
            return false;
        }
        while i < s.len() && (s[i].is_ascii_digit() || s[i] == b'_') {
            i += 1;
        }
    }
    if i != s.len() {
        return false;
    }
    // underscoreOK: each `_` between two digits.
    !s.contains(&b'_')
        || s.windows(2).all(|w| {
            (w[0] != b'_' || w[1].is_ascii_digit()) && (w[1] != b'_' || w[0].is_ascii_digit())
        }) && s.last() != Some(&b'_')
            && s.first() != Some(&b'_')
}

/// How a container's body with this `Content-Type` is read, as
/// Prometheus' `textparse.New` picks its parser by media type (case
/// insensitive, parameters aside): `application/openmetrics-text` by the
/// OpenMetrics rules, delimited protobuf as such, anything else by the text
/// rules. Prometheus main refuses a missing or unknown `Content-Type` unless
/// the scrape config names a `fallback_scrape_protocol`; 2.x reads it as
/// text, and so does the sidecar (the fallback a pod's operator would set:
/// its own answers always carry a `Content-Type`).
pub fn body_format(content_type: Option<&[u8]>) -> BodyFormat {
    let Some(content_type) = content_type else {
        return BodyFormat::Text;
    };
    let mut parts = content_type.split(|&c| c == b';');
    let media = parts.next().unwrap_or_default().trim_ascii();
    if media.eq_ignore_ascii_case(b"application/openmetrics-text") {
        return BodyFormat::OpenMetrics;
    }
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

/// Whether a text body's `Content-Type` says it may carry UTF-8 names:
/// `escaping=allow-utf-8`, or `version=1.0.0` naming no other escaping
/// (prometheus/common writes text 1.0.0 for clients that allow them).
pub fn text_allows_utf8_names(content_type: Option<&[u8]>) -> bool {
    let Some(content_type) = content_type else {
        return false;
    };
    let mut parts = content_type.split(|&c| c == b';');
    let media = parts.next().unwrap_or_default().trim_ascii();
    if !media.eq_ignore_ascii_case(b"text/plain") {
        return false;
    }
    let mut version_1 = false;
    let mut escaping: Option<&[u8]> = None;
    for parameter in parts {
        let Some(equals) = parameter.iter().position(|&c| c == b'=') else {
            continue;
        };
        let name = parameter[..equals].trim_ascii();
        let value = parameter[equals + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"version") {
            version_1 = value == b"1.0.0";
        } else if name.eq_ignore_ascii_case(b"escaping") {
            escaping = Some(value);
        }
    }
    match escaping {
        Some(scheme) => scheme == b"allow-utf-8",
        None => version_1,
    }
}

/// Remembers when a client last needed each part of [`Richness`]; handed
/// `now`, no clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct Demand {
    protobuf: Option<Instant>,
    openmetrics: Option<Instant>,
}

impl Demand {
    /// Notes one request for the metrics and what it needs.
    pub fn note(&mut self, now: Instant, need: Richness) {
        if need.protobuf {
            self.protobuf = Some(now);
        }
        if need.openmetrics {
            self.openmetrics = Some(now);
        }
    }

    /// What containers are asked for now: each part a client needed within
    /// [`DEMAND_WINDOW`].
    pub fn asked(&self, now: Instant) -> Richness {
        let recent = |at: Option<Instant>| {
            at.is_some_and(|at| now.saturating_duration_since(at) < DEMAND_WINDOW)
        };
        Richness {
            protobuf: recent(self.protobuf),
            openmetrics: recent(self.openmetrics),
        }
    }

    /// The upstream `Accept` header value for a scrape starting now.
    pub fn upstream_accept(&self, now: Instant) -> &'static str {
        self.asked(now).accept()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real clients' `Accept` headers, expfmt's own test vectors (main's
    /// `encode_test.go`, our offered list, default `underscores`) and
    /// malformed ones: (fields, media type, escaping).
    #[test]
    fn client_accept_headers() {
        use Escaping::{AllowUtf8, Underscores, Values};
        use MediaType::{OpenMetrics0, OpenMetrics1, Protobuf, Text};
        let table: &[(&[&str], MediaType, Escaping)] = &[
            (&[], Text, Underscores),
            (&[""], Text, Underscores),
            // curl, and browsers (Firefox, Chrome): */* is the first offered.
            (&["*/*"], Text, Underscores),
            (&["text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"], Text, Underscores),
            (&["text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"], Text, Underscores),
            // Prometheus 2.42, without and with native histograms.
            (&["application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"], OpenMetrics1, Underscores),
            (&["application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"], Protobuf, Underscores),
            // Prometheus 2.53.
            (&["application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"], OpenMetrics1, Underscores),
            // Prometheus 3.x, and proto-first (escaping only on the
            // version 1.0.0 text entries, which come after protobuf).
            (&["application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"], OpenMetrics1, AllowUtf8),
            (&["application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"], Protobuf, Underscores),
            // Prometheus 3.0 to 3.3: escaping on every entry.
            (&["application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;escaping=allow-utf-8;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;escaping=allow-utf-8;q=0.3,*/*;escaping=allow-utf-8;q=0.2"], OpenMetrics1, AllowUtf8),
            (&["application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=0.0.4;escaping=allow-utf-8;q=0.2,*/*;escaping=allow-utf-8;q=0.1"], Protobuf, AllowUtf8),
            // Prometheus 3 scraping with only text 1.0.0 and 0.0.4: the
            // 1.0.0 clause does not match but its escaping is taken.
            (&["text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=0.0.4;q=0.4"], Text, AllowUtf8),
            // The case: text first at q=1, protobuf after: text.
            (&["text/plain, application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;encoding=delimited"], Text, Underscores),
            // Two fields are one list (RFC 9110 §5.3): protobuf then text.
            (&["application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited", "text/plain"], Protobuf, Underscores),
            (&["text/plain;q=0.1", "application/openmetrics-text"], OpenMetrics0, Underscores),
            // encode_test.go TestNegotiate / TestNegotiateIncludingOpenMetrics.
            (&["application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"], Protobuf, Underscores),
            (&["application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text"], Text, Underscores),
            (&["application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=compact-text; escaping=allow-utf-8;"], Text, AllowUtf8),
            (&["text/plain;version=0.0.4"], Text, Underscores),
            (&["application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited; escaping=allow-utf-8;"], Protobuf, AllowUtf8),
            (&["text/plain;version=0.0.4;"], Text, Underscores),
            (&["text/plain;version=0.0.4; escaping=values;"], Text, Values),
            (&["application/openmetrics-text"], OpenMetrics0, Underscores),
            (&["application/openmetrics-text;version=0.0.1; escaping=underscores"], OpenMetrics0, Underscores),
            (&["application/openmetrics-text;version=1.0.0"], OpenMetrics1, Underscores),
            (&["application/openmetrics-text;version=2.0.0"], Text, Underscores),
            (&["application/openmetrics-text;version=1.0.0; escaping=values;"], OpenMetrics1, Values),
            (&["application/openmetrics-text;version=0.0.4"], Text, Underscores),
            (&["text/plain;version=0.0.4; escaping=allow-utf-8"], Text, AllowUtf8),
            (&["application/openmetrics-text;version=1.0.0;q=0.8, application/openmetrics-text;version=2.0.0;q=0.9"], OpenMetrics1, Underscores),
            (&["text/plain"], Text, Underscores),
            (&["application/unknown"], Text, Underscores),
            // Escaping is taken from clauses up to the match, in sorted
            // order; unknown schemes and names in another case are ignored.
            (&["text/plain;escaping=values;q=0.5,application/openmetrics-text;escaping=dots;q=0.9"], OpenMetrics0, Escaping::Dots),
            (&["application/unknown;escaping=values,text/plain;escaping=bogus"], Text, Values),
            (&["text/plain;escaping=Values"], Text, Underscores),
            (&["text/plain;Escaping=values"], Text, Underscores),
            // q: 0 is not excluded; bad q is 0; q is read untrimmed.
            (&["application/openmetrics-text;version=1.0.0;q=0"], OpenMetrics1, Underscores),
            (&["application/openmetrics-text;q=0.5,text/plain;q= 0.9"], OpenMetrics0, Underscores),
            (&["application/openmetrics-text;q=0.5,text/plain;q=abc"], OpenMetrics0, Underscores),
            (&["application/openmetrics-text;q=0.5,text/plain;q=1_0"], Text, Underscores),
            (&["application/openmetrics-text;q=0.5,text/plain;q=Inf"], Text, Underscores),
            (&["text/plain;q=0.5,application/openmetrics-text;q=NaN"], Text, Underscores),
            // `q=` (no value) is skipped, leaving q=1; `a=b=c` is skipped.
            (&["text/plain;q=0.5,application/openmetrics-text;q="], OpenMetrics0, Underscores),
            (&["text/plain;q=0.5,application/openmetrics-text;q=0.1=x"], OpenMetrics0, Underscores),
            // Names and parameter names are case-sensitive; values are not
            // unquoted; only spaces are trimmed.
            (&["Text/Plain;q=0.9,application/openmetrics-text;q=0.5"], OpenMetrics0, Underscores),
            (&["text/plain;version=\"0.0.4\";q=0.9,application/openmetrics-text;q=0.5"], OpenMetrics0, Underscores),
            (&["application/openmetrics-text;q=0.5,\ttext/plain;q=0.9"], OpenMetrics0, Underscores),
            (&["  text/plain ; version=0.0.4 ; q=0.9 ,application/openmetrics-text;q=0.5"], Text, Underscores),
            // Wildcard subtypes never match an offered type with a version
            // or a proto parameter; `*` alone is `*/*`.
            (&["text/*"], Text, Underscores),
            (&["application/*;q=0.9,text/plain;q=0.1"], Text, Underscores),
            // (`*` is `*/*`, which sorts after a concrete type whatever
            // the q: see below.)
            (&["*;q=0.9,application/openmetrics-text;q=0.5"], OpenMetrics0, Underscores),
            (&["*;q=0.9"], Text, Underscores),
            (&["application/*;version=1.0.0"], OpenMetrics1, Underscores),
            // Go's Less is not an order: `*/*;q=0.9` and
            // `application/openmetrics-text;q=0.5` are each less than the
            // other, so insertion sort swaps whichever comes first.
            (&["*/*;q=0.9,application/openmetrics-text;q=0.5"], OpenMetrics0, Underscores),
            (&["application/openmetrics-text;q=0.5,*/*;q=0.9"], Text, Underscores),
            // Garbage never panics.
            (&[";;;,,=/;q=2,application/vnd.google.protobuf;q=abc"], Text, Underscores),
            (&["/,//,a//b,/a,a/,*/,=,;=;,\u{ff}/\u{ff}"], Text, Underscores),
        ];
        for (fields, media_type, escaping) in table {
            let fields: Vec<&[u8]> = fields.iter().map(|f| f.as_bytes()).collect();
            let negotiated = negotiate(&fields);
            assert_eq!(
                (negotiated.media_type, negotiated.escaping),
                (*media_type, *escaping),
                "{:?}",
                fields
                    .iter()
                    .map(|f| String::from_utf8_lossy(f))
                    .collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn more_clauses_than_the_budget_are_ignored() {
        let mut header = "x/y,".repeat(MAX_ACCEPT_CLAUSES);
        header.push_str("application/openmetrics-text");
        assert_eq!(negotiate(&[header.as_bytes()]).media_type, MediaType::Text);
        let negotiated = negotiate(&[
            "x/y,".repeat(MAX_ACCEPT_CLAUSES - 1).as_bytes(),
            b"application/openmetrics-text",
        ]);
        assert_eq!(negotiated.media_type, MediaType::OpenMetrics0);
    }

    #[test]
    fn content_types_are_expfmt_format_strings_with_escaping() {
        let table = [
            (MediaType::Text, Escaping::Underscores, "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"),
            (MediaType::OpenMetrics1, Escaping::AllowUtf8, "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8"),
            (MediaType::OpenMetrics0, Escaping::Dots, "application/openmetrics-text; version=0.0.1; charset=utf-8; escaping=dots"),
            (MediaType::Protobuf, Escaping::Values, "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited; escaping=values"),
        ];
        for (media_type, escaping, content_type) in table {
            let negotiated = Negotiated {
                media_type,
                escaping,
            };
            assert_eq!(negotiated.content_type(), content_type);
            // Read back, our Content-Type negotiates to itself.
            assert_eq!(negotiate(&[content_type.as_bytes()]), negotiated);
        }
    }

    #[test]
    fn go_parse_float32_values() {
        let table: &[(&str, f64)] = &[
            ("0.5", 0.5),
            ("0.3", f64::from(0.3f32)),
            ("1", 1.0),
            ("+.5", 0.5),
            ("5.", 5.0),
            ("1e-1", f64::from(0.1f32)),
            ("1_0.5", 10.5),
            ("1e1_0", 1e10),
            ("1e40", f64::INFINITY),
            ("-inf", f64::NEG_INFINITY),
            ("+Infinity", f64::INFINITY),
            ("1e-50", 0.0),
            ("", 0.0),
            (".", 0.0),
            ("_1", 0.0),
            ("1_", 0.0),
            ("1__0", 0.0),
            ("1_.5", 0.0),
            ("1e", 0.0),
            ("1.2.3", 0.0),
            (" 1", 0.0),
            ("1 ", 0.0),
            ("infinit", 0.0),
            ("+nan", 0.0),
            ("0x1p-1", 0.0),
            (
                "0.50000000000000000000000000000000000000000000000000000000000000000001",
                0.5,
            ),
        ];
        for &(text, expected) in table {
            assert_eq!(go_parse_float32(text.as_bytes()), expected, "{text:?}");
        }
        assert!(go_parse_float32(b"NaN").is_nan());
        assert!(go_parse_float32(b"nAn").is_nan());
    }

    #[test]
    fn container_content_types() {
        let table: &[(Option<&str>, BodyFormat)] = &[
            (None, BodyFormat::Text),
            (Some("text/plain; version=0.0.4; charset=utf-8"), BodyFormat::Text),
            (Some("application/openmetrics-text; version=1.0.0; charset=utf-8"), BodyFormat::OpenMetrics),
            (Some("Application/OpenMetrics-Text;version=0.0.1"), BodyFormat::OpenMetrics),
            (Some("application/openmetrics-textx"), BodyFormat::Text),
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
    fn text_content_types_that_allow_utf8_names() {
        let table: &[(Option<&str>, bool)] = &[
            (None, false),
            (Some("text/plain; version=0.0.4; charset=utf-8"), false),
            (
                Some("text/plain; version=0.0.4; charset=utf-8; escaping=underscores"),
                false,
            ),
            (
                Some("text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8"),
                true,
            ),
            (Some("text/plain; version=1.0.0; charset=utf-8"), true),
            (
                Some("text/plain; version=1.0.0; charset=utf-8; escaping=values"),
                false,
            ),
            (Some("Text/Plain;Version=1.0.0"), true),
            (Some("text/plain; escaping=allow-utf-8"), true),
            (
                Some("application/openmetrics-text; version=1.0.0; escaping=allow-utf-8"),
                false,
            ),
        ];
        for (content_type, expected) in table {
            assert_eq!(
                text_allows_utf8_names(content_type.map(str::as_bytes)),
                *expected,
                "{content_type:?}"
            );
        }
    }

    #[test]
    fn each_part_is_asked_for_only_while_a_client_wants_it() {
        let protobuf = Richness {
            protobuf: true,
            openmetrics: false,
        };
        let openmetrics = Richness {
            protobuf: false,
            openmetrics: true,
        };
        let start = Instant::now();
        let mut demand = Demand::default();
        assert_eq!(demand.upstream_accept(start), ACCEPT_TEXT);
        demand.note(start, Richness::TEXT);
        assert_eq!(demand.asked(start), Richness::TEXT);
        demand.note(start, protobuf);
        assert_eq!(demand.upstream_accept(start), ACCEPT_PROTOBUF);
        let later = start + Duration::from_secs(60);
        demand.note(later, openmetrics);
        assert_eq!(demand.upstream_accept(later), ACCEPT_PROTOBUF_OPENMETRICS);
        let last = start + DEMAND_WINDOW - Duration::from_millis(1);
        demand.note(last, Richness::TEXT);
        assert_eq!(demand.asked(last), protobuf.union(openmetrics));
        // The protobuf client went away; the OpenMetrics one's window goes on.
        assert_eq!(demand.asked(start + DEMAND_WINDOW), openmetrics);
        assert_eq!(
            demand.upstream_accept(start + DEMAND_WINDOW),
            ACCEPT_OPENMETRICS
        );
        assert_eq!(demand.upstream_accept(later + DEMAND_WINDOW), ACCEPT_TEXT);
    }

    /// What each real client needs of the containers: text-only clients
    /// (Prometheus 2.x scraping text, curl) need nothing.
    #[test]
    fn what_clients_need() {
        let table: &[(&str, bool, bool)] = &[
            ("", false, false),
            ("*/*", false, false),
            ("text/plain;version=0.0.4", false, false),
            ("text/plain;version=0.0.4;escaping=allow-utf-8", false, true),
            ("text/plain;version=0.0.4;escaping=values", false, true),
            ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", false, true),
            ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", true, false),
            (ACCEPT_OPENMETRICS, false, true),
            (ACCEPT_PROTOBUF_OPENMETRICS, true, false),
            ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;escaping=allow-utf-8", true, true),
        ];
        for &(accept, protobuf, openmetrics) in table {
            assert_eq!(
                Richness::of(negotiate(&[accept.as_bytes()])),
                Richness {
                    protobuf,
                    openmetrics
                },
                "{accept}"
            );
        }
        let all = Richness {
            protobuf: true,
            openmetrics: true,
        };
        for need in [
            Richness::TEXT,
            Richness::of(negotiate(&[ACCEPT_OPENMETRICS.as_bytes()])),
        ] {
            assert!(all.covers(need));
            assert!(need.covers(need));
            assert!(need.covers(Richness::TEXT));
        }
        assert!(!Richness::TEXT.covers(all));
        let protobuf = Richness {
            protobuf: true,
            openmetrics: false,
        };
        assert!(!protobuf.covers(Richness {
            protobuf: false,
            openmetrics: true
        }));
    }

    /// The headers the sidecar sends read back as what they ask for.
    #[test]
    fn upstream_accept_headers_say_what_they_mean() {
        use MediaType::{OpenMetrics1, Protobuf, Text};
        for (accept, media_type, escaping) in [
            (ACCEPT_TEXT, Text, Escaping::Underscores),
            (ACCEPT_PROTOBUF, Protobuf, Escaping::Underscores),
            (ACCEPT_OPENMETRICS, OpenMetrics1, Escaping::AllowUtf8),
            (ACCEPT_PROTOBUF_OPENMETRICS, Protobuf, Escaping::Underscores),
        ] {
            assert_eq!(
                negotiate(&[accept.as_bytes()]),
                Negotiated {
                    media_type,
                    escaping
                },
                "{accept}"
            );
        }
        // A container that does not speak protobuf answers the combined
        // header as the OpenMetrics one.
        let without_protobuf = ACCEPT_PROTOBUF_OPENMETRICS.split_once(',').unwrap().1;
        assert_eq!(
            negotiate(&[without_protobuf.as_bytes()]),
            negotiate(&[ACCEPT_OPENMETRICS.as_bytes()])
        );
    }
}
