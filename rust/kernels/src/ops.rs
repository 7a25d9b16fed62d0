//! Element-wise operations and reductions of a transformer layer.
//!
//! Each function checks its length contract, then runs the scalar reference
//! ([`scalar`]), the AVX2+FMA version or the NEON version, as chosen by
//! [`simd::active`]. The SIMD versions use FMA and another summation order,
//! so they agree with the scalar reference to rounding, not bit for bit.
//! `exp` in SIMD is a polynomial (see `exp_ps` in the AVX2 and NEON files).
//! The `exp_poly_accuracy` test bounds its relative error by 2e-7 over
//! [-87, 88]; it measured 7.4e-8 (about 1.2 ulp) on AVX2.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;
pub mod scalar;

#[cfg(test)]
mod tests;

use crate::simd::{self, Isa};

#[cfg(target_arch = "x86_64")]
fn f16c() -> bool {
    crate::f16::x86::has_f16c()
}

fn check_len(op: &str, a: usize, b: usize) {
    assert!(
        a == b,
        "{}: operands have {} and {} elements; they must be equal",
        op,
        a,
        b
    );
}

/// Returns the dot product of `a` and `b` (same length).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    check_len("dot_f32", a.len(), b.len());
    match simd::active() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::dot_f32(a, b) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { neon::dot_f32(a, b) },
        _ => scalar::dot_f32(a, b),
    }
}

/// Returns the dot product of binary16 `a` and f32 `b` (same length).
pub fn dot_f16_f32(a: &[u16], b: &[f32]) -> f32 {
    check_len("dot_f16_f32", a.len(), b.len());
    match simd::active() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if f16c() => unsafe { avx2::dot_f16_f32(a, b) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { neon::dot_f16_f32(a, b) },
        _ => scalar::dot_f16_f32(a, b),
    }
}

/// `y += alpha * x`.
pub fn axpy_f32(y: &mut [f32], alpha: f32, x: &[f32]) {
    check_len("axpy_f32", y.len(), x.len());
    match simd::active() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::axpy_f32(y, alpha, x) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { neon::axpy_f32(y, alpha, x) },
        _ => scalar::axpy_f32(y, alpha, x),
    }
}

/// `y += alpha * x` with binary16 `x`.
pub fn axpy_f16(y: &mut [f32], alpha: f32, x: &[u16]) {
    check_len("axpy_f16", y.len(), x.len());
    match simd::active() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if f16c() => unsafe { avx2::axpy_f16(y, alpha, x) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { neon::axpy_f16(y, alpha, x) },
        _ => scalar::axpy_f16(y, alpha, x),
    }
}

/// `x *= alpha`.
pub fn scale(x: &mut [f32], alpha: f32) {
    match simd::active() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::scale(x, alpha) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { neon::scale(x, alpha) },
        _ => scalar::scale(x, alpha),
    }
}

/// `y += x`.
pub fn add_inplace(y: &mut [f32], x: &[f32]) {
    check_len("add_inplace", y.len(), x.len());
    match simd::active() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::add_inplace(y, x) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { neon::add_inplace(y, x) },
        _ => scalar::add_inplace(y, x),
    }
}

/// Returns `1 / sqrt(mean(x^2) + eps)`, the squares formed in f32 and summed
/// in f64 (ggml's `ggml_float`), the mean rounded to f32.
pub fn rms_scale(x: &[f32], eps: f32) -> f32 {
    match simd::active() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::rms_scale(x, eps) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { neon::rms_scale(x, eps) },
        _ => scalar::rms_scale(x, eps),
    }
}

/// RMS normalization: `out[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i]`.
///
/// The squares are summed in f64, as llama.cpp's `ggml_rms_norm` does with
/// `ggml_float`. The mean and the scale are then f32. `out[i] = (x[i] *
/// scale) * weight[i]` rounds twice, like ggml's separate `rms_norm` and
/// `mul` operations.
pub fn rms_norm(out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
    check_len("rms_norm (out, x)", out.len(), x.len());
    check_len("rms_norm (x, weight)", x.len(), weight.len());
    let s = rms_scale(x, eps);
    match simd::active() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::rms_apply(out, x, weight, s) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { neon::rms_apply(out, x, weight, s) },
        _ => scalar::rms_apply(out, x, weight, s),
    }
}

/// In-place variant of [`rms_norm`].
pub fn rms_norm_inplace(x: &mut [f32], weight: &[f32], eps: f32) {
    check_len("rms_norm_inplace", x.len(), weight.len());
    let s = rms_scale(x, eps);
    match simd::active() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::rms_apply_inplace(x, weight, s) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { neon::rms_apply_inplace(x, weight, s) },
        _ => scalar::rms_apply_inplace(x, weight, s),
    }
}

/// Numerically stable softmax in place. Returns the sum of exponentials
/// before normalization (useful for log-probabilities).
///
/// The sum of `exp(x[i] - max)` is accumulated in f64 and the result is
/// multiplied by `1 / sum` in f32, as ggml's `soft_max` does. The returned
/// sum is relative to the max: `log(sum) + max` is the log-sum-exp. An empty
/// slice returns 0; a slice of only `-inf` produces NaN.
pub fn softmax(x: &mut [f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    let (_, sum) = exp_below_max(x);
    scale(x, (1.0 / sum) as f32);
    sum as f32
}

/// Replaces `x[i]` by `exp(x[i] - max)` and returns `(max, sum)`: the
/// parts of a softmax before normalization, for combining softmaxes over
/// several chunks. The sum is accumulated in f64 as in [`softmax`]. An
/// empty slice returns `(-inf, 0)`.
pub fn exp_below_max(x: &mut [f32]) -> (f32, f64) {
    if x.is_empty() {
        return (f32::NEG_INFINITY, 0.0);
    }
    let isa = simd::active();
    let max = match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::max(x) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { neon::max(x) },
        _ => scalar::max(x),
    };
    let sum = match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::exp_sub_sum(x, max) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { neon::exp_sub_sum(x, max) },
        _ => scalar::exp_sub_sum(x, max),
    };
    (max, sum)
}

/// Applies rotary position embedding to one head vector `x` (length
/// `head_dim`), rotating the first `2 * cos.len()` dimensions.
///
/// `cos[i]`/`sin[i]` are the cosine and sine of `pos * theta_i` for pair `i`.
/// `neox = false` rotates adjacent pairs `(2i, 2i+1)` (llama style);
/// `neox = true` rotates `(i, i + n_rot/2)` (GPT-NeoX style, Gemma).
/// Each pair `(a, b)` becomes `(a cos - b sin, a sin + b cos)`; dimensions
/// past `n_rot = 2 * cos.len()` are left unchanged.
pub fn rope(x: &mut [f32], cos: &[f32], sin: &[f32], neox: bool) {
    check_len("rope (cos, sin)", cos.len(), sin.len());
    assert!(
        2 * cos.len() <= x.len(),
        "rope: {} cos/sin pairs need 2 * {} dimensions but x has {}",
        cos.len(),
        cos.len(),
        x.len()
    );
    let x = &mut x[..2 * cos.len()];
    match (simd::active(), neox) {
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, true) => unsafe { avx2::rope_neox(x, cos, sin) },
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, false) => unsafe { avx2::rope_normal(x, cos, sin) },
        #[cfg(target_arch = "aarch64")]
        (Isa::Neon, true) => unsafe { neon::rope_neox(x, cos, sin) },
        #[cfg(target_arch = "aarch64")]
        (Isa::Neon, false) => unsafe { neon::rope_normal(x, cos, sin) },
        (_, true) => scalar::rope_neox(x, cos, sin),
        (_, false) => scalar::rope_normal(x, cos, sin),
    }
}

/// `gate[i] = silu(gate[i]) * up[i]` with `silu(x) = x / (1 + exp(-x))`.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    check_len("silu_mul", gate.len(), up.len());
    match simd::active() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::silu_mul(gate, up) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { neon::silu_mul(gate, up) },
        _ => scalar::silu_mul(gate, up),
    }
}

/// `gate[i] = gelu_tanh(gate[i]) * up[i]` with the tanh approximation.
///
/// NOTE: llama.cpp's CPU backend (with its default `GGML_GELU_FP16`) rounds
/// the input to f16 and reads a table of f16 GELU values, clamping at ±10;
/// see [`gelu_tanh_mul_f16_table`] for that variant.
pub fn gelu_tanh_mul(gate: &mut [f32], up: &[f32]) {
    check_len("gelu_tanh_mul", gate.len(), up.len());
    match simd::active() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::gelu_tanh_mul(gate, up) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { neon::gelu_tanh_mul(gate, up) },
        _ => scalar::gelu_tanh_mul(gate, up),
    }
}

/// `gate[i] = gelu(gate[i]) * up[i]` computed the way ggml's f16 GELU table
/// does: inputs at or below -10 give 0, inputs at or above 10 pass through,
/// and others are rounded to f16, sent through the tanh GELU in f32 and
/// rounded to f16 again. Scalar only.
pub fn gelu_tanh_mul_f16_table(gate: &mut [f32], up: &[f32]) {
    use crate::f16::{f16_to_f32, f32_to_f16};
    check_len("gelu_tanh_mul_f16_table", gate.len(), up.len());
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g;
        let y = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x
        } else {
            f16_to_f32(f32_to_f16(scalar::gelu_tanh(f16_to_f32(f32_to_f16(x)))))
        };
        *g = y * u;
    }
}
