#![no_main]
//! Parses arbitrary bytes; on success merges the snapshot alone and judges
//! the output with an oracle written from Prometheus' rules (not the
//! sidecar's parser): it must take it, with every input sample.
use libfuzzer_sys::fuzz_target;
use multiplexer::exposition::{Merger, Snapshot, Source};

#[path = "../oracle/prometheus_text.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    let mut snapshot = Snapshot::new();
    let mut body = data.to_vec();
    snapshot.replace(&mut body);
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
});
