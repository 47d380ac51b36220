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
//! The loop's own side of each responsibility is a room of its own under
//! `event_loop/`: scrapes (`scraping`), serving a client within a turn's
//! budget (`serving`), the metrics body within the memory budget
//! (`metrics_body`) and rounds (`on_demand`: a round of scrapes on demand,
//! and in either mode a protobuf request held while containers it would get
//! text from are scraped for protobuf, see `catch_up`). This file keeps
//! what they share: the `Sidecar` they act on, the tokens and their
//! dispatch, the timers' dispatch, and registering and closing connections.
//!
//! Two modes ([`ScrapeMode`]). `Every(interval)`: each container is scraped
//! on a fixed cadence and requests are answered at once from the latest
//! data, except the first protobuf request after a text-only spell, held for
//! a catch-up. `OnDemand`: nothing runs between requests; a request for the
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

use crate::config::{Config, ScrapeMode};
use crate::exposition::negotiate::{self, Demand};
use crate::scrape::budget::Budget;
use crate::scrape::catch_up::CatchUp;
use crate::scrape::container::ContainerState;
use crate::scrape::rounds::Rounds;
use crate::scrape::upstream::Upstream;
use crate::serve::client_table::{self, ClientId, ClientTable};
use crate::serve::downstream::{self, Client};
use crate::serve::listen::{self, Listening};
use crate::serve::output::Output;
use crate::timer::{TimerId, TimerWheel};

mod metrics_body;
mod on_demand;
mod scraping;
mod serving;

use on_demand::Waiter;
use serving::{Connection, REQUEST_HEAD_TIMEOUT};

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const FIRST_UPSTREAM: usize = 2;
/// Client tokens start far above any container count.
const FIRST_CLIENT: usize = 1 << 20;

/// Open client connections at most; past it, a new connection takes the
/// room of the longest-idle one, or waits in the kernel's accept queue
/// while none is idle. Each costs at most a 4 KiB request buffer. Fewer when
/// the open files limit is low: see `client_table::client_cap`.
const MAX_CLIENTS: usize = 512;
/// The latest bodies of all containers may hold this many eighths of
/// `--max_body_bytes` together (15.5 MiB by default: four bodies of 4 MB,
/// three at the 4 MiB limit, which leaves room for the index of a build and
/// the output): see the README's memory model. A body past it is refused
/// (`over_budget`). Receive buffers get about the largest body held and an
/// eighth (`budget`).
const HELD_BODIES_EIGHTHS_OF_MAX_BODY: usize = 31;
/// A response not fully taken by the client in this time is abandoned
/// (a response being written, `serving`; a held one answered, `on_demand`).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// Whether a protobuf client must wait for a protobuf scrape of it.
    catch_up: CatchUp,
}

struct Sidecar {
    config: Config,
    poll: Poll,
    listener: TcpListener,
    /// What is known of each container; `scrapers[i]` scrapes `containers[i]`.
    containers: Vec<ContainerState>,
    scrapers: Vec<Scraper>,
    clients: ClientTable<Connection>,
    /// The accept queue was left non-empty because the table was full (of
    /// clients none of which was idle) or `accept` failed.
    accept_blocked: bool,
    /// Clients become idle so far: orders those of the same instant.
    idle_order: u64,
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
    demand: Demand,
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
                    catch_up: CatchUp::default(),
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
            idle_order: 0,
            turns: Vec::new(),
            turns_now: Vec::new(),
            timers,
            fired: Vec::new(),
            round_timer: None,
            demand: Demand::default(),
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

    // ---- connections: register, close --------------------------------------

    /// Accepts until the queue is empty. A full table makes room for each
    /// new client by closing its longest-idle one, if it has an idle one
    /// (see `client_table`); else the rest wait in the accept queue.
    fn accept_clients(&mut self, now: Instant) {
        loop {
            let make_room = if self.clients.is_full() {
                match self.clients.longest_idle(Connection::idle_since) {
                    Some(idle) => Some(idle),
                    None => {
                        self.accept_blocked = true;
                        return;
                    }
                }
            } else {
                None
            };
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
            // Closed only now that a connection is there to take its room.
            if let Some(idle) = make_room {
                debug!("closing the longest-idle client to make room for a new one");
                self.close_client(idle);
            }
            let _ = stream.set_nodelay(true);
            self.idle_order += 1;
            let connection = Connection::new(Client::new(stream), now, (now, self.idle_order));
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

    // ---- timers and housekeeping -------------------------------------------

    fn expire_timers(&mut self, now: Instant) {
        let mut fired = std::mem::take(&mut self.fired);
        self.timers.expire(now, &mut fired);
        for key in fired.drain(..) {
            match key {
                TimerKey::ScrapeTick(index) => {
                    self.on_scrape_tick(index, now);
                    self.advance_round(now);
                }
                TimerKey::ScrapeDeadline(index) => {
                    self.on_scrape_deadline(index, now);
                    self.advance_round(now);
                }
                TimerKey::ClientDeadline(id) => self.on_client_deadline(id, now),
                TimerKey::RoundDeadline => self.on_round_deadline(now),
            }
        }
        self.fired = fired;
    }

    fn end_of_batch(&mut self, now: Instant) {
        self.clients.end_of_batch();
        // A client that closed or became idle in this batch makes room for
        // one waiting in the accept queue.
        if self.accept_blocked {
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
