//! The served output of one change of data in the codings clients take it,
//! and the body of one response as a client's connection streams it. No I/O.
//!
//! The merge writes the text in pieces of at most [`PIECE_BYTES`] into an
//! [`EncodedBuilder`], which keeps the text only while it is small
//! ([`TEXT_KEPT_BYTES`]) and compresses it as it comes when gzip is wanted
//! or the text grew past that: the whole text of a large pod is never held.
//! The [`Encoded`] is then shared (reference-counted) by every response until
//! the data changes:
//! - gzip clients get the compressed member, built once per change of data
//!   (from the kept text, when it was kept and no gzip client had asked yet);
//! - identity clients get the kept text, or, for a large output, the text
//!   inflated from the shared member as their socket takes it (a 32 KiB
//!   window each, counted by the slow-client budget).

use std::rc::Rc;

use crate::serve::encoding::{self, GzipWriter, Inflater};

/// The merge hands over its text in pieces of about this size.
pub const PIECE_BYTES: usize = 64 * 1024;

/// Texts up to this size are kept whole for identity clients (node_exporter
/// merged three times is 134 KB), so they are written with no work at all;
/// larger ones are inflated from the compressed member per client.
pub const TEXT_KEPT_BYTES: usize = 512 * 1024;

/// One change of data's output, in its codings.
#[derive(Debug, Default)]
pub struct Encoded {
    /// The whole text, when it is at most [`TEXT_KEPT_BYTES`].
    pub text: Option<Rc<Vec<u8>>>,
    /// The gzip member, once some client needed it.
    pub gzip: Option<Rc<Vec<u8>>>,
    /// Bytes of the text.
    pub text_len: usize,
}

impl Encoded {
    /// Bytes this output holds.
    pub fn held_bytes(&self) -> usize {
        self.text.as_ref().map_or(0, |text| text.capacity())
            + self.gzip.as_ref().map_or(0, |gzip| gzip.capacity())
    }

    /// Builds the gzip member from the kept text when no client asked for
    /// gzip while the text was merged. No-op when there is one already.
    pub fn ensure_gzip(&mut self, reuse: Vec<u8>) {
        if self.gzip.is_some() {
            return;
        }
        let mut writer = GzipWriter::new(reuse);
        if let Some(text) = &self.text {
            for piece in text.chunks(PIECE_BYTES) {
                writer.write(piece);
            }
        }
        self.gzip = Some(Rc::new(writer.finish()));
    }

    /// The body of a response, gzip if `gzip` and the member was built
    /// ([`Encoded::ensure_gzip`]); the flag says which it is. Identity
    /// responses of a text that was not kept inflate the member (which the
    /// builder made in that case).
    pub fn body(&self, gzip: bool) -> (Body, bool) {
        match (&self.text, &self.gzip) {
            (_, Some(member)) if gzip => (Body::Shared(member.clone()), true),
            (Some(text), _) => (Body::Shared(text.clone()), false),
            (None, Some(member)) => (
                Body::Gunzip {
                    member: member.clone(),
                    inflater: Box::default(),
                    length: self.text_len,
                },
                false,
            ),
            // Nothing to send: an empty output.
            (None, None) => (Body::empty(), false),
        }
    }
}

/// Collects the merged text piece by piece.
pub struct EncodedBuilder {
    text: Vec<u8>,
    gzip: Option<GzipWriter>,
    /// For the member, if the text spills and gzip was not wanted.
    reuse_gzip: Vec<u8>,
    text_len: usize,
    /// The text outgrew what is kept.
    spilled: bool,
}

impl EncodedBuilder {
    /// `reuse_text` and `reuse_gzip` are buffers of an earlier output no
    /// client holds any more; `want_gzip` compresses from the start.
    pub fn new(reuse_text: Vec<u8>, reuse_gzip: Vec<u8>, want_gzip: bool) -> EncodedBuilder {
        let mut text = reuse_text;
        text.clear();
        let (gzip, reuse_gzip) = if want_gzip {
            (Some(GzipWriter::new(reuse_gzip)), Vec::new())
        } else {
            (None, reuse_gzip)
        };
        EncodedBuilder {
            text,
            gzip,
            reuse_gzip,
            text_len: 0,
            spilled: false,
        }
    }

    pub fn write(&mut self, piece: &[u8]) {
        self.text_len += piece.len();
        if !self.spilled && self.text.len() + piece.len() > TEXT_KEPT_BYTES {
            self.spilled = true;
            if self.gzip.is_none() {
                // Compression starts now, from the text kept so far.
                let mut gzip = GzipWriter::new(std::mem::take(&mut self.reuse_gzip));
                gzip.write(&self.text);
                self.gzip = Some(gzip);
            }
            // The kept part is given back: only the compressed form stays.
            self.text = Vec::new();
        }
        if !self.spilled {
            self.text.extend_from_slice(piece);
        }
        if let Some(gzip) = &mut self.gzip {
            gzip.write(piece);
        }
    }

    pub fn finish(self) -> Encoded {
        let text = (!self.spilled).then(|| Rc::new(self.text));
        Encoded {
            text,
            gzip: self.gzip.map(|gzip| Rc::new(gzip.finish())),
            text_len: self.text_len,
        }
    }
}

/// The body of one response, as the connection writes it.
pub enum Body {
    /// Bytes already built, shared with other responses.
    Shared(Rc<Vec<u8>>),
    /// The text of a shared gzip member, inflated as the socket takes it.
    Gunzip {
        member: Rc<Vec<u8>>,
        inflater: Box<Inflater>,
        length: usize,
    },
}

impl Body {
    pub fn empty() -> Body {
        Body::Shared(Rc::default())
    }

    /// Bytes of the body as sent (its Content-Length).
    pub fn len(&self) -> usize {
        match self {
            Body::Shared(bytes) => bytes.len(),
            Body::Gunzip { length, .. } => *length,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shared buffer this body keeps alive.
    pub fn shared(&self) -> &Rc<Vec<u8>> {
        match self {
            Body::Shared(bytes) => bytes,
            Body::Gunzip { member, .. } => member,
        }
    }

    /// Bytes this response holds of its own (not shared).
    pub fn own_bytes(&self) -> usize {
        match self {
            Body::Shared(_) => 0,
            Body::Gunzip { .. } => Inflater::HELD_BYTES,
        }
    }

    /// The next bytes to send, `sent` bytes into the body. Empty at the end
    /// (or if a member turns out corrupt: a bug, the response is cut short
    /// and the client sees a short body).
    pub fn next(&mut self, sent: usize) -> &[u8] {
        match self {
            Body::Shared(bytes) => bytes.get(sent..).unwrap_or_default(),
            Body::Gunzip {
                member, inflater, ..
            } => inflater.pending(member).unwrap_or_default(),
        }
    }

    /// `count` bytes of what [`Body::next`] returned were sent.
    pub fn consume(&mut self, count: usize) {
        if let Body::Gunzip { inflater, .. } = self {
            inflater.consume(count);
        }
    }
}

/// The uncompressed length recorded in a member; for tests and the bench.
pub fn member_text_length(member: &[u8]) -> usize {
    encoding::text_length(member)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(size: usize) -> Vec<u8> {
        let mut text = Vec::new();
        let mut i = 0u64;
        while text.len() < size {
            text.extend_from_slice(format!("m_{}{{c=\"a\"}} {}\n", i % 500, i * 7).as_bytes());
            i += 1;
        }
        text
    }

    fn build(text: &[u8], want_gzip: bool) -> Encoded {
        let mut builder = EncodedBuilder::new(Vec::new(), Vec::new(), want_gzip);
        for piece in text.chunks(PIECE_BYTES) {
            builder.write(piece);
        }
        builder.finish()
    }

    /// Everything a client would be sent, taken `take` bytes at a time.
    fn drain(mut body: Body, take: usize) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let next = body.next(out.len());
            if next.is_empty() {
                break;
            }
            let taken = next.len().min(take);
            out.extend_from_slice(&next[..taken]);
            body.consume(taken);
        }
        out
    }

    fn gunzip(member: &[u8]) -> Vec<u8> {
        miniz_oxide::inflate::decompress_to_vec(&member[10..member.len() - 8]).unwrap()
    }

    #[test]
    fn small_text_is_kept_and_compressed_only_when_asked() {
        let text = text(100_000);
        let mut output = build(&text, false);
        assert_eq!(output.text.as_deref(), Some(&text));
        assert!(output.gzip.is_none());
        // Asked for gzip before it is built: identity, and said so.
        assert!(!output.body(true).1);
        assert_eq!(drain(output.body(false).0, 4096), text);
        output.ensure_gzip(Vec::new());
        let member = output.gzip.clone().unwrap();
        assert_eq!(gunzip(&member), text);
        let (gzip, is_gzip) = output.body(true);
        assert!(is_gzip);
        assert_eq!(gzip.shared(), &member);
        assert_eq!(gzip.len(), member.len());
        assert_eq!(output.body(false).0.len(), text.len());
    }

    #[test]
    fn large_text_is_only_held_compressed_and_inflated_for_identity() {
        for want_gzip in [false, true] {
            let text = text(3 * TEXT_KEPT_BYTES);
            let output = build(&text, want_gzip);
            assert!(output.text.is_none());
            let member = output.gzip.clone().unwrap();
            assert_eq!(output.text_len, text.len());
            assert_eq!(member_text_length(&member), text.len());
            assert_eq!(gunzip(&member), text);
            let (identity, is_gzip) = output.body(false);
            assert!(!is_gzip);
            assert_eq!(identity.len(), text.len());
            assert_eq!(identity.own_bytes(), Inflater::HELD_BYTES);
            assert_eq!(drain(identity, 1000), text);
            assert_eq!(drain(output.body(true).0, usize::MAX), *member);
        }
    }

    #[test]
    fn an_empty_output_is_an_empty_body() {
        let output = build(b"", false);
        assert!(drain(output.body(false).0, 10).is_empty());
        assert_eq!(Encoded::default().body(true).0.len(), 0);
    }
}
