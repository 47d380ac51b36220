//! The server state machine for one Prometheus connection.
//!
//! A [`Client`] owns one accepted socket, the bytes of the request head it
//! is reading, and the response it is writing: a small head of its own plus a
//! [`Body`] that shares ([`Rc`]) bytes already built, so a slow client never
//! costs a copy of the merged exposition (at most a 32 KiB window when it
//! reads a large output's text inflated from the shared gzip member). Requests are answered
//! one at a time in the order they arrive (pipelining), each fully written
//! before the next is parsed.
//!
//! A response that closes the connection (`Connection: close`, HTTP/1.0,
//! 400, 431) ends in a *lingering close*: the sending side is shut down and
//! what the client still sends is read and dropped until it closes too.
//! Closing with request bytes unread would make the kernel answer with a
//! reset that discards the end of the response still in the send buffer
//! (RFC 9112 §9.6).
//!
//! Parsing a request ([`parse_request`]) and writing a response head
//! ([`write_head`]) are pure; only [`Client::read`] and [`Client::write`] touch
//! the socket, and the event loop decides what each request gets.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::rc::Rc;
use std::time::Duration;

use mio::net::TcpStream;

use crate::exposition::negotiate::{Accept, Negotiated};
use crate::serve::encoded::Body;
use crate::serve::encoding;

/// Largest request head accepted; Prometheus sends about 300 bytes. Above
/// this the client gets 431 and is closed.
pub const MAX_REQUEST_HEAD_BYTES: usize = 4096;

/// Headers parsed per request; more is a 431 as well.
const MAX_HEADERS: usize = 32;

/// Reads of [`MAX_REQUEST_HEAD_BYTES`] a lingering client gets per readiness
/// event: a client that keeps sending is left to its deadline rather than
/// holding the loop.
const MAX_LINGER_READS: usize = 16;

/// What a request asks for, once its head is complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET` or `HEAD` of the metrics endpoint.
    Metrics,
    /// `GET` or `HEAD` of `/healthz`.
    Health,
    /// `GET` or `HEAD` of `/` (unless `/` is the endpoint): a page that
    /// links the endpoint, for whoever opens the port in a browser.
    Landing,
    /// Any other path: 404.
    NotFound,
    /// A method other than GET or HEAD on a known path: 405.
    MethodNotAllowed,
}

/// A parsed request head: only the facts the server acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub route: Route,
    /// `HEAD`: answer with the head only.
    pub head_only: bool,
    /// Whether the connection stays open after the response (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// `X-Prometheus-Scrape-Timeout-Seconds`, when sent and valid.
    pub scrape_timeout: Option<Duration>,
    /// What is served: what the `Accept` fields negotiate (text,
    /// `underscores` without one).
    pub negotiated: Negotiated,
    /// `Accept-Encoding` allows gzip (RFC 9110 §12.5.3; Prometheus always
    /// sends `gzip`).
    pub accepts_gzip: bool,
    /// Bytes of the buffer this request used.
    pub length: usize,
}

/// Why a request head could not be accepted; each maps to a status code and
/// the connection is closed after the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// Not HTTP/1.x, or a body we do not read (400).
    Malformed,
    /// Head larger than [`MAX_REQUEST_HEAD_BYTES`] or too many headers (431).
    HeadTooLarge,
}

impl RequestError {
    pub fn status(self) -> Status {
        match self {
            RequestError::Malformed => Status::BadRequest,
            RequestError::HeadTooLarge => Status::HeadersTooLarge,
        }
    }
}

/// Parses one request head from the start of `buffer`. `Ok(None)` means
/// the head is not complete yet.
pub fn parse_request(buffer: &[u8], endpoint: &str) -> Result<Option<Request>, RequestError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let length = match request.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if buffer.len() >= MAX_REQUEST_HEAD_BYTES => {
            return Err(RequestError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::HeadTooLarge),
        Err(_) => return Err(RequestError::Malformed),
    };
    if length > MAX_REQUEST_HEAD_BYTES {
        return Err(RequestError::HeadTooLarge);
    }
    let (Some(method), Some(target), Some(minor_version)) =
        (request.method, request.path, request.version)
    else {
        return Err(RequestError::Malformed);
    };

    // RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with
    // "keep-alive".
    let mut keep_alive = minor_version == 1;
    let mut scrape_timeout = None;
    let mut accept = Accept::default();
    let mut accepts_gzip = false;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("connection") {
            for option in header.value.split(|&byte| byte == b',') {
                let option = option.trim_ascii();
                if option.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if option.eq_ignore_ascii_case(b"keep-alive") && minor_version == 0 {
                    keep_alive = true;
                }
            }
        } else if header.name.eq_ignore_ascii_case("content-length") {
            // A GET with a body is legal but pointless; we do not read
            // bodies, so one would be parsed as the next request.
            if header.value.trim_ascii() != b"0" {
                return Err(RequestError::Malformed);
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(RequestError::Malformed);
        } else if header.name.eq_ignore_ascii_case("accept") {
            // Several fields are one list (RFC 9110 §5.3).
            accept.add_field(header.value);
        } else if header.name.eq_ignore_ascii_case("accept-encoding") {
            // Several fields combine as one list (RFC 9110 §5.3).
            accepts_gzip |= encoding::accepts_gzip(header.value);
        } else if header
            .name
            .eq_ignore_ascii_case("x-prometheus-scrape-timeout-seconds")
        {
            scrape_timeout = std::str::from_utf8(header.value)
                .ok()
                .and_then(|text| text.trim().parse::<f64>().ok())
                .filter(|seconds| seconds.is_finite() && *seconds > 0.0 && *seconds < 86_400.0)
                .map(Duration::from_secs_f64)
                // A positive value below a nanosecond (`1e-91`) rounds to zero.
                .filter(|timeout| !timeout.is_zero());
        }
    }

    // RFC 9112 §3.2.2: a server must accept the absolute-form
    // (`http://host/metrics`), which some proxies send; its path is what
    // follows the authority.
    let target = origin_form(target);
    // The query string is ignored: Prometheus may add `?...` parameters.
    let path = target.split('?').next().unwrap_or(target);
    let head_only = method == "HEAD";
    let known_method = method == "GET" || head_only;
    let route = if path == endpoint {
        if known_method {
            Route::Metrics
        } else {
            Route::MethodNotAllowed
        }
    } else if path == "/healthz" {
        if known_method {
            Route::Health
        } else {
            Route::MethodNotAllowed
        }
    } else if path == "/" {
        if known_method {
            Route::Landing
        } else {
            Route::MethodNotAllowed
        }
    } else {
        Route::NotFound
    };
    Ok(Some(Request {
        route,
        head_only,
        keep_alive,
        scrape_timeout,
        negotiated: accept.negotiate(),
        accepts_gzip,
        length,
    }))
}

/// The origin-form part of a request target: an absolute-form target
/// (`http://authority/path?query`, scheme in any case) loses its scheme and
/// authority; anything else is returned as it is.
fn origin_form(target: &str) -> &str {
    let Some(scheme_end) = target.find("://") else {
        return target;
    };
    let scheme = &target[..scheme_end];
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return target;
    }
    let rest = &target[scheme_end + 3..];
    match rest.find(['/', '?']).map(|path_start| &rest[path_start..]) {
        Some(path) if path.starts_with('/') => path,
        _ => "/",
    }
}

/// Response status codes this server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    HeadersTooLarge,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "HTTP/1.1 200 OK\r\n",
            Status::BadRequest => "HTTP/1.1 400 Bad Request\r\n",
            Status::NotFound => "HTTP/1.1 404 Not Found\r\n",
            Status::MethodNotAllowed => "HTTP/1.1 405 Method Not Allowed\r\n",
            Status::HeadersTooLarge => "HTTP/1.1 431 Request Header Fields Too Large\r\n",
        }
    }
}

/// The content type of the merged exposition for a client that sends no
/// `Accept` (text format 0.0.4; `Negotiated::default().content_type()`).
pub const METRICS_CONTENT_TYPE: &str =
    "text/plain; version=0.0.4; charset=utf-8; escaping=underscores";

/// Content type of the short plain-text bodies (health, errors).
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// Content type of the landing page.
pub const HTML_CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// The page served at `/`: the version, a link to the endpoint and to
/// `/healthz`, and what is scraped (`(name, port, path)` in command-line
/// order). Built once at start; every value is escaped for HTML, though
/// names are DNS labels and paths visible ASCII.
pub fn landing_page(endpoint: &str, containers: &[(&str, u16, &str)]) -> Vec<u8> {
    let mut page = String::new();
    page.push_str(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>",
        env!("CARGO_PKG_NAME"),
        "</title></head>\n<body>\n<h1>",
        env!("CARGO_PKG_NAME"),
        " ",
        env!("CARGO_PKG_VERSION"),
        "</h1>\n"
    ));
    let endpoint = html_escape(endpoint);
    page.push_str(&format!(
        "<p>The metrics of this pod's containers, merged: <a href=\"{endpoint}\">{endpoint}</a></p>\n"
    ));
    page.push_str("<p>Health: <a href=\"/healthz\">/healthz</a></p>\n");
    if containers.is_empty() {
        page.push_str("<p>No container is scraped (all are excluded).</p>\n");
    } else {
        page.push_str("<p>Scraped on 127.0.0.1 (or ::1 where it refuses):</p>\n<ul>\n");
        for (name, port, path) in containers {
            page.push_str(&format!(
                "<li>{}: port {port}, {}</li>\n",
                html_escape(name),
                html_escape(path)
            ));
        }
        page.push_str("</ul>\n");
    }
    page.push_str("</body>\n</html>\n");
    page.into_bytes()
}

/// The five characters HTML gives meaning to in text and quoted attributes.
fn html_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// How a response body is coded, and whether that depended on the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    /// Identity whatever the request asked (health, errors, the landing
    /// page): no `Vary`.
    Fixed,
    /// Identity because the request did not accept gzip (the endpoint,
    /// whose format also follows `Accept`).
    Identity,
    /// `Content-Encoding: gzip`.
    Gzip,
}

/// Appends a response head to `out`.
pub fn write_head(
    out: &mut Vec<u8>,
    status: Status,
    content_type: &str,
    coding: Coding,
    content_length: usize,
    keep_alive: bool,
) {
    out.extend_from_slice(status.line().as_bytes());
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(content_type.as_bytes());
    if coding == Coding::Gzip {
        out.extend_from_slice(b"\r\nContent-Encoding: gzip");
    }
    if coding != Coding::Fixed {
        // Caches must not give one client's format or coding to another
        // (RFC 9110 §12.5.5): the endpoint's answer depends on both.
        out.extend_from_slice(b"\r\nVary: Accept, Accept-Encoding");
    }
    out.extend_from_slice(b"\r\nContent-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(content_length).as_bytes());
    if status == Status::MethodNotAllowed {
        out.extend_from_slice(b"\r\nAllow: GET, HEAD");
    }
    if keep_alive {
        // Needed by HTTP/1.0 clients; harmless for 1.1.
        out.extend_from_slice(b"\r\nConnection: keep-alive\r\n\r\n");
    } else {
        out.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    }
}

/// What happened to a socket operation, classified once here so callers
/// only decide what to do next.
#[derive(Debug, PartialEq, Eq)]
pub enum SocketState {
    /// More may come (reads) or everything was written (writes).
    Continue,
    /// The socket has no more to give or take now; wait for readiness.
    WouldBlock,
    /// The peer closed or the connection broke: drop the client.
    Closed,
    /// The caller's budget for this turn is spent and more remains: come
    /// back on the next turn (no readiness event will say so).
    Yield,
}

/// One accepted connection of a scraper.
pub struct Client {
    pub stream: TcpStream,
    /// Request bytes received and not yet answered.
    input: Vec<u8>,
    /// The head of the response being written, then the body (if any).
    response_head: Vec<u8>,
    response_body: Option<Body>,
    /// Bytes of head + body already written.
    written: usize,
    /// Close once the current response is written.
    close_after_response: bool,
    /// The peer half-closed its side: answer what was asked, then close.
    peer_closed: bool,
    /// The response that closes the connection is written and our side is
    /// shut down: incoming bytes are dropped until the peer closes.
    lingering: bool,
}

impl Client {
    pub fn new(stream: TcpStream) -> Client {
        Client {
            stream,
            input: Vec::new(),
            response_head: Vec::new(),
            response_body: None,
            written: 0,
            close_after_response: false,
            peer_closed: false,
            lingering: false,
        }
    }

    /// Reads what the socket holds, up to the head limit (beyond it the
    /// parse reports 431). Returns `Closed` only on a connection error; an
    /// orderly shutdown by the peer is remembered so queued requests are
    /// still answered. While lingering, bytes are dropped and the peer's
    /// close is `Closed`.
    pub fn read(&mut self) -> SocketState {
        if self.lingering {
            return self.drain();
        }
        loop {
            let used = self.input.len();
            if used >= MAX_REQUEST_HEAD_BYTES {
                // Stop reading: a head this large is answered with 431,
                // and pipelined bytes wait until there is room again.
                return SocketState::Continue;
            }
            let room = MAX_REQUEST_HEAD_BYTES - used;
            self.input.resize(used + room.min(1024), 0);
            match self.stream.read(&mut self.input[used..]) {
                Ok(0) => {
                    self.input.truncate(used);
                    self.peer_closed = true;
                    return SocketState::Continue;
                }
                Ok(read) => self.input.truncate(used + read),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.input.truncate(used);
                    return SocketState::WouldBlock;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {
                    self.input.truncate(used);
                }
                Err(_) => {
                    self.input.truncate(used);
                    return SocketState::Closed;
                }
            }
        }
    }

    /// Reads and drops what a lingering client sends. `Closed` once it has
    /// closed its side (or on error): the socket can now close cleanly.
    fn drain(&mut self) -> SocketState {
        self.input.resize(MAX_REQUEST_HEAD_BYTES, 0);
        let mut state = SocketState::WouldBlock;
        for _ in 0..MAX_LINGER_READS {
            match self.stream.read(&mut self.input) {
                Ok(0) => {
                    state = SocketState::Closed;
                    break;
                }
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    state = SocketState::Closed;
                    break;
                }
            }
        }
        self.input.clear();
        state
    }

    /// Whether the connection is in its lingering close (the event loop
    /// bounds it with a deadline).
    pub fn is_lingering(&self) -> bool {
        self.lingering
    }

    /// The next complete request waiting in the input, if any and if no
    /// response is being written.
    pub fn next_request(&self, endpoint: &str) -> Result<Option<Request>, RequestError> {
        if self.is_writing() || self.lingering {
            return Ok(None);
        }
        parse_request(&self.input, endpoint)
    }

    /// Whether the peer closed its side and nothing complete is left to answer.
    pub fn is_finished(&self) -> bool {
        self.peer_closed && !self.is_writing()
    }

    /// Whether bytes of an unanswered request have arrived (the header
    /// timeout applies rather than the idle one).
    pub fn has_partial_request(&self) -> bool {
        !self.input.is_empty()
    }

    /// Whether the response being written shares `body`.
    pub fn holds(&self, body: &Rc<Vec<u8>>) -> bool {
        self.response_body
            .as_ref()
            .is_some_and(|held| Rc::ptr_eq(held.shared(), body))
    }

    /// Bytes the response being written holds of its own (an inflate
    /// window), beyond what it shares.
    pub fn own_bytes(&self) -> usize {
        self.response_body.as_ref().map_or(0, Body::own_bytes)
    }

    pub fn is_writing(&self) -> bool {
        !self.response_head.is_empty()
    }

    /// Starts the answer to the request that used the first `request_length`
    /// bytes of the input. `body` is shared, never copied; `send_body` is
    /// false for HEAD.
    #[allow(clippy::too_many_arguments)]
    pub fn respond(
        &mut self,
        request_length: usize,
        status: Status,
        content_type: &str,
        coding: Coding,
        body: Body,
        send_body: bool,
        keep_alive: bool,
    ) {
        self.input.drain(..request_length.min(self.input.len()));
        self.response_head.clear();
        write_head(
            &mut self.response_head,
            status,
            content_type,
            coding,
            body.len(),
            keep_alive,
        );
        self.response_body = send_body.then_some(body);
        self.written = 0;
        self.close_after_response = !keep_alive;
    }

    /// Answers a request that could not be parsed, then closes.
    pub fn reject(&mut self, error: RequestError) {
        let length = self.input.len();
        self.respond(
            length,
            error.status(),
            TEXT_CONTENT_TYPE,
            Coding::Fixed,
            Body::empty(),
            true,
            false,
        );
    }

    /// Writes as much of the response as the socket takes, at most
    /// `budget` bytes (which it decrements). `Continue` means the response
    /// is complete: the client may take the next request, or, if the
    /// response closes the connection, the client is now lingering. `Yield`
    /// means the budget ran out first. `Closed` means the connection broke
    /// and is to be dropped.
    pub fn write(&mut self, budget: &mut usize) -> SocketState {
        while self.is_writing() {
            if *budget == 0 {
                return SocketState::Yield;
            }
            let head = &self.response_head;
            let head_len = head.len();
            let body_sent = self.written.saturating_sub(head_len);
            let body: &[u8] = match &mut self.response_body {
                Some(body) => body.next(body_sent),
                None => &[],
            };
            let result = if self.written < head_len {
                let head = &head[self.written..];
                let head = &head[..head.len().min(*budget)];
                let body = &body[..body.len().min(*budget - head.len())];
                self.stream
                    .write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
            } else if body.is_empty() {
                // The whole body is sent (or a member turned out corrupt,
                // which cuts the response short: the client sees it).
                Ok(0)
            } else {
                self.stream.write(&body[..body.len().min(*budget)])
            };
            match result {
                Ok(0) if self.written >= head_len => {
                    let length = self.response_body.as_ref().map_or(0, Body::len);
                    if body_sent < length {
                        // Cut short: never leave the connection in a state
                        // where the next response would be misread.
                        return SocketState::Closed;
                    }
                    self.response_head.clear();
                    self.response_body = None;
                    self.written = 0;
                    if self.close_after_response {
                        // FIN after the last byte; then drain.
                        if self.stream.shutdown(Shutdown::Write).is_err() {
                            return SocketState::Closed;
                        }
                        self.lingering = true;
                        self.input.clear();
                    }
                }
                Ok(0) => return SocketState::Closed,
                Ok(written) => {
                    *budget = budget.saturating_sub(written);
                    let body_written =
                        (self.written + written).saturating_sub(head_len.max(self.written));
                    if let Some(body) = &mut self.response_body {
                        body.consume(body_written);
                    }
                    self.written += written;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return SocketState::WouldBlock
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return SocketState::Closed,
            }
        }
        SocketState::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<Request>, RequestError> {
        parse_request(text.as_bytes(), "/metrics")
    }

    #[test]
    fn the_endpoint_may_be_the_root() {
        let request = parse_request(b"GET / HTTP/1.1\r\n\r\n", "/")
            .unwrap()
            .unwrap();
        assert_eq!(request.route, Route::Metrics);
    }

    #[test]
    fn the_landing_page_links_the_endpoint_and_lists_the_containers() {
        let page = landing_page(
            "/metrics",
            &[
                ("app", 8080, "/metrics"),
                ("consul", 8500, "/m?format=prometheus&x=\"<y>\""),
            ],
        );
        let page = String::from_utf8(page).unwrap();
        let version = env!("CARGO_PKG_VERSION");
        for expected in [
            "<!DOCTYPE html>\n".to_string(),
            format!("<h1>metrics-multiplexer-sidecar {version}</h1>"),
            "<a href=\"/metrics\">/metrics</a>".to_string(),
            "<a href=\"/healthz\">/healthz</a>".to_string(),
            "<li>app: port 8080, /metrics</li>".to_string(),
            "<li>consul: port 8500, /m?format=prometheus&amp;x=&quot;&lt;y&gt;&quot;</li>"
                .to_string(),
        ] {
            assert!(page.contains(&expected), "{expected}\n{page}");
        }
        let empty = String::from_utf8(landing_page("/m", &[])).unwrap();
        assert!(empty.contains("No container is scraped"), "{empty}");
    }

    #[test]
    fn routes_and_methods() {
        let cases: &[(&str, Route, bool)] = &[
            ("GET /metrics HTTP/1.1\r\n\r\n", Route::Metrics, false),
            ("HEAD /metrics HTTP/1.1\r\n\r\n", Route::Metrics, true),
            ("GET /metrics?x=1&y HTTP/1.1\r\n\r\n", Route::Metrics, false),
            ("GET /healthz HTTP/1.1\r\n\r\n", Route::Health, false),
            ("GET /other HTTP/1.1\r\n\r\n", Route::NotFound, false),
            ("GET /metrics/ HTTP/1.1\r\n\r\n", Route::NotFound, false),
            // Absolute-form (RFC 9112 §3.2.2).
            (
                "GET http://pod:13434/metrics HTTP/1.1\r\n\r\n",
                Route::Metrics,
                false,
            ),
            (
                "GET HTTP://pod/metrics?x=1 HTTP/1.1\r\n\r\n",
                Route::Metrics,
                false,
            ),
            (
                "GET http://pod/healthz HTTP/1.1\r\n\r\n",
                Route::Health,
                false,
            ),
            ("GET http://pod HTTP/1.1\r\n\r\n", Route::Landing, false),
            (
                "GET http://pod?/metrics HTTP/1.1\r\n\r\n",
                Route::Landing,
                false,
            ),
            ("GET / HTTP/1.1\r\n\r\n", Route::Landing, false),
            ("HEAD /?x HTTP/1.1\r\n\r\n", Route::Landing, true),
            ("GET //metrics HTTP/1.1\r\n\r\n", Route::NotFound, false),
            ("PUT / HTTP/1.1\r\n\r\n", Route::MethodNotAllowed, false),
            (
                "GET ftp://pod/metrics HTTP/1.1\r\n\r\n",
                Route::NotFound,
                false,
            ),
            (
                "POST /metrics HTTP/1.1\r\n\r\n",
                Route::MethodNotAllowed,
                false,
            ),
            (
                "DELETE /healthz HTTP/1.1\r\n\r\n",
                Route::MethodNotAllowed,
                false,
            ),
        ];
        for (text, route, head_only) in cases {
            let request = parse(text).unwrap().unwrap();
            assert_eq!(request.route, *route, "{text:?}");
            assert_eq!(request.head_only, *head_only, "{text:?}");
            assert_eq!(request.length, text.len(), "{text:?}");
        }
    }

    #[test]
    fn keep_alive_follows_version_and_connection_header() {
        let cases: &[(&str, bool)] = &[
            ("GET /metrics HTTP/1.1\r\n\r\n", true),
            ("GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            (
                "GET /metrics HTTP/1.1\r\nConnection: foo, Close\r\n\r\n",
                false,
            ),
            ("GET /metrics HTTP/1.0\r\n\r\n", false),
            (
                "GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                true,
            ),
        ];
        for (text, keep_alive) in cases {
            assert_eq!(
                parse(text).unwrap().unwrap().keep_alive,
                *keep_alive,
                "{text:?}"
            );
        }
    }

    #[test]
    fn partial_heads_wait_for_more() {
        let full = "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n";
        for end in 0..full.len() {
            assert_eq!(parse(&full[..end]), Ok(None), "{:?}", &full[..end]);
        }
    }

    #[test]
    fn bad_requests() {
        let cases: &[(&str, RequestError)] = &[
            (
                "\x16\x03\x01\x02\x00\x01\x00\x01\x7f\x03\x03",
                RequestError::Malformed,
            ),
            ("GET /metrics SPDY/3\r\n\r\n", RequestError::Malformed),
            (
                "GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
                RequestError::Malformed,
            ),
            (
                "GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                RequestError::Malformed,
            ),
            (
                "GET /metrics HTTP/1.1\r\nbad header\r\n\r\n",
                RequestError::Malformed,
            ),
        ];
        for (text, error) in cases {
            assert_eq!(parse(text), Err(*error), "{text:?}");
        }
    }

    #[test]
    fn oversized_heads_are_431() {
        let long = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n", "a".repeat(5000));
        assert_eq!(parse(&long), Err(RequestError::HeadTooLarge));
        let complete = format!("{long}\r\n");
        assert_eq!(parse(&complete), Err(RequestError::HeadTooLarge));
        let many: String = (0..40).map(|i| format!("H{i}: v\r\n")).collect();
        let text = format!("GET /metrics HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(&text), Err(RequestError::HeadTooLarge));
    }

    #[test]
    fn prometheus_scrape_timeout_header() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("10", Some(Duration::from_secs(10))),
            ("0.5", Some(Duration::from_millis(500))),
            ("0", None),
            ("1e-91", None),
            ("1e-9", Some(Duration::from_nanos(1))),
            ("-1", None),
            ("NaN", None),
            ("soon", None),
        ];
        for (value, expected) in cases {
            let text = format!(
                "GET /metrics HTTP/1.1\r\nX-Prometheus-Scrape-Timeout-Seconds: {value}\r\n\r\n"
            );
            assert_eq!(
                parse(&text).unwrap().unwrap().scrape_timeout,
                *expected,
                "{value}"
            );
        }
    }

    #[test]
    fn response_heads() {
        let mut out = Vec::new();
        write_head(
            &mut out,
            Status::Ok,
            METRICS_CONTENT_TYPE,
            Coding::Identity,
            12,
            true,
        );
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8; \
             escaping=underscores\r\nVary: Accept, Accept-Encoding\r\nContent-Length: 12\r\n\
             Connection: keep-alive\r\n\r\n"
        );
        out.clear();
        write_head(
            &mut out,
            Status::MethodNotAllowed,
            TEXT_CONTENT_TYPE,
            Coding::Fixed,
            0,
            false,
        );
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 0\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\n"
        );
        out.clear();
        write_head(
            &mut out,
            Status::Ok,
            METRICS_CONTENT_TYPE,
            Coding::Gzip,
            7,
            true,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8; \
             escaping=underscores\r\nContent-Encoding: gzip\r\nVary: Accept, Accept-Encoding\r\n\
             Content-Length: 7\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn accept_encoding_is_read_from_every_field() {
        let cases: &[(&str, bool)] = &[
            ("GET /metrics HTTP/1.1\r\n\r\n", false),
            (
                "GET /metrics HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n",
                true,
            ),
            (
                "GET /metrics HTTP/1.1\r\naccept-encoding: gzip;q=0\r\n\r\n",
                false,
            ),
            (
                "GET /metrics HTTP/1.1\r\nAccept-Encoding: br\r\nAccept-Encoding: gzip\r\n\r\n",
                true,
            ),
        ];
        for (text, gzip) in cases {
            assert_eq!(
                parse(text).unwrap().unwrap().accepts_gzip,
                *gzip,
                "{text:?}"
            );
        }
    }

    /// Several `Accept` fields are one list (RFC 9110 §5.3); the sidecar
    /// once read only the last.
    #[test]
    fn accept_is_read_from_every_field() {
        use crate::exposition::negotiate::{Escaping, MediaType};
        let cases: &[(&str, MediaType, Escaping)] = &[
            ("GET /metrics HTTP/1.1\r\n\r\n", MediaType::Text, Escaping::Underscores),
            (
                "GET /metrics HTTP/1.1\r\nAccept: application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited\r\nAccept: text/plain\r\n\r\n",
                MediaType::Protobuf,
                Escaping::Underscores,
            ),
            (
                "GET /metrics HTTP/1.1\r\naccept: text/plain;q=0.1\r\nAccept: application/openmetrics-text;version=1.0.0;escaping=allow-utf-8\r\n\r\n",
                MediaType::OpenMetrics1,
                Escaping::AllowUtf8,
            ),
            (
                "GET /metrics HTTP/1.1\r\nAccept: application/unknown;escaping=values\r\nAccept: text/plain\r\n\r\n",
                MediaType::Text,
                Escaping::Values,
            ),
        ];
        for (text, media_type, escaping) in cases {
            let negotiated = parse(text).unwrap().unwrap().negotiated;
            assert_eq!(
                (negotiated.media_type, negotiated.escaping),
                (*media_type, *escaping),
                "{text:?}"
            );
        }
    }
}
