#![no_main]
//! Splits the input into up to three bodies at 0xFF bytes, merges those that
//! parse (two named containers and one without a label) and requires the
//! output to parse and to hold every input sample.
use libfuzzer_sys::fuzz_target;
use multiplexer::exposition::{Merger, Snapshot, Source};

fuzz_target!(|data: &[u8]| {
    let mut snapshots: Vec<Snapshot> = Vec::new();
    for part in data.splitn(3, |&b| b == 0xFF) {
        let mut snapshot = Snapshot::new();
        let mut body = part.to_vec();
        snapshot.replace(&mut body);
        if snapshot.index().is_ok() {
            snapshots.push(snapshot);
        }
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
    let mut merged = Snapshot::new();
    let mut body = out.clone();
    merged.replace(&mut body);
    if let Err(error) = merged.index() {
        panic!("merged output does not parse: {error}\n{}", String::from_utf8_lossy(&out));
    }
    // Without conflicts nothing is dropped.
    if merger.conflict_count() == 0 {
        let total: usize = snapshots.iter().map(Snapshot::sample_count).sum();
        assert_eq!(merged.sample_count(), total);
    }
});
