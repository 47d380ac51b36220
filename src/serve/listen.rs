//! The server's listening socket: which addresses it accepts on.
//!
//! A bare port (`-e 13434`, the default) means every address, IPv6 and IPv4
//! alike: one IPv6 socket bound to `[::]` with `IPV6_V6ONLY` off, so IPv4
//! clients arrive as IPv4-mapped addresses (RFC 4291 §2.5.5.2, RFC 3493
//! §5.3). The option is set on the socket, not left to the host's
//! `net.ipv6.bindv6only` sysctl, whose value no container controls. Where the
//! host has no IPv6 (the kernel refuses an IPv6 socket, or an address for
//! it), the socket is IPv4's `0.0.0.0` instead, and the log says so.
//!
//! An explicit address (`-e 127.0.0.1:13434`, `-e [::1]:13434`) is bound as
//! given, and only it: `[::]` is then IPv6 only (`IPV6_V6ONLY` on), so that
//! `-e 0.0.0.0:P` and `-e [::]:P` choose one family each.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

/// Connections waiting in the kernel to be accepted: mio's own default for
/// its listeners, and what `somaxconn` allows on current kernels.
const BACKLOG: i32 = 1024;

/// What the socket accepts, for the start-up log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listening {
    /// `[::]:port` with IPv4 mapped in.
    DualStack(u16),
    /// `0.0.0.0:port` because the host has no IPv6.
    Ipv4Only(u16),
    /// The address the command line gave.
    Address(SocketAddr),
}

impl fmt::Display for Listening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listening::DualStack(port) => write!(f, "[::]:{port} (IPv6 and IPv4)"),
            Listening::Ipv4Only(port) => {
                write!(f, "0.0.0.0:{port} (IPv4 only: this host has no IPv6)")
            }
            Listening::Address(address) => write!(f, "{address}"),
        }
    }
}

/// Binds the server's socket, nonblocking, ready to register with mio.
/// `ip` is `-e`'s address, `None` for a bare port.
pub fn bind(ip: Option<IpAddr>, port: u16) -> io::Result<(mio::net::TcpListener, Listening)> {
    let (socket, dual_stack) = match ip {
        Some(ip) => (listen_on(SocketAddr::new(ip, port), true)?, None),
        None => {
            let any_v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
            match listen_on(any_v6, false) {
                Ok(socket) => (socket, Some(true)),
                Err(error) if host_lacks_ipv6(&error) => {
                    let any_v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
                    (listen_on(any_v4, true)?, Some(false))
                }
                Err(error) => return Err(error),
            }
        }
    };
    let listener = std::net::TcpListener::from(socket);
    // The bound address, so that port 0 (tests) reads as the port chosen.
    let bound = listener.local_addr()?;
    let listening = match dual_stack {
        Some(true) => Listening::DualStack(bound.port()),
        Some(false) => Listening::Ipv4Only(bound.port()),
        None => Listening::Address(bound),
    };
    Ok((mio::net::TcpListener::from_std(listener), listening))
}

/// A listening TCP socket on `address`; for IPv6, `v6_only` decides whether
/// IPv4 clients are accepted too.
fn listen_on(address: SocketAddr, v6_only: bool) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if address.is_ipv6() {
        socket.set_only_v6(v6_only)?;
    }
    // As mio and std do on Unix: a restarted sidecar can bind again while
    // connections of the previous one sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket)
}

/// The errors of an IPv6 socket or bind on a host without IPv6: the
/// family is not compiled in or disabled (`EAFNOSUPPORT`), or no IPv6
/// address can be bound (`EADDRNOTAVAIL`, IPv6 disabled by sysctl). A port
/// in use or a refused permission is the same for IPv4: no fallback.
fn host_lacks_ipv6(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::AddrNotAvailable)
        || error.raw_os_error() == Some(EAFNOSUPPORT)
}

/// `EAFNOSUPPORT` on Linux (every architecture), the only target.
const EAFNOSUPPORT: i32 = 97;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn has_ipv6_loopback() -> bool {
        std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
    }

    /// Accepts one connection on the (nonblocking) listener, waiting for it.
    fn accept_one(listener: &mio::net::TcpListener) -> SocketAddr {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match listener.accept() {
                Ok((_, peer)) => return peer,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "no connection");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(error) => panic!("accept: {error}"),
            }
        }
    }

    fn exchange(to: SocketAddr) {
        let mut stream = TcpStream::connect(to).unwrap();
        stream.write_all(b"x").unwrap();
        let _ = stream.read(&mut [0; 1]);
    }

    #[test]
    fn a_bare_port_accepts_ipv4_and_ipv6_on_one_socket() {
        let (listener, listening) = bind(None, 0).unwrap();
        let port = listener.local_addr().unwrap().port();
        if !has_ipv6_loopback() {
            assert_eq!(listening, Listening::Ipv4Only(port));
            return;
        }
        assert_eq!(listening, Listening::DualStack(port));
        let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        let client = std::thread::spawn(move || {
            exchange(v4);
            exchange(v6);
        });
        // An IPv4 client arrives IPv4-mapped on the IPv6 socket.
        let first = accept_one(&listener);
        let second = accept_one(&listener);
        client.join().unwrap();
        let mut peers = [first.ip(), second.ip()];
        peers.sort();
        assert_eq!(
            peers,
            [
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped()),
            ]
        );
    }

    #[test]
    fn an_explicit_any_address_is_one_family_only() {
        let (listener, listening) = bind(Some(Ipv4Addr::UNSPECIFIED.into()), 0).unwrap();
        assert!(matches!(listening, Listening::Address(a) if a.is_ipv4()));
        assert!(listener.local_addr().unwrap().is_ipv4());
        if has_ipv6_loopback() {
            let (listener, _) = bind(Some(Ipv6Addr::UNSPECIFIED.into()), 0).unwrap();
            let port = listener.local_addr().unwrap().port();
            let refused = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap_err();
            assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        }
    }

    #[test]
    fn a_port_in_use_is_an_error_not_a_fallback() {
        let (taken, _) = bind(None, 0).unwrap();
        let port = taken.local_addr().unwrap().port();
        let error = bind(None, port).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        assert!(!host_lacks_ipv6(&error));
    }

    #[test]
    fn the_fallback_errors() {
        assert!(host_lacks_ipv6(&io::Error::from_raw_os_error(EAFNOSUPPORT)));
        assert!(host_lacks_ipv6(&io::Error::from(
            io::ErrorKind::AddrNotAvailable
        )));
        assert!(!host_lacks_ipv6(&io::Error::from(
            io::ErrorKind::PermissionDenied
        )));
    }

    #[test]
    fn the_log_says_what_is_accepted() {
        assert_eq!(
            Listening::DualStack(13434).to_string(),
            "[::]:13434 (IPv6 and IPv4)"
        );
        assert_eq!(
            Listening::Ipv4Only(13434).to_string(),
            "0.0.0.0:13434 (IPv4 only: this host has no IPv6)"
        );
        assert_eq!(
            Listening::Address("[::1]:9000".parse().unwrap()).to_string(),
            "[::1]:9000"
        );
    }
}
