//! What the sidecar knows of one container: the outcome of its latest
//! *completed* scrape (a successful body in a [`Snapshot`], or nothing after
//! a failure), its health, and the numbers of its own metrics.
//!
//! Every change of health passes through `ContainerState::set_health`,
//! which logs each transition once (up, down, a down container's new
//! reason), never a line per failed scrape. A container that flaps (up and
//! down at every scrape, 20 times a second at `-i 50`) is rate-limited: a
//! burst of [`HEALTH_LOG_BURST`] lines, then one per [`HEALTH_LOG_PERIOD`]
//! (a token bucket, as the kernel's printk_ratelimit). The transitions in
//! between are counted, and as soon as a line may be written again the next
//! scrape logs where the container stands with that count, so the log never
//! ends on a state the container left.
//!
//! A container that has not been up yet and refuses connections is still
//! starting, as every container of a pod does while the sidecar is already
//! running: it is *waiting*, logged at INFO. It warns only when it was up
//! and goes down, when it answers but wrongly (any other failure: it is
//! running, and something is misconfigured), or when it still refuses
//! [`WAITING_GRACE`] after its first refusal (a wrong port looks like a
//! container that has not started, but not for that long).
//!
//! Bodies are parsed lazily: while the container is up, a new body is stored
//! unparsed and indexed only when a merge needs it
//! ([`ContainerState::prepare_for_merge`]), because at 200 ms a body is
//! replaced about 75 times between two Prometheus scrapes. While it is down
//! or not yet seen, each body is indexed as it arrives, so that recovery is
//! logged when it happens and a container that serves garbage stays down.
//!
//! No socket, no clock: handed `now` and [`Finished`] scrapes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use crate::exposition::negotiate::{self, BodyFormat};
use crate::exposition::{Format, Snapshot};
use crate::scrape::{FailureReason, Finished, Outcome};

/// A body may hold at most one line per this many bytes of
/// `--max_body_bytes` (65536 lines at the default 4 MiB; real exporters
/// write 60 to 120 bytes per line). Each sample costs an index record and
/// the container label in the merged body whatever its size, so without
/// this bound 4 MiB of `a 1` lines would take the process past 32 MiB.
pub const BODY_BYTES_PER_LINE: usize = 64;

/// How long a container that was never up may refuse connections before
/// that is a warning: longer than most containers take to start listening
/// (a JVM under a small CPU limit takes tens of seconds), short enough that
/// a wrong port is reported while someone is looking at the new pod.
pub const WAITING_GRACE: Duration = Duration::from_secs(60);

/// Up/down lines one container may log at once: a restart (down, then
/// up) is always logged when it happens.
pub const HEALTH_LOG_BURST: u32 = 4;
/// Past the burst, one up/down line per container per this period.
pub const HEALTH_LOG_PERIOD: Duration = Duration::from_secs(10);

/// What is kept per container for its own metrics (rendered by the serve
/// side's `self_metrics`).
#[derive(Debug, Default, Clone)]
pub struct ContainerStats {
    /// The latest completed scrape succeeded.
    pub up: bool,
    pub last_scrape_duration: Duration,
    pub last_body_bytes: u64,
    pub last_samples: u64,
    pub scrapes_total: u64,
    /// Indexed by [`FailureReason::index`].
    pub failures_total: [u64; FailureReason::ALL.len()],
    pub family_conflicts_total: u64,
}

/// A container as last seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// No scrape completed yet.
    Unknown,
    /// Never up, and refusing connections since this first refusal: not
    /// started yet.
    Waiting {
        since: Instant,
    },
    Up,
    Down(FailureReason),
}

/// A change of health worth a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Up,
    /// Never up, and refusing connections: not started yet (INFO).
    Waiting,
    /// From up, unknown or waiting.
    Down(FailureReason),
    /// Already down, now for another reason (logged at debug level, and
    /// not rate-limited: debug is asked for).
    StillDown(FailureReason),
}

/// A line logged about a container's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Logged {
    /// The state the line reports.
    pub transition: Transition,
    /// Up/down transitions since the previous line that had no line of
    /// their own (the one reported included, when the line is late).
    pub unlogged: u32,
    /// Written after the transition it reports, when the rate limit let it.
    pub late: bool,
}

/// The token bucket of up/down lines, and what it has not let through.
struct HealthLog {
    tokens: u32,
    /// Tokens are counted as refilled up to this instant.
    refilled_at: Option<Instant>,
    unlogged: u32,
}

impl HealthLog {
    fn new() -> HealthLog {
        HealthLog {
            tokens: HEALTH_LOG_BURST,
            refilled_at: None,
            unlogged: 0,
        }
    }

    /// Whether a line may be written at `now` (it then costs a token).
    fn take_token(&mut self, now: Instant) -> bool {
        let refilled_at = *self.refilled_at.get_or_insert(now);
        let periods =
            now.saturating_duration_since(refilled_at).as_nanos() / HEALTH_LOG_PERIOD.as_nanos();
        if periods >= u128::from(HEALTH_LOG_BURST) {
            self.tokens = HEALTH_LOG_BURST;
            self.refilled_at = Some(now);
        } else if periods > 0 {
            let periods = periods as u32;
            self.tokens = (self.tokens + periods).min(HEALTH_LOG_BURST);
            self.refilled_at = Some(refilled_at + HEALTH_LOG_PERIOD * periods);
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

pub struct ContainerState {
    name: String,
    /// The latest successful body; empty after a failure.
    snapshot: Snapshot,
    stats: ContainerStats,
    health: Health,
    log: HealthLog,
    /// See [`BODY_BYTES_PER_LINE`].
    max_lines: usize,
    /// The loopback address of its last successful scrape: named in the up
    /// line when it is `::1`, a change while up logged.
    answered_on: Option<SocketAddr>,
    /// Whether the body held is text whose `Content-Type` allows UTF-8
    /// names (text 1.0.0), for catch-ups.
    utf8_names: bool,
}

impl ContainerState {
    pub fn new(name: &str, max_body_bytes: usize) -> ContainerState {
        ContainerState {
            name: name.to_string(),
            snapshot: Snapshot::new(),
            stats: ContainerStats::default(),
            health: Health::Unknown,
            log: HealthLog::new(),
            max_lines: max_body_bytes / BODY_BYTES_PER_LINE,
            answered_on: None,
            utf8_names: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn stats(&self) -> &ContainerStats {
        &self.stats
    }

    /// Whether the body held is text whose `Content-Type` allows UTF-8
    /// names (see `negotiate::text_allows_utf8_names`).
    pub fn holds_utf8_names(&self) -> bool {
        self.utf8_names
    }

    /// The latest successful body, indexed if [`Self::prepare_for_merge`]
    /// was called since it arrived.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// A scrape finished. On success its body is taken by swapping buffers
    /// (the scrape gets the previous body back, its bytes stale room).
    /// Returns the line it logged, if any.
    pub fn record(&mut self, now: Instant, finished: Finished<'_>) -> Option<Logged> {
        self.stats.scrapes_total += 1;
        self.stats.last_scrape_duration = finished.duration;
        match finished.outcome {
            Outcome::Success => {
                if let Some(address) = finished.answered_on {
                    self.note_address(now, address);
                }
                self.stats.last_body_bytes = finished.body.len() as u64;
                let format = match negotiate::body_format(finished.content_type) {
                    BodyFormat::Text => Format::Text,
                    BodyFormat::OpenMetrics => Format::OpenMetrics,
                    BodyFormat::Protobuf => Format::Protobuf,
                    BodyFormat::Unsupported => {
                        self.stats.failures_total[FailureReason::ParseError.index()] += 1;
                        self.snapshot.clear();
                        self.snapshot.shrink();
                        let detail = "a protobuf encoding other than delimited in the body";
                        return self.set_health(
                            now,
                            Health::Down(FailureReason::ParseError),
                            detail,
                        );
                    }
                };
                self.utf8_names = format == Format::Text
                    && negotiate::text_allows_utf8_names(finished.content_type);
                self.snapshot.swap_in_as(finished.body, format);
                // The index of the previous body is not needed until a
                // client asks, which may be a minute away: give its memory
                // back (about as much again as the body) rather than hold it.
                self.snapshot.shrink();
                if self.health != Health::Up {
                    if let Some(logged) = self.index_snapshot(now) {
                        return Some(logged);
                    }
                }
                self.tell_unlogged(now)
            }
            Outcome::Failure(reason) => {
                self.stats.failures_total[reason.index()] += 1;
                self.utf8_names = false;
                self.snapshot.clear();
                self.snapshot.shrink();
                self.set_health(now, Health::Down(reason), finished.detail)
                    .or_else(|| self.tell_unlogged(now))
            }
        }
    }

    /// Indexes the latest body if the container is up and it is not indexed
    /// yet. A body that does not parse makes the container down in this very
    /// merge. Returns the line it logged, if any.
    pub fn prepare_for_merge(&mut self, now: Instant) -> Option<Logged> {
        if self.health == Health::Up {
            self.index_snapshot(now)
        } else {
            None
        }
    }

    /// The latest body cannot be held (the pod's memory budget): it is
    /// dropped, the failure counted, and the container is down for `reason`
    /// until a body fits.
    pub fn refuse(&mut self, now: Instant, reason: FailureReason, detail: &str) -> Option<Logged> {
        self.stats.failures_total[reason.index()] += 1;
        self.stats.last_samples = 0;
        self.snapshot.clear();
        self.snapshot.shrink();
        self.set_health(now, Health::Down(reason), detail)
    }

    /// Where a successful scrape was answered. The container moved from
    /// one loopback to the other while up (restarted, between two scrapes,
    /// on the other one): one line says so. Rate-limited as up/down lines
    /// are; when it was down in between, the up line names the address.
    fn note_address(&mut self, now: Instant, address: SocketAddr) {
        let before = self.answered_on.replace(address);
        let moved = before.is_some_and(|before| before != address);
        if moved && self.health == Health::Up && self.log.take_token(now) {
            info!("container {} now answers on {address}", self.name);
        }
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
    fn index_snapshot(&mut self, now: Instant) -> Option<Logged> {
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
    /// else, so a container down for an hour logs once, and one that flaps
    /// is rate-limited.
    fn set_health(&mut self, now: Instant, health: Health, detail: &str) -> Option<Logged> {
        use FailureReason::Refused;
        // A refusal of a container never up is waiting, until the grace runs out.
        let health = match (self.health, health) {
            (Health::Unknown, Health::Down(Refused)) => Health::Waiting { since: now },
            (Health::Waiting { since }, Health::Down(Refused))
                if now.saturating_duration_since(since) < WAITING_GRACE =>
            {
                Health::Waiting { since }
            }
            _ => health,
        };
        let transition = match (self.health, health) {
            (Health::Up, Health::Up) => None,
            (_, Health::Up) => Some(Transition::Up),
            (Health::Unknown, Health::Waiting { .. }) => Some(Transition::Waiting),
            (Health::Waiting { .. }, Health::Waiting { .. }) => None,
            (Health::Up | Health::Unknown | Health::Waiting { .. }, Health::Down(reason)) => {
                Some(Transition::Down(reason))
            }
            (Health::Down(before), Health::Down(reason)) if before != reason => {
                Some(Transition::StillDown(reason))
            }
            _ => None,
        };
        let gave_up_waiting;
        let detail = match (self.health, health) {
            (Health::Waiting { .. }, Health::Down(Refused)) => {
                gave_up_waiting = format!(
                    "still refused on 127.0.0.1 and ::1 {} s after the first refusal: \
                     is its port right, and does it listen on loopback (or on all addresses)? \
                     {detail}",
                    WAITING_GRACE.as_secs()
                );
                gave_up_waiting.as_str()
            }
            _ => detail,
        };
        self.health = health;
        self.stats.up = health == Health::Up;
        match transition? {
            still @ Transition::StillDown(_) => Some(self.write(still, 0, false, detail)),
            transition if self.log.take_token(now) => {
                let unlogged = std::mem::take(&mut self.log.unlogged);
                Some(self.write(transition, unlogged, false, detail))
            }
            _ => {
                self.log.unlogged += 1;
                None
            }
        }
    }

    /// Transitions went unlogged and the period has passed: say where the
    /// container stands now, so the log never ends on a state it left.
    fn tell_unlogged(&mut self, now: Instant) -> Option<Logged> {
        let transition = match self.health {
            Health::Up => Transition::Up,
            Health::Waiting { .. } => Transition::Waiting,
            Health::Down(reason) => Transition::Down(reason),
            Health::Unknown => return None,
        };
        if self.log.unlogged == 0 || !self.log.take_token(now) {
            return None;
        }
        let unlogged = std::mem::take(&mut self.log.unlogged);
        Some(self.write(transition, unlogged, true, ""))
    }

    fn write(&self, transition: Transition, unlogged: u32, late: bool, detail: &str) -> Logged {
        let name = &self.name;
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(": {detail}")
        };
        let note = if unlogged > 0 {
            format!(
                " ({unlogged} changes between up and down since the previous line \
                 were not logged: past {HEALTH_LOG_BURST} lines, one per {} s)",
                HEALTH_LOG_PERIOD.as_secs()
            )
        } else {
            String::new()
        };
        match transition {
            Transition::Up => {
                // 127.0.0.1 goes without saying; ::1 is worth knowing.
                let on = match self.answered_on {
                    Some(address) if address.is_ipv6() => format!(" on {address}"),
                    _ => String::new(),
                };
                info!("container {name} is up{on}{note}")
            }
            Transition::Waiting => info!(
                "container {name} is not up yet, waiting ({}){detail}{note}",
                FailureReason::Refused
            ),
            Transition::Down(reason) => warn!("container {name} is down ({reason}){detail}{note}"),
            Transition::StillDown(reason) => {
                debug!("container {name} still down, now {reason}{detail}")
            }
        }
        Logged {
            transition,
            unlogged,
            late,
        }
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

    fn record(state: &mut ContainerState, now: Instant, scrape: Scrape) -> Option<Logged> {
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
                content_type: None,
                answered_on: None,
            },
        )
    }

    /// Each row: the scrapes in order, 200 ms apart (a merge after each),
    /// and the line each one logs.
    #[test]
    fn every_transition_once() {
        let up = Some(Transition::Up);
        let down = |reason| Some(Transition::Down(reason));
        let still = |reason| Some(Transition::StillDown(reason));
        let waiting = Some(Transition::Waiting);
        let cases: &[(&[Scrape], &[Option<Transition>])] = &[
            (&[GOOD, GOOD, GOOD], &[up, None, None]),
            // Not started yet: waiting, then up.
            (&[Fail(Refused), Fail(Refused), GOOD], &[waiting, None, up]),
            // Started but answers wrongly: down at once.
            (
                &[Fail(Refused), Fail(Timeout), Fail(Timeout), GOOD],
                &[waiting, down(Timeout), None, up],
            ),
            (
                &[Fail(Timeout), Fail(Refused)],
                &[down(Timeout), still(Refused)],
            ),
            // Up, then refusing: a restart or a crash, down.
            (
                &[GOOD, Fail(Refused), Fail(Refused), GOOD],
                &[up, down(Refused), None, up],
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
                let mut logged = record(&mut state, now, *scrape);
                if logged.is_none() {
                    logged = state.prepare_for_merge(now);
                }
                if let Some(logged) = logged {
                    assert_eq!((logged.unlogged, logged.late), (0, false));
                }
                got.push(logged.map(|logged| logged.transition));
            }
            assert_eq!(got, *expected);
            assert_eq!(state.stats().scrapes_total, scrapes.len() as u64);
        }
    }

    #[test]
    fn a_container_refusing_past_the_grace_is_down() {
        let t0 = Instant::now();
        let mut state = ContainerState::new("app", 4 << 20);
        let mut at = |seconds: u64, scrape: Scrape| {
            let now = t0 + Duration::from_secs(seconds);
            record(&mut state, now, scrape).map(|logged| logged.transition)
        };
        assert_eq!(at(0, Fail(Refused)), Some(Transition::Waiting));
        assert_eq!(at(59, Fail(Refused)), None);
        assert_eq!(at(60, Fail(Refused)), Some(Transition::Down(Refused)));
        assert_eq!(at(61, Fail(Refused)), None);
        assert_eq!(at(62, GOOD), Some(Transition::Up));
        assert_eq!(state.stats().failures_total[Refused.index()], 4);
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
        let logged = record(&mut state, t0, Body(body)).map(|logged| logged.transition);
        assert_eq!(logged, Some(Transition::Down(TooManyLines)));
        assert_eq!(state.stats().failures_total[TooManyLines.index()], 1);
        let body = "a 1\n".repeat(16).leak();
        let logged = record(&mut state, t0, Body(body)).map(|logged| logged.transition);
        assert_eq!(logged, Some(Transition::Up));
    }

    #[test]
    fn a_guessed_conflict_count_is_corrected() {
        let mut state = ContainerState::new("app", 4 << 20);
        state.count_conflicts(0, 2); // build 1: 2 lost
        state.count_conflicts(0, 2); // build 2, guessed like build 1
        state.count_conflicts(2, 1); // ... but it lost only 1
        assert_eq!(state.stats().family_conflicts_total, 3);
    }

    /// Plays `scrapes` at the given instants (ms); returns each line logged
    /// as (ms, transition, unlogged, late).
    fn play(timeline: &[(u64, Scrape)]) -> Vec<(u64, Transition, u32, bool)> {
        let t0 = Instant::now();
        let mut state = ContainerState::new("app", 4 << 20);
        let mut lines = Vec::new();
        for &(at, scrape) in timeline {
            let now = t0 + Duration::from_millis(at);
            let logged = record(&mut state, now, scrape).or_else(|| state.prepare_for_merge(now));
            if let Some(logged) = logged {
                lines.push((at, logged.transition, logged.unlogged, logged.late));
            }
        }
        lines
    }

    #[test]
    fn a_restart_is_logged_as_it_happens() {
        let lines = play(&[
            (0, GOOD),
            (200, Fail(Refused)),
            (400, Fail(Refused)),
            (600, GOOD),
        ]);
        let expected = vec![
            (0, Transition::Up, 0, false),
            (200, Transition::Down(Refused), 0, false),
            (600, Transition::Up, 0, false),
        ];
        assert_eq!(lines, expected);
    }

    /// Up and down at every scrape of `-i 50` for a minute, then up for
    /// good: the burst, then one line per period, each with the count of
    /// transitions it stands for, and a late line saying the container is
    /// up (its last transition fell between two lines).
    #[test]
    fn a_flapping_container_is_rate_limited() {
        assert_eq!((HEALTH_LOG_BURST, HEALTH_LOG_PERIOD.as_secs()), (4, 10));
        // 1210 flapping scrapes, 0 to 60.45 s; up from 60.5 s to 80 s.
        let mut timeline: Vec<(u64, Scrape)> = (0..1210)
            .map(|n| (n * 50, if n % 2 == 0 { GOOD } else { Fail(Refused) }))
            .collect();
        timeline.extend((1210..1600).map(|n| (n * 50, GOOD)));
        let lines = play(&timeline);

        let times: Vec<u64> = lines.iter().map(|line| line.0).collect();
        let expected = [
            0, 50, 100, 150, 10_000, 20_000, 30_000, 40_000, 50_000, 60_000, 70_000,
        ];
        assert_eq!(times, expected, "{lines:#?}");
        assert!(lines[4..].iter().all(|line| line.2 > 0), "{lines:#?}");
        // Every one of the 1211 transitions is a line or counted in one.
        let accounted: u32 = lines
            .iter()
            .map(|&(_, _, unlogged, late)| unlogged + u32::from(!late))
            .sum();
        assert_eq!(accounted, 1211);
        assert_eq!(lines[10], (70_000, Transition::Up, 10, true));
    }
}
