#![no_main]
//! Parses arbitrary bytes by the rules of both text formats (as a
//! `Content-Type` of text and of OpenMetrics would have them read); on
//! success merges the snapshot alone and judges the output with an oracle
//! written from Prometheus' rules (not the sidecar's parser): it must take
//! it, with every input sample. Also builds a body after another on one
//! snapshot (the parser's series memo), which must read as built alone.
use libfuzzer_sys::fuzz_target;
use multiplexer::exposition::{Format, Merger, Snapshot, Source};

#[path = "../oracle/prometheus_text.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    for format in [Format::Text, Format::OpenMetrics] {
        check(data, format);
        after_another(data, format);
    }
});

/// The input's two parts, split at its first NUL (or the input twice),
/// built one after the other on one snapshot, its index released between
/// as the sidecar does after each output build: the second merges to the
/// same bytes, and fails the same way, as when built on a fresh snapshot.
/// The first is built twice: a build hashes its series only after one
/// that found the body of the memo's shape, so only then does the second
/// meet a memo.
fn after_another(data: &[u8], format: Format) {
    let (first, second) = match data.iter().position(|&byte| byte == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, data),
    };
    let mut remembering = Snapshot::new();
    for _ in 0..2 {
        let mut body = first.to_vec();
        remembering.replace_as(&mut body, format);
        let _ = remembering.index();
        remembering.release_index();
    }
    let mut body = second.to_vec();
    remembering.replace_as(&mut body, format);
    let mut fresh = Snapshot::new();
    let mut body = second.to_vec();
    fresh.replace_as(&mut body, format);
    assert_eq!(remembering.index(), fresh.index());
    let merged = |snapshot: &Snapshot| {
        let mut out = Vec::new();
        Merger::new("container").merge(&[Source { container: Some("c"), snapshot }], &mut out);
        out
    };
    assert_eq!(merged(&remembering), merged(&fresh));
}

fn check(data: &[u8], format: Format) {
    let mut snapshot = Snapshot::new();
    let mut body = data.to_vec();
    snapshot.replace_as(&mut body, format);
    if snapshot.index().is_err() {
        assert_eq!(snapshot.sample_count(), 0);
        return;
    }
    let mut merger = Merger::new("container");
    let mut out = Vec::new();
    merger.merge(&[Source { container: Some("c\"1\\"), snapshot: &snapshot }], &mut out);
    match oracle::judge(&out) {
        Ok(accepted) if merger.conflict_count() == 0 => {
            assert_eq!(accepted.samples, snapshot.sample_count(), "{}", String::from_utf8_lossy(&out));
        }
        Ok(_) => {}
        Err(refusal) => panic!("oracle refuses the output: {refusal:?}\n{}", String::from_utf8_lossy(&out)),
    }
}
