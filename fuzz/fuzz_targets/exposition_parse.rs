#![no_main]
//! Parses arbitrary bytes by the rules of both text formats (as a
//! `Content-Type` of text and of OpenMetrics would have them read); on
//! success merges the snapshot alone and judges the output with an oracle
//! written from Prometheus' rules (not the sidecar's parser): it must take
//! it, with every input sample.
use libfuzzer_sys::fuzz_target;
use multiplexer::exposition::{Format, Merger, Snapshot, Source};

#[path = "../oracle/prometheus_text.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    for format in [Format::Text, Format::OpenMetrics] {
        check(data, format);
    }
});

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
