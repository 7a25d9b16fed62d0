//! Perplexity the way llama.cpp's llama-perplexity computes it.
//!
//! The text is cut into non-overlapping chunks of `n_ctx` tokens. Each
//! chunk is evaluated from an empty cache, its first token replaced by BOS
//! when the vocabulary adds one, and only the second half is scored: the
//! logits at position `j` score token `j + 1` for `j` in
//! `n_ctx / 2 .. n_ctx - 1`.

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
    let n_chunks = tokens.len() / n_ctx;
    let first = n_ctx / 2;
    let bos = if model.tokenizer.add_bos() { model.tokenizer.bos_id() } else { None };

    let mut session = Session::new(Arc::clone(model), n_ctx, k_type, v_type)?;
    let mut total_nll = 0.0;
    let mut n_scored = 0;
    let mut chunk_ppl = Vec::with_capacity(n_chunks);

    for chunk in 0..n_chunks {
        let mut ids = tokens[chunk * n_ctx..(chunk + 1) * n_ctx].to_vec();
        if let Some(bos) = bos {
            ids[0] = bos;
        }
        session.reset();
        session.eval(&ids[..first], LogitsWanted::Last)?;

        // Logits of position j score token j + 1; the last position scores nothing.
        let mut chunk_nll = 0.0;
        let mut pos = first;
        while pos < n_ctx - 1 {
            let end = (pos + SCORED_BATCH).min(n_ctx - 1);
            let logits = session.eval(&ids[pos..end], LogitsWanted::From(0))?;
            let n_vocab = model.config.n_vocab;
            for (i, row) in logits.chunks_exact(n_vocab).enumerate() {
                chunk_nll += nll_of(row, ids[pos + i + 1]);
            }
            pos = end;
        }
        let count = n_ctx - 1 - first;
        total_nll += chunk_nll;
        n_scored += count;
        chunk_ppl.push((chunk_nll / count as f64).exp());
        log::debug!("perplexity chunk {}/{}: {:.4}", chunk + 1, n_chunks, chunk_ppl[chunk]);
        progress(chunk + 1, n_chunks)?;
    }

    let nll = total_nll / n_scored as f64;
    Ok(PerplexityResult { ppl: nll.exp(), nll, n_scored, n_chunks, chunk_ppl })
}
