//! The one pseudo-random generator of the tests: xorshift64, deterministic,
//! no dependency, so a failing property test fails the same way every run.
//!
//! Unit tests reach it as `crate::test_rng`; the integration tests include
//! this same file as `util::rng`.

/// Marsaglia's xorshift64 (13, 7, 17): fast and good enough to pick test
/// inputs; not for anything that needs real randomness.
pub struct Rng(u64);

impl Rng {
    /// Zero is the generator's fixed point, so the seed must not be zero.
    pub fn new(seed: u64) -> Rng {
        assert_ne!(seed, 0, "xorshift never leaves a zero state");
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..bound` (slightly biased to small numbers, which no
    /// test minds). `bound` must not be zero.
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }
}
