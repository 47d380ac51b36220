//! Rounds: requests held while containers are scraped, and answered
//! together. On demand (`--scrape_interval=0`) a round is one scrape of
//! every container; in either mode a protobuf request may also be held while
//! the containers it would otherwise get text from are scraped for protobuf
//! (a catch-up, see `catch_up`). Which scrapes a round waits for is the
//! loop's business; this type keeps the requests and the deadline.
//!
//! A request for the endpoint either starts a round or joins the one in
//! flight; all are answered when the round ends: every scrape it waits for
//! finished (the loop sees it and calls [`Rounds::end`]) or the round's
//! deadline passed. A request arriving within [`ROUND_REUSE_WINDOW`] after a
//! round ended gets that round's result at once: two Prometheus replicas
//! scraping together cost the containers one scrape ([`Rounds::hold`] skips
//! this for a request that result does not do for).
//!
//! Each request brings a deadline: `--scrape_timeout`, shortened to
//! Prometheus' `X-Prometheus-Scrape-Timeout-Seconds` less a margin, so that
//! the answer reaches Prometheus before it gives up. The header is taken at
//! [`MIN_PROMETHEUS_TIMEOUT`] at least: `1e-9` would otherwise time out
//! every container at once. The round ends at the latest deadline of the
//! requests waiting for it, so one client's short timeout never cuts a
//! round that others joined with a longer one (that client is answered
//! after its own timeout, its loss alone), and never later than
//! `--scrape_timeout` after it started, so requests that keep joining
//! cannot hold a round open.
//!
//! No socket, no clock: handed `now` and requests (any waiter type `W`),
//! it returns what to do. The loop arms the deadline's timer and starts the
//! scrapes.

use std::time::{Duration, Instant};

/// The shortest Prometheus timeout taken as it is; a shorter header counts
/// as this. Prometheus' own default is 10 s, and a scrape answered after a
/// Prometheus gave up harms nobody else, while a round cut at once makes
/// every container down and counts a false timeout.
pub const MIN_PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(1);
/// A request this soon after a round ended is answered with that round's
/// result instead of starting another.
pub const ROUND_REUSE_WINDOW: Duration = Duration::from_millis(500);
/// The answer must reach Prometheus before its own timeout: the round ends
/// this much earlier at most (a tenth of the timeout below 5 s), for merging
/// and writing.
pub const MAX_ROUND_MARGIN: Duration = Duration::from_millis(500);

/// What to do with a request for the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// The last round is fresh: answer now with the current data (the
    /// request was not kept).
    AnswerNow,
    /// A new round: scrape every container that is not already being
    /// scraped, and end the round at `deadline` at the latest.
    Start { deadline: Instant },
    /// The request waits for the round in flight. `Some` when the round's
    /// deadline moved: re-arm its timer.
    Joined { new_deadline: Option<Instant> },
}

struct Round<W> {
    /// No request extends the round past this: its start plus
    /// `--scrape_timeout`.
    latest: Instant,
    deadline: Instant,
    waiters: Vec<W>,
}

pub struct Rounds<W> {
    scrape_timeout: Duration,
    round: Option<Round<W>>,
    last_end: Option<Instant>,
}

impl<W> Rounds<W> {
    pub fn new(scrape_timeout: Duration) -> Rounds<W> {
        Rounds {
            scrape_timeout,
            round: None,
            last_end: None,
        }
    }

    pub fn in_progress(&self) -> bool {
        self.round.is_some()
    }

    /// A request for the endpoint, with Prometheus' timeout if it sent one.
    pub fn ask(&mut self, now: Instant, waiter: W, prometheus_timeout: Option<Duration>) -> Ask {
        let fresh = self
            .last_end
            .is_some_and(|end| now.saturating_duration_since(end) < ROUND_REUSE_WINDOW);
        if self.round.is_none() && fresh {
            return Ask::AnswerNow;
        }
        self.hold(now, waiter, prometheus_timeout)
    }

    /// `ask` without the reuse window: the request starts a round or joins
    /// the one in flight, never [`Ask::AnswerNow`]. For a request the last
    /// round's result does not do for (a protobuf client after a round that
    /// fetched text: see `catch_up`).
    pub fn hold(&mut self, now: Instant, waiter: W, prometheus_timeout: Option<Duration>) -> Ask {
        let deadline = self.deadline_for(now, prometheus_timeout);
        match &mut self.round {
            Some(round) => {
                round.waiters.push(waiter);
                // A longer timeout lengthens the round (up to its latest);
                // a shorter one never shortens it.
                let deadline = deadline.min(round.latest);
                if deadline > round.deadline {
                    round.deadline = deadline;
                    return Ask::Joined {
                        new_deadline: Some(deadline),
                    };
                }
                Ask::Joined { new_deadline: None }
            }
            None => {
                self.round = Some(Round {
                    latest: now + self.scrape_timeout,
                    deadline,
                    waiters: vec![waiter],
                });
                Ask::Start { deadline }
            }
        }
    }

    /// The requests waiting for the round in flight (none without one).
    pub fn waiters(&self) -> &[W] {
        self.round.as_ref().map_or(&[], |round| &round.waiters)
    }

    /// When a round asked for at `now` must end.
    fn deadline_for(&self, now: Instant, prometheus_timeout: Option<Duration>) -> Instant {
        let mut deadline = now + self.scrape_timeout;
        if let Some(timeout) = prometheus_timeout {
            let timeout = timeout.max(MIN_PROMETHEUS_TIMEOUT);
            let margin = (timeout / 10).min(MAX_ROUND_MARGIN);
            deadline = deadline.min(now + (timeout - margin));
        }
        deadline
    }

    /// Ends the round in flight (every scrape finished, or its deadline
    /// passed): the requests to answer now, in arrival order. Nothing when
    /// no round is in flight.
    pub fn end(&mut self, now: Instant) -> Vec<W> {
        let Some(round) = self.round.take() else {
            return Vec::new();
        };
        self.last_end = Some(now);
        round.waiters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--scrape_timeout` in these tables.
    const TIMEOUT_MS: u64 = 5000;

    /// What a request must get, deadlines in ms after the table's start.
    #[derive(Debug, PartialEq)]
    enum Want {
        Now,
        Start(u64),
        Joined(Option<u64>),
    }

    /// At `at` ms: a request (id, Prometheus timeout in ms) and what it
    /// gets, or the end of the round and who is answered.
    enum Step {
        Request(u64, u32, Option<u64>, Want),
        /// A request the last round's result does not do for.
        Hold(u64, u32, Option<u64>, Want),
        End(u64, &'static [u32]),
    }
    use Step::{End, Hold, Request};

    fn play(steps: &[Step]) {
        let t0 = Instant::now();
        let offset = |at: Instant| at.duration_since(t0).as_millis() as u64;
        let mut rounds = Rounds::new(Duration::from_millis(TIMEOUT_MS));
        for (number, step) in steps.iter().enumerate() {
            match step {
                Request(at, id, timeout, want) | Hold(at, id, timeout, want) => {
                    let at = t0 + Duration::from_millis(*at);
                    let timeout = timeout.map(Duration::from_millis);
                    let got = match step {
                        Hold(..) => rounds.hold(at, *id, timeout),
                        _ => rounds.ask(at, *id, timeout),
                    };
                    let got = match got {
                        Ask::AnswerNow => Want::Now,
                        Ask::Start { deadline } => Want::Start(offset(deadline)),
                        Ask::Joined { new_deadline } => Want::Joined(new_deadline.map(offset)),
                    };
                    assert_eq!(got, *want, "step {number}");
                    assert!(rounds.in_progress() || got == Want::Now, "step {number}");
                    assert_eq!(
                        rounds.waiters().last() == Some(id),
                        got != Want::Now,
                        "step {number}"
                    );
                }
                End(at, answered) => {
                    let got = rounds.end(t0 + Duration::from_millis(*at));
                    assert_eq!(got, *answered, "step {number}");
                    assert!(!rounds.in_progress(), "step {number}");
                    assert!(rounds.waiters().is_empty(), "step {number}");
                }
            }
        }
    }

    #[test]
    fn requests_join_the_round_in_flight_and_are_answered_together() {
        play(&[
            Request(0, 1, None, Want::Start(TIMEOUT_MS)),
            Request(10, 2, None, Want::Joined(None)),
            Request(20, 3, None, Want::Joined(None)),
            // Every scrape done at 30 ms: the round ends early.
            End(30, &[1, 2, 3]),
        ]);
    }

    #[test]
    fn a_round_ends_at_its_deadline() {
        play(&[
            Request(0, 1, None, Want::Start(TIMEOUT_MS)),
            End(TIMEOUT_MS, &[1]),
            // Ending again (a late scrape) answers nobody.
            End(TIMEOUT_MS + 1, &[]),
        ]);
    }

    #[test]
    fn the_result_is_reused_within_the_window_only() {
        play(&[
            Request(0, 1, None, Want::Start(TIMEOUT_MS)),
            End(100, &[1]),
            Request(100, 2, None, Want::Now),
            Request(599, 3, None, Want::Now),
            Request(600, 4, None, Want::Start(600 + TIMEOUT_MS)),
            // A round in flight is joined, never reused.
            Request(601, 5, None, Want::Joined(None)),
            End(700, &[4, 5]),
        ]);
    }

    #[test]
    fn prometheus_timeout_sets_the_deadline_less_a_margin() {
        play(&[
            // 10 s is longer than --scrape_timeout: no change.
            Request(0, 1, Some(10_000), Want::Start(TIMEOUT_MS)),
            End(1, &[1]),
            // 2 s less a tenth.
            Request(1000, 2, Some(2000), Want::Start(1000 + 1800)),
            End(1001, &[2]),
            // 4.9 s less a tenth (the margin is at most 0.5 s).
            Request(2000, 3, Some(4900), Want::Start(2000 + 4410)),
            End(2001, &[3]),
        ]);
    }

    #[test]
    fn a_short_timeout_is_taken_at_the_floor() {
        play(&[
            // 0, 1 ms and 0.5 s count as 1 s, less a tenth.
            Request(0, 1, Some(0), Want::Start(900)),
            End(900, &[1]),
            Request(2000, 2, Some(1), Want::Start(2000 + 900)),
            End(2900, &[2]),
            Request(4000, 3, Some(500), Want::Start(4000 + 900)),
            End(4900, &[3]),
        ]);
    }

    #[test]
    fn a_joiner_never_shortens_the_round() {
        play(&[
            Request(0, 1, None, Want::Start(TIMEOUT_MS)),
            Request(10, 2, Some(1000), Want::Joined(None)),
            Request(20, 3, Some(0), Want::Joined(None)),
            End(TIMEOUT_MS, &[1, 2, 3]),
        ]);
    }

    #[test]
    fn a_joiner_lengthens_the_round_up_to_scrape_timeout_after_its_start() {
        play(&[
            Request(0, 1, Some(1000), Want::Start(900)),
            // 3 s less a tenth from 100 ms.
            Request(100, 2, Some(3000), Want::Joined(Some(100 + 2700))),
            Request(200, 3, Some(2000), Want::Joined(None)),
            // Would end at 4.5 + 5 s, held to the round's start + 5 s.
            Request(4500, 4, None, Want::Joined(Some(TIMEOUT_MS))),
            Request(4900, 5, None, Want::Joined(None)),
            End(TIMEOUT_MS, &[1, 2, 3, 4, 5]),
        ]);
    }

    /// A protobuf request right after a round that fetched text: held,
    /// never answered from that round, and the window still applies to the
    /// round it starts.
    #[test]
    fn a_hold_starts_or_joins_a_round_even_within_the_window() {
        play(&[
            Request(0, 1, None, Want::Start(TIMEOUT_MS)),
            End(100, &[1]),
            Hold(150, 2, Some(1000), Want::Start(150 + 900)),
            Request(160, 3, None, Want::Joined(Some(TIMEOUT_MS + 150))),
            Hold(170, 4, None, Want::Joined(None)),
            End(300, &[2, 3, 4]),
            Request(400, 5, None, Want::Now),
            Hold(400, 6, None, Want::Start(400 + TIMEOUT_MS)),
            End(450, &[6]),
        ]);
    }
}
