#![no_main]
//! Splits the input into up to three bodies at 0xFF bytes, merges them (two
//! named containers and one without a label, the sidecar's own position;
//! a body that does not parse contributes nothing) and judges the output
//! with an oracle written from Prometheus' rules (not the sidecar's
//! parser): it must take it, with every input sample when nothing lost a
//! conflict.
use libfuzzer_sys::fuzz_target;
use multiplexer::exposition::{Merger, Snapshot, Source};

#[path = "../oracle/prometheus_text.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    let mut snapshots: Vec<Snapshot> = Vec::new();
    for part in data.splitn(3, |&b| b == 0xFF) {
        let mut snapshot = Snapshot::new();
        let mut body = part.to_vec();
        snapshot.replace(&mut body);
        let _ = snapshot.index();
        snapshots.push(snapshot);
    }
    let containers = [Some("a"), Some("container"), None];
    let sources: Vec<Source<'_>> = snapshots
        .iter()
        .zip(containers)
        .map(|(snapshot, container)| Source { container, snapshot })
        .collect();
    let mut merger = Merger::new("container");
    let mut out = Vec::new();
    merger.merge(&sources, &mut out);
    let accepted = match oracle::judge(&out) {
        Ok(accepted) => accepted,
        Err(refusal) => panic!("oracle refuses the output: {refusal:?}\n{}", String::from_utf8_lossy(&out)),
    };
    if merger.conflict_count() == 0 {
        let total: usize = snapshots.iter().map(Snapshot::sample_count).sum();
        assert_eq!(accepted.samples, total, "{}", String::from_utf8_lossy(&out));
    }
});
