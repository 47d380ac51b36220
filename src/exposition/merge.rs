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

use super::escaping::{escape_name, is_legacy_name, write_name, write_quoted};
use super::labels::LabelIter;
use super::negotiate::{Escaping, OutputFormat, OutputKind};
use super::openmetrics::{
    fingerprint_text, hash_key, mix, stamp_of_millis, stamp_of_seconds, takes_exemplar,
    value_breaks, write_seconds_of_millis, Check, CheckedSample, GroupHash, HashSet as SeriesSet,
    IdentityHasher, OpenMetricsType, Suffix, SuffixByLength, ALL_SUFFIXES,
    EXEMPLAR_LABEL_CHARACTERS,
};
use super::parse::{ExemplarSpans, IndexView, Kind, PlainSample, Sample, SampleFlags, Span};
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
    escape_label_value, find_byte, hash_name, om_millis, parse_int_timestamp, same_bytes,
    scan_quote_stop, unescape_into, write_help, write_label_value, NameTable, ValueForm,
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

/// One source's family, as a part of a merged family: 12 bytes, one per
/// family of each source (its merged family's number is held apart, in
/// `Merger::destinations`, only until the contributions are grouped).
#[derive(Clone, Copy)]
struct Contribution {
    source: u32,
    /// The family's number in its source's index (OpenMetrics output from
    /// an OpenMetrics body: its parent family's number when `parent`).
    family: u32,
    /// Its type in its source.
    kind: Kind,
    resolution: Resolution,
    /// OpenMetrics output: its type there, and whether `family` numbers a
    /// parent family ([`PARENT`]), or a counter written whole as `unknown`
    /// ([`WHOLE`]).
    om: OpenMetricsType,
    item: u8,
}

// What the memory budget counts a family at (`MERGE_BYTES_PER_FAMILY`).
const _: () = assert!(std::mem::size_of::<Contribution>() == 12);
const _: () = assert!(std::mem::size_of::<Merged>() == 16);

/// `Merger::name_kinds`' bits: a family has an item that is not a counter,
/// or a text counter `x_total` named `x`; for rule 3, its name ends with a
/// suffix of [`ALL_SUFFIXES`] (`x_count`), and a family is named as another
/// with such a suffix (both `x` and `x_count` then).
const NOT_COUNTER: u8 = 1;
const STRIPPED_COUNTER: u8 = 2;
const SUFFIXED: u8 = 4;
const MAY_CLASH: u8 = 8;

/// `Contribution::item`'s bits.
const PARENT: u8 = 1;
const WHOLE: u8 = 2;

impl Contribution {
    fn item(parent: bool, whole: bool) -> u8 {
        (u8::from(parent) * PARENT) | (u8::from(whole) * WHOLE)
    }

    fn parent(&self) -> bool {
        self.item & PARENT != 0
    }

    fn whole(&self) -> bool {
        self.item & WHOLE != 0
    }
}

/// One merged family: 16 bytes, one per distinct name.
struct Merged {
    kind: Kind,
    /// OpenMetrics output: its type.
    om: OpenMetricsType,
    /// Named as OpenMetrics names it ([`openmetrics_item`]).
    openmetrics: bool,
    /// The name as the output's escaping writes it, in `Merger::written`;
    /// empty when it is the source's name as it is (legacy names, and every
    /// name under `allow-utf-8`).
    written: Span,
    /// A source without a container has this family and its name has the
    /// reserved prefix (rule 0).
    reserved: bool,
    /// Its first contribution in `Merger::contributions` (the one its
    /// name is read from): as pushed, then once grouped (the same record,
    /// the grouping being stable), where its last is before the next
    /// family's first ([`Merger::group`]).
    first: u32,
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
    /// Every source's families, grouped by merged family (in source order
    /// within one) before conflicts are resolved.
    contributions: Vec<Contribution>,
    /// Each contribution's merged family as it is pushed, then where it
    /// goes when grouped (a stable counting sort, applied in place).
    destinations: Vec<u32>,
    conflict_names: Vec<u8>,
    conflicts: Vec<(usize, Span)>,
    /// `,label="escaped container"` and `{label="escaped container"}` of
    /// each source, in the two forms a sample line takes them.
    source_labels: Vec<u8>,
    source_label_spans: Vec<Option<TargetSpans>>,
    /// Each source's `,label="escaped container"` as the writer copies it
    /// ([`SampleWriter::write_target_comma`]), made once a build.
    source_label_blocks: Vec<Option<[u8; TARGET_BLOCK]>>,
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
    /// OpenMetrics output: each OpenMetrics body's families by parent, the
    /// order a contribution's samples are written in `(position, sample
    /// number)`, the rules' check, and the names families claimed.
    children: Children,
    order: Vec<(u32, u32)>,
    /// The remembered contributions of the family being written in one
    /// walk, by key ([`Merger::write_known_family_openmetrics`]).
    known: Vec<(u64, Remembered)>,
    /// OpenMetrics output: what each merged family holds
    /// ([`NOT_COUNTER`], [`STRIPPED_COUNTER`]) and how its name may clash
    /// ([`SUFFIXED`], [`MAY_CLASH`]), and whether a stripped counter must
    /// move to its whole name.
    name_kinds: Vec<u8>,
    moves_counters: bool,
    /// The output's escaping scheme, and the names it escaped.
    escaping: Escaping,
    written: Vec<u8>,
    /// OpenMetrics output, a family written as `unknown` families: the
    /// series of the one being written (a series twice is written once).
    series_seen: SeriesSet,
    /// Boxed: a family's check is taken out while the merger is borrowed
    /// and put back after, a pointer moved rather than the whole check
    /// (and a placeholder made and dropped), every family.
    check: Option<Box<Check>>,
    /// OpenMetrics output: the text contributions remembered from the last
    /// build (see [`Remembered`]), those the family being checked adds,
    /// and the number of the build.
    remembered: RememberedSet,
    pending: Vec<(u64, Remembered)>,
    build: u32,
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
            destinations: Vec::new(),
            conflict_names: Vec::new(),
            conflicts: Vec::new(),
            source_labels: Vec::new(),
            source_label_spans: Vec::new(),
            source_label_blocks: Vec::new(),
            scratch: Vec::new(),
            candidate: Vec::new(),
            proto_labels: Vec::new(),
            proto_targets: Vec::new(),
            up: UpConverter::default(),
            converted: Vec::new(),
            converted_spans: Vec::new(),
            help: Vec::new(),
            children: Children::default(),
            order: Vec::new(),
            known: Vec::new(),
            name_kinds: Vec::new(),
            moves_counters: false,
            escaping: Escaping::Underscores,
            written: Vec::new(),
            series_seen: SeriesSet::default(),
            check: None,
            remembered: RememberedSet::default(),
            pending: Vec::new(),
            build: 0,
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

    /// Clears `out` and writes the merged exposition of `sources` as
    /// `kind` says: text 0.0.4 (protobuf sources converted down),
    /// OpenMetrics 1.0 (see `openmetrics.rs`) or delimited protobuf (text
    /// sources converted up). The same families, conflicts and order in
    /// text and protobuf; OpenMetrics groups families by its own names.
    pub fn merge_as(
        &mut self,
        sources: &[Source<'_>],
        kind: impl Into<OutputKind>,
        out: &mut Vec<u8>,
    ) {
        self.merge_to(sources, kind.into(), out, None);
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
        kind: impl Into<OutputKind>,
        piece: &mut Vec<u8>,
        piece_bytes: usize,
        emit: &mut dyn FnMut(&[u8]),
    ) {
        self.merge_to(sources, kind.into(), piece, Some((piece_bytes, emit)));
        if !piece.is_empty() {
            emit(piece);
            piece.clear();
        }
    }

    fn merge_to(
        &mut self,
        sources: &[Source<'_>],
        kind: OutputKind,
        out: &mut Vec<u8>,
        mut pieces: Option<Pieces<'_>>,
    ) {
        let format = kind.format;
        self.escaping = kind.escaping;
        self.up.escaping = kind.escaping;
        self.written.clear();
        out.clear();
        self.table.clear();
        self.merged.clear();
        self.contributions.clear();
        self.destinations.clear();
        self.conflict_names.clear();
        self.conflicts.clear();
        self.source_labels.clear();
        self.source_label_spans.clear();
        self.source_label_blocks.clear();
        self.proto_labels.clear();
        self.proto_targets.clear();

        // One contribution per family of each source, at most: held at
        // that, not at the next power of two (the budget counts them).
        let families = sources
            .iter()
            .filter(|source| source.snapshot.is_indexed())
            .map(|source| source.snapshot.family_count())
            .sum();
        self.contributions.reserve_exact(families);
        self.destinations.reserve_exact(families);

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
            self.source_label_blocks
                .push(label.and_then(|spans| target_block(spans.comma.of(&self.source_labels))));
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
            if !source.snapshot.is_indexed() || format == OutputFormat::OpenMetrics {
                continue;
            }
            let view = source.snapshot.view();
            let label_len = label.map_or(0, |l| (l.braced.end - l.braced.start) as usize);
            estimate += view.body().len() + view.sample_count() * label_len;
            for family_index in 0..view.family_count() {
                let family = view.family(family_index as u32);
                let id = self.merged.len() as u32;
                let legacy = self.escaping != Escaping::AllowUtf8
                    && legacy_by_sample(view, family_index as u32);
                let written = escape_written(family.name, self.escaping, legacy, &mut self.written);
                let (key, hash) = if written.is_empty() {
                    (family.name, family.hash)
                } else {
                    let key = written.of(&self.written);
                    (key, hash_name(key))
                };
                let (merged_list, firsts, written_names) =
                    (&self.merged, &self.contributions, &self.written);
                let merged = self.table.find_or_insert(hash, id, |m| {
                    let m = &merged_list[m as usize];
                    same_bytes(merged_key(sources, firsts, m, written_names), key)
                });
                let merged = merged.unwrap_or_else(|| {
                    self.merged.push(Merged {
                        kind: family.kind,
                        om: OpenMetricsType::None,
                        openmetrics: false,
                        written,
                        reserved: false,
                        first: self.contributions.len() as u32,
                    });
                    id
                });
                if source.container.is_none() && family.name.starts_with(RESERVED_PREFIX.as_bytes())
                {
                    self.merged[merged as usize].reserved = true;
                }
                self.contributions.push(Contribution {
                    source: source_index as u32,
                    family: family_index as u32,
                    kind: family.kind,
                    resolution: Resolution::Kept,
                    om: OpenMetricsType::None,
                    item: 0,
                });
                self.destinations.push(merged);
            }
        }
        if format == OutputFormat::OpenMetrics {
            self.merge_openmetrics(sources, out, &mut pieces);
            return;
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
                OutputFormat::OpenMetrics => unreachable!("written above"),
            }
        }
    }

    /// Stable counting sort of contributions by merged family, in place:
    /// each family's `first` counts its contributions, then becomes the
    /// cursor its contributions' destinations are taken from, then its
    /// first; the contributions are moved by following the permutation's
    /// cycles. No second copy of the records.
    fn group_contributions(&mut self) {
        if self.destinations.windows(2).all(|pair| pair[0] <= pair[1]) {
            // Grouped already (one source, or each family found in one
            // only): each family's first is where its run starts.
            let mut at = 0;
            for (m, merged) in self.merged.iter_mut().enumerate() {
                merged.first = at as u32;
                while self.destinations.get(at) == Some(&(m as u32)) {
                    at += 1;
                }
            }
            return;
        }
        for merged in &mut self.merged {
            merged.first = 0;
        }
        for &m in &self.destinations {
            self.merged[m as usize].first += 1;
        }
        let mut start = 0;
        for merged in &mut self.merged {
            let count = merged.first;
            merged.first = start;
            start += count;
        }
        for destination in &mut self.destinations {
            let merged = &mut self.merged[*destination as usize];
            *destination = merged.first;
            merged.first += 1;
        }
        // Each `first` is now the next family's first: shift them back.
        let mut previous = 0;
        for merged in &mut self.merged {
            previous = std::mem::replace(&mut merged.first, previous);
        }
        for i in 0..self.destinations.len() {
            loop {
                let to = self.destinations[i] as usize;
                if to == i {
                    break;
                }
                self.contributions.swap(i, to);
                self.destinations.swap(i, to);
            }
        }
    }

    /// Merged family `m`'s range of `contributions` (once grouped).
    fn group(&self, m: usize) -> Span {
        let end = self
            .merged
            .get(m + 1)
            .map_or(self.contributions.len() as u32, |next| next.first);
        Span {
            start: self.merged[m].first,
            end,
        }
    }

    fn resolve_types(&mut self, sources: &[Source<'_>]) {
        let kind_of = |c: &Contribution| c.kind;
        let is_own = |c: &Contribution| sources[c.source as usize].container.is_none();
        for m in 0..self.merged.len() {
            let range = self.group(m);
            let whole = range.start as usize..range.end as usize;
            let reserved = self.merged[m].reserved;
            // Rule 0: in a reserved family only the own sources contend.
            if reserved {
                for i in whole.clone() {
                    if !is_own(&self.contributions[i]) {
                        self.contributions[i].resolution = Resolution::Dropped;
                        self.report(sources, i);
                    }
                }
            }
            let contending = &self.contributions[whole.clone()];
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
                let c = &self.contributions[i];
                if contends(&c) && kind_of(c) != first {
                    self.contributions[i].resolution = lost;
                    self.report(sources, i);
                }
            }
        }
    }

    fn resolve_suffix_clashes(&mut self, sources: &[Source<'_>]) {
        for m in 0..self.merged.len() {
            let merged = &self.merged[m];
            let name = merged_key(sources, &self.contributions, merged, &self.written);
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
                same_bytes(
                    merged_key(sources, &self.contributions, x, &self.written),
                    base,
                )
            }) else {
                continue;
            };
            let base_index = base as usize;
            let base = &self.merged[base_index];
            let clash =
                base.kind == Kind::Histogram || (allows_summary && base.kind == Kind::Summary);
            if !clash {
                continue;
            }
            // The family that goes: this one, unless its name is reserved.
            let dropped = if merged.reserved && !base.reserved {
                self.group(base_index)
            } else {
                self.group(m)
            };
            for i in dropped.start as usize..dropped.end as usize {
                let previous = self.contributions[i].resolution;
                self.contributions[i].resolution = Resolution::Dropped;
                if previous == Resolution::Kept {
                    self.report(sources, i);
                }
            }
        }
    }

    fn report(&mut self, sources: &[Source<'_>], contribution: usize) {
        let c = self.contributions[contribution];
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
        let range = self.group(m);
        let contributions = &self.contributions[range.start as usize..range.end as usize];
        if contributions
            .iter()
            .all(|c| c.resolution == Resolution::Dropped)
        {
            return;
        }
        let name = merged_key(sources, &self.contributions, merged, &self.written);
        let help = contributions
            .iter()
            .filter(|c| c.resolution != Resolution::Dropped)
            .find_map(|c| {
                let view = sources[c.source as usize].snapshot.view();
                let family = view.family(c.family);
                Some((family.help?, family.help_verbatim, view))
            });
        if let Some((help, verbatim, view)) = help {
            out.extend_from_slice(b"# HELP ");
            write_name(name, self.escaping, false, out);
            out.push(b' ');
            match view {
                // Its parser saw no backslash (nor quote): no scan again.
                SourceView::Text(_) if verbatim => out.extend_from_slice(help),
                SourceView::Text(view) => write_help(help, view.is_openmetrics(), out),
                SourceView::Protobuf(_) => down::escape_help(help, out),
            }
            out.push(b'\n');
        }
        // A family no source gave a TYPE line gets none (as a direct scrape
        // shows it); a conflict's `untyped` is written.
        let typed = merged.kind != Kind::Untyped
            || contributions.iter().any(|c| {
                c.resolution != Resolution::Dropped
                    && sources[c.source as usize]
                        .snapshot
                        .view()
                        .family(c.family)
                        .typed
            });
        if typed {
            out.extend_from_slice(b"# TYPE ");
            write_name(name, self.escaping, false, out);
            out.push(b' ');
            out.extend_from_slice(merged.kind.as_str().as_bytes());
            out.push(b'\n');
        }

        for i in range.start as usize..range.end as usize {
            let c = self.contributions[i];
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
                            &mut |out| {
                                emit_if_full(out, pieces);
                            },
                        );
                    }
                    continue;
                }
            };
            let writer = SampleWriter {
                body: view.body(),
                openmetrics: view.is_openmetrics(),
                output_openmetrics: false,
                target: comma.and_then(|comma| comma.get(1..)),
                target_comma: comma.unwrap_or(b""),
                target_comma_block: self.source_label_blocks[c.source as usize].as_ref(),
                target_braced: spans.map_or(&[], |spans| spans.braced.of(&self.source_labels)),
                label: &self.label,
                check_labels: comma.is_some() && view.may_have_label(&self.label),
                escaping: self.escaping,
                family_written: name,
                family_raw_len: view.family(c.family).name.len(),
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
        let range = self.group(m);
        let contributions = &self.contributions[range.start as usize..range.end as usize];
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
        let range = self.group(m);
        let contributions = &self.contributions[range.start as usize..range.end as usize];
        let name = merged_key(sources, &self.contributions, merged, &self.written);
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
        // The unit of the first kept OpenMetrics family that declared one.
        let unit = kept().find_map(|c| match sources[c.source as usize].snapshot.view() {
            SourceView::Text(view) => view
                .parent(c.family)
                .and_then(|parent| view.openmetrics_family(parent).unit)
                .filter(|unit| !unit.is_empty()),
            SourceView::Protobuf(_) => None,
        });
        len += family_header_len(name, help, family_type, unit);
        put_varint(len as u64, out);
        put_family_header(name, help, family_type, unit, out);
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

/// Hands `out` on and clears it if the merge is in pieces and it is full;
/// returns whether it did.
fn emit_if_full(out: &mut Vec<u8>, pieces: &mut Option<Pieces<'_>>) -> bool {
    if let Some((piece_bytes, emit)) = pieces {
        if out.len() >= *piece_bytes {
            emit(out);
            out.clear();
            return true;
        }
    }
    false
}

/// Under an untyped family (a downgrade), every simple metric's value moves
/// to the untyped field: the type a protobuf contribution of `source_type`
/// is rewritten as.
fn retype(source_type: MetricType, kind: Kind) -> Option<MetricType> {
    (metric_kind(source_type) != kind).then_some(metric_type(kind))
}

/// `name` escaped for the output into `written` when the output writes it
/// otherwise than the source did; an empty span when it is written as it is
/// (`legacy`: the caller knows it is a legacy name, see [`legacy_by_sample`]).
fn escape_written(name: &[u8], escaping: Escaping, legacy: bool, written: &mut Vec<u8>) -> Span {
    debug_assert!(!legacy || is_legacy_name(name, false));
    if escaping == Escaping::AllowUtf8 || legacy || is_legacy_name(name, false) {
        return Span::default();
    }
    let start = written.len();
    escape_name(name, escaping, false, written);
    Span::new(start, written.len())
}

/// A merged family's name as the output writes it (escaped, or as its
/// first source wrote it).
fn merged_key<'a>(
    sources: &[Source<'a>],
    contributions: &[Contribution],
    merged: &Merged,
    written: &'a [u8],
) -> &'a [u8] {
    if !merged.written.is_empty() {
        return merged.written.of(written);
    }
    let first = &contributions[merged.first as usize];
    if merged.openmetrics {
        name_of_item(
            sources,
            first.source,
            first.family,
            first.parent(),
            first.whole(),
        )
    } else {
        name_of(sources, first.source, first.family)
    }
}

/// A merged family's name as the output writes it ([`merged_key`]), and
/// whether that is its escaped form (`Merged::written`).
#[derive(Clone, Copy)]
struct FamilyName<'n> {
    written: &'n [u8],
    escaped: bool,
}

impl<'n> FamilyName<'n> {
    fn of(
        sources: &[Source<'n>],
        contributions: &[Contribution],
        merged: &Merged,
        written: &'n [u8],
    ) -> FamilyName<'n> {
        FamilyName {
            written: merged_key(sources, contributions, merged, written),
            escaped: !merged.written.is_empty(),
        }
    }

    /// The name of OpenMetrics contribution `c`'s item. Unless the
    /// family's name is escaped, it is that name: each contribution found
    /// the family by its own name (one the output escapes gives the family
    /// its escaped form, in `Merger::openmetrics_family`), so it is not
    /// read again.
    fn of_item(self, sources: &[Source<'n>], c: &Contribution) -> &'n [u8] {
        let name = if self.escaped {
            name_of_item(sources, c.source, c.family, c.parent(), c.whole())
        } else {
            self.written
        };
        debug_assert_eq!(
            name,
            name_of_item(sources, c.source, c.family, c.parent(), c.whole())
        );
        name
    }
}

/// The name of the family numbered `family` in source `source`'s index.
#[inline]
fn name_of<'a>(sources: &[Source<'a>], source: u32, family: u32) -> &'a [u8] {
    sources[source as usize].snapshot.view().name(family)
}

/// Writes the samples of one source.
struct SampleWriter<'a> {
    body: &'a [u8],
    /// The source is OpenMetrics (timestamps in seconds).
    openmetrics: bool,
    /// The output is OpenMetrics: timestamps in seconds, exemplars.
    output_openmetrics: bool,
    /// `label="container"`, when the label is added.
    target: Option<&'a [u8]>,
    /// `,label="container"` and `{label="container"}` (empty when none).
    target_comma: &'a [u8],
    /// `target_comma` and zeros after it, when it fits.
    target_comma_block: Option<&'a [u8; TARGET_BLOCK]>,
    target_braced: &'a [u8],
    label: &'a [u8],
    /// The body may have a label named like the target: look for it.
    check_labels: bool,
    /// How names are escaped, the family's name as the output writes it,
    /// and the length of its name in the source (a quoted sample name is
    /// written as the written family name and its own suffix).
    escaping: Escaping,
    family_written: &'a [u8],
    family_raw_len: usize,
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
        self.write_with(sample, None, out, pending, scratch, candidate);
    }

    /// [`Self::write`], with an exemplar to write after the value
    /// (OpenMetrics output only; the caller decides where one may go).
    /// The common line is written here, inlined into the loops over
    /// samples; any other by [`Self::write_other`].
    #[inline(always)]
    fn write_with(
        &self,
        sample: &Sample,
        exemplar: Option<ExemplarSpans>,
        out: &mut Vec<u8>,
        pending: &mut Span,
        scratch: &mut Vec<u8>,
        candidate: &mut Vec<u8>,
    ) {
        let labels = sample.labels.of(self.body);
        let retokenise = sample
            .flags
            .intersects(SampleFlags::SLOW_LABELS | SampleFlags::QUOTED_NAME)
            || (self.check_labels && canonical_has_label(labels, self.label, scratch));
        if !retokenise && sample.flags.contains(SampleFlags::PLAIN_END) {
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
                match (braces, labels.is_empty()) {
                    (false, _) => out.extend_from_slice(self.target_braced),
                    (true, false) => self.write_target_comma(out),
                    (true, true) => {
                        out.extend_from_slice(self.target_comma.get(1..).unwrap_or(&[]))
                    }
                }
            }
            // The value is followed by its newline (PLAIN_END).
            self.copy_later(pending, head_end, sample.value.end + 1, out);
            return;
        }
        self.write_other(
            sample,
            exemplar,
            !retokenise,
            out,
            pending,
            scratch,
            candidate,
        );
    }

    /// [`Self::write_with`] of a line that is not copied as it is: other
    /// value forms, timestamps, exemplars, labels to tokenise again.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn write_other(
        &self,
        sample: &Sample,
        exemplar: Option<ExemplarSpans>,
        canonical: bool,
        out: &mut Vec<u8>,
        pending: &mut Span,
        scratch: &mut Vec<u8>,
        candidate: &mut Vec<u8>,
    ) {
        let labels = sample.labels.of(self.body);
        self.flush(pending, out);
        if canonical {
            self.write_canonical(sample, out);
        } else {
            let raw_name = sample.name.of(self.body);
            let mut opened = false;
            if sample.flags.contains(SampleFlags::QUOTED_NAME) {
                scratch.clear();
                unescape_into(raw_name, scratch);
                if self.escaping == Escaping::AllowUtf8 {
                    if is_legacy_name(scratch, false) {
                        out.extend_from_slice(scratch);
                    } else {
                        out.push(b'{');
                        write_quoted(scratch, out);
                        opened = true;
                    }
                } else {
                    out.extend_from_slice(self.family_written);
                    out.extend_from_slice(scratch.get(self.family_raw_len..).unwrap_or(&[]));
                }
            } else {
                out.extend_from_slice(raw_name);
            }
            self.write_labels_slow(labels, opened, out, scratch, candidate);
            self.write_value(sample, out);
        }
        if !sample.timestamp.is_empty() {
            let timestamp = sample.timestamp.of(self.body);
            match (self.openmetrics, self.output_openmetrics) {
                (true, false) => {
                    if let Some(millis) = om_millis(timestamp) {
                        // Text timestamps have no sign (promlex.l). One
                        // before 1970 (or past int64 milliseconds, which
                        // Prometheus reads as i64::MIN) is a sample the
                        // TSDB drops as out of bounds; 0 is dropped alike.
                        out.push(b' ');
                        out.extend_from_slice(itoa::Buffer::new().format(millis.max(0)).as_bytes());
                    }
                }
                (false, true) => {
                    if let Some(millis) = parse_int_timestamp(timestamp) {
                        out.push(b' ');
                        write_seconds_of_millis(millis, out);
                    }
                }
                _ => {
                    out.push(b' ');
                    out.extend_from_slice(timestamp);
                }
            }
        }
        if let Some(exemplar) = exemplar {
            self.write_exemplar(&exemplar, out, scratch);
        }
        out.push(b'\n');
    }

    /// ` # {labels} value [timestamp]`, labels re-tokenised (names escaped
    /// as the sample's are), the value and timestamp as the source wrote
    /// them (OpenMetrics, the only source of exemplars).
    fn write_exemplar(&self, exemplar: &ExemplarSpans, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
        out.extend_from_slice(b" # {");
        for (i, label) in LabelIter::new(exemplar.labels.of(self.body)).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let name = label.unescaped_name(scratch);
            write_name(name, self.escaping, true, out);
            out.extend_from_slice(b"=\"");
            write_label_value(label.value, out);
            out.push(b'"');
        }
        out.extend_from_slice(b"} ");
        out.extend_from_slice(exemplar.value.of(self.body));
        if !exemplar.timestamp.is_empty() {
            out.push(b' ');
            out.extend_from_slice(exemplar.timestamp.of(self.body));
        }
    }

    /// [`Self::write_with`]'s common line, of a sample the index found
    /// plain ([`PlainSample`]) in a body whose labels need no look for the
    /// target's (`check_labels` false): `name{labels` + `,target` +
    /// `} value\n`, without the sample decoded.
    #[inline(always)]
    fn write_plain(&self, sample: &PlainSample, out: &mut Vec<u8>, pending: &mut Span) {
        self.copy_later(pending, sample.name.start, sample.labels_end, out);
        if self.target.is_some() {
            self.flush(pending, out);
            self.write_target_comma(out);
        }
        // The value is followed by its newline.
        self.copy_later(pending, sample.labels_end, sample.value.end + 1, out);
    }

    /// `,label="container"`, which most lines take: copied as one block of
    /// constant length, which the compiler writes inline, then cut to its
    /// length. A call to `memcpy` for it cost more than the copy.
    #[inline(always)]
    fn write_target_comma(&self, out: &mut Vec<u8>) {
        match self.target_comma_block {
            Some(block) => {
                let end = out.len() + self.target_comma.len();
                out.extend_from_slice(block);
                out.truncate(end);
            }
            None => out.extend_from_slice(self.target_comma),
        }
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
        opened: bool,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        candidate: &mut Vec<u8>,
    ) {
        // `{"quoted.name"` is already written when `opened`.
        let mut written = usize::from(opened);
        for label in LabelIter::new(labels) {
            out.push(if written == 0 { b'{' } else { b',' });
            written += 1;
            let name = label.unescaped_name(scratch);
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
                write_name(name, self.escaping, true, out);
            }
            out.extend_from_slice(b"=\"");
            write_label_value(label.value, out);
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

/// Whether a validated label set has a label named `name` (after escaping).
/// The longest target label copied as a block (a container name of up to
/// 35 bytes after `,container="`).
const TARGET_BLOCK: usize = 48;

/// `target` and zeros after it, as [`SampleWriter::write_target_comma`]
/// copies it; None when it is longer than a block.
fn target_block(target: &[u8]) -> Option<[u8; TARGET_BLOCK]> {
    let mut block = [0; TARGET_BLOCK];
    block.get_mut(..target.len())?.copy_from_slice(target);
    Some(block)
}

fn has_label(labels: &[u8], name: &[u8], scratch: &mut Vec<u8>) -> bool {
    LabelIter::new(labels).any(|label| {
        scratch.clear();
        label.name(scratch) == name
    })
}

/// [`has_label`] of a label set without [`SampleFlags::SLOW_LABELS`]: its
/// names are unquoted, so a label named `name` puts those bytes in the
/// set. Most sets lack them (the body's label bloom asks for the look
/// when another name shares `name`'s bit): found by a search of them,
/// without tokenising the set. Not inlined: most bodies never ask, and
/// the writer's loop is smaller without it.
#[inline(never)]
fn canonical_has_label(labels: &[u8], name: &[u8], scratch: &mut Vec<u8>) -> bool {
    contains_bytes(labels, name) && has_label(labels, name, scratch)
}

/// Whether `needle` (not empty) occurs in `haystack`: each of its first
/// byte found eight bytes at a time, then compared whole.
fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    let mut at = 0;
    while at + needle.len() <= haystack.len() {
        at = find_byte(haystack, at, first);
        match haystack.get(at..at + needle.len()) {
            Some(here) if same_bytes(here, needle) => return true,
            Some(_) => at += 1,
            None => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A label set holds the added label's name only if it has its bytes;
    /// bytes found elsewhere (a value, a longer name) are told apart by
    /// the tokenising fallback.
    #[test]
    fn a_label_is_found_in_a_canonical_set_by_its_bytes_first() {
        let mut scratch = Vec::new();
        let has = |labels: &str, scratch: &mut Vec<u8>| {
            let fast = canonical_has_label(labels.as_bytes(), b"container", scratch);
            assert_eq!(
                fast,
                has_label(labels.as_bytes(), b"container", scratch),
                "{labels}"
            );
            fast
        };
        assert!(has("container=\"x\"", &mut scratch));
        assert!(has("a=\"1\",container=\"x\"", &mut scratch));
        assert!(has("a=\"contain\",container=\"\"", &mut scratch));
        assert!(!has("", &mut scratch));
        assert!(!has("a=\"1\",b=\"2\"", &mut scratch));
        assert!(!has("a=\"container\"", &mut scratch));
        assert!(!has(
            "a=\"x\",xcontainer=\"1\",container_x=\"2\"",
            &mut scratch
        ));
        assert!(contains_bytes(b"abcabd", b"abd"));
        assert!(contains_bytes(b"0123456789abcdef-abd", b"abd"));
        assert!(!contains_bytes(b"0123456789abcdef-ab", b"abd"));
        assert!(!contains_bytes(b"ab", b"abd"));
        assert!(contains_bytes(b"ab", b""));
    }

    /// A parent's families are found where dense parent numbers put them,
    /// and by a search where they are not (a source whose parent 1 has no
    /// family): each parent gets exactly its own, in order.
    #[test]
    fn children_are_found_with_or_without_dense_parents() {
        // (source, parent, family), as the merge pushes them: by family.
        let mut children = Children {
            list: vec![
                (0, 0, 0),
                (0, 1, 1),
                (0, 0, 2),
                (2, 0, 0),
                (2, 2, 1),
                (2, 2, 3),
            ],
            ..Children::default()
        };
        children.index();
        let of = |source, parent| {
            let c = Contribution {
                source,
                family: parent,
                kind: Kind::Untyped,
                resolution: Resolution::Kept,
                om: OpenMetricsType::None,
                item: PARENT,
            };
            children
                .of(&c)
                .iter()
                .map(|&(_, _, family)| family)
                .collect::<Vec<_>>()
        };
        assert_eq!(of(0, 0), [0, 2]);
        assert_eq!(of(0, 1), [1]);
        assert_eq!(of(0, 2), [0u32; 0]);
        assert_eq!(of(1, 0), [0u32; 0]);
        assert_eq!(of(2, 0), [0]);
        assert_eq!(of(2, 1), [0u32; 0]);
        assert_eq!(of(2, 2), [1, 3]);
        assert_eq!(of(3, 0), [0u32; 0]);
    }

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

    /// The target label is copied whole whatever its length: the writer
    /// copies it as a block up to `TARGET_BLOCK` bytes and otherwise as it
    /// is, so names on both sides of that length (and escaped ones) are
    /// written out in full.
    #[test]
    fn the_target_label_is_written_whole_at_every_length() {
        let body = "x{a=\"1\"} 1\nx{a=\"2\"} 2\n";
        let longest = TARGET_BLOCK - ",container=\"\"".len();
        let mut names: Vec<String> = (0..=longest + 4).map(|n| "c".repeat(n)).collect();
        names.push(format!("{}\"", "q".repeat(longest - 2)));
        for name in &names {
            let (out, conflicts) = merge(&[(Some(name.as_str()), body)]);
            assert!(conflicts.is_empty());
            let escaped = name.replace('"', "\\\"");
            assert_eq!(
                out,
                format!("x{{a=\"1\",container=\"{escaped}\"}} 1\nx{{a=\"2\",container=\"{escaped}\"}} 2\n"),
                "container name of {} bytes",
                name.len()
            );
        }
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
                output: "multiplexer_other{container=\"a\"} 0\n# HELP multiplexer_up Up.\n# TYPE multiplexer_up gauge\nmultiplexer_up{container=\"a\"} 1\n",
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
                Format::OpenMetrics,
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
        for format in [
            OutputFormat::Text,
            OutputFormat::OpenMetrics,
            OutputFormat::Protobuf,
        ] {
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
                        OutputFormat::Text | OutputFormat::OpenMetrics => 2048,
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

/// Whether HELP text in `form` reads the same in OpenMetrics: each escape
/// one OpenMetrics has too, and nothing it escapes left bare (what
/// [`rewrite_help`] would give back unchanged).
fn help_written_as_is(help: &[u8], form: HelpForm) -> bool {
    if form == HelpForm::Verbatim {
        return true;
    }
    let mut i = 0;
    loop {
        // The next backslash, quote or newline, eight bytes at a time.
        i = scan_quote_stop(help, i);
        match help.get(i) {
            None => return true,
            Some(b'\\') if form != HelpForm::Plain => match help.get(i + 1) {
                Some(b'\\' | b'n') => i += 2,
                Some(b'"') if form == HelpForm::OpenMetrics => i += 2,
                _ => return false,
            },
            Some(_) => return false,
        }
    }
}

/// HELP text in `form` as OpenMetrics escapes it (`scratch` holds it
/// unescaped).
fn rewrite_help(help: &[u8], form: HelpForm, scratch: &mut Vec<u8>, out: &mut Vec<u8>) {
    scratch.clear();
    match form {
        HelpForm::Plain | HelpForm::Verbatim => scratch.extend_from_slice(help),
        HelpForm::Text => unescape_help(help, false, scratch),
        HelpForm::OpenMetrics => unescape_help(help, true, scratch),
    }
    super::openmetrics::escape_help(scratch, out);
}

/// How a family's raw HELP text is escaped in its source.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HelpForm {
    /// Text 0.0.4: `\\` and `\n`.
    Text,
    /// OpenMetrics: `\\`, `\n` and `\"`.
    OpenMetrics,
    /// Protobuf: not escaped.
    Plain,
    /// A text body's HELP that holds no backslash and no quote (its parser
    /// saw): the same in every form.
    Verbatim,
}

/// One family of one source as OpenMetrics output sees it.
#[derive(Clone, Copy)]
struct OpenMetricsItem<'a> {
    name: &'a [u8],
    /// `hash_name(name)` when its parser computed it: not for a counter's
    /// name stripped of `_total`.
    hash: Option<u32>,
    om: OpenMetricsType,
    help: Option<(&'a [u8], HelpForm)>,
    unit: Option<&'a [u8]>,
}

/// The OpenMetrics family that `family` (a parent's number when `parent`)
/// of `view` is written as; `whole`: a text or protobuf counter named
/// `..._total` keeps that name as `unknown` (see [`Merger::merge_openmetrics`]).
/// Inlined, with [`openmetrics_item_as_named`]: a caller that reads its
/// name and type alone (each item's, at every build) then does not pay for
/// its HELP and unit found and handed back.
#[inline(always)]
fn openmetrics_item(
    view: SourceView<'_>,
    family: u32,
    parent: bool,
    whole: bool,
) -> OpenMetricsItem<'_> {
    let item = openmetrics_item_as_named(view, family, parent);
    if !whole {
        return item;
    }
    let f = view.family(family);
    OpenMetricsItem {
        name: f.name,
        hash: Some(f.hash),
        om: OpenMetricsType::Unknown,
        ..item
    }
}

/// The names a family of type `om` claims: its name with each suffix of
/// its type, and alone (prometheus_client's parser adds the name alone to
/// every type's suffixes).
fn claimed_suffixes(om: OpenMetricsType) -> impl Iterator<Item = &'static [u8]> + Clone {
    let suffixes = om.suffixes();
    let alone = (!suffixes.contains(&&b""[..])).then_some(&b""[..]);
    alone.into_iter().chain(suffixes.iter().copied())
}

/// Whether `name` ends with `suffix` (one of [`ALL_SUFFIXES`])
/// after at least one byte; most names are told by their last byte.
fn ends_with_suffix(name: &[u8], suffix: &[u8]) -> bool {
    name.len() > suffix.len() && name.last() == suffix.last() && name.ends_with(suffix)
}

/// Whether `name` ends with some suffix of [`ALL_SUFFIXES`] after at
/// least one byte. Most names end with a byte that no suffix ends with
/// (`_seconds`, `_bytes`): one look-up tells them, not a test per suffix.
fn ends_with_a_suffix(name: &[u8]) -> bool {
    const LAST_BYTES: [bool; 256] = {
        let mut last_bytes = [false; 256];
        let mut i = 1;
        while i < ALL_SUFFIXES.len() {
            let suffix = ALL_SUFFIXES[i];
            last_bytes[suffix[suffix.len() - 1] as usize] = true;
            i += 1;
        }
        last_bytes
    };
    name.last().is_some_and(|&last| LAST_BYTES[last as usize])
        && ALL_SUFFIXES[1..]
            .iter()
            .any(|suffix| ends_with_suffix(name, suffix))
}

/// Calls `each(item, parent, family)` for each OpenMetrics item of a
/// source in order: its families, except that an OpenMetrics body's
/// families of one parent are one item, the parent (`parent` true), given
/// with its first. `family` is the family it is given with, whose samples'
/// names start with the item's name. With `children`, each such family is
/// added there.
fn for_each_openmetrics_item(
    view: SourceView<'_>,
    source_index: u32,
    mut children: Option<&mut Vec<Child>>,
    mut each: impl FnMut(u32, bool, u32),
) {
    let mut next_parent = 0u32;
    for family in 0..view.family_count() as u32 {
        let (item, parent) = match view {
            SourceView::Text(text) => match text.parent(family) {
                Some(p) => {
                    if let Some(children) = children.as_deref_mut() {
                        children.push((source_index, p, family));
                    }
                    if p != next_parent {
                        continue;
                    }
                    next_parent += 1;
                    (p, true)
                }
                None => (family, false),
            },
            SourceView::Protobuf(_) => (family, false),
        };
        each(item, parent, family);
    }
}

/// Whether the name of an item of `view` whose 0.0.4 family (one of them)
/// is `family` is known to be a legacy name without a scan: that family's
/// first sample has an unquoted name, a legacy name that starts with the
/// item's (as every name of its samples does, see [`sample_suffix`]).
/// Else (a quoted name, no sample, protobuf) it is not known.
fn legacy_by_sample(view: SourceView<'_>, family: u32) -> bool {
    match view {
        SourceView::Text(text) => {
            let numbers = text.sample_numbers(family);
            !numbers.is_empty()
                && !text
                    .sample_flags(numbers.start)
                    .contains(SampleFlags::QUOTED_NAME)
        }
        SourceView::Protobuf(_) => false,
    }
}

/// A counter whose OpenMetrics name is its name without `_total`.
fn is_stripped_counter(
    view: SourceView<'_>,
    family: u32,
    parent: bool,
    item: &OpenMetricsItem<'_>,
) -> bool {
    !parent && item.om == OpenMetricsType::Counter && item.name.len() < view.name(family).len()
}

#[inline(always)]
fn openmetrics_item_as_named(
    view: SourceView<'_>,
    family: u32,
    parent: bool,
) -> OpenMetricsItem<'_> {
    match view {
        SourceView::Text(text) if parent => {
            let p = text.openmetrics_family(family);
            OpenMetricsItem {
                name: p.name,
                hash: Some(p.hash),
                om: OpenMetricsType::of_declared(p.declared),
                help: p
                    .help
                    .map(|help| (help, text_help_form(view, p.help_verbatim))),
                unit: p.unit,
            }
        }
        SourceView::Text(text) => {
            let f = text.family(family);
            let (om, len) = OpenMetricsType::of_text(f.kind, f.typed, f.name);
            OpenMetricsItem {
                name: &f.name[..len],
                hash: (len == f.name.len()).then_some(f.hash),
                om,
                help: f
                    .help
                    .map(|help| (help, text_help_form(view, f.help_verbatim))),
                unit: None,
            }
        }
        SourceView::Protobuf(proto) => {
            let f = proto.family(family);
            let name = f.name.of(proto.body);
            let (om, len) = OpenMetricsType::of_protobuf(f.metric_type, name);
            OpenMetricsItem {
                name: &name[..len],
                hash: (len == name.len()).then_some(f.hash),
                om,
                help: f.help.map(|help| (help.of(proto.body), HelpForm::Plain)),
                unit: None,
            }
        }
    }
}

/// [`openmetrics_item`]'s name alone, for the many callers that need no
/// more (the whole item costs its HELP and unit found and copied out).
fn openmetrics_name(view: SourceView<'_>, family: u32, parent: bool, whole: bool) -> &[u8] {
    let name = match view {
        SourceView::Text(text) if parent => text.openmetrics_family(family).name,
        _ => {
            let name = view.name(family);
            let counter = match view {
                SourceView::Text(text) => text.family_kind(family) == Kind::Counter,
                SourceView::Protobuf(_) => view.metric_type(family) == Some(MetricType::Counter),
            };
            if counter && !whole {
                &name[..OpenMetricsType::of_text(Kind::Counter, true, name).1]
            } else {
                name
            }
        }
    };
    debug_assert_eq!(name, openmetrics_item(view, family, parent, whole).name);
    name
}

/// [`openmetrics_name`] of a source's item.
fn name_of_item<'a>(
    sources: &[Source<'a>],
    source: u32,
    family: u32,
    parent: bool,
    whole: bool,
) -> &'a [u8] {
    openmetrics_name(
        sources[source as usize].snapshot.view(),
        family,
        parent,
        whole,
    )
}

/// How a source's HELP text is escaped.
fn help_form(view: SourceView<'_>) -> HelpForm {
    match view {
        SourceView::Text(text) if text.is_openmetrics() => HelpForm::OpenMetrics,
        SourceView::Text(_) => HelpForm::Text,
        SourceView::Protobuf(_) => HelpForm::Plain,
    }
}

/// How a text source's HELP text is escaped, `verbatim` as its parser told.
fn text_help_form(view: SourceView<'_>, verbatim: bool) -> HelpForm {
    if verbatim {
        HelpForm::Verbatim
    } else {
        help_form(view)
    }
}

/// A family's HELP text and how it is escaped.
fn help_of(view: SourceView<'_>, family: u32) -> Option<(&[u8], HelpForm)> {
    let f = view.family(family);
    f.help
        .map(|help| (help, text_help_form(view, f.help_verbatim)))
}

/// [`openmetrics_item`] of a source's item; inlined as it is, so that a
/// header reading a parent's HELP and unit alone pays for nothing else.
#[inline(always)]
fn item_of<'a>(
    sources: &[Source<'a>],
    source: u32,
    family: u32,
    parent: bool,
    whole: bool,
) -> OpenMetricsItem<'a> {
    openmetrics_item(
        sources[source as usize].snapshot.view(),
        family,
        parent,
        whole,
    )
}

/// A parent family's children in one source: `(source, parent, family)`
/// sorted by source and parent, families in order.
type Child = (u32, u32, u32);

impl Merger {
    /// The OpenMetrics output (see `openmetrics.rs`): families grouped by
    /// their OpenMetrics names, an OpenMetrics body's families as it
    /// declared them, conflicts resolved by the same rules as text plus
    /// the names each family claims, `# EOF` last.
    fn merge_openmetrics(
        &mut self,
        sources: &[Source<'_>],
        out: &mut Vec<u8>,
        pieces: &mut Option<Pieces<'_>>,
    ) {
        self.build = self.build.wrapping_add(1);
        self.children.clear();
        self.name_kinds.clear();
        self.moves_counters = false;
        let mut children = std::mem::take(&mut self.children.list);
        for (source_index, source) in sources.iter().enumerate() {
            if !source.snapshot.is_indexed() {
                continue;
            }
            let view = source.snapshot.view();
            let source_index = source_index as u32;
            for_each_openmetrics_item(
                view,
                source_index,
                Some(&mut children),
                |item, parent, family| {
                    self.add_openmetrics_item(sources, source_index, item, parent, family);
                },
            );
        }
        self.children.list = children;
        if self.moves_counters {
            self.move_stripped_counters(sources);
        }
        // Rule 0 looks at the sidecar's own sources (without a container)
        // alone, when there are any.
        let own = sources.iter().any(|source| source.container.is_none());
        for (c, &m) in self.contributions.iter().zip(&self.destinations) {
            if own
                && sources[c.source as usize].container.is_none()
                && name_of_item(sources, c.source, c.family, c.parent(), c.whole())
                    .starts_with(RESERVED_PREFIX.as_bytes())
            {
                self.merged[m as usize].reserved = true;
            }
        }
        // Stable: each parent's families stay in order.
        self.children.index();
        self.group_contributions();
        self.resolve_openmetrics_types(sources);
        self.resolve_openmetrics_claims(sources);
        // The escaped names are read while the writers borrow the merger.
        let written = std::mem::take(&mut self.written);
        for m in 0..self.merged.len() {
            self.write_family_openmetrics(sources, m, &written, out, pieces);
            emit_if_full(out, pieces);
        }
        self.written = written;
        let build = self.build;
        self.remembered.retain(|_, r| r.build == build);
        out.extend_from_slice(b"# EOF\n");
    }

    /// Adds an item to the family of its OpenMetrics name. A text counter
    /// `x_total` beside a family `x` that is not a counter (node_exporter's
    /// `go_memstats_alloc_bytes` gauge and `..._total` counter) cannot
    /// share the OpenMetrics name `x`, so it keeps its series whole, as
    /// `unknown` `x_total`, rather than losing them to a conflict: at once
    /// when such an `x` came first, else moved there once one comes
    /// ([`Merger::move_stripped_counters`]).
    /// `family`: the item's 0.0.4 family (its first, for a parent).
    fn add_openmetrics_item(
        &mut self,
        sources: &[Source<'_>],
        source: u32,
        item: u32,
        parent: bool,
        family: u32,
    ) {
        let view = sources[source as usize].snapshot.view();
        let named = openmetrics_item(view, item, parent, false);
        let contribution = self.contributions.len() as u32;
        let legacy = self.escaping != Escaping::AllowUtf8 && legacy_by_sample(view, family);
        let mut merged = self.openmetrics_family(
            sources,
            named.name,
            named.hash,
            named.om,
            legacy,
            contribution,
        );
        let mut this = named;
        let mut whole = false;
        let kinds = self.name_kinds[merged as usize];
        if is_stripped_counter(view, item, parent, &named) {
            if kinds & NOT_COUNTER != 0 {
                whole = true;
                this = openmetrics_item(view, item, parent, true);
                merged = self.openmetrics_family(
                    sources,
                    this.name,
                    this.hash,
                    this.om,
                    legacy,
                    contribution,
                );
            } else {
                self.name_kinds[merged as usize] |= STRIPPED_COUNTER;
            }
        } else if named.om != OpenMetricsType::Counter && kinds & NOT_COUNTER == 0 {
            if kinds & STRIPPED_COUNTER != 0 {
                // Its name is read from here on: the counters move away.
                self.merged[merged as usize].first = contribution;
                self.moves_counters = true;
            }
            self.name_kinds[merged as usize] |= NOT_COUNTER;
        }
        self.contributions.push(Contribution {
            source,
            family: item,
            kind: Kind::Untyped,
            resolution: Resolution::Kept,
            om: this.om,
            item: Contribution::item(parent, whole),
        });
        self.destinations.push(merged);
    }

    /// The family named `name` as the output writes it, new (first read
    /// from `contribution`) if no family has that name yet; `hash`:
    /// `hash_name(name)` when its parser computed it
    /// ([`OpenMetricsItem::hash`]); `legacy`: the name is known to be a
    /// legacy name.
    fn openmetrics_family(
        &mut self,
        sources: &[Source<'_>],
        name: &[u8],
        hash: Option<u32>,
        om: OpenMetricsType,
        legacy: bool,
        contribution: u32,
    ) -> u32 {
        let id = self.merged.len() as u32;
        let written = escape_written(name, self.escaping, legacy, &mut self.written);
        let (key, hash) = match hash {
            Some(hash) if written.is_empty() => (name, hash),
            _ if written.is_empty() => (name, hash_name(name)),
            _ => {
                let key = written.of(&self.written);
                (key, hash_name(key))
            }
        };
        debug_assert_eq!(hash, hash_name(key));
        let (merged_list, firsts, written_names) =
            (&self.merged, &self.contributions, &self.written);
        let found = self.table.find_or_insert(hash, id, |m| {
            let m = &merged_list[m as usize];
            same_bytes(merged_key(sources, firsts, m, written_names), key)
        });
        if let Some(found) = found {
            let family = &mut self.merged[found as usize];
            if family.written.is_empty() && !written.is_empty() {
                // Its name was read from its first contribution, as it is:
                // this one is named otherwise, and may become its first
                // (a moved counter, or a family that is not a counter).
                family.written = written;
            } else if !written.is_empty() {
                self.written.truncate(written.start as usize);
            }
            return found;
        }
        self.merged.push(Merged {
            kind: Kind::Untyped,
            om,
            openmetrics: true,
            written,
            reserved: false,
            first: contribution,
        });
        // Whether rule 3 must look at it: a name that ends with no suffix
        // is claimed by no other family's name (see
        // `Merger::resolve_openmetrics_claims`).
        let suffixed = ends_with_a_suffix(key);
        self.name_kinds.push(if suffixed { SUFFIXED } else { 0 });
        id
    }

    /// Moves each text counter `x_total` that came before a family `x`
    /// that is not a counter to its whole name (see
    /// [`Merger::add_openmetrics_item`]), in order, before the
    /// contributions are grouped.
    fn move_stripped_counters(&mut self, sources: &[Source<'_>]) {
        for i in 0..self.contributions.len() {
            let c = self.contributions[i];
            let m = self.destinations[i] as usize;
            let both = NOT_COUNTER | STRIPPED_COUNTER;
            if self.name_kinds[m] & both != both || c.whole() {
                continue;
            }
            let view = sources[c.source as usize].snapshot.view();
            let named = openmetrics_item(view, c.family, c.parent(), false);
            if !is_stripped_counter(view, c.family, c.parent(), &named) {
                continue;
            }
            let this = openmetrics_item(view, c.family, c.parent(), true);
            // Whole before it is looked up: a new family's name is read
            // from it.
            self.contributions[i].item = Contribution::item(false, true);
            self.contributions[i].om = this.om;
            let legacy = self.escaping != Escaping::AllowUtf8 && legacy_by_sample(view, c.family);
            self.destinations[i] =
                self.openmetrics_family(sources, this.name, this.hash, this.om, legacy, i as u32);
        }
        self.order_families_by_first_contribution();
    }

    /// Puts the merged families in the order of their first contributions
    /// again, after counters moved: as if each had gone to its whole name
    /// at once, since the later of two families that claim one name is
    /// the one dropped. Keeps one index a family while it runs.
    fn order_families_by_first_contribution(&mut self) {
        const PLACED: u32 = 1 << 31;
        let mut new_index = vec![u32::MAX; self.merged.len()];
        for (i, &m) in self.destinations.iter().enumerate() {
            let first = &mut new_index[m as usize];
            if *first == u32::MAX {
                *first = i as u32;
            }
        }
        // Each family's first contribution, in order, numbers it.
        let mut next = 0;
        for (i, &m) in self.destinations.iter().enumerate() {
            if new_index[m as usize] == i as u32 {
                new_index[m as usize] = PLACED | next;
                next += 1;
            }
        }
        for index in &mut new_index {
            *index &= !PLACED;
        }
        for destination in &mut self.destinations {
            *destination = new_index[*destination as usize];
        }
        self.table.renumber(|m| new_index[m as usize]);
        for m in 0..new_index.len() {
            while new_index[m] as usize != m {
                let to = new_index[m] as usize;
                self.merged.swap(m, to);
                self.name_kinds.swap(m, to);
                new_index.swap(m, to);
            }
        }
    }

    fn report_openmetrics(&mut self, sources: &[Source<'_>], contribution: usize) {
        let c = self.contributions[contribution];
        let name = name_of_item(sources, c.source, c.family, c.parent(), c.whole());
        let start = self.conflict_names.len();
        self.conflict_names.extend_from_slice(name);
        self.conflicts.push((
            c.source as usize,
            Span::new(start, self.conflict_names.len()),
        ));
    }

    /// Rules 0 to 2 of the module documentation with OpenMetrics types:
    /// the reserved names, then `unknown` for simple types (whose samples
    /// are all named as the family), else the first source's type.
    fn resolve_openmetrics_types(&mut self, sources: &[Source<'_>]) {
        let is_own = |c: &Contribution| sources[c.source as usize].container.is_none();
        for m in 0..self.merged.len() {
            let range = self.group(m);
            let whole = range.start as usize..range.end as usize;
            let reserved = self.merged[m].reserved;
            if whole.len() == 1 {
                // One contribution (most families): nothing to resolve (a
                // reserved family's one is the sidecar's own).
                self.merged[m].om = self.contributions[whole.start].om;
                continue;
            }
            if reserved {
                for i in whole.clone() {
                    if !is_own(&self.contributions[i]) {
                        self.contributions[i].resolution = Resolution::Dropped;
                        self.report_openmetrics(sources, i);
                    }
                }
            }
            let contends = |c: &Contribution| !reserved || is_own(c);
            let Some(first) = self.contributions[whole.clone()]
                .iter()
                .find(|c| contends(c))
                .map(|c| c.om)
            else {
                continue;
            };
            self.merged[m].om = first;
            let contending = || {
                self.contributions[whole.clone()]
                    .iter()
                    .filter(|c| contends(c))
            };
            if contending().all(|c| c.om == first) {
                continue;
            }
            let all_simple = contending().all(|c| c.om.is_simple());
            self.merged[m].om = if all_simple {
                OpenMetricsType::Unknown
            } else {
                first
            };
            for i in whole {
                let c = self.contributions[i];
                if contends(&c) && c.om != first {
                    self.contributions[i].resolution = if all_simple {
                        Resolution::Downgraded
                    } else {
                        Resolution::Dropped
                    };
                    self.report_openmetrics(sources, i);
                }
            }
        }
    }

    /// Rule 3 for OpenMetrics: a family claims its name with each suffix of
    /// its type (and alone); a family that claims a name an earlier one
    /// claimed is dropped (the earlier one is reserved when either is).
    /// A claimed name is found through the family it strips to, in the
    /// table of names, so the claims cost no memory of their own.
    fn resolve_openmetrics_claims(&mut self, sources: &[Source<'_>]) {
        // Two families clash only when one is named as the other with a
        // suffix of `ALL_SUFFIXES` (each suffix a type claims is one):
        // found from the few names that end with one ([`SUFFIXED`]), so
        // that the claims are looked up for those families alone.
        for m in 0..self.merged.len() {
            if self.name_kinds[m] & SUFFIXED == 0 {
                continue;
            }
            let name = merged_key(sources, &self.contributions, &self.merged[m], &self.written);
            let base = ALL_SUFFIXES[1..]
                .iter()
                .find(|suffix| ends_with_suffix(name, suffix))
                .and_then(|suffix| self.family_named(sources, &name[..name.len() - suffix.len()]));
            if let Some(base) = base {
                self.name_kinds[m] |= MAY_CLASH;
                self.name_kinds[base as usize] |= MAY_CLASH;
            }
        }
        let mut key = std::mem::take(&mut self.scratch);
        for m in 0..self.merged.len() {
            if self.name_kinds[m] & MAY_CLASH == 0 || !self.is_kept(m) {
                continue;
            }
            let merged = &self.merged[m];
            // The names as written: two that escape alike clash.
            let name = merged_key(sources, &self.contributions, merged, &self.written);
            // No suffix ends with another, so `name` + a suffix is
            // claimed before either as a family's own name, or, for
            // `name` alone, as a family's name with a suffix `name` ends
            // with.
            let as_a_name = claimed_suffixes(merged.om)
                .filter(|suffix| !suffix.is_empty())
                .any(|suffix| {
                    key.clear();
                    key.extend_from_slice(name);
                    key.extend_from_slice(suffix);
                    self.claimed_before(sources, m, &key, b"")
                });
            let clash = as_a_name
                || ALL_SUFFIXES[1..].iter().any(|&suffix| {
                    ends_with_suffix(name, suffix)
                        && self.claimed_before(
                            sources,
                            m,
                            &name[..name.len() - suffix.len()],
                            suffix,
                        )
                });
            if clash {
                let range = self.group(m);
                for i in range.start as usize..range.end as usize {
                    if self.contributions[i].resolution != Resolution::Dropped {
                        self.contributions[i].resolution = Resolution::Dropped;
                        self.report_openmetrics(sources, i);
                    }
                }
            }
        }
        self.scratch = key;
    }

    /// Whether a family before `m`, still kept, is named `base` and
    /// claims `base` + `suffix`.
    fn claimed_before(&self, sources: &[Source<'_>], m: usize, base: &[u8], suffix: &[u8]) -> bool {
        self.family_named(sources, base).is_some_and(|earlier| {
            let earlier = earlier as usize;
            earlier < m
                && claimed_suffixes(self.merged[earlier].om).any(|s| s == suffix)
                && self.is_kept(earlier)
        })
    }

    /// The family named `name` as the output writes it, if there is one.
    fn family_named(&self, sources: &[Source<'_>], name: &[u8]) -> Option<u32> {
        self.table.find(hash_name(name), |x| {
            let x = &self.merged[x as usize];
            same_bytes(
                merged_key(sources, &self.contributions, x, &self.written),
                name,
            )
        })
    }

    /// Whether some contribution of family `m` is still written.
    fn is_kept(&self, m: usize) -> bool {
        let range = self.group(m);
        self.contributions[range.start as usize..range.end as usize]
            .iter()
            .any(|c| c.resolution != Resolution::Dropped)
    }

    fn write_family_openmetrics(
        &mut self,
        sources: &[Source<'_>],
        m: usize,
        written: &[u8],
        out: &mut Vec<u8>,
        pieces: &mut Option<Pieces<'_>>,
    ) {
        let range = self.group(m);
        if self.contributions[range.start as usize..range.end as usize]
            .iter()
            .all(|c| c.resolution == Resolution::Dropped)
        {
            return;
        }
        if self.write_known_family_openmetrics(sources, m, written, out, pieces) {
            return;
        }
        let merged = &self.merged[m];
        let family_type = merged.om;
        let name = FamilyName::of(sources, &self.contributions, merged, written);
        // Two families of one source written as one (names that escape
        // alike): a label set of one repeated in the other breaks the
        // family, which only the full check of both sees.
        let repeated_source = {
            let kept = self.contributions[range.start as usize..range.end as usize]
                .iter()
                .filter(|c| c.resolution != Resolution::Dropped);
            kept.clone()
                .zip(kept.skip(1))
                .any(|(a, b)| a.source == b.source)
        };
        let valid = (family_type.is_simple()
            && !repeated_source
            && self.one_sample_each(sources, range.start as usize..range.end as usize, name))
            || self.check_family_openmetrics(sources, range, family_type, name, repeated_source);
        if !valid {
            self.write_openmetrics_unknowns(sources, m, written, out, pieces);
            return;
        }
        let whole = range.start as usize..range.end as usize;
        self.write_openmetrics_header(sources, whole.clone(), family_type, name, out);
        for i in whole {
            let c = self.contributions[i];
            if c.resolution != Resolution::Dropped {
                self.write_openmetrics_contribution(
                    sources,
                    &c,
                    family_type,
                    name,
                    None,
                    out,
                    pieces,
                    None,
                );
            }
        }
    }

    /// Whether each kept contribution of `whole` is one text sample named
    /// as its family. In a family of a type with no suffix and no rule on
    /// values, each of another source, each is one metric that keeps every
    /// rule: the family needs no check.
    fn one_sample_each(
        &mut self,
        sources: &[Source<'_>],
        whole: std::ops::Range<usize>,
        name: FamilyName<'_>,
    ) -> bool {
        for i in whole {
            let c = self.contributions[i];
            if c.resolution == Resolution::Dropped {
                continue;
            }
            let SourceView::Text(view) = sources[c.source as usize].snapshot.view() else {
                return false;
            };
            let samples = openmetrics_samples(view, &c, &self.children, &mut self.order);
            if samples.count != 1 {
                return false;
            }
            let sample = contribution_sample(view, samples, &self.order, 0);
            let item_name = name.of_item(sources, &c);
            if sample_suffix(view.body(), &sample, item_name, &mut self.scratch) != Some(b"") {
                return false;
            }
        }
        true
    }

    /// Whether the kept contributions of family `range` keep the rules of
    /// `family_type` ([`Check`]); what the check learnt of each text one
    /// that does is remembered for the next build.
    fn check_family_openmetrics(
        &mut self,
        sources: &[Source<'_>],
        range: Span,
        family_type: OpenMetricsType,
        name: FamilyName<'_>,
        repeated_source: bool,
    ) -> bool {
        let mut check = self
            .check
            .take()
            .unwrap_or_else(|| Box::new(Check::new(family_type)));
        check.reset(family_type);
        for i in range.start as usize..range.end as usize {
            let c = self.contributions[i];
            if c.resolution == Resolution::Dropped {
                continue;
            }
            if !repeated_source {
                // The source is in each group's hash: label sets of two
                // sources never match, so each source's are checked apart.
                check.forget_groups();
            }
            match sources[c.source as usize].snapshot.view() {
                SourceView::Text(view) => {
                    let samples = openmetrics_samples(view, &c, &self.children, &mut self.order);
                    let count = samples.count as usize;
                    let item_name = name.of_item(sources, &c);
                    let key = remembered_key(&c);
                    let rememberable = count >= REMEMBERED_MIN_SAMPLES
                        && Check::takes_known(family_type)
                        && !repeated_source;
                    // The family's name once: each sample's fingerprint
                    // reads only what follows it.
                    let seed = if rememberable {
                        remembered_seed(family_type, item_name)
                    } else {
                        0 // not read
                    };
                    let remembered = rememberable
                        .then(|| self.remembered.get(&key).copied())
                        .flatten()
                        .filter(|r| r.family_type == family_type && r.samples == count as u32);
                    if let Some(r) = remembered {
                        let saved = check.save();
                        let fingerprint = self
                            .check_known_text(view, &c, samples, &r, item_name, seed, &mut check);
                        if fingerprint == r.fingerprint {
                            check.end_known();
                            if let Some(r) = self.remembered.get_mut(&key) {
                                r.build = self.build;
                                r.held = true;
                            }
                            if !check.ok {
                                break;
                            }
                            continue;
                        }
                        // Its names or labels changed: checked whole.
                        check.restore(saved);
                    }
                    let mut source_group = GroupHash::new();
                    source_group.add(b"", &c.source.to_le_bytes());
                    let mut fingerprint = seed;
                    let mut groups = GroupSizes::default();
                    let mut timestamped = false;
                    for k in 0..count {
                        let number = contribution_number(samples, &self.order, k);
                        let sample = view.numbered_sample(number);
                        let group = self.check_text_sample(
                            view,
                            &sample,
                            source_group,
                            family_type,
                            item_name,
                            &mut check,
                        );
                        if !check.ok {
                            break;
                        }
                        if rememberable {
                            fingerprint =
                                sample_fingerprint(fingerprint, view, number, &sample, item_name);
                            groups.add(group);
                            timestamped |= !sample.timestamp.is_empty();
                        }
                    }
                    if let (true, Some(group_size)) = (rememberable && check.ok, groups.uniform()) {
                        self.pending.push((
                            key,
                            Remembered {
                                fingerprint,
                                samples: count as u32,
                                group_size,
                                family_type,
                                timestamped,
                                held: false,
                                build: self.build,
                            },
                        ));
                    }
                }
                SourceView::Protobuf(view) => {
                    let metric_type = view.family(c.family).metric_type;
                    for metric in view.metrics(c.family) {
                        down::check_openmetrics(
                            view.body,
                            metric_type,
                            family_type,
                            metric,
                            c.source,
                            &mut check,
                        );
                    }
                }
            }
            if !check.ok {
                break;
            }
        }
        let valid = check.finish();
        self.check = Some(check);
        // A family that kept every rule: what its names and labels passed
        // holds for the next build while they stay the same bytes.
        for (key, remembered) in self.pending.drain(..) {
            if valid
                && (self.remembered.len() < REMEMBERED_FAMILIES
                    || self.remembered.contains_key(&key))
            {
                self.remembered.insert(key, remembered);
            }
        }
        valid
    }

    /// A family whose every kept contribution is a remembered text one,
    /// each of another source, checked as it is written: one walk over its
    /// samples where [`Merger::write_family_openmetrics`] takes two. Its
    /// output is handed on only once the walk stands, so a walk that does
    /// not (a value breaking a rule, names or labels changed, more output
    /// than a piece) is taken back, and the family is written by the two
    /// walks. Returns whether it was written.
    fn write_known_family_openmetrics(
        &mut self,
        sources: &[Source<'_>],
        m: usize,
        written: &[u8],
        out: &mut Vec<u8>,
        pieces: &mut Option<Pieces<'_>>,
    ) -> bool {
        let merged = &self.merged[m];
        let family_type = merged.om;
        if self.remembered.is_empty() || !Check::takes_known(family_type) {
            return false;
        }
        let range = self.group(m);
        let whole = range.start as usize..range.end as usize;
        self.known.clear();
        let mut last_source = None;
        for c in &self.contributions[whole.clone()] {
            if c.resolution == Resolution::Dropped {
                continue;
            }
            // Two of one source: only the full check sees a label set of
            // one repeated in the other.
            if last_source == Some(c.source) {
                return false;
            }
            last_source = Some(c.source);
            // Too few samples to be remembered: no lookup.
            let SourceView::Text(view) = sources[c.source as usize].snapshot.view() else {
                return false;
            };
            let count = openmetrics_sample_count(view, c, &self.children);
            if count < REMEMBERED_MIN_SAMPLES {
                return false;
            }
            let key = remembered_key(c);
            match self.remembered.get(&key) {
                Some(r)
                    if r.held && r.family_type == family_type && r.samples as usize == count =>
                {
                    self.known.push((key, *r))
                }
                _ => return false,
            }
        }
        let name = FamilyName::of(sources, &self.contributions, merged, written);
        // The family is written whole into this piece: one that has less
        // room left than a family usually takes is handed on first.
        let out_limit = match pieces {
            Some((piece_bytes, emit)) => {
                if out.len() + *piece_bytes / 4 > *piece_bytes {
                    emit(out);
                    out.clear();
                }
                *piece_bytes
            }
            None => usize::MAX,
        };
        let mark = out.len();
        let mut check = self
            .check
            .take()
            .unwrap_or_else(|| Box::new(Check::new(family_type)));
        check.reset(family_type);
        self.write_openmetrics_header(sources, whole.clone(), family_type, name, out);
        let mut stands = true;
        let mut known = 0;
        for i in whole {
            let c = self.contributions[i];
            if c.resolution == Resolution::Dropped {
                continue;
            }
            // The source is in each group's hash: label sets of two
            // sources never match, so each source's are checked apart.
            check.forget_groups();
            let (key, remembered) = self.known[known];
            known += 1;
            let mut walk = KnownWrite {
                remembered,
                check: &mut check,
                out_limit,
                abandoned: false,
                fingerprint: 0,
            };
            self.write_openmetrics_contribution(
                sources,
                &c,
                family_type,
                name,
                None,
                out,
                &mut None,
                Some(&mut walk),
            );
            let outgrew = walk.abandoned;
            let same_names = walk.fingerprint == remembered.fingerprint;
            // Its last metric is finished here: nothing is left for
            // `Check::finish`.
            check.end_known();
            if !outgrew && !same_names {
                // Checked whole by the two walks, not compared again.
                self.remembered.remove(&key);
            }
            if outgrew || !same_names || !check.ok {
                stands = false;
                break;
            }
        }
        self.check = Some(check);
        if !stands {
            out.truncate(mark);
            return false;
        }
        for &(key, _) in &self.known {
            if let Some(r) = self.remembered.get_mut(&key) {
                r.build = self.build;
            }
        }
        emit_if_full(out, pieces);
        true
    }

    /// A valid family's header: HELP of the first kept source that has
    /// one, TYPE unless no source had one, UNIT where the name ends with it.
    #[inline(always)]
    fn write_openmetrics_header(
        &mut self,
        sources: &[Source<'_>],
        whole: std::ops::Range<usize>,
        family_type: OpenMetricsType,
        name: FamilyName<'_>,
        out: &mut Vec<u8>,
    ) {
        let kept = || {
            self.contributions[whole.clone()]
                .iter()
                .filter(|c| c.resolution != Resolution::Dropped)
        };
        // Only an OpenMetrics body's (parent) family has a unit: the
        // others' HELP is read alone, without the whole item.
        let (mut help, mut unit) = (None, None);
        for c in kept() {
            if c.parent() {
                let item = item_of(sources, c.source, c.family, true, c.whole());
                help = help.or(item.help);
                unit = unit.or(item.unit);
            } else if help.is_none() {
                help = help_of(sources[c.source as usize].snapshot.view(), c.family);
            }
            if help.is_some() && unit.is_some() {
                break;
            }
        }
        // Most names are written as they are. Unless every name is
        // (allow-utf-8), one that is not legacy was given its escaped form
        // when its family was made (`escape_written`): a name without one
        // is legacy, with no scan.
        let (escaped, name) = (name.escaped, name.written);
        let escaping = self.escaping;
        let legacy = (escaping != Escaping::AllowUtf8 && !escaped) || is_legacy_name(name, false);
        debug_assert_eq!(legacy, is_legacy_name(name, false));
        let write_family_name = |out: &mut Vec<u8>| {
            if legacy {
                out.extend_from_slice(name);
            } else {
                write_name(name, escaping, false, out);
            }
        };
        if let Some((help, form)) = help {
            out.extend_from_slice(b"# HELP ");
            write_family_name(out);
            out.push(b' ');
            if help_written_as_is(help, form) {
                out.extend_from_slice(help);
            } else {
                rewrite_help(help, form, &mut self.help, out);
            }
            out.push(b'\n');
        }
        // A quoted name is read only after metadata of its own (a sample
        // `{"a.b"} 1` alone is refused by prometheus_client): a family
        // without TYPE gets `unknown` then, the type Prometheus gives a
        // series without one anyway.
        let quoted = escaping == Escaping::AllowUtf8 && !legacy;
        if family_type != OpenMetricsType::None || (quoted && help.is_none()) {
            out.extend_from_slice(b"# TYPE ");
            write_family_name(out);
            out.push(b' ');
            out.extend_from_slice(family_type.as_str().as_bytes());
            out.push(b'\n');
        }
        let unit = unit.filter(|unit| {
            family_type.takes_unit()
                && !unit.is_empty()
                && name.len() > unit.len()
                && name.ends_with(unit)
                && name[name.len() - unit.len() - 1] == b'_'
        });
        if let Some(unit) = unit {
            out.extend_from_slice(b"# UNIT ");
            write_family_name(out);
            out.push(b' ');
            out.extend_from_slice(unit);
            out.push(b'\n');
        }
    }

    /// A family that breaks its type's rules: one `unknown` family per
    /// sample name, in the order of its type's suffixes.
    fn write_openmetrics_unknowns(
        &mut self,
        sources: &[Source<'_>],
        m: usize,
        written: &[u8],
        out: &mut Vec<u8>,
        pieces: &mut Option<Pieces<'_>>,
    ) {
        let merged = &self.merged[m];
        let range = self.group(m);
        let family_type = merged.om;
        let name = FamilyName::of(sources, &self.contributions, merged, written);
        let suffixes = family_type.suffixes().iter().filter(|s| !s.is_empty());
        for suffix in std::iter::once(&b""[..]).chain(suffixes.copied()) {
            let header = out.len();
            out.extend_from_slice(b"# TYPE ");
            self.scratch.clear();
            self.scratch.extend_from_slice(name.written);
            self.scratch.extend_from_slice(suffix);
            write_name(&self.scratch, self.escaping, false, out);
            out.extend_from_slice(b" unknown\n");
            let before = out.len();
            self.series_seen.clear();
            // A piece handed on holds the header: what is left is kept.
            let mut handed_on = false;
            for i in range.start as usize..range.end as usize {
                let c = self.contributions[i];
                if c.resolution == Resolution::Dropped {
                    continue;
                }
                handed_on |= self.write_openmetrics_contribution(
                    sources,
                    &c,
                    OpenMetricsType::Unknown,
                    name,
                    Some(suffix),
                    out,
                    pieces,
                    None,
                );
            }
            if !handed_on && out.len() == before {
                // No sample has this suffix.
                out.truncate(header);
            }
        }
    }

    /// Writes the samples of one contribution (only those whose suffix is
    /// `only`, when given); returns whether a piece was handed on.
    #[allow(clippy::too_many_arguments)]
    fn write_openmetrics_contribution(
        &mut self,
        sources: &[Source<'_>],
        c: &Contribution,
        family_type: OpenMetricsType,
        name: FamilyName<'_>,
        only: Option<&[u8]>,
        out: &mut Vec<u8>,
        pieces: &mut Option<Pieces<'_>>,
        mut known: Option<&mut KnownWrite<'_>>,
    ) -> bool {
        let mut handed_on = false;
        let spans = self.source_label_spans[c.source as usize];
        let comma = spans.map(|spans| spans.comma.of(&self.source_labels));
        match sources[c.source as usize].snapshot.view() {
            SourceView::Text(view) => {
                let raw_name = name.of_item(sources, c);
                let writer = SampleWriter {
                    body: view.body(),
                    openmetrics: view.is_openmetrics(),
                    output_openmetrics: true,
                    target: comma.and_then(|comma| comma.get(1..)),
                    target_comma: comma.unwrap_or(b""),
                    target_comma_block: self.source_label_blocks[c.source as usize].as_ref(),
                    target_braced: spans.map_or(&[], |spans| spans.braced.of(&self.source_labels)),
                    label: &self.label,
                    check_labels: comma.is_some() && view.may_have_label(&self.label),
                    escaping: self.escaping,
                    family_written: name.written,
                    family_raw_len: raw_name.len(),
                };
                let samples = openmetrics_samples(view, c, &self.children, &mut self.order);
                let mut walk = match known.as_deref_mut() {
                    None => None,
                    Some(known) => Some(KnownWalk::start(
                        view,
                        c,
                        samples,
                        &self.order,
                        &known.remembered,
                        raw_name,
                        remembered_seed(family_type, raw_name),
                        &mut self.scratch,
                    )),
                };
                // The output length at which the loop looks at its limits: a
                // piece to hand on, a remembered walk that outgrew its own.
                let piece_limit = pieces.as_ref().map_or(usize::MAX, |(bytes, _)| *bytes);
                let known_limit = known
                    .as_ref()
                    .map_or(usize::MAX, |known| known.out_limit.saturating_add(1));
                let look_at = piece_limit.min(known_limit);
                // Plain lines are written without being decoded: where no
                // sample is dropped (`only`) and no label is looked for.
                let plain_lines = only.is_none() && !writer.check_labels;
                let mut pending = Span::default();
                for k in 0..samples.count as usize {
                    let number = contribution_number(samples, &self.order, k);
                    if let Some(plain) = plain_lines.then(|| view.plain_sample(number)).flatten() {
                        if let (Some(walk), Some(known)) = (walk.as_mut(), known.as_deref_mut()) {
                            walk.plain_sample(view, number, &plain, raw_name, known.check);
                        }
                        writer.write_plain(&plain, out, &mut pending);
                    } else {
                        let sample = view.numbered_sample(number);
                        if let (Some(walk), Some(known)) = (walk.as_mut(), known.as_deref_mut()) {
                            walk.sample(
                                view,
                                number,
                                &sample,
                                raw_name,
                                &mut self.scratch,
                                known.check,
                            );
                        }
                        let mut exemplar = None;
                        if only.is_some() || sample.flags.contains(SampleFlags::EXEMPLAR) {
                            let suffix =
                                sample_suffix(view.body(), &sample, raw_name, &mut self.scratch);
                            if let Some(only) = only {
                                if suffix != Some(only)
                                    || !self.series_seen.insert(series_hash(
                                        view,
                                        &sample,
                                        c.source,
                                        &mut self.candidate,
                                    ))
                                {
                                    // Not this family's, or the same series again:
                                    // Prometheus keeps the first (and counts the
                                    // rest as duplicates); prometheus_client refuses
                                    // a family that has it twice apart.
                                    continue;
                                }
                            }
                            let exemplar_allowed = only.is_none()
                                && suffix.is_some_and(|suffix| takes_exemplar(family_type, suffix));
                            exemplar = view.exemplar(&sample).filter(|e| {
                                exemplar_allowed
                                    && exemplar_fits(
                                        view.body(),
                                        e,
                                        self.escaping,
                                        &mut self.scratch,
                                        &mut self.candidate,
                                    )
                            });
                        }
                        writer.write_with(
                            &sample,
                            exemplar,
                            out,
                            &mut pending,
                            &mut self.scratch,
                            &mut self.candidate,
                        );
                    }
                    if out.len() + ((pending.end - pending.start) as usize) < look_at {
                        continue;
                    }
                    if let Some((piece_bytes, emit)) = pieces {
                        if out.len() + (pending.end - pending.start) as usize >= *piece_bytes {
                            writer.flush(&mut pending, out);
                            emit(out);
                            out.clear();
                            handed_on = true;
                        }
                    }
                    if let Some(known) = known.as_deref_mut() {
                        if out.len() + (pending.end - pending.start) as usize > known.out_limit {
                            known.abandoned = true;
                            return handed_on;
                        }
                    }
                }
                writer.flush(&mut pending, out);
                if let (Some(walk), Some(known)) = (walk, known) {
                    known.fingerprint = walk.fingerprint;
                }
            }
            SourceView::Protobuf(view) => {
                let target = comma
                    .and_then(|comma| comma.get(1..))
                    .map(|pair| TextTarget {
                        name: &self.label,
                        pair,
                    });
                let metric_type = view.family(c.family).metric_type;
                for metric in view.metrics(c.family) {
                    down::write_openmetrics(
                        view.body,
                        name.written,
                        metric_type,
                        family_type,
                        metric,
                        target.as_ref(),
                        only,
                        &mut self.scratch,
                        out,
                        &mut |out| handed_on |= emit_if_full(out, pieces),
                    );
                }
            }
        }
        handed_on
    }

    /// Feeds one text sample to the family's check (`group`: the hash of
    /// its source alone).
    fn check_text_sample(
        &mut self,
        view: IndexView<'_>,
        sample: &Sample,
        mut group: GroupHash,
        family_type: OpenMetricsType,
        name: &[u8],
        check: &mut Check,
    ) -> u64 {
        let body = view.body();
        let Some(suffix) = sample_suffix(body, sample, name, &mut self.scratch) else {
            check.ok = false;
            return 0;
        };
        let bound_label: &[u8] = match (family_type, suffix) {
            (OpenMetricsType::Histogram | OpenMetricsType::GaugeHistogram, b"_bucket") => b"le",
            (OpenMetricsType::Summary, b"") => b"quantile",
            (OpenMetricsType::StateSet, _) => name,
            _ => b"",
        };
        let mut bound = None;
        let mut has_state_label = false;
        if sample.flags.intersects(SampleFlags::SLOW_LABELS) {
            let text = &mut self.candidate;
            for label in LabelIter::new(sample.labels.of(body)) {
                // The label in canonical form, `name="value`.
                text.clear();
                label.push_name(text);
                if !bound_label.is_empty() && text[..] == *bound_label {
                    has_state_label = true;
                    bound = Some(bound_value(label.value));
                } else {
                    text.extend_from_slice(b"=\"");
                    text.extend_from_slice(label.value);
                    group.add_text(text, 0..text.len());
                }
            }
        } else if let Some(value) =
            add_canonical_labels(body, sample.labels, bound_label, &mut group)
        {
            has_state_label = true;
            bound = Some(bound_value(&body[value]));
        }
        let suffix = Suffix::of(suffix);
        let (value, timestamp) = checked_value(view, sample, family_type, suffix);
        let group = group.finish();
        check.sample(&CheckedSample {
            suffix,
            group,
            bound,
            value,
            timestamp,
            has_state_label,
        });
        group
    }

    /// Feeds a text contribution remembered (with its groups' size) to
    /// the family's check for its values and timestamps only
    /// ([`Check::known_sample`]); returns the fingerprint of its names and
    /// labels (from `seed`), which must be the one remembered for that to
    /// hold. Every sample is read for it, even once the check failed.
    #[allow(clippy::too_many_arguments)]
    fn check_known_text(
        &mut self,
        view: IndexView<'_>,
        c: &Contribution,
        samples: SampleOrder,
        remembered: &Remembered,
        name: &[u8],
        seed: u64,
        check: &mut Check,
    ) -> u64 {
        let mut walk = KnownWalk::start(
            view,
            c,
            samples,
            &self.order,
            remembered,
            name,
            seed,
            &mut self.scratch,
        );
        for k in 0..samples.count as usize {
            let number = contribution_number(samples, &self.order, k);
            let sample = view.numbered_sample(number);
            walk.sample(view, number, &sample, name, &mut self.scratch, check);
        }
        walk.fingerprint
    }
}

/// The walk over a remembered text contribution's samples: the fingerprint
/// of their names and labels so far, and what the check reads of each.
struct KnownWalk {
    fingerprint: u64,
    family_type: OpenMetricsType,
    suffixes: SuffixByLength,
    reads: KnownReads,
    group_size: u32,
    /// Samples left in the metric being read.
    left_in_group: u32,
}

/// What is checked of each sample of a remembered contribution once its
/// names and labels are known to be the ones that passed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KnownReads {
    /// Nothing: a gauge or unknown family without timestamps.
    Nothing,
    /// Each value's sign: a counter whose samples are all `_total`.
    Signs,
    /// Values and timestamps, by [`Check::known_sample`].
    Values,
}

/// A remembered contribution checked as it is written
/// ([`Merger::write_known_family_openmetrics`]).
struct KnownWrite<'k> {
    remembered: Remembered,
    check: &'k mut Check,
    /// The output may grow to this length; past it the walk is abandoned.
    out_limit: usize,
    /// The output outgrew `out_limit`: the walk stopped there.
    abandoned: bool,
    /// The fingerprint of the names and labels written.
    fingerprint: u64,
}

impl KnownWalk {
    #[allow(clippy::too_many_arguments)]
    fn start(
        view: IndexView<'_>,
        c: &Contribution,
        samples: SampleOrder,
        order: &[(u32, u32)],
        remembered: &Remembered,
        name: &[u8],
        seed: u64,
        scratch: &mut Vec<u8>,
    ) -> KnownWalk {
        let family_type = remembered.family_type;
        // A text 0.0.4 counter's samples are all its `_total`, and so are an
        // OpenMetrics counter's of one sample name that its first sample
        // shows is `_total` (the fingerprint holds the names to what the
        // full check passed): only their sign is checked (Prometheus' rule
        // for `_total`).
        let mut all_total = || {
            !c.parent()
                || (!samples.ordered
                    && samples.count > 0
                    && sample_suffix(
                        view.body(),
                        &contribution_sample(view, samples, order, 0),
                        name,
                        scratch,
                    ) == Some(b"_total"))
        };
        let reads = if remembered.timestamped {
            KnownReads::Values
        } else if family_type.is_simple() {
            KnownReads::Nothing
        } else if family_type == OpenMetricsType::Counter && all_total() {
            KnownReads::Signs
        } else {
            KnownReads::Values
        };
        KnownWalk {
            fingerprint: seed,
            family_type,
            suffixes: Suffix::by_length(family_type),
            reads,
            group_size: remembered.group_size,
            left_in_group: 0,
        }
    }

    /// [`Self::sample`] of a plain sample ([`PlainSample`]): no timestamp,
    /// a value never negative, a legacy name.
    #[inline(always)]
    fn plain_sample(
        &mut self,
        view: IndexView<'_>,
        number: u32,
        sample: &PlainSample,
        name: &[u8],
        check: &mut Check,
    ) {
        // `sample_fingerprint` for a sample without timestamp, written out
        // here: sharing one function with it cost 1.5 to 2% of wall time
        // on the 1 MB OpenMetrics round (code layout), for the same count.
        self.fingerprint = match view.series(number) {
            Some(series) => mix(self.fingerprint, series),
            None => fingerprint_text(
                self.fingerprint,
                view.body(),
                sample.name.start as usize + name.len()..sample.labels_end as usize,
            ),
        };
        if self.reads == KnownReads::Values {
            let new_group = self.next_in_group();
            if check.ok {
                let length = (sample.name.end - sample.name.start) as usize;
                let suffix = self.suffixes.get(length.saturating_sub(name.len()));
                check_plain_value(check, suffix, new_group, sample.value.of(view.body()));
            }
        }
    }

    /// Whether the next sample starts a metric (group), as the full check
    /// found them.
    #[inline(always)]
    fn next_in_group(&mut self) -> bool {
        let new_group = self.left_in_group == 0;
        if new_group {
            self.left_in_group = self.group_size;
        }
        self.left_in_group -= 1;
        new_group
    }

    /// Reads the contribution's next sample.
    #[inline(always)]
    fn sample(
        &mut self,
        view: IndexView<'_>,
        number: u32,
        sample: &Sample,
        name: &[u8],
        scratch: &mut Vec<u8>,
        check: &mut Check,
    ) {
        let body = view.body();
        self.fingerprint = sample_fingerprint(self.fingerprint, view, number, sample, name);
        match self.reads {
            KnownReads::Nothing => {}
            // A plain line end (` <digits>[.<digits>]\n`) is never negative.
            KnownReads::Signs if sample.flags.contains(SampleFlags::PLAIN_END) => {}
            KnownReads::Signs => {
                let (value, _) = checked_value(view, sample, self.family_type, Suffix::Total);
                if value.is_nan() || value < 0.0 {
                    check.ok = false;
                }
            }
            KnownReads::Values => {
                let new_group = self.next_in_group();
                if check.ok {
                    // Told by its length: the names are the ones that passed
                    // (or the fingerprint will differ and this is undone).
                    let suffix = if sample.flags.contains(SampleFlags::QUOTED_NAME) {
                        Suffix::of(sample_suffix(body, sample, name, scratch).unwrap_or(b""))
                    } else {
                        let length = (sample.name.end - sample.name.start) as usize;
                        self.suffixes.get(length.saturating_sub(name.len()))
                    };
                    if sample.flags.contains(SampleFlags::PLAIN_END) {
                        check_plain_value(check, suffix, new_group, sample.value.of(body));
                    } else {
                        let (value, timestamp) =
                            checked_value(view, sample, self.family_type, suffix);
                        let breaks = value_breaks(suffix, value);
                        check.known_sample(suffix, new_group, value, timestamp, breaks);
                    }
                }
            }
        }
    }
}

/// A text sample (whose name ends in `suffix`) value and timestamp
/// (milliseconds) as the check reads them. Gauges and unknown samples are
/// checked for their grouping only; a counter's samples, a sum's and a
/// summary's quantiles for their sign (a decimal without `-` is not
/// negative): their decimals are not read. Buckets and counts are
/// compared, so read.
#[inline(always)]
fn checked_value(
    view: IndexView<'_>,
    sample: &Sample,
    family_type: OpenMetricsType,
    suffix: Suffix,
) -> (f64, Option<i64>) {
    let body = view.body();
    let needs_value = !matches!(
        family_type,
        OpenMetricsType::Gauge | OpenMetricsType::Unknown | OpenMetricsType::None
    );
    let sign_only = family_type == OpenMetricsType::Counter
        || matches!(suffix, Suffix::Sum | Suffix::GSum)
        || (family_type == OpenMetricsType::Summary && suffix == Suffix::None);
    let value = match sample.value_form {
        ValueForm::Decimal if !needs_value => 0.0,
        ValueForm::Decimal if sign_only && body.get(sample.value.start as usize) != Some(&b'-') => {
            0.0
        }
        ValueForm::Decimal => decimal_value(sample.value.of(body)),
        ValueForm::NaN => f64::NAN,
        ValueForm::PosInf => f64::INFINITY,
        ValueForm::NegInf => f64::NEG_INFINITY,
    };
    let timestamp = if sample.timestamp.is_empty() {
        None
    } else if view.is_openmetrics() {
        Some(stamp_of_seconds(sample.timestamp.of(body)))
    } else {
        parse_int_timestamp(sample.timestamp.of(body)).map(stamp_of_millis)
    };
    (value, timestamp)
}

/// [`checked_value`] of a sample whose line ends ` <digits>[.<digits>]\n`
/// (`PLAIN_END`): never negative, never NaN, no timestamp. Only the values
/// the check compares are read: a bucket's and a count's, mostly whole
/// numbers of a few digits, read here without [`decimal_value`]'s call.
/// Also whether the value is known to be whole (then it breaks no rule
/// on values alone).
#[inline(always)]
fn plain_value(text: &[u8], suffix: Suffix) -> (f64, bool) {
    if !matches!(suffix, Suffix::Bucket | Suffix::Count | Suffix::GCount) {
        return (0.0, true);
    }
    if text.len() > 15 {
        return (decimal_value(text), false);
    }
    let mut whole = 0u64;
    for &c in text {
        if c == b'.' {
            return (decimal_value(text), false);
        }
        whole = whole * 10 + u64::from(c.wrapping_sub(b'0'));
    }
    // Up to 15 digits: exact in a double.
    (whole as f64, true)
}

/// [`Check::known_sample`] of a sample whose value `text` ends its line
/// plainly (`PLAIN_END`): never negative or NaN, so only a bucket or count
/// that is not whole breaks a rule on values alone.
#[inline(always)]
fn check_plain_value(check: &mut Check, suffix: Suffix, new_group: bool, text: &[u8]) {
    let (value, whole) = plain_value(text, suffix);
    let breaks = !whole && value_breaks(suffix, value);
    check.known_sample(suffix, new_group, value, None, breaks);
}

/// The fingerprint of a text sample's name and labels, after `hash`, and
/// whether it has a timestamp: the parser's hash of their text when the
/// index keeps it ([`IndexView::series`]), else a hash of the text from
/// after the family's name (`name`, as the parser sorted it, is in the
/// seed) to the end of its labels. The two never match each other but by
/// chance, so a family remembered by one is checked whole by the other.
#[inline(always)]
fn sample_fingerprint(
    hash: u64,
    view: IndexView<'_>,
    number: u32,
    sample: &Sample,
    name: &[u8],
) -> u64 {
    let timestamped = u64::from(!sample.timestamp.is_empty());
    if let Some(series) = view.series(number) {
        return mix(hash ^ timestamped, series);
    }
    // A quoted name is inside the braces, where BRACES is not set: the
    // labels' span (empty at the name's end when there are none) ends it.
    let end = sample.labels.end.max(sample.name.end);
    let known = if sample.flags.contains(SampleFlags::QUOTED_NAME) {
        0
    } else {
        name.len() as u32
    };
    let start = sample.name.start + known;
    fingerprint_text(
        hash ^ timestamped,
        view.body(),
        start as usize..end as usize,
    )
}

/// OpenMetrics output: what the full check learnt of one text
/// contribution whose family kept every rule, for the next build. The
/// rules that look at names and labels alone (suffixes, grouping, `le` and
/// `quantile`) hold again while they are the same bytes, which the
/// fingerprint of their text tells (as Prometheus' scrape cache trusts a
/// series' text); then only values and timestamps are checked, without
/// walking the labels. Only contributions whose metrics all have the same
/// number of samples are remembered (the groups are found again by count),
/// and none of a family that takes two contributions of one source. The
/// fingerprint starts from the process' random key (`hash_key`): a
/// container cannot make two label texts collide on purpose.
#[derive(Clone, Copy)]
struct Remembered {
    fingerprint: u64,
    samples: u32,
    group_size: u32,
    family_type: OpenMetricsType,
    /// Some sample has a timestamp (whether each has one is in the
    /// fingerprint). Without, the samples of a gauge or unknown family
    /// have nothing left to check once their names and labels are known.
    timestamped: bool,
    /// Its names and labels were found the same bytes again in a later
    /// build: only such a contribution is written in one walk
    /// ([`Merger::write_known_family_openmetrics`]), whose output is
    /// thrown away when they changed. One whose labels change every scrape
    /// never gets there, so it does not pay for a walk thrown away.
    held: bool,
    /// The last build that checked it; older ones are forgotten.
    build: u32,
}

// What the memory model counts a remembered contribution at (33 bytes:
// this, its key and a control byte of the table).
const _: () = assert!(std::mem::size_of::<Remembered>() == 24);

type RememberedSet =
    std::collections::HashMap<u64, Remembered, std::hash::BuildHasherDefault<IdentityHasher>>;

/// A smaller contribution is checked whole every time (it costs little).
const REMEMBERED_MIN_SAMPLES: usize = 4;

/// At most this many contributions are remembered (33 bytes each in the
/// table, at most half a MiB with its room to grow).
const REMEMBERED_FAMILIES: usize = 8_192;

/// A contribution's key among those remembered: its source, family and
/// how it is written, one to one (sources and families fit in 24 and 32
/// bits), then spread by [`mix`] (one to one too). The table takes the key
/// as its hash and finds a bucket by its low bits: a multiplication alone
/// left those to the family's lowest three bits and `item`, so every
/// lookup probed through long runs of full buckets (a fifth of the
/// per-family cost of a 1 MB OpenMetrics build); the fold of the high half
/// into the low spreads them.
fn remembered_key(c: &Contribution) -> u64 {
    let key = u64::from(c.source) << 40 | u64::from(c.family) << 8 | u64::from(c.item);
    mix(0, key)
}

/// Where a remembered fingerprint starts: the process' key, the family's
/// type and its name (once: each sample's fingerprint reads only what
/// follows it).
fn remembered_seed(family_type: OpenMetricsType, item_name: &[u8]) -> u64 {
    fingerprint_text(
        hash_key() ^ ((family_type as u64) << 32 | item_name.len() as u64),
        item_name,
        0..item_name.len(),
    )
}

/// The sizes of a contribution's groups, as the full check meets them.
#[derive(Default)]
struct GroupSizes {
    last: Option<u64>,
    current: u32,
    size: Option<u32>,
    uneven: bool,
}

impl GroupSizes {
    fn add(&mut self, group: u64) {
        if self.last == Some(group) {
            self.current += 1;
            return;
        }
        self.close();
        self.last = Some(group);
        self.current = 1;
    }

    fn close(&mut self) {
        if self.current == 0 {
            return;
        }
        match self.size {
            None => self.size = Some(self.current),
            Some(size) => self.uneven |= size != self.current,
        }
    }

    /// The one size every group has, if they all have it.
    fn uniform(mut self) -> Option<u32> {
        self.close();
        self.size.filter(|_| !self.uneven)
    }
}

/// Where a contribution's samples are, in the order they are written: the
/// body's samples numbered from `first` on (a text 0.0.4 family, or an
/// OpenMetrics family of one sample name), or, for an OpenMetrics family
/// of several (`ordered`), the numbers its families' samples (found in
/// `children`) hold in the order [`openmetrics_samples`] left.
#[derive(Clone, Copy)]
struct SampleOrder {
    first: u32,
    count: u32,
    ordered: bool,
}

/// Where contribution `c`'s samples are; for an OpenMetrics family of
/// several sample names, their `(position, number)` in body order go into
/// `order`. A family's samples are in body order already. Inlined for
/// such a family (most contributions, each asked two or three times: the
/// call cost more than the answer), a parent's found apart.
#[inline]
fn openmetrics_samples(
    view: IndexView<'_>,
    c: &Contribution,
    children: &Children,
    order: &mut Vec<(u32, u32)>,
) -> SampleOrder {
    order.clear();
    if !c.parent() {
        return samples_in_turn(view, c.family);
    }
    parent_samples(view, c, children, order)
}

/// The samples of `family`, in body order.
#[inline]
fn samples_in_turn(view: IndexView<'_>, family: u32) -> SampleOrder {
    let numbers = view.sample_numbers(family);
    SampleOrder {
        first: numbers.start,
        count: numbers.len() as u32,
        ordered: false,
    }
}

/// [`openmetrics_samples`] of a parent (`order` cleared).
fn parent_samples(
    view: IndexView<'_>,
    c: &Contribution,
    children: &Children,
    order: &mut Vec<(u32, u32)>,
) -> SampleOrder {
    let in_turn = |family: u32| samples_in_turn(view, family);
    let children = children.of(c);
    if let [(_, _, only)] = children {
        return in_turn(*only);
    }
    for &(_, _, family) in children {
        for number in view.sample_numbers(family) {
            order.push((view.sample_position(number), number));
        }
    }
    order.sort_unstable_by_key(|&(position, _)| position);
    SampleOrder {
        first: 0,
        count: order.len() as u32,
        ordered: true,
    }
}

/// How many samples contribution `c` has (what [`openmetrics_samples`]
/// counts, without ordering them).
fn openmetrics_sample_count(view: IndexView<'_>, c: &Contribution, children: &Children) -> usize {
    if !c.parent() {
        return view.family_sample_count(c.family);
    }
    children
        .of(c)
        .iter()
        .map(|&(_, _, family)| view.family_sample_count(family))
        .sum()
}

/// The families of each OpenMetrics body's parent families, for one
/// build: `(source, parent, family)`, sorted by source and parent (a
/// source's parents are numbered from 0, each has a family), and where each
/// parent's start, so that a contribution finds its families without a
/// search.
#[derive(Default)]
struct Children {
    list: Vec<Child>,
    /// Where each `(source, parent)`'s families start in `list`, in order,
    /// then `list`'s length.
    starts: Vec<u32>,
    /// Each source's parent 0 in `starts` (a source without parents has
    /// the next source's).
    sources: Vec<u32>,
}

impl Children {
    fn clear(&mut self) {
        self.list.clear();
        self.starts.clear();
        self.sources.clear();
    }

    /// Sorts `list` (stably: a parent's families stay in order) and finds
    /// where each parent's start.
    fn index(&mut self) {
        self.list
            .sort_by_key(|&(source, parent, _)| (source, parent));
        self.starts.clear();
        self.sources.clear();
        let mut last = None;
        for (at, &(source, parent, _)) in self.list.iter().enumerate() {
            if last != Some((source, parent)) {
                while self.sources.len() <= source as usize {
                    self.sources.push(self.starts.len() as u32);
                }
                self.starts.push(at as u32);
                last = Some((source, parent));
            }
        }
        self.starts.push(self.list.len() as u32);
    }

    /// The families of OpenMetrics contribution `c` (a parent).
    fn of(&self, c: &Contribution) -> &[Child] {
        let key = (c.source, c.family);
        let group = self
            .sources
            .get(c.source as usize)
            .map_or(usize::MAX, |&first| first as usize + c.family as usize);
        if let (Some(&start), Some(&end)) = (
            self.starts.get(group),
            self.starts.get(group.wrapping_add(1)),
        ) {
            let found = &self.list[start as usize..end as usize];
            if found
                .first()
                .is_some_and(|&(source, parent, _)| (source, parent) == key)
            {
                return found;
            }
        }
        // Not where dense parent numbers put it: searched for.
        let start = self
            .list
            .partition_point(|&(source, parent, _)| (source, parent) < key);
        let count = self.list[start..]
            .iter()
            .take_while(|&&(source, parent, _)| (source, parent) == key)
            .count();
        &self.list[start..start + count]
    }
}

/// Sample `k` of a contribution whose samples are where `samples` and
/// `order` (as [`openmetrics_samples`] left them) say.
#[inline]
fn contribution_sample(
    view: IndexView<'_>,
    samples: SampleOrder,
    order: &[(u32, u32)],
    k: usize,
) -> Sample {
    view.numbered_sample(contribution_number(samples, order, k))
}

/// The number in its body of a contribution's `k`th sample.
#[inline]
fn contribution_number(samples: SampleOrder, order: &[(u32, u32)], k: usize) -> u32 {
    if samples.ordered {
        order[k].1
    } else {
        samples.first + k as u32
    }
}

/// `le` or `quantile` as prometheus_client reads it: a float, `+Inf` only
/// in that spelling (NaN otherwise, which the check refuses).
fn bound_value(raw: &[u8]) -> f64 {
    if let Some(value) = short_decimal(raw) {
        return value;
    }
    match raw {
        b"+Inf" => f64::INFINITY,
        _ => match std::str::from_utf8(raw)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
        {
            Some(v) if v.is_finite() => v,
            _ => f64::NAN,
        },
    }
}

/// The suffix of a text sample's name after the family name `name`, if it
/// starts with it (a quoted name is escaped into `scratch` first).
fn sample_suffix<'a>(
    body: &'a [u8],
    sample: &Sample,
    name: &[u8],
    scratch: &'a mut Vec<u8>,
) -> Option<&'a [u8]> {
    let raw = sample.name.of(body);
    if !sample.flags.contains(SampleFlags::QUOTED_NAME) {
        // The parser sorted the sample under a family its name starts
        // with: its suffix needs no comparison.
        return raw.get(name.len()..);
    }
    scratch.clear();
    unescape_into(raw, scratch);
    scratch.strip_prefix(name)
}

/// Whether an exemplar's labels are within the OpenMetrics limit (their
/// names as the output writes them and unescaped values, in characters),
/// and hold no quote.
fn exemplar_fits(
    body: &[u8],
    exemplar: &ExemplarSpans,
    escaping: Escaping,
    scratch: &mut Vec<u8>,
    written: &mut Vec<u8>,
) -> bool {
    let characters = |bytes: &[u8]| {
        let mut count = 0;
        let mut escaped = false;
        for &b in bytes {
            if escaped {
                escaped = false;
                continue;
            }
            if b == b'\\' {
                escaped = true;
            }
            if b & 0xc0 != 0x80 {
                count += 1;
            }
        }
        count
    };
    let mut total = 0;
    for label in LabelIter::new(exemplar.labels.of(body)) {
        // prometheus_client reads what follows a sample's value turning
        // "in quotes" at every `"`, escaped or not: a quote inside a name
        // or value derails it.
        if label.raw_name.contains(&b'"') || label.value.contains(&b'"') {
            return false;
        }
        let name = label.unescaped_name(scratch);
        total += if escaping == Escaping::AllowUtf8 || is_legacy_name(name, true) {
            characters(label.raw_name)
        } else {
            // Counted as written: an escaped name is longer.
            written.clear();
            write_name(name, escaping, true, written);
            characters(written)
        };
        total += characters(label.value);
    }
    total <= EXEMPLAR_LABEL_CHARACTERS
}

#[cfg(test)]
mod openmetrics_tests {
    use super::*;
    use crate::exposition::Format;

    /// A claim is found by stripping the suffixes of this list, so it must
    /// hold every suffix any type claims, and none of them may end with
    /// another (`resolve_openmetrics_claims` looks no further).
    #[test]
    fn every_claimed_suffix_is_stripped() {
        for om in OpenMetricsType::ALL {
            for suffix in claimed_suffixes(om) {
                assert!(ALL_SUFFIXES.contains(&suffix), "{om:?}");
            }
        }
        assert!(ALL_SUFFIXES[0].is_empty());
        for a in &ALL_SUFFIXES[1..] {
            for b in &ALL_SUFFIXES[1..] {
                assert!(a == b || !a.ends_with(b), "{a:?} ends with {b:?}");
            }
        }
    }

    /// The table of last bytes tells what a test per suffix tells: names
    /// that end with each suffix, a part of one, or any other byte.
    #[test]
    fn a_suffix_is_told_by_its_last_byte_first() {
        let mut names: Vec<Vec<u8>> = (0..=255u8).map(|last| vec![b'x', last]).collect();
        for suffix in &ALL_SUFFIXES[1..] {
            for cut in 0..suffix.len() {
                names.push(suffix[cut..].to_vec());
                names.push([b"x", &suffix[cut..]].concat());
                names.push([b"x", &suffix[..cut]].concat());
            }
        }
        for name in names {
            let by_each = ALL_SUFFIXES[1..]
                .iter()
                .any(|suffix| ends_with_suffix(&name, suffix));
            assert_eq!(ends_with_a_suffix(&name), by_each, "{name:?}");
        }
    }

    /// The OpenMetrics output (underscores) of `(container, body)` inputs,
    /// each body asserted to parse, and the conflicts it reported.
    fn merge_openmetrics(inputs: &[(&str, &str)]) -> (String, Vec<String>) {
        let inputs: Vec<(Option<&str>, &str)> = inputs.iter().map(|&(c, b)| (Some(c), b)).collect();
        for snapshot in indexed_inputs(&inputs) {
            assert!(snapshot.is_indexed(), "test body parses");
        }
        let mut merger = Merger::new("container");
        let out = build_as(&mut merger, &inputs, Escaping::Underscores);
        (out, conflicts_of(&merger))
    }

    /// The conflicts a merge reported, as `source:name`.
    fn conflicts_of(merger: &Merger) -> Vec<String> {
        merger
            .conflicts()
            .map(|(source, name)| format!("{source}:{}", String::from_utf8_lossy(name)))
            .collect()
    }

    /// The OpenMetrics output (allow-utf-8) of one body of container `a`.
    fn openmetrics_of(body: &str) -> String {
        let inputs = [(Some("a"), body)];
        build_as(&mut Merger::new("container"), &inputs, Escaping::AllowUtf8)
    }

    /// Lines that are not plain are rewritten, beside plain ones written
    /// without being decoded: blanks and a trailing comma in a text label
    /// set, a quoted name, a line longer than a packed sample holds, and a
    /// body with a label named as the target; built once, then again by
    /// the walk of a remembered family.
    #[test]
    fn only_plain_lines_are_copied_as_they_are() {
        let long = "v".repeat(70_000);
        let body = format!(
            "# TYPE m gauge\nm{{a=\"1\"}} 1\nm{{a = \"2\"}} 2\nm{{a=\"3\",}} 3\n\
             {{\"m\",a=\"4\"}} 4\nm{{a=\"{long}\"}} 5\nm{{a=\"6\"}} 6\n"
        );
        let expected = format!(
            "# TYPE m gauge\nm{{a=\"1\",container=\"a\"}} 1\nm{{a=\"2\",container=\"a\"}} 2\n\
             m{{a=\"3\",container=\"a\"}} 3\nm{{a=\"4\",container=\"a\"}} 4\n\
             m{{a=\"{long}\",container=\"a\"}} 5\nm{{a=\"6\",container=\"a\"}} 6\n# EOF\n"
        );
        // The target's label in the body is kept as `exported_container`.
        let clashing = "# TYPE m gauge\nm{a=\"1\"} 1\nm{container=\"x\"} 2\nm{a=\"3\"} 3\n";
        let clashing_expected = "# TYPE m gauge\nm{a=\"1\",container=\"a\"} 1\n\
             m{exported_container=\"x\",container=\"a\"} 2\nm{a=\"3\",container=\"a\"} 3\n# EOF\n";
        for (body, expected) in [
            (body.as_str(), expected.as_str()),
            (clashing, clashing_expected),
        ] {
            let inputs = [(Some("a"), body)];
            let mut merger = Merger::new("container");
            for build in 0..3 {
                let out = build_as(&mut merger, &inputs, Escaping::AllowUtf8);
                assert!(
                    out == expected,
                    "build {build}: {}",
                    &out[..out.len().min(400)]
                );
            }
        }
    }

    /// Each rule of `openmetrics.rs`, one case each, with the exact output.
    #[test]
    fn openmetrics_output_rules() {
        // (what, (container, body) inputs, output, conflicts)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a [&'a str]);
        let cases: &[Case<'_>] = &[
            (
                "a text counter named _total is an OpenMetrics counter; no TYPE stays none; ms become s",
                &[("a", "# HELP c_total C \\\\ x.\n# TYPE c_total counter\nc_total{x=\"1\"} 3 1700000000001\nplain 2\n")],
                "# HELP c C \\\\ x.\n# TYPE c counter\nc_total{x=\"1\",container=\"a\"} 3 1700000000.001\nplain{container=\"a\"} 2\n# EOF\n",
                &[],
            ),
            (
                "a text counter without _total keeps its series as unknown; untyped is unknown",
                &[("a", "# TYPE c counter\nc 3\n# TYPE u untyped\nu 1\n")],
                "# TYPE c unknown\nc{container=\"a\"} 3\n# TYPE u unknown\nu{container=\"a\"} 1\n# EOF\n",
                &[],
            ),
            (
                "an OpenMetrics family is written whole again: _total and _created together, exemplar, unit",
                &[("a", "# TYPE r counter\n# UNIT r_seconds seconds\n# HELP r R \\\"q\\\".\nr_total{m=\"a\"} 1 # {trace_id=\"t\"} 1 1.5\nr_created{m=\"a\"} 9\nr_total{m=\"b\"} 2\nr_created{m=\"b\"} 9\n# EOF\n")],
                "# HELP r R \\\"q\\\".\n# TYPE r counter\nr_total{m=\"a\",container=\"a\"} 1 # {trace_id=\"t\"} 1 1.5\nr_created{m=\"a\",container=\"a\"} 9\nr_total{m=\"b\",container=\"a\"} 2\nr_created{m=\"b\",container=\"a\"} 9\n# EOF\n",
                &[],
            ),
            (
                "a histogram the strict parser refuses (no +Inf) becomes one unknown family per sample name",
                &[("a", "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n")],
                "# TYPE h_bucket unknown\nh_bucket{le=\"1\",container=\"a\"} 1\n# TYPE h_count unknown\nh_count{container=\"a\"} 1\n# TYPE h_sum unknown\nh_sum{container=\"a\"} 1\n# EOF\n",
                &[],
            ),
            (
                "a summary of one sample is checked as any (its quantile out of range)",
                &[("a", "# TYPE s summary\ns{quantile=\"2\"} 1\n")],
                "# TYPE s unknown\ns{quantile=\"2\",container=\"a\"} 1\n# EOF\n",
                &[],
            ),
            (
                "exemplars only where OpenMetrics 1.0 has a place for them",
                &[("a", "# TYPE g gauge\ng 1 # {t=\"x\"} 1\n# EOF\n")],
                "# TYPE g gauge\ng{container=\"a\"} 1\n# EOF\n",
                &[],
            ),
            (
                "a name another family claims is dropped and reported",
                &[
                    ("a", "# TYPE c_total counter\nc_total 1\n"),
                    ("b", "# TYPE c_created gauge\nc_created 1\n"),
                    ("c", "# TYPE c counter\nc_total 1\nc_created 2\n# EOF\n"),
                ],
                "# TYPE c counter\nc_total{container=\"a\"} 1\nc_total{container=\"c\"} 1\nc_created{container=\"c\"} 2\n# EOF\n",
                &["1:c_created"],
            ),
            (
                "a family claiming a series name another family has is dropped",
                &[
                    ("a", "# TYPE c_total gauge\nc_total 1\n"),
                    ("c", "# TYPE c counter\nc_total 1\n# EOF\n"),
                ],
                "# TYPE c_total gauge\nc_total{container=\"a\"} 1\n# EOF\n",
                &["1:c"],
            ),
            (
                "a family dropped for a claim claims nothing itself",
                &[
                    ("a", "# TYPE a counter\na_total 1\n# EOF\n"),
                    ("b", "# TYPE a_total counter\na_total_total 1\n# EOF\n"),
                    ("c", "# TYPE a_total_created gauge\na_total_created 3\n# EOF\n"),
                ],
                "# TYPE a counter\na_total{container=\"a\"} 1\n# TYPE a_total_created gauge\na_total_created{container=\"c\"} 3\n# EOF\n",
                &["1:a_total"],
            ),
            (
                "a text counter x_total beside a gauge x keeps its series as unknown x_total",
                &[(
                    "a",
                    "# TYPE x gauge\nx 1\n# TYPE x_total counter\nx_total 2\n",
                )],
                "# TYPE x gauge\nx{container=\"a\"} 1\n# TYPE x_total unknown\nx_total{container=\"a\"} 2\n# EOF\n",
                &[],
            ),
            (
                "a text counter x_total before a gauge x goes to unknown x_total, where it came",
                &[
                    ("a", "# TYPE x_total counter\nx_total 2\n# TYPE y gauge\ny 3\n"),
                    ("b", "# TYPE x gauge\nx 1\n# TYPE x_total counter\nx_total 4\n"),
                ],
                "# TYPE x_total unknown\nx_total{container=\"a\"} 2\nx_total{container=\"b\"} 4\n# TYPE y gauge\ny{container=\"a\"} 3\n# TYPE x gauge\nx{container=\"b\"} 1\n# EOF\n",
                &[],
            ),
            (
                "a moved counter finds the family of its whole name, whose own counters moved",
                &[
                    ("a", "# TYPE c_total_total counter\nc_total_total 1\n# TYPE c_total counter\nc_total 2\n"),
                    ("b", "# TYPE c_total gauge\nc_total 3\n# TYPE c gauge\nc 4\n"),
                ],
                "# TYPE c_total_total unknown\nc_total_total{container=\"a\"} 1\n# TYPE c_total unknown\nc_total{container=\"a\"} 2\nc_total{container=\"b\"} 3\n# TYPE c gauge\nc{container=\"b\"} 4\n# EOF\n",
                &["1:c_total"],
            ),
            (
                "a label set that comes back after another, in another order or form, breaks the family",
                &[("a", "# TYPE g gauge\ng{x=\"1\",y=\"2\"} 1\ng{x=\"3\"} 1\ng{y=\"2\",x=\"1\"} 1\n# TYPE h gauge\nh{x=\"1\",y=\"2\"} 1\nh{x=\"3\"} 1\nh{ y=\"2\" , x=\"1\" } 1\n")],
                "# TYPE g unknown\ng{x=\"1\",y=\"2\",container=\"a\"} 1\ng{x=\"3\",container=\"a\"} 1\n# TYPE h unknown\nh{x=\"1\",y=\"2\",container=\"a\"} 1\nh{x=\"3\",container=\"a\"} 1\n# EOF\n",
                &[],
            ),
            (
                "simple types of one name conflict into unknown",
                &[("a", "# TYPE m gauge\nm 1\n"), ("b", "m 2\n")],
                "# TYPE m unknown\nm{container=\"a\"} 1\nm{container=\"b\"} 2\n# EOF\n",
                &["1:m"],
            ),
        ];
        for (what, inputs, expected, conflicts) in cases {
            let (output, found) = merge_openmetrics(inputs);
            assert_eq!(output, *expected, "{what}");
            assert_eq!(found, *conflicts, "{what}");
        }
    }

    /// A family the check remembers (its names and labels passed in the
    /// build before) is judged as a fresh merger judges it: each value of
    /// each body replaced in turn (negative, NaN, fractional, infinite, a
    /// timestamp added), and names or labels changed, after a build of
    /// the unchanged body.
    #[test]
    fn a_remembered_family_is_judged_as_a_fresh_one() {
        // `@` stands for each value; every one `1` is a valid body.
        let templates = [
            "# TYPE c counter\nc_total{a=\"1\"} @\nc_created{a=\"1\"} @\nc_total{a=\"2\"} @\nc_created{a=\"2\"} @\n# EOF\n",
            "# TYPE c_total counter\nc_total{a=\"1\",b=\"x\"} @\nc_total{a=\"2\",b=\"x\"} @\nc_total{a=\"3\",b=\"x\"} @\nc_total{a=\"4\",b=\"x\"} @\n",
            // OpenMetrics counters of one sample name: only `_total`, only
            // `_created`.
            "# TYPE c counter\nc_total{a=\"1\"} @\nc_total{a=\"2\"} @\nc_total{a=\"3\"} @\nc_total{a=\"4\"} @\n# EOF\n",
            "# TYPE c counter\nc_created{a=\"1\"} @\nc_created{a=\"2\"} @\nc_created{a=\"3\"} @\nc_created{a=\"4\"} @\n# EOF\n",
            "# TYPE h histogram\nh_bucket{r=\"a\",le=\"0.5\"} @\nh_bucket{r=\"a\",le=\"+Inf\"} @\nh_sum{r=\"a\"} @\nh_count{r=\"a\"} @\nh_bucket{r=\"b\",le=\"0.5\"} @\nh_bucket{r=\"b\",le=\"+Inf\"} @\nh_sum{r=\"b\"} @\nh_count{r=\"b\"} @\n",
            "# TYPE h histogram\nh_bucket{le=\"-1\"} @\nh_bucket{le=\"+Inf\"} @\nh_count @\nh_sum @\n# EOF\n",
            "# TYPE s summary\ns{quantile=\"0.5\"} @\ns{quantile=\"0.9\"} @\ns_sum @\ns_count @\n",
            "# TYPE g gauge\ng{x=\"1\"} @\ng{x=\"2\"} @\ng{x=\"3\"} @\ng{x=\"4\"} @\n",
            "u{x=\"1\"} @\nu{x=\"2\"} @ 1700000000000\nu{x=\"3\"} @\nu{x=\"4\"} @\n",
            // Metrics of two samples each: a timestamp on one breaks it.
            "# TYPE g gauge\ng{x=\"1\"} @\ng{x=\"1\"} @\ng{x=\"2\"} @\ng{x=\"2\"} @\n",
        ];
        // Whole numbers written otherwise (`1.0`, `0001`), and past the 15
        // digits that are read as whole numbers without `decimal_value`.
        let values = [
            "1",
            "2",
            "0",
            "-1",
            "NaN",
            "+Inf",
            "0.5",
            "1 1700000000000",
            "1.0",
            "0001",
            "999999999999999",
            "1000000000000001",
        ];
        let build = |merger: &mut Merger, body: &str| {
            build_as(merger, &[(Some("a"), body)], Escaping::Underscores)
        };
        let (mut remembered, mut held) = (0, 0);
        for template in templates {
            let base = template.replace('@', "1");
            let positions = template.matches('@').count();
            let mut changed: Vec<String> = Vec::new();
            for position in 0..positions {
                for value in values {
                    let mut k = 0;
                    let body: String = template
                        .split('@')
                        .enumerate()
                        .map(|(i, piece)| {
                            if i == 0 {
                                return piece.to_string();
                            }
                            k += 1;
                            let v = if k - 1 == position { value } else { "1" };
                            format!("{v}{piece}")
                        })
                        .collect();
                    changed.push(body);
                }
            }
            // Names and labels changed: a label set repeated apart, one
            // renamed, a sample gone.
            changed.push(base.replacen("x=\"2\"", "x=\"1\"", 1));
            changed.push(base.replacen("a=\"2\"", "a=\"1\"", 1));
            changed.push(base.replacen("r=\"b\"", "r=\"a\"", 1));
            changed.push(base.replacen("le=\"+Inf\"", "le=\"2\"", 1));
            changed.push(base.replacen("quantile=\"0.9\"", "quantile=\"1.5\"", 1));
            changed.push(base.replacen("_sum", "_count", 1));
            for body in &changed {
                let fresh = build(&mut Merger::new("container"), body);
                // Built once, a remembered family is checked before it is
                // written; twice (held), as it is written.
                for builds in 1..=2 {
                    let mut warm = Merger::new("container");
                    for _ in 0..builds {
                        build(&mut warm, &base);
                    }
                    remembered += warm.remembered.len();
                    held += warm.remembered.values().filter(|r| r.held).count();
                    assert_eq!(build(&mut warm, body), fresh, "{base}\nthen\n{body}");
                }
            }
        }
        // Both fast paths were taken (each template's family is
        // remembered, and held after a second build).
        assert!(remembered > 0);
        assert!(held > 0);
    }

    /// HELP copied as it stands is what unescaping and escaping it again
    /// writes: every string of up to five bytes of letters, backslashes,
    /// quotes, `n` and newlines, in each form.
    #[test]
    fn help_copied_as_is_reads_the_same() {
        let alphabet = [b'a', b'\\', b'"', b'n', b'\n'];
        let mut copied = 0;
        for length in 0..=5u32 {
            for mut code in 0..alphabet.len().pow(length) {
                let mut help = Vec::new();
                for _ in 0..length {
                    help.push(alphabet[code % alphabet.len()]);
                    code /= alphabet.len();
                }
                // What the parser calls verbatim reads the same in each.
                let verbatim = !help.iter().any(|&c| c == b'\\' || c == b'"' || c == b'\n');
                for form in [HelpForm::Plain, HelpForm::Text, HelpForm::OpenMetrics] {
                    assert!(!verbatim || help_written_as_is(&help, form));
                    if help_written_as_is(&help, form) {
                        let mut rewritten = Vec::new();
                        rewrite_help(&help, form, &mut Vec::new(), &mut rewritten);
                        assert_eq!(rewritten, help, "{:?}", String::from_utf8_lossy(&help));
                        copied += 1;
                    }
                }
            }
        }
        // Escapes were among them, not only plain letters.
        assert!(copied > 500, "{copied}");
    }

    /// A family written as `unknown` families loses nothing when a piece
    /// is handed on while one of them is written: before, the header of
    /// one with no sample was taken back by comparing lengths, which cut
    /// the output when what was left after a piece happened to be as long.
    #[test]
    fn unknown_families_written_in_pieces_lose_nothing() {
        let body = "# TYPE req summary\n\
                    req{l=\"6\",quantile=\"0.9\"} 1\n\
                    req_sum{l=\"6\"} 2\n\
                    req_count{l=\"6\"} 2\n\
                    req{quantile=\"0.5\"} 1\n\
                    req{quantile=\"0.9\"} 1\n\
                    req_sum{} 2\n\
                    req_count{} 2\n\
                    req{l=\"1\",quantile=\"0.5\"} 1\n\
                    req{l=\"1\",quantile=\"0.9\"} 1\n\
                    req_sum{l=\"1\"} 2\n\
                    req_count{l=\"1\"} 2\n\
                    # HELP f2 help \\\\ text\n\
                    f2{l=\"2\"} 1\n\
                    f2{l=\"2\"} 1\n\
                    f2{l=\"5\"} 1\n\
                    a_b{l=\"6\",m=\"x\"} 1\n\
                    a_b{l=\"2\",m=\"x\"} 1\n\
                    a_b{l=\"3\",m=\"x\"} 1\n\
                    a_b{l=\"2\",m=\"x\"} 1\n\
                    a_b 1\n\
                    a_b{l=\"5\",m=\"x\"} 1\n";
        let snapshot = text_snapshot(body);
        let sources = one_source(&snapshot);
        let mut whole = Vec::new();
        Merger::new("container").merge_as(&sources, OutputFormat::OpenMetrics, &mut whole);
        assert!(String::from_utf8_lossy(&whole).contains("# TYPE a_b unknown"));
        for piece_bytes in 100..=140 {
            let (mut joined, mut piece) = (Vec::new(), Vec::new());
            Merger::new("container").merge_in_pieces(
                &sources,
                OutputFormat::OpenMetrics,
                &mut piece,
                piece_bytes,
                &mut |bytes| joined.extend_from_slice(bytes),
            );
            assert!(
                joined == whole,
                "pieces of {piece_bytes}:\n{}",
                String::from_utf8_lossy(&joined)
            );
        }
    }

    /// A remembered family is written in one walk and handed on only once
    /// it stands, but never as more than a piece: one larger than a piece
    /// is written again by the two walks, in pieces, and the output is the
    /// same.
    #[test]
    fn a_remembered_family_larger_than_a_piece_is_handed_on_in_pieces() {
        let mut body = String::from("# TYPE small gauge\n");
        for i in 0..8 {
            body.push_str(&format!("small{{i=\"{i}\"}} 1\n"));
        }
        body.push_str("# TYPE large gauge\n");
        for i in 0..2_000 {
            body.push_str(&format!("large{{path=\"/api/v1/items/{i}\"}} {i}\n"));
        }
        let snapshot = text_snapshot(&body);
        let sources = one_source(&snapshot);
        let mut merger = Merger::new("container");
        let mut whole = Vec::new();
        // Built twice: both families held, written in one walk.
        for _ in 0..2 {
            merger.merge_as(&sources, OutputFormat::OpenMetrics, &mut whole);
        }
        assert_eq!(merger.remembered.values().filter(|r| r.held).count(), 2);
        for piece_bytes in [64, 4096] {
            let (mut joined, mut largest, mut piece) = (Vec::new(), 0, Vec::new());
            merger.merge_in_pieces(
                &sources,
                OutputFormat::OpenMetrics,
                &mut piece,
                piece_bytes,
                &mut |bytes| {
                    largest = largest.max(bytes.len());
                    joined.extend_from_slice(bytes);
                },
            );
            assert!(joined == whole);
            assert!(largest < piece_bytes + 100, "{largest} for {piece_bytes}");
            // Still remembered and held: the walk was only abandoned.
            assert_eq!(merger.remembered.values().filter(|r| r.held).count(), 2);
        }
    }

    /// A contribution is written in one walk only once its names and
    /// labels were found the same again: one whose labels change every
    /// build is never held, so no walk of it is thrown away.
    #[test]
    fn only_contributions_found_the_same_again_are_held() {
        let body = |host: &str| {
            let mut body = String::from("# TYPE g gauge\n");
            for i in 0..8 {
                body.push_str(&format!("g{{i=\"{i}\",host=\"{host}\"}} 1\n"));
            }
            body
        };
        let (first, second) = (body("a"), body("b"));
        let held = |merger: &Merger| merger.remembered.values().filter(|r| r.held).count();
        let mut changing = Merger::new("container");
        for round in 0..6 {
            let body = if round % 2 == 0 { &first } else { &second };
            build_as(&mut changing, &[(Some("a"), body)], Escaping::Underscores);
            assert_eq!(changing.remembered.len(), 1);
            assert_eq!(held(&changing), 0, "round {round}");
        }
        let mut steady = Merger::new("container");
        build_as(&mut steady, &[(Some("a"), &first)], Escaping::Underscores);
        assert_eq!(held(&steady), 0);
        build_as(&mut steady, &[(Some("a"), &first)], Escaping::Underscores);
        assert_eq!(held(&steady), 1);
        // Changed once held: forgotten by the walk, remembered anew.
        let out = build_as(&mut steady, &[(Some("a"), &second)], Escaping::Underscores);
        assert_eq!(
            out,
            build_as(
                &mut Merger::new("container"),
                &[(Some("a"), &second)],
                Escaping::Underscores
            )
        );
        assert_eq!((steady.remembered.len(), held(&steady)), (1, 0));
    }

    /// What is remembered is bounded: past [`REMEMBERED_FAMILIES`]
    /// contributions, families are checked whole every build, and the
    /// output is the same.
    #[test]
    fn the_remembered_families_are_bounded() {
        let mut body = String::new();
        for family in 0..REMEMBERED_FAMILIES + 100 {
            body.push_str(&format!("# TYPE g{family} gauge\n"));
            for i in 0..REMEMBERED_MIN_SAMPLES {
                body.push_str(&format!("g{family}{{i=\"{i}\"}} 1\n"));
            }
        }
        let snapshot = text_snapshot(&body);
        let sources = one_source(&snapshot);
        let mut merger = Merger::new("container");
        let mut first = Vec::new();
        merger.merge_as(&sources, OutputFormat::OpenMetrics, &mut first);
        assert_eq!(merger.remembered.len(), REMEMBERED_FAMILIES);
        let mut second = Vec::new();
        merger.merge_as(&sources, OutputFormat::OpenMetrics, &mut second);
        assert_eq!(merger.remembered.len(), REMEMBERED_FAMILIES);
        assert!(first == second);
    }

    /// (container, body) inputs, indexed (a refused body kept failed).
    /// A text body indexed (it must parse).
    fn text_snapshot(body: &str) -> Snapshot {
        let mut snapshot = Snapshot::new();
        snapshot.replace_as(&mut body.as_bytes().to_vec(), Format::Text);
        snapshot.index().expect("parses");
        snapshot
    }

    /// `snapshot` as the one source, of container `a`.
    fn one_source(snapshot: &Snapshot) -> [Source<'_>; 1] {
        [Source {
            container: Some("a"),
            snapshot,
        }]
    }

    fn indexed_inputs(inputs: &[(Option<&str>, &str)]) -> Vec<Snapshot> {
        inputs
            .iter()
            .map(|(_, body)| {
                let mut snapshot = Snapshot::new();
                snapshot.replace_as(
                    &mut body.as_bytes().to_vec(),
                    Format::guess(body.as_bytes()),
                );
                let _ = snapshot.index();
                snapshot
            })
            .collect()
    }

    fn build_as(
        merger: &mut Merger,
        inputs: &[(Option<&str>, &str)],
        escaping: Escaping,
    ) -> String {
        let snapshots = indexed_inputs(inputs);
        let sources: Vec<Source<'_>> = snapshots
            .iter()
            .zip(inputs)
            .map(|(snapshot, (container, _))| Source {
                container: *container,
                snapshot,
            })
            .collect();
        let mut out = Vec::new();
        let kind = OutputKind {
            format: OutputFormat::OpenMetrics,
            escaping,
        };
        merger.merge_as(&sources, kind, &mut out);
        String::from_utf8(out).expect("utf-8")
    }

    /// A then B with one merger, B with a fresh one: (warm, fresh, how
    /// many contributions the warm merger remembered after A).
    fn warm_and_fresh(
        a: &[(Option<&str>, &str)],
        a_escaping: Escaping,
        b: &[(Option<&str>, &str)],
        b_escaping: Escaping,
    ) -> (String, String, usize) {
        warmed_and_fresh(a, a_escaping, 1, b, b_escaping)
    }

    /// [`warm_and_fresh`] with `a` built `builds` times first (twice: its
    /// remembered families are held, written in one walk).
    fn warmed_and_fresh(
        a: &[(Option<&str>, &str)],
        a_escaping: Escaping,
        builds: usize,
        b: &[(Option<&str>, &str)],
        b_escaping: Escaping,
    ) -> (String, String, usize) {
        let mut warm = Merger::new("container");
        for _ in 0..builds {
            build_as(&mut warm, a, a_escaping);
        }
        let remembered = warm.remembered.len();
        let warm_out = build_as(&mut warm, b, b_escaping);
        let fresh_out = build_as(&mut Merger::new("container"), b, b_escaping);
        (warm_out, fresh_out, remembered)
    }

    /// Rule 0 in OpenMetrics: the sidecar's own family wins its name, and
    /// only the family it ends in (a counter `x_total` moved to its whole
    /// name leaves the name `x` to the containers).
    #[test]
    fn the_sidecars_own_families_win_their_openmetrics_names() {
        let own_counter = "# TYPE multiplexer_x_total counter\nmultiplexer_x_total 1\n";
        type Inputs<'a> = &'a [(Option<&'a str>, &'a str)];
        let cases: [(Inputs<'_>, &str); 3] = [
            (
                &[
                    (Some("a"), "# TYPE multiplexer_y gauge\nmultiplexer_y 5\n"),
                    (None, "# TYPE multiplexer_y gauge\nmultiplexer_y 6\n"),
                ],
                "# TYPE multiplexer_y gauge\nmultiplexer_y 6\n# EOF\n",
            ),
            (
                &[
                    (None, own_counter),
                    (Some("a"), "# TYPE multiplexer_x gauge\nmultiplexer_x 2\n"),
                ],
                "# TYPE multiplexer_x_total unknown\nmultiplexer_x_total 1\n# TYPE multiplexer_x gauge\nmultiplexer_x{container=\"a\"} 2\n# EOF\n",
            ),
            (
                &[
                    (None, own_counter),
                    (Some("a"), "# TYPE multiplexer_x gauge\nmultiplexer_x 2\n"),
                    (Some("b"), "# TYPE multiplexer_x_total gauge\nmultiplexer_x_total 3\n"),
                ],
                "# TYPE multiplexer_x_total unknown\nmultiplexer_x_total 1\n# TYPE multiplexer_x gauge\nmultiplexer_x{container=\"a\"} 2\n# EOF\n",
            ),
        ];
        for (inputs, expected) in cases {
            let output = build_as(&mut Merger::new("container"), inputs, Escaping::AllowUtf8);
            assert_eq!(output, expected, "{inputs:?}");
        }
    }

    /// From the review of the moved counters: a family whose name was
    /// read as its first contribution wrote it keeps its escaped name when
    /// a contribution named otherwise (`x.y` for `x_y`) becomes its first,
    /// and is written once.
    #[test]
    fn escaped_names_stay_escaped_when_counters_move() {
        let cases: [&[(Option<&str>, &str)]; 3] = [
            &[
                (Some("a"), "# TYPE x_y_total counter\nx_y_total 1\n"),
                (Some("b"), "# TYPE \"x.y\" gauge\n{\"x.y\"} 2\n"),
            ],
            &[
                (Some("a"), "# TYPE x_y_total counter\nx_y_total 1\n"),
                (Some("b"), "# TYPE \"x.y\" gauge\n{\"x.y\"} 2\n"),
                (Some("c"), "# TYPE x_y gauge\nx_y 3\n"),
            ],
            &[
                (
                    Some("a"),
                    "# TYPE \"x.y_total\" counter\n{\"x.y_total\"} 1\n",
                ),
                (
                    Some("b"),
                    "# TYPE x_y gauge\nx_y 2\n# TYPE x_y_total gauge\nx_y_total{l=\"1\"} 3\n",
                ),
            ],
        ];
        for inputs in cases {
            let out = build_as(&mut Merger::new("container"), inputs, Escaping::Underscores);
            assert!(!out.contains("x.y"), "an unescaped name:\n{out}");
            let mut types: Vec<&str> = out.lines().filter(|l| l.starts_with("# TYPE ")).collect();
            let count = types.len();
            types.sort();
            types.dedup();
            assert_eq!(types.len(), count, "a family written twice:\n{out}");
        }
    }

    /// From the review: the family a counter moved out of keeps the place
    /// of its first contribution that stays, so claims drop the family
    /// they dropped when the counter went whole at once.
    #[test]
    fn a_moved_counter_does_not_change_which_claim_wins() {
        let inputs: &[(Option<&str>, &str)] = &[
            (Some("a"), "# TYPE x_total counter\nx_total 1\n"),
            (Some("b"), "# TYPE x_count gauge\nx_count 2\n"),
            (
                Some("c"),
                "# TYPE x summary\nx{quantile=\"0.5\"} 1\nx_sum 3\nx_count 2\n",
            ),
        ];
        let mut merger = Merger::new("container");
        let out = build_as(&mut merger, inputs, Escaping::AllowUtf8);
        let conflicts = conflicts_of(&merger);
        assert!(
            out.contains("# TYPE x_count gauge\nx_count{container=\"b\"} 2\n"),
            "{out}"
        );
        assert!(!out.contains("# TYPE x summary"), "{out}");
        assert_eq!(conflicts, ["2:x"], "{out}");
    }

    /// A counter moves to its whole name when its stripped name is a
    /// gauge's, also when that name ends with a suffix (whose family is
    /// marked for rule 3 in the same byte as what it holds).
    #[test]
    fn a_counter_named_with_a_suffix_moves_to_its_whole_name() {
        let (out, conflicts) = merge_openmetrics(&[
            ("a", "# TYPE x_count_total counter\nx_count_total 1\n"),
            ("b", "# TYPE x_count gauge\nx_count 2\n"),
        ]);
        assert!(
            out.contains("# TYPE x_count_total unknown\nx_count_total{container=\"a\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("# TYPE x_count gauge\nx_count{container=\"b\"} 2\n"),
            "{out}"
        );
        assert!(conflicts.is_empty(), "{conflicts:?}");
    }

    /// From the second review: an OpenMetrics timestamp is compared as
    /// prometheus_client reads the text the output copies, to the
    /// nanosecond, not as Prometheus' milliseconds.
    #[test]
    fn histogram_timestamps_apart_below_a_millisecond_are_two_groups() {
        let body = "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1 1.0001\nh_count 1 1.0002\nh_sum 1 1.0002\n# EOF\n";
        let out = openmetrics_of(body);
        assert!(!out.contains("# TYPE h histogram"), "{out}");
    }

    #[test]
    fn a_timestamp_backwards_below_a_millisecond_breaks_the_family() {
        let backwards = "# TYPE g gauge\ng 1 1.0002\ng 2 1.0001\n# EOF\n";
        let out = openmetrics_of(backwards);
        assert!(!out.contains("# TYPE g gauge"), "{out}");
        // Written in two forms, which prometheus_client will not compare.
        let forms = "# TYPE g gauge\ng 1 1000\ng 2 1e3\n# EOF\n";
        let out = openmetrics_of(forms);
        assert!(!out.contains("# TYPE g gauge"), "{out}");
        let forward = "# TYPE g gauge\ng 1 1.0001\ng 2 1.0002\n# EOF\n";
        let out = openmetrics_of(forward);
        assert!(out.contains("# TYPE g gauge"), "{out}");
    }

    /// From the fuzz target, once it read OpenMetrics bodies: an exemplar's
    /// label names count toward its 128 characters as the output writes
    /// them (`U__a_2e_b` under `values`, 9 where `a.b` is 3).
    #[test]
    fn an_exemplar_is_measured_with_its_names_as_written() {
        let value = "v".repeat(124);
        let body = format!("# TYPE c counter\nc_total 1 # {{\"a.b\"=\"{value}\"}} 1\n# EOF\n");
        let inputs = [(Some("a"), body.as_str())];
        let kept = build_as(&mut Merger::new("container"), &inputs, Escaping::AllowUtf8);
        assert!(kept.contains(" # {"), "{kept}");
        let escaped = build_as(&mut Merger::new("container"), &inputs, Escaping::Values);
        assert!(!escaped.contains(" # {"), "{escaped}");
        assert!(
            escaped.contains("c_total{container=\"a\"} 1\n"),
            "{escaped}"
        );
    }

    /// From the fuzz target: prometheus_client turns "in quotes" at every
    /// `"` after a sample's value, escaped or not, so an exemplar with a
    /// quote in a label value is dropped (the sample kept).
    #[test]
    fn an_exemplar_with_a_quote_in_its_labels_is_dropped() {
        let body = "# TYPE c counter\nc_total{a=\"1\"} 1 # {t=\"x\\\"y\"} 1\nc_total{a=\"2\"} 1 # {t=\"xy\"} 1\n# EOF\n";
        let out = openmetrics_of(body);
        assert!(
            out.contains("c_total{a=\"1\",container=\"a\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("c_total{a=\"2\",container=\"a\"} 1 # {t=\"xy\"} 1\n"),
            "{out}"
        );
    }

    /// Label sets are checked per source (the source is in each group's
    /// hash), but two families of one source written as one are one
    /// source's: a label set of the first that comes back in the second
    /// breaks the family.
    #[test]
    fn a_label_set_back_in_the_same_sources_second_family_breaks_it() {
        let body = "# TYPE \"a.b\" gauge\n{\"a.b\",x=\"1\"} 1\n{\"a.b\",x=\"2\"} 1\n# TYPE a_b gauge\na_b{x=\"1\"} 2\n";
        let out = build_as(
            &mut Merger::new("container"),
            &[(Some("a"), body), (Some("b"), body)],
            Escaping::Underscores,
        );
        assert!(!out.contains("# TYPE a_b gauge"), "{out}");
        assert!(out.contains("a_b{x=\"1\",container=\"b\"} 1"), "{out}");
        // Three families of one sample each, written as one: the first's
        // label set comes back in the third.
        let body = "# TYPE \"a.b\" gauge\n{\"a.b\",x=\"1\"} 1\n# TYPE a_b gauge\na_b{x=\"2\"} 2\n\
                    # TYPE \"a-b\" gauge\n{\"a-b\",x=\"1\"} 3\n";
        let out = build_as(
            &mut Merger::new("container"),
            &[(Some("a"), body)],
            Escaping::Underscores,
        );
        // Written as unknown, the series repeated dropped as Prometheus
        // drops it.
        assert!(!out.contains("# TYPE a_b gauge"), "{out}");
        assert!(out.contains("a_b{x=\"2\",container=\"a\"} 2"), "{out}");
    }

    /// Two families of one source whose names escape alike are one
    /// family with two contributions of the same source: a label set
    /// repeated across them breaks the family, which a remembered
    /// contribution (its groups never entered in `seen`) must not hide.
    #[test]
    fn two_families_of_one_source_written_as_one_are_checked_whole() {
        let body = "# TYPE \"a.b\" gauge\n{\"a.b\",x=\"1\"} 1\n{\"a.b\",x=\"2\"} 1\n{\"a.b\",x=\"3\"} 1\n{\"a.b\",x=\"4\"} 1\n\
                    # TYPE a_b gauge\na_b{x=\"1\"} 1\na_b{x=\"2\"} 1\na_b{x=\"3\"} 1\na_b{x=\"4\"} 1\n";
        let other = body.replace("a_b{x=\"", "a_b{x=\"9");
        // The same bodies, allow-utf-8 then underscores.
        let (warm, fresh, remembered) = warm_and_fresh(
            &[(Some("a"), body)],
            Escaping::AllowUtf8,
            &[(Some("a"), body)],
            Escaping::Underscores,
        );
        assert!(remembered > 0);
        assert_eq!(warm, fresh, "escaping changed, same body");
        // Underscores both times; the second family's labels changed to
        // repeat the first's.
        let (warm, fresh, _) = warm_and_fresh(
            &[(Some("a"), &other)],
            Escaping::Underscores,
            &[(Some("a"), body)],
            Escaping::Underscores,
        );
        assert_eq!(warm, fresh, "underscores, labels repeated");
    }

    /// Generated A/B pairs: the same structure (sources, families, label
    /// sets) perturbed a little for B, values drawn anew; warm (A then B)
    /// against fresh (B), under allow-utf-8 and underscores.
    #[test]
    fn remembering_mergers_write_what_fresh_ones_write() {
        struct Rng(u64);
        impl Rng {
            fn next(&mut self) -> u64 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0
            }
            fn below(&mut self, n: u64) -> u64 {
                self.next() % n
            }
            fn chance(&mut self, percent: u64) -> bool {
                self.below(100) < percent
            }
        }
        #[derive(Clone)]
        struct Family {
            kind: u8, // 0 gauge, 1 counter, 2 histogram, 3 summary, 4 untyped, 5 "a.b" gauge, 6 a_b gauge, 7 whole pair
            groups: Vec<u8>,
            timestamps: bool,
        }
        #[derive(Clone)]
        struct Src {
            om: bool,
            families: Vec<Family>,
            container: Option<&'static str>,
        }
        let value = |rng: &mut Rng| -> &'static str {
            if rng.chance(85) {
                "1"
            } else {
                ["0", "-1", "NaN", "2", "0.5", "+Inf", "-Inf", "3"][rng.below(8) as usize]
            }
        };
        let render = |rng: &mut Rng, src: &Src| -> String {
            let mut out = String::new();
            for (i, f) in src.families.iter().enumerate() {
                let ts = |rng: &mut Rng| -> String {
                    if !f.timestamps {
                        return String::new();
                    }
                    let t = if rng.chance(90) {
                        0
                    } else {
                        rng.below(3) as i64 - 1
                    };
                    if src.om {
                        format!(" {}", 1_700_000_000 + t)
                    } else {
                        format!(" {}", 1_700_000_000_000 + 1000 * t)
                    }
                };
                let line = |rng: &mut Rng, out: &mut String, name: &str, labels: &str| {
                    let v = value(rng);
                    let t = ts(rng);
                    if let Some(quoted) = name.strip_prefix('"') {
                        let sep = if labels.is_empty() { "" } else { "," };
                        out.push_str(&format!("{{\"{quoted}{sep}{labels}}} {v}{t}\n"));
                    } else {
                        out.push_str(&format!("{name}{{{labels}}} {v}{t}\n"));
                    }
                };
                let n = format!("f{i}");
                match f.kind {
                    0 | 4 | 5 | 6 => {
                        let (name, typ) = match f.kind {
                            0 => (n.clone(), Some("gauge")),
                            4 => (n.clone(), None),
                            5 => ("\"a.b\"".to_string(), Some("gauge")),
                            _ => ("a_b".to_string(), Some("gauge")),
                        };
                        if let Some(typ) = typ {
                            out.push_str(&format!("# TYPE {name} {typ}\n"));
                        }
                        for g in &f.groups {
                            line(rng, &mut out, &name, &format!("l=\"{g}\""));
                        }
                    }
                    1 => {
                        if src.om {
                            out.push_str(&format!("# TYPE {n} counter\n"));
                        } else {
                            out.push_str(&format!("# TYPE {n}_total counter\n"));
                        }
                        for g in &f.groups {
                            line(rng, &mut out, &format!("{n}_total"), &format!("l=\"{g}\""));
                            if src.om && rng.chance(30) {
                                line(
                                    rng,
                                    &mut out,
                                    &format!("{n}_created"),
                                    &format!("l=\"{g}\""),
                                );
                            }
                        }
                    }
                    2 => {
                        out.push_str(&format!("# TYPE {n} histogram\n"));
                        for g in &f.groups {
                            let neg = *g >= 5;
                            let bounds: &[&str] =
                                if neg { &["-1", "+Inf"] } else { &["1", "+Inf"] };
                            for b in bounds {
                                line(
                                    rng,
                                    &mut out,
                                    &format!("{n}_bucket"),
                                    &format!("l=\"{g}\",le=\"{b}\""),
                                );
                            }
                            if !neg || rng.chance(20) {
                                line(rng, &mut out, &format!("{n}_sum"), &format!("l=\"{g}\""));
                                line(rng, &mut out, &format!("{n}_count"), &format!("l=\"{g}\""));
                            }
                        }
                    }
                    3 => {
                        out.push_str(&format!("# TYPE {n} summary\n"));
                        for g in &f.groups {
                            for q in ["0.5", "0.9"] {
                                line(rng, &mut out, &n, &format!("l=\"{g}\",quantile=\"{q}\""));
                            }
                            line(rng, &mut out, &format!("{n}_sum"), &format!("l=\"{g}\""));
                            line(rng, &mut out, &format!("{n}_count"), &format!("l=\"{g}\""));
                        }
                    }
                    _ => {
                        // A gauge `wN` and a counter `wN_total`: written whole.
                        out.push_str(&format!("# TYPE w{i} gauge\n"));
                        for g in &f.groups {
                            line(rng, &mut out, &format!("w{i}"), &format!("l=\"{g}\""));
                        }
                        out.push_str(&format!("# TYPE w{i}_total counter\n"));
                        for g in &f.groups {
                            line(rng, &mut out, &format!("w{i}_total"), &format!("l=\"{g}\""));
                        }
                    }
                }
            }
            if src.om {
                out.push_str("# EOF\n");
            }
            out
        };
        let new_family = |rng: &mut Rng| Family {
            kind: rng.below(8) as u8,
            groups: (0..2 + rng.below(4))
                .map(|_| 1 + rng.below(6) as u8)
                .collect(),
            timestamps: rng.chance(20),
        };
        let perturb = |rng: &mut Rng, sources: &[Src]| -> Vec<Src> {
            let mut b: Vec<Src> = sources.to_vec();
            if b.len() > 1 && rng.chance(10) {
                let at = rng.below(b.len() as u64) as usize;
                b.remove(at);
            }
            for s in &mut b {
                if rng.chance(5) {
                    s.om = !s.om;
                }
                if rng.chance(10) && s.families.len() > 1 {
                    let i = rng.below(s.families.len() as u64) as usize;
                    let j = rng.below(s.families.len() as u64) as usize;
                    s.families.swap(i, j);
                }
                for f in &mut s.families {
                    if rng.chance(10) && !f.groups.is_empty() {
                        let k = rng.below(f.groups.len() as u64) as usize;
                        f.groups[k] = 1 + rng.below(6) as u8;
                    }
                    if rng.chance(5) {
                        f.timestamps = !f.timestamps;
                    }
                }
                if rng.chance(5) {
                    s.families.push(new_family(rng));
                }
            }
            b
        };
        let containers = [Some("a"), Some("b"), None];
        let escapings = [Escaping::AllowUtf8, Escaping::Underscores];
        let mut failures = Vec::new();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let rounds = 3000;
        let mut remembered_total = 0;
        for round in 0..rounds {
            let sources: Vec<Src> = (0..1 + rng.below(3))
                .map(|i| Src {
                    om: rng.chance(40),
                    families: (0..1 + rng.below(4))
                        .map(|_| new_family(&mut rng))
                        .collect(),
                    container: containers[i as usize],
                })
                .collect();
            let b = perturb(&mut rng, &sources);
            let a_bodies: Vec<String> = sources.iter().map(|s| render(&mut rng, s)).collect();
            let b_bodies: Vec<String> = b.iter().map(|s| render(&mut rng, s)).collect();
            let a_in: Vec<(Option<&str>, &str)> = sources
                .iter()
                .zip(&a_bodies)
                .map(|(s, body)| (s.container, body.as_str()))
                .collect();
            let b_in: Vec<(Option<&str>, &str)> = b
                .iter()
                .zip(&b_bodies)
                .map(|(s, body)| (s.container, body.as_str()))
                .collect();
            let ea = escapings[rng.below(2) as usize];
            let eb = if rng.chance(80) {
                ea
            } else {
                escapings[rng.below(2) as usize]
            };
            // Half the rounds build A twice: its families held, B is
            // written in one walk where its names and labels are A's.
            let builds = 1 + round % 2;
            let (warm, fresh, remembered) = warmed_and_fresh(&a_in, ea, builds, &b_in, eb);
            remembered_total += remembered;
            if warm != fresh {
                failures.push(format!(
                    "round {round} {ea:?} -> {eb:?}\nA:\n{}\nB:\n{}\nwarm:\n{warm}\nfresh:\n{fresh}",
                    a_bodies.join("-----\n"),
                    b_bodies.join("-----\n")
                ));
            }
        }
        // The fast path was taken, and never wrote otherwise.
        assert!(
            remembered_total > rounds / 4,
            "{remembered_total} remembered"
        );
        assert!(
            failures.is_empty(),
            "{} of {rounds} differ; the first:\n{}",
            failures.len(),
            failures[0]
        );
    }

    /// UTF-8 names (issue 18): kept as the source wrote them, written for
    /// each client's escaping scheme; a sample name is its family's written
    /// name and its own suffix, so OpenMetrics families stay whole.
    #[test]
    fn names_are_written_for_each_escaping_scheme() {
        let body = "# TYPE \"http.requests\" counter\n{\"http.requests_total\",\"my.label\"=\"v\",code=\"200\"} 3\n# EOF\n";
        let snapshot = text_snapshot(body);
        let sources = one_source(&snapshot);
        let cases = [
            (
                OutputFormat::OpenMetrics,
                Escaping::AllowUtf8,
                "# TYPE \"http.requests\" counter\n{\"http.requests_total\",\"my.label\"=\"v\",code=\"200\",container=\"a\"} 3\n# EOF\n",
            ),
            (
                OutputFormat::OpenMetrics,
                Escaping::Underscores,
                "# TYPE http_requests counter\nhttp_requests_total{my_label=\"v\",code=\"200\",container=\"a\"} 3\n# EOF\n",
            ),
            (
                OutputFormat::OpenMetrics,
                Escaping::Values,
                "# TYPE U__http_2e_requests counter\nU__http_2e_requests_total{U__my_2e_label=\"v\",code=\"200\",container=\"a\"} 3\n# EOF\n",
            ),
            (
                OutputFormat::OpenMetrics,
                Escaping::Dots,
                "# TYPE http_dot_requests counter\nhttp_dot_requests_total{my_dot_label=\"v\",code=\"200\",container=\"a\"} 3\n# EOF\n",
            ),
            (
                OutputFormat::Text,
                Escaping::AllowUtf8,
                "# TYPE \"http.requests_total\" counter\n{\"http.requests_total\",\"my.label\"=\"v\",code=\"200\",container=\"a\"} 3\n",
            ),
            (
                OutputFormat::Text,
                Escaping::Underscores,
                "# TYPE http_requests_total counter\nhttp_requests_total{my_label=\"v\",code=\"200\",container=\"a\"} 3\n",
            ),
        ];
        for (format, escaping, expected) in cases {
            let mut out = Vec::new();
            Merger::new("container").merge_as(&sources, OutputKind { format, escaping }, &mut out);
            assert_eq!(
                String::from_utf8_lossy(&out),
                expected,
                "{format:?} {escaping:?}"
            );
        }
        // Two sources whose names escape alike are one family.
        let other_body = "# TYPE http_requests_total counter\nhttp_requests_total 1\n";
        let mut other = Snapshot::new();
        other.replace_as(&mut other_body.as_bytes().to_vec(), Format::Text);
        other.index().expect("parses");
        let both = [
            sources[0],
            Source {
                container: Some("b"),
                snapshot: &other,
            },
        ];
        let mut out = Vec::new();
        Merger::new("container").merge_as(&both, OutputFormat::Text, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "# TYPE http_requests_total counter\nhttp_requests_total{my_label=\"v\",code=\"200\",container=\"a\"} 3\nhttp_requests_total{container=\"b\"} 1\n"
        );
    }
}

/// 10^0 to 10^15, each exact in a double (`powi` is a call per value).
const POWERS_OF_TEN: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// A decimal the parser validated, as a float: short plain decimals (the
/// common case) exactly from their digits, anything else by `str::parse`.
fn decimal_value(text: &[u8]) -> f64 {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    let mut mantissa = 0u64;
    let mut fraction_digits = 0i32;
    let mut seen_dot = false;
    let mut plain = !digits.is_empty() && digits.len() <= 15;
    for &c in digits {
        match c {
            b'0'..=b'9' if plain => {
                mantissa = mantissa * 10 + u64::from(c - b'0');
                fraction_digits += i32::from(seen_dot);
            }
            b'.' if !seen_dot => seen_dot = true,
            _ => plain = false,
        }
    }
    if !plain {
        return std::str::from_utf8(text)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN);
    }
    // Both exact in a double (15 digits, a power of ten up to 10^15), so the
    // division is correctly rounded, as parsing the text is; counts, the
    // most of these, are integers and need none.
    let value = if fraction_digits == 0 {
        mantissa as f64
    } else {
        mantissa as f64 / POWERS_OF_TEN[fraction_digits as usize]
    };
    if negative {
        -value
    } else {
        value
    }
}

/// A short plain decimal (`-`, up to 15 digits, at most one `.`, at least
/// one digit) as `str::parse` reads it, without its cost: both the digits
/// and the power of ten are exact in a double, so the division is
/// correctly rounded as parsing is. None for anything else.
fn short_decimal(text: &[u8]) -> Option<f64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let mut mantissa = 0u64;
    let mut fraction_digits = 0i32;
    let mut seen_dot = false;
    for &c in digits {
        match c {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(c - b'0');
                fraction_digits += i32::from(seen_dot);
            }
            b'.' if !seen_dot => seen_dot = true,
            _ => return None,
        }
    }
    if seen_dot && digits.len() == 1 {
        return None;
    }
    let value = mantissa as f64 / POWERS_OF_TEN[fraction_digits as usize];
    Some(if negative { -value } else { value })
}

/// Adds each label of a canonical label set (`name="value",...`: legacy
/// names, no blanks, no trailing comma; what the parser left without
/// [`SampleFlags::SLOW_LABELS`]) at `labels` in `body` to `group` by its
/// text (`name="value`, as [`GroupHash::add_text`] takes it), but the one
/// named `bound`, whose raw value's position is returned instead. Names
/// end at `=` and values at their first unescaped `"`, found eight bytes
/// at a time.
#[inline]
fn add_canonical_labels(
    body: &[u8],
    labels: Span,
    bound: &[u8],
    group: &mut GroupHash,
) -> Option<std::ops::Range<usize>> {
    let end = labels.end as usize;
    let mut p = labels.start as usize;
    let mut bound_value = None;
    while p < end {
        let equals = find_byte(body, p, b'=');
        let mut q = equals + 2;
        loop {
            q = scan_quote_stop(body, q);
            match body.get(q) {
                Some(b'\\') => q += 2,
                _ => break,
            }
        }
        if q >= end {
            break;
        }
        if !bound.is_empty() && body[p..equals] == *bound {
            bound_value = Some(equals + 2..q);
        } else {
            group.add_text(body, p..q);
        }
        p = q + 2;
    }
    bound_value
}

/// The labels of a canonical label set (see [`add_canonical_labels`]) as
/// names and raw values, for [`series_hash`] (families written as
/// `unknown` only).
fn canonical_labels(labels: &[u8], mut each: impl FnMut(&[u8], &[u8])) {
    let mut p = 0;
    while p < labels.len() {
        let equals = find_byte(labels, p, b'=');
        let value_start = equals + 2;
        let mut q = value_start;
        loop {
            q = scan_quote_stop(labels, q);
            match labels.get(q) {
                Some(b'\\') => q += 2,
                _ => break,
            }
        }
        let (Some(name), Some(value)) = (labels.get(p..equals), labels.get(value_start..q)) else {
            return;
        };
        each(name, value);
        p = q + 2;
    }
}

/// A text sample's series within the output: its source and every label.
fn series_hash(view: IndexView<'_>, sample: &Sample, source: u32, scratch: &mut Vec<u8>) -> u64 {
    let mut group = GroupHash::new();
    group.add(b"", &source.to_le_bytes());
    let body = view.body();
    if sample.flags.intersects(SampleFlags::SLOW_LABELS) {
        for label in LabelIter::new(sample.labels.of(body)) {
            scratch.clear();
            group.add(label.name(scratch), label.value);
        }
    } else {
        canonical_labels(sample.labels.of(body), |name, value| group.add(name, value));
    }
    group.finish()
}
