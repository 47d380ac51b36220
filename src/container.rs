//! What the sidecar knows of one container: the outcome of its latest
//! *completed* scrape (a successful body in a [`Snapshot`], or nothing after
//! a failure), its health, and the numbers of its own metrics.
//!
//! Every change of health passes through [`ContainerState::set_health`],
//! which logs each transition once (up, down, a down container's new
//! reason), never a line per failed scrape.
//!
//! Bodies are parsed lazily: while the container is up, a new body is stored
//! unparsed and indexed only when a merge needs it
//! ([`ContainerState::prepare_for_merge`]), because at 200 ms a body is
//! replaced about 75 times between two Prometheus scrapes. While it is down
//! or not yet seen, each body is indexed as it arrives, so that recovery is
//! logged when it happens and a container that serves garbage stays down.
//!
//! No socket, no clock: handed `now` and [`Finished`] scrapes.

use std::time::Instant;

use log::{debug, info, warn};

use crate::exposition::Snapshot;
use crate::scrape::{FailureReason, Finished, Outcome};
use crate::self_metrics::ContainerStats;

/// A body may hold at most one line per this many bytes of
/// `--max_body_bytes` (65536 lines at the default 4 MiB; real exporters
/// write 60 to 120 bytes per line). Each sample costs an index record and
/// the container label in the merged body whatever its size, so without
/// this bound 4 MiB of `a 1` lines would take the process past 32 MiB.
pub const BODY_BYTES_PER_LINE: usize = 64;

/// A container as last seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// No scrape completed yet.
    Unknown,
    Up,
    Down(FailureReason),
}

/// A change of health worth a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Up,
    /// From up or unknown.
    Down(FailureReason),
    /// Already down, now for another reason (logged at debug level).
    StillDown(FailureReason),
}

pub struct ContainerState {
    name: String,
    /// The latest successful body; empty after a failure.
    snapshot: Snapshot,
    stats: ContainerStats,
    health: Health,
    /// See [`BODY_BYTES_PER_LINE`].
    max_lines: usize,
}

impl ContainerState {
    pub fn new(name: &str, max_body_bytes: usize) -> ContainerState {
        ContainerState {
            name: name.to_string(),
            snapshot: Snapshot::new(),
            stats: ContainerStats::default(),
            health: Health::Unknown,
            max_lines: max_body_bytes / BODY_BYTES_PER_LINE,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn stats(&self) -> &ContainerStats {
        &self.stats
    }

    /// The latest successful body, indexed if [`Self::prepare_for_merge`]
    /// was called since it arrived.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// A scrape finished. On success its body is taken by swapping buffers
    /// (the scrape gets the previous body's allocation back, cleared).
    /// Returns the transition it caused, if any.
    pub fn record(&mut self, now: Instant, finished: Finished<'_>) -> Option<Transition> {
        self.stats.scrapes_total += 1;
        self.stats.last_scrape_duration = finished.duration;
        match finished.outcome {
            Outcome::Success => {
                self.stats.last_body_bytes = finished.body.len() as u64;
                self.snapshot.replace(finished.body);
                // The index of the previous body is not needed until a
                // client asks, which may be a minute away: give its memory
                // back (about as much again as the body) rather than hold it.
                self.snapshot.shrink();
                if self.health != Health::Up {
                    return self.index_snapshot(now);
                }
                None
            }
            Outcome::Failure(reason) => {
                self.stats.failures_total[reason.index()] += 1;
                self.snapshot.clear();
                self.snapshot.shrink();
                self.set_health(now, Health::Down(reason), finished.detail)
            }
        }
    }

    /// Indexes the latest body if the container is up and it is not indexed
    /// yet. A body that does not parse makes the container down in this very
    /// merge. Returns the transition it caused, if any.
    pub fn prepare_for_merge(&mut self, now: Instant) -> Option<Transition> {
        if self.health == Health::Up {
            self.index_snapshot(now)
        } else {
            None
        }
    }

    /// The latest body cannot be held (the pod's memory budget): it is
    /// dropped, the failure counted, and the container is down for `reason`
    /// until a body fits.
    pub fn refuse(
        &mut self,
        now: Instant,
        reason: FailureReason,
        detail: &str,
    ) -> Option<Transition> {
        self.stats.failures_total[reason.index()] += 1;
        self.stats.last_samples = 0;
        self.snapshot.clear();
        self.snapshot.shrink();
        self.set_health(now, Health::Down(reason), detail)
    }

    /// Frees the index of the latest body (rebuilt by the next merge).
    pub fn release_index(&mut self) {
        self.snapshot.release_index();
    }

    /// The container lost `lost` type conflicts in the merge being built,
    /// of which `counted` were counted already (a guess: see `output`).
    pub fn count_conflicts(&mut self, counted: u64, lost: u64) {
        let total = &mut self.stats.family_conflicts_total;
        *total = total.saturating_sub(counted) + lost;
    }

    /// Indexes the latest body; a body that does not parse makes the
    /// container down with reason `parse_error`, and nothing of it is
    /// served. A body of more lines than `max_lines` is not even parsed.
    fn index_snapshot(&mut self, now: Instant) -> Option<Transition> {
        if !self.snapshot.is_indexed() && self.snapshot.line_count() > self.max_lines {
            self.stats.failures_total[FailureReason::TooManyLines.index()] += 1;
            self.stats.last_samples = 0;
            self.snapshot.clear();
            let detail = format!(
                "more than {} lines (--max_body_bytes / {BODY_BYTES_PER_LINE}) in the body",
                self.max_lines
            );
            return self.set_health(now, Health::Down(FailureReason::TooManyLines), &detail);
        }
        match self.snapshot.index() {
            Ok(()) => {
                self.stats.last_samples = self.snapshot.sample_count() as u64;
                self.set_health(now, Health::Up, "")
            }
            Err(parse_error) => {
                self.snapshot.shrink();
                self.stats.failures_total[FailureReason::ParseError.index()] += 1;
                self.stats.last_samples = 0;
                let detail = format!("{parse_error} in the body");
                self.set_health(now, Health::Down(FailureReason::ParseError), &detail)
            }
        }
    }

    /// The one place health changes; transitions are logged here and nowhere
    /// else, so a container down for an hour logs once.
    fn set_health(&mut self, _now: Instant, health: Health, detail: &str) -> Option<Transition> {
        let transition = match (self.health, health) {
            (Health::Up, Health::Up) => None,
            (_, Health::Up) => Some(Transition::Up),
            (Health::Up | Health::Unknown, Health::Down(reason)) => Some(Transition::Down(reason)),
            (Health::Down(before), Health::Down(reason)) if before != reason => {
                Some(Transition::StillDown(reason))
            }
            _ => None,
        };
        self.health = health;
        self.stats.up = health == Health::Up;
        match transition {
            Some(Transition::Up) => info!("container {} is up", self.name),
            Some(Transition::Down(reason)) => {
                warn!("container {} is down ({reason}): {detail}", self.name)
            }
            Some(Transition::StillDown(reason)) => {
                debug!("container {} still down, now {reason}: {detail}", self.name)
            }
            None => {}
        }
        transition
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A scrape as a table cell: a body, or a failure.
    #[derive(Clone, Copy)]
    enum Scrape {
        Body(&'static str),
        Fail(FailureReason),
    }
    use FailureReason::{ParseError, Refused, Timeout, TooManyLines};
    use Scrape::{Body, Fail};

    const GOOD: Scrape = Body("a 1\nb 2\n");
    const GARBAGE: Scrape = Body("a {{{\n");

    fn record(state: &mut ContainerState, now: Instant, scrape: Scrape) -> Option<Transition> {
        let mut body = Vec::new();
        let (outcome, detail) = match scrape {
            Body(text) => {
                body.extend_from_slice(text.as_bytes());
                (Outcome::Success, "")
            }
            Fail(reason) => (Outcome::Failure(reason), "made up"),
        };
        state.record(
            now,
            Finished {
                outcome,
                duration: Duration::from_millis(3),
                detail,
                body: &mut body,
            },
        )
    }

    /// Each row: the scrapes in order (a merge after each), and the
    /// transitions they cause, one per scrape.
    #[test]
    fn every_transition_once() {
        let up = Some(Transition::Up);
        let down = |reason| Some(Transition::Down(reason));
        let still = |reason| Some(Transition::StillDown(reason));
        let cases: &[(&[Scrape], &[Option<Transition>])] = &[
            (&[GOOD, GOOD, GOOD], &[up, None, None]),
            (&[Fail(Refused), Fail(Refused)], &[down(Refused), None]),
            (
                &[Fail(Refused), Fail(Timeout), Fail(Timeout), GOOD],
                &[down(Refused), still(Timeout), None, up],
            ),
            (
                &[GOOD, Fail(Timeout), Fail(Timeout), GOOD, GOOD],
                &[up, down(Timeout), None, up, None],
            ),
            // Garbage while unknown or down is found at once.
            (&[GARBAGE, GARBAGE, GOOD], &[down(ParseError), None, up]),
            // Garbage while up is found when a merge needs it.
            (&[GOOD, GARBAGE, GOOD], &[up, down(ParseError), up]),
        ];
        let t0 = Instant::now();
        for (scrapes, expected) in cases {
            let mut state = ContainerState::new("app", 4 << 20);
            let mut got = Vec::new();
            for (n, scrape) in scrapes.iter().enumerate() {
                let now = t0 + Duration::from_millis(200 * n as u64);
                let mut transition = record(&mut state, now, *scrape);
                if transition.is_none() {
                    transition = state.prepare_for_merge(now);
                }
                got.push(transition);
            }
            assert_eq!(got, *expected);
            assert_eq!(state.stats().scrapes_total, scrapes.len() as u64);
        }
    }

    #[test]
    fn stats_follow_the_latest_scrape() {
        let t0 = Instant::now();
        let mut state = ContainerState::new("app", 4 << 20);
        record(&mut state, t0, GOOD);
        state.prepare_for_merge(t0);
        let stats = state.stats();
        assert!(stats.up);
        assert_eq!((stats.last_body_bytes, stats.last_samples), (8, 2));
        assert_eq!(stats.last_scrape_duration, Duration::from_millis(3));
        assert_eq!(state.snapshot().sample_count(), 2);

        record(&mut state, t0, Fail(Timeout));
        let stats = state.stats();
        assert!(!stats.up);
        assert_eq!(stats.failures_total[Timeout.index()], 1);
        assert_eq!(state.health, Health::Down(Timeout));
        assert_eq!(
            state.snapshot().body_len(),
            0,
            "nothing of a failure is served"
        );
    }

    #[test]
    fn too_many_lines_are_refused_unparsed() {
        let t0 = Instant::now();
        // 1 KiB allows 16 lines.
        let mut state = ContainerState::new("app", 1024);
        let body = "a 1\n".repeat(17).leak();
        assert_eq!(
            record(&mut state, t0, Body(body)),
            Some(Transition::Down(TooManyLines))
        );
        assert_eq!(state.stats().failures_total[TooManyLines.index()], 1);
        let body = "a 1\n".repeat(16).leak();
        assert_eq!(record(&mut state, t0, Body(body)), Some(Transition::Up));
    }

    #[test]
    fn a_guessed_conflict_count_is_corrected() {
        let mut state = ContainerState::new("app", 4 << 20);
        state.count_conflicts(0, 2); // build 1: 2 lost
        state.count_conflicts(0, 2); // build 2, guessed like build 1
        state.count_conflicts(2, 1); // ... but it lost only 1
        assert_eq!(state.stats().family_conflicts_total, 3);
    }
}
