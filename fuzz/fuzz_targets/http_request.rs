//! The server's request parser over arbitrary bytes, read as the server
//! reads a connection: request after request while the input holds a
//! complete head.
//!
//! Checks: no panic; a complete head is at least one byte and no longer than
//! the input or the head limit; the head alone parses to the same request;
//! a scrape timeout, when taken, is a positive finite duration.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiplexer::serve::downstream::{parse_request, MAX_REQUEST_HEAD_BYTES};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some(request)) = parse_request(rest, "/metrics") {
        assert!(request.length > 0 && request.length <= rest.len());
        assert!(request.length <= MAX_REQUEST_HEAD_BYTES);
        let head = &rest[..request.length];
        assert_eq!(parse_request(head, "/metrics"), Ok(Some(request)));
        if let Some(timeout) = request.scrape_timeout {
            assert!(!timeout.is_zero());
        }
        rest = &rest[request.length..];
    }
});
