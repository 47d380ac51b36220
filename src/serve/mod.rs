//! The serve side: answering every client of the sidecar's port with one
//! body merged from what the scrape side keeps. One room, one job: from a
//! connection accepted on the listener to the last byte of its response.
//! It reads the scrape side (each container's latest body and numbers) and
//! `exposition` (to merge and write them); the scrape side knows nothing of
//! it.
//!
//! - [`listen`]: the listening socket, and which addresses it accepts on.
//! - [`client_table`]: the open client connections, ids that a closed
//!   slot's newer client never answers to.
//! - [`downstream`]: the server state machine for one client connection,
//!   its socket calls, and the request's parsing.
//! - [`output`]: builds the body served: the containers' latest bodies and
//!   the sidecar's own metrics, merged in pieces.
//! - [`self_metrics`]: the sidecar's own metrics, and the process' numbers
//!   from `/proc`.
//! - [`published`]: the edition of each output kind that every response
//!   shares until some data changes.
//! - [`encoded`]: one edition in the codings clients take, and the body of
//!   one response as its connection streams it.
//! - [`encoding`]: `Accept-Encoding`, a streaming gzip writer and a
//!   windowed gunzip.

pub mod client_table;
pub mod downstream;
pub mod encoded;
pub mod encoding;
pub mod listen;
pub mod output;
pub mod published;
pub mod self_metrics;
