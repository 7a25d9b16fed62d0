//! NEON encoding of f32 activations as 8-bit blocks.
//!
//! Every function gives the same bytes as its scalar reference in
//! `super::scalar` for finite inputs: `vrndaq_f32` rounds ties away from
//! zero like `f32::round`, `vrndnq_f32` rounds them to even like ggml's
//! `nearest_int`, and the maxima skip NaN like `f32::max`.

use std::arch::aarch64::*;

use super::blocks::*;
use crate::f16::f32_to_f16;

/// Largest magnitude among the `n` vectors of 4 at `x`.
#[inline]
unsafe fn max_abs(x: *const f32, n: usize) -> f32 {
    let mut amax = vdupq_n_f32(0.0);
    for i in 0..n {
        amax = vmaxnmq_f32(amax, vabsq_f32(vld1q_f32(x.add(4 * i))));
    }
    vmaxnmvq_f32(amax)
}

/// Stores 4 vectors of i32 (values in -128..=127) as 16 bytes, in order.
#[inline]
unsafe fn store_i8x16(q: &[int32x4_t], dst: *mut i8) {
    let low = vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1]));
    let high = vcombine_s16(vqmovn_s32(q[2]), vqmovn_s32(q[3]));
    vst1q_s8(dst, vcombine_s8(vqmovn_s16(low), vqmovn_s16(high)));
}

/// Quants of one 32-element block at `x` scaled by `id`, rounded half away
/// from zero.
#[inline]
unsafe fn scaled_quants(x: *const f32, id: f32) -> [int32x4_t; 8] {
    let mut q = [vdupq_n_s32(0); 8];
    for (i, q) in q.iter_mut().enumerate() {
        *q = vcvtq_s32_f32(vrndaq_f32(vmulq_n_f32(vld1q_f32(x.add(4 * i)), id)));
    }
    q
}

/// Sum of the lanes of all vectors in `q`.
#[inline]
unsafe fn sum_lanes(q: &[int32x4_t]) -> i32 {
    let mut sum = vdupq_n_s32(0);
    for v in q {
        sum = vaddq_s32(sum, *v);
    }
    vaddvq_s32(sum)
}

/// # Safety
/// `dst` must hold `src.len() / 32` blocks.
pub unsafe fn quantize_q8_0(src: &[f32], dst: &mut [BlockQ8_0]) {
    for (x, block) in src.chunks_exact(QK).zip(dst.iter_mut()) {
        let d = max_abs(x.as_ptr(), QK / 4) / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = f32_to_f16(d).to_le_bytes();
        let q = scaled_quants(x.as_ptr(), id);
        store_i8x16(&q[..4], block.qs.as_mut_ptr());
        store_i8x16(&q[4..], block.qs.as_mut_ptr().add(16));
    }
}

/// # Safety
/// `dst` must hold `src.len() / 32` blocks.
pub unsafe fn quantize_q8_1(src: &[f32], dst: &mut [BlockQ8_1]) {
    for (x, block) in src.chunks_exact(QK).zip(dst.iter_mut()) {
        let d = max_abs(x.as_ptr(), QK / 4) / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = f32_to_f16(d).to_le_bytes();
        let q = scaled_quants(x.as_ptr(), id);
        block.s = f32_to_f16(sum_lanes(&q) as f32 * d).to_le_bytes();
        store_i8x16(&q[..4], block.qs.as_mut_ptr());
        store_i8x16(&q[4..], block.qs.as_mut_ptr().add(16));
    }
}

/// # Safety
/// `dst` must hold `src.len() / 256` blocks.
pub unsafe fn quantize_q8_k(src: &[f32], dst: &mut [BlockQ8K]) {
    for (x, block) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
        let amax = max_abs(x.as_ptr(), QK_K / 4);
        if amax == 0.0 {
            block.d = 0.0f32.to_le_bytes();
            block.qs = [0; QK_K];
            block.bsums = [0; QK_K / 16 * 2];
            continue;
        }

        let first = x.iter().position(|v| v.abs() == amax).expect("the block maximum is one of its elements");
        let iscale = -127.0 / x[first];
        let limit = vdupq_n_s32(127);
        for g in 0..QK_K / 16 {
            let mut q = [vdupq_n_s32(0); 4];
            for (i, q) in q.iter_mut().enumerate() {
                let v = vmulq_n_f32(vld1q_f32(x.as_ptr().add(16 * g + 4 * i)), iscale);
                *q = vminq_s32(vcvtq_s32_f32(vrndnq_f32(v)), limit);
            }
            let sum = sum_lanes(&q) as i16;
            block.bsums[2 * g..2 * g + 2].copy_from_slice(&sum.to_le_bytes());
            store_i8x16(&q, block.qs.as_mut_ptr().add(16 * g));
        }
        block.d = (1.0 / iscale).to_le_bytes();
    }
}
