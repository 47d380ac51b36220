#![no_main]
//! Splits the input into up to three bodies at 0xFF bytes, read as
//! protobuf, text and protobuf (those that read), merges them into protobuf
//! and into text: the protobuf must read again, the text must parse.
use libfuzzer_sys::fuzz_target;
use multiplexer::exposition::negotiate::OutputFormat;
use multiplexer::exposition::protobuf::Converter;
use multiplexer::exposition::{Format, Merger, Snapshot, Source};

fuzz_target!(|data: &[u8]| {
    let formats = [Format::Protobuf, Format::Text, Format::Protobuf];
    let mut snapshots: Vec<Snapshot> = Vec::new();
    for (part, format) in data.splitn(3, |&b| b == 0xFF).zip(formats) {
        let mut snapshot = Snapshot::new();
        snapshot.replace_as(&mut part.to_vec(), format);
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
    merger.merge_as(&sources, OutputFormat::Protobuf, &mut out);
    if let Err(error) = Converter::new().read(&out) {
        panic!("merged protobuf does not read: {error}");
    }
    merger.merge_as(&sources, OutputFormat::Text, &mut out);
    let mut merged = Snapshot::new();
    let mut body = out.clone();
    merged.replace(&mut body);
    if let Err(error) = merged.index() {
        panic!("merged text does not parse: {error}\n{}", String::from_utf8_lossy(&out));
    }
});
