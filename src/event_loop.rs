//! The `mio::Poll`, its tokens, the dispatch of readiness and timer events,
//! the signals that end the program, and the socket calls of the listener.
//!
//! It reads the clock once per iteration and passes `now` down, and it
//! sleeps in `poll` until the earliest timer, so a sidecar with nothing to
//! do wakes only for its scrape ticks. Everything else is decided in rooms
//! that know no socket and no clock: what is known of each container
//! (`container`), on-demand rounds (`rounds`), the client table
//! (`client_table`) and the body served (`output`, `published`). The
//! connections do their own socket calls when told to (`upstream`,
//! `downstream`), and the process' own numbers are read from `/proc` when a
//! body is built (`self_metrics`).
//!
//! Two modes ([`ScrapeMode`]). `Every(interval)`: each container is scraped
//! on a fixed cadence and requests are answered at once from the latest
//! data. `OnDemand`: nothing runs between requests; a request for the
//! endpoint starts or joins a round, answered when it ends.
//!
//! Fairness: a client's turn ends after `MAX_REQUESTS_PER_TURN` requests
//! or `MAX_BYTES_PER_TURN` bytes written; a client with work left is
//! queued, and the queue is served after the next poll, which then does not
//! sleep. Every iteration runs its events, its timers and one turn of each
//! queued client, so no client holds back the others or the scrapes.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::client_table::{self, ClientId, ClientTable};
use crate::config::{Config, ScrapeMode};
use crate::container::ContainerState;
use crate::downstream::{self, Client, Request, Route, SocketState, Status};
use crate::output::Output;
use crate::rounds::{Ask, Rounds};
use crate::self_metrics::ProcessStats;
use crate::timer::{self, TimerId, TimerWheel};
use crate::upstream::Upstream;

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const FIRST_UPSTREAM: usize = 2;
/// Client tokens start far above any container count.
const FIRST_CLIENT: usize = 1 << 20;

/// Open client connections at most; more wait in the kernel's accept queue
/// until one closes. Each costs at most a 4 KiB request buffer. Fewer when
/// the open files limit is low: see `client_table::client_cap`.
const MAX_CLIENTS: usize = 512;
/// A request head must arrive whole within this time of its first byte
/// (or of the connection opening): slow-loris clients are closed.
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A kept-alive connection with no request for this long is closed.
/// Longer than the usual 60 s scrape interval so Prometheus can reuse it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// A response not fully taken by the client in this time is abandoned.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// After a closing response, the client has this long to close its side
/// (nginx's lingering_timeout); then the socket is closed anyway.
const LINGER_TIMEOUT: Duration = Duration::from_secs(5);
/// A client's turn (one readiness event, or one turn from the queue) ends
/// after this many requests answered or this many bytes written, whichever
/// comes first; then it waits behind every other ready client and timer
/// (redis caps the bytes written to one client per event the same way).
/// A pipelining client that never pauses cannot hold the loop.
const MAX_REQUESTS_PER_TURN: usize = 16;
const MAX_BYTES_PER_TURN: usize = 1 << 20;

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
    ClientDeadline(ClientId),
    RoundDeadline,
}

/// The socket side of one container: its connection and its cadence.
struct Scraper {
    upstream: Upstream,
    /// The tick the current cadence is counted from.
    last_tick: Instant,
    deadline: Option<TimerId>,
}

/// One accepted client and its deadline.
struct Connection {
    client: Client,
    deadline: Instant,
    timer: Option<TimerId>,
    /// Parked until the on-demand round ends; reads nothing meanwhile.
    waiting_for_round: bool,
    /// In `Sidecar::turns`: its budget ran out with work left.
    queued: bool,
}

/// A request parked on an on-demand round.
struct Waiter {
    client: ClientId,
    request: Request,
}

struct Sidecar {
    config: Config,
    poll: Poll,
    listener: TcpListener,
    /// What is known of each container; `scrapers[i]` scrapes `containers[i]`.
    containers: Vec<ContainerState>,
    scrapers: Vec<Scraper>,
    clients: ClientTable<Connection>,
    /// The accept queue was left non-empty because the table was full.
    accept_blocked: bool,
    /// Clients whose turn ended with work left, served again after the next
    /// poll (which then does not sleep): edge-triggered readiness would not
    /// report them again. `turns_now` is the list being served.
    turns: Vec<ClientId>,
    turns_now: Vec<ClientId>,
    timers: TimerWheel<TimerKey>,
    fired: Vec<TimerKey>,
    output: Output,
    rounds: Rounds<Waiter>,
    round_timer: Option<TimerId>,
    empty_body: Rc<Vec<u8>>,
    health_body: Rc<Vec<u8>>,
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
        let timeout = if sidecar.turns.is_empty() {
            sidecar
                .timers
                .next_deadline()
                .map(|deadline| round_up_to_millisecond(deadline.saturating_duration_since(now)))
        } else {
            Some(Duration::ZERO)
        };
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
                    if let Some(id) = sidecar.clients.id_at(token - FIRST_CLIENT) {
                        sidecar.on_client_ready(id, now);
                    }
                }
                Token(token) => sidecar.on_upstream_ready(token - FIRST_UPSTREAM, now),
            }
        }
        sidecar.expire_timers(now);
        sidecar.take_turns(now);
        sidecar.end_of_batch(now);
    }
    info!("shutting down");
    sidecar.close_all();
    Ok(())
}

/// The soft `RLIMIT_NOFILE`, read from `/proc/self/limits` (no libc call,
/// so no unsafe code); `None` when unlimited or unreadable.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    client_table::parse_open_files_limit(&limits)
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
            .map(|container| ContainerState::new(&container.name, config.max_body_bytes))
            .collect();
        let scrapers = config
            .containers
            .iter()
            .enumerate()
            .map(|(index, container)| {
                // Every container ticks at the same instants: one wake-up
                // starts all scrapes, and the containers are separate
                // processes, so scraping them together costs them nothing.
                let first_tick = now;
                if let ScrapeMode::Every(_) = config.scrape_mode {
                    timers.insert(first_tick, TimerKey::ScrapeTick(index));
                }
                Scraper {
                    upstream: Upstream::new(
                        container.port,
                        &container.path,
                        Token(FIRST_UPSTREAM + index),
                        config.max_body_bytes,
                    ),
                    last_tick: first_tick,
                    deadline: None,
                }
            })
            .collect();
        let client_cap =
            client_table::client_cap(MAX_CLIENTS, open_files_limit(), config.containers.len());
        Sidecar {
            output: Output::new(&config.container_label),
            rounds: Rounds::new(config.scrape_timeout),
            config,
            poll,
            listener,
            containers,
            scrapers,
            clients: ClientTable::new(client_cap),
            accept_blocked: false,
            turns: Vec::new(),
            turns_now: Vec::new(),
            timers,
            fired: Vec::new(),
            round_timer: None,
            empty_body: Rc::new(Vec::new()),
            health_body: Rc::new(b"ok\n".to_vec()),
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
        let cadence = match self.config.scrape_mode {
            ScrapeMode::OnDemand => "on demand".to_string(),
            ScrapeMode::Every(interval) => format!("every {} ms", interval.as_millis()),
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
        if self.clients.capacity() < MAX_CLIENTS {
            info!(
                "at most {} clients at once: the open files limit keeps descriptors for the scrapes",
                self.clients.capacity()
            );
        }
    }

    // ---- scrapes -----------------------------------------------------------

    fn on_scrape_tick(&mut self, index: usize, now: Instant) {
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

    fn start_scrape(&mut self, index: usize, now: Instant) {
        let scraper = &mut self.scrapers[index];
        match scraper.upstream.start(self.poll.registry(), now) {
            Some(finished) => {
                self.containers[index].record(now, finished);
                self.scrape_ended(index);
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

    fn on_upstream_ready(&mut self, index: usize, now: Instant) {
        let Some(scraper) = self.scrapers.get_mut(index) else {
            return;
        };
        if let Some(finished) = scraper.upstream.on_ready(self.poll.registry(), now) {
            self.containers[index].record(now, finished);
            self.scrape_ended(index);
            self.end_round_if_done(now);
        }
    }

    fn on_scrape_deadline(&mut self, index: usize, now: Instant) {
        let scraper = &mut self.scrapers[index];
        scraper.deadline = None;
        if let Some(finished) = scraper.upstream.on_timeout(self.poll.registry(), now) {
            self.containers[index].record(now, finished);
            self.scrape_ended(index);
        }
    }

    /// After a scrape's record was taken: its deadline goes, its buffer
    /// shrinks after an outsized body, and the body served is out of date.
    fn scrape_ended(&mut self, index: usize) {
        let scraper = &mut self.scrapers[index];
        if let Some(timer) = scraper.deadline.take() {
            self.timers.cancel(timer);
        }
        scraper.upstream.shrink();
        self.output.invalidate();
    }

    // ---- clients -----------------------------------------------------------

    fn accept_clients(&mut self, now: Instant) {
        loop {
            if self.clients.is_full() {
                self.accept_blocked = true;
                return;
            }
            let (stream, _peer) = match self.listener.accept() {
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
            let _ = stream.set_nodelay(true);
            let connection = Connection {
                client: Client::new(stream),
                deadline: now,
                timer: None,
                waiting_for_round: false,
                queued: false,
            };
            let Some(id) = self.clients.insert(connection) else {
                return; // checked above
            };
            let registered = match self.clients.get_mut(id) {
                Some(connection) => self.poll.registry().register(
                    &mut connection.client.stream,
                    Token(FIRST_CLIENT + id.slot()),
                    Interest::READABLE | Interest::WRITABLE,
                ),
                None => continue,
            };
            if let Err(error) = registered {
                debug!("cannot register a client: {error}");
                self.clients.remove(id);
                continue;
            }
            self.set_client_deadline(id, now + REQUEST_HEAD_TIMEOUT);
            // The request may already be waiting; edge-triggered readiness
            // would not tell us again.
            self.on_client_ready(id, now);
        }
    }

    fn on_client_ready(&mut self, id: ClientId, now: Instant) {
        let Some(connection) = self.clients.get_mut(id) else {
            return;
        };
        let had_partial_request = connection.client.has_partial_request();
        if connection.client.read() == SocketState::Closed {
            self.close_client(id);
            return;
        }
        if !had_partial_request && connection.client.has_partial_request() {
            self.set_client_deadline(id, now + REQUEST_HEAD_TIMEOUT);
        }
        self.serve_client(id, now);
    }

    /// Writes what is pending, then answers queued requests one after the
    /// other until the socket is full, the input has no complete request, or
    /// the turn's budget is spent (the client is then queued for another).
    fn serve_client(&mut self, id: ClientId, now: Instant) {
        let mut bytes_left = MAX_BYTES_PER_TURN;
        let mut requests_left = MAX_REQUESTS_PER_TURN;
        loop {
            let Some(connection) = self.clients.get_mut(id) else {
                return;
            };
            if connection.waiting_for_round {
                return;
            }
            if connection.client.is_writing() {
                match connection.client.write(&mut bytes_left) {
                    SocketState::WouldBlock => return,
                    SocketState::Yield => {
                        self.queue_turn(id);
                        return;
                    }
                    SocketState::Closed => {
                        self.close_client(id);
                        return;
                    }
                    SocketState::Continue => {
                        // Response done. Pipelined bytes may have waited
                        // behind the head limit: read them now.
                        if connection.client.read() == SocketState::Closed {
                            self.close_client(id);
                            return;
                        }
                        let deadline = if connection.client.is_lingering() {
                            LINGER_TIMEOUT
                        } else if connection.client.has_partial_request() {
                            REQUEST_HEAD_TIMEOUT
                        } else {
                            IDLE_TIMEOUT
                        };
                        self.set_client_deadline(id, now + deadline);
                    }
                }
                continue;
            }
            match connection.client.next_request(&self.config.endpoint) {
                Ok(Some(_)) if requests_left == 0 => {
                    self.queue_turn(id);
                    return;
                }
                Ok(Some(request)) => {
                    requests_left -= 1;
                    self.answer(id, request, now);
                    // A request parked on a round waits for it first.
                    let mut deadline = now + WRITE_TIMEOUT;
                    if self.rounds.in_progress() {
                        deadline += self.config.scrape_timeout;
                    }
                    self.set_client_deadline(id, deadline);
                }
                Ok(None) => {
                    if connection.client.is_finished() {
                        self.close_client(id);
                    }
                    return;
                }
                Err(error) => {
                    debug!("bad request from a client: {error:?}");
                    connection.client.reject(error, self.empty_body.clone());
                    self.set_client_deadline(id, now + WRITE_TIMEOUT);
                }
            }
        }
    }

    fn answer(&mut self, id: ClientId, request: Request, now: Instant) {
        if request.route == Route::Metrics && self.config.scrape_mode == ScrapeMode::OnDemand {
            let waiter = Waiter {
                client: id,
                request,
            };
            match self.rounds.ask(now, waiter, request.scrape_timeout) {
                Ask::AnswerNow => {}
                Ask::Start { deadline } => {
                    self.park(id);
                    self.arm_round_timer(deadline);
                    for index in 0..self.scrapers.len() {
                        if !self.scrapers[index].upstream.in_flight() {
                            self.start_scrape(index, now);
                        }
                    }
                    self.end_round_if_done(now);
                    return;
                }
                Ask::Joined { new_deadline } => {
                    self.park(id);
                    if let Some(deadline) = new_deadline {
                        self.arm_round_timer(deadline);
                    }
                    return;
                }
            }
        }
        let (status, content_type, body) = match request.route {
            Route::Metrics => (
                Status::Ok,
                downstream::METRICS_CONTENT_TYPE,
                self.metrics_body(now),
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
        if let Some(connection) = self.clients.get_mut(id) {
            connection.client.respond(
                request.length,
                status,
                content_type,
                body,
                !request.head_only,
                request.keep_alive,
            );
        }
    }

    fn queue_turn(&mut self, id: ClientId) {
        if let Some(connection) = self.clients.get_mut(id) {
            if !connection.queued {
                connection.queued = true;
                self.turns.push(id);
            }
        }
    }

    /// Gives every client queued before this iteration its next turn.
    fn take_turns(&mut self, now: Instant) {
        std::mem::swap(&mut self.turns, &mut self.turns_now);
        let mut turns = std::mem::take(&mut self.turns_now);
        for id in turns.drain(..) {
            if let Some(connection) = self.clients.get_mut(id) {
                connection.queued = false;
                self.serve_client(id, now);
            }
        }
        self.turns_now = turns;
    }

    fn park(&mut self, id: ClientId) {
        if let Some(connection) = self.clients.get_mut(id) {
            connection.waiting_for_round = true;
        }
    }

    fn set_client_deadline(&mut self, id: ClientId, deadline: Instant) {
        let Some(connection) = self.clients.get_mut(id) else {
            return;
        };
        if let Some(timer) = connection.timer.take() {
            self.timers.cancel(timer);
        }
        connection.deadline = deadline;
        connection.timer = Some(self.timers.insert(deadline, TimerKey::ClientDeadline(id)));
    }

    fn on_client_deadline(&mut self, id: ClientId, now: Instant) {
        let Some(connection) = self.clients.get_mut(id) else {
            return;
        };
        connection.timer = None;
        if connection.deadline <= now {
            self.close_client(id);
        }
    }

    fn close_client(&mut self, id: ClientId) {
        let Some(connection) = self.clients.remove(id) else {
            return;
        };
        let Connection {
            client: Client { mut stream, .. },
            timer,
            ..
        } = connection;
        if let Some(timer) = timer {
            self.timers.cancel(timer);
        }
        let _ = self.poll.registry().deregister(&mut stream);
    }

    // ---- the body served ---------------------------------------------------

    /// The body served for the endpoint: built when some data changed since
    /// the last build, otherwise the same shared bytes.
    fn metrics_body(&mut self, now: Instant) -> Rc<Vec<u8>> {
        if let Some(body) = self.output.current() {
            return body;
        }
        let publication = self
            .output
            .build(now, &mut self.containers, &ProcessStats::read());
        for evicted in &publication.evicted {
            for id in self
                .clients
                .ids_where(|connection| connection.client.holds(evicted))
            {
                debug!("closing a client too slow to take its response");
                self.close_client(id);
            }
        }
        publication.body
    }

    // ---- on-demand rounds --------------------------------------------------

    fn arm_round_timer(&mut self, deadline: Instant) {
        if let Some(timer) = self.round_timer.take() {
            self.timers.cancel(timer);
        }
        self.round_timer = Some(self.timers.insert(deadline, TimerKey::RoundDeadline));
    }

    fn end_round_if_done(&mut self, now: Instant) {
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
    fn on_round_deadline(&mut self, now: Instant) {
        self.round_timer = None;
        for index in 0..self.scrapers.len() {
            let scraper = &mut self.scrapers[index];
            if let Some(finished) = scraper.upstream.on_timeout(self.poll.registry(), now) {
                self.containers[index].record(now, finished);
                self.scrape_ended(index);
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
            let body = self.metrics_body(now);
            let request = waiter.request;
            if let Some(connection) = self.clients.get_mut(waiter.client) {
                connection.client.respond(
                    request.length,
                    Status::Ok,
                    downstream::METRICS_CONTENT_TYPE,
                    body,
                    !request.head_only,
                    request.keep_alive,
                );
            }
            self.set_client_deadline(waiter.client, now + WRITE_TIMEOUT);
            self.serve_client(waiter.client, now);
        }
    }

    // ---- timers and housekeeping -------------------------------------------

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
                TimerKey::ClientDeadline(id) => self.on_client_deadline(id, now),
                TimerKey::RoundDeadline => self.on_round_deadline(now),
            }
        }
        self.fired = fired;
    }

    fn end_of_batch(&mut self, now: Instant) {
        self.clients.end_of_batch();
        if self.accept_blocked && !self.clients.is_full() {
            self.accept_clients(now);
        }
    }

    fn close_all(&mut self) {
        for id in self.clients.ids_where(|_| true) {
            self.close_client(id);
        }
        for scraper in &mut self.scrapers {
            scraper.upstream.close(self.poll.registry());
        }
    }
}
