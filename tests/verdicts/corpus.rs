//! The corpus of the differential test: valid and invalid bodies of both
//! text formats, each with the `Content-Type` it is served with and
//! Prometheus main's verdict on it (read from its parsers:
//! `model/textparse/promlex.l`, `promparse.go`, `openmetricslex.l`,
//! `openmetricsparse.go`, and `scrape/scrape.go`). Bodies are also seeds of
//! the `exposition_parse` fuzz target (fuzz/corpus/exposition_parse/verdict-*).

pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const TEXT_1: &str = "text/plain; version=1.0.0; charset=utf-8";
pub const OM: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How 2.42 and the sidecar stand to main's verdict.
#[derive(Clone, Copy, Debug)]
pub enum Rule {
    /// Prometheus 2.42, main and the sidecar agree.
    Agree,
    /// 2.42 decides the opposite of main; the sidecar follows main.
    MainDiffers {
        rule: &'static str,
        decided_by: &'static str,
    },
    /// Main and 2.42 accept the body, the sidecar refuses it: what it
    /// would write could not stay valid for 2.42, promtool or Python.
    SidecarDeviates(&'static str),
}

#[derive(Debug)]
pub struct Case {
    /// The container's name and the direct target's `case` label.
    pub id: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
    /// Prometheus main's verdict: up (accepted) or down.
    pub main_up: bool,
    pub rule: Rule,
}

const fn case(
    id: &'static str,
    content_type: &'static str,
    body: &'static str,
    main_up: bool,
) -> Case {
    Case {
        id,
        content_type,
        body,
        main_up,
        rule: Rule::Agree,
    }
}

const fn differs(
    id: &'static str,
    content_type: &'static str,
    body: &'static str,
    main_up: bool,
    rule: &'static str,
    decided_by: &'static str,
) -> Case {
    Case {
        id,
        content_type,
        body,
        main_up,
        rule: Rule::MainDiffers { rule, decided_by },
    }
}

const fn deviates(
    id: &'static str,
    content_type: &'static str,
    body: &'static str,
    why: &'static str,
) -> Case {
    Case {
        id,
        content_type,
        body,
        main_up: true,
        rule: Rule::SidecarDeviates(why),
    }
}

pub const CORPUS: &[Case] = &[
    // Prometheus text (promlex.l, promparse.go).
    case(
        "t-plain",
        TEXT,
        "# HELP a_total A counter.\n# TYPE a_total counter\na_total{x=\"1\"} 3\na_total{x=\"2\"} 4.5\n# TYPE g gauge\ng -1.5e3\n",
        true,
    ),
    case("t-blanks", TEXT, "  \n\t\na{ x = \"1\" , y=\"2\" , } 1   \n\nb 2\t\n", true),
    differs(
        "t-indented-sample",
        TEXT,
        "  b 2\n",
        true,
        "blanks before a sample's name are kept in the name, which 2.42 refuses as invalid and \
         main takes as a UTF-8 name (`  b`); the sidecar takes the sample as `b`",
        "model/textparse/promparse.go Next (p.start set before the blanks are skipped)",
    ),
    case("t-no-comma", TEXT, "a{x=\"1\" y=\"2\"} 1\n", true),
    case("t-value-glued", TEXT, "a+1\nb{x=\"y\"}2\n", true),
    case("t-unknown-escape", TEXT, "a{x=\"b\\\\a\\z\",y=\"\\t\"} 2\n", true),
    case("t-known-escapes", TEXT, "a{x=\"q\\\"n\\nb\\\\\"} 2\n", true),
    case("t-crlf", TEXT, "a 1\r\n", false),
    case("t-crlf-type", TEXT, "# TYPE a gauge\r\na 1\n", false),
    case("t-cr-in-help", TEXT, "# HELP a x\r\na 1\n", true),
    case("t-no-final-newline", TEXT, "a 1", true),
    case("t-comment-last", TEXT, "a 1\n# just a comment", true),
    case("t-help-last", TEXT, "a 1\n# HELP a x", true),
    case("t-ts-last", TEXT, "a 1 1000", true),
    case("t-negative-ts", TEXT, "a 1 -1\n", false),
    case("t-float-ts", TEXT, "a 1 1.5\n", false),
    case("t-ts-overflow", TEXT, "a 1 9223372036854775808\n", false),
    case("t-old-ts", TEXT, "a 1 1000\nb 2\n", true),
    case("t-exemplar", TEXT, "a 1 # {x=\"y\"} 1\n", false),
    case("t-type-unknown", TEXT, "# TYPE a unknown\na 1\n", false),
    case("t-type-space", TEXT, "# TYPE a counter \na 1\n", false),
    case("t-type-missing", TEXT, "# TYPE a\na 1\n", false),
    case("t-eof-is-comment", TEXT, "a 1\n# EOF\nb 2\n", true),
    case("t-unit-is-comment", TEXT, "# UNIT a seconds\na 1\n", true),
    case("t-comments", TEXT, "#HELP a b c\n# HELP\n#\n# foo bar\na 1\n", true),
    case("t-help-glued", TEXT, "# HELP a{ x\na 1\n", true),
    // The dropped byte after the name is the first of a character: the
    // text left is not UTF-8 (a fuzz finding).
    case("t-help-cut-char", TEXT, "# HELP a\u{73e} x\na 1\n", false),
    case("t-type-twice", TEXT, "# TYPE a gauge\n# TYPE a gauge\na 1\n", true),
    deviates(
        "t-type-twice-differs",
        TEXT,
        "# TYPE a gauge\n# TYPE a counter\na 1\n",
        "one family of two types: the writer keeps one TYPE per family",
    ),
    deviates(
        "t-type-after-samples",
        TEXT,
        "a 1\n# TYPE a counter\na{x=\"2\"} 2\n",
        "samples of one family under two types: the writer keeps one TYPE per family",
    ),
    case("t-hex-value", TEXT, "a 0x1p3\n", false),
    case("t-hex-no-p", TEXT, "a 0x10\n", false),
    case("t-underscore-value", TEXT, "a 1_000\n", false),
    case(
        "t-special-values",
        TEXT,
        "a{x=\"1\"} +Inf\na{x=\"2\"} -inf\na{x=\"3\"} NaN\na{x=\"4\"} Infinity\na{x=\"5\"} .5\na{x=\"6\"} 1.\na{x=\"7\"} 1E3\na{x=\"8\"} -0\n",
        true,
    ),
    case("t-signed-nan", TEXT, "a -NaN\n", false),
    case("t-out-of-range", TEXT, "a 1e999\n", false),
    case("t-empty-value", TEXT, "a\n", false),
    case("t-empty-label-value", TEXT, "a{x=\"\"} 1\n", true),
    case("t-empty-labels", TEXT, "a{} 1\n", true),
    case("t-lone-comma", TEXT, "a{,} 1\n", false),
    case("t-duplicate-label", TEXT, "a{x=\"1\",x=\"2\"} 1\n", false),
    case("t-bad-label-name", TEXT, "a{1x=\"1\"} 1\n", false),
    case("t-empty", TEXT, "", true),
    deviates(
        "t-reserved-label",
        TEXT,
        "a{__x=\"1\"} 1\n",
        "Python's parser refuses a label name starting with __",
    ),
    deviates(
        "t-le-not-a-number",
        TEXT,
        "# TYPE h histogram\nh_bucket{le=\"x\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "promtool refuses a histogram's le that is no number",
    ),
    deviates(
        "t-newline-in-value",
        TEXT,
        "a{x=\"1\n2\"} 1\n",
        "a raw newline in a quoted label value (the text lexer takes it) breaks the line-based index",
    ),
    differs(
        "t-quoted-names",
        TEXT_1,
        "# TYPE \"a.b\" counter\n{\"a.b\",x=\"1\"} 1\na{\"c.d\"=\"2\"} 2\n",
        true,
        "quoted UTF-8 metric and label names",
        "model/textparse/promlex.l:75,77 (`{` at a line's start, tQString)",
    ),
    // OpenMetrics (openmetricslex.l, openmetricsparse.go).
    case(
        "o-plain",
        OM,
        "# TYPE a counter\n# HELP a A counter.\na_total{x=\"1\"} 3\na_created{x=\"1\"} 1.7e9\n# TYPE g_seconds gauge\n# UNIT g_seconds seconds\ng_seconds 2.5\n# EOF\n",
        true,
    ),
    case(
        "o-kinds",
        OM,
        "# TYPE s stateset\ns{s=\"a\"} 1\ns{s=\"b\"} 0\n# TYPE i info\ni_info{v=\"1\"} 1\n# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_count 2\nh_sum 1.5\n# TYPE u unknown\nu 7\n# EOF\n",
        true,
    ),
    case("o-no-eof", OM, "a 1\n", false),
    case("o-after-eof", OM, "a 1\n# EOF\nb 2\n", false),
    case("o-blank-after-eof", OM, "a 1\n# EOF\n\n", false),
    case("o-eof-space", OM, "a 1\n# EOF \n", false),
    case("o-eof-no-newline", OM, "a 1\n# EOF", true),
    differs(
        "o-empty",
        OM,
        "",
        true,
        "an empty body is an empty scrape, whatever its Content-Type",
        "scrape/scrape.go:1724 (`if len(b) == 0` before any parser)",
    ),
    case("o-blank-line", OM, "a 1\n\nb 2\n# EOF\n", false),
    case("o-comment", OM, "# hello\na 1\n# EOF\n", false),
    case("o-leading-space", OM, " a 1\n# EOF\n", false),
    case("o-two-spaces", OM, "a  1\n# EOF\n", false),
    case("o-tab", OM, "a\t1\n# EOF\n", false),
    case("o-trailing-space", OM, "a 1 \n# EOF\n", false),
    case("o-label-space", OM, "a{x=\"1\", y=\"2\"} 1\n# EOF\n", false),
    case("o-no-comma", OM, "a{x=\"1\"y=\"2\"} 1\n# EOF\n", false),
    differs(
        "o-trailing-comma",
        OM,
        "a{x=\"1\",} 1\n# EOF\n",
        true,
        "a trailing comma in a label set",
        "model/textparse/openmetricsparse.go:633 parseLVals (a `}` after a comma ends the set, since a28d7865ad)",
    ),
    case("o-space-before-brace", OM, "a {x=\"1\"} 1\n# EOF\n", false),
    case("o-unknown-escape", OM, "a_total{foo=\"b\\\\a\\z\"} 2\n# EOF\n", true),
    case(
        "o-huge-ts",
        OM,
        "a 1 12345678901234567890.1234567890\nb 2\n# EOF\n",
        true,
    ),
    case("o-negative-ts", OM, "a 1 -1.5\nb 2\n# EOF\n", true),
    case("o-nan-ts", OM, "a 1 NaN\n# EOF\n", false),
    case("o-ts-out-of-range", OM, "a 1 1e999\n# EOF\n", false),
    case("o-untyped", OM, "# TYPE a untyped\na 1\n# EOF\n", false),
    case("o-unit-not-suffix", OM, "# TYPE a gauge\n# UNIT a seconds\na 1\n# EOF\n", false),
    case("o-help-no-text", OM, "# HELP a\na 1\n# EOF\n", false),
    case("o-help-empty", OM, "# HELP a \na 1\n# EOF\n", true),
    case("o-crlf", OM, "a 1\r\n# EOF\n", false),
    case(
        "o-exemplar-counter",
        OM,
        "# TYPE c counter\nc_total 1 # {trace_id=\"x\"} 1 1700000000.5\n# EOF\n",
        true,
    ),
    differs(
        "o-exemplar-gauge",
        OM,
        "# TYPE g gauge\ng 1 # {trace_id=\"x\"} 1\n# EOF\n",
        true,
        "exemplars on any series, not only _total and _bucket",
        "model/textparse/openmetricsparse.go:579 parseComment (no name check since 9225d118dc)",
    ),
    case(
        "o-exemplar-bad-ts",
        OM,
        "# TYPE c counter\nc_total 1 # {a=\"b\"} 1 Inf\n# EOF\n",
        false,
    ),
    case("o-exemplar-space", OM, "# TYPE c counter\nc_total 1 # {a=\"b\"} 1 \n# EOF\n", false),
    differs(
        "o-quoted-names",
        OM,
        "# TYPE \"a.b\" gauge\n{\"a.b\",x=\"1\"} 1\n# EOF\n",
        true,
        "quoted UTF-8 metric and label names",
        "model/textparse/openmetricslex.l:59,61 (`{` at a line's start, tQString)",
    ),
    case("o-text-type-word", OM, "# TYPE a counter\na_total 1\n# TYPE b unknown\nb 2\n# EOF\n", true),
];

/// Ids are container names (DNS-1123 labels) and unique.
pub fn check_ids() {
    let mut seen = std::collections::BTreeSet::new();
    for case in CORPUS {
        assert!(seen.insert(case.id), "duplicate id {}", case.id);
        assert!(
            case.id.len() <= 63
                && case
                    .id
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'),
            "{} is no container name",
            case.id
        );
    }
}
