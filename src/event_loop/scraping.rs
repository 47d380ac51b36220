//! Scrapes, the loop's side of them: the cadence of ticks (never a doubled
//! scrape), each scrape's deadline, its receive buffer asked of the budget
//! (a scrape paused for room resumed when another ends), and a finished
//! scrape handed to its container unless its body would take the bodies
//! held past the budget. The socket calls are `Upstream`'s.

use std::time::Instant;

use crate::config::ScrapeMode;
use crate::scrape::budget::{Budget, Growth};
use crate::scrape::container::ContainerState;
use crate::scrape::upstream::Allowance;
use crate::scrape::{FailureReason, Finished, Outcome};
use crate::timer;

use super::{Sidecar, TimerKey};

impl Sidecar {
    pub(super) fn on_scrape_tick(&mut self, index: usize, now: Instant) {
        let ScrapeMode::Every(interval) = self.config.scrape_mode else {
            return;
        };
        let scraper = &mut self.scrapers[index];
        // Fixed cadence from the previous tick; ticks missed while the loop
        // was busy are skipped, never burst.
        scraper.last_tick = timer::next_tick(scraper.last_tick, interval, now);
        self.timers
            .insert(scraper.last_tick, TimerKey::ScrapeTick(index));
        if scraper.upstream.in_flight() {
            // Never double a scrape: the one in flight is bounded by its
            // own deadline.
            return;
        }
        self.start_scrape(index, now);
    }

    pub(super) fn start_scrape(&mut self, index: usize, now: Instant) {
        let scraper = &mut self.scrapers[index];
        // Protobuf, OpenMetrics only while a client wants them: a
        // text-only Prometheus costs nothing extra.
        let asked = self.demand.asked(now);
        scraper.upstream.set_accept(asked.accept());
        scraper.catch_up.started(asked);
        let buffer = self.budget.start(index, scraper.upstream.expected_buffer());
        scraper.upstream.set_buffer(buffer);
        match scraper.upstream.start(self.poll.registry(), now) {
            Some(finished) => {
                take_scrape(
                    &mut self.budget,
                    &mut self.containers[index],
                    index,
                    now,
                    finished,
                );
                self.scrape_ended(index, now);
            }
            None => {
                // On demand, the round's deadline bounds every scrape of it.
                if let ScrapeMode::Every(_) = self.config.scrape_mode {
                    let deadline = now + self.config.scrape_timeout;
                    scraper.deadline = Some(
                        self.timers
                            .insert(deadline, TimerKey::ScrapeDeadline(index)),
                    );
                }
            }
        }
    }

    pub(super) fn on_upstream_ready(&mut self, index: usize, now: Instant) {
        let Some(scraper) = self.scrapers.get_mut(index) else {
            return;
        };
        let mut grant = Grant {
            budget: &mut self.budget,
            index,
        };
        let finished = scraper
            .upstream
            .on_ready(self.poll.registry(), now, &mut grant);
        if let Some(finished) = finished {
            take_scrape(
                &mut self.budget,
                &mut self.containers[index],
                index,
                now,
                finished,
            );
            self.scrape_ended(index, now);
            self.advance_round(now);
        }
    }

    /// A scrape ended, so room may have been freed: scrapes paused for lack
    /// of it read again (each at most once per call; one that pauses again
    /// waits for the next end).
    fn resume_paused_scrapes(&mut self, now: Instant) {
        for index in self.budget.take_resumable() {
            let scraper = &mut self.scrapers[index];
            let mut grant = Grant {
                budget: &mut self.budget,
                index,
            };
            let finished = scraper
                .upstream
                .resume(self.poll.registry(), now, &mut grant);
            if let Some(finished) = finished {
                take_scrape(
                    &mut self.budget,
                    &mut self.containers[index],
                    index,
                    now,
                    finished,
                );
                // Not `scrape_ended`: no recursion; resumed scrapes that
                // end free room for the next call.
                self.end_scrape_bookkeeping(index);
            }
        }
    }

    pub(super) fn on_scrape_deadline(&mut self, index: usize, now: Instant) {
        let scraper = &mut self.scrapers[index];
        scraper.deadline = None;
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

    /// After a scrape's record was taken: see `end_scrape_bookkeeping`;
    /// then scrapes paused for room try again.
    pub(super) fn scrape_ended(&mut self, index: usize, now: Instant) {
        self.end_scrape_bookkeeping(index);
        self.resume_paused_scrapes(now);
    }

    /// Its deadline goes, its buffer (shrunk after an outsized body) goes
    /// to the pool of idle buffers if the receive budget has room (else it
    /// is freed), the format of what it left is noted for catch-ups, and the
    /// output served is out of date.
    fn end_scrape_bookkeeping(&mut self, index: usize) {
        let held = self.held_format(index);
        let utf8_names = self.containers[index].holds_utf8_names();
        let scraper = &mut self.scrapers[index];
        scraper.catch_up.ended(held, utf8_names);
        if let Some(timer) = scraper.deadline.take() {
            self.timers.cancel(timer);
        }
        scraper.upstream.shrink();
        self.budget.end(index, scraper.upstream.take_buffer());
        self.output.invalidate();
    }
}

/// The budget's answer to one scrape's growing buffer.
struct Grant<'a> {
    budget: &'a mut Budget,
    index: usize,
}

impl Allowance for Grant<'_> {
    fn grow(&mut self, capacity: usize) -> Growth {
        self.budget.grow(self.index, capacity)
    }
}

/// Hands a finished scrape to its container, unless its body would take
/// the bodies held past the budget: then the scrape counts as failed
/// (`over_budget`) and the body is dropped. Its own previous body does not
/// count against it (it would be replaced).
pub(super) fn take_scrape(
    budget: &mut Budget,
    container: &mut ContainerState,
    index: usize,
    now: Instant,
    finished: Finished<'_>,
) {
    let fits = finished.outcome != Outcome::Success || budget.fits_held(index, finished.body.len());
    if fits {
        container.record(now, finished);
    } else {
        let detail = format!(
            "its body ({} KiB) would take the bodies held past {} KiB",
            finished.body.len() >> 10,
            budget.held_limit() >> 10
        );
        // The refused body's bytes stay as the next scrape's room.
        container.record(
            now,
            Finished {
                outcome: Outcome::Failure(FailureReason::OverBudget),
                duration: finished.duration,
                detail: &detail,
                body: finished.body,
                content_type: None,
                answered_on: None,
            },
        );
    }
    budget.set_held(index, container.snapshot().body_len());
}
