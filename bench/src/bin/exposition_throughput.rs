//! Throughput of parse + relabel + merge on a synthetic ~1 MB exposition of
//! about 10k series (counters, gauges, histograms, summaries, escaped label
//! values). Prints MB/s of input body processed.
//!
//! Run: `cd bench && cargo run --release --bin exposition_throughput [ROUNDS [1|3|families [text|openmetrics [text|openmetrics]]]]`
//! (ROUNDS defaults to 500; a small count suits `valgrind --tool=callgrind`,
//! whose instruction counts are immune to machine load; `1` or `3` runs only
//! the 1-container or the 3-container case, `families` only a body of
//! 65,536 one-sample families (issue 19's costliest shape per byte, which
//! the other cases leave out); the output is text 0.0.4 and then
//! OpenMetrics 1.0, or only the one named; the bodies are text 0.0.4, or
//! with a last `openmetrics` the synthetic families as OpenMetrics 1.0, as a
//! container answers while an OpenMetrics client is served). With
//! `BODY_FILE=path`, the 1-container case reads that body instead (a
//! captured exporter's answer; OpenMetrics when it ends in `# EOF`). With
//! `CHANGING_LABELS` set, every other round's label values differ, so the
//! OpenMetrics check remembers nothing from round to round. With
//! `RELEASE_INDEX` set, each round ends as the sidecar ends an output build:
//! the indexes are freed (but for their series memo), so every build
//! allocates them again.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use multiplexer::exposition::negotiate::OutputFormat;
use multiplexer::exposition::{Merger, Snapshot, Source};

/// Counts the bytes allocated and live, so that the merge's own records
/// (what a build holds per family beside the indexes) can be measured.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Builds the synthetic body deterministically.
fn synthetic_body(target_bytes: usize) -> Vec<u8> {
    use std::fmt::Write;
    let mut s = String::new();
    let mut family = 0;
    while s.len() < target_bytes {
        let f = family;
        family += 1;
        match f % 4 {
            0 => {
                writeln!(
                    s,
                    "# HELP app_requests_{f}_total Requests served, by \\\\ path\\nand code."
                )
                .unwrap();
                writeln!(s, "# TYPE app_requests_{f}_total counter").unwrap();
                for i in 0..20 {
                    writeln!(
                        s,
                        "app_requests_{f}_total{{method=\"GET\",path=\"/api/v1/items/{i}\",code=\"{}\"}} {}",
                        200 + i % 3,
                        1000 + i * 37
                    )
                    .unwrap();
                }
            }
            1 => {
                writeln!(s, "# HELP app_queue_{f}_depth Queue depth.").unwrap();
                writeln!(s, "# TYPE app_queue_{f}_depth gauge").unwrap();
                for i in 0..20 {
                    writeln!(
                        s,
                        "app_queue_{f}_depth{{queue=\"q\\\"{i}\\\"\",host=\"node-{i}.example\\\\local\"}} {}.5",
                        i * 3
                    )
                    .unwrap();
                }
            }
            2 => {
                writeln!(s, "# HELP app_latency_{f}_seconds Request latency.").unwrap();
                writeln!(s, "# TYPE app_latency_{f}_seconds histogram").unwrap();
                for route in 0..2 {
                    let mut cumulative = 0;
                    for le in [
                        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
                    ] {
                        cumulative += 7;
                        writeln!(
                            s,
                            "app_latency_{f}_seconds_bucket{{route=\"/r{route}\",le=\"{le}\"}} {cumulative}"
                        )
                        .unwrap();
                    }
                    writeln!(
                        s,
                        "app_latency_{f}_seconds_sum{{route=\"/r{route}\"}} 12.75"
                    )
                    .unwrap();
                    writeln!(
                        s,
                        "app_latency_{f}_seconds_count{{route=\"/r{route}\"}} {cumulative}"
                    )
                    .unwrap();
                }
            }
            _ => {
                writeln!(s, "# HELP app_payload_{f}_bytes Payload size.").unwrap();
                writeln!(s, "# TYPE app_payload_{f}_bytes summary").unwrap();
                for q in ["0.5", "0.9", "0.99"] {
                    writeln!(s, "app_payload_{f}_bytes{{quantile=\"{q}\"}} 1.2e+03").unwrap();
                }
                writeln!(s, "app_payload_{f}_bytes_sum 123456").unwrap();
                writeln!(s, "app_payload_{f}_bytes_count 100").unwrap();
            }
        }
    }
    s.into_bytes()
}

/// The synthetic body as OpenMetrics 1.0: a counter's metadata names the
/// family, without `_total`, and the body ends in `# EOF`.
fn as_openmetrics(body: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(body).expect("synthetic body is UTF-8");
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        if line.starts_with("# ") && line.contains("_total ") {
            out.push_str(&line.replacen("_total ", " ", 1));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out.push_str("# EOF\n");
    out.into_bytes()
}

/// The synthetic body with other label values where it has paths, hosts
/// and routes (the same length, so every round costs the same).
fn with_other_labels(body: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(body)
        .replace("/api/v1/", "/api/v2/")
        .replace("node-", "host-")
        .replace("\"/r", "\"/s")
        .into_bytes()
}

fn run(label: &str, bodies: &[Vec<u8>], rounds: u32, format: OutputFormat) {
    let names: Vec<String> = (0..bodies.len())
        .map(|i| format!("container-{i}"))
        .collect();
    let mut snapshots: Vec<Snapshot> = bodies.iter().map(|_| Snapshot::new()).collect();
    let mut spare: Vec<Vec<u8>> = bodies.iter().map(|b| Vec::with_capacity(b.len())).collect();
    let mut merger = Merger::new("container");
    let mut out = Vec::new();
    let input_bytes: usize = bodies.iter().map(Vec::len).sum();
    let mut busy = Duration::ZERO;
    let mut parsing = Duration::ZERO;
    let mut samples = 0;
    let mut families = 0;
    let mut index_bytes = 0;
    let mut merge_bytes = 0;
    // With CHANGING_LABELS, every other round's bodies have other label
    // values (paths, hosts, routes): no family is the same bytes as in the
    // round before, so none is remembered.
    let changing = std::env::var_os("CHANGING_LABELS").is_some();
    let release = std::env::var_os("RELEASE_INDEX").is_some();
    let changed: Vec<Vec<u8>> = if changing {
        bodies.iter().map(|body| with_other_labels(body)).collect()
    } else {
        Vec::new()
    };
    for round in 0..rounds + 3 {
        // Refilling the bodies stands for the socket read; not timed.
        let this_round = if changing && round % 2 == 1 {
            &changed
        } else {
            bodies
        };
        for ((snapshot, spare), body) in snapshots.iter_mut().zip(&mut spare).zip(this_round) {
            spare.extend_from_slice(body);
            snapshot.replace(spare);
        }
        let start = Instant::now();
        for snapshot in &mut snapshots {
            snapshot.index().expect("synthetic body parses");
        }
        let parsed = start.elapsed();
        let sources: Vec<Source<'_>> = snapshots
            .iter()
            .zip(&names)
            .map(|(snapshot, name)| Source {
                container: Some(name),
                snapshot,
            })
            .collect();
        let live = LIVE.load(Ordering::Relaxed) - out.capacity();
        merger.merge_as(&sources, format, &mut out);
        let elapsed = start.elapsed();
        if round == 0 {
            // What the first merge kept, beside its output.
            merge_bytes = LIVE.load(Ordering::Relaxed) - out.capacity() - live;
        }
        if round >= 3 {
            busy += elapsed; // the first rounds warm buffers up
            parsing += parsed;
        }
        samples = snapshots.iter().map(Snapshot::sample_count).sum::<usize>();
        families = snapshots.iter().map(Snapshot::family_count).sum::<usize>();
        index_bytes = snapshots.iter().map(Snapshot::index_bytes).sum::<usize>();
        if release {
            // What the sidecar does after each output build.
            for snapshot in &mut snapshots {
                snapshot.release_index();
            }
        }
    }
    let mb = input_bytes as f64 * f64::from(rounds) / 1e6;
    println!(
        "{label}, {format:?} out: {} bytes in, {} samples, {} bytes out; {:.0} MB/s ({:.1} us per round: {:.1} parse + {:.1} merge)",
        input_bytes,
        samples,
        out.len(),
        mb / busy.as_secs_f64(),
        busy.as_secs_f64() * 1e6 / f64::from(rounds),
        parsing.as_secs_f64() * 1e6 / f64::from(rounds),
        (busy - parsing).as_secs_f64() * 1e6 / f64::from(rounds),
    );
    // A digest of the output, so that runs of two versions of the code can
    // be compared for the same output (FNV-1a).
    let digest = out.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    println!(
        "  index: {index_bytes} bytes, {:.1} per sample, {:.1} per family; merge records: {merge_bytes} bytes, {:.1} per family; output digest {digest:016x}",
        index_bytes as f64 / samples.max(1) as f64,
        index_bytes as f64 / families.max(1) as f64,
        merge_bytes as f64 / families.max(1) as f64
    );
}

/// The processor the figures were taken on (wall time per byte differs by
/// 1.7 times between two of the machines this bench has run on, for the
/// same instructions): `/proc/cpuinfo`'s model, family and clock.
fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines()
            .find(|line| line.split(':').next().map(str::trim) == Some(key))
            .and_then(|line| line.split_once(':'))
            .map_or("?", |(_, value)| value.trim())
            .to_string()
    };
    let cpus = info
        .lines()
        .filter(|line| line.starts_with("processor"))
        .count();
    format!(
        "{} (family {}, model {}), {cpus} CPUs at {} MHz",
        field("model name"),
        field("cpu family"),
        field("model"),
        field("cpu MHz")
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // On stderr: the figures' lines stay the first on stdout.
    eprintln!("machine: {}", machine());
    let rounds = args.get(1).and_then(|arg| arg.parse().ok()).unwrap_or(500);
    let only = args.get(2).map(String::as_str);
    let formats: &[OutputFormat] = match args.get(3).map(String::as_str) {
        Some("text") => &[OutputFormat::Text],
        Some("openmetrics") => &[OutputFormat::OpenMetrics],
        _ => &[OutputFormat::Text, OutputFormat::OpenMetrics],
    };
    // The bodies' format: text 0.0.4, or the same families as OpenMetrics
    // 1.0 (what a container answers the sidecar's Accept while an
    // OpenMetrics client is served).
    let openmetrics_in = args.get(4).map(String::as_str) == Some("openmetrics");
    let synthetic_body = |target_bytes| {
        let body = synthetic_body(target_bytes);
        if openmetrics_in {
            as_openmetrics(&body)
        } else {
            body
        }
    };
    for &format in formats {
        if only == Some("families") {
            let body = multiplexer_bench::synth::one_sample_families(65_536, 1);
            run(
                "1 container x 65,536 one-sample families",
                std::slice::from_ref(&body),
                rounds,
                format,
            );
            run(
                "3 containers x 65,536 one-sample families",
                &[body.clone(), body.clone(), body],
                rounds,
                format,
            );
            continue;
        }
        if only != Some("3") {
            let body = match std::env::var_os("BODY_FILE") {
                Some(path) => std::fs::read(&path).expect("BODY_FILE reads"),
                None => synthetic_body(1_000_000),
            };
            run(
                "1 container x 1 MB",
                std::slice::from_ref(&body),
                rounds,
                format,
            );
        }
        if only == Some("1") {
            continue;
        }
        let small = synthetic_body(333_000);
        run(
            "3 containers x 333 kB",
            &[small.clone(), small.clone(), small],
            rounds,
            format,
        );
    }
}
