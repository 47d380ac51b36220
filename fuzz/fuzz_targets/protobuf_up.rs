#![no_main]
//! Converts a text body that parses up to protobuf: the output must read
//! as protobuf, and down again as text that parses.
use libfuzzer_sys::fuzz_target;
use multiplexer::exposition::protobuf::{Converter, Label};
use multiplexer::exposition::Snapshot;

fuzz_target!(|data: &[u8]| {
    let label = Some(Label {
        name: "container",
        value: "a",
    });
    let mut converter = Converter::new();
    let mut up = Vec::new();
    if converter.text_to_protobuf(data, label, &mut up).is_err() {
        return;
    }
    if let Err(error) = converter.read(&up) {
        panic!("converted up output does not read: {error}");
    }
    let mut text = Vec::new();
    converter.write_text(&up, None, &mut text);
    let mut snapshot = Snapshot::new();
    let mut body = text.clone();
    snapshot.replace(&mut body);
    if let Err(error) = snapshot.index() {
        panic!("text output does not parse: {error}\n{}", String::from_utf8_lossy(&text));
    }
});
