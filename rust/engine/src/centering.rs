//! Per-head reference vectors that TurboQuant caches subtract before
//! quantizing.
//!
//! Keys of a head share a large common component (measured on SmolLM2: the
//! mean key carries 55-75% of the keys' energy, almost all of it in slowly
//! rotating rope pairs). Quantization error grows with the norm of what is
//! quantized, so turbokv stores `k - R(p0) c` instead of `k`, with `c` the
//! head's mean key before rope and `R(p0)` the rope rotation at the first
//! position of the key's 16-position chunk, and adds `q · R(p0) c` back to
//! every score of that chunk. Each rope pair of `c` is first scaled by
//! [`chunk_shrink`], since `R(p0)` only approximates the rotation of the
//! later positions of a chunk, and not at all for pairs that turn fast.
//!
//! Centered keys are also divided, per rope pair, by `s` with
//! `s^2 = sqrt(E|k - R(p0) c|^2 / E|q|^2)` over the pair's two dimensions, and
//! queries are multiplied by `s`, which leaves every score unchanged. This
//! balances where queries and keys carry their energy: the error of a
//! quantized score falls from `(sum a)(sum b)` to `(sum sqrt(a b))^2`, with
//! `a` and `b` the query and key energies per pair. On Gemma 3 270M's
//! calibration text that is 1.2x to 25x less error depending on the layer.
//!
//! The means and scales come from a short fixed calibration text run through the model
//! with an fp32 cache, once per loaded model, so they are the same for every
//! session and every batching of the same tokens.

use turbokv_kernels::ops;

use crate::config::{Arch, Config, LayerAttention};

/// A rope pair: dimensions `a` and `b` rotate by `omega * pos` radians.
#[derive(Clone, Copy, Debug)]
pub struct RopePair {
    pub a: usize,
    pub b: usize,
    pub omega: f64,
}

/// The rope pairs of `layer`, matching
/// `forward::rope_angles`.
pub fn rope_pairs(c: &Config, layer: &LayerAttention, freq_factors: Option<&[f32]>) -> Vec<RopePair> {
    let freq_scale = layer.rope_freq_scale as f64;
    let half = c.n_rot / 2;
    let theta_scale = (layer.rope_theta as f64).powf(-2.0 / c.n_rot as f64);
    (0..half)
        .map(|i| {
            let ff = freq_factors.map_or(1.0, |f| f[i] as f64);
            let (a, b) = if c.arch == Arch::Gemma3 { (i, i + half) } else { (2 * i, 2 * i + 1) };
            RopePair { a, b, omega: freq_scale * theta_scale.powi(i as i32) / ff }
        })
        .collect()
}

/// The position of a layer's rope pairs in a head vector, for the two usual
/// layouts. With a known layout, the score correction reads `q` and `c`
/// without gathering them pair by pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairLayout {
    /// Pair `i` is dimensions `2i` and `2i + 1` (llama's rope).
    Interleaved,
    /// Pair `i` is dimensions `i` and `i + m` for `m` pairs (NeoX rope, as in Gemma 3).
    Halves,
}

impl PairLayout {
    /// Returns the layout `pairs` follow, or `None` for any other order.
    pub fn of(pairs: &[RopePair]) -> Option<PairLayout> {
        let m = pairs.len();
        if pairs.iter().enumerate().all(|(i, p)| p.a == 2 * i && p.b == 2 * i + 1) {
            Some(PairLayout::Interleaved)
        } else if pairs.iter().enumerate().all(|(i, p)| p.a == i && p.b == i + m) {
            Some(PairLayout::Halves)
        } else {
            None
        }
    }
}

/// The key centers of one layer.
#[derive(Clone, Debug)]
pub struct LayerCenter {
    /// Mean key before rope with each rope pair scaled by
    /// [`chunk_shrink`], `[n_kv_heads][head_dim]`.
    pub key: Vec<f32>,
    /// Per-dimension divisor of the centered key, `[n_kv_heads][head_dim]`,
    /// equal within each rope pair so that it commutes with rope. Queries
    /// are multiplied by it, so scores are unchanged.
    pub key_scale: Vec<f32>,
    /// The layer's rope pairs.
    pub pairs: Vec<RopePair>,
}

/// Positions per center chunk: keys in one chunk subtract the center
/// rotated to the chunk's first position, so the correction a score needs is
/// constant within the chunk and computed once for it.
pub const CENTER_CHUNK: usize = 16;

/// The first position of `pos`'s center chunk.
pub fn chunk_start(pos: usize) -> usize {
    pos / CENTER_CHUNK * CENTER_CHUNK
}

/// Returns the factor by which a rope pair's center is scaled before keys
/// subtract it, for a pair that turns by `omega` radians per position.
///
/// A key `j` positions into its chunk carries the pair's center as
/// `R(p0 + j) c`, but the cache subtracts `R(p0) a c`. Over the chunk that
/// leaves `|c|^2 (1 - 2 a m + a^2)` on average, with `m` the mean of
/// `cos(j omega)`, which `a = m` minimizes to `|c|^2 (1 - m^2)`. A slow
/// pair keeps its whole center (`m` near 1). A pair that turns a radian per
/// position keeps almost none of it: subtracting its whole center would add
/// up to twice the center's energy instead of removing it.
pub fn chunk_shrink(omega: f64) -> f64 {
    (0..CENTER_CHUNK).map(|j| (j as f64 * omega).cos()).sum::<f64>() / CENTER_CHUNK as f64
}

/// Cosines and sines of every rope pair's angle at the start of each
/// center chunk, computed once per cache in f64: row `k` contains
/// `cos(16 k w_i)` for every pair `i`, then `sin(16 k w_i)`.
#[derive(Debug)]
pub struct ChunkAngles {
    n_pairs: usize,
    layout: Option<PairLayout>,
    omegas: Vec<f64>, // the pairs' rotation rates
    table: Vec<f32>,  // [n_chunks][2 * n_pairs]
}

impl ChunkAngles {
    /// Computes the angles of `pairs` for positions `0..n_positions`.
    pub fn new(pairs: &[RopePair], n_positions: usize) -> ChunkAngles {
        let n_pairs = pairs.len();
        let n_chunks = n_positions / CENTER_CHUNK + 1;
        let mut table = vec![0.0f32; n_chunks * 2 * n_pairs];
        for (k, row) in table.chunks_exact_mut(2 * n_pairs.max(1)).enumerate().take(n_chunks) {
            let p0 = (k * CENTER_CHUNK) as f64;
            for (i, p) in pairs.iter().enumerate() {
                let (sin, cos) = (p0 * p.omega).sin_cos();
                row[i] = cos as f32;
                row[n_pairs + i] = sin as f32;
            }
        }
        ChunkAngles { n_pairs, layout: PairLayout::of(pairs), omegas: pairs.iter().map(|p| p.omega).collect(), table }
    }

    /// Reports whether these angles were built for the rotation rates and
    /// the layout of `pairs`.
    pub fn fits(&self, pairs: &[RopePair]) -> bool {
        pairs.len() == self.omegas.len()
            && pairs.iter().zip(&self.omegas).all(|(p, w)| p.omega == *w)
            && PairLayout::of(pairs) == self.layout
    }

    fn row(&self, chunk: usize) -> &[f32] {
        &self.table[chunk * 2 * self.n_pairs..(chunk + 1) * 2 * self.n_pairs]
    }
}

/// Adds `q · R(p0) c` to `scores[j]` for positions `lo + j`, where `p0` is
/// the position's chunk start, `R(p0)` the rope rotation there and `c` the
/// head's key center.
///
/// Per pair this is `A cos(p0 w) + B sin(p0 w)` with `A = q_a c_a + q_b
/// c_b` and `B = q_b c_a - q_a c_b`, so each chunk costs one dot product of
/// the coefficients with its row of `angles`. Dimensions rope leaves alone
/// add the same `q · c` to every score. Softmax alone would ignore it, but
/// the exact sink key's score contains it, so it is added here too. `coef`
/// is scratch space.
pub fn add_key_center_scores(
    pairs: &[RopePair],
    angles: &ChunkAngles,
    q: &[f32],
    c: &[f32],
    lo: usize,
    scores: &mut [f32],
    coef: &mut Vec<f32>,
) {
    let m = pairs.len();
    let n = scores.len();
    let free = free_dimensions_dot(pairs, angles.layout, q, c);
    if m == 0 {
        if let Some(free) = free {
            scores.iter_mut().for_each(|s| *s += free);
        }
        return;
    }
    if n == 0 {
        return;
    }
    coef.clear();
    coef.resize(2 * m, 0.0);
    let (cos_coef, sin_coef) = coef.split_at_mut(m);
    let mut set = |i: usize, (qa, qb): (f32, f32), (ca, cb): (f32, f32)| {
        cos_coef[i] = qa * ca + qb * cb;
        sin_coef[i] = qb * ca - qa * cb;
    };
    match angles.layout {
        Some(PairLayout::Interleaved) => {
            for (i, (qp, cp)) in q[..2 * m].chunks_exact(2).zip(c[..2 * m].chunks_exact(2)).enumerate() {
                set(i, (qp[0], qp[1]), (cp[0], cp[1]));
            }
        }
        Some(PairLayout::Halves) => {
            let (qa, qb, ca, cb) = (&q[..m], &q[m..2 * m], &c[..m], &c[m..2 * m]);
            for i in 0..m {
                set(i, (qa[i], qb[i]), (ca[i], cb[i]));
            }
        }
        None => {
            for (i, p) in pairs.iter().enumerate() {
                set(i, (q[p.a], q[p.b]), (c[p.a], c[p.b]));
            }
        }
    }

    let last = lo + n - 1;
    for chunk in lo / CENTER_CHUNK..=last / CENTER_CHUNK {
        let mut value = ops::dot_f32(coef, angles.row(chunk));
        if let Some(free) = free {
            value += free;
        }
        let p0 = chunk * CENTER_CHUNK;
        let from = p0.max(lo) - lo;
        let to = (p0 + CENTER_CHUNK).min(last + 1) - lo;
        scores[from..to].iter_mut().for_each(|s| *s += value);
    }
}

/// Returns `q · c` over the dimensions that no pair covers, or `None` when
/// the pairs cover all of `c`. Both known layouts cover the first
/// `2 * pairs.len()` dimensions.
fn free_dimensions_dot(pairs: &[RopePair], layout: Option<PairLayout>, q: &[f32], c: &[f32]) -> Option<f32> {
    let d = c.len();
    let covered = 2 * pairs.len();
    if covered >= d {
        return None;
    }
    if layout.is_some() {
        return Some(ops::dot_f32(&q[covered..d], &c[covered..]));
    }

    let mut paired = vec![false; d];
    for p in pairs {
        paired[p.a] = true;
        paired[p.b] = true;
    }
    Some((0..d).filter(|&i| !paired[i]).map(|i| q[i] * c[i]).sum())
}

/// Per-dimension key divisors for one KV head from the energies of its
/// centered keys and of the queries that read it.
///
/// `key_energy[i]` and `query_energy[i]` are mean squares of dimension `i`.
/// Dimensions of one rope pair share a divisor; dimensions rope leaves alone
/// get their own. The divisors are clamped to a factor of 100 around their
/// geometric mean, so a dimension that calibration barely exercised cannot
/// be amplified without bound.
pub fn key_scales(pairs: &[RopePair], key_energy: &[f64], query_energy: &[f64]) -> Vec<f32> {
    let d = key_energy.len();
    let mean_k = key_energy.iter().sum::<f64>() / d as f64;
    let mean_q = query_energy.iter().sum::<f64>() / d as f64;
    let t = |k: f64, q: f64| ((k + 1e-6 * mean_k + 1e-30) / (q + 1e-6 * mean_q + 1e-30)).sqrt();

    let mut t_sq = vec![0.0f64; d];
    let mut paired = vec![false; d];
    for p in pairs {
        let value = t(key_energy[p.a] + key_energy[p.b], query_energy[p.a] + query_energy[p.b]);
        t_sq[p.a] = value;
        t_sq[p.b] = value;
        paired[p.a] = true;
        paired[p.b] = true;
    }
    for i in 0..d {
        if !paired[i] {
            t_sq[i] = t(key_energy[i], query_energy[i]);
        }
    }

    let log_mean = t_sq.iter().map(|x| x.ln()).sum::<f64>() / d as f64;
    let (lo, hi) = (log_mean - 100f64.ln(), log_mean + 100f64.ln());
    t_sq.iter().map(|x| (x.ln().clamp(lo, hi) - log_mean).exp().sqrt() as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `q · R(p0) c` in f64, rotating each pair of `c` by its angle at `p0`.
    fn direct_correction(pairs: &[RopePair], q: &[f32], c: &[f32], p0: usize) -> f64 {
        let mut sum = 0.0;
        for p in pairs {
            let (sin, cos) = (p0 as f64 * p.omega).sin_cos();
            let (ca, cb) = (c[p.a] as f64, c[p.b] as f64);
            sum += q[p.a] as f64 * (ca * cos - cb * sin) + q[p.b] as f64 * (ca * sin + cb * cos);
        }
        sum
    }

    /// Mean of `|R(j omega) c - a c|^2 / |c|^2` over the offsets of a chunk.
    fn chunk_residual(omega: f64, a: f64) -> f64 {
        let n = CENTER_CHUNK as f64;
        (0..CENTER_CHUNK).map(|j| 1.0 - 2.0 * a * (j as f64 * omega).cos() + a * a).sum::<f64>() / n
    }

    #[test]
    fn shrink_minimizes_the_chunk_residual() {
        assert_eq!(chunk_shrink(0.0), 1.0);
        for &omega in &[1e-4, 0.01, 0.05, 0.1, 0.3, 1.0, 2.5] {
            let m = chunk_shrink(omega);
            let best = chunk_residual(omega, m);

            assert!((best - (1.0 - m * m)).abs() < 1e-12, "omega {omega}");
            for a in [0.0, 1.0, m - 0.05, m + 0.05] {
                assert!(best <= chunk_residual(omega, a) + 1e-12, "omega {omega}: a {a} beats {m}");
            }
        }
        // A pair turning a radian per position keeps little of its center.
        assert!(chunk_shrink(1.0).abs() < 0.1);
        assert!(chunk_shrink(1e-4) > 0.999);
    }

    #[test]
    fn center_scores_match_rotated_center() {
        let d = 64;
        let m = d / 2;
        let omega = |i: usize| 10000f64.powf(-2.0 * i as f64 / d as f64);
        let interleaved: Vec<RopePair> = (0..m).map(|i| RopePair { a: 2 * i, b: 2 * i + 1, omega: omega(i) }).collect();
        let halves: Vec<RopePair> = (0..m).map(|i| RopePair { a: i, b: i + m, omega: omega(i) }).collect();
        let mut other = halves.clone();
        other.swap(0, 1);
        let cases = [(interleaved, Some(PairLayout::Interleaved)), (halves, Some(PairLayout::Halves)), (other, None)];

        let q: Vec<f32> = (0..d).map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0).collect();
        let c: Vec<f32> = (0..d).map(|i| ((i * 53 % 29) as f32 - 14.0) / 5.0).collect();
        let (lo, n) = (5, 40);
        for (pairs, layout) in &cases {
            assert_eq!(PairLayout::of(pairs), *layout);
            let angles = ChunkAngles::new(pairs, lo + n);
            let mut scores = vec![0.0f32; n];
            add_key_center_scores(pairs, &angles, &q, &c, lo, &mut scores, &mut Vec::new());

            for (j, &score) in scores.iter().enumerate() {
                let want = direct_correction(pairs, &q, &c, chunk_start(lo + j));
                assert!((score as f64 - want).abs() < 1e-4 * want.abs().max(1.0), "{layout:?} position {}: {score} vs {want}", lo + j);
            }
        }
    }
}
