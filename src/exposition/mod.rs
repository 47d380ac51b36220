//! The exposition engine, with no I/O: parses each container's latest body
//! (Prometheus text 0.0.4, OpenMetrics 1.0 text, or delimited protobuf as its
//! `Content-Type` says: [`Format`]) into a [`Snapshot`], and merges snapshots
//! into one body, text 0.0.4, OpenMetrics 1.0 or protobuf as the client's
//! `Accept` says ([`negotiate`]), names escaped as it asks (`escaping.rs`),
//! in which every sample carries the container label ([`Merger`]). The
//! OpenMetrics output's rules are in `openmetrics.rs`; the protobuf codec
//! and the conversions between the formats are in [`protobuf`].
//!
//! Decisions (see also docs/FORMATS.md):
//! - Parsing is lazy: [`Snapshot::replace`] only swaps buffers; the body is
//!   parsed by [`Snapshot::index`] when a client asks for the output.
//! - A body that does not parse is rejected whole ([`ParseError`] gives the
//!   line and what was expected); nothing of it is served. So is a body that
//!   parses but that Prometheus 2.42's scraper, promtool or Python's parser
//!   would refuse in the output, which would take every container's series
//!   down with it: values out of float64 range, label names starting with
//!   `__`, negative timestamps, `le`/`quantile` values out of range.
//! - In text 0.0.4 output, OpenMetrics families are converted the way
//!   Python's `prometheus_client.generate_latest` does: counter `foo`
//!   (samples `foo_total`) becomes counter family `foo_total`; `_created`
//!   samples become gauge families `foo_created`; info `foo` becomes gauge
//!   `foo_info`; stateset becomes gauge; gaugehistogram becomes histogram
//!   with `_gsum`/`_gcount` as gauge families; unknown becomes untyped.
//!   OpenMetrics timestamps (seconds) become milliseconds; exemplars and
//!   `# UNIT` are dropped; HELP is written with 0.0.4 escapes. OpenMetrics
//!   output keeps them all (`openmetrics.rs`).
//! - Names are kept as the source wrote them (quoted UTF-8 names
//!   unescaped) and written for each client's escaping scheme
//!   (`escaping.rs`): quoted under `allow-utf-8`, else escaped.
//! - A family without a `# TYPE` line gets none in any output.
//! - Values: decimal forms are written verbatim; NaN and infinities (any
//!   case, `Inf` or `Infinity`) are written `NaN`, `+Inf`, `-Inf`.
//! - Relabel: `<label>="<container>"` is appended to every sample; an
//!   existing label of that name becomes `exported_<label>` (prefixed again
//!   while taken), Prometheus' honor_labels=false rule.
//! - Merge order: families in order of first appearance (sources in order),
//!   within a family source 0's samples first, in input order. One HELP (the
//!   first kept source's that has one) and one TYPE per family.
//! - Type conflicts, and the sidecar's own names (reserved): see
//!   [`Merger`].
//! - Samples are offsets into the body (u32); no allocation per sample, and
//!   after warm-up no allocation per scrape or per merge.

mod escaping;
mod labels;
mod merge;
pub mod negotiate;
mod openmetrics;
mod parse;
pub mod protobuf;
mod snapshot;
mod text;
mod tokens;

pub use merge::{Merger, Source, RESERVED_PREFIX};
pub use parse::{ParseError, ParseErrorKind};
pub use snapshot::{BodyError, Format, Snapshot};
pub(crate) use text::escape_label_value;
