//! A small deterministic generator for the unit tests' random cases (xorshift64).

pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A double of mixed kinds: random bits (NaNs and infinities included), -0.0, or a
    /// sevenths fraction.
    pub(crate) fn value(&mut self) -> f64 {
        match self.below(10) {
            0 => f64::from_bits(self.next()),
            1 => -0.0,
            _ => (self.below(2_000_000) as f64 - 1_000_000.0) / 7.0,
        }
    }
}
