//! Which loopback address a container is scraped on: `127.0.0.1`, or `::1`
//! where `127.0.0.1` refuses, as `localhost` resolves to both (a Node.js app
//! listening on `localhost` gets `::1` on current releases, an exporter may
//! be started with `--web.listen-address=[::1]:9100`).
//!
//! Rules, each with its reason:
//! 1. A scrape connects to the address that last accepted a connection
//!    (`127.0.0.1` until one did): a container answering on `::1` costs one
//!    connect per connection, not a refused one first.
//! 2. If that connect is refused, the other address is tried at once, in
//!    the same scrape (once): a restarted app may listen on the other one
//!    now, or the container has not been seen yet.
//! 3. The address that accepts is remembered for the next connections.
//! 4. If the other address fails too, the scrape is refused (the first
//!    address's answer): on a host without IPv6, `::1` fails with another
//!    error, which says nothing of the container.
//!
//! No socket: the upstream connection asks it where to connect and tells
//! it what happened.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One of the two loopback addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loopback {
    V4,
    V6,
}

impl Loopback {
    pub fn ip(self) -> IpAddr {
        match self {
            Loopback::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Loopback::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        }
    }

    fn other(self) -> Loopback {
        match self {
            Loopback::V4 => Loopback::V6,
            Loopback::V6 => Loopback::V4,
        }
    }
}

impl fmt::Display for Loopback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Loopback::V4 => "127.0.0.1",
            Loopback::V6 => "::1",
        })
    }
}

/// Where one container's connections go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loopbacks {
    port: u16,
    /// The address that accepted the last connection (rule 1).
    remembered: Loopback,
    /// The address of the connect in progress or last made.
    trying: Loopback,
    /// The other address was tried in this scrape already (rule 2: once).
    fell_back: bool,
}

impl Loopbacks {
    pub fn new(port: u16) -> Loopbacks {
        Loopbacks {
            port,
            remembered: Loopback::V4,
            trying: Loopback::V4,
            fell_back: false,
        }
    }

    /// The address of a scrape's first connect (rule 1).
    pub fn first(&mut self) -> SocketAddr {
        self.trying = self.remembered;
        self.fell_back = false;
        self.address()
    }

    /// The connect to [`Loopbacks::address`] was refused: the address to
    /// try next in this scrape, if any (rule 2).
    pub fn refused(&mut self) -> Option<SocketAddr> {
        if self.fell_back {
            return None;
        }
        self.fell_back = true;
        self.trying = self.trying.other();
        Some(self.address())
    }

    /// Whether the connect in progress is the other address, tried after
    /// the first was refused (a failure of it is a refusal: rule 4).
    pub fn is_fallback(&self) -> bool {
        self.fell_back
    }

    /// The connection to [`Loopbacks::address`] is established (rule 3).
    pub fn connected(&mut self) {
        self.remembered = self.trying;
    }

    /// The address being connected to, or connected.
    pub fn address(&self) -> SocketAddr {
        SocketAddr::new(self.trying.ip(), self.port)
    }

    /// The address of the other loopback than the one being tried: the
    /// one that refused first, during a fallback.
    pub fn other_ip(&self) -> IpAddr {
        self.trying.other().ip()
    }

    /// The address that accepted the last connection.
    pub fn remembered(&self) -> Loopback {
        self.remembered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(port: u16) -> SocketAddr {
        SocketAddr::new(Loopback::V4.ip(), port)
    }

    fn v6(port: u16) -> SocketAddr {
        SocketAddr::new(Loopback::V6.ip(), port)
    }

    #[test]
    fn ipv4_first_then_ipv6_where_it_refuses_then_remembered() {
        let mut loopbacks = Loopbacks::new(9100);
        assert_eq!(loopbacks.first(), v4(9100));
        assert!(!loopbacks.is_fallback());
        assert_eq!(loopbacks.refused(), Some(v6(9100)));
        assert!(loopbacks.is_fallback());
        loopbacks.connected();
        assert_eq!(loopbacks.remembered(), Loopback::V6);
        // The next scrapes go to ::1 first.
        assert_eq!(loopbacks.first(), v6(9100));
        assert!(!loopbacks.is_fallback());
        loopbacks.connected();
        assert_eq!(loopbacks.first(), v6(9100));
        // The app restarted on 127.0.0.1: ::1 refuses, 127.0.0.1 is tried.
        assert_eq!(loopbacks.refused(), Some(v4(9100)));
        loopbacks.connected();
        assert_eq!(loopbacks.remembered(), Loopback::V4);
        assert_eq!(loopbacks.first(), v4(9100));
    }

    #[test]
    fn both_refusing_tries_each_once_per_scrape_and_keeps_the_order() {
        let mut loopbacks = Loopbacks::new(80);
        for _ in 0..3 {
            assert_eq!(loopbacks.first(), v4(80));
            assert_eq!(loopbacks.refused(), Some(v6(80)));
            assert_eq!(loopbacks.refused(), None);
            assert_eq!(loopbacks.remembered(), Loopback::V4);
        }
        // A container on ::1 that starts late is found by the next scrape.
        loopbacks.first();
        assert_eq!(loopbacks.refused(), Some(v6(80)));
        loopbacks.connected();
        assert_eq!(loopbacks.first(), v6(80));
    }

    #[test]
    fn addresses_are_named_as_in_urls_and_logs() {
        assert_eq!(v6(9100).to_string(), "[::1]:9100");
        assert_eq!(v4(9100).to_string(), "127.0.0.1:9100");
        assert_eq!(Loopback::V6.to_string(), "::1");
    }
}
