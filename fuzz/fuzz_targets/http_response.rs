//! Response head and body framing over arbitrary bytes.
//!
//! Input: two bytes choosing the limits, one byte choosing how the rest is
//! cut into reads, then the response bytes. Checks: no panic; a complete body
//! fits the body limit and is exactly the buffer; the same bytes fed whole
//! decode to the same body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiplexer::upstream::response::{Limits, Progress, ResponseDecoder};

fuzz_target!(|data: &[u8]| {
    let [head_limit, body_limit, cut, response @ ..] = data else {
        return;
    };
    let limits = Limits {
        max_head_bytes: 16 + usize::from(*head_limit) * 8,
        max_body_bytes: usize::from(*body_limit) * 4,
    };
    let whole = decode(limits, [response]);
    let pieces = if cut & 0x80 == 0 {
        // Two reads, split at a chosen point.
        let at = usize::from(cut & 0x7f).min(response.len());
        let (first, second) = response.split_at(at);
        decode(limits, [first, second])
    } else {
        decode(limits, response.chunks(usize::from(cut & 0x0f) + 1))
    };
    if let (Some(whole), Some(pieces)) = (whole, pieces) {
        assert_eq!(whole, pieces, "the same bytes decode to the same body");
    }
});

/// The body, if the decoder completed one.
fn decode<'a>(limits: Limits, reads: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<u8>> {
    let mut decoder = ResponseDecoder::new(limits);
    let mut buf = Vec::new();
    let mut failed = false;
    for read in reads {
        buf.extend_from_slice(read);
        match decoder.advance(&mut buf) {
            Ok(progress) => check(progress, &buf, limits),
            Err(_) => failed = true,
        }
        if failed {
            break;
        }
    }
    match decoder.finish_at_eof(&mut buf) {
        Ok(progress) => {
            assert!(!failed, "an error must stick");
            check(progress, &buf, limits);
            match progress {
                Progress::Complete { keep_alive, .. } => assert!(!keep_alive),
                Progress::NeedMore => panic!("NeedMore after the end of the connection"),
            }
            Some(buf)
        }
        Err(_) => None,
    }
}

fn check(progress: Progress, buf: &[u8], limits: Limits) {
    if let Progress::Complete { body_len, .. } = progress {
        assert!(body_len <= limits.max_body_bytes);
        assert_eq!(body_len, buf.len());
    }
}
