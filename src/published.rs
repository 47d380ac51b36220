//! The published body: the one merged exposition every `/metrics` response
//! shares until some data changes, and the earlier ones that slow clients
//! are still being sent.
//!
//! Life of a body: built once when a client asks and the data changed
//! ([`Published::start_build`], [`Published::publish`]); shared by reference
//! with every response ([`Rc`], never copied); *retired* when a newer one is
//! published while clients still hold it; freed when the last of them is
//! done; *evicted* when the retired bodies together pass a budget, in which
//! case the loop closes the clients holding them. Who holds a body is read
//! from its reference count, so this room needs no list of clients and no
//! socket.
//!
//! Memory: a build reuses the current body's buffer when no client holds
//! it, reserves the size of the previous build at once (no doublings), and
//! gives back what an outsized build left behind. A body the data no longer
//! matches is freed at once when nobody holds it ([`Published::invalidate`]):
//! the next request may be a minute away.

use std::rc::Rc;

/// What [`Published::publish`] decided.
pub struct Publication {
    /// The new body, to share with the clients asking now.
    pub body: Rc<Vec<u8>>,
    /// Retired bodies past the budget: close the clients that hold them.
    pub evicted: Vec<Rc<Vec<u8>>>,
}

pub struct Published {
    body: Rc<Vec<u8>>,
    /// The body matches the data: serve it as it is.
    current: bool,
    /// Earlier bodies still held by clients, oldest first.
    retired: Vec<Rc<Vec<u8>>>,
    /// Bytes the retired bodies may hold together.
    retired_budget: usize,
    /// What the next build reserves: the last body's size and a margin.
    size_hint: usize,
}

impl Published {
    pub fn new(retired_budget: usize) -> Published {
        Published {
            body: Rc::new(Vec::new()),
            current: false,
            retired: Vec::new(),
            retired_budget,
            size_hint: 0,
        }
    }

    /// The body to serve, if it still matches the data.
    pub fn current(&self) -> Option<Rc<Vec<u8>>> {
        self.current.then(|| self.body.clone())
    }

    /// The data changed: the next request builds a new body.
    pub fn invalidate(&mut self) {
        if !self.current {
            return;
        }
        self.current = false;
        if let Some(buffer) = Rc::get_mut(&mut self.body) {
            *buffer = Vec::new();
        }
    }

    /// An empty buffer to build the next body in: the current body's own
    /// allocation when no client holds it, reserved to the last size.
    pub fn start_build(&mut self) -> Vec<u8> {
        let mut out = match Rc::get_mut(&mut self.body) {
            Some(buffer) => std::mem::take(buffer),
            None => Vec::new(),
        };
        out.clear();
        out.reserve(self.size_hint);
        out
    }

    /// Makes `out` the body served until the data changes. The previous body
    /// is retired if a client still holds it.
    pub fn publish(&mut self, mut out: Vec<u8>) -> Publication {
        // Give back what an outsized build (a container's huge body, since
        // gone) left behind.
        if out.capacity() > out.len() * 2 + 64 * 1024 {
            out.shrink_to(out.len() + out.len() / 4);
        }
        self.size_hint = out.len() + out.len() / 8;
        let mut evicted = Vec::new();
        match Rc::get_mut(&mut self.body) {
            Some(buffer) => *buffer = out,
            None => {
                let previous = std::mem::replace(&mut self.body, Rc::new(out));
                self.retired.push(previous);
                evicted = self.evict_past_budget();
            }
        }
        self.current = true;
        Publication {
            body: self.body.clone(),
            evicted,
        }
    }

    /// A slow client holds only a reference to a body already built, but
    /// clients that stall one after the other could each hold a different
    /// one. Past the budget the oldest bodies go (the newest retired one is
    /// always kept: its readers are recent).
    fn evict_past_budget(&mut self) -> Vec<Rc<Vec<u8>>> {
        self.retired.retain(|body| Rc::strong_count(body) > 1);
        let mut held: usize = self.retired.iter().map(|body| body.len()).sum();
        let mut evicted = Vec::new();
        while held > self.retired_budget && self.retired.len() > 1 {
            let oldest = self.retired.remove(0);
            held -= oldest.len();
            evicted.push(oldest);
        }
        evicted
    }

    /// Bytes of retired bodies still held by clients.
    #[cfg(test)]
    fn retired_bytes(&self) -> usize {
        self.retired
            .iter()
            .filter(|body| Rc::strong_count(body) > 1)
            .map(|body| body.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(published: &mut Published, text: &str) -> Publication {
        let mut out = published.start_build();
        assert!(out.is_empty());
        out.extend_from_slice(text.as_bytes());
        published.publish(out)
    }

    #[test]
    fn shared_until_the_data_changes() {
        let mut published = Published::new(100);
        assert!(published.current().is_none(), "nothing built yet");
        let first = build(&mut published, "a 1\n");
        assert!(first.evicted.is_empty());
        let again = published.current().unwrap();
        assert!(Rc::ptr_eq(&first.body, &again), "shared, not rebuilt");
        published.invalidate();
        assert!(published.current().is_none());
        let second = build(&mut published, "a 2\n");
        assert_eq!(second.body.as_slice(), b"a 2\n");
        assert_eq!(first.body.as_slice(), b"a 1\n", "a holder keeps its bytes");
    }

    #[test]
    fn an_unheld_body_is_freed_on_invalidation() {
        let mut published = Published::new(100);
        drop(build(&mut published, &"x".repeat(1000)).body);
        published.invalidate();
        assert_eq!(published.body.capacity(), 0);
    }

    #[test]
    fn a_build_reuses_the_buffer_a_client_released() {
        let mut published = Published::new(100);
        let held = build(&mut published, "abc").body;
        published.invalidate(); // held: not freed
        let address = held.as_ptr();
        drop(held);
        let out = published.start_build();
        assert_eq!(out.as_ptr(), address);
        assert!(out.is_empty());
    }

    #[test]
    fn retired_while_held_and_freed_when_released() {
        let mut published = Published::new(100);
        let held = build(&mut published, "old\n").body;
        published.invalidate();
        let new = build(&mut published, "new\n");
        assert!(new.evicted.is_empty());
        assert_eq!(published.retired_bytes(), 4);
        drop(held);
        assert_eq!(published.retired_bytes(), 0);
    }

    /// Bodies of 40 bytes against a budget of 100, every one still held by
    /// a client: each row is a build and the bodies it evicted.
    #[test]
    fn the_oldest_are_evicted_past_the_budget() {
        let cases: &[(&str, &[&str])] = &[
            ("a", &[]),
            ("b", &[]),    // retired: a (40)
            ("c", &[]),    // retired: a b (80)
            ("d", &["a"]), // a b c is 120: a goes
            ("e", &["b"]), // b c d is 120: b goes
        ];
        let mut published = Published::new(100);
        let mut holders: Vec<Rc<Vec<u8>>> = Vec::new();
        for (name, expected) in cases {
            published.invalidate();
            let publication = build(&mut published, &name.repeat(40));
            holders.push(publication.body);
            let evicted: Vec<String> = publication
                .evicted
                .iter()
                .map(|body| (body[0] as char).to_string())
                .collect();
            assert_eq!(evicted, *expected, "building {name}");
        }
        assert_eq!(published.retired_bytes(), 80);
    }

    #[test]
    fn the_newest_retired_body_is_kept_whatever_its_size() {
        let mut published = Published::new(10);
        let big = build(&mut published, &"z".repeat(50)).body;
        published.invalidate();
        let next = build(&mut published, "q");
        assert!(next.evicted.is_empty());
        assert_eq!(published.retired_bytes(), 50);
        drop(big);
        assert_eq!(published.retired_bytes(), 0);
    }
}
