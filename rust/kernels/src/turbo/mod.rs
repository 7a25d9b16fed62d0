//! TurboQuant KV-cache blocks.
//!
//! A block of up to 128 elements of one KV head's vector is normalized by its
//! L2 norm, multiplied by a pseudo-random ±1 diagonal, rotated by the
//! orthonormal fast Walsh-Hadamard transform and quantized coordinate by
//! coordinate against the Lloyd-Max codebook of the Gaussian that rotated
//! coordinates follow. Attention works in the rotated space: see
//! [`score`] and [`accumulate`].

pub(crate) mod prng;

/// Bits per coordinate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TurboBits {
    B3,
    B4,
    B5,
}

/// The largest block length.
pub const MAX_BLOCK: usize = 128;

/// Splits a head dimension into block lengths (each a power of two, at most
/// [`MAX_BLOCK`]). Their sum equals `head_dim`.
pub fn block_lengths(head_dim: usize) -> Vec<usize> {
    todo!()
}

/// Bytes one block of `len` elements occupies.
pub fn block_bytes(bits: TurboBits, len: usize) -> usize {
    todo!()
}

/// Applies the forward rotation (sign diagonal, then orthonormal Hadamard)
/// in place. `x.len()` is a power of two at most [`MAX_BLOCK`].
pub fn rotate(x: &mut [f32]) {
    todo!()
}

/// Applies the inverse of [`rotate`] in place.
pub fn rotate_inverse(x: &mut [f32]) {
    todo!()
}

/// Quantizes the block `x` into `out` (`block_bytes(bits, x.len())` bytes).
pub fn quantize_block(bits: TurboBits, x: &[f32], out: &mut [u8]) {
    todo!()
}

/// Dequantizes a block into rotated space (no inverse rotation):
/// `out[i] = scale * codebook[index[i]]`.
pub fn dequantize_block_rotated(bits: TurboBits, block: &[u8], out: &mut [f32]) {
    todo!()
}

/// Returns the dot product of a rotated query `q_rot` (length of the block)
/// with the block, read directly from its indices and scale.
pub fn score(bits: TurboBits, q_rot: &[f32], block: &[u8]) -> f32 {
    todo!()
}

/// `acc += weight * dequantize_block_rotated(block)`, in rotated space.
pub fn accumulate(bits: TurboBits, acc: &mut [f32], weight: f32, block: &[u8]) {
    todo!()
}

/// Scores `n` positions: `out[i] = score(bits, q_rot, &blocks[i * block_stride..])`.
pub fn score_many(bits: TurboBits, q_rot: &[f32], blocks: &[u8], block_stride: usize, n: usize, out: &mut [f32]) {
    todo!()
}

/// `acc += sum_i weights[i] * dequantize_block_rotated(&blocks[i * block_stride..])`.
pub fn accumulate_many(bits: TurboBits, acc: &mut [f32], weights: &[f32], blocks: &[u8], block_stride: usize) {
    todo!()
}
