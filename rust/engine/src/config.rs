//! Model hyperparameters read from GGUF metadata.

use crate::error::{Error, Result};
use crate::gguf::GgufFile;

/// The architectures turbokv runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2/3, Mistral, SmolLM2: SiLU-gated FFN, adjacent-pair rope.
    Llama,
    /// Gemma 3: per-head Q/K RMSNorm, NeoX rope, sliding-window layers,
    /// sandwich norms, GELU-tanh gated FFN.
    Gemma3,
}

pub const SUPPORTED_ARCHS: &[&str] = &["llama", "gemma3"];

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Gemma3 => "gemma3",
        }
    }
}

/// Rope frequency scaling from `{arch}.rope.scaling.*`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions are multiplied by `1 / factor`.
    Linear { factor: f32 },
}

/// Per-layer attention settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerAttention {
    /// `Some(w)`: a query at position p sees keys at positions `> p - w`.
    pub window: Option<usize>,
    pub rope_theta: f32,
    /// Multiplier of rope positions: `1 / factor` under linear scaling. Gemma 3
    /// local layers keep 1, as llama.cpp's `rope_freq_scale_train_swa` does.
    pub rope_freq_scale: f32,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub arch: Arch,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_heads: usize,
    /// Dimension of each query and key head.
    pub head_dim: usize,
    /// Dimension of each value head (equal to `head_dim` for both archs).
    pub head_dim_v: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub rms_eps: f32,
    /// Dimensions of each head that rope rotates (`head_dim` unless the file
    /// says `rope.dimension_count`).
    pub n_rot: usize,
    pub rope_theta: f32,
    pub rope_scaling: RopeScaling,
    /// Multiplier applied to `q·k` before softmax.
    pub attn_scale: f32,
    pub layers: Vec<LayerAttention>,
}

// Upper bounds that keep a hostile header from sizing huge allocations
// before the tensors are checked against them.
const MAX_DIM: u64 = 1 << 20;
const MAX_LAYERS: u64 = 4096;

fn key(arch: &str, name: &str) -> String {
    format!("{arch}.{name}")
}

fn required_u64(file: &GgufFile, key: &str) -> Result<u64> {
    match file.get_u64(key)? {
        Some(v) => Ok(v),
        None => Err(Error::Format(format!("missing required metadata key {key}"))),
    }
}

fn bounded(file: &GgufFile, key: &str, min: u64, max: u64) -> Result<usize> {
    let value = required_u64(file, key)?;
    check_range(key, value, min, max)
}

fn check_range(key: &str, value: u64, min: u64, max: u64) -> Result<usize> {
    if value < min || value > max {
        return Err(Error::Format(format!(
            "metadata {key} = {value} is out of range [{min}, {max}]"
        )));
    }
    Ok(value as usize)
}

/// `head_count_kv` may be stored per layer as an array; turbokv needs one value.
fn n_kv_heads(file: &GgufFile, arch: &str, n_head: usize) -> Result<usize> {
    let k = key(arch, "attention.head_count_kv");
    match file.get_u64(&k) {
        Ok(Some(v)) => check_range(&k, v, 1, n_head as u64),
        Ok(None) => Ok(n_head),
        Err(e) => Err(e),
    }
}

impl Config {
    pub fn from_gguf(file: &GgufFile) -> Result<Config> {
        let arch_name = file
            .get_str("general.architecture")?
            .ok_or_else(|| Error::Format("missing required metadata key general.architecture".into()))?;
        let arch = match arch_name {
            "llama" => Arch::Llama,
            "gemma3" => Arch::Gemma3,
            other => {
                return Err(Error::Unsupported(format!(
                    "architecture '{other}' is not supported; supported architectures: {}",
                    SUPPORTED_ARCHS.join(", ")
                )))
            }
        };
        let a = arch_name;

        let n_embd = bounded(file, &key(a, "embedding_length"), 1, MAX_DIM)?;
        let n_layer = bounded(file, &key(a, "block_count"), 1, MAX_LAYERS)?;
        let n_head = bounded(file, &key(a, "attention.head_count"), 1, MAX_DIM)?;
        let n_kv_heads = n_kv_heads(file, a, n_head)?;
        if n_head % n_kv_heads != 0 {
            return Err(Error::Format(format!(
                "{a}.attention.head_count ({n_head}) is not a multiple of head_count_kv ({n_kv_heads})"
            )));
        }
        let n_ff = bounded(file, &key(a, "feed_forward_length"), 1, MAX_DIM)?;
        let n_ctx_train = bounded(file, &key(a, "context_length"), 1, 1 << 24)?;

        let default_head_dim = n_embd / n_head;
        let head_dim = match file.get_u64(&key(a, "attention.key_length"))? {
            Some(v) => check_range(&key(a, "attention.key_length"), v, 1, MAX_DIM)?,
            None => default_head_dim,
        };
        let head_dim_v = match file.get_u64(&key(a, "attention.value_length"))? {
            Some(v) => check_range(&key(a, "attention.value_length"), v, 1, MAX_DIM)?,
            None => default_head_dim,
        };
        if head_dim_v != head_dim {
            return Err(Error::Unsupported(format!(
                "key_length {head_dim} differs from value_length {head_dim_v}; turbokv needs them equal"
            )));
        }
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(Error::Format(format!("head dimension {head_dim} must be even and nonzero")));
        }

        let n_rot = match file.get_u64(&key(a, "rope.dimension_count"))? {
            Some(v) => check_range(&key(a, "rope.dimension_count"), v, 2, head_dim as u64)?,
            None => head_dim,
        };
        if n_rot % 2 != 0 {
            return Err(Error::Format(format!("{a}.rope.dimension_count = {n_rot} must be even")));
        }

        let default_eps = match arch {
            Arch::Llama => 1e-5,
            Arch::Gemma3 => 1e-6,
        };
        let rms_eps = file
            .get_f32(&key(a, "attention.layer_norm_rms_epsilon"))?
            .unwrap_or(default_eps);
        let rope_theta = file.get_f32(&key(a, "rope.freq_base"))?.unwrap_or(10_000.0);
        if !(rope_theta.is_finite() && rope_theta > 0.0) {
            return Err(Error::Format(format!("{a}.rope.freq_base = {rope_theta} must be positive")));
        }
        let rope_scaling = rope_scaling(file, a)?;
        let n_vocab = vocab_size(file, a)?;

        let layers = layer_attention(file, arch, a, n_layer, rope_theta, rope_scaling)?;
        let attn_scale = attention_scale(arch, n_layer, n_embd, n_head, head_dim);

        Ok(Config {
            arch,
            n_embd,
            n_layer,
            n_head,
            n_kv_heads,
            head_dim,
            head_dim_v,
            n_ff,
            n_vocab,
            n_ctx_train,
            rms_eps,
            n_rot,
            rope_theta,
            rope_scaling,
            attn_scale,
            layers,
        })
    }

    /// Query heads per KV head.
    pub fn gqa_ratio(&self) -> usize {
        self.n_head / self.n_kv_heads
    }
}

/// The factor applied to `q·k`: `1 / sqrt(head_dim)`, except that llama.cpp
/// identifies Gemma 3 27B by its 62 layers and uses `1 / sqrt(n_embd / n_head)`
/// there (integer division).
fn attention_scale(arch: Arch, n_layer: usize, n_embd: usize, n_head: usize, head_dim: usize) -> f32 {
    if arch == Arch::Gemma3 && n_layer == 62 {
        return 1.0 / ((n_embd / n_head) as f32).sqrt();
    }
    1.0 / (head_dim as f32).sqrt()
}

fn rope_scaling(file: &GgufFile, a: &str) -> Result<RopeScaling> {
    let kind = file.get_str(&key(a, "rope.scaling.type"))?.unwrap_or("none");
    match kind {
        "none" => Ok(RopeScaling::None),
        "linear" => {
            let factor = file.get_f32(&key(a, "rope.scaling.factor"))?.unwrap_or(1.0);
            if !(factor.is_finite() && factor > 0.0) {
                return Err(Error::Format(format!("{a}.rope.scaling.factor = {factor} must be positive")));
            }
            Ok(RopeScaling::Linear { factor })
        }
        other => Err(Error::Unsupported(format!(
            "rope scaling type '{other}' is not supported; supported: none, linear"
        ))),
    }
}

fn vocab_size(file: &GgufFile, a: &str) -> Result<usize> {
    if let Some(v) = file.get_u64(&key(a, "vocab_size"))? {
        return check_range(&key(a, "vocab_size"), v, 1, 1 << 24);
    }
    match file.get_str_array("tokenizer.ggml.tokens")? {
        Some(tokens) if !tokens.is_empty() => Ok(tokens.len()),
        _ => Err(Error::Format("missing tokenizer.ggml.tokens (the vocabulary)".into())),
    }
}

/// Gemma 3 alternates sliding-window layers with a full-attention layer
/// every `pattern` layers (6 unless the file says otherwise). Local layers
/// use rope base 10 000 and no rope scaling; global layers use the file's
/// `rope.freq_base` and `rope.scaling`.
fn layer_attention(
    file: &GgufFile,
    arch: Arch,
    a: &str,
    n_layer: usize,
    rope_theta: f32,
    rope_scaling: RopeScaling,
) -> Result<Vec<LayerAttention>> {
    let rope_freq_scale = match rope_scaling {
        RopeScaling::None => 1.0,
        RopeScaling::Linear { factor } => 1.0 / factor,
    };
    let global = LayerAttention { window: None, rope_theta, rope_freq_scale };
    if arch != Arch::Gemma3 {
        return Ok(vec![global; n_layer]);
    }
    let window = bounded(file, &key(a, "attention.sliding_window"), 1, 1 << 24)?;
    let pattern = match file.get_u64(&key(a, "attention.sliding_window_pattern"))? {
        Some(v) => check_range(&key(a, "attention.sliding_window_pattern"), v, 1, MAX_LAYERS)?,
        None => 6,
    };
    let local_theta = file.get_f32(&key(a, "rope.freq_base_swa"))?.unwrap_or(10_000.0);
    let layers = (0..n_layer)
        .map(|il| {
            let local = il % pattern < pattern - 1;
            if local {
                LayerAttention { window: Some(window), rope_theta: local_theta, rope_freq_scale: 1.0 }
            } else {
                global
            }
        })
        .collect();
    Ok(layers)
}
