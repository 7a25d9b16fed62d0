//! AVX2 encoding of f32 activations as 8-bit blocks.
//!
//! Every function writes the same bytes as its scalar reference in
//! `super::scalar` for finite inputs. The block maximum does not depend on
//! the order of the search, each quant is one f32 product rounded the same
//! way, and the sums are exact integer sums. A NaN element gets a different
//! quant (the scalar cast gives 0).

use std::arch::x86_64::*;

use super::avx2::hsum_epi32;
use super::blocks::*;
use crate::f16::f32_to_f16;

/// Lanes of `v` with the sign bit cleared.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn abs_ps(v: __m256) -> __m256 {
    _mm256_andnot_ps(_mm256_set1_ps(-0.0), v)
}

/// Largest lane of `v`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn hmax_ps(v: __m256) -> f32 {
    let max4 = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let max2 = _mm_max_ps(max4, _mm_movehl_ps(max4, max4));
    let max1 = _mm_max_ss(max2, _mm_movehdup_ps(max2));
    _mm_cvtss_f32(max1)
}

/// Largest magnitude among the `n` vectors at `x`. A NaN lane is skipped,
/// as `f32::max` skips it in the scalar fold.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn max_abs(x: *const f32, n: usize) -> f32 {
    let mut amax = _mm256_setzero_ps();
    for i in 0..n {
        // `_mm256_max_ps` returns its second operand when either is NaN.
        amax = _mm256_max_ps(abs_ps(_mm256_loadu_ps(x.add(8 * i))), amax);
    }
    hmax_ps(amax)
}

/// `v` rounded to the nearest integer with ties away from zero, as `f32::round`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn round_half_away(v: __m256) -> __m256i {
    let truncated = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    // `v - trunc(v)` is exact, so a tie is seen as exactly 0.5.
    let fraction = abs_ps(_mm256_sub_ps(v, truncated));
    let away = _mm256_cmp_ps(fraction, _mm256_set1_ps(0.5), _CMP_GE_OQ);
    let signed_one = _mm256_or_ps(_mm256_set1_ps(1.0), _mm256_and_ps(v, _mm256_set1_ps(-0.0)));
    _mm256_cvtps_epi32(_mm256_add_ps(truncated, _mm256_and_ps(away, signed_one)))
}

/// Stores the 32 i32 lanes of `q` (values in -128..=127) as bytes, in order.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn store_i8x32(q: [__m256i; 4], dst: *mut i8) {
    // The packs work within 128-bit halves, so the packed 4-byte groups
    // come in the order q0 low, q1 low, q2 low, q3 low, q0 high, and so on.
    // The permutation puts each high group after its low group.
    let words_01 = _mm256_packs_epi32(q[0], q[1]);
    let words_23 = _mm256_packs_epi32(q[2], q[3]);
    let bytes = _mm256_packs_epi16(words_01, words_23);
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    _mm256_storeu_si256(dst as *mut __m256i, _mm256_permutevar8x32_epi32(bytes, order));
}

/// Quants of one 32-element block at `x` scaled by `id`, rounded half away
/// from zero.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn scaled_quants(x: *const f32, id: f32) -> [__m256i; 4] {
    let id = _mm256_set1_ps(id);
    let mut q = [_mm256_setzero_si256(); 4];
    for (i, q) in q.iter_mut().enumerate() {
        *q = round_half_away(_mm256_mul_ps(_mm256_loadu_ps(x.add(8 * i)), id));
    }
    q
}

/// # Safety
/// The CPU must support AVX2 and FMA, and `dst` must hold `src.len() / 32` blocks.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn quantize_q8_0(src: &[f32], dst: &mut [BlockQ8_0]) {
    for (x, block) in src.chunks_exact(QK).zip(dst.iter_mut()) {
        let d = max_abs(x.as_ptr(), QK / 8) / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = f32_to_f16(d).to_le_bytes();
        store_i8x32(scaled_quants(x.as_ptr(), id), block.qs.as_mut_ptr());
    }
}

/// # Safety
/// The CPU must support AVX2 and FMA, and `dst` must hold `src.len() / 32` blocks.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn quantize_q8_1(src: &[f32], dst: &mut [BlockQ8_1]) {
    for (x, block) in src.chunks_exact(QK).zip(dst.iter_mut()) {
        let d = max_abs(x.as_ptr(), QK / 8) / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = f32_to_f16(d).to_le_bytes();
        let q = scaled_quants(x.as_ptr(), id);
        let sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
        block.s = f32_to_f16(sum as f32 * d).to_le_bytes();
        store_i8x32(q, block.qs.as_mut_ptr());
    }
}

/// Index of the first element of the `QK_K` at `x` whose magnitude is `amax`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn first_with_magnitude(x: *const f32, amax: f32) -> usize {
    let target = _mm256_set1_ps(amax);
    for i in 0..QK_K / 8 {
        let equal = _mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x.add(8 * i))), target, _CMP_EQ_OQ);
        let mask = _mm256_movemask_ps(equal);
        if mask != 0 {
            return 8 * i + mask.trailing_zeros() as usize;
        }
    }
    unreachable!("the block maximum is one of its elements")
}

/// # Safety
/// The CPU must support AVX2 and FMA, and `dst` must hold `src.len() / 256` blocks.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn quantize_q8_k(src: &[f32], dst: &mut [BlockQ8K]) {
    for (x, block) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
        let amax = max_abs(x.as_ptr(), QK_K / 8);
        if amax == 0.0 {
            block.d = 0.0f32.to_le_bytes();
            block.qs = [0; QK_K];
            block.bsums = [0; QK_K / 16 * 2];
            continue;
        }

        let max = x[first_with_magnitude(x.as_ptr(), amax)];
        let iscale = -127.0 / max;
        let scale = _mm256_set1_ps(iscale);
        let limit = _mm256_set1_epi32(127);
        for group in 0..QK_K / 32 {
            let mut q = [_mm256_setzero_si256(); 4];
            for (i, q) in q.iter_mut().enumerate() {
                let v = _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(32 * group + 8 * i)), scale);
                let rounded = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                *q = _mm256_min_epi32(_mm256_cvtps_epi32(rounded), limit);
            }
            for half in 0..2 {
                let sum = hsum_epi32(_mm256_add_epi32(q[2 * half], q[2 * half + 1])) as i16;
                let g = 2 * group + half;
                block.bsums[2 * g..2 * g + 2].copy_from_slice(&sum.to_le_bytes());
            }
            store_i8x32(q, block.qs.as_mut_ptr().add(32 * group));
        }
        block.d = (1.0 / iscale).to_le_bytes();
    }
}
