#![no_main]
//! Parses arbitrary bytes; on success merges the snapshot alone and checks
//! the output parses again.
use libfuzzer_sys::fuzz_target;
use multiplexer::exposition::{Merger, Snapshot, Source};

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
    let mut again = Snapshot::new();
    again.replace(&mut out);
    if let Err(error) = again.index() {
        panic!("merged output does not parse: {error}");
    }
});
