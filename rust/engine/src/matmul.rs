//! Matrix-vector and matrix-matrix products against quantized weights.
//!
//! Activations are converted once per call to the weight type's
//! `vec_dot_type` (8-bit blocks for quantized weights, as llama.cpp does),
//! then output rows are split across the worker pool. A batch of tokens
//! reads each weight row once for all of them.

use rayon::prelude::*;
use turbokv_kernels::quants::{self, GgmlType};

use crate::weights::Matrix;

/// Output rows handed to one task: large enough to amortize dispatch,
/// small enough to balance two to a few dozen threads.
const ROWS_PER_TASK: usize = 64;

/// Activations of `n_tokens` rows encoded for dot products with `ty` weights.
pub struct Activations {
    pub ty: GgmlType,
    pub n: usize,
    pub n_tokens: usize,
    pub row_bytes: usize,
    pub data: Vec<u8>,
}

impl Activations {
    /// Encodes `x` (`n_tokens` rows of `n` floats) for weights of type `ty`.
    pub fn encode(ty: GgmlType, x: &[f32], n: usize) -> Activations {
        let act_ty = ty.vec_dot_type();
        let n_tokens = x.len() / n;
        let row_bytes = act_ty.row_bytes(n).expect("activation length fits the block size");
        let mut data = vec![0u8; row_bytes * n_tokens];
        for t in 0..n_tokens {
            let src = &x[t * n..(t + 1) * n];
            let dst = &mut data[t * row_bytes..(t + 1) * row_bytes];
            if act_ty == GgmlType::F32 {
                for (chunk, v) in dst.chunks_exact_mut(4).zip(src) {
                    chunk.copy_from_slice(&v.to_le_bytes());
                }
            } else {
                quants::quantize_row(act_ty, src, dst);
            }
        }
        Activations { ty: act_ty, n, n_tokens, row_bytes, data }
    }

    pub fn row(&self, t: usize) -> &[u8] {
        &self.data[t * self.row_bytes..(t + 1) * self.row_bytes]
    }
}

/// A raw pointer that tasks write disjoint elements through.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every task writes a disjoint set of indices.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// `out[t * n_out + r] = dot(w.row(r), x[t])` for every token `t`.
///
/// `x` holds `n_tokens` rows of `w.n_in` floats; `out` has room for
/// `n_tokens * w.n_out` floats.
pub fn matmul(pool: &rayon::ThreadPool, w: &Matrix, x: &[f32], out: &mut [f32]) {
    let act = Activations::encode(w.ty, x, w.n_in);
    matmul_encoded(pool, w, &act, out);
}

/// [`matmul`] with activations already encoded for `w`'s type.
pub fn matmul_encoded(pool: &rayon::ThreadPool, w: &Matrix, act: &Activations, out: &mut [f32]) {
    let n_out = w.n_out;
    let n_tokens = act.n_tokens;
    assert!(out.len() >= n_tokens * n_out);
    let shared = SharedOut(out.as_mut_ptr());
    let n_tasks = (n_out + ROWS_PER_TASK - 1) / ROWS_PER_TASK;

    let run = |task: usize| {
        let shared = shared;
        let r0 = task * ROWS_PER_TASK;
        let r1 = (r0 + ROWS_PER_TASK).min(n_out);
        for r in r0..r1 {
            let row = w.row(r);
            for t in 0..n_tokens {
                let v = quants::vec_dot(w.ty, w.n_in, row, act.row(t));
                // SAFETY: (t, r) pairs are unique across tasks and in bounds.
                unsafe { *shared.0.add(t * n_out + r) = v };
            }
        }
    };

    if n_tasks == 1 || pool.current_num_threads() == 1 {
        (0..n_tasks).for_each(run);
    } else {
        pool.install(|| (0..n_tasks).into_par_iter().for_each(run));
    }
}
