//! Attention of a batch of query tokens over the cached positions each may
//! see, read directly from the cache in its stored format.
//!
//! TurboQuant keys are scored in rotated space: the query is rotated once
//! per task, and each score is a codebook-lookup dot product with the stored
//! indices. TurboQuant values are summed in rotated space and rotated back
//! once per head. No cached position is ever decoded to a full vector.
//!
//! The work is split into tasks of one token, one KV head and one chunk of
//! at most [`CHUNK`] positions. A task serves every query head that shares
//! the KV head (GQA), so each block is read once per group, and yields per
//! head the largest score, the sum of exponentials and the exponential-weighted
//! sum of values. [`merge`] combines a token's chunks. Chunks start at fixed
//! multiples of [`CHUNK`], so results do not depend on the thread count or on
//! how a prompt is split into batches.

use std::cell::RefCell;

use turbokv_kernels::{ops, turbo};

use crate::centering::add_key_center_scores;
use crate::kv_cache::{BlockSpan, KvType, LayerCache, Store, SINK_POSITION};
use crate::pool::WorkerPool;

/// Positions per task at most.
pub const CHUNK: usize = 256;

/// A contiguous run of slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    slot: usize,
    len: usize,
}

/// The slots holding positions `lo..=hi` in a ring of `capacity` slots, as
/// at most two contiguous runs (in position order).
fn segments(lo: usize, hi: usize, capacity: usize) -> ([Segment; 2], usize) {
    let n = hi + 1 - lo;
    debug_assert!(n <= capacity);
    let first = lo % capacity;
    let empty = Segment { slot: 0, len: 0 };
    if first + n <= capacity {
        ([Segment { slot: first, len: n }, empty], 1)
    } else {
        let len0 = capacity - first;
        ([Segment { slot: first, len: len0 }, Segment { slot: 0, len: n - len0 }], 2)
    }
}

/// The first position a query at `pos` may see.
pub fn first_visible(pos: usize, window: Option<usize>) -> usize {
    match window {
        Some(w) => (pos + 1).saturating_sub(w),
        None => 0,
    }
}

/// Sizes shared by every task of a layer.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub head_dim: usize,
    pub n_head: usize,
    /// Query heads per KV head.
    pub group: usize,
    /// Multiplies every score before softmax.
    pub scale: f32,
}

impl Shape {
    /// Floats of one task's result: per query head the largest score and the
    /// sum of exponentials, then `group * head_dim` accumulated values.
    pub fn partial_len(&self) -> usize {
        self.group * (self.head_dim + 2)
    }
}

/// One unit of attention work: batch row `t`, KV head `kv_head`, positions
/// `lo..=hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Task {
    pub t: usize,
    pub kv_head: usize,
    pub lo: usize,
    pub hi: usize,
}

/// The tasks of a batch, ordered by (token, KV head) group.
pub struct Plan {
    pub tasks: Vec<Task>,
    /// Group `i` (token `t0 + i / n_kv_heads`, KV head `i % n_kv_heads`)
    /// owns tasks `starts[i]..starts[i + 1]`.
    pub starts: Vec<usize>,
}

/// Splits the attention of batch rows `t0..t1` (positions `n_past + t`) into
/// tasks.
pub fn plan(window: Option<usize>, n_kv_heads: usize, n_past: usize, t0: usize, t1: usize) -> Plan {
    let mut tasks = Vec::new();
    let mut starts = vec![0];
    for t in t0..t1 {
        let pos = n_past + t;
        for kv_head in 0..n_kv_heads {
            let mut lo = first_visible(pos, window);
            while lo <= pos {
                let hi = ((lo / CHUNK + 1) * CHUNK - 1).min(pos);
                tasks.push(Task { t, kv_head, lo, hi });
                lo = hi + 1;
            }
            starts.push(tasks.len());
        }
    }
    Plan { tasks, starts }
}

/// Per-thread buffers of [`run_task`].
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,  // [group][n]
    partial: Vec<f32>, // [group][n], one block's scores when a head has several
    q_rot: Vec<f32>,   // rotated queries, block-major: block b holds [group][len_b]
    coef: Vec<f32>,    // [2 * n_pairs], key-center coefficients of one head
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `task` and writes its result (see [`Shape::partial_len`]) to
/// `partial`. `q` contains the batch's queries, `[n][n_head * head_dim]`.
pub fn run_task(layer: &LayerCache, shape: &Shape, task: Task, q: &[f32], partial: &mut [f32]) {
    SCRATCH.with(|s| run_task_with(layer, shape, task, q, partial, &mut s.borrow_mut()));
}

fn run_task_with(layer: &LayerCache, shape: &Shape, task: Task, q: &[f32], partial: &mut [f32], s: &mut Scratch) {
    let d = shape.head_dim;
    let g = shape.group;
    let n = task.hi + 1 - task.lo;
    let first_head = task.t * shape.n_head + task.kv_head * g;
    let q = &q[first_head * d..(first_head + g) * d];
    let (segs, n_segs) = segments(task.lo, task.hi, layer.capacity());
    let segs = &segs[..n_segs];

    s.scores.clear();
    s.scores.resize(g * n, 0.0);
    let key_scale = layer.key_scale.as_ref().map(|k| &k[task.kv_head * d..(task.kv_head + 1) * d]);
    score_keys(&layer.k, task.kv_head, q, g, key_scale, segs, s);
    if let (Some(center), Some(angles)) = (&layer.key_center, &layer.chunk_angles) {
        let center = &center[task.kv_head * d..(task.kv_head + 1) * d];
        for (q_h, scores) in q.chunks_exact(d).zip(s.scores.chunks_exact_mut(n)) {
            add_key_center_scores(&layer.rope_pairs, angles, q_h, center, task.lo, scores, &mut s.coef);
        }
    }

    if let Some(sink) = &layer.sink_key {
        if (task.lo..=task.hi).contains(&SINK_POSITION) {
            let k = &sink[task.kv_head * d..(task.kv_head + 1) * d];
            for (q_h, scores) in q.chunks_exact(d).zip(s.scores.chunks_exact_mut(n)) {
                scores[SINK_POSITION - task.lo] = ops::dot_f16_f32(k, q_h);
            }
        }
    }

    let (stats, acc) = partial.split_at_mut(2 * g);
    for (h, scores) in s.scores.chunks_exact_mut(n).enumerate() {
        ops::scale(scores, shape.scale);
        let (max, sum) = ops::exp_below_max(scores);
        stats[h] = max;
        stats[g + h] = sum as f32;
    }
    acc.iter_mut().for_each(|x| *x = 0.0);
    sum_values(&layer.v, task.kv_head, &s.scores, n, segs, acc);
}

/// Writes the raw scores of the `group` query heads in `q` (`[group][d]`)
/// against positions `segs` to `s.scores` (`[group][n]`). `key_scale`, when
/// set, multiplies the queries before TurboQuant scoring, undoing the
/// division applied to the stored keys.
fn score_keys(k: &Store, head: usize, q: &[f32], g: usize, key_scale: Option<&[f32]>, segs: &[Segment], s: &mut Scratch) {
    let d = k.head_dim;
    let n = s.scores.len() / g;
    match k.ty {
        KvType::F32 => {
            let rows = k.f32_rows(head);
            for (q_h, out) in q.chunks_exact(d).zip(s.scores.chunks_exact_mut(n)) {
                let mut i = 0;
                for slot in segs.iter().flat_map(|seg| seg.slot..seg.slot + seg.len) {
                    out[i] = ops::dot_f32(&rows[slot * d..(slot + 1) * d], q_h);
                    i += 1;
                }
            }
        }
        KvType::F16 => {
            let rows = k.f16_rows(head);
            for (q_h, out) in q.chunks_exact(d).zip(s.scores.chunks_exact_mut(n)) {
                let mut i = 0;
                for slot in segs.iter().flat_map(|seg| seg.slot..seg.slot + seg.len) {
                    out[i] = ops::dot_f16_f32(&rows[slot * d..(slot + 1) * d], q_h);
                    i += 1;
                }
            }
        }
        KvType::Turbo(bits) => {
            rotate_queries(k, q, g, key_scale, &mut s.q_rot);
            let rows = k.byte_rows(head);
            for (ib, span) in k.spans.iter().enumerate() {
                if ib > 0 {
                    s.partial.clear();
                    s.partial.resize(g * n, 0.0);
                }
                let target: &mut [f32] = if ib == 0 { &mut s.scores } else { &mut s.partial };
                let q_span = &s.q_rot[g * span.start..g * (span.start + span.len)];
                let mut done = 0;
                for seg in segs {
                    let base = seg.slot * k.row_bytes + span.byte_offset;
                    let out = &mut target[done..];
                    turbo::score_many_heads(bits, span.len, q_span, &rows[base..], k.row_bytes, seg.len, out, n);
                    done += seg.len;
                }
                if ib > 0 {
                    ops::add_inplace(&mut s.scores, &s.partial);
                }
            }
        }
    }
}

/// Fills `q_rot` with the `g` queries of `q` (`[g][d]`), scaled by
/// `key_scale` and rotated block by block, laid out block-major.
fn rotate_queries(k: &Store, q: &[f32], g: usize, key_scale: Option<&[f32]>, q_rot: &mut Vec<f32>) {
    let d = k.head_dim;
    q_rot.clear();
    q_rot.resize(g * d, 0.0);
    for span in &k.spans {
        for h in 0..g {
            let dst = &mut q_rot[g * span.start + h * span.len..g * span.start + (h + 1) * span.len];
            let src = &q[h * d + span.start..h * d + span.start + span.len];
            dst.copy_from_slice(src);
            if let Some(scale) = key_scale {
                dst.iter_mut().zip(&scale[span.start..]).for_each(|(x, s)| *x *= s);
            }
            turbo::rotate(dst);
        }
    }
}

/// Adds `sum_i weights[h][i] * v_i` over positions `segs` to `acc` for each
/// query head `h`. `weights` is `[group][n]`. TurboQuant values stay in
/// rotated space, block-major like the rotated queries; other types are
/// head-major.
fn sum_values(v: &Store, head: usize, weights: &[f32], n: usize, segs: &[Segment], acc: &mut [f32]) {
    let d = v.head_dim;
    let g = weights.len() / n;
    match v.ty {
        KvType::F32 => {
            let rows = v.f32_rows(head);
            for (w_h, out) in weights.chunks_exact(n).zip(acc.chunks_exact_mut(d)) {
                let mut i = 0;
                for slot in segs.iter().flat_map(|seg| seg.slot..seg.slot + seg.len) {
                    ops::axpy_f32(out, w_h[i], &rows[slot * d..(slot + 1) * d]);
                    i += 1;
                }
            }
        }
        KvType::F16 => {
            let rows = v.f16_rows(head);
            for (w_h, out) in weights.chunks_exact(n).zip(acc.chunks_exact_mut(d)) {
                let mut i = 0;
                for slot in segs.iter().flat_map(|seg| seg.slot..seg.slot + seg.len) {
                    ops::axpy_f16(out, w_h[i], &rows[slot * d..(slot + 1) * d]);
                    i += 1;
                }
            }
        }
        KvType::Turbo(bits) => {
            let rows = v.byte_rows(head);
            for span in &v.spans {
                let acc_span = &mut acc[g * span.start..g * (span.start + span.len)];
                let mut done = 0;
                for seg in segs {
                    let base = seg.slot * v.row_bytes + span.byte_offset;
                    turbo::accumulate_many_heads(bits, span.len, acc_span, &weights[done..], n, seg.len, &rows[base..], v.row_bytes);
                    done += seg.len;
                }
            }
        }
    }
}

/// Combines the results of one (token, KV head) group's tasks
/// (`partials`, one [`Shape::partial_len`] run each) into the attention
/// output of its query heads, `out` (`[group][head_dim]`).
pub fn merge(v: &Store, shape: &Shape, partials: &[f32], out: &mut [f32]) {
    let d = shape.head_dim;
    let g = shape.group;
    let parts = || partials.chunks_exact(shape.partial_len());
    let rotated = matches!(v.ty, KvType::Turbo(_));
    let whole = [BlockSpan { start: 0, len: d, byte_offset: 0 }];
    let spans: &[BlockSpan] = if rotated { &v.spans } else { &whole };

    for (h, out_h) in out.chunks_exact_mut(d).enumerate() {
        let max = parts().fold(f32::NEG_INFINITY, |m, p| m.max(p[h]));
        let mut total = 0.0f64;
        out_h.iter_mut().for_each(|x| *x = 0.0);
        for p in parts() {
            let factor = (p[h] - max).exp();
            total += factor as f64 * p[g + h] as f64;
            let acc = &p[2 * g..];
            for span in spans {
                let src = &acc[g * span.start + h * span.len..g * span.start + (h + 1) * span.len];
                ops::axpy_f32(&mut out_h[span.start..span.start + span.len], factor, src);
            }
        }

        ops::scale(out_h, (1.0 / total) as f32);
        if rotated {
            for span in spans {
                turbo::rotate_inverse(&mut out_h[span.start..span.start + span.len]);
            }
        }
    }
}

/// Batches below this many tokens merge attention chunks on the calling
/// thread, because a dispatch costs more than a few merges.
const MIN_TOKENS_TO_SPLIT_MERGE: usize = 4;

/// Computes the attention output of batch rows `t0..t1` at positions
/// `n_past + t`: the tasks of [`plan`] run on `pool`, then each (token, KV
/// head) group merges its tasks' results. `q` is `[n][n_head * head_dim]`
/// and `out` is `[t1 - t0][n_head * head_dim]`.
#[allow(clippy::too_many_arguments)]
pub fn attend(
    pool: &WorkerPool,
    layer: &LayerCache,
    shape: &Shape,
    n_kv_heads: usize,
    n_past: usize,
    t0: usize,
    t1: usize,
    q: &[f32],
    out: &mut [f32],
) {
    let plan = plan(layer.window, n_kv_heads, n_past, t0, t1);
    let pl = shape.partial_len();
    let mut partials = vec![0.0f32; plan.tasks.len() * pl];
    pool.for_each_chunk_mut(&mut partials, pl, |i, partial| run_task(layer, shape, plan.tasks[i], q, partial));

    let merge_group = |i: usize, out_g: &mut [f32]| {
        merge(&layer.v, shape, &partials[plan.starts[i] * pl..plan.starts[i + 1] * pl], out_g);
    };
    let group_len = shape.group * shape.head_dim;
    if t1 - t0 < MIN_TOKENS_TO_SPLIT_MERGE {
        for (i, out_g) in out.chunks_exact_mut(group_len).enumerate() {
            merge_group(i, out_g);
        }
    } else {
        pool.for_each_chunk_mut(out, group_len, merge_group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_wrap_once() {
        let (s, n) = segments(5, 9, 8);
        assert_eq!(n, 2);
        assert_eq!(s[0], Segment { slot: 5, len: 3 });
        assert_eq!(s[1], Segment { slot: 0, len: 2 });
    }

    #[test]
    fn segments_without_wrap() {
        let (s, n) = segments(0, 3, 8);
        assert_eq!(n, 1);
        assert_eq!(s[0], Segment { slot: 0, len: 4 });
    }

    /// Deterministic test vector: element `i` of the key or value at `pos` of `head`.
    fn sample(pos: usize, head: usize, i: usize, salt: f32) -> f32 {
        ((pos * 7 + head * 13 + i * 3) as f32 * 0.37 + salt).sin()
    }

    /// Softmax-weighted sum of values over `positions`, computed directly.
    fn naive_attention(q: &[f32], head: usize, positions: std::ops::RangeInclusive<usize>, scale: f32) -> Vec<f32> {
        let d = q.len();
        let scores: Vec<f32> = positions
            .clone()
            .map(|p| (0..d).map(|i| q[i] * sample(p, head, i, 0.0)).sum::<f32>() * scale)
            .collect();
        let max = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let weights: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f32 = weights.iter().sum();
        let mut out = vec![0.0f32; d];
        for (w, p) in weights.iter().zip(positions) {
            for (i, o) in out.iter_mut().enumerate() {
                *o += w / total * sample(p, head, i, 0.5);
            }
        }
        out
    }

    /// Computes the attention output of one query at `pos` from `n_head` queries
    /// (`q`, `[n_head][d]`) over the layer's rows decoded with `read_key`
    /// and `read_value`, in f64.
    fn decoded_attention(layer: &LayerCache, shape: &Shape, q: &[f32], pos: usize) -> Vec<f32> {
        let d = shape.head_dim;
        let mut out = vec![0.0f32; q.len()];
        let mut k = vec![0.0f32; d];
        let mut v = vec![0.0f32; d];
        for (h, q_h) in q.chunks_exact(d).enumerate() {
            let kv_head = h / shape.group;
            let positions: Vec<usize> = (first_visible(pos, layer.window)..=pos).collect();
            let scores: Vec<f64> = positions
                .iter()
                .map(|&p| {
                    layer.read_key(kv_head, p, &mut k);
                    q_h.iter().zip(&k).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() * shape.scale as f64
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = scores.iter().map(|s| (s - max).exp()).sum();
            let mut acc = vec![0.0f64; d];
            for (s, &p) in scores.iter().zip(&positions) {
                layer.read_value(kv_head, p, &mut v);
                let w = (s - max).exp() / total;
                acc.iter_mut().zip(&v).for_each(|(a, x)| *a += w * *x as f64);
            }
            out[h * d..(h + 1) * d].iter_mut().zip(&acc).for_each(|(o, a)| *o = *a as f32);
        }
        out
    }

    /// A small deterministic generator of values in [-1, 1).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> f32 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }

        fn vec(&mut self, n: usize) -> Vec<f32> {
            (0..n).map(|_| self.next()).collect()
        }
    }

    /// Key centers and per-pair scales for a llama-style rope over `d`.
    /// Random centers and scales for rope over the first `n_rot`
    /// dimensions of each head of `d`.
    fn test_center(rng: &mut Lcg, n_kv_heads: usize, d: usize, n_rot: usize) -> crate::centering::LayerCenter {
        use crate::centering::{LayerCenter, RopePair};
        let pairs: Vec<RopePair> = (0..n_rot / 2)
            .map(|i| RopePair { a: 2 * i, b: 2 * i + 1, omega: 10000f64.powf(-2.0 * i as f64 / n_rot as f64) })
            .collect();
        let mut key_scale = Vec::new();
        for _ in 0..n_kv_heads * d / 2 {
            let s = 1.0 + 0.5 * rng.next();
            key_scale.extend_from_slice(&[s, s]);
        }
        LayerCenter { key: rng.vec(n_kv_heads * d), key_scale, pairs }
    }

    /// Fills positions `0..len` with random rows and compares the fused
    /// attention of the last `batch` positions with attention over the
    /// decoded cache.
    fn check_fused(k_type: KvType, v_type: KvType, d: usize, group: usize, window: Option<usize>, len: usize, batch: usize) {
        check_fused_rope(k_type, v_type, d, d, group, window, len, batch);
    }

    /// [`check_fused`] with rope over the first `n_rot` dimensions only.
    #[allow(clippy::too_many_arguments)]
    fn check_fused_rope(
        k_type: KvType,
        v_type: KvType,
        d: usize,
        n_rot: usize,
        group: usize,
        window: Option<usize>,
        len: usize,
        batch: usize,
    ) {
        use crate::kv_cache::KvCache;

        let n_kv_heads = 2;
        let shape = Shape { head_dim: d, n_head: n_kv_heads * group, group, scale: 0.7 / (d as f32).sqrt() };
        let mut rng = Lcg(d as u64 * 31 + group as u64 * 7 + len as u64);
        let mut cache = KvCache::new(len + 8, k_type, v_type, n_kv_heads, d, &[window]).unwrap();
        cache.set_centers(&[test_center(&mut rng, n_kv_heads, d, n_rot)]);
        let layer = &mut cache.layers[0];
        for pos in 0..len {
            let slot = layer.slot(pos);
            for head in 0..n_kv_heads {
                layer.k.write(head, slot, &rng.vec(d).iter().map(|x| 3.0 * x).collect::<Vec<_>>());
                layer.v.write(head, slot, &rng.vec(d));
            }
        }
        // An exact sink key unlike the compressed row, so that reading the
        // wrong one shows.
        layer.write_sink_key(&rng.vec(n_kv_heads * d).iter().map(|x| 5.0 * x).collect::<Vec<_>>());

        let n_past = len - batch;
        let q = rng.vec(batch * shape.n_head * d);
        let mut fused = vec![0.0f32; q.len()];
        let pool = WorkerPool::new(1).unwrap();
        attend(&pool, layer, &shape, n_kv_heads, n_past, 0, batch, &q, &mut fused);
        let row = shape.n_head * d;
        for t in 0..batch {
            let want = decoded_attention(layer, &shape, &q[t * row..(t + 1) * row], n_past + t);
            let got = &fused[t * row..(t + 1) * row];
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 2e-5 * (1.0 + b.abs()),
                    "{k_type:?}/{v_type:?} d {d} n_rot {n_rot} group {group} window {window:?} len {len} token {t} element {i}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn fused_attention_equals_decoded_attention() {
        use turbokv_kernels::turbo::TurboBits::{B3, B4, B5};
        let types = [
            (KvType::Turbo(B4), KvType::Turbo(B4)),
            (KvType::Turbo(B3), KvType::Turbo(B5)),
            (KvType::Turbo(B4), KvType::F16),
            (KvType::F32, KvType::Turbo(B4)),
        ];
        for (k_type, v_type) in types {
            for d in [64, 80, 96, 256] {
                for group in [1, 3, 4] {
                    for len in [1, 3, 257, 530] {
                        check_fused(k_type, v_type, d, group, None, len, 1);
                    }
                    check_fused(k_type, v_type, d, group, None, 300, 5);
                    check_fused(k_type, v_type, d, group, Some(100), 263, 1);
                    check_fused(k_type, v_type, d, group, Some(300), 613, 1);
                }
            }
        }
    }

    /// Rope over part of each head (`rope.dimension_count` below the head
    /// size): the exact sink key and the compressed keys must be scored on
    /// the same terms.
    #[test]
    fn fused_attention_with_partial_rope() {
        use turbokv_kernels::turbo::TurboBits::B4;
        for (d, n_rot) in [(64, 0), (64, 32), (128, 64), (256, 96)] {
            for len in [1, 3, 257] {
                check_fused_rope(KvType::Turbo(B4), KvType::Turbo(B4), d, n_rot, 2, None, len, 1);
                check_fused_rope(KvType::Turbo(B4), KvType::F16, d, n_rot, 1, None, len, 2.min(len));
            }
        }
    }

    #[test]
    fn plan_splits_at_fixed_chunk_boundaries() {
        let p = plan(None, 2, CHUNK - 2, 0, 3);
        assert_eq!(p.starts, vec![0, 1, 2, 3, 4, 6, 8]);
        assert_eq!(p.tasks[2], Task { t: 1, kv_head: 0, lo: 0, hi: CHUNK - 1 });
        assert_eq!(p.tasks[4], Task { t: 2, kv_head: 0, lo: 0, hi: CHUNK - 1 });
        assert_eq!(p.tasks[5], Task { t: 2, kv_head: 0, lo: CHUNK, hi: CHUNK });
    }

    #[test]
    fn plan_starts_at_the_window() {
        let p = plan(Some(300), 1, 700, 0, 1);
        let spans: Vec<(usize, usize)> = p.tasks.iter().map(|t| (t.lo, t.hi)).collect();
        assert_eq!(spans, vec![(401, 2 * CHUNK - 1), (2 * CHUNK, 700)]);
    }

    #[test]
    fn wrapped_window_attends_last_positions() {
        use crate::kv_cache::KvCache;

        let (head_dim, n_kv_heads, window) = (8, 2, 3);
        let shape = Shape { head_dim, n_head: n_kv_heads, group: 1, scale: 0.5 };
        let mut cache = KvCache::new(16, KvType::F32, KvType::F32, n_kv_heads, head_dim, &[Some(window)]).unwrap();
        let layer = &mut cache.layers[0];
        let q_head: Vec<f32> = (0..head_dim).map(|i| 0.3 * i as f32 - 1.0).collect();
        let q: Vec<f32> = q_head.iter().chain(&q_head).cloned().collect();
        let mut out = vec![0.0f32; n_kv_heads * head_dim];
        let pool = WorkerPool::new(1).unwrap();

        for pos in 0..10 {
            let slot = layer.slot(pos);
            for head in 0..n_kv_heads {
                let k: Vec<f32> = (0..head_dim).map(|i| sample(pos, head, i, 0.0)).collect();
                let v: Vec<f32> = (0..head_dim).map(|i| sample(pos, head, i, 0.5)).collect();
                layer.k.write(head, slot, &k);
                layer.v.write(head, slot, &v);
            }
            attend(&pool, layer, &shape, n_kv_heads, pos, 0, 1, &q, &mut out);
            for head in 0..n_kv_heads {
                let expected = naive_attention(&q_head, head, first_visible(pos, Some(window))..=pos, 0.5);
                let got = &out[head * head_dim..(head + 1) * head_dim];
                for (a, b) in got.iter().zip(&expected) {
                    assert!((a - b).abs() < 1e-5, "pos {pos} head {head}: {got:?} vs {expected:?}");
                }
            }
        }
    }

    #[test]
    fn first_visible_respects_window() {
        assert_eq!(first_visible(10, Some(4)), 7);
        assert_eq!(first_visible(2, Some(4)), 0);
        assert_eq!(first_visible(10, None), 0);
    }
}
