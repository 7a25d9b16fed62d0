//! NEON dot products on the ARMv8.0 baseline.
//!
//! Byte products use the widening `vmull_s8` and pairwise `vpadalq_s16`
//! (exact for every i8 pair), not `vdotq_s32`: the dot-product extension is
//! optional before ARMv8.4 and its intrinsic is unstable on rustc 1.63.
//! Results differ from the scalar reference only in the order of f32
//! additions.

use std::arch::aarch64::*;

use super::blocks::*;
use super::GgmlType;
use crate::f16::{bf16_to_f32, f16_to_f32};

pub fn vec_dot(ty: GgmlType, n: usize, weight: &[u8], act: &[u8]) -> f32 {
    let w = weight;
    let a = act;
    // SAFETY: NEON is part of the aarch64 baseline, and the caller checked
    // that the slices hold `n` elements of their types.
    unsafe {
        match ty {
            GgmlType::F32 => dot_f32(n, w, a),
            GgmlType::F16 => dot_f16(n, w, a),
            GgmlType::BF16 => dot_bf16(n, w, a),
            GgmlType::Q4_0 => dot_q4_0(as_blocks(w), as_blocks(a)),
            GgmlType::Q4_1 => dot_q4_1(as_blocks(w), as_blocks(a)),
            GgmlType::Q5_0 => dot_q5_0(as_blocks(w), as_blocks(a)),
            GgmlType::Q5_1 => dot_q5_1(as_blocks(w), as_blocks(a)),
            GgmlType::Q8_0 => dot_q8_0(as_blocks(w), as_blocks(a)),
            GgmlType::Q8_1 => dot_q8_1(as_blocks(w), as_blocks(a)),
            GgmlType::Q2K => dot_q2_k(as_blocks(w), as_blocks(a)),
            GgmlType::Q3K => dot_q3_k(as_blocks(w), as_blocks(a)),
            GgmlType::Q4K => dot_q4_k(as_blocks(w), as_blocks(a)),
            GgmlType::Q5K => dot_q5_k(as_blocks(w), as_blocks(a)),
            GgmlType::Q6K => dot_q6_k(as_blocks(w), as_blocks(a)),
            GgmlType::Q8K => dot_q8_k(as_blocks(w), as_blocks(a)),
        }
    }
}

// ------------------------------------------------------------------ helpers

/// Adds the products of 16 signed byte pairs into 4 i32 lanes.
#[inline]
unsafe fn dot_i8(acc: int32x4_t, x: int8x16_t, y: int8x16_t) -> int32x4_t {
    let low = vmull_s8(vget_low_s8(x), vget_low_s8(y));
    let high = vmull_high_s8(x, y);
    vpadalq_s16(vpadalq_s16(acc, low), high)
}

#[inline]
unsafe fn load_i8(p: *const i8) -> int8x16_t {
    vld1q_s8(p)
}

#[inline]
unsafe fn as_i8(v: uint8x16_t) -> int8x16_t {
    vreinterpretq_s8_u8(v)
}

/// Logical right shift of every byte by `count`, then `& mask`.
#[inline]
unsafe fn shr_mask(v: uint8x16_t, count: i8, mask: u8) -> uint8x16_t {
    vandq_u8(vshlq_u8(v, vdupq_n_s8(-count)), vdupq_n_u8(mask))
}

static BIT_SELECT: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];

/// 0x10 in lane `j` where bit `j` of `bits` is set, else 0.
#[inline]
unsafe fn fifth_bits(bits: u16) -> uint8x16_t {
    let spread = vcombine_u8(vdup_n_u8(bits as u8), vdup_n_u8((bits >> 8) as u8));
    vandq_u8(vtstq_u8(spread, vld1q_u8(BIT_SELECT.as_ptr())), vdupq_n_u8(0x10))
}

// ------------------------------------------------------------- float dots

/// Float dot loop: `load(i)` returns weights `i..i + 4`, `tail(i)` weight
/// `i`. NEON needs no `target_feature`, so closures inline normally.
#[inline]
unsafe fn dot_floats<L, T>(n: usize, act: &[u8], load: L, tail: T) -> f32
where
    L: Fn(usize) -> float32x4_t,
    T: Fn(usize) -> f32,
{
    let x = act.as_ptr() as *const f32;
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        for (k, lane) in acc.iter_mut().enumerate() {
            *lane = vfmaq_f32(*lane, load(i + 4 * k), vld1q_f32(x.add(i + 4 * k)));
        }
        i += 16;
    }
    while i + 4 <= n {
        acc[0] = vfmaq_f32(acc[0], load(i), vld1q_f32(x.add(i)));
        i += 4;
    }
    let mut sum = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
    while i < n {
        sum += tail(i) * std::ptr::read_unaligned(x.add(i));
        i += 1;
    }
    sum
}

fn u16_at(bytes: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]])
}

unsafe fn dot_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let wp = w.as_ptr() as *const f32;
    dot_floats(n, a, |i| vld1q_f32(wp.add(i)), |i| std::ptr::read_unaligned(wp.add(i)))
}

/// Converts 4 binary16 values exactly with integer operations (the
/// `float16x4_t` conversions are not stable on rustc 1.63): shift the bits
/// into f32 position and scale by 2^112, then patch infinities and NaNs.
#[inline]
unsafe fn f16x4_to_f32(p: *const u8) -> float32x4_t {
    let h = vmovl_u16(vld1_u16(p as *const u16));
    let sign = vshlq_n_u32::<16>(vandq_u32(h, vdupq_n_u32(0x8000)));
    let magnitude = vandq_u32(h, vdupq_n_u32(0x7fff));
    let shifted = vshlq_n_u32::<13>(magnitude);
    let finite = vmulq_f32(vreinterpretq_f32_u32(shifted), vdupq_n_f32(f32::from_bits(0x7780_0000)));
    let special = vorrq_u32(shifted, vdupq_n_u32(0x7f80_0000));
    let is_special = vcgtq_u32(magnitude, vdupq_n_u32(0x7bff));
    let value = vbslq_u32(is_special, special, vreinterpretq_u32_f32(finite));
    vreinterpretq_f32_u32(vorrq_u32(value, sign))
}

unsafe fn dot_f16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let wp = w.as_ptr();
    dot_floats(n, a, |i| f16x4_to_f32(wp.add(2 * i)), |i| f16_to_f32(u16_at(w, i)))
}

unsafe fn dot_bf16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let wp = w.as_ptr();
    let load = |i: usize| {
        let h = vmovl_u16(vld1_u16(wp.add(2 * i) as *const u16));
        vreinterpretq_f32_u32(vshlq_n_u32::<16>(h))
    };
    dot_floats(n, a, load, |i| bf16_to_f32(u16_at(w, i)))
}

// ------------------------------------------------------------ legacy quants

/// Splits 16 bytes into their low nibbles (elements 0..16) and high
/// nibbles (elements 16..32).
#[inline]
unsafe fn nibbles(p: *const u8) -> (uint8x16_t, uint8x16_t) {
    let bytes = vld1q_u8(p);
    (vandq_u8(bytes, vdupq_n_u8(0x0f)), vshrq_n_u8::<4>(bytes))
}

/// Accumulates `scale * sumi` where `sumi` is 4 partial i32 lanes.
#[inline]
unsafe fn fma_scaled(acc: float32x4_t, sumi: int32x4_t, scale: f32) -> float32x4_t {
    vfmaq_f32(acc, vcvtq_f32_s32(sumi), vdupq_n_f32(scale))
}

unsafe fn dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    for (x, y) in w.iter().zip(a) {
        let (low, high) = nibbles(x.qs.as_ptr());
        let eight = vdupq_n_s8(8);
        let sumi = dot_i8(vdupq_n_s32(0), vsubq_s8(as_i8(low), eight), load_i8(y.qs.as_ptr()));
        let sumi = dot_i8(sumi, vsubq_s8(as_i8(high), eight), load_i8(y.qs.as_ptr().add(16)));
        acc = fma_scaled(acc, sumi, x.d() * y.d());
    }
    vaddvq_f32(acc)
}

unsafe fn dot_q4_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    let mut offsets = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let (low, high) = nibbles(x.qs.as_ptr());
        let sumi = dot_i8(vdupq_n_s32(0), as_i8(low), load_i8(y.qs.as_ptr()));
        let sumi = dot_i8(sumi, as_i8(high), load_i8(y.qs.as_ptr().add(16)));
        acc = fma_scaled(acc, sumi, x.d() * y.d());
        offsets += x.m() * y.s();
    }
    vaddvq_f32(acc) + offsets
}

/// Unpacks the unsigned 5-bit quants of a Q5_0 or Q5_1 block (elements
/// 0..16 and 16..32).
#[inline]
unsafe fn unpack_q5(qs: &[u8; QK / 2], qh: u32) -> (uint8x16_t, uint8x16_t) {
    let (low, high) = nibbles(qs.as_ptr());
    (vorrq_u8(low, fifth_bits(qh as u16)), vorrq_u8(high, fifth_bits((qh >> 16) as u16)))
}

unsafe fn dot_q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    for (x, y) in w.iter().zip(a) {
        let (low, high) = unpack_q5(&x.qs, x.qh());
        let sixteen = vdupq_n_s8(16);
        let sumi = dot_i8(vdupq_n_s32(0), vsubq_s8(as_i8(low), sixteen), load_i8(y.qs.as_ptr()));
        let sumi = dot_i8(sumi, vsubq_s8(as_i8(high), sixteen), load_i8(y.qs.as_ptr().add(16)));
        acc = fma_scaled(acc, sumi, x.d() * y.d());
    }
    vaddvq_f32(acc)
}

unsafe fn dot_q5_1(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    let mut offsets = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let (low, high) = unpack_q5(&x.qs, x.qh());
        let sumi = dot_i8(vdupq_n_s32(0), as_i8(low), load_i8(y.qs.as_ptr()));
        let sumi = dot_i8(sumi, as_i8(high), load_i8(y.qs.as_ptr().add(16)));
        acc = fma_scaled(acc, sumi, x.d() * y.d());
        offsets += x.m() * y.s();
    }
    vaddvq_f32(acc) + offsets
}

/// Sum of products of 32 signed byte pairs, as 4 i32 lanes.
#[inline]
unsafe fn dot_i8_32(x: *const i8, y: *const i8) -> int32x4_t {
    let sumi = dot_i8(vdupq_n_s32(0), load_i8(x), load_i8(y));
    dot_i8(sumi, load_i8(x.add(16)), load_i8(y.add(16)))
}

unsafe fn dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    for (x, y) in w.iter().zip(a) {
        acc = fma_scaled(acc, dot_i8_32(x.qs.as_ptr(), y.qs.as_ptr()), x.d() * y.d());
    }
    vaddvq_f32(acc)
}

unsafe fn dot_q8_1(w: &[BlockQ8_1], a: &[BlockQ8_1]) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    for (x, y) in w.iter().zip(a) {
        acc = fma_scaled(acc, dot_i8_32(x.qs.as_ptr(), y.qs.as_ptr()), x.d() * y.d());
    }
    vaddvq_f32(acc)
}

// ---------------------------------------------------------------- K-quants

/// `sum_g coef[g] * bsums[g]` over the 16 groups of a Q8_K block.
fn bsum_dot(coef: &[i32; 16], y: &BlockQ8K) -> i32 {
    (0..16).map(|g| coef[g] * y.bsum(g) as i32).sum()
}

/// Q2_K and Q3_K share the element order: group `g` (16 elements) is bits
/// `2 * pass` of bytes `offset..offset + 16` of its half of `qs`, where
/// `pass = (g % 8) / 2` and `offset = 16 * (g % 2)`.
#[inline]
unsafe fn q2_group(qs: &[u8; QK_K / 4], group: usize) -> uint8x16_t {
    let half = group / 8;
    let pass = (group % 8) / 2;
    let bytes = vld1q_u8(qs.as_ptr().add(32 * half + 16 * (group % 2)));
    shr_mask(bytes, 2 * pass as i8, 0x03)
}

unsafe fn dot_q2_k(w: &[BlockQ2K], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let mut mins = [0i32; 16];
        let mut sumi = vdupq_n_s32(0);
        for group in 0..16 {
            let values = as_i8(q2_group(&x.qs, group));
            let products = dot_i8(vdupq_n_s32(0), values, load_i8(y.qs.as_ptr().add(16 * group)));
            sumi = vmlaq_n_s32(sumi, products, (x.scales[group] & 0x0f) as i32);
            mins[group] = (x.scales[group] >> 4) as i32;
        }
        let summin = bsum_dot(&mins, y);
        sum += y.d() * x.d() * vaddvq_s32(sumi) as f32 - y.d() * x.dmin() * summin as f32;
    }
    sum
}

unsafe fn dot_q3_k(w: &[BlockQ3K], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let scales = x.group_scales();
        let mut sumi = vdupq_n_s32(0);
        for group in 0..16 {
            let pass = group / 2;
            let hmask = vld1q_u8(x.hmask.as_ptr().add(16 * (group % 2)));
            let high = vandq_u8(vtstq_u8(hmask, vdupq_n_u8(1 << pass)), vdupq_n_u8(4));
            let values = vsubq_s8(as_i8(vorrq_u8(q2_group(&x.qs, group), high)), vdupq_n_s8(4));
            let products = dot_i8(vdupq_n_s32(0), values, load_i8(y.qs.as_ptr().add(16 * group)));
            sumi = vmlaq_n_s32(sumi, products, scales[group] as i32);
        }
        sum += x.d() * y.d() * vaddvq_s32(sumi) as f32;
    }
    sum
}

/// Shared by Q4_K and Q5_K: `values[g]` contains the 32 unsigned quants of
/// group `g` as two vectors.
#[inline]
unsafe fn dot_k4(x_scales: &[u8; 12], d: f32, dmin: f32, y: &BlockQ8K, values: &[[uint8x16_t; 2]; 8]) -> f32 {
    let (scales, mins) = k4_scales_mins(x_scales);
    let mut mins16 = [0i32; 16];
    for g in 0..16 {
        mins16[g] = mins[g / 2] as i32;
    }
    let summin = bsum_dot(&mins16, y);

    let mut sumi = vdupq_n_s32(0);
    for group in 0..8 {
        let yp = y.qs.as_ptr().add(32 * group);
        let products = dot_i8(vdupq_n_s32(0), as_i8(values[group][0]), load_i8(yp));
        let products = dot_i8(products, as_i8(values[group][1]), load_i8(yp.add(16)));
        sumi = vmlaq_n_s32(sumi, products, scales[group] as i32);
    }
    y.d() * d * vaddvq_s32(sumi) as f32 - y.d() * dmin * summin as f32
}

unsafe fn dot_q4_k(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let mut values = [[vdupq_n_u8(0); 2]; 8];
        for chunk in 0..4 {
            for part in 0..2 {
                let (low, high) = nibbles(x.qs.as_ptr().add(32 * chunk + 16 * part));
                values[2 * chunk][part] = low;
                values[2 * chunk + 1][part] = high;
            }
        }
        sum += dot_k4(&x.scales, x.d(), x.dmin(), y, &values);
    }
    sum
}

unsafe fn dot_q5_k(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let qh = [vld1q_u8(x.qh.as_ptr()), vld1q_u8(x.qh.as_ptr().add(16))];
        let mut values = [[vdupq_n_u8(0); 2]; 8];
        for chunk in 0..4 {
            for part in 0..2 {
                let (low, high) = nibbles(x.qs.as_ptr().add(32 * chunk + 16 * part));
                for (k, nibble) in [low, high].iter().enumerate() {
                    let group = 2 * chunk + k;
                    let bit = vandq_u8(vtstq_u8(qh[part], vdupq_n_u8(1 << group)), vdupq_n_u8(0x10));
                    values[group][part] = vorrq_u8(*nibble, bit);
                }
            }
        }
        sum += dot_k4(&x.scales, x.d(), x.dmin(), y, &values);
    }
    sum
}

/// Q6_K: each 16-element group has one scale, so the centered quants
/// (`q - 32`) are multiplied directly.
unsafe fn dot_q6_k(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let mut sumi = vdupq_n_s32(0);
        for half in 0..2 {
            for k in 0..4 {
                for part in 0..2 {
                    let l = 16 * part;
                    let ql = vld1q_u8(x.ql.as_ptr().add(64 * half + 32 * (k % 2) + l));
                    let low = if k < 2 { vandq_u8(ql, vdupq_n_u8(0x0f)) } else { vshrq_n_u8::<4>(ql) };
                    let qh = vld1q_u8(x.qh.as_ptr().add(32 * half + l));
                    let high = vshlq_n_u8::<4>(shr_mask(qh, 2 * k as i8, 0x03));
                    let values = vsubq_s8(as_i8(vorrq_u8(low, high)), vdupq_n_s8(32));
                    let group = 8 * half + 2 * k + part;
                    let products = dot_i8(vdupq_n_s32(0), values, load_i8(y.qs.as_ptr().add(16 * group)));
                    sumi = vmlaq_n_s32(sumi, products, x.scales[group] as i32);
                }
            }
        }
        sum += x.d() * y.d() * vaddvq_s32(sumi) as f32;
    }
    sum
}

unsafe fn dot_q8_k(w: &[BlockQ8K], a: &[BlockQ8K]) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    for (x, y) in w.iter().zip(a) {
        let mut sumi = vdupq_n_s32(0);
        for chunk in 0..QK_K / 16 {
            sumi = dot_i8(sumi, load_i8(x.qs.as_ptr().add(16 * chunk)), load_i8(y.qs.as_ptr().add(16 * chunk)));
        }
        acc = fma_scaled(acc, sumi, x.d() * y.d());
    }
    vaddvq_f32(acc)
}
