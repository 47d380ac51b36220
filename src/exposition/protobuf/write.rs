//! The protobuf writer: delimited `MetricFamily` messages whose metrics are
//! copied from a body with the container label added.
//!
//! A metric whose labels open its message (what every producer writes) costs
//! two copies: its bytes up to the end of its labels, the container's
//! `LabelPair` field, then the rest. A metric that already has a label named
//! like the container label (renamed `exported_<label>`, prefixed again while
//! taken: Prometheus' honor_labels=false rule) or whose labels are
//! interleaved with other fields is re-encoded field by field.
//!
//! A family's length comes before its content, so a family is written in two
//! passes over its metrics: sizes, then bytes; nothing is encoded twice on the
//! common path.

use super::read::{label_bit, metric_field, Family, Index, Metric, MetricType, LABELS_INTERLEAVED};
use super::wire::{
    len_field_size, put_bytes, put_double, put_tag, put_uint, put_varint, varint_len, Fields,
    WireType,
};
use crate::exposition::parse::Span;

/// The label every metric of a source gets: its name, and the whole
/// `label` field of a `Metric` (tag, length, `LabelPair`) encoded once per
/// source by [`put_label_pair_field`].
#[derive(Clone, Copy)]
pub(in crate::exposition) struct Target<'a> {
    name: &'a [u8],
    field: &'a [u8],
}

impl<'a> Target<'a> {
    pub(in crate::exposition) fn new(name: &'a [u8], field: &'a [u8]) -> Target<'a> {
        Target { name, field }
    }

    pub(in crate::exposition) fn name(&self) -> &'a [u8] {
        self.name
    }

    pub(in crate::exposition) fn field(&self) -> &'a [u8] {
        self.field
    }
}

/// Prometheus' prefix for a target label that was already taken.
const EXPORTED: &[u8] = b"exported_";

/// Appends a `Metric.label` field holding `LabelPair { name, value }`.
pub(in crate::exposition) fn put_label_pair_field(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    let content = len_field_size(name.len()) + len_field_size(value.len());
    put_tag(metric_field::LABEL, WireType::Len, out);
    put_varint(content as u64, out);
    put_bytes(1, name, out);
    put_bytes(2, value, out);
}

/// Size of a `MetricFamily`'s name, help, type and unit fields.
pub(in crate::exposition) fn family_header_len(
    name: &[u8],
    help: Option<&[u8]>,
    metric_type: MetricType,
    unit: Option<&[u8]>,
) -> usize {
    len_field_size(name.len())
        + help.map_or(0, |help| len_field_size(help.len()))
        + 1
        + varint_len(metric_type.to_wire())
        + unit.map_or(0, |unit| len_field_size(unit.len()))
}

pub(in crate::exposition) fn put_family_header(
    name: &[u8],
    help: Option<&[u8]>,
    metric_type: MetricType,
    unit: Option<&[u8]>,
    out: &mut Vec<u8>,
) {
    put_bytes(1, name, out);
    if let Some(help) = help {
        put_bytes(2, help, out);
    }
    put_uint(3, metric_type.to_wire(), out);
    // client_model's `unit = 5` (OpenMetrics' `# UNIT`).
    if let Some(unit) = unit {
        put_bytes(5, unit, out);
    }
}

/// The `metric` field of a family around `content_len` bytes of `Metric`.
pub(in crate::exposition) fn metric_field_len(content_len: usize) -> usize {
    len_field_size(content_len)
}

pub(in crate::exposition) fn put_metric_field_head(content_len: usize, out: &mut Vec<u8>) {
    put_tag(4, WireType::Len, out);
    put_varint(content_len as u64, out);
}

/// Relabels the metrics of one source: decides per metric between the copy
/// and the re-encoding, and keeps the scratch of the latter.
pub(in crate::exposition) struct MetricRelabeler<'a> {
    pub(in crate::exposition) body: &'a [u8],
    /// None: the metric is copied as it is (the sidecar's own metrics).
    pub(in crate::exposition) target: Option<Target<'a>>,
    /// [`label_mask`] of the target's name.
    pub(in crate::exposition) label_mask: u16,
}

/// The bit of `Metric::label_bits` that a label named `name` sets, or 0
/// when the body indexed by `index` has no label of that name (its name
/// filter says so): metrics with that bit may have the label.
pub(in crate::exposition) fn label_mask(index: &Index, name: &[u8]) -> u16 {
    if index.label_names.may_contain(name) {
        label_bit(name)
    } else {
        0
    }
}

impl<'a> MetricRelabeler<'a> {
    pub(in crate::exposition) fn new(
        body: &'a [u8],
        index: &Index,
        target: Option<Target<'a>>,
    ) -> MetricRelabeler<'a> {
        MetricRelabeler {
            body,
            target,
            label_mask: target.map_or(0, |t| label_mask(index, t.name())),
        }
    }

    /// Whether every metric of `family` is a plain copy (no label that may
    /// be named like the target, labels first in each): then
    /// [`Self::copies_len`] and [`Self::write_copies`] do the work without
    /// deciding metric by metric.
    pub(in crate::exposition) fn copies_family(&self, family: &Family) -> bool {
        family.flags & LABELS_INTERLEAVED == 0 && family.label_bits & self.label_mask == 0
    }

    /// [`Self::copies_len`] of all the metrics of `family`: from its sizes
    /// alone when every relabelled metric is shorter than 128 bytes (each
    /// length then takes one byte).
    pub(in crate::exposition) fn family_copies_len(
        &self,
        family: &Family,
        metrics: &[Metric],
    ) -> usize {
        let target = self.target.map_or(0, |t| t.field().len());
        if family.largest_metric as usize + target < 128 {
            metrics.len() * (2 + target) + family.metric_bytes as usize
        } else {
            self.copies_len(metrics, |_| true)
        }
    }

    /// Bytes of the `metric` fields of the metrics `take` selects, copied
    /// (only when [`Self::copies_family`]).
    pub(in crate::exposition) fn copies_len(
        &self,
        metrics: &[Metric],
        take: impl Fn(&Metric) -> bool,
    ) -> usize {
        let target = self.target.map_or(0, |t| t.field().len());
        metrics
            .iter()
            .filter(|m| take(m))
            .map(|m| metric_field_len((m.end - m.start) as usize + target))
            .sum()
    }

    /// Appends the `metric` fields of the metrics `take` selects, each its
    /// labels, the target, the rest (only when [`Self::copies_family`]).
    pub(in crate::exposition) fn write_copies(
        &self,
        metrics: &[Metric],
        take: impl Fn(&Metric) -> bool,
        out: &mut Vec<u8>,
    ) {
        let body = self.body;
        let target = self.target.map_or(&[][..], |t| t.field());
        let mut target_block = [0u8; SHORT];
        if let Some(block) = target_block.get_mut(..target.len()) {
            block.copy_from_slice(target);
        }
        for metric in metrics.iter().filter(|m| take(m)) {
            let (start, labels_end, end) = (
                metric.start as usize,
                metric.labels_end as usize,
                metric.end as usize,
            );
            put_metric_field_head(end - start + target.len(), out);
            append(body, start, labels_end, out);
            if target.len() <= SHORT {
                append_block(&target_block, target.len(), out);
            } else {
                out.extend_from_slice(target);
            }
            append(body, labels_end, end, out);
        }
    }

    fn needs_rewrite(&self, metric: &Metric) -> bool {
        let Some(target) = self.target else {
            return false;
        };
        metric.flags & LABELS_INTERLEAVED != 0
            || (metric.label_bits & self.label_mask != 0 && self.has_label(metric, target.name()))
    }

    /// Whether the metric has a label `exported_` × `prefixes` + `name`.
    fn has_exported_label(&self, metric: &Metric, name: &[u8], prefixes: usize) -> bool {
        let mut found = false;
        for_each_label(self.body, metric, |label, _| {
            let mut rest = label;
            for _ in 0..prefixes {
                match rest.strip_prefix(EXPORTED) {
                    Some(tail) => rest = tail,
                    None => return,
                }
            }
            found |= rest == name;
        });
        found
    }

    /// Whether one of the metric's labels is named `name`.
    fn has_label(&self, metric: &Metric, name: &[u8]) -> bool {
        let mut found = false;
        for_each_label(self.body, metric, |label_name, _| {
            found |= label_name == name
        });
        found
    }

    /// Bytes of the relabelled `Metric` message; `scratch` receives the
    /// re-encoded message when it is not a plain copy.
    pub(in crate::exposition) fn len(&self, metric: &Metric, scratch: &mut Vec<u8>) -> usize {
        let copied = (metric.end - metric.start) as usize;
        match self.target {
            None => copied,
            Some(target) if !self.needs_rewrite(metric) => copied + target.field().len(),
            Some(target) => {
                scratch.clear();
                self.rewrite(metric, Some(target), None, scratch);
                scratch.len()
            }
        }
    }

    /// `len` of the metric written as `retype` (a simple type: its value
    /// moves to that type's field), or as it is when None.
    pub(in crate::exposition) fn len_as(
        &self,
        metric: &Metric,
        retype: Option<MetricType>,
        scratch: &mut Vec<u8>,
    ) -> usize {
        match retype {
            None => self.len(metric, scratch),
            Some(retype) => {
                scratch.clear();
                self.rewrite(metric, self.target, Some(retype), scratch);
                scratch.len()
            }
        }
    }

    /// `write` of the metric written as `retype` (see `len_as`).
    pub(in crate::exposition) fn write_as(
        &self,
        metric: &Metric,
        retype: Option<MetricType>,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) {
        match retype {
            None => self.write(metric, out, scratch),
            Some(retype) => {
                scratch.clear();
                self.rewrite(metric, self.target, Some(retype), scratch);
                out.extend_from_slice(scratch);
            }
        }
    }

    /// Appends the relabelled `Metric` message (without its field head).
    pub(in crate::exposition) fn write(
        &self,
        metric: &Metric,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) {
        let body = self.body;
        let span = |start: u32, end: u32| Span { start, end }.of(body);
        match self.target {
            None => out.extend_from_slice(span(metric.start, metric.end)),
            Some(target) if !self.needs_rewrite(metric) => {
                out.extend_from_slice(span(metric.start, metric.labels_end));
                out.extend_from_slice(target.field());
                out.extend_from_slice(span(metric.labels_end, metric.end));
            }
            Some(target) => {
                scratch.clear();
                self.rewrite(metric, Some(target), None, scratch);
                out.extend_from_slice(scratch);
            }
        }
    }

    /// Labels first (the one named like the target renamed), the target,
    /// then every other field in its order; with `retype`, the value of a
    /// gauge, counter or untyped field moves to `retype`'s field (a
    /// conflict downgraded the family to untyped).
    fn rewrite(
        &self,
        metric: &Metric,
        target: Option<Target<'_>>,
        retype: Option<MetricType>,
        out: &mut Vec<u8>,
    ) {
        let body = self.body;
        let target_name = target.map(|t| t.name());
        for_each_label(body, metric, |name, value| {
            if Some(name) == target_name {
                // `exported_` prefixed while the name is taken, written in
                // place (no buffer for the new name).
                let mut prefixes = 1;
                while self.has_exported_label(metric, name, prefixes) {
                    prefixes += 1;
                }
                let renamed_len = prefixes * EXPORTED.len() + name.len();
                let content =
                    1 + varint_len(renamed_len as u64) + renamed_len + len_field_size(value.len());
                put_tag(metric_field::LABEL, WireType::Len, out);
                put_varint(content as u64, out);
                put_tag(1, WireType::Len, out);
                put_varint(renamed_len as u64, out);
                for _ in 0..prefixes {
                    out.extend_from_slice(EXPORTED);
                }
                out.extend_from_slice(name);
                put_bytes(2, value, out);
            } else {
                put_label_pair_field(name, value, out);
            }
        });
        if let Some(target) = target {
            out.extend_from_slice(target.field());
        }
        let value_field = retype.map(|retype| match retype {
            MetricType::Counter => metric_field::COUNTER,
            MetricType::Gauge => metric_field::GAUGE,
            _ => metric_field::UNTYPED,
        });
        let mut fields = Fields::new(body, metric.start as usize, metric.end as usize);
        while !fields.is_done() {
            let field_start = fields.at;
            let Ok(tag) = fields.tag() else { return };
            // A length-delimited field's content, where it starts: its
            // length takes 2 bytes from 128 on (a counter with an exemplar
            // and a created timestamp, a gauge with an unknown field).
            let mut content = (0, 0);
            if tag.wire == WireType::Len {
                match fields.len_delimited() {
                    Ok(span) => content = span,
                    Err(_) => return,
                }
            } else if fields.skip(tag).is_err() {
                return;
            }
            let simple_value = matches!(
                tag.number,
                metric_field::GAUGE | metric_field::COUNTER | metric_field::UNTYPED
            );
            match value_field {
                _ if tag.number == metric_field::LABEL => {}
                Some(number) if simple_value && tag.wire == WireType::Len => {
                    // Gauge, Counter, Untyped: value = 1.
                    let value = first_double(body, content.0, content.1);
                    put_tag(number, WireType::Len, out);
                    put_varint(9, out);
                    put_double(1, value, out);
                }
                _ => out.extend_from_slice(&body[field_start..fields.at]),
            }
        }
    }
}

/// Pieces of at most this many bytes are copied as a block of this size.
const SHORT: usize = 32;

/// Appends `bytes[start..end]`. A piece of at most [`SHORT`] bytes (most
/// pieces of a metric are) is copied as the [`SHORT`] bytes from `start`
/// when `bytes` has them, then cut to its length: a copy of a known size is
/// a few moves, where a call to `memcpy` costs more than the bytes.
#[inline(always)]
fn append(bytes: &[u8], start: usize, end: usize, out: &mut Vec<u8>) {
    if end - start <= SHORT {
        if let Some(block) = bytes
            .get(start..)
            .and_then(|rest| rest.first_chunk::<SHORT>())
        {
            append_block(block, end - start, out);
            return;
        }
    }
    out.extend_from_slice(&bytes[start..end]);
}

/// Appends the first `len` bytes of `block`.
#[inline(always)]
fn append_block(block: &[u8; SHORT], len: usize, out: &mut Vec<u8>) {
    let at = out.len();
    out.extend_from_slice(block);
    out.truncate(at + len);
}

/// Field 1 (a double) of a validated message at `start..end` (0 if absent).
fn first_double(body: &[u8], start: usize, end: usize) -> f64 {
    let mut fields = Fields::new(body, start, end);
    let mut value = 0.0;
    while !fields.is_done() {
        let Ok(tag) = fields.tag() else { break };
        if tag.number == 1 && tag.wire == WireType::Fixed64 {
            match fields.double() {
                Ok(v) => value = v,
                Err(_) => break,
            }
        } else if fields.skip(tag).is_err() {
            break;
        }
    }
    value
}

/// Calls `each(name, value)` for every label of a validated metric.
pub(in crate::exposition) fn for_each_label(
    body: &[u8],
    metric: &Metric,
    mut each: impl FnMut(&[u8], &[u8]),
) {
    let mut fields = Fields::new(body, metric.start as usize, metric.end as usize);
    while !fields.is_done() {
        let Ok(tag) = fields.tag() else { return };
        if tag.number == metric_field::LABEL && tag.wire == WireType::Len {
            let Ok((start, end)) = fields.len_delimited() else {
                return;
            };
            let (name, value) = label_pair(body, start, end);
            each(name, value);
        } else if fields.skip(tag).is_err() {
            return;
        }
    }
}

/// Name and value of a validated `LabelPair` (missing fields are empty).
pub(in crate::exposition) fn label_pair(body: &[u8], start: usize, end: usize) -> (&[u8], &[u8]) {
    let mut fields = Fields::new(body, start, end);
    let (mut name, mut value): (&[u8], &[u8]) = (&[], &[]);
    while !fields.is_done() {
        let Ok(tag) = fields.tag() else { break };
        match (tag.number, tag.wire) {
            (1 | 2, WireType::Len) => {
                let Ok((s, e)) = fields.len_delimited() else {
                    break;
                };
                if tag.number == 1 {
                    name = &body[s..e];
                } else {
                    value = &body[s..e];
                }
            }
            _ => {
                if fields.skip(tag).is_err() {
                    break;
                }
            }
        }
    }
    (name, value)
}
