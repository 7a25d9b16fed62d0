//! A loaded model and the per-sequence state that runs it.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use crate::centering::{chunk_shrink, key_scales, rope_pairs, LayerCenter, RopePair};
use crate::centers_cache;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::kv_cache::{layer_capacity, sink_key_len, KvCache, KvType};
use crate::pool::WorkerPool;
use crate::tokenizer::Tokenizer;
use crate::weights::Weights;

/// Weights, tokenizer and worker pool of one GGUF file. Shared by any
/// number of [`Session`]s; immutable after loading.
pub struct Model {
    pub config: Config,
    pub weights: Weights,
    pub tokenizer: Tokenizer,
    pub file: Arc<GgufFile>,
    pub pool: WorkerPool,
    /// Per-layer key centers for TurboQuant caches, computed on
    /// first use (see [`crate::centering`]).
    centers: OnceLock<Vec<LayerCenter>>,
    /// Folder that keeps centers between loads (see
    /// [`crate::centers_cache`]). With `None`, every load calibrates.
    centers_cache_dir: Option<PathBuf>,
}

/// Public-domain text (Pride and Prejudice, chapter 1) whose keys give the
/// centers.
const CALIBRATION_TEXT: &str = include_str!("calibration.txt");

/// Calibration positions; position 0 is left out of the means because the
/// first token of a sequence is often an attention sink with atypical keys.
const CALIBRATION_TOKENS: usize = 96;

/// Version of the calibration procedure, part of the cache fingerprint.
/// Raise it whenever calibration would compute different centers from the
/// same file and text, so that centers cached by older releases are not reused.
const CALIBRATION_VERSION: u32 = 2;

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
        let pool = WorkerPool::new(n_threads)
            .map_err(|e| Error::InvalidArgument(format!("failed to start {} worker threads: {e}; try a lower n_threads", n_threads - 1)))?;

        log::info!(
            "loaded {path}: {} with {} layers, n_embd {}, {} threads",
            config.arch.name(),
            config.n_layer,
            config.n_embd,
            n_threads
        );
        Ok(Model { config, weights, tokenizer, file, pool, centers: OnceLock::new(), centers_cache_dir: None })
    }

    /// Keeps calibrated key centers in `dir` (created when needed) and reads
    /// them from there on later loads of the same file.
    pub fn with_centers_cache(mut self, dir: PathBuf) -> Model {
        self.centers_cache_dir = Some(dir);
        self
    }

    /// Returns the key centers: read from the cache folder if it has this
    /// file's, else calibrated (and stored there) on first call.
    pub fn centers(self: &Arc<Self>) -> Result<&[LayerCenter]> {
        if let Some(c) = self.centers.get() {
            return Ok(c);
        }
        let cached = self.centers_cache_path();
        let factors = self.weights.rope_freqs.as_deref();
        let found = cached.as_ref().and_then(|(path, fp)| centers_cache::read(path, *fp, &self.config, factors));
        if let Some(found) = found {
            return Ok(self.centers.get_or_init(|| found));
        }

        let computed = calibrate(self)?;
        if let Some((path, fingerprint)) = cached {
            match centers_cache::write(&path, fingerprint, &computed) {
                Ok(()) => log::debug!("stored key centers in {}", path.display()),
                Err(e) => {
                    log::warn!("failed to store key centers in {}: {e}; the next load calibrates again", path.display())
                }
            }
        }
        Ok(self.centers.get_or_init(|| computed))
    }

    /// Returns the cache file for this model's centers and its fingerprint.
    fn centers_cache_path(&self) -> Option<(PathBuf, u64)> {
        let dir = self.centers_cache_dir.as_ref()?;
        let mut calibration = CALIBRATION_VERSION.to_le_bytes().to_vec();
        calibration.extend_from_slice(&(CALIBRATION_TOKENS as u64).to_le_bytes());
        calibration.extend_from_slice(CALIBRATION_TEXT.as_bytes());
        let fingerprint = centers_cache::fingerprint(&self.file, &calibration);
        Some((centers_cache::path_in(dir, fingerprint), fingerprint))
    }

    pub fn n_threads(&self) -> usize {
        self.pool.n_threads()
    }

    /// Bytes a cache of `n_ctx` positions with these types allocates.
    pub fn kv_cache_bytes(&self, n_ctx: usize, k_type: KvType, v_type: KvType) -> usize {
        let c = &self.config;
        c.layers
            .iter()
            .map(|l| {
                let capacity = layer_capacity(l.window, n_ctx);
                let sink = sink_key_len(k_type, c.n_kv_heads, c.head_dim).map_or(0, |n| 2 * n);
                c.n_kv_heads * capacity * (k_type.row_bytes(c.head_dim) + v_type.row_bytes(c.head_dim)) + sink
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
        let n_past = self.tokens.len();
        let logits = crate::forward::forward(&self.model, &mut self.cache, n_past, tokens, from);
        self.tokens.extend_from_slice(tokens);
        Ok(logits)
    }
}

/// Runs the calibration text with an fp32 cache and averages each head's
/// keys before rope over positions `1..`. The centers are those means with
/// each rope pair scaled by [`chunk_shrink`]. The key scales come from the
/// same run.
fn calibrate(model: &Arc<Model>) -> Result<Vec<LayerCenter>> {
    let c = &model.config;
    let mut tokens = model.tokenizer.encode(CALIBRATION_TEXT, true, false);
    tokens.truncate(CALIBRATION_TOKENS);
    let n = tokens.len();
    let d = c.head_dim;
    let kv_dim = c.n_kv_heads * d;

    // keys[layer]: [n][kv_dim]; queries[layer]: [n][q_dim], before rope
    let mut keys: Vec<Vec<f32>> = vec![Vec::new(); c.n_layer];
    let mut queries: Vec<Vec<f32>> = vec![Vec::new(); c.n_layer];
    let mut cache = KvCache::new(n, KvType::F32, KvType::F32, c.n_kv_heads, d, &c.layers.iter().map(|l| l.window).collect::<Vec<_>>())?;
    let mut probe = |il: usize, q: &[f32], k: &[f32]| {
        keys[il].extend_from_slice(k);
        queries[il].extend_from_slice(q);
    };
    crate::forward::probe_queries_keys(model, &mut cache, &tokens, &mut probe);

    let factors = model.weights.rope_freqs.as_deref();
    let mut centers = Vec::with_capacity(c.n_layer);
    for il in 0..c.n_layer {
        let mut key = vec![0.0f64; kv_dim];
        for row in keys[il].chunks_exact(kv_dim).skip(1) {
            key.iter_mut().zip(row).for_each(|(m, &x)| *m += x as f64);
        }
        let scale = 1.0 / (n.max(2) - 1) as f64;
        let mean: Vec<f32> = key.iter().map(|x| (x * scale) as f32).collect();
        let pairs = rope_pairs(c, &c.layers[il], factors);
        let key_scale = layer_key_scales(c, il, &pairs, &keys[il], &queries[il], &mean);
        let key = shrink_center(&pairs, mean, d);
        centers.push(LayerCenter { key, key_scale, pairs });
    }
    log::debug!("calibrated KV centers on {n} tokens");
    Ok(centers)
}

/// Scales each rope pair of every head's mean key by [`chunk_shrink`].
fn shrink_center(pairs: &[RopePair], mut mean: Vec<f32>, head_dim: usize) -> Vec<f32> {
    for head in mean.chunks_exact_mut(head_dim) {
        for p in pairs {
            let m = chunk_shrink(p.omega) as f32;
            head[p.a] *= m;
            head[p.b] *= m;
        }
    }
    mean
}

/// Computes the key divisors of every KV head of a layer (see
/// [`key_scales`]) from the keys and their mean before rope.
///
/// The energy of a pair is that of what the cache stores: the keys' spread
/// around their mean, plus `(1 - m^2) |c|^2` of the mean `c` left after
/// subtracting `m c` per chunk (`m` from [`chunk_shrink`]).
fn layer_key_scales(
    c: &Config,
    il: usize,
    pairs: &[RopePair],
    keys: &[f32],
    queries: &[f32],
    mean: &[f32],
) -> Vec<f32> {
    let d = c.head_dim;
    let kv_dim = c.n_kv_heads * d;
    let q_dim = c.n_head * d;
    let gqa = c.gqa_ratio();
    let n_rows = (keys.len() / kv_dim).saturating_sub(1) as f64;
    let mut scales = Vec::with_capacity(kv_dim);
    for h in 0..c.n_kv_heads {
        let center = &mean[h * d..(h + 1) * d];
        let mut ek = vec![0.0f64; d];
        let mut eq = vec![0.0f64; d];
        for row in keys.chunks_exact(kv_dim).skip(1) {
            for i in 0..d {
                ek[i] += (row[h * d + i] as f64 - center[i] as f64).powi(2);
            }
        }
        for p in pairs {
            let m = chunk_shrink(p.omega);
            let left = (1.0 - m * m) * ((center[p.a] as f64).powi(2) + (center[p.b] as f64).powi(2));
            ek[p.a] += n_rows * left / 2.0;
            ek[p.b] += n_rows * left / 2.0;
        }
        for row in queries.chunks_exact(q_dim).skip(1) {
            for g in 0..gqa {
                let base = (h * gqa + g) * d;
                for i in 0..d {
                    eq[i] += (row[base + i] as f64).powi(2);
                }
            }
        }
        let gain = scaling_gain(&ek, &eq);
        log::debug!("layer {il} kv head {h}: predicted key scaling gain {gain:.2}");
        scales.extend(key_scales(pairs, &ek, &eq));
    }
    scales
}

/// `(sum a)(sum b) / (sum sqrt(a b))^2` over dimensions: the factor by which
/// ideal per-dimension scaling divides the score error of quantized keys.
/// Logged only: the scales are shared within rope pairs, so the real gain
/// can be lower. Every head is scaled because gating on a predicted gain of
/// 2 did not help. With the exact sink key, the gate raised the mean KL
/// divergence of turbo_kv_4b keys (fp16 values, 4096 tokens at ctx 512)
/// from 0.0166 to 0.0187 on SmolLM2-135M and left Gemma 3 270M at 0.023.
fn scaling_gain(key_energy: &[f64], query_energy: &[f64]) -> f64 {
    let a: f64 = query_energy.iter().sum();
    let b: f64 = key_energy.iter().sum();
    let ab: f64 = query_energy.iter().zip(key_energy).map(|(q, k)| (q * k).sqrt()).sum();
    if ab > 0.0 {
        a * b / (ab * ab)
    } else {
        1.0
    }
}

