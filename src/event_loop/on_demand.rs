//! Rounds, the loop's side of them: which requests wait for one, which
//! scrapes a round starts and waits for, the round's timer, and every
//! request that waited answered when it ends. What a round is (join, end,
//! deadline, reuse window) is `rounds`; which containers a protobuf client
//! waits for is `catch_up`.
//!
//! - On demand, every request for the endpoint starts or joins a round: a
//!   scrape of every container. It ends when no scrape is in flight, or at
//!   its deadline (what has not answered then is down, timeout).
//! - In either mode, a protobuf request that the bodies held would answer
//!   with text from a container that may speak protobuf (its scrapes asked
//!   for text while no client wanted protobuf) waits while that container is
//!   scraped for protobuf: a *catch-up*, so that the first protobuf answer
//!   after a text-only spell already carries the native histograms. On
//!   demand that is a round started or joined by a text request, or a
//!   request within the reuse window after one. In interval mode the round
//!   waits for those scrapes only and its deadline cuts none of them (each
//!   has its own, and the cadence goes on); a request answered at the
//!   deadline gets what is held, text converted up, as without the wait.

use std::time::Instant;

use log::debug;

use crate::config::ScrapeMode;
use crate::exposition::negotiate::Richness;
use crate::exposition::Format;
use crate::scrape::rounds::Ask;
use crate::serve::client_table::ClientId;
use crate::serve::downstream::{Request, Status};

use super::{Sidecar, TimerKey, WRITE_TIMEOUT};

/// A request parked on a round.
#[derive(Clone, Copy)]
pub(super) struct Waiter {
    pub(super) client: ClientId,
    pub(super) request: Request,
}

impl Sidecar {
    /// Whether a request for the endpoint waits for a round; if it does, it
    /// is parked, and answered when the round ends.
    pub(super) fn wait_for_round(&mut self, id: ClientId, request: Request, now: Instant) -> bool {
        let waiter = Waiter {
            client: id,
            request,
        };
        let timeout = request.scrape_timeout;
        // Only a request that needs more than text looks: a text-only
        // Prometheus costs nothing extra.
        let need = Richness::of(request.negotiated);
        let catch_up =
            need != Richness::TEXT && (0..self.scrapers.len()).any(|index| self.lacks(index, need));
        let (ask, scrape_every_container) = match self.config.scrape_mode {
            ScrapeMode::OnDemand => match self.rounds.ask(now, waiter, timeout) {
                // The round just ended fetched text from some container.
                Ask::AnswerNow if catch_up => (self.rounds.hold(now, waiter, timeout), false),
                ask => (ask, true),
            },
            // The reuse window spares a catch-up that ended at its deadline
            // from being waited for again at once.
            ScrapeMode::Every(_) if catch_up => (self.rounds.ask(now, waiter, timeout), false),
            ScrapeMode::Every(_) => return false,
        };
        match ask {
            Ask::AnswerNow => false,
            Ask::Start { deadline } => {
                self.park(id);
                self.arm_round_timer(deadline);
                if scrape_every_container {
                    for index in 0..self.scrapers.len() {
                        if !self.scrapers[index].upstream.in_flight() {
                            self.start_scrape(index, now);
                        }
                    }
                } else {
                    debug!("a request that needs {need:?} waits for scrapes of containers that were asked for less");
                }
                self.advance_round(now);
                true
            }
            Ask::Joined { new_deadline } => {
                self.park(id);
                if let Some(deadline) = new_deadline {
                    self.arm_round_timer(deadline);
                }
                true
            }
        }
    }

    /// The format of the body container `index` holds (`None`: none).
    pub(super) fn held_format(&self, index: usize) -> Option<Format> {
        let snapshot = self.containers[index].snapshot();
        (snapshot.body_len() > 0).then(|| snapshot.format())
    }

    /// Whether a client that needs `need` must wait for a scrape of
    /// container `index` that asks for it.
    fn lacks(&self, index: usize, need: Richness) -> bool {
        self.scrapers[index]
            .catch_up
            .lacks(need, self.held_format(index))
    }

    pub(super) fn arm_round_timer(&mut self, deadline: Instant) {
        if let Some(timer) = self.round_timer.take() {
            self.timers.cancel(timer);
        }
        self.round_timer = Some(self.timers.insert(deadline, TimerKey::RoundDeadline));
    }

    /// Moves the round in flight on, after its start or the end of a
    /// scrape: while a protobuf request waits, each container it would get
    /// text from is scraped for protobuf (one with a scrape in flight is
    /// waited for, and scraped again if that brought text); the round ends
    /// when nothing it waits for is left.
    pub(super) fn advance_round(&mut self, now: Instant) {
        if !self.rounds.in_progress() {
            return;
        }
        let mut waiting = false;
        let need = self
            .rounds
            .waiters()
            .iter()
            .fold(Richness::TEXT, |need, waiter| {
                need.union(Richness::of(waiter.request.negotiated))
            });
        if need != Richness::TEXT {
            // Still wanted: the scrapes started for it ask for it however
            // long the round has lasted.
            self.demand.note(now, need);
            for index in 0..self.scrapers.len() {
                if !self.lacks(index, need) {
                    continue;
                }
                if !self.scrapers[index].upstream.in_flight() {
                    // Asks for protobuf, so its end settles the container:
                    // a protobuf body, a text one (it does not speak
                    // protobuf), or none.
                    self.start_scrape(index, now);
                }
                waiting |= self.lacks(index, need);
            }
        }
        if self.config.scrape_mode == ScrapeMode::OnDemand {
            waiting |= self
                .scrapers
                .iter()
                .any(|scraper| scraper.upstream.in_flight());
        }
        if !waiting {
            self.end_round(now);
        }
    }

    /// The round's deadline passed. On demand, what has not answered
    /// contributes nothing and is down (timeout) in this response; in
    /// interval mode the scrapes go on to their own deadlines, and the
    /// requests get what is held.
    pub(super) fn on_round_deadline(&mut self, now: Instant) {
        self.round_timer = None;
        if self.config.scrape_mode == ScrapeMode::OnDemand {
            // The round's deadline is each of its scrapes' deadline.
            for index in 0..self.scrapers.len() {
                self.on_scrape_deadline(index, now);
            }
        }
        self.end_round(now);
    }

    /// Answers every request that waited for the round.
    fn end_round(&mut self, now: Instant) {
        if let Some(timer) = self.round_timer.take() {
            self.timers.cancel(timer);
        }
        for waiter in self.rounds.end(now) {
            let Some(connection) = self.clients.get_mut(waiter.client) else {
                continue;
            };
            connection.waiting_for_round = false;
            let request = waiter.request;
            let served = request.negotiated;
            let (body, coding) = self.metrics_body(now, served.kind(), request.accepts_gzip);
            self.make_room_for_the_body(waiter.client, &request, &body);
            let content_type = served.content_type();
            self.respond(
                waiter.client,
                request,
                Status::Ok,
                content_type,
                coding,
                body,
            );
            self.set_client_deadline(waiter.client, now + WRITE_TIMEOUT);
            self.serve_client(waiter.client, now);
        }
    }
}
