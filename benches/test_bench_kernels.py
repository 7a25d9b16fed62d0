"""Benchmarks of single operations: attention over a long cache, KV cache writes, weight dot products."""

import numpy as np
import pytest
import synthetic
from gguf import GGMLQuantizationType

from turbokv import _turbokv
from turbokv.bench import probe_kv_type

ATTENTION_DEPTH = 4096

#: Formats that tests/synthetic.py can encode. Q2_K and Q3_K have no encoder
#: there, so their dot products are only covered by
#: rust/kernels/examples/bench_quants.rs.
WEIGHT_FORMATS = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]


@pytest.fixture(scope="module")
def attention_model(tmp_path_factory):
    """A one-layer synthetic llama model with SmolLM2-135M's attention shape (9 heads, 3 KV heads,
    head_dim 64) and a small FFN and vocabulary, so that an eval at depth 4096 is mostly attention."""
    path = tmp_path_factory.mktemp("attention") / "attention.gguf"
    synthetic.write_llama(path, n_embd=576, n_layer=1, n_head=9, n_kv_heads=3, n_ff=64)
    return _turbokv.Model(str(path), 1)


@pytest.mark.parametrize("kv_type", _turbokv.KV_TYPES)
def test_attention_over_cache(benchmark, attention_model, scaled, kv_type):
    """One token attending over ``ATTENTION_DEPTH`` cached positions, one thread."""
    error = probe_kv_type(attention_model, kv_type)
    if error is not None:
        pytest.skip(f"KV type {kv_type} fails to run in this build: {error}")
    depth = scaled(ATTENTION_DEPTH, 32)
    tokens = synthetic.random_tokens(attention_model.n_vocab, depth + 1, seed=1)
    session = _turbokv.Session(attention_model, depth + 1, kv_type, kv_type)
    session.eval(tokens[:depth])

    logits = benchmark.pedantic(
        session.eval, args=([tokens[depth]],), setup=lambda: session.truncate(depth), rounds=scaled(50, 1)
    )
    assert np.isfinite(logits).all()


@pytest.mark.parametrize("head_dim,n_kv_heads", [(64, 3), (256, 1)], ids=["smollm2-shape", "gemma3-shape"])
@pytest.mark.parametrize("kv_type", _turbokv.KV_TYPES)
def test_cache_append(benchmark, scaled, kv_type, head_dim, n_kv_heads):
    """Writing (and for TurboQuant types quantizing) 64 positions of one layer's keys."""
    try:
        store = _turbokv.KvStore(kv_type, n_kv_heads, head_dim, 64)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # noqa: B036 -- a missing kernel raises a Rust panic
        pytest.skip(f"KV type {kv_type} fails to run in this build: {type(error).__name__}: {error}")
    rows = np.random.default_rng(0).standard_normal(64 * n_kv_heads * head_dim).astype(np.float32)

    benchmark.pedantic(store.write, args=(0, rows), rounds=scaled(200, 1))
    assert len(store.raw_bytes()) == n_kv_heads * 64 * store.row_bytes


@pytest.mark.parametrize("type_name", WEIGHT_FORMATS)
def test_weight_matvec(benchmark, scaled, type_name):
    """A 1024 x 1024 weight matrix times one activation vector, one thread."""
    n_rows, n_cols = scaled(1024, 16), 1024
    rng = np.random.default_rng(0)
    values = (rng.standard_normal((n_rows, n_cols)) / np.sqrt(n_cols)).astype(np.float32)
    weights = synthetic.quantize(values, GGMLQuantizationType[type_name]).tobytes()
    x = rng.standard_normal(n_cols).astype(np.float32)

    out = benchmark.pedantic(_turbokv.matvec, args=(type_name, weights, n_cols, x), rounds=scaled(50, 1))
    # A loose check that the kernels read the format right: quantization error
    # of a 1024-term dot product with these scales stays far below 0.5.
    assert np.abs(out - values @ x).max() < 0.5
