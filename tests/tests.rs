//! The integration tests: one binary, one module per area (as ripgrep's
//! `tests/` is laid out), sharing the helpers of `util/`.
//!
//! One binary links once and shares one set of helpers, every one of them
//! used. `Cargo.toml` sets `autotests = false`, so a file in `tests/` runs
//! only once it is declared here.
//!
//! Run one area with `cargo test --release --test integration <module>::`,
//! e.g. `real_world:: -- --nocapture`.

mod cli;
mod encoding;
mod exposition;
mod house;
mod listen;
mod memory;
mod negotiation;
mod on_demand;
mod openmetrics_oracle;
mod packaging;
mod protobuf;
mod real_world;
mod scraping;
mod serving;
mod static_binary;
mod util;
mod verdicts;
