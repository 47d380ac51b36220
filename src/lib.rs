//! metrics-multiplexer-sidecar: scrapes the Prometheus `/metrics` endpoint of
//! every container in a pod and serves them merged, each sample labelled with
//! its container, on the pod's single metrics port.
//!
//! Data flows one way: `timer` ticks drive `upstream` connections, whose
//! finished scrapes (`scrape`) become each container's latest snapshot
//! (`container`); `downstream` connections are answered with one body built
//! from those snapshots plus `self_metrics` by the `exposition` merge writer
//! (`output`) and shared until data changes (`published`).
//!
//! Who does I/O: `event_loop` owns `Poll`, the clock, the listener and the
//! timers, and tells each connection when to do its own socket calls
//! (`upstream`, `downstream`); `self_metrics` reads `/proc` when the loop
//! asks for a build. The policies (`container`, `rounds`, `catch_up`,
//! `client_table`, `output`, `published`), `exposition`, `timer` and
//! `config` know no socket
//! and no clock: they are handed `now` and events and return decisions.

#![forbid(unsafe_code)]

pub mod budget;
pub mod catch_up;
pub mod client_table;
pub mod config;
pub mod container;
pub mod downstream;
pub mod encoded;
pub mod encoding;
pub mod event_loop;
pub mod exposition;
pub mod listen;
pub mod output;
pub mod published;
pub mod rounds;
pub mod scrape;
pub mod self_metrics;
pub mod timer;
pub mod upstream;

#[cfg(test)]
mod test_rng;
