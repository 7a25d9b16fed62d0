//! A loaded model and the per-sequence state that runs it.

use std::sync::{Arc, OnceLock};

use crate::centering::{rope_pairs, LayerCenter};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::kv_cache::{KvCache, KvType};
use crate::tokenizer::Tokenizer;
use crate::weights::Weights;

/// Weights, tokenizer and worker pool of one GGUF file. Shared by any
/// number of [`Session`]s; immutable after loading.
pub struct Model {
    pub config: Config,
    pub weights: Weights,
    pub tokenizer: Tokenizer,
    pub file: Arc<GgufFile>,
    pub pool: rayon::ThreadPool,
    /// Per-layer key centers for TurboQuant caches, computed on
    /// first use (see [`crate::centering`]).
    centers: OnceLock<Vec<LayerCenter>>,
}

/// Public-domain text (Pride and Prejudice, chapter 1) whose keys give the
/// centers.
const CALIBRATION_TEXT: &str = include_str!("calibration.txt");

/// Calibration positions; position 0 is left out of the means because the
/// first token of a sequence is often an attention sink with atypical keys.
const CALIBRATION_TOKENS: usize = 96;

impl Model {
    /// Opens `path` and checks every tensor the architecture needs.
    /// `n_threads = 0` uses one thread per available core.
    pub fn load(path: &str, n_threads: usize) -> Result<Model> {
        let file = Arc::new(GgufFile::open(path)?);
        let config = Config::from_gguf(&file)?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        if tokenizer.n_vocab() != config.n_vocab {
            return Err(Error::Format(format!(
                "the vocabulary has {} tokens but the model expects {}",
                tokenizer.n_vocab(),
                config.n_vocab
            )));
        }
        let weights = Weights::load(&file, &config)?;

        let n_threads = if n_threads == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            n_threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n_threads)
            .thread_name(|i| format!("turbokv-worker-{i}"))
            .build()
            .map_err(|e| Error::InvalidArgument(format!("cannot start {n_threads} worker threads: {e}")))?;

        log::info!(
            "loaded {path}: {} with {} layers, n_embd {}, {} threads",
            config.arch.name(),
            config.n_layer,
            config.n_embd,
            n_threads
        );
        Ok(Model { config, weights, tokenizer, file, pool, centers: OnceLock::new() })
    }

    /// The key centers, calibrated on first call.
    pub fn centers(self: &Arc<Self>) -> Result<&[LayerCenter]> {
        if let Some(c) = self.centers.get() {
            return Ok(c);
        }
        let computed = calibrate(self)?;
        Ok(self.centers.get_or_init(|| computed))
    }

    pub fn n_threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Bytes a cache of `n_ctx` positions with these types allocates.
    pub fn kv_cache_bytes(&self, n_ctx: usize, k_type: KvType, v_type: KvType) -> usize {
        let c = &self.config;
        c.layers
            .iter()
            .map(|l| {
                let capacity = l.window.map_or(n_ctx, |w| w.min(n_ctx));
                c.n_kv_heads * capacity * (k_type.row_bytes(c.head_dim) + v_type.row_bytes(c.head_dim))
            })
            .sum()
    }
}

/// One sequence: its KV cache and the tokens in it.
pub struct Session {
    pub model: Arc<Model>,
    pub cache: KvCache,
    /// Token ids in the cache, in position order.
    pub tokens: Vec<u32>,
}

/// Which logits rows [`Session::eval`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitsWanted {
    /// Only the last token's row.
    Last,
    /// Rows for the tokens at batch indices `from..`.
    From(usize),
}

impl Session {
    pub fn new(model: Arc<Model>, n_ctx: usize, k_type: KvType, v_type: KvType) -> Result<Session> {
        if n_ctx == 0 {
            return Err(Error::InvalidArgument("n_ctx must be at least 1".into()));
        }
        let c = &model.config;
        let windows: Vec<Option<usize>> = c.layers.iter().map(|l| l.window).collect();
        let mut cache = KvCache::new(n_ctx, k_type, v_type, c.n_kv_heads, c.head_dim, &windows)?;
        if matches!(k_type, KvType::Turbo(_)) && std::env::var_os("TURBOKV_NO_CENTERING").is_none() {
            cache.set_centers(model.centers()?);
        }
        Ok(Session { model, cache, tokens: Vec::new() })
    }

    pub fn n_ctx(&self) -> usize {
        self.cache.n_ctx
    }

    pub fn n_past(&self) -> usize {
        self.tokens.len()
    }

    /// Forgets positions `n_past..`.
    ///
    /// A sliding-window layer whose ring has wrapped no longer holds the
    /// positions before the last `window`, so it cannot go back more than one
    /// token; truncating such a session clears the whole sequence instead
    /// (check [`Session::n_past`] afterwards).
    pub fn truncate(&mut self, n_past: usize) {
        if n_past >= self.tokens.len() {
            return;
        }
        let overwritten = self
            .cache
            .layers
            .iter()
            .any(|l| l.window.is_some() && self.tokens.len() > l.capacity() && n_past + 1 < self.tokens.len());
        if overwritten {
            self.tokens.clear();
        } else {
            self.tokens.truncate(n_past);
        }
    }

    pub fn reset(&mut self) {
        self.tokens.clear();
    }

    /// Appends `tokens` to the sequence and returns logits rows
    /// (`n_vocab` floats each) as `wanted` says.
    pub fn eval(&mut self, tokens: &[u32], wanted: LogitsWanted) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("eval needs at least one token".into()));
        }
        let n_vocab = self.model.config.n_vocab;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is out of range for a vocabulary of {n_vocab} tokens"
            )));
        }
        let total = self.tokens.len() + tokens.len();
        if total > self.cache.n_ctx {
            return Err(Error::ContextOverflow { n_tokens: total, n_ctx: self.cache.n_ctx });
        }
        let from = match wanted {
            LogitsWanted::Last => tokens.len() - 1,
            LogitsWanted::From(i) => i.min(tokens.len()),
        };
        let model = Arc::clone(&self.model);
        let logits = crate::forward::forward(&model, &mut self.cache, self.tokens.len(), tokens, from);
        self.tokens.extend_from_slice(tokens);
        Ok(logits)
    }
}

/// Runs the calibration text with an fp32 cache and averages each head's
/// keys, rotated back to position 0, over positions `1..`.
fn calibrate(model: &Arc<Model>) -> Result<Vec<LayerCenter>> {
    let c = &model.config;
    let mut tokens = model.tokenizer.encode(CALIBRATION_TEXT, true, false);
    tokens.truncate(CALIBRATION_TOKENS);
    let n = tokens.len();
    let mut session = Session::new(Arc::clone(model), n, KvType::F32, KvType::F32)?;
    session.eval(&tokens, LogitsWanted::Last)?;

    let d = c.head_dim;
    let factors = model.weights.rope_freqs.as_deref();
    let mut centers = Vec::with_capacity(c.n_layer);
    for (il, layer) in session.cache.layers.iter().enumerate() {
        let pairs = rope_pairs(c, &c.layers[il], factors);
        let mut key = vec![0.0f64; c.n_kv_heads * d];
        let mut k = vec![0.0f32; d];
        for pos in 1..n {
            for h in 0..c.n_kv_heads {
                layer.read_key(h, pos, &mut k);
                unrotate(&pairs, pos, &mut k);
                for i in 0..d {
                    key[h * d + i] += k[i] as f64;
                }
            }
        }
        let scale = 1.0 / (n.max(2) - 1) as f64;
        centers.push(LayerCenter {
            key: key.iter().map(|x| (x * scale) as f32).collect(),
            pairs,
        });
    }
    log::debug!("calibrated KV centers on {n} tokens");
    Ok(centers)
}

/// Applies the inverse rope rotation of position `pos` to `x`.
fn unrotate(pairs: &[crate::centering::RopePair], pos: usize, x: &mut [f32]) {
    for p in pairs {
        let (sin, cos) = (pos as f64 * p.omega).sin_cos();
        let (a, b) = (x[p.a] as f64, x[p.b] as f64);
        x[p.a] = (a * cos + b * sin) as f32;
        x[p.b] = (b * cos - a * sin) as f32;
    }
}
