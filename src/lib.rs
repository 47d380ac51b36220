//! metrics-multiplexer-sidecar: scrapes the Prometheus `/metrics` endpoint of
//! every container in a pod and serves them merged, each sample labelled with
//! its container, on the pod's single metrics port.
//!
//! Data flows one way: `timer` ticks drive `upstream` connections, whose
//! complete bodies become per-container `exposition` snapshots; `downstream`
//! connections ask the `exposition` merge writer for one body built from the
//! latest snapshots plus `self_metrics`. `event_loop` owns the sockets and the
//! clock and is the only place that does I/O.

pub mod budget;
pub mod config;
pub mod downstream;
pub mod encoded;
pub mod encoding;
pub mod event_loop;
pub mod exposition;
pub mod self_metrics;
pub mod timer;
pub mod upstream;

#[cfg(test)]
mod test_rng;
