//! The published output: the edition of the merged exposition in each
//! output kind (format: text 0.0.4, OpenMetrics, delimited protobuf; and
//! name escaping) that every `/metrics` response of that kind shares until some data changes (its text when
//! small, its gzip member: [`Encoded`]), and the earlier buffers that slow
//! clients are still being sent, under one budget for both formats.
//!
//! Life of an edition: built once when a client of its format asks and the
//! data changed
//! ([`Published::start_build`], [`Published::publish`]); shared by reference
//! with every response ([`Rc`], never copied; the gzip member is added the
//! first time a gzip client asks, [`Published::current_mut`]). Its buffers
//! still held by clients are *retired* when a newer edition is published;
//! freed when the last of them is done; *evicted* when the retired buffers
//! together pass a budget, in which case the loop closes the clients holding
//! them. Who holds a buffer is read from its reference count, so this room
//! needs no list of clients and no socket.
//!
//! Memory: a build reuses the current edition's buffers when no client
//! holds them. An edition the data no longer matches is freed at once when
//! nobody holds it ([`Published::invalidate`]): the next request may be a
//! minute away.

use std::rc::Rc;

use crate::exposition::negotiate::{Escaping, OutputFormat, OutputKind};
use crate::serve::encoded::Encoded;

/// Output kinds that can have an edition: three formats, four escapings.
const SLOTS: usize = 12;

/// Where a kind's edition is kept. Both OpenMetrics versions are one kind
/// (one body; only the response's `Content-Type` names the version).
fn slot(kind: OutputKind) -> usize {
    let format = match kind.format {
        OutputFormat::Text => 0,
        OutputFormat::Protobuf => 1,
        OutputFormat::OpenMetrics => 2,
    };
    let escaping = match kind.escaping {
        Escaping::AllowUtf8 => 0,
        Escaping::Underscores => 1,
        Escaping::Dots => 2,
        Escaping::Values => 3,
    };
    format * 4 + escaping
}

pub struct Published {
    /// One edition per output kind, each built only when a client asks for
    /// that kind: a kind nobody asks for costs nothing.
    editions: [Encoded; SLOTS],
    /// Which editions match the data: serve them as they are.
    current: [bool; SLOTS],
    /// Earlier buffers still held by clients, oldest first.
    retired: Vec<Rc<Vec<u8>>>,
    /// Bytes the retired buffers may hold together.
    retired_budget: usize,
}

impl Published {
    pub fn new(retired_budget: usize) -> Published {
        Published {
            editions: Default::default(),
            current: [false; SLOTS],
            retired: Vec::new(),
            retired_budget,
        }
    }

    /// The edition to serve for `kind`, if it still matches the data.
    pub fn current_mut(&mut self, kind: impl Into<OutputKind>) -> Option<&mut Encoded> {
        let slot = slot(kind.into());
        self.current[slot].then_some(&mut self.editions[slot])
    }

    /// Bytes of the editions that match the data (text and member).
    pub fn held_bytes(&self) -> usize {
        self.editions
            .iter()
            .zip(self.current)
            .filter(|(_, current)| *current)
            .map(|(edition, _)| edition.held_bytes())
            .sum()
    }

    /// The data changed: the next request of each format builds a new
    /// edition.
    pub fn invalidate(&mut self) {
        for (edition, current) in self.editions.iter_mut().zip(&mut self.current) {
            if !*current {
                continue;
            }
            *current = false;
            for buffer in [&mut edition.text, &mut edition.gzip].into_iter().flatten() {
                if let Some(buffer) = Rc::get_mut(buffer) {
                    *buffer = Vec::new();
                }
            }
        }
    }

    /// Empty buffers to build the next edition of `format`'s text and
    /// member in: the current edition's own allocations when no client
    /// holds them. The ones clients hold are retired now, before the new
    /// edition takes memory, and the retired buffers (of either format)
    /// past the budget are returned: close their holders.
    pub fn start_build(
        &mut self,
        kind: impl Into<OutputKind>,
    ) -> (Vec<u8>, Vec<u8>, Vec<Rc<Vec<u8>>>) {
        let slot = slot(kind.into());
        let previous = std::mem::take(&mut self.editions[slot]);
        self.current[slot] = false;
        let mut buffers = [Vec::new(), Vec::new()];
        for (buffer, slot) in buffers.iter_mut().zip([previous.text, previous.gzip]) {
            let Some(mut shared) = slot else { continue };
            match Rc::get_mut(&mut shared) {
                Some(own) => {
                    *buffer = std::mem::take(own);
                    buffer.clear();
                }
                None => self.retired.push(shared),
            }
        }
        let evicted = self.evict_past_budget();
        let [text, gzip] = buffers;
        (text, gzip, evicted)
    }

    /// Makes `edition` the one served for `kind` until the data changes.
    pub fn publish(&mut self, kind: impl Into<OutputKind>, edition: Encoded) {
        let slot = slot(kind.into());
        self.editions[slot] = edition;
        self.current[slot] = true;
    }

    /// A slow client holds only a reference to an output already built, but
    /// clients that stall one after the other could each hold a different
    /// one. Past the budget the oldest buffers go (the newest retired one is
    /// always kept: its readers are recent).
    fn evict_past_budget(&mut self) -> Vec<Rc<Vec<u8>>> {
        self.retired.retain(|body| Rc::strong_count(body) > 1);
        let mut held: usize = self.retired.iter().map(|body| body.capacity()).sum();
        let mut evicted = Vec::new();
        while held > self.retired_budget && self.retired.len() > 1 {
            let oldest = self.retired.remove(0);
            held -= oldest.capacity();
            evicted.push(oldest);
        }
        evicted
    }

    /// Bytes of retired buffers still held by clients.
    #[cfg(test)]
    fn retired_bytes(&self) -> usize {
        self.retired
            .iter()
            .filter(|body| Rc::strong_count(body) > 1)
            .map(|body| body.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::encoded::{Body, EncodedBuilder};

    /// Builds and publishes `text` (kept as text: it is small); returns
    /// the text buffer shared with a client and what was evicted.
    fn build(published: &mut Published, text: &str) -> (Rc<Vec<u8>>, Vec<Rc<Vec<u8>>>) {
        let (text_buffer, gzip_buffer, evicted) = published.start_build(OutputFormat::Text);
        assert!(text_buffer.is_empty() && gzip_buffer.is_empty());
        let mut builder = EncodedBuilder::new(text_buffer, gzip_buffer, false);
        builder.write(text.as_bytes());
        published.publish(OutputFormat::Text, builder.finish());
        let body = match published
            .current_mut(OutputFormat::Text)
            .unwrap()
            .body(false)
            .0
        {
            Body::Shared(bytes) => bytes,
            Body::Gunzip { .. } => unreachable!("small texts are kept"),
        };
        (body, evicted)
    }

    #[test]
    fn shared_until_the_data_changes() {
        let mut published = Published::new(100);
        assert!(
            published.current_mut(OutputFormat::Text).is_none(),
            "nothing built yet"
        );
        let (first, evicted) = build(&mut published, "a 1\n");
        assert!(evicted.is_empty());
        let again = published
            .current_mut(OutputFormat::Text)
            .unwrap()
            .text
            .clone()
            .unwrap();
        assert!(Rc::ptr_eq(&first, &again), "shared, not rebuilt");
        drop(again);
        published.invalidate();
        assert!(published.current_mut(OutputFormat::Text).is_none());
        let (second, _) = build(&mut published, "a 2\n");
        assert_eq!(second.as_slice(), b"a 2\n");
        assert_eq!(first.as_slice(), b"a 1\n", "a holder keeps its bytes");
    }

    #[test]
    fn an_unheld_edition_is_freed_on_invalidation() {
        let mut published = Published::new(100);
        drop(build(&mut published, &"x".repeat(1000)).0);
        published.invalidate();
        let text = slot(OutputFormat::Text.into());
        assert_eq!(
            published.editions[text].text.as_ref().unwrap().capacity(),
            0
        );
        // And is not retired by the next build.
        build(&mut published, "y");
        assert!(published.retired.is_empty());
    }

    #[test]
    fn a_build_reuses_the_buffer_a_client_released() {
        let mut published = Published::new(100);
        let held = build(&mut published, "abc").0;
        published.invalidate(); // held: not freed
        let address = held.as_ptr();
        drop(held);
        let (text, _, _) = published.start_build(OutputFormat::Text);
        assert_eq!(text.as_ptr(), address);
        assert!(text.is_empty());
    }

    #[test]
    fn the_gzip_member_is_added_once_and_retired_like_the_text() {
        let mut published = Published::new(1 << 20);
        let (text, _) = build(&mut published, &"m 1\n".repeat(100));
        let edition = published.current_mut(OutputFormat::Text).unwrap();
        edition.ensure_gzip(Vec::new());
        let member = edition.gzip.clone().unwrap();
        edition.ensure_gzip(Vec::new());
        assert!(
            Rc::ptr_eq(&member, edition.gzip.as_ref().unwrap()),
            "built once"
        );
        published.invalidate();
        build(&mut published, "m 2\n");
        assert_eq!(published.retired.len(), 2, "text and member both held");
        drop((text, member));
        assert_eq!(published.retired_bytes(), 0);
    }

    /// Bodies of 40 bytes against a budget of 100, every one still held by
    /// a client: each row is a build and the bodies it evicted (before it
    /// takes memory of its own).
    #[test]
    fn the_oldest_are_evicted_past_the_budget() {
        let cases: &[(&str, &[&str])] = &[
            ("a", &[]),
            ("b", &[]),    // retired: a (40)
            ("c", &[]),    // retired: a b (80)
            ("d", &["a"]), // a b c is 120: a goes
            ("e", &["b"]), // b c d is 120: b goes
        ];
        let mut published = Published::new(100);
        let mut holders: Vec<Rc<Vec<u8>>> = Vec::new();
        for (name, expected) in cases {
            published.invalidate();
            let (body, evicted) = build(&mut published, &name.repeat(40));
            holders.push(body);
            let evicted: Vec<String> = evicted
                .iter()
                .map(|body| (body[0] as char).to_string())
                .collect();
            assert_eq!(evicted, *expected, "building {name}");
        }
        assert_eq!(published.retired_bytes(), 80);
    }

    /// Both formats' editions are kept side by side, invalidated together,
    /// and their retired buffers share one budget.
    #[test]
    fn formats_have_their_own_editions_and_one_retired_budget() {
        let mut published = Published::new(100);
        let edition = |published: &mut Published, format: OutputFormat, text: &str| {
            let (text_buffer, gzip_buffer, evicted) = published.start_build(format);
            let mut builder = EncodedBuilder::new(text_buffer, gzip_buffer, false);
            builder.write(text.as_bytes());
            published.publish(format, builder.finish());
            let held = published.current_mut(format).unwrap().text.clone().unwrap();
            (held, evicted)
        };
        let (text, _) = edition(&mut published, OutputFormat::Text, &"t".repeat(60));
        assert!(published.current_mut(OutputFormat::Protobuf).is_none());
        let (protobuf, _) = edition(&mut published, OutputFormat::Protobuf, &"p".repeat(60));
        assert_eq!(
            published.current_mut(OutputFormat::Text).unwrap().text_len,
            60
        );
        assert!(published.held_bytes() >= 120);
        published.invalidate();
        assert!(published.current_mut(OutputFormat::Text).is_none());
        assert!(published.current_mut(OutputFormat::Protobuf).is_none());
        assert_eq!(published.held_bytes(), 0);
        // Text retired (60): within budget.
        let (_, evicted) = edition(&mut published, OutputFormat::Text, "u");
        assert!(evicted.is_empty());
        // Protobuf retired too: 120 past 100, the older (text) goes.
        let (_, evicted) = edition(&mut published, OutputFormat::Protobuf, "q");
        assert_eq!(evicted.len(), 1);
        assert!(Rc::ptr_eq(&evicted[0], &text));
        drop((text, protobuf, evicted));
        assert_eq!(published.retired_bytes(), 0);
    }

    /// An output kind is its format and its escaping: each has its own
    /// edition, built only when asked for.
    #[test]
    fn escapings_of_one_format_have_their_own_editions() {
        let mut published = Published::new(100);
        let utf8 = OutputKind {
            format: OutputFormat::OpenMetrics,
            escaping: Escaping::AllowUtf8,
        };
        let underscores = OutputKind {
            format: OutputFormat::OpenMetrics,
            escaping: Escaping::Underscores,
        };
        let (text, gzip, _) = published.start_build(utf8);
        let mut builder = EncodedBuilder::new(text, gzip, false);
        builder.write(b"{\"a.b\"} 1\n# EOF\n");
        published.publish(utf8, builder.finish());
        assert!(published.current_mut(underscores).is_none());
        assert!(published.current_mut(OutputFormat::OpenMetrics).is_none());
        assert!(published.current_mut(OutputFormat::Text).is_none());
        assert_eq!(published.current_mut(utf8).unwrap().text_len, 16);
        let distinct: std::collections::HashSet<usize> = [
            OutputFormat::Text,
            OutputFormat::OpenMetrics,
            OutputFormat::Protobuf,
        ]
        .into_iter()
        .flat_map(|format| {
            [
                Escaping::AllowUtf8,
                Escaping::Underscores,
                Escaping::Dots,
                Escaping::Values,
            ]
            .map(|escaping| slot(OutputKind { format, escaping }))
        })
        .collect();
        assert_eq!(distinct.len(), SLOTS);
        assert!(distinct.iter().all(|&slot| slot < SLOTS));
    }

    #[test]
    fn the_newest_retired_body_is_kept_whatever_its_size() {
        let mut published = Published::new(10);
        let big = build(&mut published, &"z".repeat(50)).0;
        published.invalidate();
        let (_, evicted) = build(&mut published, "q");
        assert!(evicted.is_empty());
        assert_eq!(published.retired_bytes(), 50);
        drop(big);
        assert_eq!(published.retired_bytes(), 0);
    }
}
