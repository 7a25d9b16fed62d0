//! Weight tensors of a model, viewed in place in the mmap.

use std::sync::Arc;

use turbokv_kernels::quants::{self, GgmlType};

use crate::config::{Arch, Config};
use crate::error::{Error, Result};
use crate::gguf::GgufFile;

/// A 2-D weight matrix stored row by row: `n_out` rows of `n_in` elements
/// (GGUF dims `[n_in, n_out]`). The bytes stay in the mmap.
pub struct Matrix {
    pub name: String,
    pub ty: GgmlType,
    pub n_in: usize,
    pub n_out: usize,
    pub row_bytes: usize,
    data: *const u8,
    // keeps the mmap behind `data` alive
    _file: Arc<GgufFile>,
}

// SAFETY: `data` points into a read-only mmap owned by `_file`, which lives
// as long as the matrix and is never written.
unsafe impl Send for Matrix {}
unsafe impl Sync for Matrix {}

impl Matrix {
    /// All rows, `n_out * row_bytes` bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the range was checked against the tensor's size at load.
        unsafe { std::slice::from_raw_parts(self.data, self.n_out * self.row_bytes) }
    }

    /// Row `i` (`row_bytes` bytes).
    pub fn row(&self, i: usize) -> &[u8] {
        &self.bytes()[i * self.row_bytes..(i + 1) * self.row_bytes]
    }

    /// Dequantizes row `i` into `out` (`n_in` elements).
    pub fn dequantize_row(&self, i: usize, out: &mut [f32]) {
        quants::dequantize_row(self.ty, self.row(i), out);
    }
}

/// One transformer block's weights.
pub struct Layer {
    pub attn_norm: Vec<f32>,  // [n_embd]
    pub wq: Matrix,           // [n_embd] -> [n_head * head_dim]
    pub wk: Matrix,           // [n_embd] -> [n_kv_heads * head_dim]
    pub wv: Matrix,           // [n_embd] -> [n_kv_heads * head_dim]
    pub wo: Matrix,           // [n_head * head_dim] -> [n_embd]
    pub q_norm: Option<Vec<f32>>, // [head_dim], Gemma 3
    pub k_norm: Option<Vec<f32>>, // [head_dim], Gemma 3
    pub post_attn_norm: Option<Vec<f32>>, // [n_embd], Gemma 3
    pub ffn_norm: Vec<f32>,   // [n_embd]
    pub ffn_gate: Matrix,     // [n_embd] -> [n_ff]
    pub ffn_up: Matrix,       // [n_embd] -> [n_ff]
    pub ffn_down: Matrix,     // [n_ff] -> [n_embd]
    pub post_ffn_norm: Option<Vec<f32>>, // [n_embd], Gemma 3
}

pub struct Weights {
    pub token_embd: Matrix,  // [n_embd] x n_vocab rows
    pub output_norm: Vec<f32>, // [n_embd]
    /// `None`: the output projection is tied to `token_embd`.
    pub output: Option<Matrix>, // [n_embd] -> [n_vocab]
    /// Per-dimension rope frequency divisors (Llama 3.1 `rope_freqs`).
    pub rope_freqs: Option<Vec<f32>>, // [n_rot / 2]
    pub layers: Vec<Layer>,
}

impl Weights {
    pub fn load(file: &Arc<GgufFile>, cfg: &Config) -> Result<Weights> {
        let e = cfg.n_embd;
        let q_dim = cfg.n_head * cfg.head_dim;
        let kv_dim = cfg.n_kv_heads * cfg.head_dim;

        let token_embd = matrix(file, "token_embd.weight", e, cfg.n_vocab)?;
        let output_norm = vector(file, "output_norm.weight", e)?;
        let output = if file.tensor("output.weight").is_some() {
            Some(matrix(file, "output.weight", e, cfg.n_vocab)?)
        } else {
            None
        };
        let rope_freqs = if file.tensor("rope_freqs.weight").is_some() {
            Some(vector(file, "rope_freqs.weight", cfg.n_rot / 2)?)
        } else {
            None
        };

        let gemma = cfg.arch == Arch::Gemma3;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for il in 0..cfg.n_layer {
            let name = |t: &str| format!("blk.{il}.{t}.weight");
            let optional = |t: &str, n: usize| -> Result<Option<Vec<f32>>> {
                if gemma {
                    Ok(Some(vector(file, &name(t), n)?))
                } else {
                    Ok(None)
                }
            };
            layers.push(Layer {
                attn_norm: vector(file, &name("attn_norm"), e)?,
                wq: matrix(file, &name("attn_q"), e, q_dim)?,
                wk: matrix(file, &name("attn_k"), e, kv_dim)?,
                wv: matrix(file, &name("attn_v"), e, kv_dim)?,
                wo: matrix(file, &name("attn_output"), q_dim, e)?,
                q_norm: optional("attn_q_norm", cfg.head_dim)?,
                k_norm: optional("attn_k_norm", cfg.head_dim)?,
                post_attn_norm: optional("post_attention_norm", e)?,
                ffn_norm: vector(file, &name("ffn_norm"), e)?,
                ffn_gate: matrix(file, &name("ffn_gate"), e, cfg.n_ff)?,
                ffn_up: matrix(file, &name("ffn_up"), e, cfg.n_ff)?,
                ffn_down: matrix(file, &name("ffn_down"), cfg.n_ff, e)?,
                post_ffn_norm: optional("post_ffw_norm", e)?,
            });
        }

        Ok(Weights { token_embd, output_norm, output, rope_freqs, layers })
    }

    /// The matrix that maps the final hidden state to logits.
    pub fn output_matrix(&self) -> &Matrix {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }

    /// Bytes of weights that one decode step reads: every layer's matrices
    /// and the output matrix (the embedding lookup reads one row).
    pub fn decode_bytes(&self) -> usize {
        let layer_bytes = |l: &Layer| -> usize {
            [&l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_gate, &l.ffn_up, &l.ffn_down].iter().map(|m| m.bytes().len()).sum()
        };
        let layers: usize = self.layers.iter().map(layer_bytes).sum();
        layers + self.output_matrix().bytes().len()
    }
}

fn find<'a>(file: &'a GgufFile, name: &str) -> Result<&'a crate::gguf::TensorInfo> {
    file.tensor(name)
        .ok_or_else(|| Error::Format(format!("tensor {name} is missing")))
}

fn tensor_type(info: &crate::gguf::TensorInfo) -> Result<GgmlType> {
    info.ty.ok_or_else(|| {
        Error::Unsupported(format!(
            "tensor {} has unsupported type id {}",
            info.name, info.type_id
        ))
    })
}

fn check_shape(info: &crate::gguf::TensorInfo, expected: &[usize]) -> Result<()> {
    let dims: Vec<usize> = info.dims.iter().map(|&d| d as usize).collect();
    // Trailing dimensions of 1 are equivalent to fewer dimensions.
    let mut trimmed = dims.clone();
    while trimmed.len() > expected.len() && trimmed.last() == Some(&1) {
        trimmed.pop();
    }
    if trimmed != expected {
        return Err(Error::Format(format!(
            "tensor {} has shape {:?}, expected {:?}",
            info.name, dims, expected
        )));
    }
    Ok(())
}

fn matrix(file: &Arc<GgufFile>, name: &str, n_in: usize, n_out: usize) -> Result<Matrix> {
    let info = find(file, name)?;
    check_shape(info, &[n_in, n_out])?;
    let ty = tensor_type(info)?;
    if ty == GgmlType::Q8K || ty == GgmlType::Q8_1 {
        return Err(Error::Unsupported(format!(
            "tensor {name} has type {}, which is only an activation format",
            ty.name()
        )));
    }
    let row_bytes = ty.row_bytes(n_in).ok_or_else(|| {
        Error::Format(format!(
            "tensor {name}: row length {n_in} is not a multiple of the {} block size {}",
            ty.name(),
            ty.block_size()
        ))
    })?;
    let data = file.tensor_data(info);
    if data.len() < row_bytes * n_out {
        return Err(Error::Format(format!(
            "tensor {name} has {} bytes of data, expected {}",
            data.len(),
            row_bytes * n_out
        )));
    }
    Ok(Matrix {
        name: name.to_string(),
        ty,
        n_in,
        n_out,
        row_bytes,
        data: data.as_ptr(),
        _file: Arc::clone(file),
    })
}

/// A 1-D tensor (norm weights) dequantized to f32.
fn vector(file: &GgufFile, name: &str, n: usize) -> Result<Vec<f32>> {
    let info = find(file, name)?;
    check_shape(info, &[n])?;
    let ty = tensor_type(info)?;
    let bytes = ty
        .row_bytes(n)
        .ok_or_else(|| Error::Format(format!("tensor {name}: length {n} does not fit type {}", ty.name())))?;
    let data = file.tensor_data(info);
    if data.len() < bytes {
        return Err(Error::Format(format!("tensor {name} has {} bytes, expected {bytes}", data.len())));
    }
    let mut out = vec![0.0f32; n];
    quants::dequantize_row(ty, &data[..bytes], &mut out);
    Ok(out)
}
