//! Shared parts of the load test: a stub exporter, a keep-alive load
//! generator, `/proc` readings of one process and synthetic bodies.
//! Everything is std threads and blocking sockets on loopback; the sidecar
//! is measured from outside, by PID, so the cost of these helpers is never
//! counted in its figures.

pub mod args;
pub mod load;
pub mod process;
pub mod procfs;
pub mod stub;
pub mod synth;
