//! A stub exporter: serves one fixed body (or two in turn, so that the data
//! changes every scrape) on one loopback port, keep-alive, with
//! Content-Length or chunked framing and an optional per-request delay,
//! and records the arrival time of every request so the runner can compute
//! the scrape cadence the stub saw.
//!
//! Invariant: the whole response (head and body) is built once, up front, and
//! written with one `write_all` of one buffer, so the stub never splits a
//! response into more segments than the kernel does and cannot inflate the
//! sidecar's wake-ups.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How the body is framed (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    ContentLength,
    /// Chunks of `CHUNK_BYTES` (RFC 9112 §7.1).
    Chunked,
}

const CHUNK_BYTES: usize = 16 * 1024;

/// What one stub serves.
#[derive(Clone, Debug)]
pub struct StubOptions {
    pub body: Arc<Vec<u8>>,
    /// Served instead of `body` on every other request: the exporter's
    /// values change between scrapes.
    pub alternate: Option<Arc<Vec<u8>>>,
    pub framing: Framing,
    /// Slept after a request arrives, before the response is written.
    pub delay: Duration,
    /// 0 picks a free port.
    pub port: u16,
}

/// A running stub; stops accepting when dropped (open connections end when
/// their peer closes).
pub struct Stub {
    pub port: u16,
    pub body_bytes: usize,
    hits: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
}

/// Interval statistics of the requests one stub saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cadence {
    pub requests: usize,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl Stub {
    pub fn start(options: StubOptions) -> io::Result<Stub> {
        let listener = TcpListener::bind(("127.0.0.1", options.port))?;
        let port = listener.local_addr()?.port();
        let mut responses = vec![response_bytes(&options.body, options.framing)];
        if let Some(alternate) = &options.alternate {
            responses.push(response_bytes(alternate, options.framing));
        }
        let response = Arc::new(responses);
        let hits = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (accept_hits, accept_stop, delay) = (hits.clone(), stop.clone(), options.delay);
        thread::Builder::new()
            .name(format!("stub-{port}"))
            .spawn(move || {
                for stream in listener.incoming() {
                    if accept_stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (response, hits) = (response.clone(), accept_hits.clone());
                    let _ = thread::Builder::new()
                        .name(format!("stub-{port}-conn"))
                        .spawn(move || serve(stream, &response, delay, &hits));
                }
            })?;
        Ok(Stub {
            port,
            body_bytes: options.body.len(),
            hits,
            stop,
        })
    }

    /// Requests that arrived in `[from, to)`.
    pub fn hits_between(&self, from: Instant, to: Instant) -> Vec<Instant> {
        let hits = self
            .hits
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        hits.iter()
            .copied()
            .filter(|&at| at >= from && at < to)
            .collect()
    }

    pub fn total_requests(&self) -> usize {
        self.hits
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .len()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the blocking accept so the listener closes.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Mean, smallest and largest gap between consecutive requests.
pub fn cadence(hits: &[Instant]) -> Cadence {
    let gaps: Vec<f64> = hits
        .windows(2)
        .map(|pair| pair[1].duration_since(pair[0]).as_secs_f64() * 1e3)
        .collect();
    if gaps.is_empty() {
        return Cadence {
            requests: hits.len(),
            ..Cadence::default()
        };
    }
    Cadence {
        requests: hits.len(),
        mean_ms: gaps.iter().sum::<f64>() / gaps.len() as f64,
        min_ms: gaps.iter().copied().fold(f64::INFINITY, f64::min),
        max_ms: gaps.iter().copied().fold(0.0, f64::max),
    }
}

/// Head and framed body in one buffer.
pub fn response_bytes(body: &[u8], framing: Framing) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / CHUNK_BYTES * 8 + 256);
    out.extend_from_slice(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n",
    );
    match framing {
        Framing::ContentLength => {
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            out.extend_from_slice(body);
        }
        Framing::Chunked => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            for chunk in body.chunks(CHUNK_BYTES) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }
    out
}

/// Answers every complete request head on `stream` until the peer closes.
/// Requests carry no body (the sidecar only sends GET).
/// Responses are served in turn.
fn serve(
    mut stream: TcpStream,
    responses: &[Vec<u8>],
    delay: Duration,
    hits: &Mutex<Vec<Instant>>,
) {
    let _ = stream.set_nodelay(true);
    let mut buffer = vec![0u8; 8192];
    let mut filled = 0;
    loop {
        let read = match stream.read(&mut buffer[filled..]) {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        filled += read;
        while let Some(end) = find_head_end(&buffer[..filled]) {
            let response = {
                let mut hits = hits.lock().unwrap_or_else(|poison| poison.into_inner());
                hits.push(Instant::now());
                &responses[hits.len() % responses.len()]
            };
            if !delay.is_zero() {
                thread::sleep(delay);
            }
            if stream.write_all(response).is_err() {
                return;
            }
            buffer.copy_within(end..filled, 0);
            filled -= end;
        }
        if filled == buffer.len() {
            // A head larger than 8 KiB is not a request we expect.
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Offset just past the first `\r\n\r\n`.
pub fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| at + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_response_frames_the_whole_body() {
        let body = vec![b'a'; CHUNK_BYTES + 3];
        let response = response_bytes(&body, Framing::Chunked);
        let head_end = find_head_end(&response).unwrap();
        let framed = &response[head_end..];
        assert!(framed.starts_with(b"4000\r\n"));
        assert!(framed.ends_with(b"\r\n3\r\naaa\r\n0\r\n\r\n"));
        assert_eq!(framed.len(), 6 + CHUNK_BYTES + 2 + 3 + 3 + 2 + 5);
    }

    #[test]
    fn cadence_of_evenly_spaced_hits() {
        let start = Instant::now();
        let hits: Vec<Instant> = (0..5)
            .map(|i| start + Duration::from_millis(200 * i))
            .collect();
        let cadence = cadence(&hits);
        assert_eq!(cadence.requests, 5);
        assert!((cadence.mean_ms - 200.0).abs() < 1e-6);
        assert!((cadence.min_ms - 200.0).abs() < 1e-6);
        assert!((cadence.max_ms - 200.0).abs() < 1e-6);
    }
}
