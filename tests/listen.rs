//! Where the sidecar listens: a bare port (the default) serves IPv6 and IPv4
//! clients alike; `-e <address>:<port>` serves on that address only.
//!
//! Hosts without IPv6 loopback skip the IPv6 halves with a `skipped:` line.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::{skip, wait_until, Behaviour, Sidecar, Stub, BINARY};

const V4: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
const V6: SocketAddr = SocketAddr::new(std::net::IpAddr::V6(Ipv6Addr::LOCALHOST), 0);

/// Whether this host has IPv6 loopback; prints why not.
fn has_ipv6(test: &str) -> bool {
    let has = TcpListener::bind(V6).is_ok();
    if !has {
        skip(test, "its IPv6 half: this host has no IPv6 loopback", true);
    }
    has
}

/// A port free on both loopback addresses (bound on each, then released).
fn free_port_on_both(ipv6: bool) -> u16 {
    loop {
        let v4 = TcpListener::bind(V4).unwrap();
        let port = v4.local_addr().unwrap().port();
        if !ipv6 || TcpListener::bind(SocketAddr::new(V6.ip(), port)).is_ok() {
            return port;
        }
    }
}

/// The binary with `args`, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[String]) -> Running {
    Running(
        Command::new(BINARY)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary runs"),
    )
}

/// One `GET path` to `address`: the body if the answer is 200.
fn get(address: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200 ") => Ok(body.to_string()),
        _ => Err(std::io::Error::other(format!("not a 200: {response:?}"))),
    }
}

fn serves(address: SocketAddr) -> bool {
    wait_until(Duration::from_secs(10), || {
        get(address, "/metrics").is_ok_and(|body| body.contains("seen_total{container=\"app\"} 1"))
    })
}

fn refused(address: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&address, Duration::from_secs(5)),
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[test]
fn an_explicit_address_is_the_only_one_served_on() {
    let ipv6 = has_ipv6("an_explicit_address_is_the_only_one_served_on");
    let stub = Stub::start(Behaviour::ContentLength("seen_total 1\n".to_string()));
    let container = format!("-mapp:{}", stub.port);

    let port = free_port_on_both(ipv6);
    let v4 = SocketAddr::new(V4.ip(), port);
    let v6 = SocketAddr::new(V6.ip(), port);
    let sidecar = start(&[container.clone(), format!("-e127.0.0.1:{port}")]);
    assert!(serves(v4));
    if ipv6 {
        assert!(refused(v6));
    }
    drop(sidecar);

    if ipv6 {
        let port = free_port_on_both(true);
        let v4 = SocketAddr::new(V4.ip(), port);
        let v6 = SocketAddr::new(V6.ip(), port);
        let _sidecar = start(&[container, format!("--export-to=[::1]:{port}")]);
        assert!(serves(v6));
        assert!(refused(v4));
    }
}

#[test]
fn the_default_serves_ipv6_and_ipv4_clients() {
    let stub = Stub::start(Behaviour::ContentLength("seen_total 1\n".to_string()));
    // Default flags but the port (Sidecar::start adds a bare --export_to).
    let sidecar = Sidecar::start(&[format!("-mapp:{}", stub.port)]);
    assert!(serves(SocketAddr::new(V4.ip(), sidecar.port)));
    let log = sidecar.stderr();
    if has_ipv6("the_default_serves_ipv6_and_ipv4_clients") {
        assert!(serves(SocketAddr::new(V6.ip(), sidecar.port)));
        let listening = format!("serving /metrics on [::]:{} (IPv6 and IPv4)", sidecar.port);
        assert!(log.contains(&listening), "{log}");
    }
}
