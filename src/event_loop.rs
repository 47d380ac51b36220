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

use crate::budget::{Budget, Growth};
use crate::client_table::{self, ClientId, ClientTable};
use crate::config::{Config, ScrapeMode};
use crate::container::ContainerState;
use crate::downstream::{self, Client, Coding, Request, Route, SocketState, Status};
use crate::encoded::Body;
use crate::exposition::negotiate::{self, OutputFormat, ProtobufDemand};
use crate::listen::{self, Listening};
use crate::output::Output;
use crate::rounds::{Ask, Rounds};
use crate::scrape::{FailureReason, Finished, Outcome};
use crate::self_metrics::ProcessStats;
use crate::timer::{self, TimerId, TimerWheel};
use crate::upstream::{Allowance, Upstream};

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
/// The latest bodies of all containers may hold this many eighths of
/// `--max_body_bytes` together (15.5 MiB by default: four bodies of 4 MB,
/// three at the 4 MiB limit, which leaves room for the index of a build and
/// the output): see the README's memory model. A body past it is refused
/// (`over_budget`). Receive buffers get about the largest body held and an
/// eighth (`budget`).
const HELD_BODIES_EIGHTHS_OF_MAX_BODY: usize = 31;
/// The bodies held and the indexes of one build (with the merge's own
/// records, about [`MERGE_BYTES_PER_FAMILY`] a family) may hold this many
/// times `--max_body_bytes` together (22 MiB): indexes get what the bodies
/// leave. A body whose index would not fit is refused for that build
/// (`over_budget`). Indexes are freed after the build.
const BODIES_AND_INDEXES_PER_MAX_BODY: f64 = 5.5;
/// What the merge keeps per family of each source: its table entry, merged
/// record and two contribution records (measured: about 72 bytes).
const MERGE_BYTES_PER_FAMILY: usize = 72;
/// Identity responses of an output too large to keep as text are inflated
/// from the gzip member through a 43 KiB window each; at most this many at
/// once (1.4 MiB): past it, the client that started its response first is
/// closed, as the slowest holders of old outputs are. Prometheus always
/// asks for gzip.
const MAX_INFLATING_RESPONSES: usize = 32;

/// Why the loop could not start or went on no longer.
#[derive(Debug)]
pub enum RunError {
    /// `address` as `-e` gave it: the port alone, or the address and port.
    Bind {
        address: String,
        error: io::Error,
    },
    Poll(io::Error),
    Signals(io::Error),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Bind { address, error } => {
                write!(f, "cannot listen on {address} (--export_to): {error}")
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
    /// When its current response started, in responses: the oldest is
    /// closed first when inflate windows are over budget.
    response_number: u64,
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
    /// Responses started so far: numbers them for `Connection::response_number`.
    responses_started: u64,
    /// Bytes of bodies held and being received, across containers.
    budget: Budget,
    rounds: Rounds<Waiter>,
    round_timer: Option<TimerId>,
    /// When a client last wanted protobuf: containers are asked for it only
    /// while one does.
    protobuf_demand: ProtobufDemand,
    empty_body: Rc<Vec<u8>>,
    health_body: Rc<Vec<u8>>,
    /// The page at `/`, built once: the configuration does not change.
    landing_body: Rc<Vec<u8>>,
    shutdown: bool,
}

/// Runs the sidecar until SIGTERM or SIGINT.
pub fn run(config: Config) -> Result<(), RunError> {
    let poll = Poll::new().map_err(RunError::Poll)?;
    let (mut listener, listening) =
        listen::bind(config.export_ip, config.export_port).map_err(|error| RunError::Bind {
            address: match config.export_ip {
                Some(ip) => SocketAddr::new(ip, config.export_port).to_string(),
                None => format!("port {}", config.export_port),
            },
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
    sidecar.log_start(listening);
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
                        negotiate::ACCEPT_TEXT,
                    ),
                    last_tick: first_tick,
                    deadline: None,
                }
            })
            .collect();
        let scraped: Vec<(&str, u16, &str)> = config
            .containers
            .iter()
            .map(|container| {
                (
                    container.name.as_str(),
                    container.port,
                    container.path.as_str(),
                )
            })
            .collect();
        let landing_page = downstream::landing_page(&config.endpoint, &scraped);
        let client_cap =
            client_table::client_cap(MAX_CLIENTS, open_files_limit(), config.containers.len());
        let max_body = config.max_body_bytes;
        Sidecar {
            output: Output::new(&config.container_label),
            responses_started: 0,
            budget: Budget::new(
                config.containers.len(),
                HELD_BODIES_EIGHTHS_OF_MAX_BODY * (max_body / 8),
            ),
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
            protobuf_demand: ProtobufDemand::default(),
            empty_body: Rc::new(Vec::new()),
            health_body: Rc::new(b"ok\n".to_vec()),
            landing_body: Rc::new(landing_page),
            shutdown: false,
        }
    }

    fn log_start(&self, listening: Listening) {
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
            "serving {} on {listening}, scraping {cadence}: {}",
            self.config.endpoint,
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
        // Protobuf only while a client wants it: a text-only Prometheus
        // costs nothing extra.
        scraper
            .upstream
            .set_accept(self.protobuf_demand.upstream_accept(now));
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

    fn on_upstream_ready(&mut self, index: usize, now: Instant) {
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
            self.end_round_if_done(now);
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

    fn on_scrape_deadline(&mut self, index: usize, now: Instant) {
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
    fn scrape_ended(&mut self, index: usize, now: Instant) {
        self.end_scrape_bookkeeping(index);
        self.resume_paused_scrapes(now);
    }

    /// Its deadline goes, its buffer (shrunk after an outsized body) goes
    /// to the pool of idle buffers if the receive budget has room (else it
    /// is freed), and the output served is out of date.
    fn end_scrape_bookkeeping(&mut self, index: usize) {
        let scraper = &mut self.scrapers[index];
        if let Some(timer) = scraper.deadline.take() {
            self.timers.cancel(timer);
        }
        scraper.upstream.shrink();
        self.budget.end(index, scraper.upstream.take_buffer());
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
                response_number: 0,
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
                    connection.client.reject(error);
                    self.set_client_deadline(id, now + WRITE_TIMEOUT);
                }
            }
        }
    }

    fn answer(&mut self, id: ClientId, request: Request, now: Instant) {
        if request.route == Route::Metrics {
            self.protobuf_demand.note(now, request.format);
        }
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
        let fixed = |body: &Rc<Vec<u8>>| (Body::Shared(body.clone()), Coding::Fixed);
        let (status, content_type, (body, coding)) = match request.route {
            Route::Metrics => {
                let (body, coding) = self.metrics_body(now, request.format, request.accepts_gzip);
                if body.own_bytes() > 0 {
                    self.make_room_for_an_inflate_window(id);
                }
                (Status::Ok, request.format.content_type(), (body, coding))
            }
            Route::Health => (
                Status::Ok,
                downstream::TEXT_CONTENT_TYPE,
                fixed(&self.health_body),
            ),
            Route::Landing => (
                Status::Ok,
                downstream::HTML_CONTENT_TYPE,
                fixed(&self.landing_body),
            ),
            Route::NotFound => (
                Status::NotFound,
                downstream::TEXT_CONTENT_TYPE,
                fixed(&self.empty_body),
            ),
            Route::MethodNotAllowed => (
                Status::MethodNotAllowed,
                downstream::TEXT_CONTENT_TYPE,
                fixed(&self.empty_body),
            ),
        };
        self.respond(id, request, status, content_type, coding, body);
    }

    fn respond(
        &mut self,
        id: ClientId,
        request: Request,
        status: Status,
        content_type: &str,
        coding: Coding,
        body: Body,
    ) {
        self.responses_started += 1;
        if let Some(connection) = self.clients.get_mut(id) {
            connection.response_number = self.responses_started;
            connection.client.respond(
                request.length,
                status,
                content_type,
                coding,
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

    /// Closes the clients whose inflated responses started first until
    /// `id` may have a window within [`MAX_INFLATING_RESPONSES`].
    fn make_room_for_an_inflate_window(&mut self, id: ClientId) {
        loop {
            let mut inflating: Vec<(u64, ClientId)> = Vec::new();
            for other in self
                .clients
                .ids_where(|connection| connection.client.own_bytes() > 0)
            {
                if let Some(connection) = self.clients.get_mut(other) {
                    inflating.push((connection.response_number, other));
                }
            }
            if inflating.len() < MAX_INFLATING_RESPONSES {
                return;
            }
            let Some(&(_, oldest)) = inflating
                .iter()
                .filter(|(_, other)| *other != id)
                .min_by_key(|(number, _)| *number)
            else {
                return;
            };
            debug!("closing a client too slow to take its inflated response");
            self.close_client(oldest);
        }
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

    /// The body served for the endpoint in `format`, gzip if `gzip`: built
    /// when some data changed since that format's last build, otherwise the
    /// same shared bytes.
    fn metrics_body(&mut self, now: Instant, format: OutputFormat, gzip: bool) -> (Body, Coding) {
        if let Some(answer) = self.output.current(format, gzip) {
            return answer;
        }
        self.budget.release_pool();
        self.hold_indexes_within_budget(now);
        let process = ProcessStats::read();
        let evicted = self
            .output
            .build(now, format, &mut self.containers, &process, gzip);
        debug!(
            "built the {format:?} output (resident before: {} KiB, receive peak {} KiB): bodies held {} KiB, receive buffers {} KiB, indexes {} KiB, output {} KiB",
            process.resident_bytes >> 10,
            self.budget.peak_receiving() >> 10,
            self.budget.held_total() >> 10,
            self.budget.receiving_total() >> 10,
            self.containers
                .iter()
                .map(|container| container.snapshot().index_bytes())
                .sum::<usize>()
                >> 10,
            self.output.held_bytes() >> 10
        );
        // Nothing needs the indexes until the next build, which will follow
        // new data: receive buffers can use their memory meanwhile.
        for container in &mut self.containers {
            container.release_index();
        }
        for evicted in &evicted {
            for id in self
                .clients
                .ids_where(|connection| connection.client.holds(evicted))
            {
                debug!("closing a client too slow to take its response");
                self.close_client(id);
            }
        }
        self.output
            .current(format, gzip)
            .unwrap_or((Body::empty(), Coding::Identity))
    }

    /// Indexes every up container's body before a build, counting each
    /// index and its merge records against the index budget; a container
    /// whose index would not fit is refused for this build (`over_budget`),
    /// in command-line order, so the first containers are the ones served.
    /// The edition of the other output format, when clients of both are
    /// served, is counted with the bodies: a second format costs indexes,
    /// never memory past the model.
    fn hold_indexes_within_budget(&mut self, now: Instant) {
        let limit = ((self.config.max_body_bytes as f64 * BODIES_AND_INDEXES_PER_MAX_BODY)
            as usize)
            .saturating_sub(self.budget.held_total())
            .saturating_sub(self.output.held_bytes());
        let mut total = 0;
        for (index, container) in self.containers.iter_mut().enumerate() {
            container.prepare_for_merge(now);
            let snapshot = container.snapshot();
            if !snapshot.is_indexed() || snapshot.body_len() == 0 {
                continue;
            }
            let cost = snapshot.index_bytes() + snapshot.family_count() * MERGE_BYTES_PER_FAMILY;
            if total + cost > limit {
                let detail = format!(
                    "its index ({} KiB) would take the indexes of one build past the {} KiB \
                     that the bodies held leave of {BODIES_AND_INDEXES_PER_MAX_BODY} x \
                     --max_body_bytes",
                    cost >> 10,
                    limit >> 10
                );
                container.refuse(now, FailureReason::OverBudget, &detail);
                self.budget.set_held(index, 0);
            } else {
                total += cost;
            }
        }
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
fn take_scrape(
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
        finished.body.clear();
        container.record(
            now,
            Finished {
                outcome: Outcome::Failure(FailureReason::OverBudget),
                duration: finished.duration,
                detail: &detail,
                body: finished.body,
                content_type: None,
            },
        );
    }
    budget.set_held(index, container.snapshot().body_len());
}
