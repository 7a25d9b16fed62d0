//! Scalar reference for the block layout, quantization and the fused
//! kernels. The SIMD quantizers reproduce [`quantize_rotated`] bit for bit.

use super::codebook::codebook;
use super::rotation::rotate_scalar;
use super::{code_bytes, ScaleRule, TurboBits, MAX_BLOCK};
use crate::f16::{f16_to_f32, f32_to_f16};

/// Sum of `term(i)` for `i < n` in the canonical order every quantizer
/// path uses: lane `i % 8` accumulates its terms in index order, then the
/// lanes are reduced as `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))`,
/// the order of an 8-lane register reduced by halves.
pub(crate) fn sum8<F: Fn(usize) -> f32>(n: usize, term: F) -> f32 {
    let mut lanes = [0f32; 8];
    for i in 0..n {
        lanes[i % 8] += term(i);
    }
    let t = [
        lanes[0] + lanes[4],
        lanes[1] + lanes[5],
        lanes[2] + lanes[6],
        lanes[3] + lanes[7],
    ];
    let u = [t[0] + t[2], t[1] + t[3]];
    u[0] + u[1]
}

/// Writes the `len` codes into the code area of a block (see the module
/// documentation of `turbo` for the layout).
pub(crate) fn pack_codes(bits: TurboBits, codes: &[u8], out: &mut [u8]) {
    let len = codes.len();
    for b in out[..code_bytes(bits, len)].iter_mut() {
        *b = 0;
    }
    match bits {
        TurboBits::B3 => {
            for (i, &c) in codes.iter().enumerate() {
                write_bits(out, 3 * i, 3, c);
            }
        }
        TurboBits::B4 => {
            for (i, &c) in codes.iter().enumerate() {
                out[i / 2] |= (c & 15) << (4 * (i % 2));
            }
        }
        TurboBits::B5 => {
            let (high, low) = out.split_at_mut((len + 7) / 8);
            for (i, &c) in codes.iter().enumerate() {
                high[i / 8] |= (c >> 4) << (i % 8);
                low[i / 2] |= (c & 15) << (4 * (i % 2));
            }
        }
    }
}

/// ORs the `width` low bits of `value` into the LSB-first bit stream at `bit`.
fn write_bits(out: &mut [u8], bit: usize, width: usize, value: u8) {
    for k in 0..width {
        if (value >> k) & 1 == 1 {
            out[(bit + k) / 8] |= 1 << ((bit + k) % 8);
        }
    }
}

/// Returns code `i` of a block of length `len`.
pub(crate) fn code_at(bits: TurboBits, block: &[u8], len: usize, i: usize) -> usize {
    match bits {
        TurboBits::B3 => {
            let mut c = 0;
            for k in 0..3 {
                let bit = 3 * i + k;
                c |= (((block[bit / 8] >> (bit % 8)) & 1) as usize) << k;
            }
            c
        }
        TurboBits::B4 => ((block[i / 2] >> (4 * (i % 2))) & 15) as usize,
        TurboBits::B5 => {
            let high_bytes = (len + 7) / 8;
            let high = ((block[i / 8] >> (i % 8)) & 1) as usize;
            let low = ((block[high_bytes + i / 2] >> (4 * (i % 2))) & 15) as usize;
            (high << 4) | low
        }
    }
}

/// Returns the block's scale (binary16, little-endian, after the codes).
pub(crate) fn block_scale(bits: TurboBits, block: &[u8], len: usize) -> f32 {
    let at = code_bytes(bits, len);
    f16_to_f32(u16::from_le_bytes([block[at], block[at + 1]]))
}

pub(crate) fn write_scale(bits: TurboBits, out: &mut [u8], len: usize, scale: f32) {
    let at = code_bytes(bits, len);
    out[at..at + 2].copy_from_slice(&f32_to_f16(scale).to_le_bytes());
}

/// Returns the nearest-centroid code of `z` (unit-variance units): the
/// number of boundaries strictly below `z`, so a tie goes to the lower code
/// and NaN gets code 0.
pub(crate) fn nearest_code(boundaries: &[f32], z: f32) -> u8 {
    boundaries.partition_point(|&b| b < z) as u8
}

/// Quantizes a rotated block `y` into `codes` and returns the scale.
///
/// `z = y * sqrt(len) / |y|` has unit-variance coordinates and is coded
/// against the Gaussian codebook `c`; the scale multiplies `c[code]` back to
/// the units of `y`. Every sum goes through [`sum8`] and no step uses FMA, so
/// the SIMD paths produce the same bits.
pub(crate) fn quantize_rotated(
    bits: TurboBits,
    y: &[f32],
    codes: &mut [u8],
    rule: ScaleRule,
) -> f32 {
    let book = codebook(bits);
    let boundaries = &book.boundaries[..book.levels - 1];
    let len = y.len();

    let norm = sum8(len, |i| y[i] * y[i]).sqrt();
    let inv = if norm > 0.0 {
        (len as f32).sqrt() / norm
    } else {
        0.0
    };
    for (c, &v) in codes.iter_mut().zip(y) {
        *c = nearest_code(boundaries, v * inv);
    }

    match rule {
        ScaleRule::Norm => norm / (len as f32).sqrt(),
        ScaleRule::LeastSquares => {
            let value = |i: usize| book.centroids[codes[i] as usize];
            let yc = sum8(len, |i| y[i] * value(i));
            let cc = sum8(len, |i| value(i) * value(i));
            yc / cc
        }
        ScaleRule::Unbiased => {
            let yc = sum8(len, |i| y[i] * book.centroids[codes[i] as usize]);
            norm * norm / yc
        }
    }
}

pub(crate) fn quantize_block(bits: TurboBits, x: &[f32], out: &mut [u8], rule: ScaleRule) {
    let len = x.len();
    let mut y = [0f32; MAX_BLOCK];
    y[..len].copy_from_slice(x);
    rotate_scalar(&mut y[..len]);
    let mut codes = [0u8; MAX_BLOCK];
    let scale = quantize_rotated(bits, &y[..len], &mut codes[..len], rule);
    pack_codes(bits, &codes[..len], out);
    write_scale(bits, out, len, scale);
}

pub(crate) fn dequantize_block_rotated(bits: TurboBits, block: &[u8], out: &mut [f32]) {
    let centroids = &codebook(bits).centroids;
    let len = out.len();
    let scale = block_scale(bits, block, len);
    for (i, o) in out.iter_mut().enumerate() {
        *o = scale * centroids[code_at(bits, block, len, i)];
    }
}

pub(crate) fn score(bits: TurboBits, q_rot: &[f32], block: &[u8]) -> f32 {
    let centroids = &codebook(bits).centroids;
    let len = q_rot.len();
    let mut sum = 0f32;
    for (i, &q) in q_rot.iter().enumerate() {
        sum += q * centroids[code_at(bits, block, len, i)];
    }
    sum * block_scale(bits, block, len)
}

pub(crate) fn accumulate(bits: TurboBits, acc: &mut [f32], weight: f32, block: &[u8]) {
    let centroids = &codebook(bits).centroids;
    let len = acc.len();
    let w = weight * block_scale(bits, block, len);
    for (i, a) in acc.iter_mut().enumerate() {
        *a += w * centroids[code_at(bits, block, len, i)];
    }
}
