//! On-demand rounds, the loop's side of them: the round's timer, the round
//! ended when no scrape is in flight or at its deadline (what has not
//! answered then is down, timeout), and every request that waited answered.
//! What a round is (join, end, deadline, reuse window) is `rounds`.

use std::time::Instant;

use crate::client_table::ClientId;
use crate::downstream::{Request, Status};

use super::scraping::take_scrape;
use super::serving::WRITE_TIMEOUT;
use super::{Sidecar, TimerKey};

/// A request parked on an on-demand round.
pub(super) struct Waiter {
    pub(super) client: ClientId,
    pub(super) request: Request,
}

impl Sidecar {
    pub(super) fn arm_round_timer(&mut self, deadline: Instant) {
        if let Some(timer) = self.round_timer.take() {
            self.timers.cancel(timer);
        }
        self.round_timer = Some(self.timers.insert(deadline, TimerKey::RoundDeadline));
    }

    pub(super) fn end_round_if_done(&mut self, now: Instant) {
        let in_flight = self
            .scrapers
            .iter()
            .any(|scraper| scraper.upstream.in_flight());
        if self.rounds.in_progress() && !in_flight {
            self.end_round(now);
        }
    }

    /// The round's deadline passed: what has not answered contributes
    /// nothing and is down (timeout) in this response.
    pub(super) fn on_round_deadline(&mut self, now: Instant) {
        self.round_timer = None;
        for index in 0..self.scrapers.len() {
            let scraper = &mut self.scrapers[index];
            if let Some(finished) = scraper.upstream.on_timeout(self.poll.registry(), now) {
                take_scrape(
                    &mut self.budget,
                    &mut self.containers[index],
                    index,
                    now,
                    finished,
                );
                self.scrape_ended(index, now);
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
            let (body, coding) = self.metrics_body(now, request.format, request.accepts_gzip);
            if body.own_bytes() > 0 {
                self.make_room_for_an_inflate_window(waiter.client);
            }
            let content_type = request.format.content_type();
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
