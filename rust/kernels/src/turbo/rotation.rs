//! The random rotation: a ±1 sign diagonal followed by the orthonormal fast
//! Walsh-Hadamard transform (FWHT).
//!
//! Sign `i` is negative when bit 63 of the `i`-th SplitMix64 output (counting
//! from 0) for the seed [`SIGN_SEED`] is set. Blocks shorter than
//! [`MAX_BLOCK`] use a prefix of the same 128 signs. Signs are applied by
//! flipping the IEEE sign bit, which is exact and identical on every path.

use super::prng::output_at;
use super::MAX_BLOCK;

/// Seed of the sign diagonal: the ASCII bytes of "TurboKV1", big-endian.
pub const SIGN_SEED: u64 = 0x5475_7262_6f4b_5631;

/// `0x8000_0000` where the sign is negative, 0 where it is positive.
pub(crate) static SIGN_MASKS: [u32; MAX_BLOCK] = sign_masks();

const fn sign_masks() -> [u32; MAX_BLOCK] {
    let mut masks = [0u32; MAX_BLOCK];
    let mut i = 0;
    while i < MAX_BLOCK {
        masks[i] = ((output_at(SIGN_SEED, i as u64) >> 63) as u32) << 31;
        i += 1;
    }
    masks
}

/// Returns the sign diagonal as ±1.0 (all `MAX_BLOCK` entries).
pub fn signs() -> [f32; MAX_BLOCK] {
    let mut s = [1f32; MAX_BLOCK];
    for (v, &m) in s.iter_mut().zip(SIGN_MASKS.iter()) {
        if m != 0 {
            *v = -1.0;
        }
    }
    s
}

/// `1 / sqrt(len)` rounded to f32, the FWHT normalization.
pub(crate) fn inv_sqrt_len(len: usize) -> f32 {
    (1.0 / (len as f64).sqrt()) as f32
}

pub(crate) fn apply_signs(x: &mut [f32]) {
    for (v, &m) in x.iter_mut().zip(SIGN_MASKS.iter()) {
        *v = f32::from_bits(v.to_bits() ^ m);
    }
}

/// Unnormalized in-place FWHT: stages of butterflies `(a, b) -> (a + b, a - b)`
/// with half-width 1, 2, 4, ... The SIMD versions perform the same
/// butterflies on the same operands, so their results are bit-identical.
pub(crate) fn fwht(x: &mut [f32]) {
    let n = x.len();
    let mut h = 1;
    while h < n {
        let mut i = 0;
        while i < n {
            for j in i..i + h {
                let a = x[j];
                let b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
            i += 2 * h;
        }
        h *= 2;
    }
}

pub(crate) fn rotate_scalar(x: &mut [f32]) {
    apply_signs(x);
    fwht(x);
    let s = inv_sqrt_len(x.len());
    for v in x.iter_mut() {
        *v *= s;
    }
}

pub(crate) fn rotate_inverse_scalar(x: &mut [f32]) {
    fwht(x);
    let s = inv_sqrt_len(x.len());
    for v in x.iter_mut() {
        *v *= s;
    }
    apply_signs(x);
}
