//! The sidecar's own metrics, merged like any other source.
//!
//! [`render`] writes them as text format 0.0.4: one `# HELP` and one `# TYPE`
//! per family, families in a fixed order, containers in the order given, the
//! failure reasons in [`FailureReason::ALL`] order. Every reason is written
//! for every container even at 0, so `rate()` works from the first scrape.
//! The per-container families carry only `<label>="<name>"` (plus `reason`);
//! the `process_*` families carry no label at all, like client_golang's.
//!
//! [`ProcessStats::read`] takes its numbers from `/proc`; where a file is
//! missing or unreadable the number is 0, never a panic.

use std::io::Write;
use std::sync::OnceLock;

use crate::exposition::escape_label_value;
use crate::scrape::container::ContainerStats;
use crate::scrape::FailureReason;

/// The sidecar process itself, as client_golang's process collector reports it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub open_fds: u64,
    /// Unix time the process started.
    pub start_time_seconds: f64,
}

/// `USER_HZ`, the unit of the tick counts in `/proc/<pid>/stat`. The kernel
/// fixes it at 100 on every architecture Linux ships for containers (it is
/// part of the user ABI, independent of the kernel's `CONFIG_HZ`), so we do
/// not call `sysconf(_SC_CLK_TCK)` and need no libc dependency for it.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

impl ProcessStats {
    /// Reads the current numbers from `/proc/self`. Costs two small file
    /// reads and a directory listing (tens of microseconds); meant to be
    /// called once per built output, not per scrape of a container.
    pub fn read() -> ProcessStats {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let ticks = parse_stat_ticks(&stat);
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .map(|entries| entries.count() as u64)
            .unwrap_or(0);
        ProcessStats {
            cpu_seconds: (ticks.user + ticks.system) as f64 / CLOCK_TICKS_PER_SECOND,
            resident_bytes: parse_resident_bytes(&status),
            open_fds,
            start_time_seconds: start_time_seconds(ticks.start),
        }
    }
}

/// Boot time plus the process' start tick. Both are constant for the life of
/// the process, and `/proc/stat` grows with the node's CPUs and interrupts
/// (tens of KiB on a large node), so it is read once.
fn start_time_seconds(start_ticks: u64) -> f64 {
    static BOOT_TIME: OnceLock<u64> = OnceLock::new();
    let boot_time = *BOOT_TIME.get_or_init(|| {
        parse_boot_time(&std::fs::read_to_string("/proc/stat").unwrap_or_default())
    });
    match boot_time {
        0 => 0.0,
        boot => boot as f64 + start_ticks as f64 / CLOCK_TICKS_PER_SECOND,
    }
}

#[derive(Debug, Default, PartialEq)]
struct StatTicks {
    user: u64,
    system: u64,
    start: u64,
}

/// proc(5), `/proc/<pid>/stat`: field 2 is the command in parentheses and may
/// itself hold spaces and `)`, so fields are counted after the last `)`.
/// utime is field 14, stime 15, starttime 22 (1-based).
fn parse_stat_ticks(stat: &str) -> StatTicks {
    let Some(close) = stat.rfind(')') else {
        return StatTicks::default();
    };
    let after_command = &stat[close + 1..];
    // The first field after ")" is field 3 (state).
    let field = |number: usize| -> u64 {
        after_command
            .split_ascii_whitespace()
            .nth(number - 3)
            .and_then(|text| text.parse().ok())
            .unwrap_or(0)
    };
    StatTicks {
        user: field(14),
        system: field(15),
        start: field(22),
    }
}

/// `VmRSS:  1234 kB` in `/proc/self/status`: in kibibytes whatever the page
/// size (statm counts pages, which are 64 KiB on some arm64 kernels).
fn parse_resident_bytes(status: &str) -> u64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .map_or(0, |kib| kib.saturating_mul(1024))
}

/// `btime <unix seconds>` in `/proc/stat`.
fn parse_boot_time(system_stat: &str) -> u64 {
    system_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|seconds| seconds.trim().parse().ok())
        .unwrap_or(0)
}

/// One per-container family: name, type, help, and its samples.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Samples,
}

enum Samples {
    /// One sample per container; the function writes its value.
    One(fn(&ContainerStats, &mut Vec<u8>)),
    /// One sample per container and failure reason.
    PerReason,
}

/// In output order.
const FAMILIES: [Family; 7] = [
    Family {
        name: "multiplexer_up",
        kind: "gauge",
        help: "1 if the latest completed scrape of the container succeeded, else 0.",
        samples: Samples::One(|stats, out| out.push(if stats.up { b'1' } else { b'0' })),
    },
    Family {
        name: "multiplexer_scrape_duration_seconds",
        kind: "gauge",
        help: "Duration of the latest completed scrape of the container.",
        samples: Samples::One(|stats, out| write_f64(out, stats.last_scrape_duration.as_secs_f64())),
    },
    Family {
        name: "multiplexer_scrape_body_bytes",
        kind: "gauge",
        help: "Body size of the latest completed scrape of the container.",
        samples: Samples::One(|stats, out| write_u64(out, stats.last_body_bytes)),
    },
    Family {
        name: "multiplexer_scrape_samples",
        kind: "gauge",
        help: "Samples in the latest completed scrape of the container.",
        samples: Samples::One(|stats, out| write_u64(out, stats.last_samples)),
    },
    Family {
        name: "multiplexer_scrapes_total",
        kind: "counter",
        help: "Scrapes of the container, successful or not.",
        samples: Samples::One(|stats, out| write_u64(out, stats.scrapes_total)),
    },
    Family {
        name: "multiplexer_scrape_failures_total",
        kind: "counter",
        help: "Scrapes of the container that failed, by reason.",
        samples: Samples::PerReason,
    },
    Family {
        name: "multiplexer_family_conflicts_total",
        kind: "counter",
        help: "Families of the container that lost a type conflict with another container (dropped, or written as untyped).",
        samples: Samples::One(|stats, out| write_u64(out, stats.family_conflicts_total)),
    },
];

/// Appends the own metrics to `out`. `label` is a valid label name (checked
/// by `config`); container names are escaped anyway, as the format requires.
pub fn render(
    label: &str,
    containers: &[(&str, &ContainerStats)],
    process: &ProcessStats,
    out: &mut Vec<u8>,
) {
    for family in &FAMILIES {
        if containers.is_empty() {
            break; // a family without samples says nothing
        }
        write_header(out, family.name, family.help, family.kind);
        for (name, stats) in containers {
            match family.samples {
                Samples::One(write_value) => {
                    out.extend_from_slice(family.name.as_bytes());
                    write_container_label(out, label, name);
                    out.extend_from_slice(b"} ");
                    write_value(stats, out);
                    out.push(b'\n');
                }
                Samples::PerReason => {
                    for reason in FailureReason::ALL {
                        // `get`, not indexing: the length is tied to ALL by
                        // the type, but no input should be able to panic.
                        let count = stats.failures_total.get(reason.index()).copied();
                        out.extend_from_slice(family.name.as_bytes());
                        write_container_label(out, label, name);
                        out.extend_from_slice(b",reason=\"");
                        out.extend_from_slice(reason.as_str().as_bytes());
                        out.extend_from_slice(b"\"} ");
                        write_u64(out, count.unwrap_or(0));
                        out.push(b'\n');
                    }
                }
            }
        }
    }

    // The version running, as Prometheus' own `prometheus_build_info` says
    // it: a constant 1 carrying labels, for `count by (version)` across a
    // fleet during a rollout.
    write_header(
        out,
        "multiplexer_build_info",
        "The version of metrics-multiplexer-sidecar running, as a label; always 1.",
        "gauge",
    );
    out.extend_from_slice(b"multiplexer_build_info{version=\"");
    escape_label_value(env!("CARGO_PKG_VERSION").as_bytes(), out);
    out.extend_from_slice(b"\"} 1\n");

    let process_metrics: [(&str, &str, &str, Number); 4] = [
        (
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            "counter",
            Number::Float(process.cpu_seconds),
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            "gauge",
            Number::Integer(process.resident_bytes),
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            "gauge",
            Number::Integer(process.open_fds),
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            "gauge",
            Number::Float(process.start_time_seconds),
        ),
    ];
    for (name, help, kind, value) in process_metrics {
        write_header(out, name, help, kind);
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
        match value {
            Number::Integer(value) => write_u64(out, value),
            Number::Float(value) => write_f64(out, value),
        }
        out.push(b'\n');
    }
}

/// A process metric's value, written as client_golang writes it.
#[derive(Clone, Copy)]
enum Number {
    Integer(u64),
    Float(f64),
}

/// Help texts are constants without `\` or newline, so need no escaping.
fn write_header(out: &mut Vec<u8>, name: &str, help: &str, kind: &str) {
    for part in [
        "# HELP ",
        name,
        " ",
        help,
        "\n# TYPE ",
        name,
        " ",
        kind,
        "\n",
    ] {
        out.extend_from_slice(part.as_bytes());
    }
}

/// Writes `{<label>="<value>"` (the caller closes or continues the set).
fn write_container_label(out: &mut Vec<u8>, label: &str, value: &str) {
    out.push(b'{');
    out.extend_from_slice(label.as_bytes());
    out.extend_from_slice(b"=\"");
    escape_label_value(value.as_bytes(), out);
    out.push(b'"');
}

fn write_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Rust's `Display` for f64 is the shortest string that reads back exactly
/// and never uses an exponent, which Go's ParseFloat and Python's float()
/// both accept. NaN and infinities cannot occur in these numbers.
fn write_f64(out: &mut Vec<u8>, value: f64) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{value}");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sample_output() -> Vec<u8> {
        let mut app = ContainerStats {
            up: true,
            last_scrape_duration: Duration::from_micros(1500),
            last_body_bytes: 12345,
            last_samples: 67,
            scrapes_total: 10,
            ..ContainerStats::default()
        };
        app.failures_total[FailureReason::Timeout.index()] = 2;
        let mut odd = ContainerStats {
            scrapes_total: 3,
            family_conflicts_total: 1,
            ..ContainerStats::default()
        };
        odd.failures_total[FailureReason::Refused.index()] = 3;
        let process = ProcessStats {
            cpu_seconds: 0.25,
            resident_bytes: 4_194_304,
            open_fds: 9,
            start_time_seconds: 1_700_000_000.5,
        };
        let mut out = b"# existing output is kept\n".to_vec();
        render(
            "pod_container",
            &[("app", &app), ("o\"d\\d\n", &odd)],
            &process,
            &mut out,
        );
        out
    }

    #[test]
    fn exact_output() {
        let expected = r#"# existing output is kept
# HELP multiplexer_up 1 if the latest completed scrape of the container succeeded, else 0.
# TYPE multiplexer_up gauge
multiplexer_up{pod_container="app"} 1
multiplexer_up{pod_container="o\"d\\d\n"} 0
# HELP multiplexer_scrape_duration_seconds Duration of the latest completed scrape of the container.
# TYPE multiplexer_scrape_duration_seconds gauge
multiplexer_scrape_duration_seconds{pod_container="app"} 0.0015
multiplexer_scrape_duration_seconds{pod_container="o\"d\\d\n"} 0
# HELP multiplexer_scrape_body_bytes Body size of the latest completed scrape of the container.
# TYPE multiplexer_scrape_body_bytes gauge
multiplexer_scrape_body_bytes{pod_container="app"} 12345
multiplexer_scrape_body_bytes{pod_container="o\"d\\d\n"} 0
# HELP multiplexer_scrape_samples Samples in the latest completed scrape of the container.
# TYPE multiplexer_scrape_samples gauge
multiplexer_scrape_samples{pod_container="app"} 67
multiplexer_scrape_samples{pod_container="o\"d\\d\n"} 0
# HELP multiplexer_scrapes_total Scrapes of the container, successful or not.
# TYPE multiplexer_scrapes_total counter
multiplexer_scrapes_total{pod_container="app"} 10
multiplexer_scrapes_total{pod_container="o\"d\\d\n"} 3
# HELP multiplexer_scrape_failures_total Scrapes of the container that failed, by reason.
# TYPE multiplexer_scrape_failures_total counter
multiplexer_scrape_failures_total{pod_container="app",reason="refused"} 0
multiplexer_scrape_failures_total{pod_container="app",reason="timeout"} 2
multiplexer_scrape_failures_total{pod_container="app",reason="reset"} 0
multiplexer_scrape_failures_total{pod_container="app",reason="closed"} 0
multiplexer_scrape_failures_total{pod_container="app",reason="http_status"} 0
multiplexer_scrape_failures_total{pod_container="app",reason="bad_response"} 0
multiplexer_scrape_failures_total{pod_container="app",reason="body_too_large"} 0
multiplexer_scrape_failures_total{pod_container="app",reason="encoding"} 0
multiplexer_scrape_failures_total{pod_container="app",reason="parse_error"} 0
multiplexer_scrape_failures_total{pod_container="app",reason="too_many_lines"} 0
multiplexer_scrape_failures_total{pod_container="app",reason="io_error"} 0
multiplexer_scrape_failures_total{pod_container="app",reason="over_budget"} 0
multiplexer_scrape_failures_total{pod_container="o\"d\\d\n",reason="refused"} 3
multiplexer_scrape_failures_total{pod_container="o\"d\\d\n",reason="timeout"} 0
multiplexer_scrape_failures_total{pod_container="o\"d\\d\n",reason="reset"} 0
multiplexer_scrape_failures_total{pod_container="o\"d\\d\n",reason="closed"} 0
multiplexer_scrape_failures_total{pod_container="o\"d\\d\n",reason="http_status"} 0
multiplexer_scrape_failures_total{pod_container="o\"d\\d\n",reason="bad_response"} 0
multiplexer_scrape_failures_total{pod_container="o\"d\\d\n",reason="body_too_large"} 0
multiplexer_scrape_failures_total{pod_container="o\"d\\d\n",reason="encoding"} 0
multiplexer_scrape_failures_total{pod_container="o\"d\\d\n",reason="parse_error"} 0
multiplexer_scrape_failures_total{pod_container="o\"d\\d\n",reason="too_many_lines"} 0
multiplexer_scrape_failures_total{pod_container="o\"d\\d\n",reason="io_error"} 0
multiplexer_scrape_failures_total{pod_container="o\"d\\d\n",reason="over_budget"} 0
# HELP multiplexer_family_conflicts_total Families of the container that lost a type conflict with another container (dropped, or written as untyped).
# TYPE multiplexer_family_conflicts_total counter
multiplexer_family_conflicts_total{pod_container="app"} 0
multiplexer_family_conflicts_total{pod_container="o\"d\\d\n"} 1
# HELP multiplexer_build_info The version of metrics-multiplexer-sidecar running, as a label; always 1.
# TYPE multiplexer_build_info gauge
multiplexer_build_info{version="VERSION"} 1
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 0.25
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 4194304
# HELP process_open_fds Number of open file descriptors.
# TYPE process_open_fds gauge
process_open_fds 9
# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1700000000.5
"#;
        let expected = expected.replace("VERSION", env!("CARGO_PKG_VERSION"));
        assert_eq!(String::from_utf8(sample_output()).unwrap(), expected);
    }

    #[test]
    fn no_containers_gives_only_build_info_and_process_families() {
        let mut out = Vec::new();
        render("container", &[], &ProcessStats::default(), &mut out);
        let text = String::from_utf8(out).unwrap();
        let own: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("multiplexer_"))
            .collect();
        let build_info = format!(
            "multiplexer_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(own, [build_info.as_str()], "{text}");
        assert!(text.ends_with("process_start_time_seconds 0\n"), "{text}");
    }

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        // A command may hold spaces and parentheses; fields 14, 15 and 22.
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 \
                    1234 567 0 0 20 0 1 0 98765 10000000 500 184467440737 1";
        let ticks = StatTicks {
            user: 1234,
            system: 567,
            start: 98765,
        };
        assert_eq!(parse_stat_ticks(stat), ticks);
        for broken in [
            "",
            "no parenthesis",
            "1 (x) S 1",
            "1 (x) S 1 2 3 4 5 6 7 8 9 10 x y",
        ] {
            let ticks = parse_stat_ticks(broken);
            assert_eq!(
                (ticks.user, ticks.system, ticks.start),
                (0, 0, 0),
                "{broken}"
            );
        }
    }

    #[test]
    fn resident_bytes_and_boot_time() {
        let status = "Name:\tsidecar\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t1\n";
        assert_eq!(parse_resident_bytes(status), 2048 * 1024);
        assert_eq!(parse_resident_bytes("VmRSS: lots"), 0);
        assert_eq!(parse_resident_bytes(""), 0);
        let system_stat = "cpu  1 2 3\nintr 1 2 3\nctxt 99\nbtime 1700000000\nprocesses 5\n";
        assert_eq!(parse_boot_time(system_stat), 1_700_000_000);
        assert_eq!(parse_boot_time("btime soon\n"), 0);
    }

    #[test]
    fn reads_this_process() {
        let stats = ProcessStats::read();
        if !std::path::Path::new("/proc/self/stat").exists() {
            assert_eq!(stats, ProcessStats::default());
            return;
        }
        assert!(stats.resident_bytes > 0, "{stats:?}");
        assert!(stats.open_fds >= 3, "{stats:?}"); // stdin, stdout, stderr
        assert!(stats.start_time_seconds > 1_000_000_000.0, "{stats:?}");
    }

    /// Runs an external checker on the sample output, or says loudly that it
    /// is missing; under CI=true a missing checker fails the test.
    fn check_with(program: &str, args: &[&str]) {
        use std::process::{Command, Stdio};
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(error) if std::env::var("CI").as_deref() != Ok("true") => {
                eprintln!(
                    "!!! SKIPPED: cannot run {program}: {error} (set CI=true to fail instead)"
                );
                return;
            }
            Err(error) => panic!("cannot run {program}: {error}"),
        };
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&sample_output()).unwrap();
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{program} rejected the output: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    fn promtool_accepts_the_output() {
        // Exit 0 means no parse error and no lint remark either.
        check_with("promtool", &["check", "metrics"]);
    }

    #[test]
    fn python_client_parses_the_output() {
        let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
families = {f.name: f for f in text_string_to_metric_families(sys.stdin.read())}
assert families["multiplexer_scrape_failures"].type == "counter", families
assert len(families["multiplexer_scrape_failures"].samples) == 24
assert families["multiplexer_up"].samples[1].labels == {"pod_container": 'o"d\\d\n'}
assert families["process_start_time_seconds"].samples[0].value == 1700000000.5
assert families["multiplexer_build_info"].samples[0].value == 1
assert set(families["multiplexer_build_info"].samples[0].labels) == {"version"}
assert len(families) == 12, sorted(families)
"#;
        check_with("python3", &["-c", script]);
    }
}
