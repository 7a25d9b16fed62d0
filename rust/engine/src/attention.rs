//! Attention of one query head over the cached positions it may see, read
//! directly from the cache in its stored format.
//!
//! TurboQuant keys are scored in rotated space: the query is rotated once
//! per head, and each score is a codebook-lookup dot product with the stored
//! indices. TurboQuant values are summed in rotated space and rotated back
//! once per head. No cached position is ever decoded to a full vector.

use turbokv_kernels::{ops, turbo};

use crate::centering::add_key_center_scores;
use crate::kv_cache::{KvType, LayerCache, Store};

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

/// Computes one head's attention output.
///
/// NOTE: each query head scans its KV head's blocks on its own, so query
/// heads that share a KV head (GQA) read and unpack the same blocks once per
/// query head; a kernel that scores a whole group per block would read them
/// once.
///
/// `q` is the query head vector (`head_dim`), `kv_head` the KV head it
/// reads, `pos` the query's position (already written to the cache).
/// `scores` is scratch space; `out` receives `head_dim` values.
pub fn attend_head(
    layer: &LayerCache,
    kv_head: usize,
    q: &[f32],
    pos: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let lo = first_visible(pos, layer.window);
    let (segs, n_segs) = segments(lo, pos, layer.capacity());
    let segs = &segs[..n_segs];
    let n = pos + 1 - lo;

    scores.clear();
    scores.resize(n, 0.0);
    let d = layer.k.head_dim;
    let key_scale = layer.key_scale.as_ref().map(|s| &s[kv_head * d..(kv_head + 1) * d]);
    score_keys(&layer.k, kv_head, q, key_scale, segs, scores);
    if let Some(center) = &layer.key_center {
        add_key_center_scores(&layer.rope_pairs, q, &center[kv_head * d..(kv_head + 1) * d], lo, scores);
    }
    ops::scale(scores, scale);
    ops::softmax(scores);

    out.iter_mut().for_each(|x| *x = 0.0);
    sum_values(&layer.v, kv_head, scores, segs, out);
}

/// `key_scale`, when set, multiplies the query before TurboQuant scoring,
/// undoing the division applied to the stored keys.
fn score_keys(k: &Store, head: usize, q: &[f32], key_scale: Option<&[f32]>, segs: &[Segment], scores: &mut [f32]) {
    let d = k.head_dim;
    let mut done = 0;
    match k.ty {
        KvType::F32 => {
            let rows = k.f32_rows(head);
            for seg in segs {
                for i in 0..seg.len {
                    let s = seg.slot + i;
                    scores[done + i] = ops::dot_f32(&rows[s * d..(s + 1) * d], q);
                }
                done += seg.len;
            }
        }
        KvType::F16 => {
            let rows = k.f16_rows(head);
            for seg in segs {
                for i in 0..seg.len {
                    let s = seg.slot + i;
                    scores[done + i] = ops::dot_f16_f32(&rows[s * d..(s + 1) * d], q);
                }
                done += seg.len;
            }
        }
        KvType::Turbo(bits) => {
            let rows = k.byte_rows(head);
            let mut q_rot = q.to_vec();
            if let Some(scale) = key_scale {
                q_rot.iter_mut().zip(scale).for_each(|(x, s)| *x *= s);
            }
            for span in &k.spans {
                turbo::rotate(&mut q_rot[span.start..span.start + span.len]);
            }
            let mut partial = vec![0.0f32; scores.len()];
            for seg in segs {
                let out = &mut scores[done..done + seg.len];
                for (ib, span) in k.spans.iter().enumerate() {
                    let base = seg.slot * k.row_bytes + span.byte_offset;
                    let target: &mut [f32] = if ib == 0 { &mut *out } else { &mut partial[..seg.len] };
                    turbo::score_many(
                        bits,
                        &q_rot[span.start..span.start + span.len],
                        &rows[base..],
                        k.row_bytes,
                        seg.len,
                        target,
                    );
                    if ib > 0 {
                        ops::add_inplace(out, &partial[..seg.len]);
                    }
                }
                done += seg.len;
            }
        }
    }
}

fn sum_values(v: &Store, head: usize, weights: &[f32], segs: &[Segment], out: &mut [f32]) {
    let d = v.head_dim;
    let mut done = 0;
    match v.ty {
        KvType::F32 => {
            let rows = v.f32_rows(head);
            for seg in segs {
                for i in 0..seg.len {
                    let s = seg.slot + i;
                    ops::axpy_f32(out, weights[done + i], &rows[s * d..(s + 1) * d]);
                }
                done += seg.len;
            }
        }
        KvType::F16 => {
            let rows = v.f16_rows(head);
            for seg in segs {
                for i in 0..seg.len {
                    let s = seg.slot + i;
                    ops::axpy_f16(out, weights[done + i], &rows[s * d..(s + 1) * d]);
                }
                done += seg.len;
            }
        }
        KvType::Turbo(bits) => {
            let rows = v.byte_rows(head);
            for seg in segs {
                for span in &v.spans {
                    let base = seg.slot * v.row_bytes + span.byte_offset;
                    turbo::accumulate_many(
                        bits,
                        &mut out[span.start..span.start + span.len],
                        &weights[done..done + seg.len],
                        &rows[base..],
                        v.row_bytes,
                    );
                }
                done += seg.len;
            }
            for span in &v.spans {
                turbo::rotate_inverse(&mut out[span.start..span.start + span.len]);
            }
        }
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

    #[test]
    fn wrapped_window_attends_last_positions() {
        use crate::kv_cache::KvCache;

        let (head_dim, n_kv_heads, window) = (8, 2, 3);
        let mut cache = KvCache::new(16, KvType::F32, KvType::F32, n_kv_heads, head_dim, &[Some(window)]).unwrap();
        let layer = &mut cache.layers[0];
        let q: Vec<f32> = (0..head_dim).map(|i| 0.3 * i as f32 - 1.0).collect();
        let mut scores = Vec::new();
        let mut out = vec![0.0f32; head_dim];

        for pos in 0..10 {
            let slot = layer.slot(pos);
            for head in 0..n_kv_heads {
                let k: Vec<f32> = (0..head_dim).map(|i| sample(pos, head, i, 0.0)).collect();
                let v: Vec<f32> = (0..head_dim).map(|i| sample(pos, head, i, 0.5)).collect();
                layer.k.write(head, slot, &k);
                layer.v.write(head, slot, &v);
            }
            for head in 0..n_kv_heads {
                attend_head(layer, head, &q, pos, 0.5, &mut scores, &mut out);
                let expected = naive_attention(&q, head, first_visible(pos, Some(window))..=pos, 0.5);
                for (a, b) in out.iter().zip(&expected) {
                    assert!((a - b).abs() < 1e-5, "pos {pos} head {head}: {out:?} vs {expected:?}");
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
