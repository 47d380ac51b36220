//! A memory cgroup for one process, as Kubernetes runs a container: made
//! with a limit, read for its peak usage and OOM kills, removed when
//! dropped (also when a test panics). Kubernetes kills by the cgroup's own
//! accounting (anonymous memory, page cache, kernel memory), which
//! `VmHWM` does not see.
//!
//! cgroup v1 (`/sys/fs/cgroup/memory`: `memory.limit_in_bytes`,
//! `memory.max_usage_in_bytes`, `memory.oom_control`, `memory.failcnt`) or
//! v2 (`memory.max`, `memory.peak`, `memory.events`), whichever has the
//! memory controller. Only the process under test goes inside: its
//! clients and stubs stay out, or their socket buffers and page cache
//! would be charged to it.
//!
//! Shared by the integration tests and `bench/` (included by path there),
//! so it depends on nothing but std.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// The cgroup controller files of a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// A child memory cgroup, removed when dropped.
pub struct Cgroup {
    dir: PathBuf,
    version: Version,
}

impl Cgroup {
    /// Makes a cgroup named `name` (made unique with this process' id)
    /// limited to `limit` bytes, or says why this machine does not allow
    /// it (not root, no memory controller).
    pub fn new(name: &str, limit: u64) -> Result<Cgroup, String> {
        let (root, version) = memory_root()?;
        let dir = root.join(format!("{name}-{}", std::process::id()));
        if dir.exists() {
            // Left by an earlier run of this very process id: empty it.
            let _ = std::fs::remove_dir(&dir);
        }
        std::fs::create_dir(&dir)
            .map_err(|e| format!("cannot make a cgroup at {}: {e}", dir.display()))?;
        let cgroup = Cgroup { dir, version };
        let limit_file = match version {
            Version::V1 => "memory.limit_in_bytes",
            Version::V2 => "memory.max",
        };
        cgroup.write(limit_file, &limit.to_string())?;
        if version == Version::V2 {
            // No swap to hide in.
            let _ = cgroup.write("memory.swap.max", "0");
        }
        Ok(cgroup)
    }

    /// The file a process writes its pid to, to move itself in.
    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// A shell command prefix that moves the shell into the cgroup before
    /// it execs the program: `sh -c '<this> exec "$0" "$@"' program args`.
    pub fn enter_then(&self) -> String {
        format!("echo $$ > '{}' &&", self.procs_file().display())
    }

    /// The most memory the cgroup has been charged, in bytes.
    pub fn peak_bytes(&self) -> u64 {
        let file = match self.version {
            Version::V1 => "memory.max_usage_in_bytes",
            Version::V2 => "memory.peak",
        };
        self.number(file).unwrap_or(0)
    }

    /// Memory charged now, in bytes.
    pub fn usage_bytes(&self) -> u64 {
        let file = match self.version {
            Version::V1 => "memory.usage_in_bytes",
            Version::V2 => "memory.current",
        };
        self.number(file).unwrap_or(0)
    }

    /// Processes of the cgroup the kernel's OOM killer killed.
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = match self.version {
            Version::V1 => ("memory.oom_control", "oom_kill"),
            Version::V2 => ("memory.events", "oom_kill"),
        };
        self.keyed(file, key).unwrap_or(0)
    }

    /// Times the usage hit the limit (v1 `memory.failcnt`, v2 `max` of
    /// `memory.events`): the kernel reclaimed or refused memory there.
    pub fn limit_hits(&self) -> u64 {
        match self.version {
            Version::V1 => self.number("memory.failcnt").unwrap_or(0),
            Version::V2 => self.keyed("memory.events", "max").unwrap_or(0),
        }
    }

    /// One line for a test's or a bench's log.
    pub fn summary(&self) -> String {
        format!(
            "cgroup {:?}: peak {:.1} MiB, now {:.1} MiB, {} OOM kills, limit hit {} times",
            self.version,
            self.peak_bytes() as f64 / (1 << 20) as f64,
            self.usage_bytes() as f64 / (1 << 20) as f64,
            self.oom_kills(),
            self.limit_hits()
        )
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        std::fs::write(self.dir.join(file), value)
            .map_err(|e| format!("cannot write {value} to {}/{file}: {e}", self.dir.display()))
    }

    fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(file)).ok()
    }

    fn number(&self, file: &str) -> Option<u64> {
        self.read(file)?.trim().parse().ok()
    }

    /// The number after `key ` in a `key value` file.
    fn keyed(&self, file: &str, key: &str) -> Option<u64> {
        self.read(file)?.lines().find_map(|line| {
            let (name, value) = line.split_once(' ')?;
            (name == key).then(|| value.trim().parse().ok())?
        })
    }

    fn pids(&self) -> Vec<String> {
        self.read("cgroup.procs")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Cgroup {
    /// Kills what is left inside (a test that panicked before its process
    /// was stopped), then removes the cgroup.
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.pids();
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid])
                    .status();
            }
            thread::sleep(Duration::from_millis(20));
        }
        while std::fs::remove_dir(&self.dir).is_err() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Where memory cgroups can be made here, or why they cannot.
fn memory_root() -> Result<(PathBuf, Version), String> {
    let v1 = Path::new("/sys/fs/cgroup/memory");
    if v1.join("memory.limit_in_bytes").exists() {
        return writable(v1).map(|root| (root, Version::V1));
    }
    for v2 in [
        Path::new("/sys/fs/cgroup/unified"),
        Path::new("/sys/fs/cgroup"),
    ] {
        let Ok(controllers) = std::fs::read_to_string(v2.join("cgroup.controllers")) else {
            continue;
        };
        if !controllers.split_whitespace().any(|c| c == "memory") {
            continue;
        }
        // Children get the memory controller only when the parent
        // delegates it.
        let delegated = std::fs::read_to_string(v2.join("cgroup.subtree_control"))
            .is_ok_and(|control| control.split_whitespace().any(|c| c == "memory"));
        if !delegated && std::fs::write(v2.join("cgroup.subtree_control"), "+memory").is_err() {
            return Err(format!(
                "the memory controller of {} is not delegated to its children",
                v2.display()
            ));
        }
        return writable(v2).map(|root| (root.to_path_buf(), Version::V2));
    }
    Err(
        "no cgroup memory controller (neither /sys/fs/cgroup/memory nor a cgroup2 \
         mount with `memory` in cgroup.controllers)"
            .to_string(),
    )
}

fn writable(root: &Path) -> Result<PathBuf, String> {
    let probe = root.join(format!("multiplexer-probe-{}", std::process::id()));
    match std::fs::create_dir(&probe) {
        Ok(()) => {
            let _ = std::fs::remove_dir(&probe);
            Ok(root.to_path_buf())
        }
        Err(e) => Err(format!(
            "cannot make a cgroup under {} ({e}): not root?",
            root.display()
        )),
    }
}
