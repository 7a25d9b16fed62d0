//! Element-wise operations and reductions of a transformer layer.

/// Returns the dot product of `a` and `b` (same length).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    todo!()
}

/// Returns the dot product of binary16 `a` and f32 `b` (same length).
pub fn dot_f16_f32(a: &[u16], b: &[f32]) -> f32 {
    todo!()
}

/// `y += alpha * x`.
pub fn axpy_f32(y: &mut [f32], alpha: f32, x: &[f32]) {
    todo!()
}

/// `y += alpha * x` with binary16 `x`.
pub fn axpy_f16(y: &mut [f32], alpha: f32, x: &[u16]) {
    todo!()
}

/// `x *= alpha`.
pub fn scale(x: &mut [f32], alpha: f32) {
    todo!()
}

/// `y += x`.
pub fn add_inplace(y: &mut [f32], x: &[f32]) {
    todo!()
}

/// RMS normalization: `out[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i]`.
///
/// The mean is accumulated in f32 like llama.cpp's `ggml_rms_norm` does
/// with `ggml_float` (f64) sums; implementations sum in f64.
pub fn rms_norm(out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
    todo!()
}

/// In-place variant of [`rms_norm`].
pub fn rms_norm_inplace(x: &mut [f32], weight: &[f32], eps: f32) {
    todo!()
}

/// Numerically stable softmax in place. Returns the sum of exponentials
/// before normalization (useful for log-probabilities).
pub fn softmax(x: &mut [f32]) -> f32 {
    todo!()
}

/// Applies rotary position embedding to one head vector `x` (length
/// `head_dim`), rotating the first `2 * cos.len()` dimensions.
///
/// `cos[i]`/`sin[i]` are the cosine and sine of `pos * theta_i` for pair `i`.
/// `neox = false` rotates adjacent pairs `(2i, 2i+1)` (llama style);
/// `neox = true` rotates `(i, i + n_rot/2)` (GPT-NeoX style, Gemma).
pub fn rope(x: &mut [f32], cos: &[f32], sin: &[f32], neox: bool) {
    todo!()
}

/// `gate[i] = silu(gate[i]) * up[i]`.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    todo!()
}

/// `gate[i] = gelu_tanh(gate[i]) * up[i]` with the tanh approximation.
pub fn gelu_tanh_mul(gate: &mut [f32], up: &[f32]) {
    todo!()
}
