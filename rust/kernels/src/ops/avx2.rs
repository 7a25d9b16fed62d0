//! AVX2+FMA kernels. Every function requires AVX2 and FMA (checked by the
//! dispatcher through `simd::active`); the f16 ones also require F16C.
//! Tails shorter than a vector go through the scalar reference.

use std::arch::x86_64::*;

use super::scalar;
use crate::f16::x86::load_f16x8;

/// Horizontal sum of 8 lanes.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// Horizontal sum of 4 f64 lanes.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn hsum_pd(v: __m256d) -> f64 {
    let lo = _mm256_castpd256_pd128(v);
    let hi = _mm256_extractf128_pd(v, 1);
    let s = _mm_add_pd(lo, hi);
    let s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    _mm_cvtsd_f64(s)
}

/// `exp(x)` for 8 lanes. Range reduction `x = n ln2 + r` with `|r| <= ln2/2`
/// (ln 2 split into a 9-bit head and a tail so `n * head` is exact), then
/// the degree-7 Taylor polynomial of `exp(r)`, whose truncation error is
/// below 1e-8 relative. Inputs above 88 saturate to `exp(88)`, inputs below
/// -87.3 (where the result leaves the normal range) return 0, and NaN is not
/// propagated. The max relative error is checked by `exp_poly_accuracy`.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn exp_ps(x: __m256) -> __m256 {
    // 355/512: 9 significant bits, so `n * LN2_HI` is exact for |n| <= 128.
    const LN2_HI: f32 = 355.0 / 512.0;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let too_small = _mm256_cmp_ps(x, _mm256_set1_ps(-87.336_54), _CMP_LT_OQ);
    let x = _mm256_min_ps(x, _mm256_set1_ps(88.0));
    let x = _mm256_max_ps(x, _mm256_set1_ps(-87.336_54));

    let n = _mm256_round_ps(
        _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
    );
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);

    let mut p = _mm256_set1_ps(1.0 / 5040.0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0 / 720.0));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0 / 120.0));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0 / 24.0));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0 / 6.0));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0));

    // n is in [-126, 127], so 2^n is a normal f32 built from its exponent.
    let e = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)),
        23,
    );
    let y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    _mm256_andnot_ps(too_small, y)
}

/// `x / (1 + exp(-2 u))` with `u = sqrt(2/pi) (x + 0.044715 x^3)`, which
/// equals `0.5 x (1 + tanh(u))` without the cancellation of `1 + tanh(u)`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn gelu_tanh_ps(x: __m256) -> __m256 {
    let x2 = _mm256_mul_ps(x, x);
    let inner = _mm256_fmadd_ps(x2, _mm256_set1_ps(0.044_715), _mm256_set1_ps(1.0));
    let u = _mm256_mul_ps(_mm256_mul_ps(x, _mm256_set1_ps(0.797_884_6)), inner);
    let e = exp_ps(_mm256_mul_ps(u, _mm256_set1_ps(-2.0)));
    _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e))
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn silu_ps(x: __m256) -> __m256 {
    let e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), x));
    _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e))
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, s) in acc.iter_mut().enumerate() {
            let off = i + 8 * k;
            *s = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(off)),
                _mm256_loadu_ps(pb.add(off)),
                *s,
            );
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(
            _mm256_loadu_ps(pa.add(i)),
            _mm256_loadu_ps(pb.add(i)),
            acc[0],
        );
        i += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    hsum(sum) + scalar::dot_f32(&a[i..n], &b[i..n])
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_f16_f32(a: &[u16], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, s) in acc.iter_mut().enumerate() {
            let off = i + 8 * k;
            *s = _mm256_fmadd_ps(load_f16x8(pa.add(off)), _mm256_loadu_ps(pb.add(off)), *s);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(load_f16x8(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc[0]);
        i += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    hsum(sum) + scalar::dot_f16_f32(&a[i..n], &b[i..n])
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn axpy_f32(y: &mut [f32], alpha: f32, x: &[f32]) {
    let n = y.len().min(x.len());
    let (py, px) = (y.as_mut_ptr(), x.as_ptr());
    let va = _mm256_set1_ps(alpha);
    let mut i = 0;
    while i + 8 <= n {
        let v = _mm256_fmadd_ps(va, _mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i)));
        _mm256_storeu_ps(py.add(i), v);
        i += 8;
    }
    scalar::axpy_f32(&mut y[i..n], alpha, &x[i..n]);
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn axpy_f16(y: &mut [f32], alpha: f32, x: &[u16]) {
    let n = y.len().min(x.len());
    let (py, px) = (y.as_mut_ptr(), x.as_ptr());
    let va = _mm256_set1_ps(alpha);
    let mut i = 0;
    while i + 8 <= n {
        let v = _mm256_fmadd_ps(va, load_f16x8(px.add(i)), _mm256_loadu_ps(py.add(i)));
        _mm256_storeu_ps(py.add(i), v);
        i += 8;
    }
    scalar::axpy_f16(&mut y[i..n], alpha, &x[i..n]);
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn scale(x: &mut [f32], alpha: f32) {
    let n = x.len();
    let px = x.as_mut_ptr();
    let va = _mm256_set1_ps(alpha);
    let mut i = 0;
    while i + 8 <= n {
        _mm256_storeu_ps(px.add(i), _mm256_mul_ps(_mm256_loadu_ps(px.add(i)), va));
        i += 8;
    }
    scalar::scale(&mut x[i..], alpha);
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn add_inplace(y: &mut [f32], x: &[f32]) {
    let n = y.len().min(x.len());
    let (py, px) = (y.as_mut_ptr(), x.as_ptr());
    let mut i = 0;
    while i + 8 <= n {
        let v = _mm256_add_ps(_mm256_loadu_ps(py.add(i)), _mm256_loadu_ps(px.add(i)));
        _mm256_storeu_ps(py.add(i), v);
        i += 8;
    }
    scalar::add_inplace(&mut y[i..n], &x[i..n]);
}

/// Same result as `scalar::rms_scale` up to the order of the f64 additions.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let n = x.len();
    let px = x.as_ptr();
    let mut acc0 = _mm256_setzero_pd();
    let mut acc1 = _mm256_setzero_pd();
    let mut i = 0;
    while i + 8 <= n {
        let v = _mm256_loadu_ps(px.add(i));
        let sq = _mm256_mul_ps(v, v);
        acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
        acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
        i += 8;
    }
    let mut sum = hsum_pd(_mm256_add_pd(acc0, acc1));
    for &v in &x[i..] {
        sum += (v * v) as f64;
    }
    scalar::rms_scale_from_sum(sum, n, eps)
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn rms_apply(out: &mut [f32], x: &[f32], weight: &[f32], scale: f32) {
    let n = out.len().min(x.len()).min(weight.len());
    let (po, px, pw) = (out.as_mut_ptr(), x.as_ptr(), weight.as_ptr());
    let vs = _mm256_set1_ps(scale);
    let mut i = 0;
    while i + 8 <= n {
        let v = _mm256_mul_ps(_mm256_loadu_ps(px.add(i)), vs);
        _mm256_storeu_ps(po.add(i), _mm256_mul_ps(v, _mm256_loadu_ps(pw.add(i))));
        i += 8;
    }
    scalar::rms_apply(&mut out[i..n], &x[i..n], &weight[i..n], scale);
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn rms_apply_inplace(x: &mut [f32], weight: &[f32], scale: f32) {
    let n = x.len().min(weight.len());
    let (px, pw) = (x.as_mut_ptr(), weight.as_ptr());
    let vs = _mm256_set1_ps(scale);
    let mut i = 0;
    while i + 8 <= n {
        let v = _mm256_mul_ps(_mm256_loadu_ps(px.add(i)), vs);
        _mm256_storeu_ps(px.add(i), _mm256_mul_ps(v, _mm256_loadu_ps(pw.add(i))));
        i += 8;
    }
    scalar::rms_apply_inplace(&mut x[i..n], &weight[i..n], scale);
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn max(x: &[f32]) -> f32 {
    let n = x.len();
    let px = x.as_ptr();
    let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut i = 0;
    while i + 8 <= n {
        m = _mm256_max_ps(m, _mm256_loadu_ps(px.add(i)));
        i += 8;
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), m);
    scalar::max(&lanes).max(scalar::max(&x[i..]))
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn exp_sub_sum(x: &mut [f32], max: f32) -> f64 {
    let n = x.len();
    let px = x.as_mut_ptr();
    let vmax = _mm256_set1_ps(max);
    let mut acc0 = _mm256_setzero_pd();
    let mut acc1 = _mm256_setzero_pd();
    let mut i = 0;
    while i + 8 <= n {
        let e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(px.add(i)), vmax));
        _mm256_storeu_ps(px.add(i), e);
        acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
        i += 8;
    }
    hsum_pd(_mm256_add_pd(acc0, acc1)) + scalar::exp_sub_sum(&mut x[i..], max)
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn rope_neox(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = cos.len();
    let (px, pc, ps) = (x.as_mut_ptr(), cos.as_ptr(), sin.as_ptr());
    let mut i = 0;
    while i + 8 <= half {
        let a = _mm256_loadu_ps(px.add(i));
        let b = _mm256_loadu_ps(px.add(i + half));
        let c = _mm256_loadu_ps(pc.add(i));
        let s = _mm256_loadu_ps(ps.add(i));
        _mm256_storeu_ps(px.add(i), _mm256_fmsub_ps(a, c, _mm256_mul_ps(b, s)));
        _mm256_storeu_ps(px.add(i + half), _mm256_fmadd_ps(a, s, _mm256_mul_ps(b, c)));
        i += 8;
    }
    for j in i..half {
        let (a, b) = (x[j], x[j + half]);
        x[j] = a * cos[j] - b * sin[j];
        x[j + half] = a * sin[j] + b * cos[j];
    }
}

/// Adjacent pairs: 8 lanes hold 4 pairs; each pair's cos and sin are
/// duplicated, and the pair-swapped vector supplies the partner element.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn rope_normal(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let pairs = cos.len();
    let (px, pc, ps) = (x.as_mut_ptr(), cos.as_ptr(), sin.as_ptr());
    let dup = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    // Even lanes get -sin (a c - b s), odd lanes +sin (b c + a s).
    let sign = _mm256_setr_ps(-1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0);
    let mut i = 0;
    while i + 4 <= pairs {
        let v = _mm256_loadu_ps(px.add(2 * i));
        let c = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(pc.add(i))), dup);
        let s = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(ps.add(i))), dup);
        let swapped = _mm256_permute_ps(v, 0b10_11_00_01);
        let r = _mm256_fmadd_ps(swapped, _mm256_mul_ps(s, sign), _mm256_mul_ps(v, c));
        _mm256_storeu_ps(px.add(2 * i), r);
        i += 4;
    }
    scalar::rope_normal(&mut x[2 * i..], &cos[i..], &sin[i..]);
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn silu_mul(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let (pg, pu) = (gate.as_mut_ptr(), up.as_ptr());
    let mut i = 0;
    while i + 8 <= n {
        let g = silu_ps(_mm256_loadu_ps(pg.add(i)));
        _mm256_storeu_ps(pg.add(i), _mm256_mul_ps(g, _mm256_loadu_ps(pu.add(i))));
        i += 8;
    }
    scalar::silu_mul(&mut gate[i..n], &up[i..n]);
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn gelu_tanh_mul(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let (pg, pu) = (gate.as_mut_ptr(), up.as_ptr());
    let mut i = 0;
    while i + 8 <= n {
        let g = gelu_tanh_ps(_mm256_loadu_ps(pg.add(i)));
        _mm256_storeu_ps(pg.add(i), _mm256_mul_ps(g, _mm256_loadu_ps(pu.add(i))));
        i += 8;
    }
    scalar::gelu_tanh_mul(&mut gate[i..n], &up[i..n]);
}

/// Exposes [`exp_ps`] on a slice for the accuracy test.
#[cfg(test)]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn exp_slice(x: &mut [f32]) {
    let mut i = 0;
    while i + 8 <= x.len() {
        _mm256_storeu_ps(
            x.as_mut_ptr().add(i),
            exp_ps(_mm256_loadu_ps(x.as_ptr().add(i))),
        );
        i += 8;
    }
    for v in &mut x[i..] {
        *v = v.exp();
    }
}
