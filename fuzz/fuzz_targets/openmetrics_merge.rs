#![no_main]
//! Splits the input into up to three bodies at 0xFF bytes, read as
//! OpenMetrics when they end in `# EOF` (else text 0.0.4), the same, and
//! delimited protobuf (a body that does not parse contributes nothing),
//! merges them into OpenMetrics 1.0 with each escaping scheme and judges
//! every output with the OpenMetrics oracle, written from Prometheus' and
//! prometheus_client's rules (not the sidecar's parser): Prometheus main
//! and prometheus_client must take the allow-utf-8 output; the others must
//! also be taken by Prometheus 2.42, which reads no quoted name (so an
//! underscores, dots or values output with one is refused). Then the
//! first body is replaced by the second: the merger, which remembers what
//! its check learnt, must write what a fresh one writes, whole and in
//! pieces of a size the input's first byte picks.
use libfuzzer_sys::fuzz_target;
use multiplexer::exposition::negotiate::{Escaping, OutputFormat, OutputKind};
use multiplexer::exposition::{Format, Merger, Snapshot, Source};

#[path = "../oracle/openmetrics.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    let mut snapshots: Vec<Snapshot> = Vec::new();
    for (index, part) in data.splitn(3, |&b| b == 0xFF).enumerate() {
        // The first two as their end tells (`# EOF`: OpenMetrics, as a
        // container's Content-Type would say), the third as protobuf.
        let format = if index < 2 { Format::guess(part) } else { Format::Protobuf };
        let mut snapshot = Snapshot::new();
        snapshot.replace_as(&mut part.to_vec(), format);
        // A refused body is kept, failed, as the sidecar keeps it.
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
    for escaping in [Escaping::AllowUtf8, Escaping::Underscores, Escaping::Dots, Escaping::Values] {
        let kind = OutputKind { format: OutputFormat::OpenMetrics, escaping };
        merger.merge_as(&sources, kind, &mut out);
        let readers = match escaping {
            Escaping::AllowUtf8 => oracle::Readers::Utf8,
            _ => oracle::Readers::Legacy,
        };
        if let Err(refusal) = oracle::judge(&out, readers) {
            panic!("oracle refuses the {escaping:?} output: {refusal:?}\n{}", String::from_utf8_lossy(&out));
        }
    }
    // The merger remembers what the check learnt of the families it just
    // wrote; with the first body replaced by the second (the same names
    // and labels, perhaps, and other values), it must write what a fresh
    // merger writes.
    if let [_, second, third] = &snapshots[..] {
        let changed = [
            Source { container: Some("a"), snapshot: second },
            Source { container: Some("container"), snapshot: second },
            Source { container: None, snapshot: third },
        ];
        // Names that escape alike are one family under underscores only.
        for escaping in [Escaping::Underscores, Escaping::AllowUtf8] {
            let kind = OutputKind { format: OutputFormat::OpenMetrics, escaping };
            merger.merge_as(&changed, kind, &mut out);
            let mut fresh = Vec::new();
            Merger::new("container").merge_as(&changed, kind, &mut fresh);
            assert!(
                out == fresh,
                "a remembering merger wrote ({escaping:?})\n{}\na fresh one\n{}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&fresh)
            );
            // In pieces (of a size the input picks), the same bytes.
            let piece_bytes = 1 + 4 * usize::from(data.first().copied().unwrap_or(0));
            let (mut joined, mut piece) = (Vec::new(), Vec::new());
            merger.merge_in_pieces(&changed, kind, &mut piece, piece_bytes, &mut |bytes| {
                joined.extend_from_slice(bytes)
            });
            assert!(
                joined == fresh,
                "a remembering merger in pieces of {piece_bytes} wrote ({escaping:?})\n{}\na fresh one\n{}",
                String::from_utf8_lossy(&joined),
                String::from_utf8_lossy(&fresh)
            );
        }
    }
});
