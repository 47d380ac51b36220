//! One body at a time, in and out of protobuf: the entry points of the
//! codec for the fuzz targets, the bench and the tests. The merge uses the
//! same pieces across many sources.

use super::down::{self, TextTarget};
use super::read::{Index, MetricType, ProtoError};
use super::up::{metric_type, unescape_help, TextSource, UpConverter};
use super::wire::put_varint;
use super::write::{
    family_header_len, metric_field_len, put_family_header, put_label_pair_field,
    put_metric_field_head, MetricRelabeler, Target,
};
use crate::exposition::parse::{self, IndexView, ParseError};

/// A reusable converter: the index of the last protobuf body it read, and
/// the scratch of every conversion (nothing allocated per metric).
#[derive(Default)]
pub struct Converter {
    index: Index,
    text_index: parse::Index,
    up: UpConverter,
    scratch: Vec<u8>,
    labels: Vec<u8>,
    target: Vec<u8>,
    help: Vec<u8>,
    metrics: Vec<u8>,
}

/// The container label a conversion adds: `name="value"` (None adds none).
#[derive(Clone, Copy)]
pub struct Label<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

impl Converter {
    pub fn new() -> Converter {
        Converter::default()
    }

    /// Validates and indexes a protobuf body (delimited `MetricFamily`).
    pub fn read(&mut self, body: &[u8]) -> Result<(), ProtoError> {
        self.index.build(body)
    }

    /// Families and metrics of the last body read.
    pub fn counts(&self) -> (usize, usize) {
        (self.index.families.len(), self.index.metrics.len())
    }

    /// Bytes held by the index's buffers (their capacity).
    pub fn index_bytes(&self) -> usize {
        self.index.capacity_bytes()
    }

    /// Gives memory back after an outsized body.
    pub fn shrink(&mut self) {
        self.index.shrink();
    }

    /// Metrics of the last body read that carry a native histogram.
    pub fn native_histograms(&self) -> usize {
        self.index.native_histograms
    }

    /// Appends the last body read, every metric relabelled, as delimited
    /// protobuf. `body` must be the body given to `read`.
    pub fn write_protobuf(&mut self, body: &[u8], label: Option<Label<'_>>, out: &mut Vec<u8>) {
        self.target.clear();
        if let Some(label) = label {
            put_label_pair_field(
                label.name.as_bytes(),
                label.value.as_bytes(),
                &mut self.target,
            );
        }
        let target = label.map(|l| Target::new(l.name.as_bytes(), &self.target));
        let relabeler = MetricRelabeler::new(body, &self.index, target);
        for family in &self.index.families {
            let metrics =
                &self.index.metrics[family.metrics.start as usize..family.metrics.end as usize];
            let name = family.name.of(body);
            let help = family.help.map(|help| help.of(body));
            let mut len = family_header_len(name, help, family.metric_type, None);
            for metric in metrics {
                len += metric_field_len(relabeler.len(metric, &mut self.scratch));
            }
            put_varint(len as u64, out);
            put_family_header(name, help, family.metric_type, None, out);
            for metric in metrics {
                put_metric_field_head(relabeler.len(metric, &mut self.scratch), out);
                relabeler.write(metric, out, &mut self.scratch);
            }
        }
    }

    /// Appends the last body read as text 0.0.4, as client_golang's text
    /// encoder writes it, every sample relabelled.
    pub fn write_text(&mut self, body: &[u8], label: Option<Label<'_>>, out: &mut Vec<u8>) {
        self.target.clear();
        if let Some(label) = label {
            down::text_target_pair(
                label.name.as_bytes(),
                label.value.as_bytes(),
                &mut self.target,
            );
        }
        let target = label.map(|l| TextTarget {
            name: l.name.as_bytes(),
            pair: &self.target,
        });
        for family in &self.index.families {
            let name = family.name.of(body);
            if let Some(help) = family.help {
                out.extend_from_slice(b"# HELP ");
                out.extend_from_slice(name);
                out.push(b' ');
                down::escape_help(help.of(body), out);
                out.push(b'\n');
            }
            out.extend_from_slice(b"# TYPE ");
            out.extend_from_slice(name);
            out.push(b' ');
            out.extend_from_slice(down::text_type(family.metric_type).as_bytes());
            out.push(b'\n');
            let metrics =
                &self.index.metrics[family.metrics.start as usize..family.metrics.end as usize];
            down::write_metrics(
                body,
                name,
                family.metric_type,
                metrics,
                target.as_ref(),
                &mut self.labels,
                out,
                &mut |_| {},
            );
        }
    }

    /// Parses a text body (0.0.4, or OpenMetrics when it ends `# EOF`, as
    /// `Format::guess` says) and appends it as delimited protobuf, every
    /// metric relabelled.
    pub fn text_to_protobuf(
        &mut self,
        body: &[u8],
        label: Option<Label<'_>>,
        out: &mut Vec<u8>,
    ) -> Result<(), ParseError> {
        let openmetrics =
            crate::exposition::Format::guess(body) == crate::exposition::Format::OpenMetrics;
        self.text_index.build(body, openmetrics)?;
        self.target.clear();
        if let Some(label) = label {
            put_label_pair_field(
                label.name.as_bytes(),
                label.value.as_bytes(),
                &mut self.target,
            );
        }
        let target = label.map(|l| Target::new(l.name.as_bytes(), &self.target));
        let view = IndexView::new(&self.text_index, body);
        let source = TextSource { view };
        for family in 0..view.family_count() as u32 {
            self.metrics.clear();
            self.up.metrics(source, family, target, &mut self.metrics);
            let entry = view.family(family);
            // Names as a client that names no escaping gets them.
            let mut name = Vec::new();
            crate::exposition::escaping::escape_name(
                entry.name,
                crate::exposition::negotiate::Escaping::Underscores,
                false,
                &mut name,
            );
            let name = name.as_slice();
            self.help.clear();
            let help = entry.help.map(|help| {
                unescape_help(help, view.is_openmetrics(), &mut self.help);
                self.help.as_slice()
            });
            let metric_type: MetricType = metric_type(entry.kind);
            let len = family_header_len(name, help, metric_type, None) + self.metrics.len();
            put_varint(len as u64, out);
            put_family_header(name, help, metric_type, None, out);
            out.extend_from_slice(&self.metrics);
        }
        Ok(())
    }
}
