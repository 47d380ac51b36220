//! On-demand rounds (`--scrape_interval=0`): one scrape of every container,
//! and the requests it answers.
//!
//! A request for the endpoint either starts a round or joins the one in
//! flight; all are answered when the round ends: every scrape finished (the
//! loop sees it and calls [`Rounds::end`]) or the round's deadline passed. A
//! request arriving within [`ROUND_REUSE_WINDOW`] after a round ended gets
//! that round's result at once: two Prometheus replicas scraping together
//! cost the containers one scrape.
//!
//! The deadline is `--scrape_timeout`, shortened to Prometheus'
//! `X-Prometheus-Scrape-Timeout-Seconds` less a margin, so that the answer
//! reaches Prometheus before it gives up.
//!
//! No socket, no clock: handed `now` and requests (any waiter type `W`),
//! it returns what to do. The loop arms the deadline's timer and starts the
//! scrapes.

use std::time::{Duration, Instant};

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
        let deadline = self.deadline_for(now, prometheus_timeout);
        match &mut self.round {
            Some(round) => {
                round.waiters.push(waiter);
                // A shorter Prometheus timeout shortens the whole round:
                // everyone is answered by the earliest deadline.
                if deadline < round.deadline {
                    round.deadline = deadline;
                    return Ask::Joined {
                        new_deadline: Some(deadline),
                    };
                }
                Ask::Joined { new_deadline: None }
            }
            None => {
                let fresh = self
                    .last_end
                    .is_some_and(|end| now.saturating_duration_since(end) < ROUND_REUSE_WINDOW);
                if fresh {
                    return Ask::AnswerNow;
                }
                self.round = Some(Round {
                    deadline,
                    waiters: vec![waiter],
                });
                Ask::Start { deadline }
            }
        }
    }

    /// When a round asked for at `now` must end.
    fn deadline_for(&self, now: Instant, prometheus_timeout: Option<Duration>) -> Instant {
        let mut deadline = now + self.scrape_timeout;
        if let Some(timeout) = prometheus_timeout {
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
        End(u64, &'static [u32]),
    }
    use Step::{End, Request};

    fn play(steps: &[Step]) {
        let t0 = Instant::now();
        let offset = |at: Instant| at.duration_since(t0).as_millis() as u64;
        let mut rounds = Rounds::new(Duration::from_millis(TIMEOUT_MS));
        for (number, step) in steps.iter().enumerate() {
            match step {
                Request(at, id, timeout, want) => {
                    let got = rounds.ask(
                        t0 + Duration::from_millis(*at),
                        *id,
                        timeout.map(Duration::from_millis),
                    );
                    let got = match got {
                        Ask::AnswerNow => Want::Now,
                        Ask::Start { deadline } => Want::Start(offset(deadline)),
                        Ask::Joined { new_deadline } => Want::Joined(new_deadline.map(offset)),
                    };
                    assert_eq!(got, *want, "step {number}");
                    assert!(rounds.in_progress() || got == Want::Now, "step {number}");
                }
                End(at, answered) => {
                    let got = rounds.end(t0 + Duration::from_millis(*at));
                    assert_eq!(got, *answered, "step {number}");
                    assert!(!rounds.in_progress(), "step {number}");
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
    fn a_shorter_timeout_shortens_the_round_for_everyone() {
        play(&[
            Request(0, 1, None, Want::Start(TIMEOUT_MS)),
            Request(10, 2, Some(1000), Want::Joined(Some(10 + 900))),
            Request(20, 3, Some(3000), Want::Joined(None)),
            End(910, &[1, 2, 3]),
        ]);
    }
}
