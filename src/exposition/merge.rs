//! The relabel and merge writer: many indexed snapshots in (text or
//! protobuf), one body out, text 0.0.4 ([`Merger::merge`]) or delimited
//! protobuf ([`Merger::merge_as`]): the same families, conflicts and order
//! either way; each source converted to the output's format as it is
//! written (`protobuf::down`, `protobuf::up`). The served output is written
//! in bounded pieces handed to a sink ([`Merger::merge_in_pieces`]), in
//! either format, so that it is never held whole.
//!
//! Type conflicts (one 0.0.4 family name, different types in different
//! sources) are resolved so the output always stays valid:
//! 0. The sidecar's own names are reserved: when a source without a
//!    container (the sidecar's own metrics) has a family whose name starts
//!    with [`RESERVED_PREFIX`], every container's family of that name is
//!    dropped, whatever its type, and its source reported. Rules 1 and 2
//!    then apply among the sources left.
//! 1. If every type involved is simple (counter, gauge, untyped), the family
//!    is written as `untyped` with every sample kept; the sources whose type
//!    differs from the first source's are reported.
//! 2. Otherwise the type of the first source (in order) that has the family
//!    wins; the samples of sources with another type are dropped and those
//!    sources reported.
//! 3. Then a family whose name is `X_bucket`, `X_sum` or `X_count` while `X`
//!    is a histogram (or `X_sum`/`X_count` while `X` is a summary) is
//!    dropped whole and its sources reported: Prometheus' expfmt (promtool)
//!    folds such names into `X` and would reject or mangle the output.
//!    When `X_...` is reserved (rule 0), `X` is dropped instead.
//!
//! Each (source, family) that lost is listed by [`Merger::conflicts`] once.

use super::labels::LabelIter;
use super::negotiate::OutputFormat;
use super::parse::{IndexView, Kind, Sample, SampleFlags, Span};
use super::protobuf::down::{self, TextTarget};
use super::protobuf::read::{Metric, MetricType, NATIVE_HISTOGRAM};
use super::protobuf::up::{
    metric_kind, metric_type, unescape_help, MetricSink, TextSource, UpConverter,
};
use super::protobuf::wire::put_varint;
use super::protobuf::write::{
    family_header_len, label_mask, metric_field_len, put_family_header, put_label_pair_field,
    put_metric_field_head, MetricRelabeler, Target,
};
use super::snapshot::{ProtoView, Snapshot, SourceView};
use super::text::{
    escape_label_value, escape_quoted_name, hash_name, om_timestamp_millis, parse_int_timestamp,
    same_bytes, write_help, NameRule, NameTable, ValueForm,
};

/// The prefix of the sidecar's own metric names, reserved by rule 0 (see
/// the module documentation). Other names the sidecar exports (`process_*`)
/// are shared: every instrumented container has them too, and they merge
/// like any other family.
pub const RESERVED_PREFIX: &str = "multiplexer_";

/// One input of a merge.
#[derive(Clone, Copy)]
pub struct Source<'a> {
    /// None = the sidecar's own metrics: no container label is added (they
    /// carry it where needed) and their [`RESERVED_PREFIX`] families win
    /// every conflict.
    pub container: Option<&'a str>,
    /// Must have been indexed successfully; otherwise it contributes nothing.
    pub snapshot: &'a Snapshot,
}

/// What type-conflict resolution decided for one source's family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Resolution {
    /// Written as the source declared it.
    #[default]
    Kept,
    /// Written under the merged family's `untyped` TYPE (rule 1).
    Downgraded,
    /// Not written (rules 2 and 3).
    Dropped,
}

/// One source's family, as a part of a merged family.
#[derive(Clone, Copy)]
struct Contribution {
    merged: u32,
    source: u32,
    /// The family's number in its source's index.
    family: u32,
    /// Its type in its source.
    kind: Kind,
    resolution: Resolution,
}

struct Merged {
    /// The family's first contribution: where its name is read from.
    source: u32,
    family: u32,
    kind: Kind,
    /// A source without a container has this family and its name has the
    /// reserved prefix (rule 0).
    reserved: bool,
    /// Range of `Merger::sorted`.
    contributions: Span,
}

/// Where a source's added label is in `Merger::source_labels`.
#[derive(Clone, Copy)]
struct TargetSpans {
    /// `,label="c"`: after a sample's own labels.
    comma: Span,
    /// `{label="c"}`: for a sample without braces.
    braced: Span,
}

/// Protobuf output: the label a source's metrics get.
#[derive(Clone, Copy)]
struct ProtoTarget {
    /// The encoded `LabelPair` field, in `Merger::proto_labels`.
    field: Span,
    /// `write::label_mask` of the label in a protobuf source (its name
    /// filter asked once per merge): its metrics with that bit are looked at.
    label_mask: u16,
}

/// Where a merge in pieces hands them: the size that ends a piece, and the
/// sink.
type Pieces<'e> = (usize, &'e mut dyn FnMut(&[u8]));

/// Reusable merge scratch: no allocation per merge after warm-up.
pub struct Merger {
    label: Vec<u8>,
    table: NameTable,
    merged: Vec<Merged>,
    contributions: Vec<Contribution>,
    sorted: Vec<Contribution>,
    starts: Vec<u32>,
    conflict_names: Vec<u8>,
    conflicts: Vec<(usize, Span)>,
    /// `,label="escaped container"` and `{label="escaped container"}` of
    /// each source, in the two forms a sample line takes them.
    source_labels: Vec<u8>,
    source_label_spans: Vec<Option<TargetSpans>>,
    scratch: Vec<u8>,
    candidate: Vec<u8>,
    /// Protobuf output: each source's encoded container `LabelPair` field.
    proto_labels: Vec<u8>,
    proto_targets: Vec<Option<ProtoTarget>>,
    /// Protobuf output: text contributions converted up, and the help of a
    /// text family unescaped.
    up: UpConverter,
    converted: Vec<u8>,
    /// Per text contribution of the family: where it is in `converted`,
    /// or None when it is converted again as it is written.
    converted_spans: Vec<Option<Span>>,
    help: Vec<u8>,
}

impl Merger {
    /// `label_name` is the label added to every sample (already validated
    /// as a legacy label name by the configuration).
    pub fn new(label_name: &str) -> Merger {
        Merger {
            label: label_name.as_bytes().to_vec(),
            table: NameTable::default(),
            merged: Vec::new(),
            contributions: Vec::new(),
            sorted: Vec::new(),
            starts: Vec::new(),
            conflict_names: Vec::new(),
            conflicts: Vec::new(),
            source_labels: Vec::new(),
            source_label_spans: Vec::new(),
            scratch: Vec::new(),
            candidate: Vec::new(),
            proto_labels: Vec::new(),
            proto_targets: Vec::new(),
            up: UpConverter::default(),
            converted: Vec::new(),
            converted_spans: Vec::new(),
            help: Vec::new(),
        }
    }

    /// Type conflicts found by the last merge: (index into sources, family
    /// name) of each family of a source that lost a conflict.
    pub fn conflicts(&self) -> impl Iterator<Item = (usize, &[u8])> + '_ {
        self.conflicts
            .iter()
            .map(|&(source, name)| (source, name.of(&self.conflict_names)))
    }

    pub fn conflict_count(&self) -> usize {
        self.conflicts.len()
    }

    /// Clears `out` and writes the merged text 0.0.4 exposition of `sources`.
    pub fn merge(&mut self, sources: &[Source<'_>], out: &mut Vec<u8>) {
        self.merge_as(sources, OutputFormat::Text, out);
    }

    /// Clears `out` and writes the merged exposition of `sources` in
    /// `format`: text 0.0.4 (protobuf sources converted down) or delimited
    /// protobuf (text sources converted up). The same families, conflicts
    /// and order either way.
    pub fn merge_as(&mut self, sources: &[Source<'_>], format: OutputFormat, out: &mut Vec<u8>) {
        self.merge_to(sources, format, out, None);
    }

    /// Writes the merged exposition of `sources` in `format` in pieces:
    /// `piece` (cleared first) is handed to `emit` and cleared whenever it
    /// holds `piece_bytes` or more, and at the end. A text piece ends at a
    /// sample or family boundary, so it may exceed `piece_bytes` by one
    /// line; a protobuf piece ends after a metric (a `MetricFamily`'s
    /// length is written before its metrics, so a message may span pieces),
    /// or after a run of metrics copied whole from one container's family.
    /// The whole output is never held: what a large pod's output costs is
    /// one piece and what `emit` keeps.
    pub fn merge_in_pieces(
        &mut self,
        sources: &[Source<'_>],
        format: OutputFormat,
        piece: &mut Vec<u8>,
        piece_bytes: usize,
        emit: &mut dyn FnMut(&[u8]),
    ) {
        self.merge_to(sources, format, piece, Some((piece_bytes, emit)));
        if !piece.is_empty() {
            emit(piece);
            piece.clear();
        }
    }

    fn merge_to(
        &mut self,
        sources: &[Source<'_>],
        format: OutputFormat,
        out: &mut Vec<u8>,
        mut pieces: Option<Pieces<'_>>,
    ) {
        out.clear();
        self.table.clear();
        self.merged.clear();
        self.contributions.clear();
        self.conflict_names.clear();
        self.conflicts.clear();
        self.source_labels.clear();
        self.source_label_spans.clear();
        self.proto_labels.clear();
        self.proto_targets.clear();

        let mut estimate = 0;
        for (source_index, source) in sources.iter().enumerate() {
            let label = source.container.map(|container| {
                let labels = &mut self.source_labels;
                let mut write = |open: u8, close: &[u8]| {
                    let start = labels.len();
                    labels.push(open);
                    labels.extend_from_slice(&self.label);
                    labels.extend_from_slice(b"=\"");
                    escape_label_value(container.as_bytes(), labels);
                    labels.push(b'"');
                    labels.extend_from_slice(close);
                    Span {
                        start: start as u32,
                        end: labels.len() as u32,
                    }
                };
                TargetSpans {
                    comma: write(b',', b""),
                    braced: write(b'{', b"}"),
                }
            });
            self.source_label_spans.push(label);
            let proto_label = source
                .container
                .filter(|_| format == OutputFormat::Protobuf);
            self.proto_targets.push(proto_label.map(|container| {
                let start = self.proto_labels.len();
                put_label_pair_field(&self.label, container.as_bytes(), &mut self.proto_labels);
                ProtoTarget {
                    field: Span::new(start, self.proto_labels.len()),
                    label_mask: match source.snapshot.view() {
                        SourceView::Protobuf(view) => label_mask(view.index, &self.label),
                        SourceView::Text(_) => 0,
                    },
                }
            }));
            if !source.snapshot.is_indexed() {
                continue;
            }
            let view = source.snapshot.view();
            let label_len = label.map_or(0, |l| (l.braced.end - l.braced.start) as usize);
            estimate += view.body().len() + view.sample_count() * label_len;
            for family_index in 0..view.family_count() {
                let family = view.family(family_index as u32);
                let id = self.merged.len() as u32;
                let merged = self.table.find_or_insert(family.hash, id, |m| {
                    let m = &self.merged[m as usize];
                    same_bytes(
                        sources[m.source as usize].snapshot.view().name(m.family),
                        family.name,
                    )
                });
                let merged = merged.unwrap_or_else(|| {
                    self.merged.push(Merged {
                        source: source_index as u32,
                        family: family_index as u32,
                        kind: family.kind,
                        reserved: false,
                        contributions: Span::default(),
                    });
                    id
                });
                if source.container.is_none() && family.name.starts_with(RESERVED_PREFIX.as_bytes())
                {
                    self.merged[merged as usize].reserved = true;
                }
                self.contributions.push(Contribution {
                    merged,
                    source: source_index as u32,
                    family: family_index as u32,
                    kind: family.kind,
                    resolution: Resolution::Kept,
                });
            }
        }
        self.group_contributions();
        self.resolve_types(sources);
        self.resolve_suffix_clashes(sources);
        match &pieces {
            Some((piece_bytes, _)) => out.reserve((*piece_bytes).min(estimate) + 4096),
            None => out.reserve(estimate + self.merged.len() * 64),
        }
        for merged in 0..self.merged.len() {
            match format {
                OutputFormat::Text => self.write_family(sources, merged, out, &mut pieces),
                OutputFormat::Protobuf => {
                    self.write_family_protobuf(sources, merged, out, &mut pieces)
                }
            }
        }
    }

    /// Stable counting sort of contributions by merged family.
    fn group_contributions(&mut self) {
        self.starts.clear();
        self.starts.resize(self.merged.len() + 1, 0);
        for c in &self.contributions {
            self.starts[c.merged as usize + 1] += 1;
        }
        for i in 1..self.starts.len() {
            self.starts[i] += self.starts[i - 1];
        }
        for (m, merged) in self.merged.iter_mut().enumerate() {
            merged.contributions = Span {
                start: self.starts[m],
                end: self.starts[m + 1],
            };
        }
        // Every entry is overwritten below.
        self.sorted.clear();
        self.sorted.extend_from_slice(&self.contributions);
        for c in &self.contributions {
            let at = &mut self.starts[c.merged as usize];
            self.sorted[*at as usize] = *c;
            *at += 1;
        }
    }

    fn resolve_types(&mut self, sources: &[Source<'_>]) {
        let kind_of = |c: &Contribution| c.kind;
        let is_own = |c: &Contribution| sources[c.source as usize].container.is_none();
        for m in 0..self.merged.len() {
            let range = self.merged[m].contributions;
            let whole = range.start as usize..range.end as usize;
            let reserved = self.merged[m].reserved;
            // Rule 0: in a reserved family only the own sources contend.
            if reserved {
                for i in whole.clone() {
                    if !is_own(&self.sorted[i]) {
                        self.sorted[i].resolution = Resolution::Dropped;
                        self.report(sources, i);
                    }
                }
            }
            let contending = &self.sorted[whole.clone()];
            let contends = |c: &&Contribution| !reserved || is_own(c);
            let Some(first) = contending.iter().find(contends).map(kind_of) else {
                continue;
            };
            self.merged[m].kind = first;
            if contending
                .iter()
                .filter(contends)
                .all(|c| kind_of(c) == first)
            {
                continue;
            }
            let all_simple = contending
                .iter()
                .filter(contends)
                .all(|c| kind_of(c).is_simple());
            self.merged[m].kind = if all_simple { Kind::Untyped } else { first };
            let lost = if all_simple {
                Resolution::Downgraded
            } else {
                Resolution::Dropped
            };
            for i in whole {
                let c = &self.sorted[i];
                if contends(&c) && kind_of(c) != first {
                    self.sorted[i].resolution = lost;
                    self.report(sources, i);
                }
            }
        }
    }

    fn resolve_suffix_clashes(&mut self, sources: &[Source<'_>]) {
        for m in 0..self.merged.len() {
            let merged = &self.merged[m];
            let name = name_of(sources, merged.source, merged.family);
            let (base, allows_summary) = if let Some(base) = name.strip_suffix(b"_bucket") {
                (base, false)
            } else if let Some(base) = name
                .strip_suffix(b"_sum")
                .or_else(|| name.strip_suffix(b"_count"))
            {
                (base, true)
            } else {
                continue;
            };
            let Some(base) = self.table.find(hash_name(base), |x| {
                let x = &self.merged[x as usize];
                same_bytes(name_of(sources, x.source, x.family), base)
            }) else {
                continue;
            };
            let base = &self.merged[base as usize];
            let clash =
                base.kind == Kind::Histogram || (allows_summary && base.kind == Kind::Summary);
            if !clash {
                continue;
            }
            // The family that goes: this one, unless its name is reserved.
            let dropped = if merged.reserved && !base.reserved {
                base.contributions
            } else {
                merged.contributions
            };
            for i in dropped.start as usize..dropped.end as usize {
                let previous = self.sorted[i].resolution;
                self.sorted[i].resolution = Resolution::Dropped;
                if previous == Resolution::Kept {
                    self.report(sources, i);
                }
            }
        }
    }

    fn report(&mut self, sources: &[Source<'_>], contribution: usize) {
        let c = self.sorted[contribution];
        let name = name_of(sources, c.source, c.family);
        let start = self.conflict_names.len();
        self.conflict_names.extend_from_slice(name);
        self.conflicts.push((
            c.source as usize,
            Span {
                start: start as u32,
                end: self.conflict_names.len() as u32,
            },
        ));
    }

    fn write_family(
        &mut self,
        sources: &[Source<'_>],
        m: usize,
        out: &mut Vec<u8>,
        pieces: &mut Option<Pieces<'_>>,
    ) {
        let merged = &self.merged[m];
        let range = merged.contributions;
        let contributions = &self.sorted[range.start as usize..range.end as usize];
        if contributions
            .iter()
            .all(|c| c.resolution == Resolution::Dropped)
        {
            return;
        }
        let name = name_of(sources, merged.source, merged.family);
        let help = contributions
            .iter()
            .filter(|c| c.resolution != Resolution::Dropped)
            .find_map(|c| {
                let view = sources[c.source as usize].snapshot.view();
                Some((view.family(c.family).help?, view))
            });
        if let Some((help, view)) = help {
            out.extend_from_slice(b"# HELP ");
            out.extend_from_slice(name);
            out.push(b' ');
            match view {
                SourceView::Text(view) => write_help(help, view.is_openmetrics(), out),
                SourceView::Protobuf(_) => down::escape_help(help, out),
            }
            out.push(b'\n');
        }
        out.extend_from_slice(b"# TYPE ");
        out.extend_from_slice(name);
        out.push(b' ');
        out.extend_from_slice(merged.kind.as_str().as_bytes());
        out.push(b'\n');

        for i in range.start as usize..range.end as usize {
            let c = self.sorted[i];
            if c.resolution == Resolution::Dropped {
                continue;
            }
            let spans = self.source_label_spans[c.source as usize];
            let comma = spans.map(|spans| spans.comma.of(&self.source_labels));
            let view = match sources[c.source as usize].snapshot.view() {
                SourceView::Text(view) => view,
                SourceView::Protobuf(view) => {
                    // Converted down as client_golang writes text.
                    let target = comma
                        .and_then(|comma| comma.get(1..))
                        .map(|pair| TextTarget {
                            name: &self.label,
                            pair,
                        });
                    let family = view.family(c.family);
                    for metric in view.metrics(c.family) {
                        down::write_metrics(
                            view.body,
                            name,
                            family.metric_type,
                            std::slice::from_ref(metric),
                            target.as_ref(),
                            &mut self.scratch,
                            out,
                        );
                        emit_if_full(out, pieces);
                    }
                    continue;
                }
            };
            let writer = SampleWriter {
                body: view.body(),
                openmetrics: view.is_openmetrics(),
                target: comma.and_then(|comma| comma.get(1..)),
                target_comma: comma.unwrap_or(b""),
                target_braced: spans.map_or(&[], |spans| spans.braced.of(&self.source_labels)),
                label: &self.label,
                check_labels: comma.is_some() && view.may_have_label(&self.label),
            };
            let mut pending = Span::default();
            for sample in view.samples(c.family) {
                writer.write(
                    &sample,
                    out,
                    &mut pending,
                    &mut self.scratch,
                    &mut self.candidate,
                );
                if let Some((piece_bytes, emit)) = pieces {
                    if out.len() + (pending.end - pending.start) as usize >= *piece_bytes {
                        writer.flush(&mut pending, out);
                        emit(out);
                        out.clear();
                    }
                }
            }
            writer.flush(&mut pending, out);
        }
    }
}

/// Which metrics of a family one `MetricFamily` message carries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    All,
    /// Metrics with a native histogram.
    Native,
    /// Every other metric (classic histograms, text sources).
    Classic,
}

impl Part {
    fn takes(self, native: bool) -> bool {
        match self {
            Part::All => true,
            Part::Native => native,
            Part::Classic => !native,
        }
    }
}

impl Merger {
    /// One merged family as delimited `MetricFamily` messages: name, help
    /// (the first kept source's that has one), type, then the metrics of
    /// every kept contribution with the container label.
    ///
    /// Prometheus decides whether a family's histograms are native from its
    /// first metric only (`protobufparse.go`), so a family that mixes
    /// metrics with native histograms and metrics without (a client_golang
    /// container and a text one, say) is written as two messages of the
    /// same name: the native metrics, then the others. Each is read right.
    fn write_family_protobuf(
        &mut self,
        sources: &[Source<'_>],
        m: usize,
        out: &mut Vec<u8>,
        pieces: &mut Option<Pieces<'_>>,
    ) {
        let merged = &self.merged[m];
        let range = merged.contributions;
        let contributions = &self.sorted[range.start as usize..range.end as usize];
        if contributions
            .iter()
            .all(|c| c.resolution == Resolution::Dropped)
        {
            return;
        }
        let (mut native, mut classic) = (false, false);
        let histogram = self.merged[m].kind == Kind::Histogram;
        for c in contributions
            .iter()
            .filter(|c| histogram && c.resolution != Resolution::Dropped)
        {
            match sources[c.source as usize].snapshot.view() {
                SourceView::Protobuf(view) => {
                    let family = view.family(c.family);
                    native |= family.native_histograms > 0;
                    classic |= family.native_histograms < family.metrics.end - family.metrics.start;
                }
                SourceView::Text(_) => classic = true,
            }
        }
        if native && classic {
            self.write_family_part(sources, m, Part::Native, out, pieces);
            self.write_family_part(sources, m, Part::Classic, out, pieces);
        } else {
            self.write_family_part(sources, m, Part::All, out, pieces);
        }
    }

    /// One `MetricFamily` message of a merged family, with the metrics
    /// `part` takes. Its length comes first, so text contributions are
    /// converted up before it is written: small ones into `converted`,
    /// held; large ones only measured, then converted again as they are
    /// written, in pieces (one family of 4 x 65,536 samples held converted
    /// took 30 MiB).
    fn write_family_part(
        &mut self,
        sources: &[Source<'_>],
        m: usize,
        part: Part,
        out: &mut Vec<u8>,
        pieces: &mut Option<Pieces<'_>>,
    ) {
        let merged = &self.merged[m];
        let range = merged.contributions;
        let contributions = &self.sorted[range.start as usize..range.end as usize];
        let name = name_of(sources, merged.source, merged.family);
        let kind = merged.kind;
        let kept = || {
            contributions
                .iter()
                .filter(|c| c.resolution != Resolution::Dropped)
        };
        let take = |m: &Metric| part.takes(m.flags & NATIVE_HISTOGRAM != 0);

        // Sizes (protobuf metrics are measured, text ones converted), the
        // help (the first kept source's that has one), and whether every
        // source is a protobuf one that says gauge histogram.
        self.converted.clear();
        self.converted_spans.clear();
        let mut len = 0;
        let mut help = None;
        let mut all_gauge_histograms = true;
        for c in kept() {
            let target = self.proto_targets[c.source as usize];
            let view = sources[c.source as usize].snapshot.view();
            if help.is_none() {
                help = view.help(c.family).map(|help| (help, view));
            }
            all_gauge_histograms &= view.metric_type(c.family) == Some(MetricType::GaugeHistogram);
            match view {
                SourceView::Protobuf(view) => {
                    let relabeler = relabeler(view, target, &self.label, &self.proto_labels);
                    let family = view.family(c.family);
                    let metrics = view.metrics(c.family);
                    let retype = retype(family.metric_type, kind);
                    if retype.is_none() && relabeler.copies_family(family) {
                        len += match part {
                            Part::All => relabeler.family_copies_len(family, metrics),
                            _ => relabeler.copies_len(metrics, take),
                        };
                        continue;
                    }
                    len += metrics_len(&relabeler, metrics, part, retype, &mut self.scratch);
                }
                SourceView::Text(view) if part.takes(false) => {
                    let target = target.map(|target| {
                        Target::new(&self.label, target.field.of(&self.proto_labels))
                    });
                    let start = self.converted.len();
                    let mut sink = HeldWhileSmall {
                        converted: &mut self.converted,
                        start,
                        measured: None,
                    };
                    convert_up(&mut self.up, view, c.family, kind, target, &mut sink);
                    match sink.measured {
                        Some(bytes) => {
                            self.converted_spans.push(None);
                            len += bytes;
                        }
                        None => {
                            self.converted_spans
                                .push(Some(Span::new(start, self.converted.len())));
                            len += self.converted.len() - start;
                        }
                    }
                }
                SourceView::Text(_) => {}
            }
        }
        let family_type = if kind == Kind::Histogram && all_gauge_histograms {
            MetricType::GaugeHistogram
        } else {
            metric_type(kind)
        };
        self.help.clear();
        let help = help.map(|(help, view)| match view {
            SourceView::Text(view) => {
                unescape_help(help, view.is_openmetrics(), &mut self.help);
                self.help.as_slice()
            }
            SourceView::Protobuf(_) => help,
        });
        len += family_header_len(name, help, family_type);
        put_varint(len as u64, out);
        put_family_header(name, help, family_type, out);
        let mut converted = self.converted_spans.iter();
        for c in kept() {
            let target = self.proto_targets[c.source as usize];
            match sources[c.source as usize].snapshot.view() {
                SourceView::Protobuf(view) => {
                    let relabeler = relabeler(view, target, &self.label, &self.proto_labels);
                    let family = view.family(c.family);
                    let metrics = view.metrics(c.family);
                    let retype = retype(family.metric_type, kind);
                    if retype.is_none() && relabeler.copies_family(family) {
                        for run in metrics.chunks(METRICS_PER_RUN) {
                            relabeler.write_copies(run, take, out);
                            emit_if_full(out, pieces);
                        }
                        continue;
                    }
                    write_metrics(
                        &relabeler,
                        metrics,
                        part,
                        retype,
                        &mut self.scratch,
                        out,
                        pieces,
                    );
                }
                SourceView::Text(view) if part.takes(false) => match converted.next() {
                    // Converted whole, handed on in pieces.
                    Some(Some(span)) => {
                        let room = pieces.as_ref().map_or(usize::MAX, |(bytes, _)| *bytes);
                        for run in span.of(&self.converted).chunks(room.max(1)) {
                            out.extend_from_slice(run);
                            emit_if_full(out, pieces);
                        }
                    }
                    Some(None) => {
                        let target = target.map(|target| {
                            Target::new(&self.label, target.field.of(&self.proto_labels))
                        });
                        let mut sink = Pieced { out, pieces };
                        convert_up(&mut self.up, view, c.family, kind, target, &mut sink);
                    }
                    None => {}
                },
                SourceView::Text(_) => {}
            }
        }
    }
}

/// Appends a text contribution's metrics converted up. Out of line, as are
/// the two below: inlined, they cost the loop over a family's protobuf
/// contributions its registers.
#[inline(never)]
fn convert_up(
    up: &mut UpConverter,
    view: IndexView<'_>,
    family: u32,
    kind: Kind,
    target: Option<Target<'_>>,
    out: &mut impl MetricSink,
) {
    up.metrics_as(TextSource { view }, family, kind, target, out);
}

/// Bytes of the `metric` fields of the metrics `part` takes, each decided
/// on (copied, re-encoded, retyped) one by one.
#[inline(never)]
fn metrics_len(
    relabeler: &MetricRelabeler<'_>,
    metrics: &[Metric],
    part: Part,
    retype: Option<MetricType>,
    scratch: &mut Vec<u8>,
) -> usize {
    metrics
        .iter()
        .filter(|m| part.takes(m.flags & NATIVE_HISTOGRAM != 0))
        .map(|metric| metric_field_len(relabeler.len_as(metric, retype, scratch)))
        .sum()
}

/// Writes the `metric` fields that [`metrics_len`] measured.
#[inline(never)]
fn write_metrics(
    relabeler: &MetricRelabeler<'_>,
    metrics: &[Metric],
    part: Part,
    retype: Option<MetricType>,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
    pieces: &mut Option<Pieces<'_>>,
) {
    for metric in metrics
        .iter()
        .filter(|m| part.takes(m.flags & NATIVE_HISTOGRAM != 0))
    {
        put_metric_field_head(relabeler.len_as(metric, retype, scratch), out);
        relabeler.write_as(metric, retype, out, scratch);
        emit_if_full(out, pieces);
    }
}

/// The relabeler of a protobuf source's metrics.
fn relabeler<'a>(
    view: ProtoView<'a>,
    target: Option<ProtoTarget>,
    label: &'a [u8],
    proto_labels: &'a [u8],
) -> MetricRelabeler<'a> {
    MetricRelabeler {
        body: view.body,
        target: target.map(|target| Target::new(label, target.field.of(proto_labels))),
        label_mask: target.map_or(0, |target| target.label_mask),
    }
}

/// Metrics of one protobuf contribution copied between checks of the
/// piece's size: a run of native histograms is some tens of KiB at most.
const METRICS_PER_RUN: usize = 64;

/// A family's text contributions are held converted up to this many bytes
/// in all; a contribution that would pass it is converted twice (measured,
/// then written) rather than held.
const CONVERTED_HELD: usize = 64 * 1024;

/// Appends converted metrics to `converted` while the family's total stays
/// within [`CONVERTED_HELD`]; at the first metric past it, drops this
/// contribution's bytes and only counts from then on (`measured`).
struct HeldWhileSmall<'c> {
    converted: &'c mut Vec<u8>,
    start: usize,
    measured: Option<usize>,
}

impl MetricSink for HeldWhileSmall<'_> {
    fn metric(&mut self, message: &[u8]) {
        if let Some(bytes) = self.measured.as_mut() {
            *bytes += metric_field_len(message.len());
        } else if self.converted.len() + metric_field_len(message.len()) <= CONVERTED_HELD {
            self.converted.metric(message);
        } else {
            self.measured =
                Some(self.converted.len() - self.start + metric_field_len(message.len()));
            self.converted.truncate(self.start);
        }
    }
}

/// Converted metrics written straight to the output, in pieces.
struct Pieced<'o, 'p, 'e> {
    out: &'o mut Vec<u8>,
    pieces: &'p mut Option<Pieces<'e>>,
}

impl MetricSink for Pieced<'_, '_, '_> {
    fn metric(&mut self, message: &[u8]) {
        self.out.metric(message);
        emit_if_full(self.out, self.pieces);
    }
}

/// Hands `out` on and clears it if the merge is in pieces and it is full.
fn emit_if_full(out: &mut Vec<u8>, pieces: &mut Option<Pieces<'_>>) {
    if let Some((piece_bytes, emit)) = pieces {
        if out.len() >= *piece_bytes {
            emit(out);
            out.clear();
        }
    }
}

/// Under an untyped family (a downgrade), every simple metric's value moves
/// to the untyped field: the type a protobuf contribution of `source_type`
/// is rewritten as.
fn retype(source_type: MetricType, kind: Kind) -> Option<MetricType> {
    (metric_kind(source_type) != kind).then_some(metric_type(kind))
}

/// The name of the family numbered `family` in source `source`'s index.
#[inline]
fn name_of<'a>(sources: &[Source<'a>], source: u32, family: u32) -> &'a [u8] {
    sources[source as usize].snapshot.view().name(family)
}

/// Writes the samples of one source.
struct SampleWriter<'a> {
    body: &'a [u8],
    openmetrics: bool,
    /// `label="container"`, when the label is added.
    target: Option<&'a [u8]>,
    /// `,label="container"` and `{label="container"}` (empty when none).
    target_comma: &'a [u8],
    target_braced: &'a [u8],
    label: &'a [u8],
    /// The body may have a label named like the target: look for it.
    check_labels: bool,
}

impl SampleWriter<'_> {
    /// Writes one sample. `pending` is a span of the body that is still to
    /// be copied to `out`: consecutive plain lines are copied as one piece
    /// from the previous line's value to this line's labels, so a sample
    /// costs two copies (that piece and the target label) instead of five.
    fn write(
        &self,
        sample: &Sample,
        out: &mut Vec<u8>,
        pending: &mut Span,
        scratch: &mut Vec<u8>,
        candidate: &mut Vec<u8>,
    ) {
        let labels = sample.labels.of(self.body);
        let retokenise = sample
            .flags
            .intersects(SampleFlags::SLOW_LABELS | SampleFlags::QUOTED_NAME)
            || (self.check_labels && has_label(labels, self.label, scratch));
        let canonical = !retokenise;
        if canonical && sample.flags.contains(SampleFlags::PLAIN_END) {
            // `name{labels` + target + `} value\n` (or `name` + `{target}`
            // + ` value\n`): the line is valid 0.0.4 as it is.
            let braces = sample.flags.contains(SampleFlags::BRACES);
            let head_end = if braces {
                sample.labels.end
            } else {
                sample.name.end
            };
            self.copy_later(pending, sample.name.start, head_end, out);
            if self.target.is_some() {
                self.flush(pending, out);
                out.extend_from_slice(match (braces, labels.is_empty()) {
                    (false, _) => self.target_braced,
                    (true, false) => self.target_comma,
                    (true, true) => self.target_comma.get(1..).unwrap_or(&[]),
                });
            }
            // The value is followed by its newline (PLAIN_END).
            self.copy_later(pending, head_end, sample.value.end + 1, out);
            return;
        }
        self.flush(pending, out);
        if canonical {
            self.write_canonical(sample, out);
        } else {
            let raw_name = sample.name.of(self.body);
            if sample.flags.contains(SampleFlags::QUOTED_NAME) {
                escape_quoted_name(raw_name, NameRule::Metric, out);
            } else {
                out.extend_from_slice(raw_name);
            }
            self.write_labels_slow(labels, out, scratch, candidate);
            self.write_value(sample, out);
        }
        if !sample.timestamp.is_empty() {
            let timestamp = sample.timestamp.of(self.body);
            if self.openmetrics {
                if let Some(millis) = om_millis(timestamp) {
                    out.push(b' ');
                    out.extend_from_slice(itoa::Buffer::new().format(millis).as_bytes());
                }
            } else {
                out.push(b' ');
                out.extend_from_slice(timestamp);
            }
        }
        out.push(b'\n');
    }

    /// Adds `start..end` of the body to the pending copy, which is first
    /// written out unless the two are contiguous.
    fn copy_later(&self, pending: &mut Span, start: u32, end: u32, out: &mut Vec<u8>) {
        if pending.end != start {
            self.flush(pending, out);
            pending.start = start;
        }
        pending.end = end;
    }

    fn flush(&self, pending: &mut Span, out: &mut Vec<u8>) {
        out.extend_from_slice(pending.of(self.body));
        *pending = Span::default();
    }

    /// Copies the line in as few pieces as possible: `name{labels` then the
    /// target label, then `} value` (or ` value`) when the body has them
    /// contiguous.
    fn write_canonical(&self, sample: &Sample, out: &mut Vec<u8>) {
        let body = self.body;
        let (head_end, tail_start) = if sample.flags.contains(SampleFlags::BRACES) {
            (sample.labels.end, sample.labels.end)
        } else {
            (sample.name.end, sample.name.end)
        };
        out.extend_from_slice(
            Span {
                start: sample.name.start,
                end: head_end,
            }
            .of(body),
        );
        if let Some(target) = self.target {
            if !sample.flags.contains(SampleFlags::BRACES) {
                out.push(b'{');
            } else if !sample.labels.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(target);
            if !sample.flags.contains(SampleFlags::BRACES) {
                out.push(b'}');
            }
        }
        let gap = if sample.flags.contains(SampleFlags::BRACES) {
            2
        } else {
            1
        };
        if sample.value_form == ValueForm::Decimal
            && sample.value.start == tail_start + gap
            && body.get(sample.value.start as usize - 1) == Some(&b' ')
        {
            out.extend_from_slice(
                Span {
                    start: tail_start,
                    end: sample.value.end,
                }
                .of(body),
            );
        } else {
            if sample.flags.contains(SampleFlags::BRACES) {
                out.push(b'}');
            }
            self.write_value(sample, out);
        }
    }

    fn write_value(&self, sample: &Sample, out: &mut Vec<u8>) {
        out.push(b' ');
        match sample.value_form {
            ValueForm::Decimal => out.extend_from_slice(sample.value.of(self.body)),
            ValueForm::NaN => out.extend_from_slice(b"NaN"),
            ValueForm::PosInf => out.extend_from_slice(b"+Inf"),
            ValueForm::NegInf => out.extend_from_slice(b"-Inf"),
        }
    }

    /// Re-tokenises a label set: escapes quoted names, drops blanks and
    /// trailing commas, renames a label that clashes with the target.
    fn write_labels_slow(
        &self,
        labels: &[u8],
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        candidate: &mut Vec<u8>,
    ) {
        let mut written = 0;
        for label in LabelIter::new(labels) {
            out.push(if written == 0 { b'{' } else { b',' });
            written += 1;
            scratch.clear();
            let name = label.name(scratch);
            if self.target.is_some() && name == self.label {
                // Prometheus (scrape.go): prefix `exported_` until unused.
                candidate.clear();
                candidate.extend_from_slice(self.label);
                loop {
                    candidate.splice(0..0, b"exported_".iter().copied());
                    if !has_label(labels, candidate, scratch) {
                        break;
                    }
                }
                out.extend_from_slice(candidate);
            } else {
                out.extend_from_slice(name);
            }
            out.extend_from_slice(b"=\"");
            out.extend_from_slice(label.value);
            out.push(b'"');
        }
        if let Some(target) = self.target {
            out.push(if written == 0 { b'{' } else { b',' });
            written += 1;
            out.extend_from_slice(target);
        }
        if written > 0 {
            out.push(b'}');
        }
    }
}

fn om_millis(timestamp: &[u8]) -> Option<i64> {
    match parse_int_timestamp(timestamp) {
        Some(seconds) => seconds.checked_mul(1000),
        None => om_timestamp_millis(timestamp),
    }
}

/// Whether a validated label set has a label named `name` (after escaping).
fn has_label(labels: &[u8], name: &[u8], scratch: &mut Vec<u8>) -> bool {
    LabelIter::new(labels).any(|label| {
        scratch.clear();
        label.name(scratch) == name
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Merges `(container, body)` pairs; None is the sidecar's own source.
    fn merge(inputs: &[(Option<&str>, &str)]) -> (String, Vec<(usize, String)>) {
        let snapshots: Vec<Snapshot> = inputs
            .iter()
            .map(|(_, body)| {
                let mut snapshot = Snapshot::new();
                snapshot.replace(&mut body.as_bytes().to_vec());
                snapshot.index().expect("test body parses");
                snapshot
            })
            .collect();
        let sources: Vec<Source<'_>> = snapshots
            .iter()
            .zip(inputs)
            .map(|(snapshot, (container, _))| Source {
                container: *container,
                snapshot,
            })
            .collect();
        let mut merger = Merger::new("container");
        let mut out = Vec::new();
        merger.merge(&sources, &mut out);
        let conflicts = merger
            .conflicts()
            .map(|(source, name)| (source, String::from_utf8_lossy(name).into_owned()))
            .collect();
        (String::from_utf8(out).expect("utf-8"), conflicts)
    }

    const OWN_UP: &str = "# HELP multiplexer_up Up.\n# TYPE multiplexer_up gauge\nmultiplexer_up{container=\"a\"} 1\n";

    /// Rule 0 (issue 11, item 5): a container's family named like one of the
    /// sidecar's own loses whatever its type, is reported, and the own
    /// family keeps its type and HELP.
    #[test]
    fn own_metric_names_are_reserved() {
        struct Case {
            what: &'static str,
            inputs: &'static [(Option<&'static str>, &'static str)],
            output: &'static str,
            conflicts: &'static [(usize, &'static str)],
        }
        let own_only = "# HELP multiplexer_up Up.\n# TYPE multiplexer_up gauge\nmultiplexer_up{container=\"a\"} 1\n";
        let cases = [
            Case {
                what: "a container's histogram of the same name (it used to win, first source)",
                inputs: &[
                    (
                        Some("a"),
                        "# TYPE multiplexer_up histogram\nmultiplexer_up_bucket{le=\"+Inf\"} 1\nmultiplexer_up_sum 1\nmultiplexer_up_count 1\n",
                    ),
                    (None, OWN_UP),
                ],
                output: own_only,
                conflicts: &[(0, "multiplexer_up")],
            },
            Case {
                what: "a container's family of the same type loses too",
                inputs: &[
                    (Some("a"), "# HELP multiplexer_up Mine.\n# TYPE multiplexer_up gauge\nmultiplexer_up 0\n"),
                    (None, OWN_UP),
                ],
                output: own_only,
                conflicts: &[(0, "multiplexer_up")],
            },
            Case {
                what: "a counter, gauge or untyped conflict is not written untyped",
                inputs: &[
                    (Some("a"), "multiplexer_up 0\n"),
                    (Some("b"), "# TYPE multiplexer_up counter\nmultiplexer_up 0\n"),
                    (None, OWN_UP),
                ],
                output: own_only,
                conflicts: &[(0, "multiplexer_up"), (1, "multiplexer_up")],
            },
            Case {
                what: "a reserved name the sidecar does not export is the container's",
                inputs: &[(Some("a"), "multiplexer_other 0\n"), (None, OWN_UP)],
                output: "# TYPE multiplexer_other untyped\nmultiplexer_other{container=\"a\"} 0\n# HELP multiplexer_up Up.\n# TYPE multiplexer_up gauge\nmultiplexer_up{container=\"a\"} 1\n",
                conflicts: &[],
            },
            Case {
                what: "shared names (process_*) still merge by the usual rules",
                inputs: &[
                    (Some("a"), "# TYPE process_open_fds gauge\nprocess_open_fds 9\n"),
                    (None, "# TYPE process_open_fds gauge\nprocess_open_fds 7\n"),
                ],
                output: "# TYPE process_open_fds gauge\nprocess_open_fds{container=\"a\"} 9\nprocess_open_fds 7\n",
                conflicts: &[],
            },
            Case {
                what: "a container's histogram whose _count would swallow an own family is dropped",
                inputs: &[
                    (
                        Some("a"),
                        "# TYPE multiplexer_x histogram\nmultiplexer_x_bucket{le=\"+Inf\"} 1\nmultiplexer_x_sum 1\nmultiplexer_x_count 1\n",
                    ),
                    (None, "# TYPE multiplexer_x_total counter\nmultiplexer_x_total 1\n# TYPE multiplexer_x_count gauge\nmultiplexer_x_count 2\n"),
                ],
                output: "# TYPE multiplexer_x_total counter\nmultiplexer_x_total 1\n# TYPE multiplexer_x_count gauge\nmultiplexer_x_count 2\n",
                conflicts: &[(0, "multiplexer_x")],
            },
        ];
        for case in &cases {
            let (output, conflicts) = merge(case.inputs);
            assert_eq!(output, case.output, "{}", case.what);
            let expected: Vec<(usize, String)> = case
                .conflicts
                .iter()
                .map(|&(source, name)| (source, name.to_string()))
                .collect();
            assert_eq!(conflicts, expected, "{}", case.what);
        }
    }

    fn indexed(body: &[u8], format: super::super::Format) -> Snapshot {
        let mut snapshot = Snapshot::new();
        snapshot.replace_as(&mut body.to_vec(), format);
        snapshot.index().expect("fixture parses");
        snapshot
    }

    /// Pieces of any size concatenate to what one whole merge writes, in
    /// either output format and from sources of both, and none is much
    /// larger than asked.
    #[test]
    fn merging_in_pieces_writes_the_same_output() {
        use super::super::Format;
        let snapshots = [
            indexed(
                include_bytes!("../../tests/fixtures/node_exporter.prom"),
                Format::Text,
            ),
            indexed(
                include_bytes!("../../tests/fixtures/python_client_openmetrics.txt"),
                Format::Text,
            ),
            indexed(
                include_bytes!("../../tests/fixtures/edge_labels.prom"),
                Format::Text,
            ),
            indexed(
                include_bytes!("../../tests/fixtures/edge_container_label.prom"),
                Format::Text,
            ),
            indexed(
                include_bytes!("../../tests/fixtures/node_exporter.pb"),
                Format::Protobuf,
            ),
            indexed(
                include_bytes!("../../tests/fixtures/client_golang_native.pb"),
                Format::Protobuf,
            ),
        ];
        let names = ["node", "python", "edge", "container", "node_pb", "native"];
        let mut sources: Vec<Source<'_>> = snapshots
            .iter()
            .zip(names)
            .map(|(snapshot, name)| Source {
                container: Some(name),
                snapshot,
            })
            .collect();
        sources.push(Source {
            container: None,
            snapshot: &snapshots[2],
        });
        let mut merger = Merger::new("container");
        for format in [OutputFormat::Text, OutputFormat::Protobuf] {
            let mut whole = Vec::new();
            merger.merge_as(&sources, format, &mut whole);
            assert!(whole.len() > 50_000, "{}", whole.len());
            for piece_bytes in [1, 100, 4096, 65_536, usize::MAX] {
                let mut joined = Vec::new();
                let mut largest = 0;
                let mut piece = Vec::new();
                merger.merge_in_pieces(&sources, format, &mut piece, piece_bytes, &mut |bytes| {
                    largest = largest.max(bytes.len());
                    joined.extend_from_slice(bytes);
                });
                assert!(piece.is_empty());
                assert!(joined == whole, "{format:?} in pieces of {piece_bytes}");
                if piece_bytes < whole.len() {
                    // Text: one family head and one line past the size
                    // asked. Protobuf: one metric, or a run of copied ones.
                    let slack = match format {
                        OutputFormat::Text => 2048,
                        OutputFormat::Protobuf => piece_bytes.max(16 * 1024),
                    };
                    assert!(
                        largest < piece_bytes + slack,
                        "{format:?}: {largest} for {piece_bytes}"
                    );
                }
            }
        }
    }
}
