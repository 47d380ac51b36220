//! Shared parts of the load test: a stub exporter, a keep-alive load
//! generator, `/proc` readings of one process, synthetic bodies, and what
//! every runner in `src/bin` shares (`runner`: its exit, the processes it
//! measures, its tables' heads).
//! Everything is std threads and blocking sockets on loopback; the sidecar
//! is measured from outside, by PID, so the cost of these helpers is never
//! counted in its figures.

pub mod args;
/// A memory cgroup around the sidecar, as Kubernetes limits it: the
/// integration tests' own, included by path.
#[path = "../../tests/util/cgroup.rs"]
pub mod cgroup;
pub mod load;
pub mod procfs;
pub mod runner;
pub mod stub;
pub mod synth;
