//! Chooses the sidecar's deflate implementation by measurement: for real
//! merged outputs (the fixtures merged three at a time, a synthetic 3 x 1 MB
//! pod, 65,536 one-sample families), compress and decompress speed, ratio,
//! and the heap each compressor holds (counted by this program's allocator),
//! for miniz_oxide (pure Rust, what flate2 uses by default) and zlib-rs
//! (through flate2's `zlib-rs` feature), at several levels. The output is
//! fed in 64 KiB pieces, as the sidecar's merge writes it.
//!
//! Run: `cd bench && cargo run --release --bin deflate_throughput [SECONDS]`
//! (SECONDS of work per figure, default 1).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use miniz_oxide::deflate::core::{
    compress as miniz_compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush,
    TDEFLStatus,
};
use miniz_oxide::inflate::core::{decompress as miniz_decompress, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;
use multiplexer::exposition::{Merger, Snapshot, Source};
use multiplexer_bench::runner;

/// Counts heap bytes in use and their peak, so a compressor's state can be
/// measured rather than estimated.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = IN_USE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let now = IN_USE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const PIECE: usize = 64 * 1024;

fn merged(bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut snapshots: Vec<Snapshot> = bodies
        .iter()
        .map(|body| {
            let mut snapshot = Snapshot::new();
            snapshot.replace(&mut body.clone());
            snapshot.index().expect("fixture parses");
            snapshot
        })
        .collect();
    for snapshot in &mut snapshots {
        snapshot.index().expect("fixture parses");
    }
    let names = ["app", "envoy", "exporter"];
    let sources: Vec<Source<'_>> = snapshots
        .iter()
        .zip(names.iter().cycle())
        .map(|(snapshot, name)| Source {
            container: Some(name),
            snapshot,
        })
        .collect();
    let mut out = Vec::new();
    Merger::new("container").merge(&sources, &mut out);
    out
}

trait Codec {
    fn name(&self) -> String;
    /// Compresses `input` into `out` (cleared) in `PIECE` pieces; returns the
    /// peak heap held by the compressor beyond `out`.
    fn compress(&self, input: &[u8], out: &mut Vec<u8>) -> usize;
    fn decompress(&self, input: &[u8], out: &mut Vec<u8>);
}

struct Miniz(u8);
struct ZlibRs(u32);

impl Codec for Miniz {
    fn name(&self) -> String {
        format!("miniz_oxide level {}", self.0)
    }

    fn compress(&self, input: &[u8], out: &mut Vec<u8>) -> usize {
        out.clear();
        let base = IN_USE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let flags = create_comp_flags_from_zip_params(self.0.into(), -15, 0);
        let mut compressor = Box::new(CompressorOxide::new(flags));
        let mut buffer = [0u8; 16 * 1024];
        let pieces: Vec<&[u8]> = input.chunks(PIECE).collect();
        for (index, piece) in pieces.iter().enumerate() {
            let flush = if index + 1 == pieces.len() {
                TDEFLFlush::Finish
            } else {
                TDEFLFlush::None
            };
            let mut rest = *piece;
            loop {
                let (status, read, written) =
                    miniz_compress(&mut compressor, rest, &mut buffer, flush);
                out.extend_from_slice(&buffer[..written]);
                rest = &rest[read..];
                match status {
                    TDEFLStatus::Done => break,
                    TDEFLStatus::Okay if rest.is_empty() && written < buffer.len() => break,
                    TDEFLStatus::Okay => {}
                    other => panic!("deflate: {other:?}"),
                }
            }
        }
        PEAK.load(Ordering::Relaxed) - base
    }

    fn decompress(&self, input: &[u8], out: &mut Vec<u8>) {
        // A 32 KiB wrapping buffer is the window: what one identity client
        // streaming from the compressed body would hold.
        out.clear();
        let mut state = Box::new(DecompressorOxide::new());
        let mut window = vec![0u8; 32 * 1024];
        let mut at = 0;
        let mut position = 0;
        loop {
            let (status, read, written) =
                miniz_decompress(&mut state, &input[at..], &mut window, position, 0);
            at += read;
            // A client would write `window[position..position + written]`
            // to its socket here.
            position = (position + written) % window.len();
            match status {
                TINFLStatus::HasMoreOutput => {}
                TINFLStatus::Done => break,
                other => panic!("inflate: {other:?}"),
            }
        }
        out.push(window[position / 2]);
    }
}

impl Codec for ZlibRs {
    fn name(&self) -> String {
        format!("zlib-rs level {}", self.0)
    }

    fn compress(&self, input: &[u8], out: &mut Vec<u8>) -> usize {
        out.clear();
        let base = IN_USE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let mut compressor = Compress::new(Compression::new(self.0), false);
        let mut buffer = vec![0u8; 16 * 1024];
        let pieces: Vec<&[u8]> = input.chunks(PIECE).collect();
        for (index, piece) in pieces.iter().enumerate() {
            let flush = if index + 1 == pieces.len() {
                FlushCompress::Finish
            } else {
                FlushCompress::None
            };
            let mut rest = *piece;
            loop {
                let (read_before, written_before) = (compressor.total_in(), compressor.total_out());
                let status = compressor
                    .compress(rest, &mut buffer, flush)
                    .expect("deflate");
                let read = (compressor.total_in() - read_before) as usize;
                let written = (compressor.total_out() - written_before) as usize;
                out.extend_from_slice(&buffer[..written]);
                rest = &rest[read..];
                match status {
                    Status::StreamEnd => break,
                    _ if rest.is_empty()
                        && written < buffer.len()
                        && flush == FlushCompress::None =>
                    {
                        break
                    }
                    _ => {}
                }
            }
        }
        PEAK.load(Ordering::Relaxed) - base - buffer.len()
    }

    fn decompress(&self, input: &[u8], out: &mut Vec<u8>) {
        out.clear();
        let mut state = Decompress::new(false);
        let mut buffer = vec![0u8; 16 * 1024];
        let mut at = 0;
        loop {
            let before = (state.total_in(), state.total_out());
            let status = state
                .decompress(&input[at..], &mut buffer, FlushDecompress::None)
                .expect("inflate");
            at += (state.total_in() - before.0) as usize;
            if status == Status::StreamEnd || state.total_out() == before.1 {
                break;
            }
        }
    }
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let read = |name: &str| std::fs::read(fixtures.join(name)).expect("fixture");
    let node = read("node_exporter.prom");
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        (
            "S: 3 x node_exporter merged",
            merged(&[node.clone(), node.clone(), node.clone()]),
        ),
        (
            "node_exporter + prometheus + python merged",
            merged(&[node, read("prometheus.prom"), read("python_client.prom")]),
        ),
        (
            "3 x 1 MB synthetic merged",
            merged(&vec![multiplexer_bench::synth::body(1_000_000); 3]),
        ),
        (
            "65,536 one-sample families",
            merged(&[multiplexer_bench::synth::one_sample_families(65_536, 1)]),
        ),
    ];
    let codecs: Vec<Box<dyn Codec>> = vec![
        Box::new(Miniz(1)),
        Box::new(Miniz(3)),
        Box::new(Miniz(6)),
        Box::new(ZlibRs(1)),
        Box::new(ZlibRs(3)),
        Box::new(ZlibRs(6)),
    ];
    print!(
        "{}",
        runner::table_head(&[
            "input",
            "codec",
            "text KB",
            "gzip KB",
            "ratio",
            "deflate MB/s",
            "inflate MB/s",
            "compressor heap KiB"
        ])
    );
    let budget = Duration::from_secs_f64(seconds);
    for (name, input) in &inputs {
        for codec in &codecs {
            let mut out = Vec::new();
            let heap = codec.compress(input, &mut out);
            let deflate = rate(input.len(), budget, || {
                codec.compress(input, &mut out);
            });
            let mut text = Vec::new();
            let inflate = rate(input.len(), budget, || codec.decompress(&out, &mut text));
            println!(
                "| {name} | {} | {:.1} | {:.1} | {:.1} | {deflate:.0} | {inflate:.0} | {} |",
                codec.name(),
                input.len() as f64 / 1e3,
                out.len() as f64 / 1e3,
                input.len() as f64 / out.len() as f64,
                heap / 1024,
            );
        }
    }
}

/// MB/s of `bytes` processed per call of `work`, over at least `budget`.
fn rate(bytes: usize, budget: Duration, mut work: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut rounds = 0;
    while start.elapsed() < budget || rounds < 3 {
        work();
        rounds += 1;
    }
    (bytes * rounds) as f64 / 1e6 / start.elapsed().as_secs_f64()
}
