//! The protobuf exposition format (delimited `io.prometheus.client.MetricFamily`
//! messages, the only format that carries native histograms), with no I/O:
//!
//! - `read`: validates a body whole and indexes its families and metrics
//!   as offsets into it (like the text parser's index);
//! - [`write`]: delimited `MetricFamily` messages with the container label
//!   added to every metric (`exported_` rule), copied from a body;
//! - `down`: protobuf families as text 0.0.4 lines, as client_golang's
//!   text encoder writes them;
//! - `up`: text families as `Metric` messages (classic histograms and
//!   summaries grouped by label set);
//! - `wire`: varints, tags, skipping by wire type.
//!
//! References: prometheus/client_model `metrics.proto` (field numbers),
//! Prometheus `model/textparse/protobufparse.go` (what a scraper reads and
//! refuses), prometheus/common `expfmt` (text encoder, negotiation).

mod convert;
pub(in crate::exposition) mod down;
pub(in crate::exposition) mod read;
pub(in crate::exposition) mod up;
pub(in crate::exposition) mod wire;
pub(in crate::exposition) mod write;

pub use convert::{Converter, Label};
pub use read::{ProtoError, ProtoErrorKind};

#[cfg(test)]
mod tests;
