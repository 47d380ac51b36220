//! The scrape side: asking every container for its body and keeping what
//! it answered. One room, one job: from a scrape tick (or a request held for
//! a round) to each container's latest body, ready for the serve side to
//! merge. It imports `exposition` (to read a body's format) and nothing of
//! the serve side; the serve side reads what it keeps.
//!
//! - [`upstream`]: the client state machine for one container, its socket
//!   calls, and the response's framing.
//! - [`container`]: what is known of one container: its latest completed
//!   scrape, its health, and the numbers of its own metrics.
//! - [`budget`]: the pod's memory budget for container bodies and the
//!   buffers scrapes read into.
//! - [`rounds`]: requests held while containers are scraped (on demand, or
//!   for a catch-up), answered together.
//! - [`catch_up`]: which containers a client must wait for, scraped again
//!   with a richer `Accept`.
//!
//! This file holds what a finished scrape hands over, from the connection
//! that ran it (`upstream`) to the policy that keeps the container's latest
//! result (`container`): one [`Finished`] record. And why a scrape failed: a
//! fixed set of [`FailureReason`]s, each the `reason` label value of
//! `multiplexer_scrape_failures_total` (the serve side's `self_metrics`).
//! These types know no socket and no format, so each of those rooms can use
//! them without importing another.

pub mod budget;
pub mod catch_up;
pub mod container;
pub mod rounds;
pub mod upstream;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// How a finished scrape ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `Finished::body` holds the complete, decoded body.
    Success,
    Failure(FailureReason),
}

/// One scrape, finished: everything its receiver needs, handed over at once.
#[derive(Debug)]
pub struct Finished<'a> {
    pub outcome: Outcome,
    /// From the start of the scrape (connect or request) to its end.
    pub duration: Duration,
    /// What went wrong and in which phase ("connection refused while
    /// connecting"); empty on success.
    pub detail: &'a str,
    /// On success the whole body, for the receiver to take by swapping
    /// buffers (whatever buffer it leaves, stale bytes and all, is reused
    /// for the next scrape); not to be read on failure. A partial body is
    /// never handed out.
    pub body: &'a mut Vec<u8>,
    /// The response's `Content-Type` (None when it had none): how the body
    /// is to be read.
    pub content_type: Option<&'a [u8]>,
    /// On success, the loopback address that answered: `127.0.0.1`, or
    /// `::1` for a container that listens there only (see
    /// `upstream::loopback`). `None` on failure.
    pub answered_on: Option<SocketAddr>,
}

/// The outcome of a scrape that did not produce a servable body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// Nothing listens on the container's port (yet).
    Refused,
    /// The whole scrape took longer than `--scrape_timeout`.
    Timeout,
    /// The connection was reset or the pipe broke.
    Reset,
    /// The container closed the connection before the response was complete.
    Closed,
    /// The response status was not 200.
    HttpStatus,
    /// The response head or its body framing broke HTTP/1.1 rules.
    BadResponse,
    /// The body exceeded `--max_body_bytes`.
    BodyTooLarge,
    /// The body was sent with a `Content-Encoding` other than identity.
    Encoding,
    /// The body is not a valid Prometheus or OpenMetrics text exposition.
    ParseError,
    /// The body has more lines than `--max_body_bytes / 64`: tiny samples
    /// cost far more memory indexed and relabelled than their bytes.
    TooManyLines,
    /// Any other socket error.
    IoError,
    /// Holding the body would take the bodies held across all containers
    /// past the pod's memory budget (see the README's memory model).
    OverBudget,
}

impl FailureReason {
    /// Every reason, in the order they are exported.
    pub const ALL: [FailureReason; 12] = [
        FailureReason::Refused,
        FailureReason::Timeout,
        FailureReason::Reset,
        FailureReason::Closed,
        FailureReason::HttpStatus,
        FailureReason::BadResponse,
        FailureReason::BodyTooLarge,
        FailureReason::Encoding,
        FailureReason::ParseError,
        FailureReason::TooManyLines,
        FailureReason::IoError,
        FailureReason::OverBudget,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Refused => "refused",
            FailureReason::Timeout => "timeout",
            FailureReason::Reset => "reset",
            FailureReason::Closed => "closed",
            FailureReason::HttpStatus => "http_status",
            FailureReason::BadResponse => "bad_response",
            FailureReason::BodyTooLarge => "body_too_large",
            FailureReason::Encoding => "encoding",
            FailureReason::ParseError => "parse_error",
            FailureReason::TooManyLines => "too_many_lines",
            FailureReason::IoError => "io_error",
            FailureReason::OverBudget => "over_budget",
        }
    }

    /// Position in [`FailureReason::ALL`], for per-reason counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_position_in_all() {
        for (position, reason) in FailureReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), position, "{reason}");
        }
    }
}
