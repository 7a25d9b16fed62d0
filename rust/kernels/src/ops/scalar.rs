//! Scalar reference implementations. Reductions accumulate in f64 so that
//! they can serve as the accuracy reference for the SIMD paths.

use crate::f16::f16_to_f32;

pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut sum = 0f64;
    for (&x, &y) in a.iter().zip(b) {
        sum += (x * y) as f64;
    }
    sum as f32
}

pub fn dot_f16_f32(a: &[u16], b: &[f32]) -> f32 {
    let mut sum = 0f64;
    for (&x, &y) in a.iter().zip(b) {
        sum += (f16_to_f32(x) * y) as f64;
    }
    sum as f32
}

pub fn axpy_f32(y: &mut [f32], alpha: f32, x: &[f32]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

pub fn axpy_f16(y: &mut [f32], alpha: f32, x: &[u16]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += alpha * f16_to_f32(xi);
    }
}

pub fn scale(x: &mut [f32], alpha: f32) {
    for xi in x.iter_mut() {
        *xi *= alpha;
    }
}

pub fn add_inplace(y: &mut [f32], x: &[f32]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += xi;
    }
}

/// Returns `1 / sqrt(mean(x^2) + eps)` with the squares formed in f32 and
/// summed in f64, the mean rounded to f32, as ggml's `rms_norm` does.
pub fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let mut sum = 0f64;
    for &v in x {
        sum += (v * v) as f64;
    }
    rms_scale_from_sum(sum, x.len(), eps)
}

pub fn rms_scale_from_sum(sum: f64, n: usize, eps: f32) -> f32 {
    let mean = (sum / n as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// `out[i] = (x[i] * scale) * weight[i]`: the scaling and the weight are two
/// roundings, matching ggml's `rms_norm` followed by `mul`.
pub fn rms_apply(out: &mut [f32], x: &[f32], weight: &[f32], scale: f32) {
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = (v * scale) * w;
    }
}

pub fn rms_apply_inplace(x: &mut [f32], weight: &[f32], scale: f32) {
    for (v, &w) in x.iter_mut().zip(weight) {
        *v = (*v * scale) * w;
    }
}

pub fn max(x: &[f32]) -> f32 {
    x.iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// Replaces `x[i]` by `exp(x[i] - max)` and returns the f64 sum.
pub fn exp_sub_sum(x: &mut [f32], max: f32) -> f64 {
    let mut sum = 0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    sum
}

pub fn rope_normal(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    for (i, (&c, &s)) in cos.iter().zip(sin).enumerate() {
        let a = x[2 * i];
        let b = x[2 * i + 1];
        x[2 * i] = a * c - b * s;
        x[2 * i + 1] = a * s + b * c;
    }
}

pub fn rope_neox(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = cos.len();
    for (i, (&c, &s)) in cos.iter().zip(sin).enumerate() {
        let a = x[i];
        let b = x[i + half];
        x[i] = a * c - b * s;
        x[i + half] = a * s + b * c;
    }
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU with the tanh approximation:
/// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const GELU_COEF_A: f32 = 0.044_715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)).tanh())
}

pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = silu(*g) * u;
    }
}

pub fn gelu_tanh_mul(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = gelu_tanh(*g) * u;
    }
}
