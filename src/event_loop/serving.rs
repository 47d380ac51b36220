//! Serving one client, the loop's side of it: a turn reads, answers the
//! requests that arrived and writes within the turn's budget (requests and
//! bytes), a client whose budget ran out queued for another turn after the
//! next poll; the deadline of each state (request head, write, idle,
//! linger); what each route is answered with; and the cap on identity
//! responses inflated from the gzip member at once. The socket calls are
//! `Client`'s; accepting, registering and closing a connection stay in the
//! loop.

use std::rc::Rc;
use std::time::{Duration, Instant};

use log::debug;

use crate::exposition::negotiate::Richness;
use crate::serve::client_table::ClientId;
use crate::serve::downstream::{self, Client, Coding, Request, Route, SocketState, Status};
use crate::serve::encoded::Body;
use crate::timer::TimerId;

use super::{Sidecar, TimerKey, WRITE_TIMEOUT};

/// A request head must arrive whole within this time of its first byte
/// (or of the connection opening): slow-loris clients are closed.
pub(super) const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A kept-alive connection with no request for this long is closed.
/// Longer than the usual 60 s scrape interval so Prometheus can reuse it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
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
/// Identity responses of an output too large to keep as text are inflated
/// from the gzip member through a 43 KiB window each; at most this many at
/// once (1.4 MiB): past it, the client that started its response first is
/// closed, as the slowest holders of old outputs are. Prometheus always
/// asks for gzip.
const MAX_INFLATING_RESPONSES: usize = 32;

/// One accepted client and its deadline.
pub(super) struct Connection {
    pub(super) client: Client,
    deadline: Instant,
    pub(super) timer: Option<TimerId>,
    /// Parked until the on-demand round ends; reads nothing meanwhile.
    pub(super) waiting_for_round: bool,
    /// In `Sidecar::turns`: its budget ran out with work left.
    queued: bool,
    /// When its current response started, in responses: the oldest is
    /// closed first when inflate windows are over budget.
    response_number: u64,
    /// When it last became idle (accepted, or a response written), and the
    /// loop's count of clients become idle then, which orders those of the
    /// same instant: the longest idle is closed first to make room for a
    /// new client (`client_table`).
    idle_since: (Instant, u64),
}

impl Connection {
    /// A client just accepted, with no deadline armed yet; idle since
    /// `idle_since` until its first request arrives.
    pub(super) fn new(client: Client, now: Instant, idle_since: (Instant, u64)) -> Connection {
        Connection {
            client,
            deadline: now,
            timer: None,
            waiting_for_round: false,
            queued: false,
            response_number: 0,
            idle_since,
        }
    }

    /// When it became idle, if it has no request in progress: nothing
    /// being read (bytes of a request head), answered or written, held in a
    /// round or catch-up, queued for a turn, or lingering after a closing
    /// response. Such a client may be closed to make room for a new one.
    pub(super) fn idle_since(&self) -> Option<(Instant, u64)> {
        let busy = self.waiting_for_round
            || self.queued
            || self.client.is_writing()
            || self.client.has_partial_request()
            || self.client.is_lingering();
        (!busy).then_some(self.idle_since)
    }
}

impl Sidecar {
    pub(super) fn on_client_ready(&mut self, id: ClientId, now: Instant) {
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
    pub(super) fn serve_client(&mut self, id: ClientId, now: Instant) {
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
                        self.idle_order += 1;
                        connection.idle_since = (now, self.idle_order);
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
            self.demand.note(now, Richness::of(request.negotiated));
            if self.wait_for_round(id, request, now) {
                return;
            }
        }
        let fixed = |body: &Rc<Vec<u8>>| (Body::Shared(body.clone()), Coding::Fixed);
        let (status, content_type, (body, coding)) = match request.route {
            Route::Metrics => {
                let served = request.negotiated;
                let (body, coding) = self.metrics_body(now, served.kind(), request.accepts_gzip);
                self.make_room_for_the_body(id, &request, &body);
                (Status::Ok, served.content_type(), (body, coding))
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

    pub(super) fn respond(
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
    pub(super) fn take_turns(&mut self, now: Instant) {
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

    /// Makes room for the inflate window of `body` if the response to
    /// `request` will send it. A HEAD response is its head only (with the
    /// Content-Length a GET gets, see `Client::respond`), so it takes no
    /// window and closes no other client for one.
    pub(super) fn make_room_for_the_body(&mut self, id: ClientId, request: &Request, body: &Body) {
        if body.own_bytes() > 0 && !request.head_only {
            self.make_room_for_an_inflate_window(id);
        }
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

    pub(super) fn park(&mut self, id: ClientId) {
        if let Some(connection) = self.clients.get_mut(id) {
            connection.waiting_for_round = true;
        }
    }

    pub(super) fn set_client_deadline(&mut self, id: ClientId, deadline: Instant) {
        let Some(connection) = self.clients.get_mut(id) else {
            return;
        };
        if let Some(timer) = connection.timer.take() {
            self.timers.cancel(timer);
        }
        connection.deadline = deadline;
        connection.timer = Some(self.timers.insert(deadline, TimerKey::ClientDeadline(id)));
    }

    pub(super) fn on_client_deadline(&mut self, id: ClientId, now: Instant) {
        let Some(connection) = self.clients.get_mut(id) else {
            return;
        };
        connection.timer = None;
        if connection.deadline <= now {
            self.close_client(id);
        }
    }
}
