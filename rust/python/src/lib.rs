//! The private native module `turbokv._turbokv`: a thin PyO3 layer over
//! `turbokv_engine`. Every call that computes releases the GIL.

use std::path::PathBuf;
use std::sync::Arc;

use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::create_exception;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use turbokv_engine::generate::Generation;
use turbokv_engine::kv_cache::{KvCache, KvType, KV_TYPE_NAMES};
use turbokv_engine::model::{LogitsWanted, Model, Session};
use turbokv_engine::sampler::{Sampler, SamplerConfig};
use turbokv_engine::Error;
use turbokv_kernels::quants::{self, GgmlType};

create_exception!(_turbokv, TurbokvError, PyValueError, "Base class of every error turbokv raises for bad input.");
create_exception!(_turbokv, GGUFFormatError, TurbokvError, "The model file is not valid GGUF.");
create_exception!(_turbokv, UnsupportedModelError, TurbokvError, "The architecture, tensor type or tokenizer is not supported.");
create_exception!(_turbokv, ContextOverflowError, TurbokvError, "More tokens than the context holds.");

fn to_py(err: Error) -> PyErr {
    let msg = err.to_string();
    match err {
        Error::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => pyo3::exceptions::PyFileNotFoundError::new_err(msg),
            _ => pyo3::exceptions::PyOSError::new_err(msg),
        },
        Error::Format(_) => GGUFFormatError::new_err(msg),
        Error::Unsupported(_) => UnsupportedModelError::new_err(msg),
        Error::ContextOverflow { .. } => ContextOverflowError::new_err(msg),
        Error::InvalidArgument(_) => PyValueError::new_err(msg),
    }
}

/// Raises the exception that Python code run during a native call left set.
///
/// pyo3-log restores an exception raised inside a logging call (such as the
/// KeyboardInterrupt of a Ctrl-C that lands there) instead of returning it.
/// A call that logged must raise it, because Python rejects a return value
/// with an exception set as SystemError.
fn raise_pending(py: Python<'_>) -> PyResult<()> {
    match PyErr::take(py) {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

fn kv_type(name: &str) -> PyResult<KvType> {
    KvType::from_name(name).map_err(to_py)
}

fn check_tokens(tokens: &[i64], n_vocab: usize) -> PyResult<Vec<u32>> {
    tokens
        .iter()
        .map(|&t| {
            if t < 0 || t as u64 >= n_vocab as u64 {
                Err(PyValueError::new_err(format!(
                    "token id {t} is out of range for a vocabulary of {n_vocab} tokens"
                )))
            } else {
                Ok(t as u32)
            }
        })
        .collect()
}

/// The kernel instruction set in use.
#[pyfunction]
fn simd_path() -> &'static str {
    turbokv_kernels::simd::active().name()
}

fn ggml_type_by_name(name: &str) -> PyResult<GgmlType> {
    (0..64)
        .filter_map(GgmlType::from_id)
        .find(|t| t.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| PyValueError::new_err(format!("unknown GGML type name '{name}'")))
}

/// Dequantizes `n` elements of GGML type `type_name`.
#[pyfunction]
fn dequantize<'py>(py: Python<'py>, type_name: &str, data: &[u8], n: usize) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let ty = ggml_type_by_name(type_name)?;
    let bytes = ty.row_bytes(n).ok_or_else(|| {
        PyValueError::new_err(format!("{n} is not a multiple of the {} block size {}", ty.name(), ty.block_size()))
    })?;
    if data.len() != bytes {
        return Err(PyValueError::new_err(format!(
            "{n} elements of {} take {bytes} bytes, got {}",
            ty.name(),
            data.len()
        )));
    }
    let mut out = vec![0.0f32; n];
    py.allow_threads(|| quants::dequantize_row(ty, data, &mut out));
    Ok(out.into_pyarray(py))
}

/// Multiplies the weight matrix `weights` (rows of `n_cols` elements of GGML
/// type `type_name`) by `x` on one thread, the way the engine's matmul does
/// one token: `x` is encoded as the type's activation format, then one dot
/// product runs per row. For tests and benchmarks.
#[pyfunction]
fn matvec<'py>(
    py: Python<'py>,
    type_name: &str,
    weights: &[u8],
    n_cols: usize,
    x: PyReadonlyArray1<'py, f32>,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let ty = ggml_type_by_name(type_name)?;
    let row_bytes = ty.row_bytes(n_cols).filter(|&b| b > 0).ok_or_else(|| {
        PyValueError::new_err(format!("n_cols={n_cols} is not a positive multiple of the {} block size {}", ty.name(), ty.block_size()))
    })?;
    if weights.len() % row_bytes != 0 {
        return Err(PyValueError::new_err(format!(
            "weights of {} bytes are not whole rows of {row_bytes} bytes ({n_cols} {} elements)",
            weights.len(),
            ty.name()
        )));
    }
    let x = x.as_slice().map_err(|e| PyTypeError::new_err(e.to_string()))?;
    if x.len() != n_cols {
        return Err(PyValueError::new_err(format!("x has {} elements, expected n_cols={n_cols}", x.len())));
    }
    if ty == GgmlType::Q8K {
        return Err(PyValueError::new_err("Q8_K is an activation format, not a weight format"));
    }

    let out = py.allow_threads(|| {
        let act = encode_activations(ty, x);
        weights.chunks_exact(row_bytes).map(|row| quants::vec_dot(ty, n_cols, row, &act)).collect::<Vec<f32>>()
    });
    Ok(out.into_pyarray(py))
}

/// `x` in the activation encoding that [`quants::vec_dot`] expects for
/// weights of type `ty`.
fn encode_activations(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let act_type = ty.vec_dot_type();
    if act_type == GgmlType::F32 {
        return x.iter().flat_map(|v| v.to_le_bytes()).collect();
    }
    let mut bytes = vec![0u8; act_type.row_bytes(x.len()).expect("the caller checked the block size")];
    quants::quantize_row(act_type, x, &mut bytes);
    bytes
}

/// One layer's key store of a KV cache, exposed so that benchmarks can time
/// appending positions (the quantization on write) without a forward pass.
#[pyclass(name = "KvStore", module = "turbokv._turbokv")]
struct PyKvStore {
    cache: KvCache,
}

#[pymethods]
impl PyKvStore {
    #[new]
    fn new(cache_type: &str, n_kv_heads: usize, head_dim: usize, capacity: usize) -> PyResult<Self> {
        if n_kv_heads == 0 || head_dim == 0 || capacity == 0 {
            return Err(PyValueError::new_err(format!(
                "n_kv_heads={n_kv_heads}, head_dim={head_dim} and capacity={capacity} must all be at least 1"
            )));
        }
        let ty = kv_type(cache_type)?;
        let cache = KvCache::new(capacity, ty, ty, n_kv_heads, head_dim, &[None]).map_err(to_py)?;
        Ok(PyKvStore { cache })
    }

    /// Bytes one head vector occupies.
    #[getter]
    fn row_bytes(&self) -> usize {
        self.cache.layers[0].k.row_bytes
    }

    /// Writes `rows`, a flat array of `n_positions * n_kv_heads * head_dim`
    /// values in position, head, element order, into slots `first_slot..`.
    fn write(&mut self, py: Python<'_>, first_slot: usize, rows: PyReadonlyArray1<'_, f32>) -> PyResult<()> {
        let store = &mut self.cache.layers[0].k;
        let (n_kv_heads, head_dim, capacity) = (store.n_kv_heads, store.head_dim, store.capacity);
        let values = rows.as_slice().map_err(|e| PyTypeError::new_err(e.to_string()))?;
        let position_len = n_kv_heads * head_dim;
        if values.is_empty() || values.len() % position_len != 0 {
            return Err(PyValueError::new_err(format!(
                "rows has {} values, expected a positive multiple of n_kv_heads * head_dim = {position_len}",
                values.len()
            )));
        }
        let n_positions = values.len() / position_len;
        if first_slot + n_positions > capacity {
            return Err(PyValueError::new_err(format!(
                "slots {first_slot}..{} do not fit the capacity of {capacity}",
                first_slot + n_positions
            )));
        }

        py.allow_threads(|| {
            for (i, position) in values.chunks_exact(position_len).enumerate() {
                for (head, x) in position.chunks_exact(head_dim).enumerate() {
                    store.write(head, first_slot + i, x);
                }
            }
        });
        Ok(())
    }

    /// The raw bytes of the store, `[n_kv_heads][capacity][row_bytes]`.
    fn raw_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.cache.layers[0].k.raw_bytes())
    }
}

#[pyclass(name = "Model", module = "turbokv._turbokv", frozen)]
struct PyModel {
    inner: Arc<Model>,
    path: String,
}

#[pymethods]
impl PyModel {
    #[new]
    #[pyo3(signature = (path, n_threads = 0, centers_cache_dir = None))]
    fn new(py: Python<'_>, path: String, n_threads: i64, centers_cache_dir: Option<PathBuf>) -> PyResult<Self> {
        if n_threads < 0 {
            return Err(PyValueError::new_err(format!("n_threads must be >= 0 (0 uses every core), got {n_threads}")));
        }
        let p = path.clone();
        let model = py.allow_threads(move || {
            let model = Model::load(&p, n_threads as usize)?;
            Ok(match centers_cache_dir {
                Some(dir) => model.with_centers_cache(dir),
                None => model,
            })
        });
        raise_pending(py)?;
        let model = model.map_err(to_py)?;
        Ok(PyModel { inner: Arc::new(model), path })
    }

    #[getter]
    fn n_ctx_train(&self) -> usize {
        self.inner.config.n_ctx_train
    }

    #[getter]
    fn n_vocab(&self) -> usize {
        self.inner.config.n_vocab
    }

    #[getter]
    fn n_threads(&self) -> usize {
        self.inner.n_threads()
    }

    #[getter]
    fn bos_id(&self) -> Option<u32> {
        self.inner.tokenizer.bos_id()
    }

    #[getter]
    fn eos_id(&self) -> Option<u32> {
        self.inner.tokenizer.eos_id()
    }

    #[getter]
    fn eog_ids(&self) -> Vec<u32> {
        self.inner.tokenizer.eog_ids()
    }

    #[getter]
    fn add_bos(&self) -> bool {
        self.inner.tokenizer.add_bos()
    }

    #[getter]
    fn chat_template(&self) -> PyResult<Option<String>> {
        let t = self.inner.file.get_str("tokenizer.chat_template").map_err(to_py)?;
        Ok(t.map(str::to_string))
    }

    /// Bytes a KV cache of `n_ctx` positions with these types allocates.
    #[pyo3(signature = (n_ctx, cache_type_k = "fp32", cache_type_v = "fp32"))]
    fn kv_cache_bytes(&self, n_ctx: usize, cache_type_k: &str, cache_type_v: &str) -> PyResult<usize> {
        Ok(self.inner.kv_cache_bytes(n_ctx, kv_type(cache_type_k)?, kv_type(cache_type_v)?))
    }

    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        crate_info(py, &self.inner, &self.path)
    }

    #[pyo3(signature = (text, add_special = true, parse_special = false))]
    fn tokenize(&self, py: Python<'_>, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let model = &self.inner;
        py.allow_threads(|| model.tokenizer.encode(text, add_special, parse_special))
    }

    #[pyo3(signature = (token, special = false))]
    fn token_to_piece<'py>(&self, py: Python<'py>, token: i64, special: bool) -> PyResult<Bound<'py, PyBytes>> {
        let ids = check_tokens(&[token], self.inner.config.n_vocab)?;
        Ok(PyBytes::new(py, &self.inner.tokenizer.token_to_piece(ids[0], special)))
    }

    #[pyo3(signature = (tokens, special = false))]
    fn detokenize<'py>(&self, py: Python<'py>, tokens: Vec<i64>, special: bool) -> PyResult<Bound<'py, PyBytes>> {
        let ids = check_tokens(&tokens, self.inner.config.n_vocab)?;
        Ok(PyBytes::new(py, &self.inner.tokenizer.decode(&ids, special)))
    }

    #[pyo3(signature = (tokens, n_ctx, cache_type_k = "fp32", cache_type_v = "fp32", progress = None))]
    fn perplexity<'py>(
        &self,
        py: Python<'py>,
        tokens: Vec<i64>,
        n_ctx: usize,
        cache_type_k: &str,
        cache_type_v: &str,
        progress: Option<PyObject>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let ids = check_tokens(&tokens, self.inner.config.n_vocab)?;
        let (k, v) = (kv_type(cache_type_k)?, kv_type(cache_type_v)?);
        let model = Arc::clone(&self.inner);
        let r = run_with_progress(py, progress.as_ref(), |report| {
            turbokv_engine::perplexity::perplexity(&model, &ids, n_ctx, k, v, report)
        })?;

        let d = PyDict::new(py);
        d.set_item("ppl", r.ppl)?;
        d.set_item("nll", r.nll)?;
        d.set_item("n_scored", r.n_scored)?;
        d.set_item("n_chunks", r.n_chunks)?;
        d.set_item("chunk_ppl", r.chunk_ppl)?;
        d.set_item("n_ctx", n_ctx)?;
        d.set_item("cache_type_k", k.name())?;
        d.set_item("cache_type_v", v.name())?;
        Ok(d)
    }

    /// Perplexity of a candidate and a base KV cache type on the same chunks,
    /// with the KL divergence of the candidate's next-token distributions
    /// from the base's and the top-1 agreement.
    #[pyo3(signature = (tokens, n_ctx, cache_type_k, cache_type_v, base_type_k = "fp32", base_type_v = "fp32", progress = None))]
    #[allow(clippy::too_many_arguments)]
    fn perplexity_kl<'py>(
        &self,
        py: Python<'py>,
        tokens: Vec<i64>,
        n_ctx: usize,
        cache_type_k: &str,
        cache_type_v: &str,
        base_type_k: &str,
        base_type_v: &str,
        progress: Option<PyObject>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let ids = check_tokens(&tokens, self.inner.config.n_vocab)?;
        let candidate = (kv_type(cache_type_k)?, kv_type(cache_type_v)?);
        let base = (kv_type(base_type_k)?, kv_type(base_type_v)?);
        let model = Arc::clone(&self.inner);
        let r = run_with_progress(py, progress.as_ref(), |report| {
            turbokv_engine::perplexity::kl_divergence(&model, &ids, n_ctx, base, candidate, report)
        })?;

        let d = PyDict::new(py);
        d.set_item("ppl", r.candidate.ppl)?;
        d.set_item("nll", r.candidate.nll)?;
        d.set_item("chunk_ppl", r.candidate.chunk_ppl)?;
        d.set_item("ppl_base", r.base.ppl)?;
        d.set_item("nll_base", r.base.nll)?;
        d.set_item("chunk_ppl_base", r.base.chunk_ppl)?;
        d.set_item("kl_divergence", r.kl_mean)?;
        d.set_item("kl_divergence_stderr", r.kl_stderr)?;
        d.set_item("kl_divergence_max", r.kl_max)?;
        d.set_item("top1_agreement", 100.0 * r.top1_agreement)?;
        d.set_item("n_scored", r.candidate.n_scored)?;
        d.set_item("n_chunks", r.candidate.n_chunks)?;
        d.set_item("n_ctx", n_ctx)?;
        d.set_item("cache_type_k", candidate.0.name())?;
        d.set_item("cache_type_v", candidate.1.name())?;
        d.set_item("base_type_k", base.0.name())?;
        d.set_item("base_type_v", base.1.name())?;
        Ok(d)
    }
}

/// Runs `work` without the GIL, passing it a `report(done, total)` that
/// calls the Python `progress` callback. An exception from the callback
/// stops `work` and is raised as it is.
fn run_with_progress<T, F>(py: Python<'_>, progress: Option<&PyObject>, work: F) -> PyResult<T>
where
    T: Send,
    F: Send + FnOnce(&mut dyn FnMut(usize, usize) -> turbokv_engine::Result<()>) -> turbokv_engine::Result<T>,
{
    let mut callback_error: Option<PyErr> = None;
    let result = py.allow_threads(|| {
        let mut report = |done: usize, total: usize| -> turbokv_engine::Result<()> {
            Python::with_gil(|py| {
                // Runs Python's signal handlers after each chunk, so Ctrl-C
                // raises KeyboardInterrupt here even without a callback.
                raise_pending(py)?;
                py.check_signals()?;
                match progress {
                    Some(callback) => callback.call1(py, (done, total)).map(|_| ()),
                    None => Ok(()),
                }
            })
            .map_err(|e| {
                callback_error = Some(e);
                Error::InvalidArgument("stopped by a Python exception".into())
            })
        };
        work(&mut report)
    });
    if let Some(e) = callback_error {
        return Err(e);
    }
    raise_pending(py)?;
    result.map_err(to_py)
}

fn crate_info<'py>(py: Python<'py>, model: &Model, path: &str) -> PyResult<Bound<'py, PyDict>> {
    let c = &model.config;
    let d = PyDict::new(py);
    d.set_item("path", path)?;
    d.set_item("architecture", c.arch.name())?;
    d.set_item("name", model.file.get_str("general.name").ok().flatten())?;
    d.set_item("gguf_version", model.file.version)?;
    d.set_item("file_bytes", model.file.file_size())?;
    d.set_item("n_embd", c.n_embd)?;
    d.set_item("n_layer", c.n_layer)?;
    d.set_item("n_head", c.n_head)?;
    d.set_item("n_kv_heads", c.n_kv_heads)?;
    d.set_item("head_dim", c.head_dim)?;
    d.set_item("n_ff", c.n_ff)?;
    d.set_item("n_vocab", c.n_vocab)?;
    d.set_item("n_ctx_train", c.n_ctx_train)?;
    d.set_item("rms_eps", c.rms_eps)?;
    d.set_item("n_rot", c.n_rot)?;
    d.set_item("rope_theta", c.rope_theta)?;
    let windows: Vec<Option<usize>> = c.layers.iter().map(|l| l.window).collect();
    d.set_item("sliding_windows", windows)?;
    d.set_item("layer_rope_theta", c.layers.iter().map(|l| l.rope_theta).collect::<Vec<_>>())?;
    d.set_item("tied_output", model.weights.output.is_none())?;

    let tensors = PyList::empty(py);
    let mut total: u64 = 0;
    for t in &model.file.tensors {
        let td = PyDict::new(py);
        td.set_item("name", &t.name)?;
        td.set_item("type", t.ty.map_or_else(|| format!("id {}", t.type_id), |ty| ty.name().to_string()))?;
        td.set_item("shape", &t.dims)?;
        td.set_item("bytes", t.n_bytes)?;
        total += t.n_bytes;
        tensors.append(td)?;
    }
    d.set_item("tensors", tensors)?;
    d.set_item("tensor_bytes", total)?;

    let tok = &model.tokenizer;
    let td = PyDict::new(py);
    td.set_item("model", tok.model_name())?;
    td.set_item("pre", model.file.get_str("tokenizer.ggml.pre").ok().flatten())?;
    td.set_item("n_vocab", tok.n_vocab())?;
    td.set_item("bos_id", tok.bos_id())?;
    td.set_item("eos_id", tok.eos_id())?;
    td.set_item("add_bos", tok.add_bos())?;
    td.set_item("eog_ids", tok.eog_ids())?;
    td.set_item("has_chat_template", model.file.get("tokenizer.chat_template").is_some())?;
    d.set_item("tokenizer", td)?;
    Ok(d)
}

#[pyclass(name = "Session", module = "turbokv._turbokv")]
struct PySession {
    inner: Session,
}

#[pymethods]
impl PySession {
    #[new]
    #[pyo3(signature = (model, n_ctx, cache_type_k = "fp32", cache_type_v = "fp32"))]
    fn new(model: &PyModel, n_ctx: i64, cache_type_k: &str, cache_type_v: &str) -> PyResult<Self> {
        if n_ctx <= 0 {
            return Err(PyValueError::new_err(format!("n_ctx must be at least 1, got {n_ctx}")));
        }
        let session = Session::new(Arc::clone(&model.inner), n_ctx as usize, kv_type(cache_type_k)?, kv_type(cache_type_v)?)
            .map_err(to_py)?;
        Ok(PySession { inner: session })
    }

    #[getter]
    fn n_ctx(&self) -> usize {
        self.inner.n_ctx()
    }

    #[getter]
    fn n_past(&self) -> usize {
        self.inner.n_past()
    }

    #[getter]
    fn kv_bytes(&self) -> usize {
        self.inner.cache.n_bytes()
    }

    #[getter]
    fn tokens(&self) -> Vec<u32> {
        self.inner.tokens.clone()
    }

    #[getter]
    fn cache_type_k(&self) -> &'static str {
        self.inner.cache.k_type.name()
    }

    #[getter]
    fn cache_type_v(&self) -> &'static str {
        self.inner.cache.v_type.name()
    }

    #[pyo3(signature = (tokens, all_logits = false))]
    fn eval<'py>(&mut self, py: Python<'py>, tokens: Vec<i64>, all_logits: bool) -> PyResult<PyObject> {
        let n_vocab = self.inner.model.config.n_vocab;
        let ids = check_tokens(&tokens, n_vocab)?;
        let wanted = if all_logits { LogitsWanted::From(0) } else { LogitsWanted::Last };
        let session = &mut self.inner;
        let logits = py.allow_threads(|| session.eval(&ids, wanted));
        raise_pending(py)?;
        let logits = logits.map_err(to_py)?;
        if all_logits {
            let rows = logits.len() / n_vocab;
            let array = numpy::ndarray::Array2::from_shape_vec((rows, n_vocab), logits)
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            Ok(array.into_pyarray(py).into_any().unbind())
        } else {
            Ok(logits.into_pyarray(py).into_any().unbind())
        }
    }

    /// Raw bytes of layer `layer`'s keys and values (for tests).
    fn cache_bytes<'py>(&self, py: Python<'py>, layer: usize) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        let l = self
            .inner
            .cache
            .layers
            .get(layer)
            .ok_or_else(|| PyValueError::new_err(format!("layer {layer} does not exist")))?;
        Ok((PyBytes::new(py, &l.k.raw_bytes()), PyBytes::new(py, &l.v.raw_bytes())))
    }

    /// Decoded keys and values of layer `layer`, KV head `head` at
    /// position `pos` (for tests; attention never decodes).
    fn read_kv<'py>(
        &self,
        py: Python<'py>,
        layer: usize,
        head: usize,
        pos: usize,
    ) -> PyResult<(Bound<'py, PyArray1<f32>>, Bound<'py, PyArray1<f32>>)> {
        let cache = &self.inner.cache;
        let l = cache
            .layers
            .get(layer)
            .ok_or_else(|| PyValueError::new_err(format!("layer {layer} does not exist")))?;
        if head >= l.k.n_kv_heads || pos >= self.inner.n_past() {
            return Err(PyValueError::new_err(format!("head {head} or position {pos} is out of range")));
        }
        let first = turbokv_engine::attention::first_visible(self.inner.n_past() - 1, l.window);
        if pos < first.min(self.inner.n_past().saturating_sub(l.capacity())) {
            return Err(PyValueError::new_err(format!("position {pos} has left the sliding window")));
        }
        let mut k = vec![0.0f32; l.k.head_dim];
        let mut v = vec![0.0f32; l.v.head_dim];
        l.read_key(head, pos, &mut k);
        l.read_value(head, pos, &mut v);
        Ok((k.into_pyarray(py), v.into_pyarray(py)))
    }

    fn truncate(&mut self, n_past: usize) {
        self.inner.truncate(n_past);
    }

    fn reset(&mut self) {
        self.inner.reset();
    }
}

#[pyclass(name = "Sampler", module = "turbokv._turbokv")]
struct PySampler {
    config: SamplerConfig,
    inner: Sampler,
}

fn random_seed() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

#[pymethods]
impl PySampler {
    #[new]
    #[pyo3(signature = (temperature = 0.8, top_k = 40, top_p = 0.95, min_p = 0.05, repeat_penalty = 1.0, repeat_last_n = 64, seed = None))]
    fn new(
        temperature: f32,
        top_k: i64,
        top_p: f32,
        min_p: f32,
        repeat_penalty: f32,
        repeat_last_n: i64,
        seed: Option<u64>,
    ) -> PyResult<Self> {
        if top_k < 0 {
            return Err(PyValueError::new_err(format!("top_k must be >= 0 (0 disables it), got {top_k}")));
        }
        if repeat_last_n < 0 {
            return Err(PyValueError::new_err(format!("repeat_last_n must be >= 0, got {repeat_last_n}")));
        }
        let config = SamplerConfig {
            temperature,
            top_k: top_k as usize,
            top_p,
            min_p,
            repeat_penalty,
            repeat_last_n: repeat_last_n as usize,
            seed: seed.unwrap_or_else(random_seed),
        };
        let inner = Sampler::new(config.clone()).map_err(to_py)?;
        Ok(PySampler { config, inner })
    }

    #[pyo3(signature = (logits, history = Vec::new()))]
    fn sample(&mut self, logits: PyReadonlyArray1<'_, f32>, history: Vec<u32>) -> PyResult<u32> {
        let mut values = logits.as_slice().map_err(|e| PyTypeError::new_err(e.to_string()))?.to_vec();
        if values.is_empty() {
            return Err(PyValueError::new_err("logits must not be empty"));
        }
        Ok(self.inner.sample(&mut values, &history))
    }
}

#[pyclass(name = "Generator", module = "turbokv._turbokv")]
struct PyGenerator {
    session: Py<PySession>,
    generation: Generation,
}

#[pymethods]
impl PyGenerator {
    #[new]
    fn new(py: Python<'_>, session: Py<PySession>, prompt: Vec<i64>, sampler: &PySampler, max_tokens: i64) -> PyResult<Self> {
        if max_tokens <= 0 {
            return Err(PyValueError::new_err(format!("max_tokens must be at least 1, got {max_tokens}")));
        }
        let n_vocab = session.borrow(py).inner.model.config.n_vocab;
        let ids = check_tokens(&prompt, n_vocab)?;
        // A fresh sampler with the same settings, so one PySampler can seed many runs.
        let sampler = Sampler::new(sampler.config.clone()).map_err(to_py)?;
        let generation = Generation::new(ids, sampler, max_tokens as usize).map_err(to_py)?;
        Ok(PyGenerator { session, generation })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(mut slf: PyRefMut<'_, Self>, py: Python<'_>) -> PyResult<Option<u32>> {
        let this = &mut *slf;
        let mut session_ref = this.session.borrow_mut(py);
        let session = &mut session_ref.inner;
        let generation = &mut this.generation;
        let token = py.allow_threads(|| generation.step(session));
        raise_pending(py)?;
        token.map_err(to_py)
    }

    #[getter]
    fn stop_reason(&self) -> Option<&'static str> {
        self.generation.stop.map(|s| s.name())
    }

    #[getter]
    fn n_prompt(&self) -> usize {
        self.generation.n_prompt()
    }

    #[getter]
    fn n_decoded(&self) -> usize {
        self.generation.n_decoded
    }

    #[getter]
    fn prompt_seconds(&self) -> f64 {
        self.generation.prompt_seconds
    }

    #[getter]
    fn decode_seconds(&self) -> f64 {
        self.generation.decode_seconds
    }
}

#[pymodule]
fn _turbokv(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let _ = pyo3_log::try_init();
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("KV_TYPES", KV_TYPE_NAMES.to_vec())?;
    m.add("TurbokvError", py.get_type::<TurbokvError>())?;
    m.add("GGUFFormatError", py.get_type::<GGUFFormatError>())?;
    m.add("UnsupportedModelError", py.get_type::<UnsupportedModelError>())?;
    m.add("ContextOverflowError", py.get_type::<ContextOverflowError>())?;
    m.add_function(wrap_pyfunction!(simd_path, m)?)?;
    m.add_function(wrap_pyfunction!(dequantize, m)?)?;
    m.add_function(wrap_pyfunction!(matvec, m)?)?;
    m.add_class::<PyModel>()?;
    m.add_class::<PySession>()?;
    m.add_class::<PySampler>()?;
    m.add_class::<PyGenerator>()?;
    m.add_class::<PyKvStore>()?;
    Ok(())
}
