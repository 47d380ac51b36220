//! Content coding of the served output, with no I/O: whether a request
//! accepts gzip, a streaming gzip writer that compresses the merged text as
//! it is written, and a streaming gunzip that lets an identity client read a
//! large output from the shared compressed body without the text ever being
//! held whole.
//!
//! The deflate implementation is miniz_oxide at level 1 (see Cargo.toml and
//! bench/README.md for the measurements behind it); the gzip framing (RFC
//! 1952: a 10-byte header, raw deflate, CRC-32 and length) is written here.

use miniz_oxide::deflate::core::{
    compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus,
};
use miniz_oxide::inflate::core::{decompress, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

/// Level 1: on merged expositions about 200 MB/s and 7 to 14 times smaller;
/// level 6 is 8 to 10 times slower for 10 to 30% fewer bytes.
const LEVEL: u8 = 1;

/// Bytes of the gzip header written by [`GzipWriter`]: magic, CM=8 (deflate),
/// no flags, no mtime, XFL=4 (fastest), OS=255 (unknown). RFC 1952 §2.3.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255];

/// Whether an `Accept-Encoding` field value (RFC 9110 §12.5.3) accepts gzip:
/// `gzip` (or `x-gzip`) with a q-value above 0, or `*` with one when gzip is
/// not named. Absent or unreadable values mean identity.
pub fn accepts_gzip(value: &[u8]) -> bool {
    let mut named = None;
    let mut wildcard = None;
    for member in value.split(|&byte| byte == b',') {
        let mut parts = member.split(|&byte| byte == b';');
        let coding = parts.next().unwrap_or_default().trim_ascii();
        let mut quality = Some(1.0);
        for parameter in parts {
            let parameter = parameter.trim_ascii();
            if let Some(q) = parameter
                .strip_prefix(b"q=")
                .or_else(|| parameter.strip_prefix(b"Q="))
            {
                quality = std::str::from_utf8(q)
                    .ok()
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .filter(|q| (0.0..=1.0).contains(q));
            }
        }
        // An unreadable q-value makes the member refuse rather than accept.
        let accepted = quality.is_some_and(|q| q > 0.0);
        if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
            named = Some(named.unwrap_or(false) || accepted);
        } else if coding == b"*" {
            wildcard = Some(accepted);
        }
    }
    named.or(wildcard).unwrap_or(false)
}

/// Compresses text written in pieces into one gzip member.
pub struct GzipWriter {
    compressor: Box<CompressorOxide>,
    crc: crc32fast::Hasher,
    length: u32,
    out: Vec<u8>,
}

impl GzipWriter {
    /// Starts a member in `out` (cleared; its allocation is reused).
    pub fn new(mut out: Vec<u8>) -> GzipWriter {
        out.clear();
        out.extend_from_slice(&HEADER);
        // Raw deflate (no zlib header): window bits negative.
        let flags = create_comp_flags_from_zip_params(LEVEL.into(), -15, 0);
        GzipWriter {
            compressor: Box::new(CompressorOxide::new(flags)),
            crc: crc32fast::Hasher::new(),
            length: 0,
            out,
        }
    }

    pub fn write(&mut self, text: &[u8]) {
        self.crc.update(text);
        self.length = self.length.wrapping_add(text.len() as u32);
        self.deflate(text, TDEFLFlush::None);
    }

    /// Ends the member and returns it.
    pub fn finish(mut self) -> Vec<u8> {
        self.deflate(&[], TDEFLFlush::Finish);
        let crc = self.crc.clone().finalize();
        self.out.extend_from_slice(&crc.to_le_bytes());
        self.out.extend_from_slice(&self.length.to_le_bytes());
        self.out
    }

    /// Compressed bytes so far.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    fn deflate(&mut self, mut input: &[u8], flush: TDEFLFlush) {
        loop {
            // Room for what this call may write; the output grows by
            // doublings of at least 16 KiB.
            let used = self.out.len();
            if self.out.capacity() - used < 16 * 1024 {
                self.out.reserve(16 * 1024);
            }
            let room = self.out.capacity() - used;
            self.out.resize(used + room, 0);
            let (status, read, written) =
                compress(&mut self.compressor, input, &mut self.out[used..], flush);
            self.out.truncate(used + written);
            input = &input[read..];
            match status {
                TDEFLStatus::Done => return,
                // Everything taken and the output was not full: done for now.
                TDEFLStatus::Okay if input.is_empty() && written < room => return,
                TDEFLStatus::Okay => {}
                // Only reachable through misuse of the API (bad parameters,
                // writing after finish): nothing more can be compressed.
                TDEFLStatus::BadParam | TDEFLStatus::PutBufFailed => return,
            }
        }
    }
}

/// Bytes of an [`Inflater`]'s window: deflate's largest distance, and so
/// the least a streaming gunzip can hold.
const WINDOW: usize = 32 * 1024;

/// Streams the text out of a gzip member written by [`GzipWriter`], one
/// window at a time: about 43 KiB of state however large the text.
pub struct Inflater {
    state: Box<DecompressorOxide>,
    window: Box<[u8]>,
    /// Offset in the member of the next compressed byte.
    input_at: usize,
    /// `window[pending_start..pending_end]` is text not yet taken.
    pending_start: usize,
    pending_end: usize,
    /// Where in the window the next output goes.
    position: usize,
    done: bool,
}

/// The member is not one [`GzipWriter`] wrote (a bug, not input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorruptMember;

impl Default for Inflater {
    fn default() -> Inflater {
        Inflater::new()
    }
}

impl Inflater {
    pub fn new() -> Inflater {
        Inflater {
            state: Box::default(),
            window: vec![0; WINDOW].into_boxed_slice(),
            input_at: HEADER.len(),
            pending_start: 0,
            pending_end: 0,
            position: 0,
            done: false,
        }
    }

    /// Bytes this inflater holds (for the slow-client budget).
    pub const HELD_BYTES: usize = WINDOW + std::mem::size_of::<DecompressorOxide>();

    /// The next text not yet taken, decompressing more of `member` when
    /// nothing is pending. Empty at the end of the text.
    pub fn pending(&mut self, member: &[u8]) -> Result<&[u8], CorruptMember> {
        if self.pending_start == self.pending_end && !self.done {
            if self.position == WINDOW {
                self.position = 0;
            }
            let input = member.get(self.input_at..).ok_or(CorruptMember)?;
            let (status, read, written) =
                decompress(&mut self.state, input, &mut self.window, self.position, 0);
            self.input_at += read;
            self.pending_start = self.position;
            self.position += written;
            self.pending_end = self.position;
            match status {
                TINFLStatus::Done => self.done = true,
                TINFLStatus::HasMoreOutput => {}
                _ => return Err(CorruptMember),
            }
        }
        Ok(&self.window[self.pending_start..self.pending_end])
    }

    /// `count` bytes of what [`Inflater::pending`] returned were sent.
    pub fn consume(&mut self, count: usize) {
        self.pending_start = (self.pending_start + count).min(self.pending_end);
    }

    /// All of the text was taken.
    pub fn is_finished(&self) -> bool {
        self.done && self.pending_start == self.pending_end
    }
}

/// The uncompressed length a gzip member records (ISIZE, RFC 1952 §2.3.1).
pub fn text_length(member: &[u8]) -> usize {
    match member.len().checked_sub(4).and_then(|at| member.get(at..)) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]) as usize,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_values() {
        let cases: &[(&str, bool)] = &[
            ("gzip", true),
            ("GZIP", true),
            ("x-gzip", true),
            ("gzip, deflate, br", true),
            ("deflate, gzip;q=0.5", true),
            ("gzip;q=0", false),
            ("gzip; q=0.000", false),
            ("gzip;q=0.001", true),
            ("gzip;Q=1", true),
            ("gzip;q=2", false),
            ("gzip;q=x", false),
            ("identity", false),
            ("", false),
            ("*", true),
            ("*;q=0", false),
            ("*, gzip;q=0", false),
            ("gzip;q=0, *", false),
            ("identity;q=1, *;q=0.1", true),
            ("br, deflate", false),
            (" gzip ; q=0.8 , identity", true),
        ];
        for (value, expected) in cases {
            assert_eq!(accepts_gzip(value.as_bytes()), *expected, "{value:?}");
        }
    }

    fn text(size: usize) -> Vec<u8> {
        let mut text = Vec::new();
        let mut i = 0u64;
        while text.len() < size {
            text.extend_from_slice(
                format!("metric_{}{{container=\"c{}\"}} {}\n", i % 97, i % 7, i * 31).as_bytes(),
            );
            i += 1;
        }
        text
    }

    fn gzip_in_pieces(text: &[u8], piece: usize) -> Vec<u8> {
        let mut writer = GzipWriter::new(Vec::new());
        for chunk in text.chunks(piece.max(1)) {
            writer.write(chunk);
        }
        writer.finish()
    }

    /// The naive reference: inflate the whole member at once.
    fn inflate_whole(member: &[u8]) -> Vec<u8> {
        miniz_oxide::inflate::decompress_to_vec(&member[HEADER.len()..member.len() - 8])
            .expect("valid deflate")
    }

    fn inflate_streaming(member: &[u8], take: usize) -> Vec<u8> {
        let mut inflater = Inflater::new();
        let mut out = Vec::new();
        while !inflater.is_finished() {
            let pending = inflater.pending(member).expect("valid member");
            let taken = pending.len().min(take);
            out.extend_from_slice(&pending[..taken]);
            inflater.consume(taken);
        }
        out
    }

    #[test]
    fn gzip_round_trips_whatever_the_piece_sizes() {
        for size in [0, 1, 100, 40_000, 300_000] {
            let text = text(size);
            for piece in [1, 7, 4096, 65_536, usize::MAX] {
                if piece == 1 && size > 1000 {
                    continue;
                }
                let member = gzip_in_pieces(&text, piece.min(text.len().max(1)));
                assert_eq!(&member[..10], &HEADER);
                assert_eq!(text_length(&member), text.len());
                let crc = u32::from_le_bytes(member[member.len() - 8..][..4].try_into().unwrap());
                assert_eq!(crc, crc32fast::hash(&text));
                assert_eq!(inflate_whole(&member), text, "size {size}, piece {piece}");
                for take in [1usize, 1000, usize::MAX] {
                    if take == 1 && size > 1000 {
                        continue;
                    }
                    assert_eq!(
                        inflate_streaming(&member, take),
                        text,
                        "size {size}, take {take}"
                    );
                }
            }
        }
    }

    #[test]
    fn text_compresses() {
        let text = text(200_000);
        let member = gzip_in_pieces(&text, 65_536);
        assert!(
            member.len() * 4 < text.len(),
            "{} of {}",
            member.len(),
            text.len()
        );
    }

    #[test]
    fn a_corrupt_member_is_an_error_not_a_panic() {
        let member = gzip_in_pieces(&text(50_000), 65_536);
        let mut broken = member.clone();
        for byte in &mut broken[10..40] {
            *byte = 0xff;
        }
        let mut inflater = Inflater::new();
        let mut outcome = Ok(());
        for _ in 0..1000 {
            match inflater.pending(&broken) {
                Ok([]) => break,
                Ok(pending) => {
                    let length = pending.len();
                    inflater.consume(length);
                }
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
        }
        assert_eq!(outcome, Err(CorruptMember));
        assert_eq!(Inflater::new().pending(&[1, 2]), Err(CorruptMember));
    }
}
