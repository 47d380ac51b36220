//! Readings of one process from `/proc`: CPU time (precise, from every
//! thread's `schedstat`, and tick-based, from `stat`), context switches of
//! every thread, and resident memory now and at its peak.

use std::fs;
use std::io;
use std::time::Instant;

/// One reading of a process; differences of two readings give rates.
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    pub at: Instant,
    /// Sum over threads of time on CPU, nanoseconds (`/proc/<pid>/task/*/schedstat`).
    pub cpu_ns: u64,
    /// utime + stime of the whole process, in clock ticks (`/proc/<pid>/stat`).
    pub cpu_ticks: u64,
    /// Sums over threads (`/proc/<pid>/task/*/status`).
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
}

pub fn read(pid: u32) -> io::Result<Reading> {
    let at = Instant::now();
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let cpu_ticks = utime_plus_stime(&stat).ok_or_else(|| malformed("stat"))?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = status_field(&status, "VmRSS:").ok_or_else(|| malformed("VmRSS"))?;
    let peak_rss_kib = status_field(&status, "VmHWM:").ok_or_else(|| malformed("VmHWM"))?;
    let (mut cpu_ns, mut voluntary_switches, mut involuntary_switches) = (0, 0, 0);
    for task in fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?.path();
        let schedstat = fs::read_to_string(task.join("schedstat"))?;
        cpu_ns += schedstat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .ok_or_else(|| malformed("schedstat"))?;
        let task_status = fs::read_to_string(task.join("status"))?;
        voluntary_switches += status_field(&task_status, "voluntary_ctxt_switches:").unwrap_or(0);
        involuntary_switches +=
            status_field(&task_status, "nonvoluntary_ctxt_switches:").unwrap_or(0);
    }
    Ok(Reading {
        at,
        cpu_ns,
        cpu_ticks,
        voluntary_switches,
        involuntary_switches,
        rss_kib,
        peak_rss_kib,
    })
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("malformed {what}"))
}

/// Fields 14 and 15 of `/proc/<pid>/stat` (proc(5)); counted after the
/// `)` that closes the command name, which may itself hold spaces.
fn utime_plus_stime(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The number after `name` on its line (`VmRSS:   1234 kB`).
fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

/// `getconf CLK_TCK`, or 100 (the Linux value on every common arch).
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100)
}

/// `/proc/loadavg`'s three averages, for the record next to each result.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_name_with_spaces() {
        let stat = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 99";
        assert_eq!(utime_plus_stime(stat), Some(12));
    }

    #[test]
    fn status_fields() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nvoluntary_ctxt_switches:\t5\nnonvoluntary_ctxt_switches:\t2\n";
        assert_eq!(status_field(status, "VmRSS:"), Some(1024));
        assert_eq!(status_field(status, "VmHWM:"), Some(2048));
        assert_eq!(status_field(status, "voluntary_ctxt_switches:"), Some(5));
        assert_eq!(status_field(status, "nonvoluntary_ctxt_switches:"), Some(2));
    }

    #[test]
    fn reads_this_process() {
        let reading = read(std::process::id()).unwrap();
        assert!(reading.rss_kib > 0 && reading.peak_rss_kib >= reading.rss_kib);
    }
}
