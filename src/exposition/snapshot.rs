//! One container's latest body and its lazily built index.
//!
//! The body is owned once: `replace` swaps buffers with the caller, so the
//! bytes read from the socket are never copied, and both allocations are
//! reused scrape after scrape. The index is built only when a merge needs it
//! (`index`), because a body is replaced about 75 times between two
//! Prometheus scrapes and only the latest one is ever served.

use super::parse::{Index, IndexView, ParseError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The body changed since the index was built.
    Stale,
    Indexed,
    /// The body did not parse: the snapshot contributes nothing until the
    /// next `replace`.
    Failed(ParseError),
}

/// One container's latest body plus its index.
pub struct Snapshot {
    body: Vec<u8>,
    index: Index,
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
            index: Index::default(),
            state: State::Indexed,
        }
    }

    /// Takes `body` as the new content by swapping buffers: afterwards `body`
    /// holds the previous body's allocation, cleared, for the next scrape to
    /// fill. The index is rebuilt lazily by `index()`.
    pub fn replace(&mut self, body: &mut Vec<u8>) {
        std::mem::swap(&mut self.body, body);
        body.clear();
        self.index.clear();
        self.state = State::Stale;
    }

    /// Builds the index if the body changed since the last call. On error the
    /// snapshot becomes empty (contributes nothing) and stays so until the
    /// next `replace`; later calls return the same error again.
    pub fn index(&mut self) -> Result<(), ParseError> {
        match self.state {
            State::Indexed => Ok(()),
            State::Failed(error) => Err(error),
            State::Stale => match self.index.build(&self.body) {
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

    pub fn clear(&mut self) {
        self.body.clear();
        self.index.clear();
        self.state = State::Indexed;
    }

    /// Samples in the indexed body (0 when not indexed).
    pub fn sample_count(&self) -> usize {
        if self.is_indexed() {
            self.index.sample_count()
        } else {
            0
        }
    }

    /// Bytes held by the index's buffers (their capacity), for the bench
    /// and memory accounting.
    pub fn index_bytes(&self) -> usize {
        self.index.capacity_bytes()
    }

    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// Lines in the body (a bound on its samples), counted without parsing.
    pub fn line_count(&self) -> usize {
        self.body.iter().filter(|&&byte| byte == b'\n').count()
    }

    /// Gives memory back after an outsized body: buffers far above what the
    /// current body needs are shrunk.
    pub fn shrink(&mut self) {
        if self.body.capacity() > 64 * 1024 && self.body.len() * 4 < self.body.capacity() {
            self.body.shrink_to(self.body.len() * 2);
        }
        self.index.shrink();
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
        self.index = Default::default();
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
    pub(super) fn view(&self) -> IndexView<'_> {
        IndexView::new(&self.index, &self.body)
    }
}
