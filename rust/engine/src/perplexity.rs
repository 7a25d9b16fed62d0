//! Perplexity the way llama.cpp's llama-perplexity computes it.
//!
//! The text is cut into non-overlapping chunks of `n_ctx` tokens. Each
//! chunk is evaluated from an empty cache, its first token replaced by BOS
//! when the vocabulary adds one, and only the second half is scored: the
//! logits at position `j` score token `j + 1` for `j` in
//! `n_ctx / 2 .. n_ctx - 1`.
//!
//! [`kl_divergence`] scores the same chunks with two KV cache types side by
//! side, like llama-perplexity's `--kl-divergence`, but without a saved
//! baseline file: both sessions evaluate each batch of scored positions and
//! only that batch's logits rows are held at once.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::kv_cache::KvType;
use crate::model::{LogitsWanted, Model, Session};

#[derive(Clone, Debug)]
pub struct PerplexityResult {
    pub ppl: f64,
    /// Mean negative log-likelihood per scored token (nats).
    pub nll: f64,
    pub n_scored: usize,
    pub n_chunks: usize,
    pub chunk_ppl: Vec<f64>,
}

/// Scored positions are evaluated in batches of this many tokens, which
/// bounds the logits held at once to this many rows.
const SCORED_BATCH: usize = 64;

/// `-log softmax(logits)[target]`, accumulated in f64.
pub fn nll_of(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    -(logits[target as usize] as f64 - max - sum.ln())
}

fn check_text(tokens: &[u32], n_ctx: usize) -> Result<()> {
    if n_ctx < 4 {
        return Err(Error::InvalidArgument(format!("n_ctx must be at least 4 for perplexity, got {n_ctx}")));
    }
    if tokens.len() < 2 * n_ctx {
        return Err(Error::InvalidArgument(format!(
            "perplexity with a context of {n_ctx} needs at least {} tokens, the text has {}",
            2 * n_ctx,
            tokens.len()
        )));
    }
    Ok(())
}

/// Token ids of chunk `chunk`, the first replaced by BOS when the
/// vocabulary adds one.
fn chunk_ids(model: &Model, tokens: &[u32], chunk: usize, n_ctx: usize) -> Vec<u32> {
    let mut ids = tokens[chunk * n_ctx..(chunk + 1) * n_ctx].to_vec();
    if model.tokenizer.add_bos() {
        if let Some(bos) = model.tokenizer.bos_id() {
            ids[0] = bos;
        }
    }
    ids
}

/// Clears `session` and evaluates the first half of the chunk, whose
/// predictions are not scored.
fn prefill_unscored(session: &mut Session, ids: &[u32]) -> Result<()> {
    session.reset();
    session.eval(&ids[..ids.len() / 2], LogitsWanted::Last)?;
    Ok(())
}

/// `(pos, end)` ranges of the scored positions of a chunk of `n_ctx`
/// tokens, at most [`SCORED_BATCH`] long. The logits of position `j` score
/// token `j + 1`, so the last position scores nothing.
fn scored_batches(n_ctx: usize) -> impl Iterator<Item = (usize, usize)> {
    (n_ctx / 2..n_ctx - 1)
        .step_by(SCORED_BATCH)
        .map(move |pos| (pos, (pos + SCORED_BATCH).min(n_ctx - 1)))
}

/// Computes perplexity of `tokens`. `progress(done, total)` runs after each
/// chunk; returning an error from it stops the computation.
pub fn perplexity(
    model: &Arc<Model>,
    tokens: &[u32],
    n_ctx: usize,
    k_type: KvType,
    v_type: KvType,
    progress: &mut dyn FnMut(usize, usize) -> Result<()>,
) -> Result<PerplexityResult> {
    check_text(tokens, n_ctx)?;
    let n_chunks = tokens.len() / n_ctx;
    let n_per_chunk = n_ctx - 1 - n_ctx / 2;

    let mut session = Session::new(Arc::clone(model), n_ctx, k_type, v_type)?;
    let mut total_nll = 0.0;
    let mut n_scored = 0;
    let mut chunk_ppl = Vec::with_capacity(n_chunks);

    for chunk in 0..n_chunks {
        let ids = chunk_ids(model, tokens, chunk, n_ctx);
        prefill_unscored(&mut session, &ids)?;

        let mut chunk_nll = 0.0;
        for (pos, end) in scored_batches(n_ctx) {
            let logits = session.eval(&ids[pos..end], LogitsWanted::From(0))?;
            let n_vocab = model.config.n_vocab;
            for (i, row) in logits.chunks_exact(n_vocab).enumerate() {
                chunk_nll += nll_of(row, ids[pos + i + 1]);
            }
        }
        total_nll += chunk_nll;
        n_scored += n_per_chunk;
        chunk_ppl.push((chunk_nll / n_per_chunk as f64).exp());
        log::debug!("perplexity chunk {}/{}: {:.4}", chunk + 1, n_chunks, chunk_ppl[chunk]);
        progress(chunk + 1, n_chunks)?;
    }

    let nll = total_nll / n_scored as f64;
    Ok(PerplexityResult { ppl: nll.exp(), nll, n_scored, n_chunks, chunk_ppl })
}

/// Perplexity of two KV cache types on the same chunks and the divergence of
/// the candidate's next-token distributions from the base's.
#[derive(Clone, Debug)]
pub struct KlDivergenceResult {
    pub base: PerplexityResult,
    pub candidate: PerplexityResult,
    /// Mean over scored positions of KL(base || candidate), in nats.
    pub kl_mean: f64,
    /// Standard error of `kl_mean` (sample standard deviation / sqrt(n)).
    pub kl_stderr: f64,
    pub kl_max: f64,
    /// Fraction in [0, 1] of scored positions where both runs rank the
    /// same token first.
    pub top1_agreement: f64,
}

/// Divergence of one candidate logits row from one base row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowDivergence {
    /// KL(base || candidate) in nats.
    pub kl: f64,
    pub same_top1: bool,
}

/// Returns the index of the largest value (the first one on ties) and
/// `ln(sum(exp(x)))`, computed in f64 around the maximum.
fn argmax_and_log_sum_exp(logits: &[f32]) -> (usize, f64) {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    let max = logits[best] as f64;
    let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    (best, max + sum.ln())
}

/// Computes KL(softmax(base) || softmax(candidate)) and whether both rows
/// have the same argmax. Both rows are raw logits of equal length.
pub fn row_divergence(base: &[f32], candidate: &[f32]) -> RowDivergence {
    let (top_base, lse_base) = argmax_and_log_sum_exp(base);
    let (top_candidate, lse_candidate) = argmax_and_log_sum_exp(candidate);

    let mut kl = 0.0;
    for (&b, &c) in base.iter().zip(candidate) {
        let log_p = b as f64 - lse_base;
        let log_q = c as f64 - lse_candidate;
        kl += log_p.exp() * (log_p - log_q);
    }
    // Rounding can leave a tiny negative sum when the rows are equal.
    RowDivergence { kl: kl.max(0.0), same_top1: top_base == top_candidate }
}

/// Scores `tokens` with a base and a candidate KV cache type side by side:
/// both perplexities, the mean KL divergence of the candidate's next-token
/// distributions from the base's, and their top-1 agreement.
/// `progress(done, total)` runs after each chunk; returning an error from
/// it stops the computation.
pub fn kl_divergence(
    model: &Arc<Model>,
    tokens: &[u32],
    n_ctx: usize,
    base_types: (KvType, KvType),
    candidate_types: (KvType, KvType),
    progress: &mut dyn FnMut(usize, usize) -> Result<()>,
) -> Result<KlDivergenceResult> {
    check_text(tokens, n_ctx)?;
    let n_chunks = tokens.len() / n_ctx;
    let n_per_chunk = n_ctx - 1 - n_ctx / 2;
    let n_vocab = model.config.n_vocab;

    let mut base_session = Session::new(Arc::clone(model), n_ctx, base_types.0, base_types.1)?;
    let mut candidate_session = Session::new(Arc::clone(model), n_ctx, candidate_types.0, candidate_types.1)?;
    let mut base = ChunkScores::with_capacity(n_chunks);
    let mut candidate = ChunkScores::with_capacity(n_chunks);
    let mut divergences: Vec<RowDivergence> = Vec::with_capacity(n_chunks * n_per_chunk);

    for chunk in 0..n_chunks {
        let ids = chunk_ids(model, tokens, chunk, n_ctx);
        prefill_unscored(&mut base_session, &ids)?;
        prefill_unscored(&mut candidate_session, &ids)?;

        let (mut base_nll, mut candidate_nll) = (0.0, 0.0);
        for (pos, end) in scored_batches(n_ctx) {
            let base_logits = base_session.eval(&ids[pos..end], LogitsWanted::From(0))?;
            let candidate_logits = candidate_session.eval(&ids[pos..end], LogitsWanted::From(0))?;
            let targets = &ids[pos + 1..end + 1];

            let unset = RowDivergence { kl: 0.0, same_top1: false };
            let mut rows = vec![(0.0, 0.0, unset); targets.len()];
            model.pool.for_each_chunk_mut(&mut rows, 1, |i, row| {
                let b = &base_logits[i * n_vocab..(i + 1) * n_vocab];
                let c = &candidate_logits[i * n_vocab..(i + 1) * n_vocab];
                row[0] = (nll_of(b, targets[i]), nll_of(c, targets[i]), row_divergence(b, c));
            });
            for (b, c, divergence) in rows {
                base_nll += b;
                candidate_nll += c;
                divergences.push(divergence);
            }
        }
        base.push_chunk(base_nll, n_per_chunk);
        candidate.push_chunk(candidate_nll, n_per_chunk);
        log::debug!(
            "KL divergence chunk {}/{}: ppl {:.4} (base {:.4})",
            chunk + 1,
            n_chunks,
            candidate.chunk_ppl[chunk],
            base.chunk_ppl[chunk]
        );
        progress(chunk + 1, n_chunks)?;
    }

    let (kl_mean, kl_stderr) = mean_and_stderr(divergences.iter().map(|d| d.kl));
    let kl_max = divergences.iter().map(|d| d.kl).fold(0.0, f64::max);
    let n_same = divergences.iter().filter(|d| d.same_top1).count();
    Ok(KlDivergenceResult {
        base: base.finish(n_chunks),
        candidate: candidate.finish(n_chunks),
        kl_mean,
        kl_stderr,
        kl_max,
        top1_agreement: n_same as f64 / divergences.len() as f64,
    })
}

/// Running negative log-likelihood totals of one KV cache type.
struct ChunkScores {
    total_nll: f64,
    n_scored: usize,
    chunk_ppl: Vec<f64>,
}

impl ChunkScores {
    fn with_capacity(n_chunks: usize) -> ChunkScores {
        ChunkScores { total_nll: 0.0, n_scored: 0, chunk_ppl: Vec::with_capacity(n_chunks) }
    }

    fn push_chunk(&mut self, chunk_nll: f64, count: usize) {
        self.total_nll += chunk_nll;
        self.n_scored += count;
        self.chunk_ppl.push((chunk_nll / count as f64).exp());
    }

    fn finish(self, n_chunks: usize) -> PerplexityResult {
        let nll = self.total_nll / self.n_scored as f64;
        PerplexityResult { ppl: nll.exp(), nll, n_scored: self.n_scored, n_chunks, chunk_ppl: self.chunk_ppl }
    }
}

/// Returns the mean and its standard error; the error is 0 for fewer than
/// two values.
fn mean_and_stderr(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = values.clone().count();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = values.clone().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, 0.0);
    }
    let variance = values.map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, (variance / n as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divergence_of_equal_rows_is_zero() {
        let row = [1.0f32, -2.0, 0.5, 3.0];
        let d = row_divergence(&row, &row);
        assert!(d.kl.abs() < 1e-12, "kl = {}", d.kl);
        assert!(d.same_top1);
    }

    #[test]
    fn divergence_ignores_a_constant_shift() {
        let base = [1.0f32, -2.0, 0.5, 3.0];
        let shifted: Vec<f32> = base.iter().map(|x| x + 7.0).collect();
        assert!(row_divergence(&base, &shifted).kl < 1e-9);
    }

    #[test]
    fn divergence_matches_hand_computed_value() {
        // softmax([0, ln 3]) = [1/4, 3/4] and softmax([0, 0]) = [1/2, 1/2]:
        // KL = 1/4 ln(1/2) + 3/4 ln(3/2).
        let base = [0.0f32, 3.0f32.ln()];
        let candidate = [0.0f32, 0.0];
        let expected = 0.25 * 0.5f64.ln() + 0.75 * 1.5f64.ln();
        let d = row_divergence(&base, &candidate);
        assert!((d.kl - expected).abs() < 1e-6, "kl = {}, expected {}", d.kl, expected);
        // The base ranks index 1 first. The candidate's rows tie, and a tie
        // goes to the first index.
        assert!(!d.same_top1);
    }

    #[test]
    fn divergence_is_not_symmetric() {
        let p = [0.0f32, 2.0, -1.0];
        let q = [1.0f32, 0.0, 0.0];
        let forward = row_divergence(&p, &q).kl;
        let backward = row_divergence(&q, &p).kl;
        assert!(forward > 0.0);
        assert!(backward > 0.0);
        assert!((forward - backward).abs() > 1e-3);
    }

    #[test]
    fn scored_batches_cover_second_half() {
        let batches: Vec<(usize, usize)> = scored_batches(512).collect();
        assert_eq!(batches.first(), Some(&(256, 256 + SCORED_BATCH)));
        assert_eq!(batches.last().map(|b| b.1), Some(511));
        let covered: usize = batches.iter().map(|(pos, end)| end - pos).sum();
        assert_eq!(covered, 511 - 256);
        for pair in batches.windows(2) {
            assert_eq!(pair[0].1, pair[1].0);
        }
    }

    #[test]
    fn mean_and_stderr_of_known_values() {
        let values = [1.0, 2.0, 3.0, 4.0];
        let (mean, stderr) = mean_and_stderr(values.iter().copied());
        assert!((mean - 2.5).abs() < 1e-12);
        // Sample variance 5/3, so stderr = sqrt(5/3 / 4).
        assert!((stderr - (5.0f64 / 12.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_and_stderr([7.0].iter().copied()), (7.0, 0.0));
    }
}
