//! TurboQuant KV-cache blocks.
//!
//! A block of up to 128 elements of one KV head's vector is multiplied by a
//! pseudo-random ±1 diagonal and rotated by the orthonormal fast
//! Walsh-Hadamard transform. For a vector of norm `r` and length `d`, the
//! rotated coordinates are close to N(0, r^2 / d), so each is quantized
//! against the Lloyd-Max codebook of that Gaussian.
//! Attention works in the rotated space: see [`score`] and [`accumulate`].
//!
//! # Block layout
//!
//! A block of `d` coordinates is the packed codes followed by one binary16
//! scale (little-endian, rounded to nearest even); there is no other header.
//! A code is the index of a centroid in the ascending unit-variance codebook
//! ([`codebook`]), and coordinate `i` dequantizes to
//! `scale * centroids[code_i]`, so the scale already contains the codebook's
//! `1 / sqrt(d)` factor. Bit streams are LSB-first: bit `k` of a stream is
//! bit `k % 8` of its byte `k / 8`.
//!
//! - 4 bits: code `i` is the nibble at stream bit `4 i` (`ceil(d/2)` bytes).
//! - 3 bits: code `i` is at stream bit `3 i` (`ceil(3d/8)` bytes). Eight codes
//!   fill 3 bytes, so SIMD kernels unpack them from one 32-bit load.
//! - 5 bits: a plane of high bits (bit `i` is bit 4 of code `i`,
//!   `ceil(d/8)` bytes) followed by a nibble plane laid out like the 4-bit
//!   codes (`ceil(d/2)` bytes). The high plane comes first so that 32-bit
//!   loads of it stay inside the block.
//!
//! For `d = 128` blocks are 50, 66 and 82 bytes for 3, 4 and 5 bits.
//!
//! The scale is the least-squares fit `<y, c> / <c, c>` of the rotated block
//! `y` on its code values `c`; the `scale_rule_comparison` test measures it
//! against the norm-based scale `|y| / sqrt(d)`. docs/kv-cache-format.md has
//! the numbers and the byte offsets.

pub mod codebook;
pub(crate) mod prng;
pub mod rotation;
pub(crate) mod scalar;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;

#[cfg(test)]
mod tests;

use crate::simd::{self, Isa};
pub use codebook::{codebook, Codebook};
pub use rotation::{signs, SIGN_SEED};

/// Bits per coordinate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TurboBits {
    B3,
    B4,
    B5,
}

impl TurboBits {
    /// Bits per coordinate as a number.
    pub fn bits(self) -> u32 {
        match self {
            TurboBits::B3 => 3,
            TurboBits::B4 => 4,
            TurboBits::B5 => 5,
        }
    }

    /// Maps 3, 4 or 5 to a width; other values return `None`.
    pub fn from_bits(bits: u32) -> Option<TurboBits> {
        match bits {
            3 => Some(TurboBits::B3),
            4 => Some(TurboBits::B4),
            5 => Some(TurboBits::B5),
            _ => None,
        }
    }
}

/// The rule that sets a block's scale; [`SCALE_RULE`] is the one in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScaleRule {
    /// `|y| / sqrt(d)`: the norm, with the codebook's `1 / sqrt(d)`. Only
    /// `scale_rule_comparison` selects it.
    #[allow(dead_code)]
    Norm,
    /// `<y, c> / <c, c>`: minimizes `|y - scale * c|` for the chosen codes.
    LeastSquares,
    /// `<y, y> / <y, c>`: makes `<y, scale * c> = <y, y>`, so a query along
    /// the block's own direction scores exactly. Measured against
    /// LeastSquares on Gemma 3 270M keys (400 tokens, KL from the fp32 cache):
    /// 0.0381 vs 0.0379 at 4 bits and 0.0141 vs 0.0145 at 5 bits, no clear
    /// winner, so LeastSquares stays.
    #[allow(dead_code)]
    Unbiased,
}

pub(crate) const SCALE_RULE: ScaleRule = ScaleRule::LeastSquares;

/// The largest block length.
pub const MAX_BLOCK: usize = 128;

/// Splits a head dimension into block lengths (each a power of two, at most
/// [`MAX_BLOCK`]), largest first. Their sum equals `head_dim`; 0 gives none.
pub fn block_lengths(head_dim: usize) -> Vec<usize> {
    let mut lengths = Vec::new();
    let mut rest = head_dim;
    while rest >= MAX_BLOCK {
        lengths.push(MAX_BLOCK);
        rest -= MAX_BLOCK;
    }
    let mut len = MAX_BLOCK / 2;
    while rest > 0 {
        if rest >= len {
            lengths.push(len);
            rest -= len;
        }
        len /= 2;
    }
    lengths
}

/// Bytes the codes of a block of `len` elements occupy.
pub fn code_bytes(bits: TurboBits, len: usize) -> usize {
    match bits {
        TurboBits::B3 => (3 * len + 7) / 8,
        TurboBits::B4 => (len + 1) / 2,
        TurboBits::B5 => (len + 7) / 8 + (len + 1) / 2,
    }
}

/// Bytes one block of `len` elements occupies.
pub fn block_bytes(bits: TurboBits, len: usize) -> usize {
    code_bytes(bits, len) + 2
}

/// Bytes one head vector of `head_dim` elements occupies (all its blocks).
pub fn head_bytes(bits: TurboBits, head_dim: usize) -> usize {
    block_lengths(head_dim)
        .iter()
        .map(|&len| block_bytes(bits, len))
        .sum()
}

fn check_block_len(op: &str, len: usize) {
    assert!(
        len.is_power_of_two() && len <= MAX_BLOCK,
        "{}: block length {} is invalid; use a power of two at most {} (see block_lengths)",
        op,
        len,
        MAX_BLOCK
    );
}

fn check_block_bytes(op: &str, bits: TurboBits, len: usize, have: usize) {
    let need = block_bytes(bits, len);
    assert!(
        have >= need,
        "{}: a {}-bit block of {} elements needs {} bytes but the slice has {}",
        op,
        bits.bits(),
        len,
        need,
        have
    );
}

/// Reports whether the SIMD kernels handle blocks of `len` (whole groups
/// of 8 coordinates); shorter blocks use the scalar code.
fn simd_len(len: usize) -> bool {
    len >= 8 && len % 8 == 0
}

/// Applies the forward rotation (sign diagonal, then orthonormal Hadamard)
/// in place. `x.len()` is a power of two at most [`MAX_BLOCK`].
pub fn rotate(x: &mut [f32]) {
    check_block_len("rotate", x.len());
    match simd::active() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if simd_len(x.len()) => unsafe { avx2::rotate(x) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if simd_len(x.len()) => unsafe { neon::rotate(x) },
        _ => rotation::rotate_scalar(x),
    }
}

/// Applies the inverse of [`rotate`] in place.
pub fn rotate_inverse(x: &mut [f32]) {
    check_block_len("rotate_inverse", x.len());
    match simd::active() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if simd_len(x.len()) => unsafe { avx2::rotate_inverse(x) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if simd_len(x.len()) => unsafe { neon::rotate_inverse(x) },
        _ => rotation::rotate_inverse_scalar(x),
    }
}

/// Quantizes the block `x` into `out` (`block_bytes(bits, x.len())` bytes).
///
/// Every path (scalar, AVX2, NEON) writes the same bytes for the same input.
pub fn quantize_block(bits: TurboBits, x: &[f32], out: &mut [u8]) {
    check_block_len("quantize_block", x.len());
    check_block_bytes("quantize_block", bits, x.len(), out.len());
    match simd::active() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if simd_len(x.len()) => unsafe { avx2::quantize_block(bits, x, out) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if simd_len(x.len()) => unsafe { neon::quantize_block(bits, x, out) },
        _ => scalar::quantize_block(bits, x, out, SCALE_RULE),
    }
}

/// Quantizes a head vector block by block (see [`block_lengths`]) into
/// `out` (`head_bytes(bits, x.len())` bytes), blocks back to back.
pub fn quantize_head(bits: TurboBits, x: &[f32], out: &mut [u8]) {
    let need = head_bytes(bits, x.len());
    assert!(
        out.len() >= need,
        "quantize_head: a {}-bit head of {} elements needs {} bytes but out has {}",
        bits.bits(),
        x.len(),
        need,
        out.len()
    );
    let mut at = 0;
    let mut byte = 0;
    for len in block_lengths(x.len()) {
        let bytes = block_bytes(bits, len);
        quantize_block(bits, &x[at..at + len], &mut out[byte..byte + bytes]);
        at += len;
        byte += bytes;
    }
}

/// Dequantizes a block into rotated space (no inverse rotation):
/// `out[i] = scale * codebook[index[i]]`.
pub fn dequantize_block_rotated(bits: TurboBits, block: &[u8], out: &mut [f32]) {
    check_block_bytes("dequantize_block_rotated", bits, out.len(), block.len());
    scalar::dequantize_block_rotated(bits, block, out);
}

/// Returns the dot product of a rotated query `q_rot` (length of the block)
/// with the block, read directly from its indices and scale.
pub fn score(bits: TurboBits, q_rot: &[f32], block: &[u8]) -> f32 {
    let mut out = [0f32];
    score_many(bits, q_rot, block, 0, 1, &mut out);
    out[0]
}

/// `acc += weight * dequantize_block_rotated(block)`, in rotated space.
pub fn accumulate(bits: TurboBits, acc: &mut [f32], weight: f32, block: &[u8]) {
    accumulate_many(bits, acc, &[weight], block, 0);
}

/// Scores `n` blocks against one rotated query: `out[i] = score(bits, q_rot,
/// &blocks[i * block_stride..])`. The block length is `q_rot.len()`.
///
/// `block_stride` is the distance in bytes between consecutive blocks (at
/// least `block_bytes`, or anything when `n <= 1`), so one head's blocks can
/// be read out of a cache row that interleaves heads or blocks.
pub fn score_many(
    bits: TurboBits,
    q_rot: &[f32],
    blocks: &[u8],
    block_stride: usize,
    n: usize,
    out: &mut [f32],
) {
    score_many_heads(bits, q_rot.len(), q_rot, blocks, block_stride, n, out, n);
}

/// Scores `n` blocks of length `len` against several rotated queries (the
/// query heads that share one KV head), reading each block once:
/// `out[h * out_stride + i] = score(bits, &q_rot[h * len..(h + 1) * len],
/// &blocks[i * block_stride..])` for every head `h < q_rot.len() / len`.
#[allow(clippy::too_many_arguments)]
pub fn score_many_heads(
    bits: TurboBits,
    len: usize,
    q_rot: &[f32],
    blocks: &[u8],
    block_stride: usize,
    n: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    check_many("score_many", bits, len, blocks.len(), block_stride, n);
    let heads = check_heads("score_many", len, q_rot.len());
    check_rows("score_many", "out", out.len(), heads, out_stride, n);
    match simd::active() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if simd_len(len) => unsafe {
            avx2::score_heads(bits, q_rot, len, blocks, block_stride, n, out, out_stride)
        },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if simd_len(len) => unsafe {
            neon::score_heads(bits, q_rot, len, blocks, block_stride, n, out, out_stride)
        },
        _ => {
            for (h, q) in q_rot.chunks_exact(len).enumerate() {
                for i in 0..n {
                    out[h * out_stride + i] = scalar::score(bits, q, &blocks[i * block_stride..]);
                }
            }
        }
    }
}

/// `acc += sum_i weights[i] * dequantize_block_rotated(&blocks[i * block_stride..])`
/// for `i < weights.len()`, in rotated space. The block length is `acc.len()`.
pub fn accumulate_many(
    bits: TurboBits,
    acc: &mut [f32],
    weights: &[f32],
    blocks: &[u8],
    block_stride: usize,
) {
    let n = weights.len();
    accumulate_many_heads(bits, acc.len(), acc, weights, n, n, blocks, block_stride);
}

/// [`accumulate_many`] for several heads reading the same `n` blocks of
/// length `len` once: head `h` adds `weights[h * w_stride + i]` times block
/// `i` to `acc[h * len..(h + 1) * len]`, for every head
/// `h < acc.len() / len`.
#[allow(clippy::too_many_arguments)]
pub fn accumulate_many_heads(
    bits: TurboBits,
    len: usize,
    acc: &mut [f32],
    weights: &[f32],
    w_stride: usize,
    n: usize,
    blocks: &[u8],
    block_stride: usize,
) {
    check_many("accumulate_many", bits, len, blocks.len(), block_stride, n);
    let heads = check_heads("accumulate_many", len, acc.len());
    check_rows("accumulate_many", "weights", weights.len(), heads, w_stride, n);
    match simd::active() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if simd_len(len) => unsafe {
            avx2::accumulate_heads(bits, acc, len, weights, w_stride, n, blocks, block_stride)
        },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if simd_len(len) => unsafe {
            neon::accumulate_heads(bits, acc, len, weights, w_stride, n, blocks, block_stride)
        },
        _ => {
            for (h, a) in acc.chunks_exact_mut(len).enumerate() {
                for i in 0..n {
                    let w = weights[h * w_stride + i];
                    scalar::accumulate(bits, a, w, &blocks[i * block_stride..]);
                }
            }
        }
    }
}

/// Returns the number of heads in `total` floats of `len` each.
fn check_heads(op: &str, len: usize, total: usize) -> usize {
    assert!(
        total % len == 0,
        "{}: {} query floats are not whole heads of {}",
        op,
        total,
        len
    );
    total / len
}

/// Checks that `have` floats hold `heads` rows of `n` at `stride`.
fn check_rows(op: &str, what: &str, have: usize, heads: usize, stride: usize, n: usize) {
    if heads == 0 || n == 0 {
        return;
    }
    assert!(
        stride >= n,
        "{}: {} stride {} is shorter than the {} positions",
        op,
        what,
        stride,
        n
    );
    let need = (heads - 1) * stride + n;
    assert!(
        have >= need,
        "{}: {} has {} elements but {} heads of {} at stride {} need {}",
        op,
        what,
        have,
        heads,
        n,
        stride,
        need
    );
}

fn check_many(op: &str, bits: TurboBits, len: usize, have: usize, stride: usize, n: usize) {
    check_block_len(op, len);
    if n == 0 {
        return;
    }
    let bytes = block_bytes(bits, len);
    assert!(
        n == 1 || stride >= bytes,
        "{}: block_stride {} is smaller than the {}-byte block",
        op,
        stride,
        bytes
    );
    let need = (n - 1) * stride + bytes;
    assert!(
        have >= need,
        "{}: {} blocks at stride {} need {} bytes but blocks has {}",
        op,
        n,
        stride,
        need,
        have
    );
}

