//! The pod's memory budget for container bodies, across containers: the
//! bodies held, and the buffers scrapes read into (with the pool of idle
//! ones). No sockets: the loop asks and applies the answers, so every rule
//! is testable alone.
//!
//! - **held**: the latest body of every container (what is served), at
//!   most `held limit`. A new body that would take the total past it is
//!   refused, and the container counts a failure (`over_budget`); bodies
//!   already held stay. Its own previous body does not count against it (it
//!   is replaced), so a container refused once stays refused while the
//!   others hold as much, rather than flapping.
//! - **receive**: the buffers of scrapes in flight plus the *pool* of idle
//!   buffers (a finished scrape's buffer, usually the previous body's, goes
//!   to the pool, not back to its container), at most about the largest
//!   body held and an eighth: one body's worth, not one per container. A
//!   scrape starts with the pool's best-fitting buffer; one that must grow
//!   takes a large enough pooled buffer if there is one (its bytes so far
//!   are copied), else grows within the limit (releasing pooled buffers,
//!   largest first, if need be), else, if it started first of those in
//!   flight, grows anyway (some scrape always finishes: no deadlock), else
//!   *pauses*: its bytes wait in the kernel and the exporter (TCP flow
//!   control) until a scrape ends. So large scrapes of a tick follow one
//!   another through one buffer's worth of memory, and no allocation
//!   happens once the pool is warm.

/// Room for a response head above a body in a receive buffer.
const HEAD_ROOM: usize = 64 * 1024;
/// Receive buffers may always hold this much: pods of small bodies keep a
/// buffer per container (node_exporter's 57 KB three times over fits
/// six times), so their scrapes never wait for one another.
const RECEIVE_FLOOR: usize = 1 << 20;

/// Byte counts, the pool, and the decisions that keep them in bounds.
#[derive(Debug)]
pub struct Budget {
    held_limit: usize,
    held: Vec<usize>,
    /// Capacity of each container's buffer while its scrape is in flight.
    receiving: Vec<usize>,
    in_flight: Vec<bool>,
    /// Order in which scrapes started: the first may always grow.
    started: Vec<u64>,
    /// What each scrape in flight expects to need (its last body).
    expected: Vec<usize>,
    next_start: u64,
    /// Idle receive buffers for any container; their stale bytes are kept
    /// as initialised room (`upstream/receive_buffer.rs`).
    pool: Vec<Vec<u8>>,
    /// Containers paused for lack of room, to resume when some is freed.
    paused: Vec<usize>,
    /// The most `receiving_total` has been, for the debug log.
    peak_receiving: usize,
}

/// What a scrape that wants a larger buffer may do.
#[derive(Debug, PartialEq, Eq)]
pub enum Growth {
    /// Allocate the larger buffer.
    Grow,
    /// Move the bytes so far into this pooled buffer (large enough).
    Adopt(Vec<u8>),
    /// Stop reading until [`Budget::take_resumable`] names this container.
    Pause,
}

impl Budget {
    pub fn new(containers: usize, held_limit: usize) -> Budget {
        Budget {
            held_limit,
            held: vec![0; containers],
            receiving: vec![0; containers],
            in_flight: vec![false; containers],
            started: vec![0; containers],
            expected: vec![0; containers],
            next_start: 0,
            pool: Vec::new(),
            paused: Vec::new(),
            peak_receiving: 0,
        }
    }

    pub fn held_total(&self) -> usize {
        self.held.iter().sum()
    }

    pub fn held_limit(&self) -> usize {
        self.held_limit
    }

    /// Receive buffers in flight and pooled.
    pub fn receiving_total(&self) -> usize {
        self.receiving.iter().sum::<usize>() + self.pooled()
    }

    /// The most receive buffers have held (for the debug log).
    pub fn peak_receiving(&self) -> usize {
        self.peak_receiving
    }

    fn pooled(&self) -> usize {
        self.pool.iter().map(Vec::capacity).sum()
    }

    /// What receive buffers may hold: the largest body held and an eighth,
    /// plus room for a head, and at least `RECEIVE_FLOOR`.
    pub fn receive_limit(&self) -> usize {
        let largest = self.held.iter().copied().max().unwrap_or(0);
        (largest + largest / 8 + HEAD_ROOM).max(RECEIVE_FLOOR)
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

    /// A scrape of `index` starts expecting about `expected` bytes: the
    /// pooled buffer that fits it best (the smallest large enough, else the
    /// largest), or an empty one.
    pub fn start(&mut self, index: usize, expected: usize) -> Vec<u8> {
        self.in_flight[index] = true;
        self.started[index] = self.next_start;
        self.expected[index] = expected;
        self.next_start += 1;
        let large_enough = (0..self.pool.len())
            .filter(|&at| self.pool[at].capacity() >= expected)
            .min_by_key(|&at| self.pool[at].capacity());
        let pick = large_enough
            .or_else(|| (0..self.pool.len()).max_by_key(|&at| self.pool[at].capacity()));
        let buffer = pick.map(|at| self.pool.swap_remove(at)).unwrap_or_default();
        self.receiving[index] = buffer.capacity();
        buffer
    }

    /// The scrape of `index` ended and gives back `buffer` (idle now): it
    /// goes to the pool if that fits, else it is dropped.
    pub fn end(&mut self, index: usize, buffer: Vec<u8>) {
        self.in_flight[index] = false;
        self.receiving[index] = 0;
        self.paused.retain(|&paused| paused != index);
        if buffer.capacity() > 0
            && self.receiving_total() + buffer.capacity() <= self.receive_limit()
        {
            self.pool.push(buffer);
        }
    }

    /// The scrape of `index` wants its buffer to grow to `capacity` bytes.
    pub fn grow(&mut self, index: usize, capacity: usize) -> Growth {
        let adoptable = (0..self.pool.len())
            .filter(|&at| self.pool[at].capacity() >= capacity)
            .min_by_key(|&at| self.pool[at].capacity());
        if let Some(at) = adoptable {
            let buffer = self.pool.swap_remove(at);
            self.receiving[index] = buffer.capacity();
            return Growth::Adopt(buffer);
        }
        let extra = capacity.saturating_sub(self.receiving[index]);
        let limit = self.receive_limit();
        let first = (0..self.in_flight.len())
            .filter(|&other| self.in_flight[other])
            .min_by_key(|&other| self.started[other]);
        // Others leave room for the first to reach what it expects, so it
        // rarely needs to pass the limit.
        let reserve = match first {
            Some(first) if first != index => {
                self.expected[first].saturating_sub(self.receiving[first])
            }
            _ => 0,
        };
        // Pooled buffers too small to adopt go first, largest first.
        while self.receiving_total() + extra + reserve > limit && !self.pool.is_empty() {
            let largest = (0..self.pool.len()).max_by_key(|&at| self.pool[at].capacity());
            if let Some(at) = largest {
                self.pool.swap_remove(at);
            }
        }
        if self.receiving_total() + extra + reserve <= limit || first == Some(index) {
            self.receiving[index] = capacity.max(self.receiving[index]);
            self.peak_receiving = self.peak_receiving.max(self.receiving_total());
            Growth::Grow
        } else {
            if !self.paused.contains(&index) {
                self.paused.push(index);
            }
            Growth::Pause
        }
    }

    /// Frees the idle buffers: a build is about to index every body, and
    /// the indexes are better off in that memory than beside it. The pool
    /// fills again with the next scrapes (one allocation each).
    pub fn release_pool(&mut self) {
        self.pool = Vec::new();
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
        let mut budget = Budget::new(3, 10 * MIB);
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

    /// Three containers of 1 MiB ticking together: once warm, their scrapes
    /// go through one pooled buffer, one after the other.
    #[test]
    fn large_scrapes_of_one_tick_take_turns_through_one_buffer() {
        let mut budget = Budget::new(3, 100 * MIB);
        for index in 0..3 {
            budget.set_held(index, MIB);
        }
        assert_eq!(budget.receive_limit(), MIB + MIB / 8 + HEAD_ROOM);
        budget.set_held(1, 0);
        budget.set_held(2, 0);
        // Cold: nothing pooled; 0 started first and grows, the others pause.
        let buffers: Vec<Vec<u8>> = (0..3).map(|index| budget.start(index, MIB)).collect();
        assert!(buffers.iter().all(|buffer| buffer.capacity() == 0));
        assert_eq!(budget.grow(1, 64 << 10), Growth::Grow);
        assert_eq!(budget.grow(0, MIB), Growth::Grow);
        assert_eq!(budget.grow(1, MIB), Growth::Pause);
        assert_eq!(budget.grow(2, MIB), Growth::Pause);
        assert_eq!(budget.take_resumable(), vec![1, 2]);
        // 0 ends and gives back a buffer of a body: pooled; 1 adopts it.
        budget.end(0, Vec::with_capacity(MIB));
        match budget.grow(1, MIB) {
            Growth::Adopt(buffer) => assert!(buffer.capacity() >= MIB),
            other => panic!("{other:?}"),
        }
        assert_eq!(budget.grow(2, MIB), Growth::Pause);
        budget.end(1, Vec::with_capacity(MIB));
        assert!(matches!(budget.grow(2, MIB), Growth::Adopt(_)));
        budget.end(2, Vec::with_capacity(MIB));
        assert!(budget.receiving_total() <= budget.receive_limit());
        // Warm: the next tick starts with the pooled buffer.
        assert_eq!(budget.start(0, MIB).capacity(), MIB);
    }

    #[test]
    fn the_first_scrape_in_flight_may_always_grow() {
        let mut budget = Budget::new(2, 100 * MIB);
        budget.set_held(0, 2 * MIB);
        budget.start(1, 0);
        budget.start(0, 0);
        assert_eq!(budget.grow(0, 2 * MIB), Growth::Grow);
        // 1 started first: it may grow past the limit (a new, larger body).
        assert_eq!(budget.grow(1, 4 * MIB), Growth::Grow);
        assert_eq!(budget.receiving_total(), 6 * MIB);
    }

    #[test]
    fn small_bodies_keep_a_buffer_each() {
        let mut budget = Budget::new(3, 100 * MIB);
        for index in 0..3 {
            budget.set_held(index, 60_000);
            budget.start(index, 61_000);
        }
        for index in 0..3 {
            assert_eq!(budget.grow(index, 61_000), Growth::Grow);
        }
        for index in 0..3 {
            budget.end(index, Vec::with_capacity(61_000));
        }
        assert_eq!(budget.receiving_total(), 183_000);
    }

    #[test]
    fn pooled_buffers_too_small_to_adopt_are_released_for_a_growing_scrape() {
        let mut budget = Budget::new(3, 100 * MIB);
        budget.set_held(0, 2 * MIB);
        let limit = budget.receive_limit();
        budget.start(1, 0);
        budget.start(2, 0);
        budget.end(1, Vec::with_capacity(MIB));
        budget.end(2, Vec::with_capacity(MIB / 2));
        assert_eq!(budget.receiving_total(), MIB + MIB / 2);
        // Nothing pooled is large enough: 0 starts with the largest.
        assert_eq!(budget.start(0, 3 * MIB).capacity(), MIB);
        // Growing past the limit beside the pooled half MiB: it goes.
        let wanted = limit - MIB / 4;
        assert_eq!(budget.grow(0, wanted), Growth::Grow);
        assert_eq!(budget.receiving_total(), wanted);
        // A buffer given back past the limit is dropped, not pooled.
        budget.start(1, 0);
        budget.end(1, Vec::with_capacity(2 * MIB));
        assert_eq!(budget.receiving_total(), wanted);
    }

    #[test]
    fn paused_scrapes_resume_in_order_and_an_ended_one_is_forgotten() {
        let mut budget = Budget::new(3, 100 * MIB);
        budget.set_held(0, 2 * MIB);
        budget.start(0, 0);
        budget.start(1, 0);
        budget.start(2, 0);
        assert_eq!(budget.grow(0, 2 * MIB), Growth::Grow);
        assert_eq!(budget.grow(2, MIB), Growth::Pause);
        assert_eq!(budget.grow(1, MIB), Growth::Pause);
        assert_eq!(budget.grow(1, MIB), Growth::Pause);
        budget.end(2, Vec::new());
        assert_eq!(budget.take_resumable(), vec![1]);
        assert!(budget.take_resumable().is_empty());
    }
}
