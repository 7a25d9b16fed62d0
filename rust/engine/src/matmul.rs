//! Matrix-vector and matrix-matrix products against quantized weights.
//!
//! Activations are converted once per call to the weight type's
//! `vec_dot_type` (8-bit blocks for quantized weights, as llama.cpp does),
//! then output rows are split across the worker pool. One token runs the
//! multi-row kernel `vec_dot_rows`; a batch runs `gemm`, which unpacks each
//! weight block once for several tokens.

use turbokv_kernels::quants::{self, GemmShape, GgmlType};

use crate::pool::WorkerPool;
use crate::weights::Matrix;

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
        let mut act = Activations::alloc(ty, x.len() / n, n);
        let row_bytes = act.row_bytes;
        for (src, dst) in x.chunks_exact(n).zip(act.data.chunks_exact_mut(row_bytes)) {
            encode_row(act.ty, src, dst);
        }
        act
    }

    /// [`Activations::encode`] with the rows spread over `pool`, for prompts.
    pub fn encode_on(pool: &WorkerPool, ty: GgmlType, x: &[f32], n: usize) -> Activations {
        let mut act = Activations::alloc(ty, x.len() / n, n);
        let (act_ty, row_bytes) = (act.ty, act.row_bytes);
        pool.for_row_chunks(&mut act.data, row_bytes, |first, dst| {
            let src = &x[first * n..];
            for (src, dst) in src.chunks_exact(n).zip(dst.chunks_exact_mut(row_bytes)) {
                encode_row(act_ty, src, dst);
            }
        });
        act
    }

    fn alloc(ty: GgmlType, n_tokens: usize, n: usize) -> Activations {
        let act_ty = ty.vec_dot_type();
        let row_bytes = act_ty.row_bytes(n).expect("activation length fits the block size");
        Activations { ty: act_ty, n, n_tokens, row_bytes, data: vec![0u8; row_bytes * n_tokens] }
    }

    pub fn row(&self, t: usize) -> &[u8] {
        &self.data[t * self.row_bytes..(t + 1) * self.row_bytes]
    }
}

/// Encodes one row of activations as `act_ty` (F32 bytes or an 8-bit
/// quantization).
fn encode_row(act_ty: GgmlType, src: &[f32], dst: &mut [u8]) {
    if act_ty == GgmlType::F32 {
        for (chunk, v) in dst.chunks_exact_mut(4).zip(src) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
    } else {
        quants::quantize_row(act_ty, src, dst);
    }
}

/// A raw pointer that tasks write disjoint elements through.
#[derive(Clone, Copy)]
struct SharedOut<T>(*mut T);
// SAFETY: every task writes a disjoint set of indices.
unsafe impl<T: Send> Send for SharedOut<T> {}
unsafe impl<T: Send> Sync for SharedOut<T> {}

/// `out[t * n_out + r] = dot(w.row(r), x[t])` for every token `t`.
///
/// `x` holds `n_tokens` rows of `w.n_in` floats; `out` has room for
/// `n_tokens * w.n_out` floats.
pub fn matmul(pool: &WorkerPool, w: &Matrix, x: &[f32], out: &mut [f32]) {
    let act = Activations::encode_on(pool, w.ty, x, w.n_in);
    matmul_encoded(pool, w, &act, out);
}

/// [`matmul`] for several matrices that read the same `x`, such as the
/// query, key and value projections. `x` is encoded once per distinct
/// activation type. A single token's products share one dispatch, so the
/// pool splits their rows together and waits once.
pub fn matmul_many(pool: &WorkerPool, x: &[f32], products: &mut [(&Matrix, &mut [f32])]) {
    let Some((first, _)) = products.first() else { return };
    let (n_in, act_ty) = (first.n_in, first.ty.vec_dot_type());
    let shared_act = products.iter().all(|(w, _)| w.n_in == n_in && w.ty.vec_dot_type() == act_ty);
    if x.len() != n_in || !shared_act || products.len() > MAX_FUSED {
        let mut act: Option<Activations> = None;
        for (w, out) in products.iter_mut() {
            if act.as_ref().map_or(true, |a| a.ty != w.ty.vec_dot_type() || a.n != w.n_in) {
                act = Some(Activations::encode_on(pool, w.ty, x, w.n_in));
            }
            matmul_encoded(pool, w, act.as_ref().expect("encoded above"), out);
        }
        return;
    }

    let act = Activations::encode(first.ty, x, n_in);
    let total_rows: usize = products.iter().map(|(w, _)| w.n_out).sum();
    let rows_per_task = rows_per_task(total_rows, pool.n_threads(), 1);
    // Per product: its matrix, its task count and its output rows.
    let mut matrices: [Option<&Matrix>; MAX_FUSED] = [None; MAX_FUSED];
    let mut tasks = [0usize; MAX_FUSED];
    let mut outs = [SharedOut(std::ptr::null_mut()); MAX_FUSED];
    for (i, (w, out)) in products.iter_mut().enumerate() {
        assert!(out.len() >= w.n_out);
        matrices[i] = Some(*w);
        tasks[i] = (w.n_out + rows_per_task - 1) / rows_per_task;
        outs[i] = SharedOut(out.as_mut_ptr());
    }

    let run = |task: usize| {
        let outs = outs;
        let (mut i, mut local) = (0, task);
        while local >= tasks[i] {
            local -= tasks[i];
            i += 1;
        }
        let w = matrices[i].expect("a product for every task");
        let r0 = local * rows_per_task;
        let n_rows = rows_per_task.min(w.n_out - r0);
        // SAFETY: rows r0..r0 + n_rows of product i belong to this task
        // alone, and its output has room for n_out floats.
        let out = unsafe { std::slice::from_raw_parts_mut(outs[i].0.add(r0), n_rows) };
        quants::vec_dot_rows(w.ty, w.n_in, &w.bytes()[r0 * w.row_bytes..], w.row_bytes, act.row(0), out);
    };
    pool.run(tasks.iter().sum(), &run);
}

/// Products that [`matmul_many`] runs in one dispatch at most.
const MAX_FUSED: usize = 4;

/// Computes one token's gated FFN hidden state, `act(gate x) * (up x)`,
/// into `gate_out` (`up_out` receives `up x`) and returns it encoded for
/// `down`.
///
/// Each task computes the same rows of both products and applies `act` to
/// them. When `down`'s activation encoding has blocks of at most
/// [`MAX_BLOCK_ENCODED_IN_TASKS`] elements (or one task covers all rows),
/// each task also encodes its rows. So the activation and the encoding run
/// on every thread instead of on the caller between two dispatches. Bits
/// match [`matmul_many`] followed by `act` and [`Activations::encode`]:
/// encoding works block by block, and tasks start on multiples of 8 rows,
/// so the activation's SIMD lanes and scalar tail cover the same elements.
#[allow(clippy::too_many_arguments)]
pub fn gated_hidden(
    pool: &WorkerPool,
    gate: &Matrix,
    up: &Matrix,
    down: &Matrix,
    act: fn(&mut [f32], &[f32]),
    x: &[f32],
    gate_out: &mut [f32],
    up_out: &mut [f32],
) -> Activations {
    assert_eq!(x.len(), gate.n_in, "gated_hidden takes one token");
    let n_ff = gate.n_out;
    let shared_input = gate.ty.vec_dot_type() == up.ty.vec_dot_type() && gate.n_in == up.n_in;
    let paired = shared_input && up.n_out == n_ff && down.n_in == n_ff;
    if !paired {
        matmul_many(pool, x, &mut [(gate, &mut *gate_out), (up, &mut *up_out)]);
        act(&mut gate_out[..n_ff], &up_out[..n_ff]);
        return Activations::encode(down.ty, &gate_out[..n_ff], n_ff);
    }
    assert!(gate_out.len() >= n_ff);
    assert!(up_out.len() >= n_ff);

    let input = Activations::encode(gate.ty, x, gate.n_in);
    let mut hidden = Activations::alloc(down.ty, 1, n_ff);
    let block = hidden.ty.block_size();
    let block_bytes = hidden.row_bytes / (n_ff / block);
    // Half the rows of a fused gate and up dispatch, so that before rounding
    // each task streams as many weight bytes as a task of `matmul_many`.
    let mut per_task = (rows_per_task(2 * n_ff, pool.n_threads(), 1) / 2).max(1);
    let encode_in_tasks = block <= MAX_BLOCK_ENCODED_IN_TASKS || per_task >= n_ff;
    // The activation's SIMD paths take 8 lanes (AVX2) or 4 (NEON) and finish
    // a slice's tail in scalar code, so tasks start on multiples of 8.
    let multiple = if encode_in_tasks { block.max(8) } else { 8 };
    per_task = ((per_task + multiple - 1) / multiple * multiple).min(n_ff);

    let (g_ptr, u_ptr) = (SharedOut(gate_out.as_mut_ptr()), SharedOut(up_out.as_mut_ptr()));
    let h_ptr = SharedOut(hidden.data.as_mut_ptr());
    let hidden_ty = hidden.ty;
    let run = |task: usize| {
        let (g_ptr, u_ptr, h_ptr) = (g_ptr, u_ptr, h_ptr);
        let r0 = task * per_task;
        let n_rows = per_task.min(n_ff - r0);
        // SAFETY: rows r0..r0 + n_rows of both outputs belong to this task
        // alone, and both outputs hold n_ff floats.
        let g = unsafe { std::slice::from_raw_parts_mut(g_ptr.0.add(r0), n_rows) };
        let u = unsafe { std::slice::from_raw_parts_mut(u_ptr.0.add(r0), n_rows) };
        quants::vec_dot_rows(gate.ty, gate.n_in, &gate.bytes()[r0 * gate.row_bytes..], gate.row_bytes, input.row(0), g);
        quants::vec_dot_rows(up.ty, up.n_in, &up.bytes()[r0 * up.row_bytes..], up.row_bytes, input.row(0), u);
        act(g, u);
        if encode_in_tasks {
            let bytes = n_rows / block * block_bytes;
            // SAFETY: r0 and n_rows are multiples of `block` here, so these
            // are the blocks of rows r0..r0 + n_rows, this task's alone.
            let h = unsafe { std::slice::from_raw_parts_mut(h_ptr.0.add(r0 / block * block_bytes), bytes) };
            encode_row(hidden_ty, g, h);
        }
    };
    pool.run((n_ff + per_task - 1) / per_task, &run);

    if !encode_in_tasks {
        encode_row(hidden.ty, &gate_out[..n_ff], &mut hidden.data);
    }
    hidden
}

/// Activation encodings with blocks up to this size are encoded inside
/// [`gated_hidden`]'s tasks. Larger blocks (Q8_K's 256) would force tasks
/// so large that the caller waits longer for the last one than encoding
/// takes.
const MAX_BLOCK_ENCODED_IN_TASKS: usize = 32;

/// [`matmul`] with activations already encoded for `w`'s type.
pub fn matmul_encoded(pool: &WorkerPool, w: &Matrix, act: &Activations, out: &mut [f32]) {
    let n_out = w.n_out;
    let n_tokens = act.n_tokens;
    assert!(out.len() >= n_tokens * n_out);
    let rows_per_task = rows_per_task(n_out, pool.n_threads(), n_tokens);
    let out = &mut out[..n_tokens * n_out];

    if n_tokens == 1 {
        pool.for_each_chunk_mut(out, rows_per_task, |task, out| {
            let r0 = task * rows_per_task;
            quants::vec_dot_rows(w.ty, w.n_in, &w.bytes()[r0 * w.row_bytes..], w.row_bytes, act.row(0), out);
        });
        return;
    }

    let shared = SharedOut(out.as_mut_ptr());
    let n_tasks = (n_out + rows_per_task - 1) / rows_per_task;
    let run = |task: usize| {
        let shared = shared;
        let r0 = task * rows_per_task;
        let n_rows = rows_per_task.min(n_out - r0);
        let shape = GemmShape {
            n: w.n_in,
            row_bytes: w.row_bytes,
            n_rows,
            act_row_bytes: act.row_bytes,
            n_tokens,
            out_stride: n_rows,
        };
        // The task's outputs are not contiguous in `out`, so the kernel
        // writes them to a buffer first.
        let mut tile = vec![0.0f32; n_tokens * n_rows];
        quants::gemm(w.ty, shape, &w.bytes()[r0 * w.row_bytes..], &act.data, &mut tile);
        for (t, values) in tile.chunks_exact(n_rows).enumerate() {
            // SAFETY: rows r0..r0 + n_rows belong to this task alone, and
            // `out` has room for n_tokens * n_out floats.
            unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), shared.0.add(t * n_out + r0), n_rows) };
        }
    };
    pool.run(n_tasks, &run);
}

/// Output rows per task: at least a minimum, and few enough for several
/// tasks per thread, so a thread slowed by other work on the machine can
/// hand tasks to the others.
///
/// One token's tasks are small (32 rows of SmolLM2, an estimated 2 to 4
/// us), because at the end of a dispatch the caller waits for the worker's
/// last task. Halving decode tasks to that size cut SmolLM2's wait from
/// 3.2% to 2.2% of a token on 2 threads. A batch task prepares its
/// activation terms once per call, so batches keep larger tasks.
fn rows_per_task(n_out: usize, n_threads: usize, n_tokens: usize) -> usize {
    if n_threads <= 1 && n_tokens == 1 {
        // One thread has no one to balance against, so one task saves the
        // per-task setup. Batches keep their tasks, which bound the size of
        // each task's output tile.
        return n_out.max(1);
    }
    let (min_rows, tasks_per_thread) = if n_tokens == 1 {
        (DECODE_MIN_ROWS, DECODE_TASKS_PER_THREAD)
    } else {
        (BATCH_MIN_ROWS, BATCH_TASKS_PER_THREAD)
    };
    let per_task = n_out / (n_threads.max(1) * tasks_per_thread);
    // Multiples of 4 keep whole 4-row decode tiles inside a task, and
    // multiples of 8 whole 8-row batch panels.
    let multiple = if n_tokens == 1 { 4 } else { 8 };
    (per_task.max(min_rows) + multiple - 1) / multiple * multiple
}

const DECODE_MIN_ROWS: usize = 32;
const DECODE_TASKS_PER_THREAD: usize = 16;
const BATCH_MIN_ROWS: usize = 64;
const BATCH_TASKS_PER_THREAD: usize = 8;
