//! Response head and body framing over arbitrary bytes.
//!
//! Input: two bytes choosing the limits, one byte choosing how the rest is
//! cut into reads, then the response bytes. Checks: no panic; a complete body
//! fits the body limit and is exactly the buffer; the same bytes fed whole
//! decode to the same body; the same reads decoded in the loop's
//! `ReceiveBuffer`, whose room holds stale bytes of an earlier body, give
//! the same result as in a `Vec`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiplexer::scrape::upstream::receive_buffer::ReceiveBuffer;
use multiplexer::scrape::upstream::response::{Limits, Progress, Received, ResponseDecoder};

fuzz_target!(|data: &[u8]| {
    let [head_limit, body_limit, cut, response @ ..] = data else {
        return;
    };
    let limits = Limits {
        max_head_bytes: 16 + usize::from(*head_limit) * 8,
        max_body_bytes: usize::from(*body_limit) * 4,
    };
    let whole = decode(limits, [response]);
    let reads: Vec<&[u8]> = if cut & 0x80 == 0 {
        // Two reads, split at a chosen point.
        let at = usize::from(cut & 0x7f).min(response.len());
        let (first, second) = response.split_at(at);
        vec![first, second]
    } else {
        response.chunks(usize::from(cut & 0x0f) + 1).collect()
    };
    let pieces = decode(limits, reads.iter().copied());
    // An earlier body's bytes, stale, as the pool hands buffers over.
    let stale: Vec<u8> = response.iter().rev().map(|byte| byte ^ 0x5a).collect();
    let mut received = ReceiveBuffer::from_stale(stale);
    let in_receive_buffer = decode_into(
        limits,
        reads.iter().copied(),
        &mut received,
        |buffer, read| {
            buffer.room(read.len()).copy_from_slice(read);
            buffer.commit(read.len());
        },
    )
    .map(|()| received.to_vec());
    assert_eq!(
        pieces, in_receive_buffer,
        "a ReceiveBuffer decodes as a Vec does"
    );
    if let (Some(whole), Some(pieces)) = (whole, pieces) {
        assert_eq!(whole, pieces, "the same bytes decode to the same body");
    }
});

/// The body, if the decoder completed one.
fn decode<'a>(limits: Limits, reads: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    decode_into(limits, reads, &mut buf, |buf, read| {
        buf.extend_from_slice(read)
    })?;
    Some(buf)
}

/// Feeds the reads into `buf` with `append`; `Some` if a body completed
/// (it is then what `buf` holds).
fn decode_into<'a, B: Received>(
    limits: Limits,
    reads: impl IntoIterator<Item = &'a [u8]>,
    buf: &mut B,
    append: impl Fn(&mut B, &[u8]),
) -> Option<()> {
    let mut decoder = ResponseDecoder::new(limits);
    let mut failed = false;
    for read in reads {
        append(buf, read);
        match decoder.advance(buf) {
            Ok(progress) => check(progress, buf, limits),
            Err(_) => failed = true,
        }
        if failed {
            break;
        }
    }
    match decoder.finish_at_eof(buf) {
        Ok(progress) => {
            assert!(!failed, "an error must stick");
            check(progress, buf, limits);
            match progress {
                Progress::Complete { keep_alive, .. } => assert!(!keep_alive),
                Progress::NeedMore => panic!("NeedMore after the end of the connection"),
            }
            Some(())
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
