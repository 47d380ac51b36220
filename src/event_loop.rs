//! The `mio::Poll`, its tokens, the dispatch of readiness and timer events,
//! and the signals that end the program.
//!
//! This is the only module that reads the clock or does syscalls on behalf
//! of the others: it reads `now` once per iteration and passes it down, and
//! it sleeps in `poll` until the earliest timer, so a sidecar with nothing
//! to do wakes only for its scrape ticks.
//!
//! Two modes. With a scrape interval, each container is scraped on a fixed
//! cadence and requests are answered at once from the latest data. With
//! `--scrape_interval=0` (on demand), nothing runs between requests: a
//! request for the endpoint starts one *round* (one scrape of every
//! container), requests arriving meanwhile join it, and all are answered
//! when every scrape ended or the round's deadline passed.
//!
//! Per container it keeps the latest *completed* scrape: a successful body
//! in an [`exposition::Snapshot`] (indexed lazily, when a client asks,
//! because a body is replaced many times between two Prometheus scrapes),
//! or nothing after a failure. Serving builds one merged body from those
//! snapshots and shares it with every client until some data changes.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::config::Config;
use crate::downstream::{self, Client, Request, Route, SocketState, Status};
use crate::exposition::{Merger, Snapshot, Source};
use crate::self_metrics::{self, ContainerStats, ProcessStats};
use crate::timer::{self, TimerId, TimerWheel};
use crate::upstream::{FailureReason, Outcome, Upstream};

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const FIRST_UPSTREAM: usize = 2;
/// Client tokens start far above any container count.
const FIRST_CLIENT: usize = 1 << 20;

/// Open client connections at most; more wait in the kernel's accept queue
/// until one closes. Each costs at most a 4 KiB request buffer.
const MAX_CLIENTS: usize = 512;
/// A request head must arrive whole within this time of its first byte
/// (or of the connection opening): slow-loris clients are closed.
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A kept-alive connection with no request for this long is closed.
/// Longer than the usual 60 s scrape interval so Prometheus can reuse it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// A response not fully taken by the client in this time is abandoned.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// On demand, a request this soon after a round ended is answered with that
/// round's result instead of starting another: two Prometheus replicas
/// scraping together cost the containers one scrape.
const ROUND_REUSE_WINDOW: Duration = Duration::from_millis(500);
/// On demand, the answer must reach Prometheus before its own timeout
/// (`X-Prometheus-Scrape-Timeout-Seconds`): the round ends this much earlier,
/// a tenth of the timeout but at most half a second, for merging and writing.
const MAX_ROUND_MARGIN: Duration = Duration::from_millis(500);
/// After a closing response, the client has this long to close its side
/// (nginx's lingering_timeout); then the socket is closed anyway.
const LINGER_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of earlier merged bodies that slow clients may keep alive.
const MAX_RETIRED_BODY_BYTES: usize = 8 << 20;
/// A body may hold at most one line per this many bytes of
/// `--max_body_bytes` (65536 lines at the default 4 MiB; real exporters
/// write 60 to 120 bytes per line). Each sample costs an index record and
/// the container label in the merged body whatever its size, so without
/// this bound 4 MiB of `a 1` lines would take the process past 32 MiB.
const BODY_BYTES_PER_LINE: usize = 64;
/// Type conflicts are logged once per container and family; past this many
/// remembered, new ones are counted but not logged.
const MAX_LOGGED_CONFLICTS: usize = 1024;

/// Why the loop could not start or went on no longer.
#[derive(Debug)]
pub enum RunError {
    Bind { port: u16, error: io::Error },
    Poll(io::Error),
    Signals(io::Error),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Bind { port, error } => {
                write!(f, "cannot listen on 0.0.0.0:{port} (--export_to): {error}")
            }
            RunError::Poll(error) => write!(f, "event loop failed: {error}"),
            RunError::Signals(error) => write!(f, "cannot handle SIGTERM/SIGINT: {error}"),
        }
    }
}

impl std::error::Error for RunError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimerKey {
    ScrapeTick(usize),
    ScrapeDeadline(usize),
    ClientDeadline(usize),
    RoundDeadline,
}

/// A container as the loop last saw it: up or down, logged on change only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    Unknown,
    Up,
    Down(FailureReason),
}

struct Container {
    name: String,
    upstream: Upstream,
    /// The latest successful body; empty after a failure.
    snapshot: Snapshot,
    stats: ContainerStats,
    health: Health,
    /// The tick the current cadence is counted from.
    last_tick: Instant,
    deadline: Option<TimerId>,
}

struct ClientSlot {
    client: Client,
    /// Unique for the process: tells a waiter its slot was not reused.
    id: u64,
    deadline: Instant,
    timer: Option<TimerId>,
    /// Parked until the on-demand round ends; reads nothing meanwhile.
    waiting_for_round: bool,
}

/// On demand: one scrape of every container, and the requests it answers.
struct Round {
    deadline: Instant,
    timer: TimerId,
    waiters: Vec<Waiter>,
}

struct Waiter {
    slot: usize,
    client_id: u64,
    request: Request,
}

struct Sidecar {
    config: Config,
    poll: Poll,
    listener: TcpListener,
    containers: Vec<Container>,
    clients: Vec<Option<ClientSlot>>,
    free_slots: Vec<usize>,
    /// Slots closed during this event batch, reusable after it: a later
    /// event in the same batch must not reach a new client by mistake.
    closed_slots: Vec<usize>,
    open_clients: usize,
    /// The accept queue was left non-empty because of `MAX_CLIENTS`.
    accept_blocked: bool,
    timers: TimerWheel<TimerKey>,
    fired: Vec<TimerKey>,
    merger: Merger,
    /// The body every `/metrics` response shares until data changes.
    merged: Rc<Vec<u8>>,
    /// Earlier merged bodies still being written to slow clients, oldest
    /// first. Bounded by `MAX_RETIRED_BODY_BYTES`.
    retired: Vec<Rc<Vec<u8>>>,
    merged_is_current: bool,
    /// Size of the last merged body: what the next build reserves.
    merged_size_hint: usize,
    own_metrics: Snapshot,
    own_metrics_text: Vec<u8>,
    logged_conflicts: HashSet<(usize, Vec<u8>)>,
    empty_body: Rc<Vec<u8>>,
    health_body: Rc<Vec<u8>>,
    next_client_id: u64,
    round: Option<Round>,
    last_round_end: Option<Instant>,
    shutdown: bool,
}

/// Runs the sidecar until SIGTERM or SIGINT.
pub fn run(config: Config) -> Result<(), RunError> {
    let poll = Poll::new().map_err(RunError::Poll)?;
    let address = SocketAddr::from(([0, 0, 0, 0], config.export_port));
    let mut listener = TcpListener::bind(address).map_err(|error| RunError::Bind {
        port: config.export_port,
        error,
    })?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(RunError::Poll)?;
    // SIGHUP is caught too: its default action would kill the process, while
    // as PID 1 in a scratch image it would be ignored. Ignored and logged in
    // both cases: there is nothing to reload.
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(RunError::Signals)?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)
        .map_err(RunError::Signals)?;

    let now = Instant::now();
    let mut sidecar = Sidecar::new(config, poll, listener, now);
    sidecar.log_start();
    let mut events = Events::with_capacity(256);
    while !sidecar.shutdown {
        let now = Instant::now();
        let timeout = sidecar
            .timers
            .next_deadline()
            .map(|deadline| round_up_to_millisecond(deadline.saturating_duration_since(now)));
        match sidecar.poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(RunError::Poll(error)),
        }
        let now = Instant::now();
        for event in events.iter() {
            match event.token() {
                LISTENER => sidecar.accept_clients(now),
                SIGNALS => {
                    for signal in signals.pending() {
                        if signal == SIGHUP {
                            info!("SIGHUP ignored: the command line is the whole configuration");
                        } else {
                            sidecar.shutdown = true;
                        }
                    }
                }
                Token(token) if token >= FIRST_CLIENT => {
                    sidecar.on_client_ready(token - FIRST_CLIENT, now)
                }
                Token(token) => sidecar.on_upstream_ready(token - FIRST_UPSTREAM, now),
            }
        }
        sidecar.expire_timers(now);
        sidecar.end_of_batch(now);
    }
    info!("shutting down");
    sidecar.close_all();
    Ok(())
}

/// `poll` sleeps in whole milliseconds; rounding down would wake it just
/// before the deadline and spin once more for nothing.
fn round_up_to_millisecond(duration: Duration) -> Duration {
    let millis = duration.as_nanos().div_ceil(1_000_000);
    Duration::from_millis(millis.min(u64::MAX as u128) as u64)
}

impl Sidecar {
    fn new(config: Config, poll: Poll, listener: TcpListener, now: Instant) -> Sidecar {
        let mut timers = TimerWheel::new(now, Duration::from_millis(1), 1024);
        let containers = config
            .containers
            .iter()
            .enumerate()
            .map(|(index, container)| {
                // Every container ticks at the same instants: one wake-up
                // starts all scrapes, and the containers are separate
                // processes, so scraping them together costs them nothing.
                let first_tick = now;
                if !config.scrape_interval.is_zero() {
                    timers.insert(first_tick, TimerKey::ScrapeTick(index));
                }
                Container {
                    name: container.name.clone(),
                    upstream: Upstream::new(
                        container.port,
                        &container.path,
                        Token(FIRST_UPSTREAM + index),
                        config.max_body_bytes,
                    ),
                    snapshot: Snapshot::new(),
                    stats: ContainerStats::default(),
                    health: Health::Unknown,
                    last_tick: first_tick,
                    deadline: None,
                }
            })
            .collect();
        let merger = Merger::new(&config.container_label);
        Sidecar {
            config,
            poll,
            listener,
            containers,
            clients: Vec::new(),
            free_slots: Vec::new(),
            closed_slots: Vec::new(),
            open_clients: 0,
            accept_blocked: false,
            timers,
            fired: Vec::new(),
            merger,
            merged: Rc::new(Vec::new()),
            retired: Vec::new(),
            merged_is_current: false,
            merged_size_hint: 0,
            own_metrics: Snapshot::new(),
            own_metrics_text: Vec::new(),
            logged_conflicts: HashSet::new(),
            empty_body: Rc::new(Vec::new()),
            health_body: Rc::new(b"ok\n".to_vec()),
            next_client_id: 0,
            round: None,
            last_round_end: None,
            shutdown: false,
        }
    }

    fn log_start(&self) {
        let names: Vec<String> = self
            .config
            .containers
            .iter()
            .map(|container| format!("{}=:{}{}", container.name, container.port, container.path))
            .collect();
        let cadence = if self.on_demand() {
            "on demand".to_string()
        } else {
            format!("every {} ms", self.config.scrape_interval.as_millis())
        };
        info!(
            "serving {} on 0.0.0.0:{}, scraping {cadence}: {}",
            self.config.endpoint,
            self.config.export_port,
            names.join(", ")
        );
        if self.containers.is_empty() {
            warn!("every container is excluded: only the sidecar's own metrics are served");
        }
    }

    fn on_demand(&self) -> bool {
        self.config.scrape_interval.is_zero()
    }

    // ---- upstreams -------------------------------------------------------

    fn on_scrape_tick(&mut self, index: usize, now: Instant) {
        let interval = self.config.scrape_interval;
        let container = &mut self.containers[index];
        // Fixed cadence from the previous tick; ticks missed while the loop
        // was busy are skipped, never burst.
        container.last_tick = timer::next_tick(container.last_tick, interval, now);
        self.timers
            .insert(container.last_tick, TimerKey::ScrapeTick(index));
        if container.upstream.in_flight() {
            // Never double a scrape: the one in flight is bounded by its
            // own deadline.
            return;
        }
        self.start_scrape(index, now);
    }

    fn start_scrape(&mut self, index: usize, now: Instant) {
        let container = &mut self.containers[index];
        match container.upstream.start(self.poll.registry(), now) {
            Some(outcome) => self.finish_scrape(index, outcome, now),
            // On demand, the round's deadline bounds every scrape of it.
            None if self.on_demand() => {}
            None => {
                let deadline = now + self.config.scrape_timeout;
                let container = &mut self.containers[index];
                container.deadline = Some(
                    self.timers
                        .insert(deadline, TimerKey::ScrapeDeadline(index)),
                );
            }
        }
    }

    fn on_upstream_ready(&mut self, index: usize, now: Instant) {
        let Some(container) = self.containers.get_mut(index) else {
            return;
        };
        if let Some(outcome) = container
            .upstream
            .on_ready(self.poll.registry(), &mut crate::upstream::Unlimited)
        {
            self.finish_scrape(index, outcome, now);
            self.end_round_if_done(now);
        }
    }

    fn on_scrape_deadline(&mut self, index: usize, now: Instant) {
        let container = &mut self.containers[index];
        container.deadline = None;
        if let Some(outcome) = container.upstream.on_timeout(self.poll.registry()) {
            self.finish_scrape(index, outcome, now);
        }
    }

    fn finish_scrape(&mut self, index: usize, outcome: Outcome, now: Instant) {
        self.invalidate_merged();
        let container = &mut self.containers[index];
        if let Some(timer) = container.deadline.take() {
            self.timers.cancel(timer);
        }
        container.stats.scrapes_total += 1;
        container.stats.last_scrape_duration = container.upstream.elapsed(now);
        match outcome {
            Outcome::Success => {
                container.stats.last_body_bytes = container.upstream.body_mut().len() as u64;
                container.snapshot.replace(container.upstream.body_mut());
                container.upstream.shrink();
                // The index of the previous body is not needed until a
                // client asks, which may be a minute away: give its memory
                // back (about as much again as the body) rather than hold it.
                container.snapshot.shrink();
                // While up, the body is indexed only when a client asks
                // (most bodies are replaced unread). While down or unknown,
                // index it now, so recovery is logged when it happens and a
                // container that sends garbage stays down.
                if container.health != Health::Up {
                    index_snapshot(container, self.config.max_body_bytes / BODY_BYTES_PER_LINE);
                }
            }
            Outcome::Failure(reason) => {
                container.stats.failures_total[reason.index()] += 1;
                container.snapshot.clear();
                container.snapshot.shrink();
                let detail = container.upstream.last_error().to_string();
                set_health(container, Health::Down(reason), &detail);
            }
        }
    }

    // ---- clients ---------------------------------------------------------

    fn accept_clients(&mut self, now: Instant) {
        loop {
            if self.open_clients >= MAX_CLIENTS {
                self.accept_blocked = true;
                return;
            }
            let (mut stream, _peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_blocked = false;
                    return;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    // ECONNABORTED, EMFILE...: this connection is lost, the
                    // listener is fine. Try again on the next event.
                    debug!("accept failed: {error}");
                    self.accept_blocked = true;
                    return;
                }
            };
            let slot = self.free_slots.pop().unwrap_or_else(|| {
                self.clients.push(None);
                self.clients.len() - 1
            });
            if let Err(error) = self.poll.registry().register(
                &mut stream,
                Token(FIRST_CLIENT + slot),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                debug!("cannot register a client: {error}");
                self.free_slots.push(slot);
                continue;
            }
            let _ = stream.set_nodelay(true);
            self.next_client_id += 1;
            self.clients[slot] = Some(ClientSlot {
                client: Client::new(stream),
                id: self.next_client_id,
                deadline: now,
                timer: None,
                waiting_for_round: false,
            });
            self.open_clients += 1;
            self.set_client_deadline(slot, now + REQUEST_HEAD_TIMEOUT);
            // The request may already be waiting; edge-triggered readiness
            // would not tell us again.
            self.on_client_ready(slot, now);
        }
    }

    fn on_client_ready(&mut self, slot: usize, now: Instant) {
        let Some(Some(entry)) = self.clients.get_mut(slot) else {
            return;
        };
        let had_partial_request = entry.client.has_partial_request();
        if entry.client.read() == SocketState::Closed {
            self.close_client(slot);
            return;
        }
        if !had_partial_request && entry.client.has_partial_request() {
            self.set_client_deadline(slot, now + REQUEST_HEAD_TIMEOUT);
        }
        self.serve_client(slot, now);
    }

    /// Writes what is pending, then answers queued requests one after the
    /// other until the socket is full or the input has no complete request.
    fn serve_client(&mut self, slot: usize, now: Instant) {
        loop {
            let Some(Some(entry)) = self.clients.get_mut(slot) else {
                return;
            };
            if entry.waiting_for_round {
                return;
            }
            if entry.client.is_writing() {
                match entry.client.write() {
                    SocketState::WouldBlock => return,
                    SocketState::Closed => {
                        self.close_client(slot);
                        return;
                    }
                    SocketState::Continue => {
                        // Response done. Pipelined bytes may have waited
                        // behind the head limit: read them now.
                        if entry.client.read() == SocketState::Closed {
                            self.close_client(slot);
                            return;
                        }
                        let deadline = if entry.client.is_lingering() {
                            LINGER_TIMEOUT
                        } else if entry.client.has_partial_request() {
                            REQUEST_HEAD_TIMEOUT
                        } else {
                            IDLE_TIMEOUT
                        };
                        self.set_client_deadline(slot, now + deadline);
                    }
                }
                continue;
            }
            match entry.client.next_request(&self.config.endpoint) {
                Ok(Some(request)) => {
                    self.answer(slot, request, now);
                    // A request parked on a round waits for it first.
                    let mut deadline = now + WRITE_TIMEOUT;
                    if self.round.is_some() {
                        deadline += self.config.scrape_timeout;
                    }
                    self.set_client_deadline(slot, deadline);
                }
                Ok(None) => {
                    if entry.client.is_finished() {
                        self.close_client(slot);
                    }
                    return;
                }
                Err(error) => {
                    debug!("bad request from a client: {error:?}");
                    if let Some(Some(entry)) = self.clients.get_mut(slot) {
                        entry.client.reject(error);
                    }
                    self.set_client_deadline(slot, now + WRITE_TIMEOUT);
                }
            }
        }
    }

    fn answer(&mut self, slot: usize, request: Request, now: Instant) {
        if request.route == Route::Metrics && self.on_demand() && !self.last_round_is_fresh(now) {
            self.join_round(slot, request, now);
            return;
        }
        let (status, content_type, body) = match request.route {
            Route::Metrics => (
                Status::Ok,
                downstream::METRICS_CONTENT_TYPE,
                self.merged_body(),
            ),
            Route::Health => (
                Status::Ok,
                downstream::TEXT_CONTENT_TYPE,
                self.health_body.clone(),
            ),
            Route::NotFound => (
                Status::NotFound,
                downstream::TEXT_CONTENT_TYPE,
                self.empty_body.clone(),
            ),
            Route::MethodNotAllowed => (
                Status::MethodNotAllowed,
                downstream::TEXT_CONTENT_TYPE,
                self.empty_body.clone(),
            ),
        };
        if let Some(Some(entry)) = self.clients.get_mut(slot) {
            entry.client.respond(
                request.length,
                status,
                content_type,
                downstream::Coding::Fixed,
                crate::encoded::Body::Shared(body),
                !request.head_only,
                request.keep_alive,
            );
        }
    }

    // ---- on-demand rounds ----------------------------------------------------

    fn last_round_is_fresh(&self, now: Instant) -> bool {
        self.round.is_none()
            && self
                .last_round_end
                .is_some_and(|end| now.saturating_duration_since(end) < ROUND_REUSE_WINDOW)
    }

    /// Parks the client on the round in flight, or starts one.
    fn join_round(&mut self, slot: usize, request: Request, now: Instant) {
        let Some(Some(entry)) = self.clients.get_mut(slot) else {
            return;
        };
        entry.waiting_for_round = true;
        let waiter = Waiter {
            slot,
            client_id: entry.id,
            request,
        };
        let mut deadline = now + self.config.scrape_timeout;
        if let Some(timeout) = request.scrape_timeout {
            let margin = (timeout / 10).min(MAX_ROUND_MARGIN);
            deadline = deadline.min(now + (timeout - margin));
        }
        match &mut self.round {
            Some(round) => {
                round.waiters.push(waiter);
                // A shorter Prometheus timeout shortens the whole round:
                // everyone is answered by the earliest deadline.
                if deadline < round.deadline {
                    self.timers.cancel(round.timer);
                    round.deadline = deadline;
                    round.timer = self.timers.insert(deadline, TimerKey::RoundDeadline);
                }
            }
            None => {
                let timer = self.timers.insert(deadline, TimerKey::RoundDeadline);
                self.round = Some(Round {
                    deadline,
                    timer,
                    waiters: vec![waiter],
                });
                for index in 0..self.containers.len() {
                    if !self.containers[index].upstream.in_flight() {
                        self.start_scrape(index, now);
                    }
                }
                self.end_round_if_done(now);
            }
        }
    }

    fn end_round_if_done(&mut self, now: Instant) {
        let in_flight = self
            .containers
            .iter()
            .any(|container| container.upstream.in_flight());
        if self.round.is_some() && !in_flight {
            self.end_round(now);
        }
    }

    /// The round's deadline passed: what has not answered contributes
    /// nothing and is down (timeout) in this response.
    fn on_round_deadline(&mut self, now: Instant) {
        for index in 0..self.containers.len() {
            let container = &mut self.containers[index];
            if let Some(outcome) = container.upstream.on_timeout(self.poll.registry()) {
                self.finish_scrape(index, outcome, now);
            }
        }
        self.end_round(now);
    }

    /// Answers every request that waited for the round.
    fn end_round(&mut self, now: Instant) {
        let Some(round) = self.round.take() else {
            return;
        };
        self.timers.cancel(round.timer);
        self.last_round_end = Some(now);
        for waiter in round.waiters {
            let Some(Some(entry)) = self.clients.get_mut(waiter.slot) else {
                continue;
            };
            if entry.id != waiter.client_id {
                continue;
            }
            entry.waiting_for_round = false;
            let body = self.merged_body();
            if let Some(Some(entry)) = self.clients.get_mut(waiter.slot) {
                entry.client.respond(
                    waiter.request.length,
                    Status::Ok,
                    downstream::METRICS_CONTENT_TYPE,
                    downstream::Coding::Fixed,
                    crate::encoded::Body::Shared(body),
                    !waiter.request.head_only,
                    waiter.request.keep_alive,
                );
            }
            self.set_client_deadline(waiter.slot, now + WRITE_TIMEOUT);
            self.serve_client(waiter.slot, now);
        }
    }

    fn set_client_deadline(&mut self, slot: usize, deadline: Instant) {
        let Some(Some(entry)) = self.clients.get_mut(slot) else {
            return;
        };
        if let Some(timer) = entry.timer.take() {
            self.timers.cancel(timer);
        }
        entry.deadline = deadline;
        entry.timer = Some(self.timers.insert(deadline, TimerKey::ClientDeadline(slot)));
    }

    fn on_client_deadline(&mut self, slot: usize, now: Instant) {
        let Some(Some(entry)) = self.clients.get_mut(slot) else {
            return;
        };
        entry.timer = None;
        if entry.deadline <= now {
            self.close_client(slot);
        }
    }

    fn close_client(&mut self, slot: usize) {
        let Some(entry) = self.clients.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let ClientSlot {
            client: Client { mut stream, .. },
            timer,
            ..
        } = entry;
        if let Some(timer) = timer {
            self.timers.cancel(timer);
        }
        let _ = self.poll.registry().deregister(&mut stream);
        self.open_clients -= 1;
        self.closed_slots.push(slot);
    }

    // ---- the merged body ---------------------------------------------------

    /// The body served for the endpoint: built when some data changed since
    /// the last build, otherwise the same shared bytes.
    fn merged_body(&mut self) -> Rc<Vec<u8>> {
        if self.merged_is_current {
            return self.merged.clone();
        }
        let max_lines = self.config.max_body_bytes / BODY_BYTES_PER_LINE;
        for container in &mut self.containers {
            if container.health == Health::Up {
                index_snapshot(container, max_lines);
            }
        }
        self.render_own_metrics();

        // Reuse the buffer when no client still holds the previous body.
        let mut out = match Rc::get_mut(&mut self.merged) {
            Some(buffer) => std::mem::take(buffer),
            None => Vec::new(),
        };
        // One allocation of the right size rather than doublings.
        out.reserve(self.merged_size_hint);
        // Every container is a source, so a source's position is its
        // container's: a down one has an empty or unindexed snapshot and
        // contributes nothing.
        let mut sources: Vec<Source<'_>> = self
            .containers
            .iter()
            .map(|container| Source {
                container: Some(&container.name),
                snapshot: &container.snapshot,
            })
            .collect();
        sources.push(Source {
            container: None,
            snapshot: &self.own_metrics,
        });
        self.merger.merge(&sources, &mut out);
        drop(sources);
        // Give back what an outsized merge (a container's huge body, since
        // gone) left behind.
        if out.capacity() > out.len() * 2 + 64 * 1024 {
            out.shrink_to(out.len() + out.len() / 4);
        }
        self.merged_size_hint = out.len() + out.len() / 8;
        for (index, family) in self.merger.conflicts() {
            // The last source, the sidecar's own metrics, has no container.
            let Some(container) = self.containers.get_mut(index) else {
                continue;
            };
            container.stats.family_conflicts_total += 1;
            if self.logged_conflicts.len() < MAX_LOGGED_CONFLICTS
                && self.logged_conflicts.insert((index, family.to_vec()))
            {
                warn!(
                    "container {}: metric family {} has a different type than in another container; \
                     its samples were resolved by the conflict rule (see README)",
                    container.name,
                    String::from_utf8_lossy(family)
                );
            }
        }
        match Rc::get_mut(&mut self.merged) {
            Some(buffer) => *buffer = out,
            None => {
                let previous = std::mem::replace(&mut self.merged, Rc::new(out));
                self.retired.push(previous);
                self.limit_retired_bodies();
            }
        }
        self.merged_is_current = true;
        self.merged.clone()
    }

    /// The merged body no longer matches the data. When no client is still
    /// being sent it, its memory (as much as every body together) is given
    /// back now rather than held until the next request, which may be a
    /// minute away; the next build allocates it once, at the size of this one.
    fn invalidate_merged(&mut self) {
        if !self.merged_is_current {
            return;
        }
        self.merged_is_current = false;
        if let Some(buffer) = Rc::get_mut(&mut self.merged) {
            *buffer = Vec::new();
        }
    }

    /// A slow client holds only a reference to a body already built, but
    /// clients that stall one after the other could each hold a different
    /// one. Past a budget, the clients holding the oldest bodies are closed
    /// (the newest retired body is always kept: its readers are recent).
    fn limit_retired_bodies(&mut self) {
        self.retired.retain(|body| Rc::strong_count(body) > 1);
        let mut held: usize = self.retired.iter().map(|body| body.len()).sum();
        while held > MAX_RETIRED_BODY_BYTES && self.retired.len() > 1 {
            let oldest = self.retired.remove(0);
            held -= oldest.len();
            for slot in 0..self.clients.len() {
                let holds =
                    matches!(&self.clients[slot], Some(entry) if entry.client.holds(&oldest));
                if holds {
                    debug!("closing a client too slow to take its response");
                    self.close_client(slot);
                }
            }
        }
    }

    fn render_own_metrics(&mut self) {
        let stats: Vec<(&str, &ContainerStats)> = self
            .containers
            .iter()
            .map(|container| (container.name.as_str(), &container.stats))
            .collect();
        self.own_metrics_text.clear();
        self_metrics::render(
            &self.config.container_label,
            &stats,
            &ProcessStats::read(),
            &mut self.own_metrics_text,
        );
        self.own_metrics.replace(&mut self.own_metrics_text);
        if let Err(parse_error) = self.own_metrics.index() {
            // A bug of ours, not input: serve the containers without it.
            error!("own metrics do not parse: {parse_error}");
        }
    }

    // ---- timers and housekeeping ------------------------------------------

    fn expire_timers(&mut self, now: Instant) {
        let mut fired = std::mem::take(&mut self.fired);
        self.timers.expire(now, &mut fired);
        for key in fired.drain(..) {
            match key {
                TimerKey::ScrapeTick(index) => self.on_scrape_tick(index, now),
                TimerKey::ScrapeDeadline(index) => {
                    self.on_scrape_deadline(index, now);
                    self.end_round_if_done(now);
                }
                TimerKey::ClientDeadline(slot) => self.on_client_deadline(slot, now),
                TimerKey::RoundDeadline => self.on_round_deadline(now),
            }
        }
        self.fired = fired;
    }

    fn end_of_batch(&mut self, now: Instant) {
        self.free_slots.append(&mut self.closed_slots);
        if self.accept_blocked && self.open_clients < MAX_CLIENTS {
            self.accept_clients(now);
        }
    }

    fn close_all(&mut self) {
        for slot in 0..self.clients.len() {
            self.close_client(slot);
        }
        for container in &mut self.containers {
            container.upstream.close(self.poll.registry());
        }
    }
}

/// Indexes a container's latest body; a body that does not parse makes the
/// container down with reason `parse_error`, and nothing of it is served.
/// A body of more lines than `max_lines` is not even parsed: see
/// [`BODY_BYTES_PER_LINE`].
fn index_snapshot(container: &mut Container, max_lines: usize) {
    if !container.snapshot.is_indexed() && container.snapshot.line_count() > max_lines {
        container.stats.failures_total[FailureReason::TooManyLines.index()] += 1;
        container.stats.last_samples = 0;
        container.snapshot.clear();
        let detail = format!(
            "more than {max_lines} lines (--max_body_bytes / {BODY_BYTES_PER_LINE}) in the body"
        );
        set_health(
            container,
            Health::Down(FailureReason::TooManyLines),
            &detail,
        );
        return;
    }
    match container.snapshot.index() {
        Ok(()) => {
            container.stats.last_samples = container.snapshot.sample_count() as u64;
            set_health(container, Health::Up, "");
        }
        Err(parse_error) => {
            container.snapshot.shrink();
            container.stats.failures_total[FailureReason::ParseError.index()] += 1;
            container.stats.last_samples = 0;
            let detail = format!("{parse_error} in the body");
            set_health(container, Health::Down(FailureReason::ParseError), &detail);
        }
    }
}

/// The one place health changes; up/down transitions are logged here and
/// nowhere else, so a container down for an hour logs once.
fn set_health(container: &mut Container, health: Health, detail: &str) {
    let was_up = container.health == Health::Up;
    container.stats.up = health == Health::Up;
    match health {
        Health::Up if !was_up => info!("container {} is up", container.name),
        Health::Down(reason) if was_up || container.health == Health::Unknown => {
            warn!("container {} is down ({reason}): {detail}", container.name)
        }
        Health::Down(reason) if container.health != health => {
            debug!(
                "container {} still down, now {reason}: {detail}",
                container.name
            )
        }
        _ => {}
    }
    container.health = health;
}
