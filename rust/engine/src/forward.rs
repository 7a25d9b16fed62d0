//! The transformer forward pass for a batch of consecutive tokens.
//!
//! Both architectures share one pass; Gemma 3 adds embedding scaling,
//! per-head Q/K norms, sandwich norms around attention and FFN, NeoX rope
//! and GELU. Every layer writes the batch's keys and values to the cache
//! first and then attends over the cache, so prompt tokens see the same
//! compression as generated ones.

use turbokv_kernels::ops;

use crate::attention::{self, Shape};
use crate::centering::chunk_start;
use crate::config::{Arch, Config, LayerAttention};
use crate::kv_cache::{KvCache, LayerCache, RotatedCenter, SINK_POSITION};
use crate::matmul::{gated_hidden, matmul, matmul_encoded, matmul_many};
use crate::model::Model;
use crate::pool::WorkerPool;
use crate::weights::Layer;

/// Activations of a batch of `n` tokens.
struct Batch {
    n: usize,
    x: Vec<f32>,      // [n][n_embd], the residual stream
    xn: Vec<f32>,     // [n][n_embd], normalized input of a sub-layer
    q: Vec<f32>,      // [n][n_head * head_dim]
    k: Vec<f32>,      // [n][n_kv_heads * head_dim]
    v: Vec<f32>,      // [n][n_kv_heads * head_dim]
    attn: Vec<f32>,   // [n][n_head * head_dim]
    proj: Vec<f32>,   // [n][n_embd], output of wo or ffn_down
    gate: Vec<f32>,   // [n][n_ff]
    up: Vec<f32>,     // [n][n_ff]
    /// Rope angles of the batch's positions, one table per rope setting
    /// the layers use so far.
    rope: Vec<RopeTable>,
}

/// Cosines and sines of the rope angles of a batch's positions for one
/// (`rope_theta`, `rope_freq_scale`) setting, shared by its layers.
struct RopeTable {
    theta: f32,
    freq_scale: f32,
    cos: Vec<f32>, // [n][n_rot / 2]
    sin: Vec<f32>, // [n][n_rot / 2]
}

impl Batch {
    fn new(c: &Config, n: usize) -> Batch {
        let q_dim = c.n_head * c.head_dim;
        let kv_dim = c.n_kv_heads * c.head_dim;
        Batch {
            n,
            x: vec![0.0; n * c.n_embd],
            xn: vec![0.0; n * c.n_embd],
            q: vec![0.0; n * q_dim],
            k: vec![0.0; n * kv_dim],
            v: vec![0.0; n * kv_dim],
            attn: vec![0.0; n * q_dim],
            proj: vec![0.0; n * c.n_embd],
            gate: vec![0.0; n * c.n_ff],
            up: vec![0.0; n * c.n_ff],
            rope: Vec::new(),
        }
    }
}

/// Runs `tokens` at positions `n_past..` and returns the logits of batch
/// rows `logits_from..` (`n_vocab` floats each).
pub fn forward(model: &Model, cache: &mut KvCache, n_past: usize, tokens: &[u32], logits_from: usize) -> Vec<f32> {
    let c = &model.config;
    let mut b = Batch::new(c, tokens.len());

    embed(model, tokens, &mut b.x);
    for (il, layer) in model.weights.layers.iter().enumerate() {
        attention_block(model, il, layer, &mut cache.layers[il], n_past, &mut b, &mut None);
        ffn_block(model, layer, &mut b);
    }
    output(model, &b, logits_from)
}

/// Receives each layer's queries and keys before rope and centering:
/// `(layer, q [n][n_head * head_dim], k [n][n_kv_heads * head_dim])`.
pub type Probe<'a> = &'a mut dyn FnMut(usize, &[f32], &[f32]);

/// Runs `tokens` at positions `0..` and shows each layer's queries and
/// keys to `probe`. It stops once the last layer's are shown, so that
/// layer's attention and FFN and the logits, which nothing reads, are
/// skipped.
pub fn probe_queries_keys(model: &Model, cache: &mut KvCache, tokens: &[u32], probe: Probe<'_>) {
    let c = &model.config;
    let mut b = Batch::new(c, tokens.len());
    let mut probe = Some(probe);
    let last = model.weights.layers.len().saturating_sub(1);

    embed(model, tokens, &mut b.x);
    for (il, layer) in model.weights.layers.iter().enumerate() {
        if il == last {
            project_qkv(model, layer, &mut b);
            if let Some(probe) = probe.as_mut() {
                probe(il, &b.q, &b.k);
            }
            return;
        }
        attention_block(model, il, layer, &mut cache.layers[il], 0, &mut b, &mut probe);
        ffn_block(model, layer, &mut b);
    }
}

fn embed(model: &Model, tokens: &[u32], x: &mut [f32]) {
    let c = &model.config;
    let e = c.n_embd;
    for (t, &id) in tokens.iter().enumerate() {
        model.weights.token_embd.dequantize_row(id as usize, &mut x[t * e..(t + 1) * e]);
    }
    if c.arch == Arch::Gemma3 {
        ops::scale(x, (e as f32).sqrt());
    }
}

fn rms_norm_rows(pool: &WorkerPool, out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
    let n = weight.len();
    pool.for_row_chunks(out, n, |first, out| {
        let x = &x[first * n..first * n + out.len()];
        for (o, row) in out.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
            ops::rms_norm(o, row, weight, eps);
        }
    });
}

fn rms_norm_rows_inplace(pool: &WorkerPool, x: &mut [f32], weight: &[f32], eps: f32) {
    let n = weight.len();
    pool.for_row_chunks(x, n, |_, x| {
        for row in x.chunks_exact_mut(n) {
            ops::rms_norm_inplace(row, weight, eps);
        }
    });
}

/// Adds `proj` (`[n][n_embd]`) to the residual stream `x`.
fn add_residual(pool: &WorkerPool, x: &mut [f32], proj: &[f32], n_embd: usize) {
    pool.for_row_chunks(x, n_embd, |first, x| ops::add_inplace(x, &proj[first * n_embd..first * n_embd + x.len()]));
}

/// Cosines and sines of the rope angles at `pos` for `n_rot / 2` pairs.
///
/// The angle of pair `i` is `pos * theta^(-2i/n_rot)`, built by repeated
/// multiplication in f32 as llama.cpp's rope cache does, divided by the
/// file's per-pair frequency factor and scaled by the layer's
/// `rope_freq_scale` (linear rope scaling).
pub fn rope_angles(c: &Config, layer: &LayerAttention, freq_factors: Option<&[f32]>, pos: usize, cos: &mut [f32], sin: &mut [f32]) {
    let freq_scale = layer.rope_freq_scale;
    let theta_scale = layer.rope_theta.powf(-2.0 / c.n_rot as f32);
    let mut theta = pos as f32;
    for i in 0..c.n_rot / 2 {
        let ff = freq_factors.map_or(1.0, |f| f[i]);
        let angle = freq_scale * (theta / ff);
        cos[i] = angle.cos();
        sin[i] = angle.sin();
        theta *= theta_scale;
    }
}

fn apply_rope(c: &Config, model: &Model, layer: &LayerAttention, n_past: usize, b: &mut Batch) {
    let d = c.head_dim;
    let half = c.n_rot / 2;
    let neox = c.arch == Arch::Gemma3;
    let same = |t: &RopeTable| t.theta.to_bits() == layer.rope_theta.to_bits() && t.freq_scale.to_bits() == layer.rope_freq_scale.to_bits();
    let table = match b.rope.iter().position(same) {
        Some(i) => &b.rope[i],
        None => {
            let factors = model.weights.rope_freqs.as_deref();
            let mut cos = vec![0.0f32; b.n * half];
            let mut sin = vec![0.0f32; b.n * half];
            for t in 0..b.n {
                rope_angles(c, layer, factors, n_past + t, &mut cos[t * half..(t + 1) * half], &mut sin[t * half..(t + 1) * half]);
            }
            b.rope.push(RopeTable { theta: layer.rope_theta, freq_scale: layer.rope_freq_scale, cos, sin });
            &b.rope[b.rope.len() - 1]
        }
    };

    let q_dim = c.n_head * d;
    let kv_dim = c.n_kv_heads * d;
    for t in 0..b.n {
        let cos = &table.cos[t * half..(t + 1) * half];
        let sin = &table.sin[t * half..(t + 1) * half];
        for head in b.q[t * q_dim..(t + 1) * q_dim].chunks_exact_mut(d) {
            ops::rope(head, cos, sin, neox);
        }
        for head in b.k[t * kv_dim..(t + 1) * kv_dim].chunks_exact_mut(d) {
            ops::rope(head, cos, sin, neox);
        }
    }
}

fn attention_block(
    model: &Model,
    il: usize,
    layer: &Layer,
    cache: &mut LayerCache,
    n_past: usize,
    b: &mut Batch,
    probe: &mut Option<Probe<'_>>,
) {
    let c = &model.config;
    let pool = &model.pool;

    project_qkv(model, layer, b);
    if let Some(probe) = probe.as_mut() {
        probe(il, &b.q, &b.k);
    }
    apply_rope(c, model, &c.layers[il], n_past, b);
    if (n_past..n_past + b.n).contains(&SINK_POSITION) {
        let kv_dim = c.n_kv_heads * c.head_dim;
        cache.write_sink_key(&b.k[(SINK_POSITION - n_past) * kv_dim..]);
    }
    subtract_centers(c, model, &c.layers[il], cache, n_past, b);

    write_and_attend(model, cache, n_past, b);

    matmul(pool, &layer.wo, &b.attn, &mut b.proj);
    if let Some(post) = &layer.post_attn_norm {
        rms_norm_rows_inplace(pool, &mut b.proj, post, c.rms_eps);
    }
    add_residual(pool, &mut b.x, &b.proj, c.n_embd);
}

/// Computes the batch's queries, keys and values, with Gemma 3's per-head
/// query and key norms but before rope.
fn project_qkv(model: &Model, layer: &Layer, b: &mut Batch) {
    let c = &model.config;
    let pool = &model.pool;

    rms_norm_rows(pool, &mut b.xn, &b.x, &layer.attn_norm, c.rms_eps);
    matmul_many(pool, &b.xn, &mut [(&layer.wq, &mut b.q), (&layer.wk, &mut b.k), (&layer.wv, &mut b.v)]);

    if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
        rms_norm_rows_inplace(pool, &mut b.q, qn, c.rms_eps);
        rms_norm_rows_inplace(pool, &mut b.k, kn, c.rms_eps);
    }
}

/// Centers and scales the batch's keys after rope, for TurboQuant key
/// caches: `k = (k - R(p0) c) / s` with `p0` the first position of the
/// key's center chunk (see `crate::centering`). The cache keeps the last
/// chunk's rotated centers for the next decode step.
fn subtract_centers(c: &Config, model: &Model, layer: &LayerAttention, cache: &mut LayerCache, n_past: usize, b: &mut Batch) {
    let d = c.head_dim;
    let kv_dim = c.n_kv_heads * d;
    if let Some(center) = &cache.key_center {
        let neox = c.arch == Arch::Gemma3;
        let factors = model.weights.rope_freqs.as_deref();
        let rotated = cache.rotated_center.get_or_insert_with(|| RotatedCenter { at: usize::MAX, key: center.clone() });
        for t in 0..b.n {
            let p0 = chunk_start(n_past + t);
            if p0 != rotated.at {
                let mut cos = vec![0.0f32; c.n_rot / 2];
                let mut sin = vec![0.0f32; c.n_rot / 2];
                rope_angles(c, layer, factors, p0, &mut cos, &mut sin);
                rotated.key.copy_from_slice(center);
                for head in rotated.key.chunks_exact_mut(d) {
                    ops::rope(head, &cos, &sin, neox);
                }
                rotated.at = p0;
            }
            let row = &mut b.k[t * kv_dim..(t + 1) * kv_dim];
            row.iter_mut().zip(&rotated.key).for_each(|(x, m)| *x -= m);
        }
    }
    if let Some(scale) = &cache.key_scale {
        for row in b.k.chunks_exact_mut(kv_dim) {
            row.iter_mut().zip(scale).for_each(|(x, s)| *x /= s);
        }
    }
}

fn write_token(c: &Config, cache: &mut LayerCache, pos: usize, t: usize, b: &Batch) {
    let d = c.head_dim;
    let slot = cache.slot(pos);
    let kv_dim = c.n_kv_heads * d;
    for h in 0..c.n_kv_heads {
        let off = t * kv_dim + h * d;
        cache.k.write(h, slot, &b.k[off..off + d]);
        cache.v.write(h, slot, &b.v[off..off + d]);
    }
}

/// Attends tokens `t0..t1` of the batch into `b.attn`.
fn attend_tokens(model: &Model, cache: &LayerCache, n_past: usize, t0: usize, t1: usize, b: &mut Batch) {
    let c = &model.config;
    let shape = Shape { head_dim: c.head_dim, n_head: c.n_head, group: c.gqa_ratio(), scale: c.attn_scale };
    let out = &mut b.attn[t0 * c.n_head * c.head_dim..t1 * c.n_head * c.head_dim];
    attention::attend(&model.pool, cache, &shape, c.n_kv_heads, n_past, t0, t1, &b.q, out);
}

/// Writes the batch's keys and values and computes attention.
///
/// When every position of the batch fits in the layer's ring without
/// reusing a slot, all tokens are written first and attended in parallel.
/// Otherwise (a sliding window wraps inside the batch) each token is
/// written and attended in turn, so no query loses a key it may see.
fn write_and_attend(model: &Model, cache: &mut LayerCache, n_past: usize, b: &mut Batch) {
    let c = &model.config;
    if n_past + b.n <= cache.capacity() {
        for t in 0..b.n {
            write_token(c, cache, n_past + t, t, b);
        }
        attend_tokens(model, cache, n_past, 0, b.n, b);
    } else {
        for t in 0..b.n {
            write_token(c, cache, n_past + t, t, b);
            attend_tokens(model, cache, n_past, t, t + 1, b);
        }
    }
}

fn ffn_block(model: &Model, layer: &Layer, b: &mut Batch) {
    let c = &model.config;
    let pool = &model.pool;

    rms_norm_rows(pool, &mut b.xn, &b.x, &layer.ffn_norm, c.rms_eps);
    let act: fn(&mut [f32], &[f32]) = match c.arch {
        Arch::Llama => ops::silu_mul,
        Arch::Gemma3 => ops::gelu_tanh_mul,
    };
    if b.n == 1 {
        let hidden = gated_hidden(pool, &layer.ffn_gate, &layer.ffn_up, &layer.ffn_down, act, &b.xn, &mut b.gate, &mut b.up);
        matmul_encoded(pool, &layer.ffn_down, &hidden, &mut b.proj);
    } else {
        matmul_many(pool, &b.xn, &mut [(&layer.ffn_gate, &mut b.gate), (&layer.ffn_up, &mut b.up)]);
        let (n_ff, up) = (c.n_ff, &b.up);
        pool.for_row_chunks(&mut b.gate, n_ff, |first, gate| act(gate, &up[first * n_ff..first * n_ff + gate.len()]));
        matmul(pool, &layer.ffn_down, &b.gate, &mut b.proj);
    }
    if let Some(post) = &layer.post_ffn_norm {
        rms_norm_rows_inplace(pool, &mut b.proj, post, c.rms_eps);
    }
    add_residual(pool, &mut b.x, &b.proj, c.n_embd);
}

fn output(model: &Model, b: &Batch, from: usize) -> Vec<f32> {
    let c = &model.config;
    let e = c.n_embd;
    let rows = b.n - from;
    let mut xn = vec![0.0f32; rows * e];
    rms_norm_rows(&model.pool, &mut xn, &b.x[from * e..], &model.weights.output_norm, c.rms_eps);
    let mut logits = vec![0.0f32; rows * c.n_vocab];
    matmul(&model.pool, model.weights.output_matrix(), &xn, &mut logits);
    logits
}
