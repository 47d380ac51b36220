//! Shared helpers for the integration tests: the real sidecar binary started
//! on a free loopback port, scripted stub exporters, a tiny HTTP client and
//! condition waits with deadlines (never fixed sleeps as assertions).

/// An obviously correct, slow exposition parser to check the fast one.
pub mod naive;

/// A memory cgroup around the sidecar, as Kubernetes limits it.
pub mod cgroup;

/// The tests' one pseudo-random generator, shared with the unit tests.
#[path = "../../src/test_rng.rs"]
pub mod rng;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_metrics-multiplexer-sidecar");

/// A loopback port nobody listens on (bound then released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Polls `condition` until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The real binary, killed when dropped.
pub struct Sidecar {
    pub child: Child,
    pub port: u16,
    stderr_path: std::path::PathBuf,
}

impl Sidecar {
    /// Starts the sidecar with `args` plus `--export_to=<free port>` and waits
    /// until it answers `/healthz`.
    pub fn start(args: &[String]) -> Sidecar {
        Self::start_command(Command::new(BINARY), args)
    }

    /// The same, under a soft open files limit (`ulimit -n`, set by the
    /// shell that then becomes the sidecar).
    pub fn start_with_open_files_limit(limit: u32, args: &[String]) -> Sidecar {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
            .arg(BINARY);
        Self::start_command(command, args)
    }

    /// The same, inside `cgroup` (the shell that becomes the sidecar moves
    /// itself in first, so every byte the sidecar is charged counts there).
    pub fn start_in_cgroup(cgroup: &cgroup::Cgroup, args: &[String]) -> Sidecar {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("{} exec \"$0\" \"$@\"", cgroup.enter_then()))
            .arg(BINARY);
        Self::start_command(command, args)
    }

    fn start_command(mut command: Command, args: &[String]) -> Sidecar {
        let port = free_port();
        let stderr_path = std::env::temp_dir().join(format!(
            "multiplexer-test-{}-{}.log",
            std::process::id(),
            port
        ));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let child = command
            .args(args)
            .arg(format!("--export_to={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the sidecar");
        let mut sidecar = Sidecar {
            child,
            port,
            stderr_path,
        };
        let ready = wait_until(
            Duration::from_secs(10),
            || matches!(try_get(port, "/healthz"), Ok(response) if response.status == 200),
        );
        if !ready {
            let _ = sidecar.child.kill();
            panic!("sidecar did not start; stderr:\n{}", sidecar.stderr());
        }
        sidecar
    }

    pub fn get(&self, path: &str) -> Response {
        try_get(self.port, path)
            .unwrap_or_else(|error| panic!("GET {path}: {error}; stderr:\n{}", self.stderr()))
    }

    pub fn metrics(&self) -> String {
        let response = self.get("/metrics");
        assert_eq!(response.status, 200);
        String::from_utf8(response.body).unwrap()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr_path);
    }
}

/// `-m name:port` arguments for the sidecar.
pub fn container_args(containers: &[(&str, u16)]) -> Vec<String> {
    containers
        .iter()
        .map(|(name, port)| format!("-m{name}:{port}"))
        .collect()
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// One `GET` on a fresh connection with `Connection: close`.
pub fn try_get(port: u16, path: &str) -> std::io::Result<Response> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    raw_exchange(port, request.as_bytes())
        .and_then(|bytes| parse_response(&bytes).map(|(response, _)| response))
}

/// GET `path` with extra header lines (each ending in CRLF), reading the
/// whole response of a closing connection.
pub fn get_with(port: u16, path: &str, headers: &str) -> Response {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: test\r\n{headers}Connection: close\r\n\r\n");
    let bytes = raw_exchange(port, request.as_bytes()).expect("exchange");
    parse_response(&bytes).expect("one response").0
}

/// The text of a gzip body, decoded by flate2 (an implementation the
/// sidecar does not use), which checks the CRC and the length.
pub fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut text)
        .expect("a valid gzip member");
    text
}

/// Sends `request` and reads until the server closes.
pub fn raw_exchange(port: u16, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request)?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Parses one response with a Content-Length body from the start of
/// `bytes`; returns it and the bytes it used.
pub fn parse_response(bytes: &[u8]) -> std::io::Result<(Response, usize)> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let head_end = bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| invalid("no complete head"))?;
    let head = std::str::from_utf8(&bytes[..head_end]).map_err(|_| invalid("head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse().ok())
        .ok_or_else(|| invalid("no content-length"))?;
    let start = head_end + 4;
    let end = start + length;
    if bytes.len() < end {
        return Err(invalid("short body"));
    }
    Ok((
        Response {
            status,
            headers,
            body: bytes[start..end].to_vec(),
        },
        end,
    ))
}

/// The sidecar's first read of a scrape asks for the previous body plus
/// this much room for the head (src/scrape/upstream/mod.rs): a response of exactly
/// the previous body's size plus this ends exactly where the read does.
pub const FIRST_READ_ROOM_FOR_THE_HEAD: usize = 1024;

/// How a stub exporter answers each request.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// 200 with Content-Length, keep-alive.
    ContentLength(String),
    /// 200 chunked (with chunk extensions and a trailer), keep-alive; the
    /// body is cut into chunks of the given size.
    Chunked(String, usize),
    /// HTTP/1.0 200 without Content-Length, body delimited by close.
    Http10(String),
    /// HTTP/1.1 200 with Content-Length and `Connection: close`.
    ConnectionClose(String),
    /// Accepts and reads the request, then never answers.
    HangBeforeHead,
    /// Sends the head and half the body, then never sends the rest.
    HangMidBody(String),
    /// Sends the response one byte every `Duration`.
    Drip(String, Duration),
    /// Sends the head and half the body, then resets the connection.
    ResetMidBody(String),
    /// 500 Internal Server Error with a body.
    Status(u16),
    /// Bytes that are not HTTP.
    Garbage,
    /// 200 with Content-Length, keep-alive, this `Content-Type` and body,
    /// whatever the request's `Accept` (a protobuf body, say).
    Typed(&'static str, Arc<Vec<u8>>),
    /// 200 with a body of `n` bytes of valid samples.
    Huge(usize),
    /// 200 with `Content-Encoding: gzip` (the bytes are not even gzip).
    Gzip(String),
    /// 200 with a body that is not an exposition.
    BadExposition,
    /// Like `ContentLength`, after a pause.
    Delayed(String, Duration),
    /// Answers the first request of each connection with Content-Length
    /// and keep-alive, and closes the connection, unanswered, when a second
    /// one arrives: a server that drops idle keep-alive connections at the
    /// moment the client reuses them.
    CloseOnReuse(String),
    /// The n-th request of the stub (over all connections, from 0) is
    /// answered as the `n % len`-th of these.
    Alternating(Vec<Behaviour>),
    /// A 200 response of exactly `size` bytes, head included (the body
    /// padded with a comment line), and in the same write a second,
    /// unrequested response with `smuggled` as its body: a server out of
    /// step with its client.
    Smuggling {
        body: String,
        size: usize,
        smuggled: String,
    },
}

/// A scripted exporter on a loopback port, one thread per connection.
pub struct Stub {
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
    /// When each request arrived.
    pub request_times: Arc<Mutex<Vec<Instant>>>,
    /// The request target of each request, in order.
    pub request_targets: Arc<Mutex<Vec<String>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    stop: Arc<AtomicBool>,
}

impl Stub {
    pub fn start(behaviour: Behaviour) -> Stub {
        Self::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), behaviour)
    }

    pub fn start_on(listener: TcpListener, behaviour: Behaviour) -> Stub {
        let port = listener.local_addr().unwrap().port();
        let stub = Stub {
            port,
            requests: Arc::new(AtomicUsize::new(0)),
            connections: Arc::new(AtomicUsize::new(0)),
            request_times: Arc::new(Mutex::new(Vec::new())),
            request_targets: Arc::new(Mutex::new(Vec::new())),
            behaviour: Arc::new(Mutex::new(behaviour)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (requests, times, targets, behaviour, stop) = (
            stub.requests.clone(),
            stub.request_times.clone(),
            stub.request_targets.clone(),
            stub.behaviour.clone(),
            stub.stop.clone(),
        );
        let connections = stub.connections.clone();
        listener.set_nonblocking(true).unwrap();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        connections.fetch_add(1, Ordering::SeqCst);
                        let (requests, times, targets, behaviour, stop) = (
                            requests.clone(),
                            times.clone(),
                            targets.clone(),
                            behaviour.clone(),
                            stop.clone(),
                        );
                        thread::spawn(move || {
                            let log = RequestLog {
                                count: &requests,
                                times: &times,
                                targets: &targets,
                            };
                            serve_connection(stream, &log, &behaviour, &stop)
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        stub
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    pub fn request_count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The distinct request targets in order of first use (repeats of the
    /// previous one folded).
    pub fn targets(&self) -> Vec<String> {
        let mut targets = self.request_targets.lock().unwrap().clone();
        targets.dedup();
        targets
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Where a stub records what it was asked.
struct RequestLog<'a> {
    count: &'a AtomicUsize,
    times: &'a Mutex<Vec<Instant>>,
    targets: &'a Mutex<Vec<String>>,
}

fn serve_connection(
    mut stream: TcpStream,
    log: &RequestLog<'_>,
    behaviour: &Mutex<Behaviour>,
    stop: &AtomicBool,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut pending = Vec::new();
    let mut buffer = [0u8; 4096];
    let mut answered_here = 0;
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut buffer) {
                Ok(0) => return,
                Ok(read) => pending.extend_from_slice(&buffer[..read]),
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
            continue;
        };
        let head = String::from_utf8_lossy(&pending[..end]).into_owned();
        pending.drain(..end + 4);
        let target = head.split(' ').nth(1).unwrap_or_default().to_string();
        log.targets.lock().unwrap().push(target);
        log.times.lock().unwrap().push(Instant::now());
        let number = log.count.fetch_add(1, Ordering::SeqCst);
        let mut current = behaviour.lock().unwrap().clone();
        if let Behaviour::Alternating(choices) = current {
            current = choices[number % choices.len()].clone();
        }
        if let Behaviour::CloseOnReuse(body) = current {
            if answered_here > 0 {
                return;
            }
            answered_here += 1;
            if !answer(&mut stream, Behaviour::ContentLength(body), stop) {
                return;
            }
            continue;
        }
        answered_here += 1;
        if !answer(&mut stream, current, stop) {
            return;
        }
    }
}

/// Writes one answer; returns whether the connection stays open.
fn answer(stream: &mut TcpStream, behaviour: Behaviour, stop: &AtomicBool) -> bool {
    let head = |length: usize| {
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {length}\r\n\r\n")
    };
    let hang = || {
        while !stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(20));
        }
    };
    match behaviour {
        Behaviour::ContentLength(body) => stream
            .write_all(format!("{}{}", head(body.len()), body).as_bytes())
            .is_ok(),
        Behaviour::Chunked(body, size) => {
            let mut out = String::from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            for chunk in body.as_bytes().chunks(size.max(1)) {
                out.push_str(&format!("{:x};name=value\r\n", chunk.len()));
                out.push_str(std::str::from_utf8(chunk).unwrap());
                out.push_str("\r\n");
            }
            out.push_str("0\r\nX-Trailer: yes\r\n\r\n");
            stream.write_all(out.as_bytes()).is_ok()
        }
        Behaviour::Http10(body) => {
            let _ = stream.write_all(format!("HTTP/1.0 200 OK\r\n\r\n{body}").as_bytes());
            false
        }
        Behaviour::ConnectionClose(body) => {
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
            false
        }
        Behaviour::HangBeforeHead => {
            hang();
            false
        }
        Behaviour::HangMidBody(body) => {
            let half = &body.as_bytes()[..body.len() / 2];
            let _ = stream.write_all(head(body.len()).as_bytes());
            let _ = stream.write_all(half);
            hang();
            false
        }
        Behaviour::Drip(body, pause) => {
            let response = format!("{}{}", head(body.len()), body);
            for byte in response.as_bytes() {
                if stop.load(Ordering::Relaxed) || stream.write_all(&[*byte]).is_err() {
                    return false;
                }
                thread::sleep(pause);
            }
            true
        }
        Behaviour::ResetMidBody(body) => {
            let half = &body.as_bytes()[..body.len() / 2];
            let _ = stream.write_all(head(body.len()).as_bytes());
            let _ = stream.write_all(half);
            // SO_LINGER 0 turns the close into a reset (RST).
            let _ = socket2::SockRef::from(&*stream).set_linger(Some(Duration::ZERO));
            false
        }
        Behaviour::Typed(content_type, body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).is_ok() && stream.write_all(&body).is_ok()
        }
        Behaviour::Status(code) => {
            let body = "internal error\n";
            stream
                .write_all(
                    format!(
                        "HTTP/1.1 {code} Error\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .is_ok()
        }
        Behaviour::Garbage => {
            let _ = stream.write_all(b"\x00\x01garbage that is not HTTP at all\r\n\r\n");
            let _ = stream.shutdown(Shutdown::Both);
            false
        }
        Behaviour::Huge(size) => {
            // About 80 bytes a line, like real exporters (the sidecar refuses
            // bodies of more than one line per 64 bytes of its body limit).
            let line =
                "huge_metric{label=\"some value\",path=\"/var/lib/kubelet/pods/0123456789\"} 1\n";
            let lines = size / line.len() + 1;
            let _ = stream.write_all(head(lines * line.len()).as_bytes());
            for _ in 0..lines {
                if stream.write_all(line.as_bytes()).is_err() {
                    return false;
                }
            }
            true
        }
        Behaviour::Gzip(body) => stream
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .is_ok(),
        Behaviour::Delayed(body, pause) => {
            thread::sleep(pause);
            stream
                .write_all(format!("{}{}", head(body.len()), body).as_bytes())
                .is_ok()
        }
        Behaviour::CloseOnReuse(body) => answer(stream, Behaviour::ContentLength(body), stop),
        Behaviour::Alternating(_) => panic!("alternating behaviours do not nest"),
        Behaviour::Smuggling {
            body,
            size,
            smuggled,
        } => {
            // The comment line grows the body (and maybe its length's digits).
            let mut response = (0..size)
                .map(|padding| {
                    let padded = format!("{body}#{}\n", " ".repeat(padding));
                    format!("{}{padded}", head(padded.len()))
                })
                .find(|response| response.len() == size)
                .unwrap_or_else(|| panic!("no response of {size} bytes holds {body:?}"));
            response.push_str(&head(smuggled.len()));
            response.push_str(&smuggled);
            // One write: both responses reach the socket together.
            stream.write_all(response.as_bytes()).is_ok()
        }
        Behaviour::BadExposition => {
            let body = "this is { not an exposition\n";
            stream
                .write_all(format!("{}{}", head(body.len()), body).as_bytes())
                .is_ok()
        }
    }
}

/// The samples of one container in a merged exposition: each sample line
/// whose labels contain `<label>="<name>"`, less the sidecar's own
/// `multiplexer_*` samples about that container.
pub fn lines_of(exposition: &str, label: &str, name: &str) -> Vec<String> {
    let needle = format!("{label}=\"{name}\"");
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with("multiplexer_"))
        .filter(|line| line.contains(&needle))
        .map(str::to_string)
        .collect()
}

pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Peak resident memory (VmHWM) of a process, in bytes.
pub fn peak_resident_bytes(pid: u32) -> u64 {
    status_kilobytes(pid, "VmHWM:") * 1024
}

/// Current resident memory (VmRSS) of a process, in bytes.
pub fn resident_bytes(pid: u32) -> u64 {
    status_kilobytes(pid, "VmRSS:") * 1024
}

fn status_kilobytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A connection with a tiny receive buffer that has asked for `/metrics`
/// and never reads: the kernel cannot absorb the response on its behalf,
/// so the sidecar keeps holding the body it is sending.
pub fn stalled_client(port: u16) -> TcpStream {
    stalled_client_with(port, "")
}

/// [`stalled_client`] with extra header lines (`Accept-Encoding: gzip\r\n`).
pub fn stalled_client_with(port: u16, headers: &str) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&local(port).into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .write_all(format!("GET /metrics HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes())
        .unwrap();
    stream
}

/// The value of the first sample of `name` whose line contains every one
/// of `labels`.
pub fn sample(exposition: &str, name: &str, labels: &[&str]) -> Option<f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// `multiplexer_up` of a container (label `container`).
pub fn up(exposition: &str, container: &str) -> Option<f64> {
    sample(
        exposition,
        "multiplexer_up",
        &[&format!("container=\"{container}\"")],
    )
}

/// `multiplexer_scrape_failures_total` of a container and reason; 0 if absent.
pub fn failures(exposition: &str, container: &str, reason: &str) -> f64 {
    sample(
        exposition,
        "multiplexer_scrape_failures_total",
        &[
            &format!("container=\"{container}\""),
            &format!("reason=\"{reason}\""),
        ],
    )
    .unwrap_or(0.0)
}

/// A test that cannot run here says why on a line of its own and passes;
/// with `CI=true` it fails instead unless `ci_may_skip` (nothing CI could
/// install would make it run, e.g. an architecture without an image).
/// Written to the process' stderr directly: the test harness captures
/// `eprintln!` of passing tests, and a skip must be seen.
pub fn skip(test: &str, why: &str, ci_may_skip: bool) {
    assert!(
        ci_may_skip || std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {why}"
    );
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {why}");
}

/// How an [`accept_container`] answers a request: `Content-Type` and body
/// for the request's `Accept` (empty when it sent none).
pub type AnswerByAccept = fn(&str) -> (&'static str, &'static [u8]);

/// A keep-alive container answering each request by its `Accept`; returns
/// its port and the `Accept` of each request, in order.
pub fn accept_container(answer: AnswerByAccept) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepts = Arc::new(Mutex::new(Vec::new()));
    let log = accepts.clone();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let log = log.clone();
            thread::spawn(move || answer_by_accept(stream, &log, answer));
        }
    });
    (port, accepts)
}

fn answer_by_accept(mut stream: TcpStream, log: &Mutex<Vec<String>>, answer: AnswerByAccept) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(read) = stream.read(&mut chunk) else {
            return;
        };
        if read == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..read]);
        while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            buffer.drain(..end + 4);
            let accept = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("accept")
                        .then(|| value.trim().to_string())
                })
                .unwrap_or_default();
            let (content_type, body) = answer(&accept);
            log.lock().unwrap().push(accept);
            let mut response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            response.extend_from_slice(body);
            if stream.write_all(&response).is_err() {
                return;
            }
        }
    }
}

/// `GET /metrics` with this `Accept` over HTTP/1.0; must be answered 200.
/// Returns the `Content-Type` and the body.
pub fn get_metrics_as(sidecar: &Sidecar, accept: &str) -> (String, Vec<u8>) {
    let request = format!("GET /metrics HTTP/1.0\r\nAccept: {accept}\r\n\r\n");
    let bytes = raw_exchange(sidecar.port, request.as_bytes()).expect("ask the sidecar");
    let (response, _) = parse_response(&bytes).expect("a response");
    assert_eq!(response.status, 200);
    let content_type = response
        .header("content-type")
        .unwrap_or_default()
        .to_string();
    (content_type, response.body)
}
