//! One container's latest body and its lazily built index.
//!
//! The body is owned once: `replace` swaps buffers with the caller, so the
//! bytes read from the socket are never copied, and both allocations are
//! reused scrape after scrape. The index is built only when a merge needs it
//! (`index`), because a body is replaced about 75 times between two
//! Prometheus scrapes and only the latest one is ever served. A body is
//! text (0.0.4 or OpenMetrics) or protobuf, as its `Content-Type` said; each
//! format keeps its own index buffers.

use std::fmt;

use super::parse::{FamilyView, Index, IndexView, ParseError};
use super::protobuf::read::{self as proto, MetricType, ProtoError};
use super::protobuf::up::metric_kind;

/// How a body is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4 (and 1.0.0's quoted UTF-8 names), read by the
    /// rules of Prometheus' `promparse.go`.
    #[default]
    Text,
    /// OpenMetrics 1.0, read by the rules of Prometheus'
    /// `openmetricsparse.go` (`# EOF` required, single spaces, ...).
    OpenMetrics,
    /// Delimited `io.prometheus.client.MetricFamily` messages.
    Protobuf,
}

impl Format {
    /// OpenMetrics when the body ends `# EOF` (a newline may follow), else
    /// text: for bodies that come without a `Content-Type`.
    pub fn guess(body: &[u8]) -> Format {
        let trimmed = body.strip_suffix(b"\n").unwrap_or(body);
        if trimmed.ends_with(b"# EOF") {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// Why a body was rejected: a text body's line, or a protobuf body's byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    Text(ParseError),
    Protobuf(ProtoError),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Text(error) => error.fmt(f),
            BodyError::Protobuf(error) => write!(f, "protobuf {error}"),
        }
    }
}

impl std::error::Error for BodyError {}

impl From<ParseError> for BodyError {
    fn from(error: ParseError) -> BodyError {
        BodyError::Text(error)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The body changed since the index was built.
    Stale,
    Indexed,
    /// The body did not parse: the snapshot contributes nothing until the
    /// next `replace`.
    Failed(BodyError),
}

/// One container's latest body plus its index.
pub struct Snapshot {
    body: Vec<u8>,
    format: Format,
    index: Index,
    proto_index: proto::Index,
    state: State,
}

impl Default for Snapshot {
    fn default() -> Snapshot {
        Snapshot::new()
    }
}

impl Snapshot {
    pub fn new() -> Snapshot {
        Snapshot {
            body: Vec::new(),
            format: Format::Text,
            index: Index::default(),
            proto_index: proto::Index::default(),
            state: State::Indexed,
        }
    }

    /// Takes `body` as the new content by swapping buffers: afterwards `body`
    /// holds the previous body's allocation, cleared, for the next scrape to
    /// fill. The index is rebuilt lazily by `index()`. For callers with no
    /// `Content-Type` at hand (tests, fuzz, bench): a body ending `# EOF` is
    /// read as OpenMetrics, any other as text.
    pub fn replace(&mut self, body: &mut Vec<u8>) {
        let format = Format::guess(body);
        self.replace_as(body, format);
    }

    /// `replace` for a body in `format`.
    pub fn replace_as(&mut self, body: &mut Vec<u8>, format: Format) {
        self.swap_in_as(body, format);
        body.clear();
    }

    /// `replace_as`, but `body` gets the previous body back as it is: a
    /// receive buffer reuses its stale bytes as initialised room (see
    /// `upstream/receive_buffer.rs`), which a cleared vector would lose.
    pub fn swap_in_as(&mut self, body: &mut Vec<u8>, format: Format) {
        std::mem::swap(&mut self.body, body);
        self.index.retire();
        self.proto_index.clear();
        self.format = format;
        self.state = State::Stale;
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Builds the index if the body changed since the last call. On error the
    /// snapshot becomes empty (contributes nothing) and stays so until the
    /// next `replace`; later calls return the same error again.
    pub fn index(&mut self) -> Result<(), BodyError> {
        match self.state {
            State::Indexed => Ok(()),
            State::Failed(error) => Err(error),
            State::Stale => match self.build() {
                Ok(()) => {
                    self.state = State::Indexed;
                    Ok(())
                }
                Err(error) => {
                    self.body.clear();
                    self.state = State::Failed(error);
                    Err(error)
                }
            },
        }
    }

    fn build(&mut self) -> Result<(), BodyError> {
        match self.format {
            Format::Text => self.index.build(&self.body, false).map_err(BodyError::Text),
            Format::OpenMetrics => self.index.build(&self.body, true).map_err(BodyError::Text),
            Format::Protobuf => self
                .proto_index
                .build(&self.body)
                .map_err(BodyError::Protobuf),
        }
    }

    pub fn clear(&mut self) {
        self.body.clear();
        self.index.clear();
        self.proto_index.clear();
        self.state = State::Indexed;
    }

    /// Samples in the indexed body (0 when not indexed); for protobuf,
    /// metrics (a histogram is one).
    pub fn sample_count(&self) -> usize {
        if !self.is_indexed() {
            return 0;
        }
        match self.format {
            Format::Text | Format::OpenMetrics => self.index.sample_count(),
            Format::Protobuf => self.proto_index.metrics.len(),
        }
    }

    /// Metrics carrying a native histogram in the indexed body.
    pub fn native_histogram_count(&self) -> usize {
        match self.format {
            Format::Text | Format::OpenMetrics => 0,
            Format::Protobuf => self.proto_index.native_histograms,
        }
    }

    /// Bytes held by the index's buffers (their capacity), for the bench
    /// and memory accounting.
    pub fn index_bytes(&self) -> usize {
        self.index.capacity_bytes() + self.proto_index.capacity_bytes()
    }

    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// Lines in a text body (a bound on its samples), counted without
    /// parsing; 0 for protobuf, whose reader bounds its index itself (a
    /// newline byte means nothing there).
    pub fn line_count(&self) -> usize {
        match self.format {
            Format::Text | Format::OpenMetrics => {
                self.body.iter().filter(|&&byte| byte == b'\n').count()
            }
            Format::Protobuf => 0,
        }
    }

    /// Gives memory back after an outsized body: buffers far above what the
    /// current body needs are shrunk.
    pub fn shrink(&mut self) {
        if self.body.capacity() > 64 * 1024 && self.body.len() * 4 < self.body.capacity() {
            self.body.shrink_to(self.body.len() * 2);
        }
        self.index.shrink();
        self.proto_index.shrink();
    }

    /// Families in the indexed body (0 when not indexed).
    pub fn family_count(&self) -> usize {
        if self.is_indexed() {
            self.view().family_count()
        } else {
            0
        }
    }

    /// Frees the index; the next `index()` parses the body again. For
    /// bodies that outlive the merge that needed their index: the memory
    /// serves the scrapes in between.
    pub fn release_index(&mut self) {
        self.index.release();
        if self.state == State::Indexed && !self.body.is_empty() {
            self.state = State::Stale;
        }
    }

    /// Whether the index matches the body (`index()` has nothing to do).
    pub fn is_indexed(&self) -> bool {
        self.state == State::Indexed
    }

    /// What the merge writer reads: the index and its body. Empty (no
    /// families) unless the last `index()` succeeded.
    pub(super) fn view(&self) -> SourceView<'_> {
        match self.format {
            Format::Text | Format::OpenMetrics => {
                SourceView::Text(IndexView::new(&self.index, &self.body))
            }
            Format::Protobuf => SourceView::Protobuf(ProtoView {
                index: &self.proto_index,
                body: &self.body,
            }),
        }
    }
}

/// A protobuf body and its index, as the merge writer reads them.
#[derive(Clone, Copy)]
pub(super) struct ProtoView<'a> {
    pub(super) index: &'a proto::Index,
    pub(super) body: &'a [u8],
}

impl<'a> ProtoView<'a> {
    pub(super) fn family(self, family: u32) -> &'a proto::Family {
        &self.index.families[family as usize]
    }

    pub(super) fn metrics(self, family: u32) -> &'a [proto::Metric] {
        let range = self.family(family).metrics;
        &self.index.metrics[range.start as usize..range.end as usize]
    }
}

/// One source of a merge, in either format: the families by number, their
/// names, types and help as the conflict rules see them.
#[derive(Clone, Copy)]
pub(super) enum SourceView<'a> {
    Text(IndexView<'a>),
    Protobuf(ProtoView<'a>),
}

impl<'a> SourceView<'a> {
    pub(super) fn body(self) -> &'a [u8] {
        match self {
            SourceView::Text(view) => view.body(),
            SourceView::Protobuf(view) => view.body,
        }
    }

    pub(super) fn family_count(self) -> usize {
        match self {
            SourceView::Text(view) => view.family_count(),
            SourceView::Protobuf(view) => view.index.families.len(),
        }
    }

    /// The family's name, hash and type; `help` is the text's raw (escaped)
    /// HELP for a text source, the help string itself for protobuf.
    #[inline(always)]
    pub(super) fn family(self, family: u32) -> FamilyView<'a> {
        match self {
            SourceView::Text(view) => view.family(family),
            SourceView::Protobuf(view) => {
                let entry = view.family(family);
                FamilyView {
                    name: entry.name.of(view.body),
                    hash: entry.hash,
                    kind: metric_kind(entry.metric_type),
                    typed: true,
                    help: entry.help.map(|help| help.of(view.body)),
                    // Not looked at: its writers scan it.
                    help_verbatim: false,
                }
            }
        }
    }

    /// The family's name as [`Self::family`] gives it.
    #[inline]
    pub(super) fn name(self, family: u32) -> &'a [u8] {
        match self {
            SourceView::Text(view) => view.family(family).name,
            SourceView::Protobuf(view) => view.family(family).name.of(view.body),
        }
    }

    /// The family's help as [`Self::family`] gives it.
    #[inline]
    pub(super) fn help(self, family: u32) -> Option<&'a [u8]> {
        match self {
            SourceView::Text(view) => view.family(family).help,
            SourceView::Protobuf(view) => view.family(family).help.map(|help| help.of(view.body)),
        }
    }

    /// The protobuf type of a protobuf source's family (None for text).
    pub(super) fn metric_type(self, family: u32) -> Option<MetricType> {
        match self {
            SourceView::Text(_) => None,
            SourceView::Protobuf(view) => Some(view.family(family).metric_type),
        }
    }

    /// Samples of a text body, metrics of a protobuf one.
    pub(super) fn sample_count(self) -> usize {
        match self {
            SourceView::Text(view) => view.sample_count(),
            SourceView::Protobuf(view) => view.index.metrics.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `replace` hands back a cleared vector, which callers may fill by
    /// appending; `swap_in_as` hands the previous body back whole, for a
    /// receive buffer whose stale bytes are room.
    #[test]
    fn replace_clears_what_it_hands_back_and_swap_in_keeps_it() {
        let mut snapshot = Snapshot::new();
        let mut body = b"a 1\n".to_vec();
        snapshot.replace(&mut body);
        body.extend_from_slice(b"b 2\n");
        snapshot.replace(&mut body);
        assert_eq!(body, b"", "the first body's allocation, cleared");
        let mut next = b"c 3\n".to_vec();
        snapshot.swap_in_as(&mut next, Format::Text);
        assert_eq!(next, b"b 2\n", "the previous body, as it was");
        snapshot.index().unwrap();
        assert_eq!(snapshot.sample_count(), 1);
    }

    /// The parser's series memo lives as the sidecar uses a snapshot: many
    /// bodies replace one another between two builds, and the index is
    /// released after each build. The third build of a steady body takes
    /// every label set from the memo (the first tells its shape, the second
    /// hashes); a body that changed a value still does; a refused body (and
    /// the memory it held), and a body of the other format, forget it.
    #[test]
    fn the_series_memo_outlives_bodies_and_index_releases() {
        let body = |value: u32| {
            (0..50)
                .map(|i| {
                    format!("requests_total{{path=\"/api/v1/items/{i}\",code=\"200\"}} {value}\n")
                })
                .collect::<String>()
        };
        let mut snapshot = Snapshot::new();
        let held_after = std::cell::Cell::new(0);
        let mut build = |text: &str, format: Format| {
            for stale in ["a 1\n", "b 2\n"] {
                snapshot.swap_in_as(&mut stale.as_bytes().to_vec(), Format::Text);
            }
            snapshot.swap_in_as(&mut text.as_bytes().to_vec(), format);
            let result = snapshot.index();
            let hits = snapshot.index.memo_hits();
            snapshot.release_index();
            held_after.set(snapshot.index_bytes());
            (result.is_ok(), hits)
        };
        assert_eq!(build(&body(1), Format::Text), (true, 0));
        assert_eq!(build(&body(2), Format::Text), (true, 0));
        assert_eq!(build(&body(3), Format::Text), (true, 50));
        assert_eq!(build(&body(4), Format::Text), (true, 50));
        assert!(!build("a{x=\"1\",x=\"2\"} 1\n", Format::Text).0);
        // Nothing of the memo is held past a refused body.
        assert_eq!(held_after.get(), 0);
        assert_eq!(build(&body(5), Format::Text), (true, 0));
        assert_eq!(build(&body(6), Format::Text), (true, 50));
        let openmetrics = format!("{}# EOF\n", body(7));
        assert_eq!(build(&openmetrics, Format::OpenMetrics), (true, 0));
        assert_eq!(build(&openmetrics, Format::OpenMetrics), (true, 50));
    }
}
