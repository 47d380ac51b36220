//! A keep-alive HTTP/1.1 client (Content-Length or chunked responses,
//! optionally asking for gzip as Prometheus does), and a load generator of K
//! such clients requesting one path back to back for a fixed duration (one
//! request in flight per client, no pipelining).

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
    /// Bytes of the body as sent (compressed when `gzip`), without chunk
    /// framing.
    pub body_bytes: usize,
    /// The response carried `Content-Encoding: gzip`.
    pub gzip: bool,
}

impl Client {
    pub fn connect(port: u16, path: &str) -> io::Result<Client> {
        Client::connect_with(port, path, false)
    }

    /// With `gzip`, every request says `Accept-Encoding: gzip`, as
    /// Prometheus' scraper always does.
    pub fn connect_with(port: u16, path: &str, gzip: bool) -> io::Result<Client> {
        let encoding = if gzip {
            "Accept-Encoding: gzip\r\n"
        } else {
            ""
        };
        Client::connect_with_headers(port, path, encoding)
    }

    /// Every request carries `headers` (each line ending in CRLF).
    pub fn connect_with_headers(port: u16, path: &str, headers: &str) -> io::Result<Client> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Client {
            stream,
            request: format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n")
                .into_bytes(),
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
        let head = parse_head(&self.buffer[..head_end])?;
        let body_bytes = match head.length {
            Length::Exactly(length) => self.read_exactly(head_end, filled, length)?,
            Length::Chunked => self.read_chunked(head_end, filled)?,
        };
        Ok(Reply {
            status: head.status,
            body_bytes,
            gzip: head.gzip,
        })
    }

    /// Reads a Content-Length body of which `filled - head_end` bytes are
    /// already in the buffer.
    fn read_exactly(&mut self, head_end: usize, filled: usize, length: usize) -> io::Result<usize> {
        let mut have = filled - head_end;
        while have < length {
            let read = self.stream.read(&mut self.buffer)?;
            if read == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            have += read;
        }
        if have != length {
            return Err(invalid("bytes after the body"));
        }
        Ok(length)
    }

    /// Reads a chunked body (RFC 9112 §7.1, no trailers expected) and
    /// returns its decoded size. The buffer holds at most one read at a
    /// time; chunk data is counted and dropped.
    fn read_chunked(&mut self, head_end: usize, filled: usize) -> io::Result<usize> {
        self.buffer.copy_within(head_end..filled, 0);
        let mut filled = filled - head_end;
        let mut at = 0;
        let mut body = 0;
        loop {
            // A chunk-size line.
            let line_end = loop {
                if let Some(end) = self.buffer[at..filled]
                    .windows(2)
                    .position(|pair| pair == b"\r\n")
                {
                    break at + end;
                }
                self.buffer.copy_within(at..filled, 0);
                filled -= at;
                at = 0;
                filled += self.fill(filled)?;
            };
            let size_text = std::str::from_utf8(&self.buffer[at..line_end])
                .map_err(|_| invalid("chunk size is not UTF-8"))?;
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
            at = line_end + 2;
            // The data and its CRLF (after the last chunk: the final CRLF).
            let mut skip = size + 2;
            body += size;
            while skip > 0 {
                if at == filled {
                    at = 0;
                    filled = self.fill(0)?;
                }
                let step = skip.min(filled - at);
                at += step;
                skip -= step;
            }
            if size == 0 {
                if at != filled {
                    return Err(invalid("bytes after the body"));
                }
                return Ok(body);
            }
        }
    }

    /// One read into the buffer from `from`; EOF is an error.
    fn fill(&mut self, from: usize) -> io::Result<usize> {
        if from == self.buffer.len() {
            return Err(invalid("chunk line too long"));
        }
        match self.stream.read(&mut self.buffer[from..])? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            read => Ok(read),
        }
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

enum Length {
    Exactly(usize),
    Chunked,
}

struct Head {
    status: u16,
    length: Length,
    gzip: bool,
}

/// Status code, framing (Content-Length or chunked is required: the
/// sidecar always sends one) and whether the body is gzip.
fn parse_head(head: &[u8]) -> io::Result<Head> {
    let text = std::str::from_utf8(head).map_err(|_| invalid("head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let (mut length, mut gzip) = (None, false);
    for (name, value) in lines.filter_map(|line| line.split_once(':')) {
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok().map(Length::Exactly);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.eq_ignore_ascii_case("chunked")
        {
            length = Some(Length::Chunked);
        } else if name.eq_ignore_ascii_case("content-encoding") {
            gzip = value.eq_ignore_ascii_case("gzip");
        }
    }
    let length = length.ok_or_else(|| invalid("no Content-Length nor chunked"))?;
    Ok(Head {
        status,
        length,
        gzip,
    })
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
        let parsed = parse_head(head).unwrap();
        assert_eq!(parsed.status, 200);
        assert!(matches!(parsed.length, Length::Exactly(12)));
        assert!(!parsed.gzip);
        let head =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n";
        let parsed = parse_head(head).unwrap();
        assert!(matches!(parsed.length, Length::Chunked));
        assert!(parsed.gzip);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }
}
