//! NEON tile kernels: `R` weight rows times `T` activation rows per call,
//! for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K and Q6_K (see `avx2_tiles.rs`).
//!
//! Each weight block is unpacked once per tile and each binary16 scale is
//! converted once, with `fcvtl`. Byte products use the exact widening
//! `vmull_s8` and `vpadalq_s16` of `neon.rs`, so results differ from the
//! scalar reference only in the order of the f32 additions.

use std::arch::aarch64::*;
use std::arch::asm;

use super::{GgmlType, Operands};
use crate::f16::neon::cvt_f16x4_f32;

/// Computes every product of `ops` if `ty` has a tile kernel, and returns
/// whether it had one.
///
/// # Safety
/// `ops` must describe valid buffers of `ty` weights and
/// `ty.vec_dot_type()` activations.
pub(super) unsafe fn gemm(ty: GgmlType, ops: Operands) -> bool {
    // One token shares each activation block between 4 rows; a batch
    // reuses each unpacked weight block for 4 tokens.
    let single = ops.n_tokens == 1;
    match ty {
        GgmlType::Q8_0 if single => run_tiles!(tile_q8_0, 4, 1, ops),
        GgmlType::Q8_0 => run_tiles!(tile_q8_0, 2, 4, ops),
        GgmlType::Q4_0 if single => run_tiles!(tile_q4_0, 4, 1, ops),
        GgmlType::Q4_0 => run_tiles!(tile_q4_0, 2, 4, ops),
        GgmlType::Q5_0 if single => run_tiles!(tile_q5_0, 4, 1, ops),
        GgmlType::Q5_0 => run_tiles!(tile_q5_0, 2, 4, ops),
        GgmlType::Q4_1 if single => run_tiles!(tile_q4_1, 4, 1, ops),
        GgmlType::Q4_1 => run_tiles!(tile_q4_1, 2, 4, ops),
        GgmlType::Q5_1 if single => run_tiles!(tile_q5_1, 4, 1, ops),
        GgmlType::Q5_1 => run_tiles!(tile_q5_1, 2, 4, ops),
        GgmlType::Q4K if single => run_tiles!(tile_q4_k, 4, 1, ops),
        GgmlType::Q4K => run_tiles!(tile_q4_k, 2, 4, ops),
        GgmlType::Q6K if single => run_tiles!(tile_q6_k, 4, 1, ops),
        GgmlType::Q6K => run_tiles!(tile_q6_k, 2, 4, ops),
        _ => return false,
    }
    true
}

// ------------------------------------------------------------------ helpers

/// Prefetches the weights `ahead` bytes past `block` when the kernel runs
/// one token (see `avx2_tiles::prefetch_weights`). `prfm` is a hint: it
/// never faults, so the address may lie past the matrix.
#[inline(always)]
unsafe fn prefetch_weights<const T: usize>(block: *const u8, ahead: usize) {
    if T == 1 {
        asm!("prfm pldl1keep, [{0}]", in(reg) block.wrapping_add(ahead), options(nostack, preserves_flags, readonly));
    }
}

/// [`prefetch_weights`] for blocks longer than a cache line.
#[inline(always)]
unsafe fn prefetch_block<const T: usize>(block: *const u8, ahead: usize, block_bytes: usize) {
    let mut offset = 0;
    while offset < block_bytes {
        prefetch_weights::<T>(block.wrapping_add(offset), ahead);
        offset += 64;
    }
}

/// Loads the binary16 at `p` as f32.
#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    let bits = vld1_dup_u16(p as *const u16);
    vgetq_lane_f32::<0>(cvt_f16x4_f32(bits))
}

/// Loads the two consecutive binary16 values at `p` as f32.
#[inline(always)]
unsafe fn f16_pair(p: *const u8) -> (f32, f32) {
    let bits = vreinterpret_u16_u32(vld1_dup_u32(p as *const u32));
    let wide = cvt_f16x4_f32(bits);
    (vgetq_lane_f32::<0>(wide), vgetq_lane_f32::<1>(wide))
}

#[inline(always)]
unsafe fn f32_at(p: *const u8) -> f32 {
    std::ptr::read_unaligned(p as *const f32)
}

/// Adds the products of 16 signed byte pairs into 4 i32 lanes.
#[inline(always)]
unsafe fn dot_i8(acc: int32x4_t, x: int8x16_t, y: int8x16_t) -> int32x4_t {
    let low = vmull_s8(vget_low_s8(x), vget_low_s8(y));
    let high = vmull_high_s8(x, y);
    vpadalq_s16(vpadalq_s16(acc, low), high)
}

#[inline(always)]
unsafe fn load_i8(p: *const u8) -> int8x16_t {
    vld1q_s8(p as *const i8)
}

#[inline(always)]
unsafe fn hsum_tile<const R: usize, const T: usize>(acc: &[[float32x4_t; T]; R]) -> [[f32; T]; R] {
    let mut sums = [[0.0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            sums[r][t] = vaddvq_f32(acc[r][t]);
        }
    }
    sums
}

/// Splits 16 bytes into their low nibbles (elements 0..16) and high
/// nibbles (elements 16..32).
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> (uint8x16_t, uint8x16_t) {
    let bytes = vld1q_u8(p);
    (vandq_u8(bytes, vdupq_n_u8(0x0f)), vshrq_n_u8::<4>(bytes))
}

static BIT_SELECT: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];

/// 0x10 in lane `j` where bit `j` of `bits` is set, else 0.
#[inline(always)]
unsafe fn fifth_bits(bits: u16) -> uint8x16_t {
    let spread = vcombine_u8(vdup_n_u8(bits as u8), vdup_n_u8((bits >> 8) as u8));
    vandq_u8(vtstq_u8(spread, vld1q_u8(BIT_SELECT.as_ptr())), vdupq_n_u8(0x10))
}

/// Unpacks the unsigned 5-bit quants of a Q5_0 or Q5_1 block from its `qh`
/// and `qs` fields (elements 0..16 and 16..32).
#[inline(always)]
unsafe fn unpack_q5(qh: *const u8, qs: *const u8) -> (uint8x16_t, uint8x16_t) {
    let bits = std::ptr::read_unaligned(qh as *const u32);
    let (low, high) = nibbles(qs);
    (vorrq_u8(low, fifth_bits(bits as u16)), vorrq_u8(high, fifth_bits((bits >> 16) as u16)))
}

// ------------------------------------------------------------ legacy quants

#[inline(always)]
unsafe fn q4_0_values(block: *const u8) -> (int8x16_t, int8x16_t) {
    let (low, high) = nibbles(block.add(2));
    let eight = vdupq_n_s8(8);
    (vsubq_s8(vreinterpretq_s8_u8(low), eight), vsubq_s8(vreinterpretq_s8_u8(high), eight))
}

#[inline(always)]
unsafe fn q5_0_values(block: *const u8) -> (int8x16_t, int8x16_t) {
    let (low, high) = unpack_q5(block.add(2), block.add(6));
    let sixteen = vdupq_n_s8(16);
    (vsubq_s8(vreinterpretq_s8_u8(low), sixteen), vsubq_s8(vreinterpretq_s8_u8(high), sixteen))
}

#[inline(always)]
unsafe fn q8_0_values(block: *const u8) -> (int8x16_t, int8x16_t) {
    (load_i8(block.add(2)), load_i8(block.add(18)))
}

#[inline(always)]
unsafe fn q4_1_values(block: *const u8) -> (int8x16_t, int8x16_t) {
    let (low, high) = nibbles(block.add(4));
    (vreinterpretq_s8_u8(low), vreinterpretq_s8_u8(high))
}

#[inline(always)]
unsafe fn q5_1_values(block: *const u8) -> (int8x16_t, int8x16_t) {
    let (low, high) = unpack_q5(block.add(4), block.add(8));
    (vreinterpretq_s8_u8(low), vreinterpretq_s8_u8(high))
}

/// Tile kernel for the legacy formats: `sum_b d_w * d_a * sum(q_w * q_a)`,
/// plus `m_w * s_a` per block when `$has_m` (Q4_1 and Q5_1 against Q8_1).
/// `$act_qs` is the offset of the quants in an activation block.
macro_rules! legacy_tile {
    ($name:ident, $block_bytes:expr, $act_bytes:expr, $act_qs:expr, $values:ident, $has_m:expr) => {
        unsafe fn $name<const R: usize, const T: usize>(
            n_blocks: usize,
            w: [*const u8; R],
            a: [*const u8; T],
            ahead: usize,
        ) -> [[f32; T]; R] {
            let mut acc = [[vdupq_n_f32(0.0); T]; R];
            let mut offsets = [[0.0f32; T]; R];
            for b in 0..n_blocks {
                let mut y = [[vdupq_n_s8(0); 2]; T];
                let mut dy = [0.0f32; T];
                let mut sy = [0.0f32; T];
                for t in 0..T {
                    let block = a[t].add(b * $act_bytes);
                    y[t] = [load_i8(block.add($act_qs)), load_i8(block.add($act_qs + 16))];
                    let (d, s) = f16_pair(block);
                    dy[t] = d;
                    sy[t] = s;
                }
                for r in 0..R {
                    let block = w[r].add(b * $block_bytes);
                    // NOTE: the AVX2 one-token tiles prefetch the whole tile
                    // as one range, which tripled Q8_0 streaming of short rows
                    // on AMD EPYC. This path still prefetches each row's block,
                    // because no ARM hardware was at hand to measure a change.
                    prefetch_weights::<T>(block, ahead);
                    let (x_low, x_high) = $values(block);
                    let (dx, mx) = f16_pair(block);
                    for t in 0..T {
                        let sumi = dot_i8(dot_i8(vdupq_n_s32(0), x_low, y[t][0]), x_high, y[t][1]);
                        acc[r][t] = vfmaq_f32(acc[r][t], vcvtq_f32_s32(sumi), vdupq_n_f32(dx * dy[t]));
                        if $has_m {
                            offsets[r][t] += mx * sy[t];
                        }
                    }
                }
            }
            let mut sums = hsum_tile(&acc);
            for r in 0..R {
                for t in 0..T {
                    sums[r][t] += offsets[r][t];
                }
            }
            sums
        }
    };
}

legacy_tile!(tile_q4_0, 18, 34, 2, q4_0_values, false);
legacy_tile!(tile_q5_0, 22, 34, 2, q5_0_values, false);
legacy_tile!(tile_q8_0, 34, 34, 2, q8_0_values, false);
legacy_tile!(tile_q4_1, 20, 36, 4, q4_1_values, true);
legacy_tile!(tile_q5_1, 24, 36, 4, q5_1_values, true);

// ---------------------------------------------------------------- K-quants

/// Q8_K block layout: f32 `d`, 256 quants, 16 i16 group sums.
const Q8K_BYTES: usize = 292;
const Q8K_QS: usize = 4;
const Q8K_BSUMS: usize = 260;

/// `sum_g coef[g] * bsums[g]` over the 16 groups of the Q8_K block at `y`.
#[inline(always)]
unsafe fn bsum_dot(coef: int16x8_t, coef_high: int16x8_t, y: *const u8) -> i32 {
    let bsums = vld1q_s16(y.add(Q8K_BSUMS) as *const i16);
    let bsums_high = vld1q_s16(y.add(Q8K_BSUMS + 16) as *const i16);
    let low = vmlal_s16(vmull_s16(vget_low_s16(coef), vget_low_s16(bsums)), vget_high_s16(coef), vget_high_s16(bsums));
    let high = vmlal_s16(
        vmull_s16(vget_low_s16(coef_high), vget_low_s16(bsums_high)),
        vget_high_s16(coef_high),
        vget_high_s16(bsums_high),
    );
    vaddvq_s32(vaddq_s32(low, high))
}

/// Q4_K against Q8_K: `d_w * d_a * sum_g scale_g * dot_g - dmin_w * d_a *
/// sum_g min_g * (bsum_{2g} + bsum_{2g+1})`.
unsafe fn tile_q4_k<const R: usize, const T: usize>(
    n_blocks: usize,
    w: [*const u8; R],
    a: [*const u8; T],
    ahead: usize,
) -> [[f32; T]; R] {
    const BLOCK_BYTES: usize = 144;
    let mut acc = [[0.0f32; T]; R];
    for b in 0..n_blocks {
        let mut y = [std::ptr::null::<u8>(); T];
        let mut dy = [0.0f32; T];
        for t in 0..T {
            y[t] = a[t].add(b * Q8K_BYTES);
            dy[t] = f32_at(y[t]);
        }
        for r in 0..R {
            let block = w[r].add(b * BLOCK_BYTES);
            prefetch_block::<T>(block, ahead, BLOCK_BYTES);
            let (dx, dmin) = f16_pair(block);
            let mut packed = [0u8; 12];
            std::ptr::copy_nonoverlapping(block.add(4), packed.as_mut_ptr(), 12);
            let (scales, mins) = super::k4_scales_mins(&packed);
            // Each 32-element min covers two 16-element Q8_K group sums.
            let mut mins16 = [0i16; 16];
            for g in 0..16 {
                mins16[g] = mins[g / 2] as i16;
            }
            let mins_low = vld1q_s16(mins16.as_ptr());
            let mins_high = vld1q_s16(mins16.as_ptr().add(8));

            let mut sumi = [vdupq_n_s32(0); T];
            for chunk in 0..4 {
                for part in 0..2 {
                    let (low, high) = nibbles(block.add(16 + 32 * chunk + 16 * part));
                    let values = [vreinterpretq_s8_u8(low), vreinterpretq_s8_u8(high)];
                    for (k, &value) in values.iter().enumerate() {
                        let group = 2 * chunk + k;
                        for t in 0..T {
                            let yq = load_i8(y[t].add(Q8K_QS + 32 * group + 16 * part));
                            let products = dot_i8(vdupq_n_s32(0), value, yq);
                            sumi[t] = vmlaq_n_s32(sumi[t], products, scales[group] as i32);
                        }
                    }
                }
            }
            for t in 0..T {
                let min_sum = bsum_dot(mins_low, mins_high, y[t]);
                acc[r][t] += dy[t] * dx * vaddvq_s32(sumi[t]) as f32 - dy[t] * dmin * min_sum as f32;
            }
        }
    }
    acc
}

/// Q6_K against Q8_K with the centered quants `q - 32`:
/// `d_w * d_a * sum_g scale_g * dot_g`.
unsafe fn tile_q6_k<const R: usize, const T: usize>(
    n_blocks: usize,
    w: [*const u8; R],
    a: [*const u8; T],
    ahead: usize,
) -> [[f32; T]; R] {
    const BLOCK_BYTES: usize = 210;
    const QH: usize = 128;
    const SCALES: usize = 192;
    const D: usize = 208;
    let mut acc = [[0.0f32; T]; R];
    for b in 0..n_blocks {
        let mut y = [std::ptr::null::<u8>(); T];
        let mut dy = [0.0f32; T];
        for t in 0..T {
            y[t] = a[t].add(b * Q8K_BYTES);
            dy[t] = f32_at(y[t]);
        }
        for r in 0..R {
            let block = w[r].add(b * BLOCK_BYTES);
            prefetch_block::<T>(block, ahead, BLOCK_BYTES);
            let dx = f16_at(block.add(D));
            let mut sumi = [vdupq_n_s32(0); T];
            for half in 0..2 {
                for part in 0..2 {
                    let l = 16 * part;
                    let ql0 = vld1q_u8(block.add(64 * half + l));
                    let ql1 = vld1q_u8(block.add(64 * half + 32 + l));
                    let qh = vld1q_u8(block.add(QH + 32 * half + l));
                    let low = [
                        vandq_u8(ql0, vdupq_n_u8(0x0f)),
                        vandq_u8(ql1, vdupq_n_u8(0x0f)),
                        vshrq_n_u8::<4>(ql0),
                        vshrq_n_u8::<4>(ql1),
                    ];
                    let high = [
                        vshlq_n_u8::<4>(vandq_u8(qh, vdupq_n_u8(0x03))),
                        vshlq_n_u8::<2>(vandq_u8(qh, vdupq_n_u8(0x0c))),
                        vandq_u8(qh, vdupq_n_u8(0x30)),
                        vshrq_n_u8::<2>(vandq_u8(qh, vdupq_n_u8(0xc0))),
                    ];
                    for k in 0..4 {
                        let value = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(low[k], high[k])), vdupq_n_s8(32));
                        let group = 8 * half + 2 * k + part;
                        let scale = *block.add(SCALES + group) as i8 as i32;
                        for t in 0..T {
                            let yq = load_i8(y[t].add(Q8K_QS + 16 * group));
                            let products = dot_i8(vdupq_n_s32(0), value, yq);
                            sumi[t] = vmlaq_n_s32(sumi[t], products, scale);
                        }
                    }
                }
            }
            for t in 0..T {
                acc[r][t] += dx * dy[t] * vaddvq_s32(sumi[t]) as f32;
            }
        }
    }
    acc
}
