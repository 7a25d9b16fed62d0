//! AVX2+FMA dot products.
//!
//! Integer parts are exact, so results differ from the scalar reference only
//! in the order of the f32 additions across blocks (and across 8 lanes).
//! `_mm256_maddubs_epi16` multiplies unsigned bytes by signed bytes and adds
//! pairs with i16 saturation; every caller keeps both pair products within
//! 2 * 63 * 128 or uses `dot_i8`, whose sign trick needs activations
//! in -127..=127.

use std::arch::x86_64::*;

use super::blocks::*;
use super::GgmlType;
use crate::f16::{bf16_to_f32, f16_to_f32};

/// # Safety
/// The CPU must support AVX2 and FMA, and the slices must have the lengths
/// `super::check_dot_lengths` enforces.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn vec_dot(ty: GgmlType, n: usize, weight: &[u8], act: &[u8]) -> f32 {
    let w = weight;
    let a = act;
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

// ------------------------------------------------------------------ helpers

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum_ps(v: __m256) -> f32 {
    let sum4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let sum2 = _mm_add_ps(sum4, _mm_movehl_ps(sum4, sum4));
    let sum1 = _mm_add_ss(sum2, _mm_movehdup_ps(sum2));
    _mm_cvtss_f32(sum1)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn hsum_epi32(v: __m256i) -> i32 {
    let sum4 = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let sum2 = _mm_add_epi32(sum4, _mm_unpackhi_epi64(sum4, sum4));
    let sum1 = _mm_add_epi32(sum2, _mm_shuffle_epi32(sum2, 0b01));
    _mm_cvtsi128_si32(sum1)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load_i8(p: *const i8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

/// Sums of products of 32 signed bytes, as 8 i32 lanes. `x` may hold -128;
/// `y` must not (the sign trick cannot negate it).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_i8(x: __m256i, y: __m256i) -> __m256i {
    let abs_x = _mm256_sign_epi8(x, x);
    let signed_y = _mm256_sign_epi8(y, x);
    _mm256_madd_epi16(_mm256_maddubs_epi16(abs_x, signed_y), _mm256_set1_epi16(1))
}

/// Sums of products of 32 unsigned bytes (at most 63) with 32 signed bytes.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_u8_i8(x: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1))
}

/// 16 packed bytes to 32 nibbles: lanes 0..16 are the low nibbles, lanes
/// 16..32 the high ones (the Q4_0 element order).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn unpack_nibbles(p: *const u8) -> __m256i {
    let bytes = _mm_loadu_si128(p as *const __m128i);
    let both = _mm256_set_m128i(_mm_srli_epi16(bytes, 4), bytes);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// 0x10 in lane `j` where bit `j` of `bits` is set, else 0.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn fifth_bits(bits: u32) -> __m256i {
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(bits as i32),
        _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0),
    );
    let select = _mm256_set1_epi64x(0x8040201008040201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// Logical right shift of every byte by `count` (0..8).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn srl_bytes(v: __m256i, count: i32, mask: u8) -> __m256i {
    let shifted = _mm256_srl_epi16(v, _mm_cvtsi32_si128(count));
    _mm256_and_si256(shifted, _mm256_set1_epi8(mask as i8))
}

/// i16 lanes 0..8 set to `low`, 8..16 to `high`: the scales of two groups
/// of 16 after `_mm256_maddubs_epi16`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn pair_scales(low: i16, high: i16) -> __m256i {
    _mm256_set_m128i(_mm_set1_epi16(high), _mm_set1_epi16(low))
}

/// `sum_g coef[g] * bsums[g]` over the 16 groups of a Q8_K block.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn bsum_dot(coef: __m256i, y: &BlockQ8K) -> i32 {
    hsum_epi32(_mm256_madd_epi16(coef, load(y.bsums.as_ptr())))
}

// ------------------------------------------------------------- float dots

/// Float dot product loop: `|i| load` returns weights `i..i + 8` as f32,
/// `|i| tail` weight `i`. The closure-like arguments are expanded in place,
/// because closures do not inherit `target_feature` on rustc 1.63 and would
/// not inline the intrinsics.
macro_rules! dot_floats {
    ($n:expr, $act:expr, |$i:ident| $load:expr, |$j:ident| $tail:expr) => {{
        let n: usize = $n;
        let x = $act.as_ptr() as *const f32;
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for k in 0..4 {
                let xv = _mm256_loadu_ps(x.add(i + 8 * k));
                let $i = i + 8 * k;
                acc[k] = _mm256_fmadd_ps($load, xv, acc[k]);
            }
            i += 32;
        }
        while i + 8 <= n {
            let $i = i;
            acc[0] = _mm256_fmadd_ps($load, _mm256_loadu_ps(x.add(i)), acc[0]);
            i += 8;
        }
        let mut sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
        while i < n {
            let $j = i;
            sum += $tail * std::ptr::read_unaligned(x.add(i));
            i += 1;
        }
        sum
    }};
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let wp = w.as_ptr() as *const f32;
    dot_floats!(n, a, |i| _mm256_loadu_ps(wp.add(i)), |i| std::ptr::read_unaligned(wp.add(i)))
}

/// Converts 8 binary16 values exactly without F16C, which is not a stable
/// target feature on rustc 1.63. The bits are shifted into f32 position and
/// scaled by 2^112, which also normalizes subnormals. Infinities and NaNs
/// get the all-ones exponent instead.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn f16x8_to_f32(p: *const u8) -> __m256 {
    let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
    let sign = _mm256_slli_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x8000)), 16);
    let magnitude = _mm256_and_si256(h, _mm256_set1_epi32(0x7fff));
    let shifted = _mm256_slli_epi32(magnitude, 13);
    let finite = _mm256_mul_ps(_mm256_castsi256_ps(shifted), _mm256_set1_ps(f32::from_bits(0x7780_0000)));
    let special = _mm256_castsi256_ps(_mm256_or_si256(shifted, _mm256_set1_epi32(0x7f80_0000)));
    let is_special = _mm256_castsi256_ps(_mm256_cmpgt_epi32(magnitude, _mm256_set1_epi32(0x7bff)));
    let value = _mm256_blendv_ps(finite, special, is_special);
    _mm256_or_ps(value, _mm256_castsi256_ps(sign))
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let wp = w.as_ptr();
    dot_floats!(n, a, |i| f16x8_to_f32(wp.add(2 * i)), |i| f16_to_f32(u16_at(w, i)))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn bf16x8_to_f32(p: *const u8) -> __m256 {
    let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
    _mm256_castsi256_ps(_mm256_slli_epi32(h, 16))
}

fn u16_at(bytes: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]])
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_bf16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let wp = w.as_ptr();
    dot_floats!(n, a, |i| bf16x8_to_f32(wp.add(2 * i)), |i| bf16_to_f32(u16_at(w, i)))
}

// ------------------------------------------------------------ legacy quants

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        let q = _mm256_sub_epi8(unpack_nibbles(x.qs.as_ptr()), _mm256_set1_epi8(8));
        let sumi = dot_i8(q, load_i8(y.qs.as_ptr()));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x.d() * y.d()), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q4_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut offsets = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let sumi = dot_u8_i8(unpack_nibbles(x.qs.as_ptr()), load_i8(y.qs.as_ptr()));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x.d() * y.d()), _mm256_cvtepi32_ps(sumi), acc);
        offsets += x.m() * y.s();
    }
    hsum_ps(acc) + offsets
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        let q = _mm256_or_si256(unpack_nibbles(x.qs.as_ptr()), fifth_bits(x.qh()));
        let centered = _mm256_sub_epi8(q, _mm256_set1_epi8(16));
        let sumi = dot_i8(centered, load_i8(y.qs.as_ptr()));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x.d() * y.d()), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q5_1(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut offsets = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let q = _mm256_or_si256(unpack_nibbles(x.qs.as_ptr()), fifth_bits(x.qh()));
        let sumi = dot_u8_i8(q, load_i8(y.qs.as_ptr()));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x.d() * y.d()), _mm256_cvtepi32_ps(sumi), acc);
        offsets += x.m() * y.s();
    }
    hsum_ps(acc) + offsets
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        let sumi = dot_i8(load_i8(x.qs.as_ptr()), load_i8(y.qs.as_ptr()));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x.d() * y.d()), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q8_1(w: &[BlockQ8_1], a: &[BlockQ8_1]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        let sumi = dot_i8(load_i8(x.qs.as_ptr()), load_i8(y.qs.as_ptr()));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x.d() * y.d()), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc)
}

// ---------------------------------------------------------------- K-quants

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q2_k(w: &[BlockQ2K], a: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut min_terms = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let packed = _mm_loadu_si128(x.scales.as_ptr() as *const __m128i);
        let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0f)));
        min_terms += y.d() * x.dmin() * bsum_dot(mins, y) as f32;

        let mut sumi = _mm256_setzero_si256();
        for half in 0..2 {
            let q = load(x.qs.as_ptr().add(32 * half));
            for pass in 0..4 {
                let values = srl_bytes(q, 2 * pass as i32, 0x03);
                let products = _mm256_maddubs_epi16(values, load_i8(y.qs.as_ptr().add(128 * half + 32 * pass)));
                let group = 8 * half + 2 * pass;
                let scales = pair_scales((x.scales[group] & 0x0f) as i16, (x.scales[group + 1] & 0x0f) as i16);
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(products, scales));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y.d() * x.d()), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc) - min_terms
}

/// Q3_K quants are `q - 4 * !hbit` in -4..4; the dot uses the unsigned
/// `q + 4 * hbit` and subtracts `4 * scale * bsum` per group.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q3_k(w: &[BlockQ3K], a: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        let scales = x.group_scales();
        let scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(scales.as_ptr() as *const __m128i));
        let offset = 4 * bsum_dot(scales16, y);

        let hmask = load(x.hmask.as_ptr());
        let mut sumi = _mm256_setzero_si256();
        for half in 0..2 {
            let q = load(x.qs.as_ptr().add(32 * half));
            for pass in 0..4 {
                let bit = (4 * half + pass) as i32;
                let high = _mm256_slli_epi16(srl_bytes(hmask, bit, 0x01), 2);
                let values = _mm256_or_si256(srl_bytes(q, 2 * pass as i32, 0x03), high);
                let products = _mm256_maddubs_epi16(values, load_i8(y.qs.as_ptr().add(128 * half + 32 * pass)));
                let group = 8 * half + 2 * pass;
                let pair = pair_scales(scales[group] as i16, scales[group + 1] as i16);
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(products, pair));
            }
        }
        let total = _mm256_sub_epi32(sumi, _mm256_setr_epi32(offset, 0, 0, 0, 0, 0, 0, 0));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x.d() * y.d()), _mm256_cvtepi32_ps(total), acc);
    }
    hsum_ps(acc)
}

/// Shared by Q4_K and Q5_K: `values[g]` contains the 32 unsigned quants of
/// group `g`. Returns the scaled quant sums (8 lanes) and the min term.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_k4(packed_scales: &[u8; 12], d: f32, dmin: f32, y: &BlockQ8K, values: &[__m256i; 8]) -> (__m256, f32) {
    let (scales, mins) = k4_scales_mins(packed_scales);
    let mut mins16 = [0i16; 16];
    for g in 0..16 {
        mins16[g] = mins[g / 2] as i16;
    }
    let min_sum = bsum_dot(_mm256_loadu_si256(mins16.as_ptr() as *const __m256i), y);

    let mut sumi = _mm256_setzero_si256();
    for group in 0..8 {
        let products = _mm256_maddubs_epi16(values[group], load_i8(y.qs.as_ptr().add(32 * group)));
        let scaled = _mm256_madd_epi16(products, _mm256_set1_epi16(scales[group] as i16));
        sumi = _mm256_add_epi32(sumi, scaled);
    }
    let scaled = _mm256_mul_ps(_mm256_set1_ps(y.d() * d), _mm256_cvtepi32_ps(sumi));
    (scaled, y.d() * dmin * min_sum as f32)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q4_k(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut min_terms = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let mut values = [_mm256_setzero_si256(); 8];
        for chunk in 0..4 {
            let q = load(x.qs.as_ptr().add(32 * chunk));
            values[2 * chunk] = _mm256_and_si256(q, _mm256_set1_epi8(0x0f));
            values[2 * chunk + 1] = srl_bytes(q, 4, 0x0f);
        }
        let (scaled, min_term) = dot_k4(&x.scales, x.d(), x.dmin(), y, &values);
        acc = _mm256_add_ps(acc, scaled);
        min_terms += min_term;
    }
    hsum_ps(acc) - min_terms
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q5_k(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut min_terms = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let qh = load(x.qh.as_ptr());
        let mut values = [_mm256_setzero_si256(); 8];
        for chunk in 0..4 {
            let q = load(x.qs.as_ptr().add(32 * chunk));
            for part in 0..2 {
                let group = 2 * chunk + part;
                let low = if part == 0 { _mm256_and_si256(q, _mm256_set1_epi8(0x0f)) } else { srl_bytes(q, 4, 0x0f) };
                let high = _mm256_slli_epi16(srl_bytes(qh, group as i32, 0x01), 4);
                values[group] = _mm256_or_si256(low, high);
            }
        }
        let (scaled, min_term) = dot_k4(&x.scales, x.d(), x.dmin(), y, &values);
        acc = _mm256_add_ps(acc, scaled);
        min_terms += min_term;
    }
    hsum_ps(acc) - min_terms
}

/// Q6_K quants are `q - 32`; the dot uses the unsigned `q` (0..64) and
/// subtracts `32 * scale * bsum` per group.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q6_k(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        let scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(x.scales.as_ptr() as *const __m128i));
        let offset = 32 * bsum_dot(scales16, y);

        let mut sumi = _mm256_setzero_si256();
        for half in 0..2 {
            let ql0 = load(x.ql.as_ptr().add(64 * half));
            let ql1 = load(x.ql.as_ptr().add(64 * half + 32));
            let qh = load(x.qh.as_ptr().add(32 * half));
            for k in 0..4 {
                let ql = if k % 2 == 0 { ql0 } else { ql1 };
                let low = if k < 2 { _mm256_and_si256(ql, _mm256_set1_epi8(0x0f)) } else { srl_bytes(ql, 4, 0x0f) };
                let high = _mm256_slli_epi16(srl_bytes(qh, 2 * k as i32, 0x03), 4);
                let values = _mm256_or_si256(low, high);
                let products = _mm256_maddubs_epi16(values, load_i8(y.qs.as_ptr().add(128 * half + 32 * k)));
                let group = 8 * half + 2 * k;
                let pair = pair_scales(x.scales[group] as i16, x.scales[group + 1] as i16);
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(products, pair));
            }
        }
        let total = _mm256_sub_epi32(sumi, _mm256_setr_epi32(offset, 0, 0, 0, 0, 0, 0, 0));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x.d() * y.d()), _mm256_cvtepi32_ps(total), acc);
    }
    hsum_ps(acc)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q8_k(w: &[BlockQ8K], a: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        let mut sumi = _mm256_setzero_si256();
        for chunk in 0..QK_K / 32 {
            let xv = load_i8(x.qs.as_ptr().add(32 * chunk));
            let yv = load_i8(y.qs.as_ptr().add(32 * chunk));
            sumi = _mm256_add_epi32(sumi, dot_i8(xv, yv));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x.d() * y.d()), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc)
}
