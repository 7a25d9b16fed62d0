//! SplitMix64, the generator behind the rotation's sign diagonal. Tests also
//! use it for reproducible inputs.

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// Mixes a SplitMix64 state into an output. The `i`-th output for `seed` is
/// `mix(seed + (i + 1) * GAMMA)`; a const fn so tables build at compile time.
pub(crate) const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Returns the `index`-th output (from 0) of SplitMix64 started at `seed`.
pub(crate) const fn output_at(seed: u64, index: u64) -> u64 {
    mix(seed.wrapping_add((index + 1).wrapping_mul(GAMMA)))
}

/// SplitMix64 state (tests use it for reproducible inputs).
#[cfg(test)]
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    state: u64,
}

#[cfg(test)]
impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// Returns the next output and advances the state.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix(self.state)
    }

    /// Returns a uniform value in [0, 1) with 24 random bits.
    pub(crate) fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / 16_777_216.0)
    }

    /// Returns a uniform value in [lo, hi).
    pub(crate) fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }

    /// Returns a standard normal sample (Box-Muller, computed in f64).
    pub(crate) fn gaussian(&mut self) -> f32 {
        let u1 = ((self.next_u64() >> 11) as f64 + 1.0) * (1.0 / 9_007_199_254_740_992.0);
        let u2 = (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0);
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }

    /// Returns `n` standard normal samples.
    pub(crate) fn gaussian_vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.gaussian()).collect()
    }

    /// Returns `n` uniform samples in [lo, hi).
    pub(crate) fn uniform_vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}
