"""Benchmarks on the real models: model load, prefill, decode step per KV type and depth.

Two threads everywhere, so runs on different machines compare like for like
with llama-bench ``-t 2``.
"""

import time

import pytest

from turbokv import _turbokv
from turbokv.bench import probe_kv_type, text_tokens

N_THREADS = 2
MODELS = ["gemma3-270m", "smollm2-135m"]
DEPTHS = [0, 1024, 4096, 8192]


@pytest.fixture(scope="module")
def native_models(model_paths):
    return {name: _turbokv.Model(path, N_THREADS) for name, path in model_paths.items()}


def open_session(model, kv_type: str, n_ctx: int):
    """Return a session of ``kv_type``, or skip the benchmark if that type fails to run in this build."""
    error = probe_kv_type(model, kv_type)
    if error is not None:
        pytest.skip(f"KV type {kv_type} fails to run in this build: {error}")
    return _turbokv.Session(model, n_ctx, kv_type, kv_type)


@pytest.mark.parametrize("name", MODELS)
def test_model_load(benchmark, model_paths, name):
    model = benchmark(_turbokv.Model, model_paths[name], N_THREADS)
    assert model.n_vocab > 0


@pytest.mark.parametrize("name", MODELS)
def test_prefill_512(benchmark, native_models, scaled, name):
    model = native_models[name]
    n_tokens = scaled(512, 16)
    tokens = text_tokens(model, n_tokens)[:n_tokens]
    session = open_session(model, "fp32", n_tokens)

    logits = benchmark.pedantic(session.eval, args=(tokens,), setup=session.reset, rounds=scaled(3, 1))
    assert logits.shape == (model.n_vocab,)
    assert session.n_past == n_tokens


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("kv_type", _turbokv.KV_TYPES)
@pytest.mark.parametrize("name", MODELS)
def test_decode_step(benchmark, native_models, scaled, name, kv_type, depth):
    """One single-token eval with ``depth`` tokens cached; each round truncates back to ``depth``."""
    model = native_models[name]
    depth = scaled(depth, min(depth, 32))
    tokens = text_tokens(model, depth + 1)
    session = open_session(model, kv_type, depth + 1)

    start = time.perf_counter()
    for begin in range(0, depth, 512):
        session.eval(tokens[begin : min(depth, begin + 512)])
    benchmark.extra_info["fill_seconds"] = time.perf_counter() - start

    # Dropping the one token a round appends is allowed even where a
    # sliding-window ring has wrapped (Session.truncate), so every round
    # decodes at exactly `depth`.
    logits = benchmark.pedantic(
        session.eval, args=([tokens[depth]],), setup=lambda: session.truncate(depth), rounds=scaled(20, 1)
    )
    assert logits.shape == (model.n_vocab,)
    assert session.n_past == depth + 1
