//! metrics-multiplexer-sidecar: scrapes the Prometheus `/metrics` endpoint of
//! every container in a pod and serves them merged, each sample labelled with
//! its container, on the pod's single metrics port.
//!
//! The house, a room per job, data flowing one way through it:
//! - [`scrape`]: the scrape side. `timer` ticks drive its `upstream`
//!   connections, whose finished scrapes become each container's latest
//!   body (`container`), within the pod's memory `budget`; `rounds` and
//!   `catch_up` hold requests while containers are scraped for them.
//! - [`exposition`]: the format engine, no I/O: reads each container's body,
//!   adds its label, merges them and writes the format a client asked for.
//! - [`serve`]: the serve side. Clients accepted on its `listen`ing socket
//!   (`client_table`, `downstream`) are answered with one body built from
//!   the containers' bodies plus `self_metrics` by the `exposition` merge
//!   (`output`), encoded once (`encoded`, `encoding`) and shared until data
//!   changes (`published`).
//! - [`event_loop`]: the one `mio::Poll` that drives both sides, and
//!   [`timer`], its timer wheel; [`config`]: the command line.
//!
//! Arrows run one way: `event_loop` imports every room; `serve` imports
//! `scrape` and `exposition`; `scrape` imports `exposition`; `exposition`,
//! `timer` and `config` import no other room.
//!
//! Who does I/O: `event_loop` owns `Poll`, the clock, the listener and the
//! timers, and tells each connection when to do its own socket calls
//! (`upstream`, `downstream`); `self_metrics` reads `/proc` when the loop
//! asks for a build. The policies (`container`, `rounds`, `catch_up`,
//! `client_table`, `output`, `published`), `exposition`, `timer` and
//! `config` know no socket and no clock: they are handed `now` and events
//! and return decisions.

#![forbid(unsafe_code)]

pub mod config;
pub mod event_loop;
pub mod exposition;
pub mod scrape;
pub mod serve;
pub mod timer;

#[cfg(test)]
mod test_rng;
