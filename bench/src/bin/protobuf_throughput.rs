//! Throughput of the protobuf read + relabel + merge on three inputs: a real
//! client_golang body (node_exporter's protobuf answer), the small
//! client_golang app of the real-world test, and a synthetic ~1 MB body of
//! native histograms (about 150 buckets each, classic buckets too). Three
//! containers serve the same body; each round reads (validates + indexes)
//! the three and merges them into delimited protobuf (or, with `text`, into
//! text 0.0.4: the conversion down). Prints MB/s of input processed per
//! second of this thread's CPU time (schedstat; on a shared machine wall
//! time also counts other processes' turns) and per second of wall time.
//!
//! Run: `cd bench && cargo run --release --bin protobuf_throughput [ROUNDS [node|app|native|all [text]]]`
//! (a small ROUNDS suits `valgrind --tool=callgrind`, immune to machine load).

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use multiplexer::exposition::negotiate::OutputFormat;
use multiplexer::exposition::{Format, Merger, Snapshot, Source};

const NODE_EXPORTER: &[u8] = include_bytes!("../../../tests/fixtures/node_exporter.pb");
const CLIENT_GOLANG: &[u8] = include_bytes!("../../../tests/fixtures/client_golang_native.pb");

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn len_field(number: u64, content: &[u8], out: &mut Vec<u8>) {
    varint(number << 3 | 2, out);
    varint(content.len() as u64, out);
    out.extend_from_slice(content);
}

fn double_field(number: u64, value: f64, out: &mut Vec<u8>) {
    varint(number << 3 | 1, out);
    out.extend_from_slice(&value.to_le_bytes());
}

fn label(name: &str, value: &str, out: &mut Vec<u8>) {
    let mut pair = Vec::new();
    len_field(1, name.as_bytes(), &mut pair);
    len_field(2, value.as_bytes(), &mut pair);
    len_field(1, &pair, out);
}

/// Families of native histograms as client_golang encodes them: labels,
/// then a histogram with count, sum, 8 classic buckets, schema 3, zero
/// bucket, and positive spans with packed zigzag deltas.
fn native_heavy_body(target_bytes: usize) -> Vec<u8> {
    let mut body = Vec::new();
    let mut family = 0;
    while body.len() < target_bytes {
        let mut message = Vec::new();
        len_field(
            1,
            format!("rpc_{family}_duration_seconds").as_bytes(),
            &mut message,
        );
        len_field(2, b"RPC latency, native and classic buckets.", &mut message);
        varint(3 << 3, &mut message);
        varint(4, &mut message);
        for series in 0..8 {
            let mut metric = Vec::new();
            label(
                "method",
                ["GET", "POST", "PUT", "DELETE"][series % 4],
                &mut metric,
            );
            label("route", &format!("/api/v1/items/{series}"), &mut metric);
            let mut h = Vec::new();
            varint(1 << 3, &mut h);
            varint(100_000 + series as u64, &mut h);
            double_field(2, 1234.5678, &mut h);
            for (i, bound) in [0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0]
                .iter()
                .enumerate()
            {
                let mut bucket = Vec::new();
                varint(1 << 3, &mut bucket);
                varint(1000 * (i as u64 + 1), &mut bucket);
                double_field(2, *bound, &mut bucket);
                len_field(3, &bucket, &mut h);
            }
            varint(5 << 3, &mut h);
            varint(6, &mut h); // schema 3, zigzag
            double_field(6, 2.938735877055719e-39, &mut h);
            varint(7 << 3, &mut h);
            varint(3, &mut h);
            let mut deltas = Vec::new();
            for span in 0..3 {
                let mut s = Vec::new();
                varint(1 << 3, &mut s);
                varint(if span == 0 { 40 } else { 4 }, &mut s);
                varint(2 << 3, &mut s);
                varint(50, &mut s);
                len_field(12, &s, &mut h);
                for i in 0..50i64 {
                    let delta = (i * 7 + span) % 41 - 20;
                    varint(((delta << 1) ^ (delta >> 63)) as u64, &mut deltas);
                }
            }
            len_field(13, &deltas, &mut h);
            len_field(7, &h, &mut metric);
            len_field(4, &metric, &mut message);
        }
        varint(message.len() as u64, &mut body);
        body.extend_from_slice(&message);
        family += 1;
    }
    body
}

/// Time this thread has run on a CPU (`/proc/thread-self/schedstat`): on a
/// shared machine, wall time counts other processes' turns too. The file is
/// opened once and read again from its start: opening it for every reading
/// cost about 7 us, inside the interval measured, of a round of about 100.
struct CpuClock(Option<std::fs::File>);

impl CpuClock {
    fn new() -> CpuClock {
        CpuClock(std::fs::File::open("/proc/thread-self/schedstat").ok())
    }

    fn now(&self) -> Duration {
        let mut text = [0u8; 128];
        let len = self
            .0
            .as_ref()
            .and_then(|file| file.read_at(&mut text, 0).ok())
            .unwrap_or(0);
        let nanos = std::str::from_utf8(&text[..len])
            .ok()
            .and_then(|text| text.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Duration::from_nanos(nanos)
    }
}

fn run(name: &str, body: &[u8], rounds: u32, output: OutputFormat) {
    let containers = ["app", "envoy", "exporter"];
    let mut snapshots: Vec<Snapshot> = containers.iter().map(|_| Snapshot::new()).collect();
    let mut spare: Vec<Vec<u8>> = containers
        .iter()
        .map(|_| Vec::with_capacity(body.len()))
        .collect();
    let mut merger = Merger::new("container");
    let mut out = Vec::new();
    let mut busy = Duration::ZERO;
    let mut reading = Duration::ZERO;
    let mut cpu = Duration::ZERO;
    let clock = CpuClock::new();
    for round in 0..rounds + 3 {
        // Refilling the bodies stands for the socket read; not timed.
        for (snapshot, spare) in snapshots.iter_mut().zip(&mut spare) {
            spare.extend_from_slice(body);
            snapshot.replace_as(spare, Format::Protobuf);
        }
        let start = Instant::now();
        let cpu_start = clock.now();
        for snapshot in &mut snapshots {
            snapshot.index().expect("the body reads");
        }
        let read = start.elapsed();
        let sources: Vec<Source<'_>> = snapshots
            .iter()
            .zip(containers)
            .map(|(snapshot, container)| Source {
                container: Some(container),
                snapshot,
            })
            .collect();
        merger.merge_as(&sources, output, &mut out);
        let elapsed = start.elapsed();
        let cpu_elapsed = clock.now() - cpu_start;
        if round >= 3 {
            busy += elapsed;
            reading += read;
            cpu += cpu_elapsed;
        }
    }
    let input = body.len() * containers.len();
    let mb = input as f64 * f64::from(rounds) / 1e6;
    println!(
        "{name} -> {output:?}: 3 x {} bytes, {} metrics ({} native) each, {} bytes out; \
         {:.0} MB/s of CPU time ({:.0} MB/s of wall time, {:.1} us per round: {:.1} read + {:.1} merge); \
         index {} bytes",
        body.len(),
        snapshots[0].sample_count(),
        snapshots[0].native_histogram_count(),
        out.len(),
        mb / cpu.as_secs_f64(),
        mb / busy.as_secs_f64(),
        busy.as_secs_f64() * 1e6 / f64::from(rounds),
        reading.as_secs_f64() * 1e6 / f64::from(rounds),
        (busy - reading).as_secs_f64() * 1e6 / f64::from(rounds),
        snapshots[0].index_bytes(),
    );
}

fn main() {
    let rounds = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(500);
    if std::env::args().nth(2).as_deref() == Some("dump") {
        std::io::Write::write_all(&mut std::io::stdout(), &native_heavy_body(4000)).unwrap();
        return;
    }
    let only = std::env::args().nth(2);
    let wanted =
        |name: &str| matches!(only.as_deref(), None | Some("all")) || only.as_deref() == Some(name);
    let text = std::env::args().nth(3).as_deref() == Some("text");
    let output = if text {
        OutputFormat::Text
    } else {
        OutputFormat::Protobuf
    };
    if wanted("node") {
        run(
            "node_exporter (client_golang)",
            NODE_EXPORTER,
            rounds * 10,
            output,
        );
    }
    if wanted("app") {
        run("client_golang app", CLIENT_GOLANG, rounds * 100, output);
    }
    if wanted("native") {
        run(
            "native histograms",
            &native_heavy_body(1_000_000),
            rounds,
            output,
        );
    }
}
