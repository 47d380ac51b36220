//! Response head and body framing for one scrape: bytes in, decisions out.
//!
//! The upstream appends socket bytes to one reused buffer (any
//! [`Received`]: its `ReceiveBuffer`, or a `Vec<u8>`) and calls
//! [`ResponseDecoder::advance`] after every read. The decoder works in place:
//! the head (and any 1xx heads before it) is drained from the front, which
//! moves down only the first body bytes that arrived with it; chunked data is
//! compacted over its chunk framing with `copy_within`. So between calls
//! `buf[..decoded]` is body and the rest is input not yet consumed, and on
//! [`Progress::Complete`] the buffer holds exactly the body
//! (`buf.len() == body_len`).
//!
//! How the body length is decided, following RFC 9112 §6.3 "Message Body
//! Length" for the response to a GET (numbers are referred to in the code):
//!
//! 1. The head is parsed with `httparse::Response`, across partial reads
//!    (incomplete is not an error), only once an empty line has arrived so a
//!    head dripped byte by byte is not parsed again for every byte. A head
//!    longer than `max_head_bytes` is an error. 1xx responses (§6.3 item 1:
//!    no body) are drained and parsing continues with the next head, at most
//!    [`MAX_INFORMATIONAL_RESPONSES`] of them; 101 is an error since we never
//!    ask to switch protocols.
//! 2. Any final status other than 200 is an `HttpStatus` failure, decided as
//!    soon as the head is complete (the body is not read; the caller closes).
//!    204 and 304 have no body (§6.3 item 1) but are failures all the same,
//!    as in Prometheus' own scraper.
//! 3. `Transfer-Encoding` (§6.3 item 4, §7): only exactly `chunked` is
//!    decoded. Any other coding cannot be decoded and is `BadResponse`, as is
//!    `Transfer-Encoding` together with `Content-Length` (§6.3 item 3 lets a
//!    recipient reject this; a client of a local exporter is strict) and
//!    `Transfer-Encoding` in an HTTP/1.0 response (§6.1: faulty framing).
//! 4. `Content-Length` (§6.3 items 5 and 6, RFC 9110 §8.6): the same value
//!    repeated (in several fields or as a list) is fine; differing values or
//!    anything but digits is `BadResponse`; a value over `max_body_bytes` is
//!    `BodyTooLarge` at once.
//! 5. Otherwise the body runs until the server closes (§6.3 item 8), and the
//!    connection cannot be kept alive.
//! 6. A `Content-Encoding` other than `identity` is an `Encoding` failure: we
//!    ask for `identity` and do not decompress (RFC 9110 §8.4).
//! 7. Keep-alive (RFC 9112 §9.3): HTTP/1.1 unless `Connection: close`;
//!    HTTP/1.0 only with `Connection: keep-alive`; never for a body delimited
//!    by close.
//! 8. Bytes after the end of the response are `BytesAfterResponse`, whenever
//!    they arrive before the caller takes the body: we never pipeline, so
//!    they answer nothing we asked. Either the framing we followed is wrong
//!    (a `Content-Length` shorter than the body, whose cut last line could
//!    still parse as another value) or the server is out of step and they
//!    would be taken as the answer to the next request (RFC 9112 §9.3.2: a
//!    response is matched to a request by order alone). The caller reads
//!    until `WouldBlock` after the end of a keep-alive response, so where
//!    reads happen to be cut does not change the outcome.
//! 9. Line endings (RFC 9112 §2.2): a bare LF ends a line of the head, and
//!    only there; after the head, CRLF is required (chunk-size lines, the
//!    end of chunk data, trailer lines, the final empty line; §7.1) and a
//!    bare LF is `BareLineFeed`. The head is lenient because the RFC lets a
//!    recipient be and real exporters need it: httparse and Go's textproto
//!    (so Prometheus itself) accept an LF-only head, which hand-written
//!    exporters (a shell script behind `nc` or `socat`) send. Chunked framing
//!    is strict because every real chunked encoder (Go's net/http, hyper,
//!    Node, Python) writes CRLF, and a bare LF there is what parsers disagree
//!    on and request smuggling rides on: hyper refuses it, Go since 1.23.8
//!    (CVE-2025-22871) and Netty since 4.1.125 (CVE-2025-58056) too.
//!
//! After an error the decoder keeps returning it; the caller must close the
//! connection. After `Complete` it keeps returning `Complete` until
//! [`ResponseDecoder::reset`], unless more bytes are appended (rule 8).

use std::fmt;
use std::ops::{DerefMut, Range};

use crate::scrape::FailureReason;

/// The bytes of one response as the decoder sees them: received and not yet
/// consumed, compacted in place. A `Vec<u8>` is one; the upstream's
/// `ReceiveBuffer` is another, which keeps its spare room initialised.
pub trait Received: DerefMut<Target = [u8]> {
    /// Removes `range`; the bytes after it move down.
    fn remove(&mut self, range: Range<usize>);
    /// Keeps the first `len` bytes.
    fn truncate(&mut self, len: usize);
}

impl Received for Vec<u8> {
    fn remove(&mut self, range: Range<usize>) {
        self.drain(range);
    }

    fn truncate(&mut self, len: usize) {
        Vec::truncate(self, len);
    }
}

/// Header fields accepted in one head (httparse needs a fixed array).
/// Exporters send fewer than ten.
pub const MAX_HEADERS: usize = 64;
/// 1xx responses skipped before the final one.
pub const MAX_INFORMATIONAL_RESPONSES: u8 = 8;
/// Hex digits in one chunk-size, leading zeros included: 16 digits are all
/// of a `u64`, far above any body limit.
pub const MAX_CHUNK_SIZE_DIGITS: u8 = 16;
/// Bytes of chunk extensions (ignored) over the whole body, so a server
/// cannot keep us busy with endless extensions that never reach the buffer.
pub const MAX_CHUNK_EXTENSION_BYTES: usize = 16 * 1024;

/// Size limits of one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one head (status line and header fields); also bounds the
    /// trailer section of a chunked body, which is discarded.
    pub max_head_bytes: usize,
    /// Bytes of the decoded body.
    pub max_body_bytes: usize,
}

/// What [`ResponseDecoder::advance`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Read more bytes and call again.
    NeedMore,
    /// The body is `buf[..body_len]` (and `buf.len() == body_len`).
    Complete { body_len: usize, keep_alive: bool },
}

/// Why a response cannot be used. Each maps to one [`FailureReason`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// The first bytes are not `HTTP/`.
    NotHttp,
    /// httparse rejected the head.
    BadHead(httparse::Error),
    /// No complete head within `max_head_bytes`.
    HeadTooLarge,
    /// More than [`MAX_INFORMATIONAL_RESPONSES`] 1xx responses.
    TooManyInformational,
    /// 101 Switching Protocols, never asked for.
    SwitchingProtocols,
    /// A final status other than 200.
    Status(u16),
    /// A transfer coding other than exactly `chunked`.
    UnsupportedTransferEncoding,
    /// `Transfer-Encoding` in an HTTP/1.0 response.
    TransferEncodingInHttp10,
    /// Both `Transfer-Encoding` and `Content-Length`.
    TransferEncodingWithContentLength,
    /// A `Content-Length` that is not a decimal number.
    InvalidContentLength,
    /// `Content-Length` values that differ.
    ConflictingContentLength,
    /// `Content-Length` over `max_body_bytes`.
    ContentLengthTooLarge { length: u64, limit: usize },
    /// A `Content-Encoding` other than `identity`.
    ContentEncoding,
    /// A chunk-size that is missing or not hexadecimal.
    InvalidChunkSize,
    /// A chunk-size of more than [`MAX_CHUNK_SIZE_DIGITS`] digits.
    ChunkSizeTooLong,
    /// A chunk-size line with a bad character or not ending in CRLF.
    BadChunkLine,
    /// More than [`MAX_CHUNK_EXTENSION_BYTES`] of chunk extensions.
    ChunkExtensionsTooLarge,
    /// Chunk data not followed by CRLF.
    ChunkDataNotTerminated,
    /// A trailer line not ending in CRLF.
    BadTrailer,
    /// A trailer section over `max_head_bytes`.
    TrailersTooLarge,
    /// The received body (chunked or until close) grew over `max_body_bytes`:
    /// `at_least` is what was received, or announced by a chunk size, so far.
    BodyTooLarge { at_least: u64, limit: usize },
    /// The connection closed before any byte of the response.
    ClosedBeforeResponse,
    /// The connection closed in the middle of the head.
    ClosedInHead,
    /// The connection closed before the body was complete.
    ClosedInBody,
    /// Bytes after the end of the response, which nobody asked for.
    BytesAfterResponse,
    /// A line of the chunked framing ended by LF alone.
    BareLineFeed,
}

impl ResponseError {
    /// The failure counter's reason.
    pub fn reason(self) -> FailureReason {
        use ResponseError::*;
        match self {
            Status(_) => FailureReason::HttpStatus,
            ContentLengthTooLarge { .. } | BodyTooLarge { .. } => FailureReason::BodyTooLarge,
            ContentEncoding => FailureReason::Encoding,
            ClosedBeforeResponse | ClosedInHead | ClosedInBody => FailureReason::Closed,
            NotHttp
            | BadHead(_)
            | HeadTooLarge
            | TooManyInformational
            | SwitchingProtocols
            | UnsupportedTransferEncoding
            | TransferEncodingInHttp10
            | TransferEncodingWithContentLength
            | InvalidContentLength
            | ConflictingContentLength
            | InvalidChunkSize
            | ChunkSizeTooLong
            | BadChunkLine
            | ChunkExtensionsTooLarge
            | ChunkDataNotTerminated
            | BadTrailer
            | TrailersTooLarge
            | BytesAfterResponse
            | BareLineFeed => FailureReason::BadResponse,
        }
    }
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ResponseError::*;
        match self {
            NotHttp => f.write_str("response does not start with HTTP/"),
            BadHead(error) => write!(f, "invalid response head: {error}"),
            HeadTooLarge => f.write_str("response head larger than the head limit"),
            TooManyInformational => f.write_str("too many 1xx responses"),
            SwitchingProtocols => f.write_str("unexpected 101 Switching Protocols"),
            Status(code) => write!(f, "HTTP status {code}"),
            UnsupportedTransferEncoding => f.write_str("Transfer-Encoding other than chunked"),
            TransferEncodingInHttp10 => f.write_str("Transfer-Encoding in an HTTP/1.0 response"),
            TransferEncodingWithContentLength => {
                f.write_str("both Transfer-Encoding and Content-Length")
            }
            InvalidContentLength => f.write_str("invalid Content-Length"),
            ConflictingContentLength => f.write_str("conflicting Content-Length values"),
            // The size and the limit: what an operator needs to choose
            // a new --max_body_bytes.
            ContentLengthTooLarge { length, limit } => write!(
                f,
                "Content-Length of {length} bytes over the body limit of {limit} bytes (--max_body_bytes)"
            ),
            ContentEncoding => f.write_str("Content-Encoding other than identity"),
            InvalidChunkSize => f.write_str("invalid chunk size"),
            ChunkSizeTooLong => f.write_str("chunk size with too many digits"),
            BadChunkLine => f.write_str("malformed chunk size line"),
            ChunkExtensionsTooLarge => f.write_str("chunk extensions too large"),
            ChunkDataNotTerminated => f.write_str("chunk data not followed by CRLF"),
            BadTrailer => f.write_str("malformed trailer line"),
            TrailersTooLarge => f.write_str("trailer section larger than the head limit"),
            BodyTooLarge { at_least, limit } => write!(
                f,
                "body of at least {at_least} bytes over the body limit of {limit} bytes (--max_body_bytes)"
            ),
            ClosedBeforeResponse => f.write_str("connection closed before the response"),
            ClosedInHead => f.write_str("connection closed while reading the response head"),
            ClosedInBody => f.write_str("connection closed while reading the body"),
            BytesAfterResponse => f.write_str("bytes after the end of the response"),
            BareLineFeed => f.write_str("chunked framing line ended by LF without CR"),
        }
    }
}

/// Decodes one response at a time; reused across requests with `reset`.
#[derive(Debug)]
pub struct ResponseDecoder {
    limits: Limits,
    state: State,
    started: bool,
    status: Option<u16>,
    /// Where the search for the end of the head resumes.
    head_scanned: usize,
    informational: u8,
    /// The final head's `Content-Type` value (empty when none), kept for
    /// the caller to choose a reader: framing does not depend on it.
    content_type: Vec<u8>,
}

#[derive(Debug)]
enum State {
    Head,
    Body { framing: Framing, keep_alive: bool },
    Done { body_len: usize, keep_alive: bool },
    Failed(ResponseError),
}

#[derive(Debug)]
enum Framing {
    Length(usize),
    Chunked(ChunkedDecoder),
    UntilClose,
}

impl ResponseDecoder {
    pub fn new(limits: Limits) -> Self {
        ResponseDecoder {
            limits,
            state: State::Head,
            started: false,
            status: None,
            head_scanned: 0,
            informational: 0,
            content_type: Vec::new(),
        }
    }

    /// Prepares for the next response (keep-alive reuse); the caller clears
    /// the buffer.
    pub fn reset(&mut self) {
        let mut content_type = std::mem::take(&mut self.content_type);
        content_type.clear();
        *self = ResponseDecoder::new(self.limits);
        self.content_type = content_type;
    }

    /// The `Content-Type` of the final response head, once complete (None
    /// when it has none).
    pub fn content_type(&self) -> Option<&[u8]> {
        (!self.content_type.is_empty()).then_some(self.content_type.as_slice())
    }

    /// Whether any byte of a response was received since `reset` (a reused
    /// keep-alive connection that closes before this is retried once).
    pub fn started(&self) -> bool {
        self.started
    }

    /// The final status code, once its head is complete.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// `buf` holds all bytes received for this response that were not yet
    /// consumed; the decoder consumes and compacts them in place. Call after
    /// each read that appended bytes.
    pub fn advance(&mut self, buf: &mut impl Received) -> Result<Progress, ResponseError> {
        let result = self.step(buf);
        if let Err(error) = result {
            self.state = State::Failed(error);
        }
        result
    }

    /// The peer closed the connection (a read returned 0): `Complete` for a
    /// body delimited by close, otherwise a `Closed...` error (or the error
    /// the bytes already received amount to).
    pub fn finish_at_eof(&mut self, buf: &mut impl Received) -> Result<Progress, ResponseError> {
        let result = match self.step(buf) {
            Ok(Progress::NeedMore) => self.complete_at_eof(buf),
            other => other,
        };
        match result {
            Ok(Progress::Complete { body_len, .. }) => {
                // The connection is gone, whatever the head said.
                self.state = State::Done {
                    body_len,
                    keep_alive: false,
                };
                Ok(Progress::Complete {
                    body_len,
                    keep_alive: false,
                })
            }
            Ok(Progress::NeedMore) => Ok(Progress::NeedMore),
            Err(error) => {
                self.state = State::Failed(error);
                Err(error)
            }
        }
    }

    /// The outcome of a response still incomplete when the peer closed.
    fn complete_at_eof(&self, buf: &[u8]) -> Result<Progress, ResponseError> {
        match &self.state {
            State::Head if !self.started => Err(ResponseError::ClosedBeforeResponse),
            State::Head => {
                // A truncated head that is also malformed reports the
                // malformation: "garbage" says more than "closed".
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                match httparse::Response::new(&mut headers).parse(buf) {
                    Err(error) => Err(ResponseError::BadHead(error)),
                    Ok(_) => Err(ResponseError::ClosedInHead),
                }
            }
            // Rule 5: the close is the end of the body.
            State::Body {
                framing: Framing::UntilClose,
                ..
            } => Ok(Progress::Complete {
                body_len: buf.len(),
                keep_alive: false,
            }),
            _ => Err(ResponseError::ClosedInBody),
        }
    }

    fn step(&mut self, buf: &mut impl Received) -> Result<Progress, ResponseError> {
        if !buf.is_empty() {
            self.started = true;
        }
        loop {
            match &mut self.state {
                State::Failed(error) => return Err(*error),
                State::Done {
                    body_len,
                    keep_alive,
                } => {
                    // Rule 8.
                    if buf.len() > *body_len {
                        return Err(ResponseError::BytesAfterResponse);
                    }
                    return Ok(Progress::Complete {
                        body_len: *body_len,
                        keep_alive: *keep_alive,
                    });
                }
                State::Head => match self.parse_head(buf)? {
                    Some((framing, keep_alive)) => {
                        self.state = State::Body {
                            framing,
                            keep_alive,
                        }
                    }
                    None => return Ok(Progress::NeedMore),
                },
                State::Body {
                    framing,
                    keep_alive,
                } => {
                    let max_body = self.limits.max_body_bytes;
                    let max_trailers = self.limits.max_head_bytes;
                    let done = match framing {
                        Framing::Length(length) => buf.len() >= *length,
                        Framing::Chunked(chunked) => chunked.decode(buf, max_body, max_trailers)?,
                        Framing::UntilClose => {
                            if buf.len() > max_body {
                                return Err(ResponseError::BodyTooLarge {
                                    at_least: buf.len() as u64,
                                    limit: max_body,
                                });
                            }
                            false
                        }
                    };
                    if !done {
                        return Ok(Progress::NeedMore);
                    }
                    let body_len = match framing {
                        Framing::Length(length) => *length,
                        Framing::Chunked(chunked) => chunked.body_len,
                        Framing::UntilClose => buf.len(),
                    };
                    self.state = State::Done {
                        body_len,
                        keep_alive: *keep_alive,
                    };
                }
            }
        }
    }

    /// Rules 1 to 7 for one head. `Ok(None)`: the head is not complete yet.
    fn parse_head(
        &mut self,
        buf: &mut impl Received,
    ) -> Result<Option<(Framing, bool)>, ResponseError> {
        loop {
            // Rule 1: cheap early rejection of a peer that does not speak HTTP.
            let prefix_len = buf.len().min(5);
            if buf[..prefix_len] != b"HTTP/"[..prefix_len] {
                return Err(ResponseError::NotHttp);
            }
            let head_end = find_head_end(&buf[..], self.head_scanned);
            if head_end.is_none() && buf.len() < self.limits.max_head_bytes {
                self.head_scanned = buf.len();
                return Ok(None);
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            let head_len = match response.parse(&buf[..]).map_err(ResponseError::BadHead)? {
                httparse::Status::Complete(head_len) => head_len,
                httparse::Status::Partial if buf.len() >= self.limits.max_head_bytes => {
                    return Err(ResponseError::HeadTooLarge)
                }
                httparse::Status::Partial => {
                    self.head_scanned = buf.len();
                    return Ok(None);
                }
            };
            if head_len > self.limits.max_head_bytes {
                return Err(ResponseError::HeadTooLarge);
            }
            // httparse only completes a head with a status code and version.
            let code = response.code.unwrap_or(0);
            let http10 = response.version == Some(0);
            match code {
                101 => return Err(ResponseError::SwitchingProtocols),
                100..=199 => {
                    self.informational += 1;
                    if self.informational > MAX_INFORMATIONAL_RESPONSES {
                        return Err(ResponseError::TooManyInformational);
                    }
                    buf.remove(0..head_len);
                    self.head_scanned = 0;
                    continue;
                }
                _ => {}
            }
            self.status = Some(code);
            // Rule 2.
            if code != 200 {
                return Err(ResponseError::Status(code));
            }
            let fields = HeadFields::read(response.headers)?;
            self.content_type.clear();
            if let Some(header) = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-type"))
            {
                self.content_type.extend_from_slice(trim_ows(header.value));
            }
            let framing = if fields.chunked {
                // Rule 3.
                if fields.content_length.is_some() {
                    return Err(ResponseError::TransferEncodingWithContentLength);
                }
                if http10 {
                    return Err(ResponseError::TransferEncodingInHttp10);
                }
                Framing::Chunked(ChunkedDecoder::default())
            } else if let Some(length) = fields.content_length {
                // Rule 4.
                if length > self.limits.max_body_bytes as u64 {
                    return Err(ResponseError::ContentLengthTooLarge {
                        length,
                        limit: self.limits.max_body_bytes,
                    });
                }
                Framing::Length(length as usize)
            } else {
                // Rule 5.
                Framing::UntilClose
            };
            // Rule 6.
            if fields.encoded {
                return Err(ResponseError::ContentEncoding);
            }
            // Rule 7.
            let keep_alive = !matches!(framing, Framing::UntilClose)
                && if http10 {
                    fields.connection_keep_alive
                } else {
                    !fields.connection_close
                };
            // The first body bytes move to the front of the buffer.
            buf.remove(0..head_len);
            return Ok(Some((framing, keep_alive)));
        }
    }
}

/// The end of the head (just past its empty line), searching from `from`
/// (less the two bytes an empty line may straddle). A bare LF ends a head
/// line (rule 9), as httparse reads it.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut index = from.saturating_sub(2);
    while let Some(offset) = buf.get(index..)?.iter().position(|&b| b == b'\n') {
        let newline = index + offset;
        match buf.get(newline + 1..) {
            Some([b'\n', ..]) => return Some(newline + 2),
            Some([b'\r', b'\n', ..]) => return Some(newline + 3),
            _ => index = newline + 1,
        }
    }
    None
}

/// What the framing rules need from the header fields.
#[derive(Default)]
struct HeadFields {
    chunked: bool,
    content_length: Option<u64>,
    encoded: bool,
    connection_close: bool,
    connection_keep_alive: bool,
}

impl HeadFields {
    fn read(headers: &[httparse::Header<'_>]) -> Result<HeadFields, ResponseError> {
        let mut fields = HeadFields::default();
        let mut transfer_codings = 0usize;
        for header in headers {
            let name = header.name;
            if name.eq_ignore_ascii_case("transfer-encoding") {
                // Only exactly one coding, `chunked`, over all the fields.
                for coding in list_elements(header.value) {
                    transfer_codings += 1;
                    if !coding.eq_ignore_ascii_case(b"chunked") || transfer_codings > 1 {
                        return Err(ResponseError::UnsupportedTransferEncoding);
                    }
                    fields.chunked = true;
                }
            } else if name.eq_ignore_ascii_case("content-length") {
                let mut any = false;
                for element in header.value.split(|&b| b == b',') {
                    any = true;
                    let length = parse_decimal(trim_ows(element))
                        .ok_or(ResponseError::InvalidContentLength)?;
                    match fields.content_length {
                        Some(previous) if previous != length => {
                            return Err(ResponseError::ConflictingContentLength)
                        }
                        _ => fields.content_length = Some(length),
                    }
                }
                if !any {
                    return Err(ResponseError::InvalidContentLength);
                }
            } else if name.eq_ignore_ascii_case("content-encoding") {
                if list_elements(header.value)
                    .any(|coding| !coding.eq_ignore_ascii_case(b"identity"))
                {
                    fields.encoded = true;
                }
            } else if name.eq_ignore_ascii_case("connection") {
                for option in list_elements(header.value) {
                    if option.eq_ignore_ascii_case(b"close") {
                        fields.connection_close = true;
                    } else if option.eq_ignore_ascii_case(b"keep-alive") {
                        fields.connection_keep_alive = true;
                    }
                }
            }
        }
        // An empty `Transfer-Encoding:` names no coding we can decode.
        if transfer_codings == 0
            && headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
        {
            return Err(ResponseError::UnsupportedTransferEncoding);
        }
        if fields.connection_close {
            fields.connection_keep_alive = false;
        }
        Ok(fields)
    }
}

/// The non-empty elements of a comma-separated field value (RFC 9110 §5.6.1).
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|element| !element.is_empty())
}

fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// `1*DIGIT` as a u64; None when empty, not digits, or overflowing.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &digit| {
        if !digit.is_ascii_digit() {
            return None;
        }
        value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

/// Where the chunked decoder is in the grammar of RFC 9112 §7.1:
/// `*chunk last-chunk trailer-section CRLF`, with
/// `chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// Hex digits of chunk-size (at least one).
    Size,
    /// BWS after the size, before `;` or CR (RFC 9112 §7.1.1).
    SizeWhitespace,
    /// Inside chunk-ext, ignored up to CR.
    Extension,
    /// CR of the size line seen; LF expected.
    SizeLf,
    /// Inside chunk-data.
    Data,
    /// CR expected after chunk-data.
    DataCr,
    /// LF expected after chunk-data.
    DataLf,
    /// After the last-chunk line: a trailer field or the final CRLF.
    TrailerStart,
    /// Inside a trailer field line, discarded up to CR.
    Trailer,
    /// CR of a trailer line seen; LF expected.
    TrailerLf,
    /// CR of the final empty line seen; LF expected.
    EndLf,
    /// The final CRLF was read.
    Done,
}

/// Decodes a chunked body in place: `buf[..body_len]` is decoded data and,
/// between calls, nothing follows it (framing bytes are dropped as read).
#[derive(Debug)]
struct ChunkedDecoder {
    state: ChunkState,
    size: u64,
    size_digits: u8,
    /// Data bytes left in the current chunk.
    remaining: usize,
    body_len: usize,
    extension_bytes: usize,
    trailer_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
            size: 0,
            size_digits: 0,
            remaining: 0,
            body_len: 0,
            extension_bytes: 0,
            trailer_bytes: 0,
        }
    }
}

impl ChunkedDecoder {
    /// Consumes `buf[body_len..]`; returns whether the body is complete.
    /// Bytes after the end stay after `body_len` (rule 8 refuses them).
    fn decode(
        &mut self,
        buf: &mut impl Received,
        max_body: usize,
        max_trailers: usize,
    ) -> Result<bool, ResponseError> {
        let mut read = self.body_len;
        while read < buf.len() && self.state != ChunkState::Done {
            if self.state == ChunkState::Data {
                // Data moves down over the framing bytes read before it.
                let take = self.remaining.min(buf.len() - read);
                if read != self.body_len {
                    buf.copy_within(read..read + take, self.body_len);
                }
                read += take;
                self.body_len += take;
                self.remaining -= take;
                if self.remaining == 0 {
                    self.state = ChunkState::DataCr;
                }
                continue;
            }
            let byte = buf[read];
            read += 1;
            self.state = self.framing_byte(byte, max_body, max_trailers)?;
        }
        if self.state == ChunkState::Done {
            // Whatever follows is not ours; Done's check reports it.
            buf.remove(self.body_len..read);
            return Ok(true);
        }
        buf.truncate(self.body_len);
        Ok(false)
    }

    /// The state after one framing byte (any state but Data and Done).
    fn framing_byte(
        &mut self,
        byte: u8,
        max_body: usize,
        max_trailers: usize,
    ) -> Result<ChunkState, ResponseError> {
        use ChunkState::*;
        Ok(match (self.state, byte) {
            (Size, _) if byte.is_ascii_hexdigit() => {
                self.size_digits += 1;
                if self.size_digits > MAX_CHUNK_SIZE_DIGITS {
                    return Err(ResponseError::ChunkSizeTooLong);
                }
                let digit = (byte as char).to_digit(16).unwrap_or(0);
                // 16 digits fit a u64 exactly, so this cannot overflow.
                self.size = (self.size << 4) | u64::from(digit);
                Size
            }
            // Rule 9: after the head, only CRLF ends a line.
            (Size | SizeWhitespace | Extension | DataCr | TrailerStart | Trailer, b'\n') => {
                return Err(ResponseError::BareLineFeed)
            }
            (Size, _) if self.size_digits == 0 => return Err(ResponseError::InvalidChunkSize),
            (Size | SizeWhitespace, b' ' | b'\t') => SizeWhitespace,
            (Size | SizeWhitespace, b';') => self.extension_byte()?,
            (Size | SizeWhitespace | Extension, b'\r') => SizeLf,
            (Size, _) => return Err(ResponseError::InvalidChunkSize),
            (SizeWhitespace, _) => return Err(ResponseError::BadChunkLine),
            (Extension, b'\t') | (Extension, 0x20..=0x7e) | (Extension, 0x80..=0xff) => {
                self.extension_byte()?
            }
            (Extension, _) => return Err(ResponseError::BadChunkLine),
            (SizeLf, b'\n') => self.end_of_size_line(max_body)?,
            (SizeLf, _) => return Err(ResponseError::BadChunkLine),
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Size,
            (DataCr | DataLf, _) => return Err(ResponseError::ChunkDataNotTerminated),
            (TrailerStart, b'\r') => EndLf,
            (Trailer, b'\r') => TrailerLf,
            (TrailerStart | Trailer, _) => {
                self.trailer_bytes += 1;
                if self.trailer_bytes > max_trailers {
                    return Err(ResponseError::TrailersTooLarge);
                }
                Trailer
            }
            (TrailerLf, b'\n') => TrailerStart,
            (EndLf, b'\n') => Done,
            (TrailerLf | EndLf, _) => return Err(ResponseError::BadTrailer),
            (Data | Done, _) => self.state,
        })
    }

    fn extension_byte(&mut self) -> Result<ChunkState, ResponseError> {
        self.extension_bytes += 1;
        if self.extension_bytes > MAX_CHUNK_EXTENSION_BYTES {
            return Err(ResponseError::ChunkExtensionsTooLarge);
        }
        Ok(ChunkState::Extension)
    }

    fn end_of_size_line(&mut self, max_body: usize) -> Result<ChunkState, ResponseError> {
        let size = std::mem::take(&mut self.size);
        self.size_digits = 0;
        if size == 0 {
            return Ok(ChunkState::TrailerStart);
        }
        let room = (max_body - self.body_len.min(max_body)) as u64;
        if size > room {
            return Err(ResponseError::BodyTooLarge {
                at_least: (self.body_len as u64).saturating_add(size),
                limit: max_body,
            });
        }
        self.remaining = size as usize;
        Ok(ChunkState::Data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;
    use ResponseError::*;

    const LIMITS: Limits = Limits {
        max_head_bytes: 1024,
        max_body_bytes: 64,
    };

    #[derive(Debug, PartialEq, Eq)]
    enum Outcome {
        Body(Vec<u8>, bool),
        Error(ResponseError),
        NeedMore,
    }
    use Outcome::NeedMore;

    fn body(bytes: &str, keep_alive: bool) -> Outcome {
        Outcome::Body(bytes.as_bytes().to_vec(), keep_alive)
    }

    /// Feeds `pieces` one read at a time, then the end of the connection if
    /// `eof`, and checks the buffer invariants on the way.
    fn run<'a>(limits: Limits, pieces: impl IntoIterator<Item = &'a [u8]>, eof: bool) -> Outcome {
        let mut decoder = ResponseDecoder::new(limits);
        let mut buf = Vec::new();
        let mut outcome = NeedMore;
        for piece in pieces {
            buf.extend_from_slice(piece);
            outcome = settle(decoder.advance(&mut buf), &buf, limits);
            if outcome != NeedMore {
                break;
            }
        }
        if eof && outcome == NeedMore {
            outcome = settle(decoder.finish_at_eof(&mut buf), &buf, limits);
        }
        outcome
    }

    fn settle(result: Result<Progress, ResponseError>, buf: &[u8], limits: Limits) -> Outcome {
        match result {
            Ok(Progress::NeedMore) => NeedMore,
            Ok(Progress::Complete {
                body_len,
                keep_alive,
            }) => {
                assert_eq!(buf.len(), body_len);
                assert!(body_len <= limits.max_body_bytes);
                Outcome::Body(buf.to_vec(), keep_alive)
            }
            Err(error) => Outcome::Error(error),
        }
    }

    /// The same outcome whole, one byte per read, and split in two at every
    /// position.
    fn check_all_splits(name: &str, input: &[u8], eof: bool, expected: &Outcome) {
        assert_eq!(&run(LIMITS, [input], eof), expected, "{name}: whole");
        assert_eq!(
            &run(LIMITS, input.chunks(1), eof),
            expected,
            "{name}: byte by byte"
        );
        for split in 0..=input.len() {
            let (first, second) = input.split_at(split);
            assert_eq!(
                &run(LIMITS, [first, second], eof),
                expected,
                "{name}: split at {split}"
            );
        }
    }

    fn error(error: ResponseError) -> Outcome {
        Outcome::Error(error)
    }

    #[test]
    fn content_length() {
        let table: &[(&str, &str, Outcome)] = &[
            ("1.1", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", body("hello", true)),
            ("no reason phrase", "HTTP/1.1 200\r\nContent-Length: 5\r\n\r\nhello", body("hello", true)),
            ("bare LF", "HTTP/1.1 200 OK\nContent-Length: 5\n\nhello", body("hello", true)),
            ("name case", "HTTP/1.1 200 OK\r\ncontent-LENGTH: 5\r\n\r\nhello", body("hello", true)),
            ("zero", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", body("", true)),
            ("at the limit", &format!("HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n{}", "x".repeat(64)), body(&"x".repeat(64), true)),
            ("close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello", body("hello", false)),
            ("close in a list", "HTTP/1.1 200 OK\r\nConnection: x, Close\r\nContent-Length: 5\r\n\r\nhello", body("hello", false)),
            ("1.0", "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", body("hello", false)),
            ("1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello", body("hello", true)),
            ("repeated", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", body("hello", true)),
            ("list", "HTTP/1.1 200 OK\r\nContent-Length: 5 , 5\r\n\r\nhello", body("hello", true)),
            ("identity", "HTTP/1.1 200 OK\r\nContent-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello", body("hello", true)),
            ("conflicting", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", error(ConflictingContentLength)),
            ("conflicting list", "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello", error(ConflictingContentLength)),
            ("letters", "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", error(InvalidContentLength)),
            ("sign", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", error(InvalidContentLength)),
            ("empty", "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\nhello", error(InvalidContentLength)),
            ("inner space", "HTTP/1.1 200 OK\r\nContent-Length: 5 5\r\n\r\nhello", error(InvalidContentLength)),
            ("empty list element", "HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\nhello", error(InvalidContentLength)),
            ("overflow", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", error(InvalidContentLength)),
            ("over the limit", "HTTP/1.1 200 OK\r\nContent-Length: 65\r\n\r\n", error(ContentLengthTooLarge { length: 65, limit: 64 })),
            ("gzip", "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello", error(ContentEncoding)),
            ("identity, gzip", "HTTP/1.1 200 OK\r\nContent-Encoding: identity, gzip\r\nContent-Length: 5\r\n\r\nhello", error(ContentEncoding)),
        ];
        for (name, input, expected) in table {
            check_all_splits(name, input.as_bytes(), false, expected);
        }
    }

    /// The final head's `Content-Type` is kept (an informational head's
    /// is not), and forgotten at the next response.
    #[test]
    fn content_type_is_kept_for_the_reader() {
        let limits = Limits {
            max_head_bytes: 1024,
            max_body_bytes: 64,
        };
        let table: &[(&str, Option<&str>)] = &[
            ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", None),
            (
                "HTTP/1.1 200 OK\r\ncontent-type:  application/vnd.google.protobuf; encoding=delimited \r\nContent-Length: 0\r\n\r\n",
                Some("application/vnd.google.protobuf; encoding=delimited"),
            ),
            (
                "HTTP/1.1 100 Continue\r\nContent-Type: x/y\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                None,
            ),
        ];
        let mut decoder = ResponseDecoder::new(limits);
        for (input, expected) in table {
            decoder.reset();
            let mut buf = input.as_bytes().to_vec();
            assert!(
                matches!(decoder.advance(&mut buf), Ok(Progress::Complete { .. })),
                "{input}"
            );
            assert_eq!(
                decoder.content_type(),
                expected.map(str::as_bytes),
                "{input}"
            );
        }
    }

    #[test]
    fn chunked() {
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let table: &[(&str, &str, Outcome)] = &[
            ("one chunk", "5\r\nhello\r\n0\r\n\r\n", body("hello", true)),
            (
                "two chunks",
                "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                body("hello world", true),
            ),
            ("no data", "0\r\n\r\n", body("", true)),
            (
                "hex case and leading zeros",
                "000A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
                body("01234567890123456789", true),
            ),
            (
                "extensions",
                "5;a=b\r\nhello\r\n6 ; c=\"d e\"\t;f\r\n world\r\n0;last\r\n\r\n",
                body("hello world", true),
            ),
            (
                "trailers",
                "5\r\nhello\r\n0\r\nExpires: never\r\nX-Trailer: 1\r\n\r\n",
                body("hello", true),
            ),
            (
                "exactly the limit",
                &format!("40\r\n{}\r\n0\r\n\r\n", "y".repeat(64)),
                body(&"y".repeat(64), true),
            ),
            (
                "sum over the limit",
                &format!(
                    "20\r\n{0}\r\n20\r\n{0}\r\n1\r\nz\r\n0\r\n\r\n",
                    "y".repeat(32)
                ),
                error(BodyTooLarge {
                    at_least: 65,
                    limit: 64,
                }),
            ),
            (
                "one chunk over the limit",
                "41\r\n",
                error(BodyTooLarge {
                    at_least: 65,
                    limit: 64,
                }),
            ),
            ("not hex", "g\r\nhello\r\n", error(InvalidChunkSize)),
            ("no size", "\r\nhello\r\n", error(InvalidChunkSize)),
            ("extension without size", ";a\r\n", error(InvalidChunkSize)),
            ("negative", "-5\r\n", error(InvalidChunkSize)),
            ("bare LF after size", "5\nhello\r\n", error(BareLineFeed)),
            ("junk after size", "5 x\r\nhello\r\n", error(BadChunkLine)),
            ("CR without LF", "5\rhello\r\n", error(BadChunkLine)),
            (
                "control in extension",
                "5;a\x00\r\nhello\r\n",
                error(BadChunkLine),
            ),
            (
                "16 digits",
                "ffffffffffffffff\r\n",
                error(BodyTooLarge {
                    at_least: u64::MAX,
                    limit: 64,
                }),
            ),
            (
                "17 digits",
                "00000000000000001\r\n",
                error(ChunkSizeTooLong),
            ),
            (
                "data too long",
                "5\r\nhello!\r\n0\r\n\r\n",
                error(ChunkDataNotTerminated),
            ),
            (
                "data without LF",
                "5\r\nhello\rX",
                error(ChunkDataNotTerminated),
            ),
            (
                "trailer bare LF",
                "0\r\nX: 1\nY: 2\r\n\r\n",
                error(BareLineFeed),
            ),
            (
                "trailer CR without LF",
                "0\r\nX: 1\rY\r\n\r\n",
                error(BadTrailer),
            ),
            ("final CR without LF", "0\r\n\rX", error(BadTrailer)),
            ("final bare LF", "0\r\n\n", error(BareLineFeed)),
        ];
        for (name, chunks, expected) in table {
            let input = format!("{head}{chunks}");
            check_all_splits(name, input.as_bytes(), false, expected);
        }
    }

    /// Rule 9: LF alone ends a head line, and no line after the head.
    #[test]
    fn line_endings() {
        let table: &[(&str, &str, bool, Outcome)] = &[
            (
                "head LF only",
                "HTTP/1.1 200 OK\nContent-Length: 5\n\nhello",
                false,
                body("hello", true),
            ),
            (
                "head mixed",
                "HTTP/1.1 200 OK\r\nContent-Length: 5\n\r\nhello",
                false,
                body("hello", true),
            ),
            (
                "head LF only, until close",
                "HTTP/1.0 200 OK\nContent-Type: text/plain\n\nhello\n",
                true,
                body("hello\n", false),
            ),
            (
                "head LF only, chunked CRLF",
                "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n5\r\nhello\r\n0\r\n\r\n",
                false,
                body("hello", true),
            ),
            (
                "chunked LF only",
                "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n5\nhello\n0\n\n",
                false,
                error(BareLineFeed),
            ),
            (
                "chunk-size line",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
                false,
                error(BareLineFeed),
            ),
            (
                "chunk-size line after whitespace",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 \nhello\r\n0\r\n\r\n",
                false,
                error(BareLineFeed),
            ),
            (
                "chunk-size line after an extension",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\nhello\r\n0\r\n\r\n",
                false,
                error(BareLineFeed),
            ),
            (
                "end of chunk data",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
                false,
                error(BareLineFeed),
            ),
            (
                "last chunk",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\n\r\n",
                false,
                error(BareLineFeed),
            ),
            (
                "trailer line",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\n\r\n",
                false,
                error(BareLineFeed),
            ),
            (
                "final empty line",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n",
                false,
                error(BareLineFeed),
            ),
            (
                "CR alone in the head",
                "HTTP/1.1 200 OK\rContent-Length: 5\r\n\r\nhello",
                false,
                error(BadHead(httparse::Error::Status)),
            ),
            (
                "CR alone in a chunk-size line",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\rhello\r\n",
                false,
                error(BadChunkLine),
            ),
        ];
        for (name, input, eof, expected) in table {
            check_all_splits(name, input.as_bytes(), *eof, expected);
        }
        assert_eq!(BareLineFeed.reason(), FailureReason::BadResponse);
    }

    #[test]
    fn heads_and_framing_choices() {
        let table: &[(&str, &str, bool, Outcome)] = &[
            ("1.0 until close", "HTTP/1.0 200 OK\r\n\r\nhello", true, body("hello", false)),
            ("1.0 until close, still open", "HTTP/1.0 200 OK\r\n\r\nhello", false, NeedMore),
            ("1.0 keep-alive without length", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nhello", true, body("hello", false)),
            ("1.1 close without length", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello", true, body("hello", false)),
            ("until close, empty", "HTTP/1.1 200 OK\r\n\r\n", true, body("", false)),
            ("until close over the limit", &format!("HTTP/1.0 200 OK\r\n\r\n{}", "x".repeat(65)), false, error(BodyTooLarge { at_least: 65, limit: 64 })),
            ("1xx then 200", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false, body("ok", true)),
            ("101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", false, error(SwitchingProtocols)),
            ("too many 1xx", &"HTTP/1.1 100 Continue\r\n\r\n".repeat(9), false, error(TooManyInformational)),
            ("204", "HTTP/1.1 204 No Content\r\n\r\n", false, error(Status(204))),
            ("304", "HTTP/1.1 304 Not Modified\r\n\r\n", false, error(Status(304))),
            ("404", "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found", false, error(Status(404))),
            ("500 without body read", "HTTP/1.1 500 Oops\r\nContent-Length: 1000\r\n\r\n", false, error(Status(500))),
            ("status before framing", "HTTP/1.1 500 Oops\r\nContent-Length: x\r\n\r\n", false, error(Status(500))),
            ("TE gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, error(UnsupportedTransferEncoding)),
            ("TE gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false, error(UnsupportedTransferEncoding)),
            ("TE chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", false, error(UnsupportedTransferEncoding)),
            ("TE empty", "HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n", false, error(UnsupportedTransferEncoding)),
            ("TE and CL", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", false, error(TransferEncodingWithContentLength)),
            ("TE in 1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, error(TransferEncodingInHttp10)),
            ("chunked gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n", false, error(ContentEncoding)),
            ("until close gzip", "HTTP/1.0 200 OK\r\nContent-Encoding: x-gzip\r\n\r\n", false, error(ContentEncoding)),
            ("garbage", "garbage\r\n\r\n", false, error(NotHttp)),
            ("binary garbage", "\x00\x01\x02", true, error(NotHttp)),
            ("leading empty line", "\r\nHTTP/1.1 200 OK\r\n\r\n", false, error(NotHttp)),
            ("bad status", "HTTP/1.1 abc\r\n\r\n", false, error(BadHead(httparse::Error::Status))),
            ("bad status then close", "HTTP/1.1 abc", true, error(BadHead(httparse::Error::Status))),
            ("bad version", "HTTP/2.0 200 OK\r\n\r\n", false, error(BadHead(httparse::Error::Version))),
            ("bad header", "HTTP/1.1 200 OK\r\nBad Header\r\n\r\n", false, error(BadHead(httparse::Error::HeaderName))),
            ("head over the limit", &format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "v".repeat(1024)), false, error(HeadTooLarge)),
            ("head over the limit, unfinished", &format!("HTTP/1.1 200 OK\r\nX: {}", "v".repeat(1024)), false, error(HeadTooLarge)),
            ("closed before response", "", true, error(ClosedBeforeResponse)),
            ("closed after 1xx", "HTTP/1.1 100 Continue\r\n\r\n", true, error(ClosedInHead)),
        ];
        for (name, input, eof, expected) in table {
            check_all_splits(name, input.as_bytes(), *eof, expected);
        }
    }

    #[test]
    fn too_many_headers() {
        let input = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS + 1)
        );
        let limits = Limits {
            max_head_bytes: 4096,
            ..LIMITS
        };
        assert_eq!(
            run(limits, [input.as_bytes()], false),
            error(BadHead(httparse::Error::TooManyHeaders))
        );
    }

    /// Rule 8, wherever the reads are cut: in the read that ends the body,
    /// or in a later one (the caller reads on until `WouldBlock`).
    #[test]
    fn bytes_after_the_response_are_refused() {
        let table: &[(&str, &str, &str)] = &[
            (
                "content-length, a second response",
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nsmuggled 666\n",
            ),
            (
                "content-length shorter than the body",
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                " world",
            ),
            (
                "chunked",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                "x",
            ),
            (
                "1.0 keep-alive",
                "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello",
                "\r\n",
            ),
        ];
        for (name, response, after) in table {
            let input = format!("{response}{after}");
            for split in 0..=input.len() {
                let (first, second) = input.as_bytes().split_at(split);
                let mut decoder = ResponseDecoder::new(LIMITS);
                let mut buf = first.to_vec();
                let mut result = decoder.advance(&mut buf);
                if result.is_ok() {
                    buf.extend_from_slice(second);
                    result = decoder.advance(&mut buf);
                }
                assert_eq!(result, Err(BytesAfterResponse), "{name}: split at {split}");
                assert_eq!(
                    decoder.advance(&mut buf),
                    result,
                    "{name}: the error sticks"
                );
            }
        }
        // Nothing after the end: Complete, as often as asked.
        let mut decoder = ResponseDecoder::new(LIMITS);
        let mut buf = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec();
        let complete = Ok(Progress::Complete {
            body_len: 5,
            keep_alive: true,
        });
        assert_eq!(decoder.advance(&mut buf), complete);
        assert_eq!(decoder.advance(&mut buf), complete, "again");
        assert_eq!(buf, b"hello");
        assert_eq!(BytesAfterResponse.reason(), FailureReason::BadResponse);
    }

    #[test]
    fn chunked_limits_on_extensions_and_trailers() {
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let extension = format!("{head}1;{}\r\n", "e".repeat(MAX_CHUNK_EXTENSION_BYTES));
        assert_eq!(
            run(LIMITS, [extension.as_bytes()], false),
            error(ChunkExtensionsTooLarge)
        );
        let just_fits = format!(
            "{head}1;{}\r\nz\r\n0\r\n\r\n",
            "e".repeat(MAX_CHUNK_EXTENSION_BYTES - 1)
        );
        assert_eq!(run(LIMITS, [just_fits.as_bytes()], false), body("z", true));
        let trailers = format!(
            "{head}0\r\nX: {}\r\n\r\n",
            "t".repeat(LIMITS.max_head_bytes)
        );
        assert_eq!(
            run(LIMITS, [trailers.as_bytes()], false),
            error(TrailersTooLarge)
        );
    }

    #[test]
    fn eof_in_every_state_is_a_close_failure() {
        let responses: &[&str] = &[
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 ;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n",
        ];
        for response in responses {
            let head_end = response
                .rfind("\r\n\r\n")
                .map(|i| i + 4)
                .filter(|_| !response.contains("chunked"));
            let head_end = head_end.unwrap_or_else(|| response.find("\r\n\r\n").unwrap_or(0) + 4);
            for cut in 0..response.len() {
                let prefix = &response.as_bytes()[..cut];
                let outcome = run(LIMITS, [prefix], true);
                let expected = match cut {
                    0 => ClosedBeforeResponse,
                    cut if cut < head_end => ClosedInHead,
                    _ => ClosedInBody,
                };
                assert_eq!(outcome, error(expected), "{response:?} cut at {cut}");
                assert_eq!(expected.reason(), FailureReason::Closed);
            }
        }
    }

    #[test]
    fn reuse_after_reset_and_accessors() {
        let mut decoder = ResponseDecoder::new(LIMITS);
        let mut buf = Vec::new();
        assert!(!decoder.started());
        assert_eq!(decoder.advance(&mut buf), Ok(Progress::NeedMore));
        assert!(!decoder.started(), "an empty read starts nothing");
        buf.extend_from_slice(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
        assert_eq!(decoder.advance(&mut buf), Ok(Progress::NeedMore));
        assert!(decoder.started());
        assert_eq!(decoder.status(), Some(200));
        assert_eq!(buf, b"abc", "framing compacted away between reads");
        buf.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(
            decoder.advance(&mut buf),
            Ok(Progress::Complete {
                body_len: 3,
                keep_alive: true
            })
        );

        decoder.reset();
        buf.clear();
        assert!(!decoder.started());
        assert_eq!(decoder.status(), None);
        buf.extend_from_slice(b"HTTP/1.1 503 Busy\r\n\r\n");
        assert_eq!(decoder.advance(&mut buf), Err(Status(503)));
        assert_eq!(decoder.status(), Some(503));
        assert_eq!(decoder.advance(&mut buf), Err(Status(503)), "errors stick");
        assert_eq!(decoder.finish_at_eof(&mut buf), Err(Status(503)));
    }

    #[test]
    fn every_error_has_a_reason_and_a_message() {
        let table: &[(ResponseError, FailureReason, &str)] = &[
            (Status(500), FailureReason::HttpStatus, "HTTP status 500"),
            (
                ContentLengthTooLarge {
                    length: 5_000_000,
                    limit: 4_194_304,
                },
                FailureReason::BodyTooLarge,
                "Content-Length of 5000000 bytes over the body limit of 4194304 bytes (--max_body_bytes)",
            ),
            (
                BodyTooLarge {
                    at_least: 4_194_305,
                    limit: 4_194_304,
                },
                FailureReason::BodyTooLarge,
                "body of at least 4194305 bytes over the body limit of 4194304 bytes (--max_body_bytes)",
            ),
            (
                ContentEncoding,
                FailureReason::Encoding,
                "Content-Encoding other than identity",
            ),
            (
                ClosedInBody,
                FailureReason::Closed,
                "connection closed while reading the body",
            ),
            (
                BadHead(httparse::Error::Version),
                FailureReason::BadResponse,
                "invalid response head: invalid HTTP version",
            ),
            (
                ChunkSizeTooLong,
                FailureReason::BadResponse,
                "chunk size with too many digits",
            ),
        ];
        for (error, reason, message) in table {
            assert_eq!(error.reason(), *reason, "{error:?}");
            assert_eq!(error.to_string(), *message);
        }
    }

    #[test]
    fn random_chunked_encodings_in_random_reads_decode_to_the_body() {
        let limits = Limits {
            max_head_bytes: 1024,
            max_body_bytes: 4096,
        };
        let mut rng = Rng::new(0x2545_F491_4F6C_DD1D);
        for round in 0..500 {
            let body: Vec<u8> = (0..rng.below(300)).map(|i| (i * 7 + round) as u8).collect();
            let mut wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            let mut rest = &body[..];
            while !rest.is_empty() {
                let size = 1 + rng.below(rest.len().min(40));
                let (chunk, after) = rest.split_at(size);
                let extension = [";", "", " ;a=\"b c\"", ";x;y=z"][rng.below(4)];
                let digits = if rng.below(2) == 0 {
                    format!("{size:x}")
                } else {
                    format!("{size:04X}")
                };
                wire.extend_from_slice(format!("{digits}{extension}\r\n").as_bytes());
                wire.extend_from_slice(chunk);
                wire.extend_from_slice(b"\r\n");
                rest = after;
            }
            wire.extend_from_slice([&b"0\r\n\r\n"[..], b"0\r\nA: b\r\n\r\n"][rng.below(2)]);
            let mut pieces = Vec::new();
            let mut remaining = &wire[..];
            while !remaining.is_empty() {
                let (piece, after) = remaining.split_at(1 + rng.below(remaining.len().min(64)));
                pieces.push(piece);
                remaining = after;
            }
            assert_eq!(
                run(limits, pieces, false),
                Outcome::Body(body, true),
                "round {round}"
            );
        }
    }
}
