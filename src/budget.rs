//! The pod's memory budget for container bodies, across containers: the
//! decisions only (no buffers, no sockets), so every rule is testable alone.
//!
//! Two byte counts:
//! - **held**: the latest body of every container (what is served), at
//!   most `held limit`. A new body that would take the total past it is
//!   refused, and the container counts a failure (`over_budget`); bodies
//!   already held stay. Its own previous body does not count against it (it
//!   is replaced), so a container refused once stays refused while the
//!   others hold as much, rather than flapping.
//! - **receive**: the buffers scrapes read into, in flight or kept idle for
//!   the next scrape (keeping them saves a page-faulting allocation per
//!   scrape), at most what the held bodies leave of `total limit`, and never
//!   less than `receive floor` (one body at the limit). A scrape asks before
//!   its buffer grows. Past the limit, idle buffers of other containers are
//!   released first (largest first); then the scrape that started first may
//!   still grow (so some scrape always finishes and frees room: no
//!   deadlock), and every other one pauses, its bytes left in the kernel and
//!   the exporter (TCP flow control), until a scrape ends.

/// Byte counts per container and the decisions that keep them in bounds.
#[derive(Debug)]
pub struct Budget {
    held_limit: usize,
    total_limit: usize,
    receive_floor: usize,
    held: Vec<usize>,
    /// Capacity of each container's receive buffer.
    receiving: Vec<usize>,
    /// Whether each container's buffer is in a scrape (not idle).
    in_flight: Vec<bool>,
    /// Order in which scrapes started: the first may always grow.
    started: Vec<u64>,
    next_start: u64,
    /// Containers whose idle buffer the caller must release.
    to_release: Vec<usize>,
    /// Containers paused for lack of room, to resume when some is freed.
    paused: Vec<usize>,
}

/// What a scrape that wants a larger buffer may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    Grow,
    /// Stop reading until [`Budget::take_resumable`] names this container.
    Pause,
}

impl Budget {
    pub fn new(
        containers: usize,
        held_limit: usize,
        total_limit: usize,
        receive_floor: usize,
    ) -> Budget {
        Budget {
            held_limit,
            total_limit,
            receive_floor,
            held: vec![0; containers],
            receiving: vec![0; containers],
            in_flight: vec![false; containers],
            started: vec![0; containers],
            next_start: 0,
            to_release: Vec::new(),
            paused: Vec::new(),
        }
    }

    pub fn held_total(&self) -> usize {
        self.held.iter().sum()
    }

    pub fn receiving_total(&self) -> usize {
        self.receiving.iter().sum()
    }

    pub fn held_limit(&self) -> usize {
        self.held_limit
    }

    /// What receive buffers may hold now.
    pub fn receive_limit(&self) -> usize {
        self.total_limit
            .saturating_sub(self.held_total())
            .max(self.receive_floor)
    }

    /// Whether container `index` may hold a body of `bytes` in place of the
    /// one it holds.
    pub fn fits_held(&self, index: usize, bytes: usize) -> bool {
        let others = self.held_total() - self.held[index];
        others + bytes <= self.held_limit
    }

    /// Container `index` now holds `bytes` (0 after a failure).
    pub fn set_held(&mut self, index: usize, bytes: usize) {
        self.held[index] = bytes;
    }

    /// A scrape of `index` starts with a buffer of `capacity` bytes.
    pub fn start(&mut self, index: usize, capacity: usize) {
        self.in_flight[index] = true;
        self.started[index] = self.next_start;
        self.next_start += 1;
        self.receiving[index] = capacity;
    }

    /// The scrape of `index` ended; its buffer (of `capacity` bytes now,
    /// idle) is kept for the next scrape. Returns whether keeping it fits;
    /// if not, the caller releases it.
    pub fn end(&mut self, index: usize, capacity: usize) -> bool {
        self.in_flight[index] = false;
        self.paused.retain(|&paused| paused != index);
        self.receiving[index] = capacity;
        if self.receiving_total() > self.receive_limit() {
            self.receiving[index] = 0;
            return false;
        }
        true
    }

    /// The buffer of idle container `index` was released by the caller.
    pub fn released(&mut self, index: usize) {
        if !self.in_flight[index] {
            self.receiving[index] = 0;
        }
    }

    /// The scrape of `index` wants its buffer to grow from its capacity to
    /// `capacity` bytes.
    pub fn grow(&mut self, index: usize, capacity: usize) -> Grant {
        let extra = capacity.saturating_sub(self.receiving[index]);
        let mut total = self.receiving_total();
        let limit = self.receive_limit();
        if total + extra > limit {
            // Idle buffers go first, largest first.
            while total + extra > limit {
                let largest_idle = (0..self.receiving.len())
                    .filter(|&other| other != index && !self.in_flight[other])
                    .filter(|&other| self.receiving[other] > 0)
                    .max_by_key(|&other| self.receiving[other]);
                let Some(other) = largest_idle else { break };
                total -= self.receiving[other];
                self.receiving[other] = 0;
                self.to_release.push(other);
            }
        }
        let first = (0..self.in_flight.len())
            .filter(|&other| self.in_flight[other])
            .min_by_key(|&other| self.started[other]);
        if total + extra <= limit || first == Some(index) {
            self.receiving[index] = capacity.max(self.receiving[index]);
            Grant::Grow
        } else {
            if !self.paused.contains(&index) {
                self.paused.push(index);
            }
            Grant::Pause
        }
    }

    /// Idle buffers the caller must now release (then [`Budget::released`]
    /// is implied: they are already uncounted).
    pub fn take_releases(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.to_release)
    }

    /// Paused scrapes to try again now that room may have been freed, in
    /// the order they paused.
    pub fn take_resumable(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.paused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn a_body_that_would_take_the_held_total_past_the_limit_is_refused() {
        let mut budget = Budget::new(3, 10 * MIB, 0, 4 * MIB);
        assert!(budget.fits_held(0, 4 * MIB));
        budget.set_held(0, 4 * MIB);
        assert!(budget.fits_held(1, 4 * MIB));
        budget.set_held(1, 4 * MIB);
        assert!(!budget.fits_held(2, 3 * MIB));
        assert!(budget.fits_held(2, 2 * MIB));
        // A container's own previous body is replaced, not added.
        assert!(budget.fits_held(0, 6 * MIB));
        assert!(!budget.fits_held(0, 6 * MIB + 1));
        // Refused once, refused again while the others hold as much: no flap.
        budget.set_held(2, 0);
        assert!(!budget.fits_held(2, 3 * MIB));
    }

    #[test]
    fn scrapes_grow_within_the_receive_limit_and_the_first_always_may() {
        let mut budget = Budget::new(3, 100 * MIB, 0, 4 * MIB);
        budget.start(0, 64 << 10);
        budget.start(1, 64 << 10);
        budget.start(2, 64 << 10);
        assert_eq!(budget.grow(1, 2 * MIB), Grant::Grow);
        assert_eq!(budget.grow(2, 2 * MIB), Grant::Pause);
        // The first started may grow past the limit: it will finish.
        assert_eq!(budget.grow(0, 4 * MIB), Grant::Grow);
        assert_eq!(budget.receiving_total(), 6 * MIB + (64 << 10));
        assert_eq!(budget.take_resumable(), vec![2]);
        // It ends; its buffer does not fit idle and is released.
        assert!(!budget.end(0, 4 * MIB));
        assert_eq!(budget.grow(2, 2 * MIB), Grant::Grow);
        assert_eq!(budget.receiving_total(), 4 * MIB);
    }

    #[test]
    fn idle_buffers_are_released_largest_first_before_anyone_pauses() {
        let mut budget = Budget::new(4, 100 * MIB, 0, 4 * MIB);
        for (index, size) in [(0, MIB), (1, 2 * MIB), (2, MIB / 2)] {
            budget.start(index, size);
            assert!(budget.end(index, size));
        }
        budget.start(0, MIB);
        budget.start(3, 64 << 10);
        assert_eq!(budget.grow(3, 2 * MIB), Grant::Grow);
        assert_eq!(budget.take_releases(), vec![1]);
        assert_eq!(budget.receiving_total(), MIB + MIB / 2 + 2 * MIB);
        // The last idle buffer goes, and that is still not enough: 3 did
        // not start first, so it pauses.
        assert_eq!(budget.grow(3, 3 * MIB + 1), Grant::Pause);
        assert_eq!(budget.take_releases(), vec![2]);
    }

    #[test]
    fn receive_buffers_get_what_the_held_bodies_leave_but_at_least_the_floor() {
        let mut budget = Budget::new(3, 16 * MIB, 20 * MIB, 4 * MIB);
        assert_eq!(budget.receive_limit(), 20 * MIB);
        budget.set_held(0, 3 * MIB);
        assert_eq!(budget.receive_limit(), 17 * MIB);
        budget.set_held(1, 13 * MIB);
        assert_eq!(budget.receive_limit(), 4 * MIB);
        budget.start(2, 0);
        budget.start(0, 0);
        assert_eq!(budget.grow(0, 4 * MIB), Grant::Grow);
        // Past the floor: 0 did not start first, so it pauses; 2 did, so
        // it may grow past.
        assert_eq!(budget.grow(0, 5 * MIB), Grant::Pause);
        assert_eq!(budget.grow(2, MIB), Grant::Grow);
    }

    #[test]
    fn paused_scrapes_resume_in_order_and_an_ended_one_is_forgotten() {
        let mut budget = Budget::new(3, 100 * MIB, 0, MIB);
        budget.start(0, MIB);
        budget.start(1, 0);
        budget.start(2, 0);
        assert_eq!(budget.grow(2, MIB), Grant::Pause);
        assert_eq!(budget.grow(1, MIB), Grant::Pause);
        assert_eq!(budget.grow(1, MIB), Grant::Pause);
        budget.end(2, 0);
        assert_eq!(budget.take_resumable(), vec![1]);
        assert!(budget.take_resumable().is_empty());
    }
}
