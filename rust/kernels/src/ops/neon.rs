//! NEON kernels (ARMv8.0 Advanced SIMD, always present on aarch64).
//! Tails shorter than a vector go through the scalar reference.

use std::arch::aarch64::*;

use super::scalar;
use crate::f16::neon::load_f16x4;

/// `exp(x)` for 4 lanes; the same reduction, polynomial and limits as the
/// AVX2 `exp_ps`.
#[inline(always)]
pub(crate) unsafe fn exp_ps(x: float32x4_t) -> float32x4_t {
    // 355/512: 9 significant bits, so `n * LN2_HI` is exact for |n| <= 128.
    const LN2_HI: f32 = 355.0 / 512.0;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let too_small = vcltq_f32(x, vdupq_n_f32(-87.336_54));
    let x = vminq_f32(x, vdupq_n_f32(88.0));
    let x = vmaxq_f32(x, vdupq_n_f32(-87.336_54));

    let n = vrndnq_f32(vmulq_n_f32(x, std::f32::consts::LOG2_E));
    let r = vfmsq_f32(x, n, vdupq_n_f32(LN2_HI));
    let r = vfmsq_f32(r, n, vdupq_n_f32(LN2_LO));

    let mut p = vdupq_n_f32(1.0 / 5040.0);
    p = vfmaq_f32(vdupq_n_f32(1.0 / 720.0), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0 / 120.0), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0 / 24.0), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0 / 6.0), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0), p, r);

    let e = vshlq_n_s32::<23>(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)));
    let y = vmulq_f32(p, vreinterpretq_f32_s32(e));
    vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(y), too_small))
}

#[inline(always)]
unsafe fn gelu_tanh_ps(x: float32x4_t) -> float32x4_t {
    let x2 = vmulq_f32(x, x);
    let inner = vfmaq_f32(vdupq_n_f32(1.0), x2, vdupq_n_f32(0.044_715));
    let u = vmulq_f32(vmulq_n_f32(x, 0.797_884_6), inner);
    let e = exp_ps(vmulq_n_f32(u, -2.0));
    vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0), e))
}

#[inline(always)]
unsafe fn silu_ps(x: float32x4_t) -> float32x4_t {
    let e = exp_ps(vnegq_f32(x));
    vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0), e))
}

pub unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        for (k, s) in acc.iter_mut().enumerate() {
            let off = i + 4 * k;
            *s = vfmaq_f32(*s, vld1q_f32(pa.add(off)), vld1q_f32(pb.add(off)));
        }
        i += 16;
    }
    while i + 4 <= n {
        acc[0] = vfmaq_f32(acc[0], vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
        i += 4;
    }
    let sum = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    vaddvq_f32(sum) + scalar::dot_f32(&a[i..n], &b[i..n])
}

pub unsafe fn dot_f16_f32(a: &[u16], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        for (k, s) in acc.iter_mut().enumerate() {
            let off = i + 4 * k;
            *s = vfmaq_f32(*s, load_f16x4(pa.add(off)), vld1q_f32(pb.add(off)));
        }
        i += 16;
    }
    while i + 4 <= n {
        acc[0] = vfmaq_f32(acc[0], load_f16x4(pa.add(i)), vld1q_f32(pb.add(i)));
        i += 4;
    }
    let sum = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    vaddvq_f32(sum) + scalar::dot_f16_f32(&a[i..n], &b[i..n])
}

pub unsafe fn axpy_f32(y: &mut [f32], alpha: f32, x: &[f32]) {
    let n = y.len().min(x.len());
    let (py, px) = (y.as_mut_ptr(), x.as_ptr());
    let va = vdupq_n_f32(alpha);
    let mut i = 0;
    while i + 4 <= n {
        vst1q_f32(
            py.add(i),
            vfmaq_f32(vld1q_f32(py.add(i)), va, vld1q_f32(px.add(i))),
        );
        i += 4;
    }
    scalar::axpy_f32(&mut y[i..n], alpha, &x[i..n]);
}

pub unsafe fn axpy_f16(y: &mut [f32], alpha: f32, x: &[u16]) {
    let n = y.len().min(x.len());
    let (py, px) = (y.as_mut_ptr(), x.as_ptr());
    let va = vdupq_n_f32(alpha);
    let mut i = 0;
    while i + 4 <= n {
        vst1q_f32(
            py.add(i),
            vfmaq_f32(vld1q_f32(py.add(i)), va, load_f16x4(px.add(i))),
        );
        i += 4;
    }
    scalar::axpy_f16(&mut y[i..n], alpha, &x[i..n]);
}

pub unsafe fn scale(x: &mut [f32], alpha: f32) {
    let n = x.len();
    let px = x.as_mut_ptr();
    let mut i = 0;
    while i + 4 <= n {
        vst1q_f32(px.add(i), vmulq_n_f32(vld1q_f32(px.add(i)), alpha));
        i += 4;
    }
    scalar::scale(&mut x[i..], alpha);
}

pub unsafe fn add_inplace(y: &mut [f32], x: &[f32]) {
    let n = y.len().min(x.len());
    let (py, px) = (y.as_mut_ptr(), x.as_ptr());
    let mut i = 0;
    while i + 4 <= n {
        vst1q_f32(
            py.add(i),
            vaddq_f32(vld1q_f32(py.add(i)), vld1q_f32(px.add(i))),
        );
        i += 4;
    }
    scalar::add_inplace(&mut y[i..n], &x[i..n]);
}

pub unsafe fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let n = x.len();
    let px = x.as_ptr();
    let mut acc0 = vdupq_n_f64(0.0);
    let mut acc1 = vdupq_n_f64(0.0);
    let mut i = 0;
    while i + 4 <= n {
        let v = vld1q_f32(px.add(i));
        let sq = vmulq_f32(v, v);
        acc0 = vaddq_f64(acc0, vcvt_f64_f32(vget_low_f32(sq)));
        acc1 = vaddq_f64(acc1, vcvt_high_f64_f32(sq));
        i += 4;
    }
    let mut sum = vaddvq_f64(vaddq_f64(acc0, acc1));
    for &v in &x[i..] {
        sum += (v * v) as f64;
    }
    scalar::rms_scale_from_sum(sum, n, eps)
}

pub unsafe fn rms_apply(out: &mut [f32], x: &[f32], weight: &[f32], scale: f32) {
    let n = out.len().min(x.len()).min(weight.len());
    let (po, px, pw) = (out.as_mut_ptr(), x.as_ptr(), weight.as_ptr());
    let mut i = 0;
    while i + 4 <= n {
        let v = vmulq_n_f32(vld1q_f32(px.add(i)), scale);
        vst1q_f32(po.add(i), vmulq_f32(v, vld1q_f32(pw.add(i))));
        i += 4;
    }
    scalar::rms_apply(&mut out[i..n], &x[i..n], &weight[i..n], scale);
}

pub unsafe fn rms_apply_inplace(x: &mut [f32], weight: &[f32], scale: f32) {
    let n = x.len().min(weight.len());
    let (px, pw) = (x.as_mut_ptr(), weight.as_ptr());
    let mut i = 0;
    while i + 4 <= n {
        let v = vmulq_n_f32(vld1q_f32(px.add(i)), scale);
        vst1q_f32(px.add(i), vmulq_f32(v, vld1q_f32(pw.add(i))));
        i += 4;
    }
    scalar::rms_apply_inplace(&mut x[i..n], &weight[i..n], scale);
}

pub unsafe fn max(x: &[f32]) -> f32 {
    let n = x.len();
    let px = x.as_ptr();
    let mut m = vdupq_n_f32(f32::NEG_INFINITY);
    let mut i = 0;
    while i + 4 <= n {
        m = vmaxnmq_f32(m, vld1q_f32(px.add(i)));
        i += 4;
    }
    vmaxnmvq_f32(m).max(scalar::max(&x[i..]))
}

pub unsafe fn exp_sub_sum(x: &mut [f32], max: f32) -> f64 {
    let n = x.len();
    let px = x.as_mut_ptr();
    let vmax = vdupq_n_f32(max);
    let mut acc0 = vdupq_n_f64(0.0);
    let mut acc1 = vdupq_n_f64(0.0);
    let mut i = 0;
    while i + 4 <= n {
        let e = exp_ps(vsubq_f32(vld1q_f32(px.add(i)), vmax));
        vst1q_f32(px.add(i), e);
        acc0 = vaddq_f64(acc0, vcvt_f64_f32(vget_low_f32(e)));
        acc1 = vaddq_f64(acc1, vcvt_high_f64_f32(e));
        i += 4;
    }
    vaddvq_f64(vaddq_f64(acc0, acc1)) + scalar::exp_sub_sum(&mut x[i..], max)
}

pub unsafe fn rope_neox(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = cos.len();
    let (px, pc, ps) = (x.as_mut_ptr(), cos.as_ptr(), sin.as_ptr());
    let mut i = 0;
    while i + 4 <= half {
        let a = vld1q_f32(px.add(i));
        let b = vld1q_f32(px.add(i + half));
        let c = vld1q_f32(pc.add(i));
        let s = vld1q_f32(ps.add(i));
        vst1q_f32(px.add(i), vfmsq_f32(vmulq_f32(a, c), b, s));
        vst1q_f32(px.add(i + half), vfmaq_f32(vmulq_f32(b, c), a, s));
        i += 4;
    }
    for j in i..half {
        let (a, b) = (x[j], x[j + half]);
        x[j] = a * cos[j] - b * sin[j];
        x[j + half] = a * sin[j] + b * cos[j];
    }
}

/// Adjacent pairs: `vld2q` splits 4 pairs into even and odd elements.
pub unsafe fn rope_normal(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let pairs = cos.len();
    let (px, pc, ps) = (x.as_mut_ptr(), cos.as_ptr(), sin.as_ptr());
    let mut i = 0;
    while i + 4 <= pairs {
        let v = vld2q_f32(px.add(2 * i));
        let c = vld1q_f32(pc.add(i));
        let s = vld1q_f32(ps.add(i));
        let even = vfmsq_f32(vmulq_f32(v.0, c), v.1, s);
        let odd = vfmaq_f32(vmulq_f32(v.1, c), v.0, s);
        vst2q_f32(px.add(2 * i), float32x4x2_t(even, odd));
        i += 4;
    }
    scalar::rope_normal(&mut x[2 * i..], &cos[i..], &sin[i..]);
}

pub unsafe fn silu_mul(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let (pg, pu) = (gate.as_mut_ptr(), up.as_ptr());
    let mut i = 0;
    while i + 4 <= n {
        let g = silu_ps(vld1q_f32(pg.add(i)));
        vst1q_f32(pg.add(i), vmulq_f32(g, vld1q_f32(pu.add(i))));
        i += 4;
    }
    scalar::silu_mul(&mut gate[i..n], &up[i..n]);
}

pub unsafe fn gelu_tanh_mul(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let (pg, pu) = (gate.as_mut_ptr(), up.as_ptr());
    let mut i = 0;
    while i + 4 <= n {
        let g = gelu_tanh_ps(vld1q_f32(pg.add(i)));
        vst1q_f32(pg.add(i), vmulq_f32(g, vld1q_f32(pu.add(i))));
        i += 4;
    }
    scalar::gelu_tanh_mul(&mut gate[i..n], &up[i..n]);
}

/// Exposes [`exp_ps`] on a slice for the accuracy test.
#[cfg(test)]
pub unsafe fn exp_slice(x: &mut [f32]) {
    let mut i = 0;
    while i + 4 <= x.len() {
        vst1q_f32(x.as_mut_ptr().add(i), exp_ps(vld1q_f32(x.as_ptr().add(i))));
        i += 4;
    }
    for v in &mut x[i..] {
        *v = v.exp();
    }
}
