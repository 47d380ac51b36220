//! The client state machine for one container: one nonblocking connection,
//! kept alive across scrapes, that sends `GET <path>` and reads the response
//! into a buffer of its own until the body is complete or the scrape failed.
//!
//! Every scrape ends in exactly one [`Finished`] record (outcome, duration,
//! detail, body); a partial body is never handed out. Head parsing and body
//! framing live in [`response`], which loopback address a connection goes
//! to (127.0.0.1, or ::1 where it refuses) in [`loopback`]; this module only
//! does the socket calls of one connection and keeps the phase. It never
//! reads the clock: the loop passes `now` and arms the deadline.

pub mod loopback;
pub mod receive_buffer;
pub mod response;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::scrape::{FailureReason, Finished, Outcome};
use loopback::Loopbacks;
use receive_buffer::ReceiveBuffer;
use response::{Limits, Progress, ResponseDecoder};

/// Bytes asked of the socket per read when nothing better is known.
const READ_CHUNK: usize = 64 * 1024;
/// Room on top of the expected body. The head is gone from the buffer by
/// the time the body is read (see `HEAD_READ`), so this is slack: it keeps
/// the last read of a steady exporter's body short of its room, which is
/// what tells that nothing else is waiting in the socket (framing rule 8);
/// a read that fills its room costs one more read to look.
const BODY_SLACK: usize = 1024;
/// Most bytes read while the head is incomplete. The decoder moves the
/// body bytes that arrive with the head down over it; read alone, the head
/// brings few of them, and a body with a `Content-Length` lands where it
/// stays (one more read, against moving a whole body received with its
/// head). A chunked body is compacted over its framing either way.
const HEAD_READ: usize = 2048;

/// Asked before the receive buffer grows: the pod's budget across
/// containers decides (see [`crate::scrape::budget`]), and may hand a larger idle
/// buffer instead. Refused, the scrape pauses: it reads nothing more until
/// [`Upstream::resume`].
pub trait Allowance {
    /// How the receive buffer may grow to `capacity` bytes.
    fn grow(&mut self, capacity: usize) -> Growth;
}

pub use crate::scrape::budget::Growth;

/// Where the current scrape is. `Idle` may hold an open keep-alive
/// connection for the next scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Idle,
    Connecting,
    SendingRequest,
    ReadingResponse,
}

impl Phase {
    /// Named in log lines, as nginx names its upstream phases.
    pub fn describe(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Connecting => "while connecting",
            Phase::SendingRequest => "while sending the request",
            Phase::ReadingResponse => "while reading the response",
        }
    }
}

/// The request of a scrape: keep-alive, no compression (the body is parsed
/// in place), the given `Accept`; `Host` is the address connected to
/// (`127.0.0.1:port` or `[::1]:port`).
fn request(path: &str, host: SocketAddr, accept: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\n\
         Host: {host}\r\n\
         User-Agent: metrics-multiplexer-sidecar/{version}\r\n\
         Accept: {accept}\r\n\
         Accept-Encoding: identity\r\n\
         \r\n",
        version = env!("CARGO_PKG_VERSION"),
    )
    .into_bytes()
}

/// One container's scrape connection.
pub struct Upstream {
    /// Where connections go: 127.0.0.1, or ::1 where it refuses.
    loopbacks: Loopbacks,
    /// The address of the connection in use, once connected: the `Host`
    /// of `request`, and the address a successful scrape reports.
    connected_to: SocketAddr,
    token: Token,
    /// The whole request, built again only when `accept` or the address
    /// connected to changes.
    request: Vec<u8>,
    path: String,
    accept: String,
    stream: Option<TcpStream>,
    phase: Phase,
    /// Request bytes already sent.
    sent: usize,
    /// The connection carried an earlier response: if it turns out closed
    /// before any byte of this response, retry once on a fresh one.
    reused: bool,
    retried: bool,
    decoder: ResponseDecoder,
    received: ReceiveBuffer,
    /// What a failed scrape hands over: always empty, so that the receive
    /// buffer keeps its initialised bytes.
    no_body: Vec<u8>,
    /// Size of the last complete body: how much to reserve next time.
    last_body_len: usize,
    max_body_bytes: usize,
    started_at: Option<Instant>,
    /// The error text of the last failure, for the one log line on change.
    last_error: String,
    /// Reading stopped because the budget refused a larger buffer.
    paused: bool,
}

impl Upstream {
    /// `accept` is the `Accept` header value of the requests (see
    /// [`Upstream::set_accept`]).
    pub fn new(
        port: u16,
        path: &str,
        token: Token,
        max_body_bytes: usize,
        accept: &str,
    ) -> Upstream {
        let loopbacks = Loopbacks::new(port);
        let connected_to = loopbacks.address();
        Upstream {
            loopbacks,
            connected_to,
            token,
            request: request(path, connected_to, accept),
            path: path.to_string(),
            accept: accept.to_string(),
            stream: None,
            phase: Phase::Idle,
            sent: 0,
            reused: false,
            retried: false,
            decoder: ResponseDecoder::new(Limits {
                max_head_bytes: 16 * 1024,
                max_body_bytes,
            }),
            received: ReceiveBuffer::default(),
            no_body: Vec::new(),
            last_body_len: 0,
            max_body_bytes,
            started_at: None,
            last_error: String::new(),
            paused: false,
        }
    }

    /// The `Accept` header of the next requests (the loop asks for
    /// protobuf only while a client wants it); the format is not this
    /// module's business, only the header. Takes effect at the next `start`.
    pub fn set_accept(&mut self, accept: &str) {
        if self.accept != accept && !self.in_flight() {
            self.accept.clear();
            self.accept.push_str(accept);
            self.request = request(&self.path, self.connected_to, accept);
        }
    }

    /// The `Content-Type` of the last complete response (None when it had
    /// none): how its body is to be read.
    pub fn content_type(&self) -> Option<&[u8]> {
        self.decoder.content_type()
    }

    pub fn in_flight(&self) -> bool {
        self.phase != Phase::Idle
    }

    /// Starts a scrape, reusing the kept-alive connection when there is one.
    /// Returns a record only if the scrape failed at once.
    pub fn start(&mut self, registry: &Registry, now: Instant) -> Option<Finished<'_>> {
        debug_assert!(!self.in_flight());
        self.started_at = Some(now);
        self.retried = false;
        let outcome = self.begin(registry)?;
        Some(self.finished(outcome, now))
    }

    /// The record of the scrape that just ended with `outcome`.
    fn finished(&mut self, outcome: Outcome, now: Instant) -> Finished<'_> {
        let duration = self
            .started_at
            .map_or(Duration::ZERO, |start| now.saturating_duration_since(start));
        let detail = match outcome {
            Outcome::Success => "",
            Outcome::Failure(_) => self.last_error.as_str(),
        };
        Finished {
            outcome,
            duration,
            detail,
            body: match outcome {
                Outcome::Success => self.received.hand_over(),
                Outcome::Failure(_) => {
                    self.no_body.clear();
                    &mut self.no_body
                }
            },
            content_type: self.decoder.content_type(),
            answered_on: match outcome {
                Outcome::Success => Some(self.connected_to),
                Outcome::Failure(_) => None,
            },
        }
    }

    fn begin(&mut self, registry: &Registry) -> Option<Outcome> {
        self.paused = false;
        self.decoder.reset();
        self.received.clear();
        self.sent = 0;
        if self.stream.is_some() {
            self.reused = true;
            self.phase = Phase::SendingRequest;
            return self.send_request(registry);
        }
        self.reused = false;
        let address = self.loopbacks.first();
        self.connect(registry, address)
    }

    /// Opens a connection to `address` (the loopback `Loopbacks` chose).
    fn connect(&mut self, registry: &Registry, address: SocketAddr) -> Option<Outcome> {
        self.phase = Phase::Connecting;
        match TcpStream::connect(address) {
            Ok(mut stream) => {
                if let Err(error) = registry.register(
                    &mut stream,
                    self.token,
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    return Some(self.fail(registry, FailureReason::IoError, &error));
                }
                // Nagle would hold back nothing useful: the request is one write.
                let _ = stream.set_nodelay(true);
                self.stream = Some(stream);
                None
            }
            Err(error) => self.connect_failed(registry, error),
        }
    }

    /// The connect to the loopback address being tried failed: the other
    /// one is tried if this one refused, and a failure of that other one is
    /// a refusal of both (see `loopback`'s rules 2 and 4).
    fn connect_failed(&mut self, registry: &Registry, error: io::Error) -> Option<Outcome> {
        let tried = self.loopbacks.address();
        if self.loopbacks.is_fallback() {
            let first = SocketAddr::new(self.loopbacks.other_ip(), tried.port());
            let text = if error.kind() == io::ErrorKind::ConnectionRefused {
                format!("connection refused on {first} and on {tried}")
            } else {
                format!("connection refused on {first}, and {tried} failed: {error}")
            };
            let error = io::Error::new(io::ErrorKind::ConnectionRefused, text);
            return Some(self.fail(registry, FailureReason::Refused, &error));
        }
        if error.kind() == io::ErrorKind::ConnectionRefused {
            if let Some(other) = self.loopbacks.refused() {
                self.close(registry);
                return self.connect(registry, other);
            }
        }
        let reason = classify(&error);
        Some(self.fail(registry, reason, &error))
    }

    /// The connection is established: its address is remembered for the
    /// next ones, and is the request's `Host`.
    fn connected(&mut self) {
        self.loopbacks.connected();
        let address = self.loopbacks.address();
        if address != self.connected_to {
            self.connected_to = address;
            self.request = request(&self.path, address, &self.accept);
        }
    }

    /// Handles readiness of the socket. Events may be spurious: every step
    /// checks what the socket really says. Returns a record when the scrape
    /// ended.
    pub fn on_ready(
        &mut self,
        registry: &Registry,
        now: Instant,
        allowance: &mut dyn Allowance,
    ) -> Option<Finished<'_>> {
        self.stream.as_ref()?;
        let outcome = match self.phase {
            Phase::Idle => self.check_idle_connection(registry),
            Phase::Connecting => self.finish_connect(registry),
            Phase::SendingRequest => self.send_request(registry),
            Phase::ReadingResponse if self.paused => None,
            Phase::ReadingResponse => self.read_response(registry, allowance),
        }?;
        Some(self.finished(outcome, now))
    }

    /// Whether the scrape waits for room in the budget.
    pub fn is_paused(&self) -> bool {
        self.paused && self.phase == Phase::ReadingResponse
    }

    /// Reads again after a pause: bytes may have waited in the socket with
    /// no new readiness event to tell.
    pub fn resume(
        &mut self,
        registry: &Registry,
        now: Instant,
        allowance: &mut dyn Allowance,
    ) -> Option<Finished<'_>> {
        if !self.is_paused() {
            return None;
        }
        self.paused = false;
        let outcome = self.read_response(registry, allowance)?;
        Some(self.finished(outcome, now))
    }

    /// The most a receive buffer holds with this body limit: the body and
    /// room for the response head.
    pub fn buffer_limit(max_body_bytes: usize) -> usize {
        max_body_bytes + 64 * 1024
    }

    /// What the next scrape's body is expected to need: the last body and
    /// its slack, or one read's worth when nothing is known yet.
    /// (Not the most a body may take: the budget keeps room for the first
    /// scrape in flight, and one that hangs would then hold every other.)
    pub fn expected_buffer(&self) -> usize {
        if self.last_body_len > 0 {
            self.last_body_len + BODY_SLACK
        } else {
            READ_CHUNK
        }
    }

    /// The buffer the next scrape reads into (before [`Upstream::start`]);
    /// its stale bytes are room.
    pub fn set_buffer(&mut self, buffer: Vec<u8>) {
        if !self.in_flight() {
            self.received = ReceiveBuffer::from_stale(buffer);
        }
    }

    /// Takes the receive buffer of an idle upstream (after a finished
    /// scrape: usually the previous body's allocation), for the pool.
    pub fn take_buffer(&mut self) -> Vec<u8> {
        if self.in_flight() {
            return Vec::new();
        }
        self.received.take()
    }

    /// The scrape deadline passed: the scrape in flight, if any, fails.
    pub fn on_timeout(&mut self, registry: &Registry, now: Instant) -> Option<Finished<'_>> {
        if !self.in_flight() {
            return None;
        }
        let error = io::Error::new(io::ErrorKind::TimedOut, "scrape timeout");
        let outcome = self.fail(registry, FailureReason::Timeout, &error);
        Some(self.finished(outcome, now))
    }

    /// Drops the connection, e.g. at shutdown.
    pub fn close(&mut self, registry: &Registry) {
        if let Some(mut stream) = self.stream.take() {
            let _ = registry.deregister(&mut stream);
        }
        self.phase = Phase::Idle;
    }

    /// Gives memory back after an outsized body: keep about twice the usual.
    pub fn shrink(&mut self) {
        let keep = (self.last_body_len * 2).max(READ_CHUNK);
        if self.received.capacity() > keep * 2 {
            self.received.shrink_to(keep);
        }
    }

    fn finish_connect(&mut self, registry: &Registry) -> Option<Outcome> {
        let stream = self.stream.as_ref()?;
        // mio's recipe for a nonblocking connect: a writable event, then
        // `take_error`, then `peer_addr` to tell a spurious event.
        match stream.take_error() {
            Ok(None) => {}
            Ok(Some(error)) | Err(error) => return self.connect_failed(registry, error),
        }
        match stream.peer_addr() {
            Ok(_) => {
                self.connected();
                self.phase = Phase::SendingRequest;
                self.send_request(registry)
            }
            Err(error) if error.kind() == io::ErrorKind::NotConnected => None,
            Err(error) => {
                let reason = classify(&error);
                Some(self.fail(registry, reason, &error))
            }
        }
    }

    fn send_request(&mut self, registry: &Registry) -> Option<Outcome> {
        while self.sent < self.request.len() {
            let stream = self.stream.as_mut()?;
            match stream.write(&self.request[self.sent..]) {
                Ok(0) => return self.connection_lost(registry, None),
                Ok(written) => self.sent += written,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return None,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return self.connection_lost(registry, Some(error)),
            }
        }
        self.phase = Phase::ReadingResponse;
        // No read now: the answer cannot come before the request, and its
        // arrival on this registered socket is a new readiness edge. Reading
        // here would cost one failed syscall per scrape.
        None
    }

    fn read_response(
        &mut self,
        registry: &Registry,
        allowance: &mut dyn Allowance,
    ) -> Option<Outcome> {
        loop {
            let filled = self.received.len();
            // Never hold more than the limit plus a head: a container that
            // sends 50 MB costs us at most that.
            let limit = Upstream::buffer_limit(self.max_body_bytes);
            if filled >= limit {
                let error = io::Error::other(format!(
                    "response of at least {filled} bytes over the body limit of {} bytes plus 64 KiB for the head (--max_body_bytes)",
                    self.max_body_bytes
                ));
                return Some(self.fail(registry, FailureReason::BodyTooLarge, &error));
            }
            // A steady exporter's body is expected to end where the last one
            // did (and the slack above): reads go up to there, in a
            // buffer made exactly that large, so it is not reallocated, nor
            // touched (made resident) past it. A buffer grown by half would
            // no longer fit the pool of idle buffers (budget.rs), and each
            // scrape would map and fault in a fresh one. Past that end, reads
            // fill the room the buffer has, and it grows only when full.
            let expected_end = match self.last_body_len {
                0 => 0,
                last => last + BODY_SLACK,
            };
            let room = self.received.capacity() - filled;
            let (want, exact) = if filled < expected_end {
                (expected_end - filled, true)
            } else if room > 0 {
                (room, false)
            } else {
                (READ_CHUNK, false)
            };
            let want = want.min(limit - filled);
            let head_incomplete = self.decoder.status().is_none();
            if filled + want > self.received.capacity() {
                // Grow by half at least (amortised), never past the limit,
                // and only as far as the budget allows.
                let capacity = self.received.capacity();
                let target = if exact {
                    filled + want
                } else {
                    (filled + want).max(capacity + capacity / 2).min(limit)
                };
                match allowance.grow(target) {
                    Growth::Grow => self.received.reserve_exact(target - filled),
                    Growth::Adopt(buffer) => self.received.adopt(buffer),
                    Growth::Pause => {
                        self.paused = true;
                        return None;
                    }
                }
            }
            let want = if head_incomplete {
                want.min(HEAD_READ)
            } else {
                want
            };
            let stream = self.stream.as_mut()?;
            let result = stream.read(self.received.room(want));
            match result {
                Ok(0) => {
                    if !self.decoder.started() && self.received.is_empty() {
                        return self.connection_lost(registry, None);
                    }
                    let result = self.decoder.finish_at_eof(&mut self.received);
                    return Some(self.decoded(registry, result, false));
                }
                Ok(read) => {
                    self.received.commit(read);
                    let result = self.decoder.advance(&mut self.received);
                    match result {
                        Ok(Progress::NeedMore) => {}
                        // A read that filled all the room it was given may
                        // have left bytes in the socket, and no new readiness
                        // edge will report them: look before the connection
                        // is kept for the next scrape (framing rule 8).
                        Ok(Progress::Complete {
                            keep_alive: true, ..
                        }) if read == want => return self.read_past_response(registry),
                        _ => return Some(self.decoded(registry, result, true)),
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return None,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    if !self.decoder.started() && self.received.is_empty() {
                        return self.connection_lost(registry, Some(error));
                    }
                    let reason = classify(&error);
                    return Some(self.fail(registry, reason, &error));
                }
            }
        }
    }

    /// The response is complete and the socket may hold more. One read
    /// tells: `WouldBlock` means nothing followed; any byte is one the server
    /// sent after the response, which the decoder refuses; 0 is the server's
    /// close, which only ends the keep-alive.
    fn read_past_response(&mut self, registry: &Registry) -> Option<Outcome> {
        let mut probe = [0u8; 1];
        loop {
            let stream = self.stream.as_mut()?;
            let (result, connection_open) = match stream.read(&mut probe) {
                Ok(0) => (self.decoder.finish_at_eof(&mut self.received), false),
                // Not stored: the buffer may be full, and the byte is
                // refused whatever it is.
                Ok(_) => (Err(response::ResponseError::BytesAfterResponse), true),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    // The response itself is whole; a broken socket only
                    // ends the keep-alive.
                    let open = error.kind() == io::ErrorKind::WouldBlock;
                    (self.decoder.advance(&mut self.received), open)
                }
            };
            return Some(self.decoded(registry, result, connection_open));
        }
    }

    fn decoded(
        &mut self,
        registry: &Registry,
        result: Result<Progress, response::ResponseError>,
        connection_open: bool,
    ) -> Outcome {
        match result {
            Ok(Progress::Complete {
                body_len,
                keep_alive,
            }) => {
                response::Received::truncate(&mut self.received, body_len);
                self.last_body_len = body_len;
                self.phase = Phase::Idle;
                if !(keep_alive && connection_open) {
                    self.close(registry);
                }
                Outcome::Success
            }
            Ok(Progress::NeedMore) => {
                // At EOF the decoder never asks for more; treat it as a
                // close mid-response rather than trust that.
                let error = io::Error::other("connection closed before the response ended");
                self.fail(registry, FailureReason::Closed, &error)
            }
            Err(error) => {
                let reason = error.reason();
                let error = io::Error::other(error.to_string());
                self.fail(registry, reason, &error)
            }
        }
    }

    /// The connection ended before any byte of the response. On a reused
    /// keep-alive connection this is the server having closed it while idle
    /// (RFC 9112 §9.3.1): retry once on a new connection, uncounted.
    fn connection_lost(
        &mut self,
        registry: &Registry,
        error: Option<io::Error>,
    ) -> Option<Outcome> {
        if self.reused && !self.retried {
            self.retried = true;
            self.close(registry);
            return self.begin(registry);
        }
        let error = error.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the response",
            )
        });
        let reason = match classify(&error) {
            FailureReason::IoError => FailureReason::Closed,
            reason => reason,
        };
        Some(self.fail(registry, reason, &error))
    }

    /// An idle kept-alive connection became readable: the server closed it
    /// (or sent bytes nobody asked for). Either way it is not reusable.
    fn check_idle_connection(&mut self, registry: &Registry) -> Option<Outcome> {
        let stream = self.stream.as_mut()?;
        let mut probe = [0u8; 64];
        match stream.read(&mut probe) {
            Err(error)
                if error.kind() == io::ErrorKind::WouldBlock
                    || error.kind() == io::ErrorKind::Interrupted => {}
            _ => self.close(registry),
        }
        None
    }

    fn fail(&mut self, registry: &Registry, reason: FailureReason, error: &io::Error) -> Outcome {
        self.paused = false;
        use std::fmt::Write as _;
        let phase = self.phase.describe();
        self.last_error.clear();
        let _ = write!(self.last_error, "{error} {phase}");
        // A failed connection is never reused: its state is unknown.
        self.close(registry);
        self.received.clear();
        self.shrink();
        Outcome::Failure(reason)
    }
}

/// Maps a socket error to a failure reason, in one place.
fn classify(error: &io::Error) -> FailureReason {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => FailureReason::Refused,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => FailureReason::Reset,
        io::ErrorKind::TimedOut => FailureReason::Timeout,
        io::ErrorKind::UnexpectedEof => FailureReason::Closed,
        _ => FailureReason::IoError,
    }
}
