//! A seeded pseudo-random generator (xorshift64*) for tests that feed
//! mangled input to a parser: the same seed makes the same inputs, so a
//! failure replays. Test-only; nothing in sheepdog itself is random.

/// The generator; any seed but 0.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
