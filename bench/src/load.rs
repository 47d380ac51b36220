//! A keep-alive HTTP/1.1 client for Content-Length responses, and a load
//! generator of K such clients requesting one path back to back for a
//! fixed duration (one request in flight per client, no pipelining).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::stub::find_head_end;

/// One keep-alive connection; its buffer is reused across requests.
pub struct Client {
    stream: TcpStream,
    request: Vec<u8>,
    buffer: Vec<u8>,
}

/// Status and body size of one response (the body itself is discarded).
#[derive(Clone, Copy, Debug)]
pub struct Reply {
    pub status: u16,
    pub body_bytes: usize,
}

impl Client {
    pub fn connect(port: u16, path: &str) -> io::Result<Client> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Client {
            stream,
            request: format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").into_bytes(),
            buffer: vec![0; 256 * 1024],
        })
    }

    /// Sends the request and reads the whole response.
    pub fn get(&mut self) -> io::Result<Reply> {
        self.stream.write_all(&self.request)?;
        let mut filled = 0;
        let head_end = loop {
            let read = self.stream.read(&mut self.buffer[filled..])?;
            if read == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            filled += read;
            if let Some(end) = find_head_end(&self.buffer[..filled]) {
                break end;
            }
            if filled == self.buffer.len() {
                return Err(invalid("response head too large"));
            }
        };
        let (status, content_length) = parse_head(&self.buffer[..head_end])?;
        let mut have = filled - head_end;
        while have < content_length {
            let read = self.stream.read(&mut self.buffer)?;
            if read == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            have += read;
        }
        if have != content_length {
            return Err(invalid("bytes after the body"));
        }
        Ok(Reply {
            status,
            body_bytes: content_length,
        })
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Status code and Content-Length (required: the sidecar always sends it).
fn parse_head(head: &[u8]) -> io::Result<(u16, usize)> {
    let text = std::str::from_utf8(head).map_err(|_| invalid("head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let content_length = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .ok_or_else(|| invalid("no Content-Length"))?;
    Ok((status, content_length))
}

/// What K clients achieved together.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub clients: usize,
    pub seconds: f64,
    pub requests: usize,
    pub errors: usize,
    pub body_bytes: u64,
    pub requests_per_second: f64,
    pub bytes_per_second: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Runs `clients` keep-alive clients against `port`/`path` for `duration`.
pub fn run(port: u16, path: &str, clients: usize, duration: Duration) -> io::Result<LoadReport> {
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(Client::connect(port, path)?);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let workers: Vec<_> = connections
        .into_iter()
        .map(|mut client| {
            thread::spawn(move || {
                let mut latencies_us = Vec::with_capacity(1 << 16);
                let (mut bytes, mut errors) = (0u64, 0usize);
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    match client.get() {
                        Ok(reply) if reply.status == 200 => {
                            latencies_us.push(sent.elapsed().as_micros() as u64);
                            bytes += reply.body_bytes as u64;
                        }
                        Ok(_) => errors += 1,
                        Err(_) => {
                            errors += 1;
                            break;
                        }
                    }
                }
                (latencies_us, bytes, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut report = LoadReport {
        clients,
        ..LoadReport::default()
    };
    for worker in workers {
        let (worker_latencies, bytes, errors) = worker
            .join()
            .map_err(|_| io::Error::other("load client panicked"))?;
        latencies.extend(worker_latencies);
        report.body_bytes += bytes;
        report.errors += errors;
    }
    let seconds = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    report.seconds = seconds;
    report.requests = latencies.len();
    report.requests_per_second = latencies.len() as f64 / seconds;
    report.bytes_per_second = report.body_bytes as f64 / seconds;
    report.p50_us = percentile(&latencies, 0.50);
    report.p99_us = percentile(&latencies, 0.99);
    report.max_us = latencies.last().copied().unwrap_or(0);
    Ok(report)
}

/// Nearest-rank percentile of sorted values (0 when empty).
pub fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.50), 50);
        assert_eq!(percentile(&values, 0.99), 99);
        assert_eq!(percentile(&values, 1.0), 100);
        assert_eq!(percentile(&[], 0.5), 0);
        assert_eq!(percentile(&[7], 0.99), 7);
    }

    #[test]
    fn head_parsing() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\nConnection: keep-alive\r\n\r\n";
        assert_eq!(parse_head(head).unwrap(), (200, 12));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }
}
