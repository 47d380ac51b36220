#![no_main]
//! Reads the input as a protobuf body. When it reads, the relabelled
//! protobuf must read again with the same families and metrics, and the
//! text conversion must parse as text 0.0.4 with the same number of
//! families' samples converted up again reading as protobuf.
use libfuzzer_sys::fuzz_target;
use multiplexer::exposition::protobuf::{Converter, Label};
use multiplexer::exposition::Snapshot;

fuzz_target!(|data: &[u8]| {
    let mut converter = Converter::new();
    if converter.read(data).is_err() {
        return;
    }
    let counts = converter.counts();
    let label = Some(Label {
        name: "container",
        value: "a\"b",
    });

    let mut relabelled = Vec::new();
    converter.write_protobuf(data, label, &mut relabelled);
    let mut again = Converter::new();
    if let Err(error) = again.read(&relabelled) {
        panic!("relabelled output does not read: {error}");
    }
    assert_eq!(again.counts(), counts);

    let mut text = Vec::new();
    converter.write_text(data, label, &mut text);
    let mut snapshot = Snapshot::new();
    let mut body = text.clone();
    snapshot.replace(&mut body);
    if let Err(error) = snapshot.index() {
        panic!("text output does not parse: {error}\n{}", String::from_utf8_lossy(&text));
    }
    let mut up = Vec::new();
    if let Err(error) = Converter::new().text_to_protobuf(&text, None, &mut up) {
        panic!("text output does not convert up: {error}");
    }
    if let Err(error) = again.read(&up) {
        panic!("converted up output does not read: {error}");
    }
});
