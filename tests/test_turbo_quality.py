"""TurboQuant cache quality on real key and value vectors from both models.

Layer 0's keys and values depend only on the token embeddings, so an fp32
session and a TurboQuant session of the same tokens hold the same vectors
before quantization there; decoding the TurboQuant cache and comparing gives
the quantization error alone. Measured values (256 tokens of Pride and
Prejudice, positions 1 to 255, every KV head of layer 0):

| model | bits | key rel. MSE | value rel. MSE | centered score cosine |
|---|---|---|---|---|
| Gemma 3 270M | 3 | 0.0176 | 0.0321 | 0.9828 |
| Gemma 3 270M | 4 | 0.0049 | 0.0089 | 0.9952 |
| Gemma 3 270M | 5 | 0.0013 | 0.0023 | 0.9988 |
| SmolLM2-135M | 3 | 0.0158 | 0.0297 | 0.9899 |
| SmolLM2-135M | 4 | 0.0044 | 0.0086 | 0.9972 |
| SmolLM2-135M | 5 | 0.0011 | 0.0022 | 0.9993 |

Keys beat the Gaussian Lloyd-Max distortion (0.0345, 0.0095, 0.0025)
because the cache quantizes them after subtracting most of the head's mean
key (see rust/engine/src/centering.rs); values, stored as they are, land
near it.
"""

import numpy as np
import pytest

import turbokv
from turbokv import _turbokv

TYPES = ["turbo_kv_3b", "turbo_kv_4b", "turbo_kv_5b"]

# Lloyd-Max mean squared error per coordinate of a unit Gaussian.
LLOYD_MAX = {"turbo_kv_3b": 0.0345, "turbo_kv_4b": 0.0095, "turbo_kv_5b": 0.0025}

# Required mean cosine between exact and compressed attention scores.
MIN_SCORE_COSINE = {"turbo_kv_4b": 0.99, "turbo_kv_5b": 0.998}

N_TOKENS = 256


@pytest.fixture(scope="module", params=["gemma_path", "smollm_path"])
def captured(request):
    """Exact and decoded layer-0 keys and values for every TurboQuant type."""
    model = turbokv.Model(request.getfixturevalue(request.param), n_ctx=512, n_threads=2)
    native = model._native
    text = turbokv.model.read_perplexity_text()[:4000]
    ids = model.tokenize(text)[:N_TOKENS]
    n_kv_heads = native.info()["n_kv_heads"]

    exact = _turbokv.Session(native, 512, "fp32", "fp32")
    exact.eval(ids)
    vectors = {}
    for kv_type in TYPES:
        session = _turbokv.Session(native, 512, kv_type, kv_type)
        session.eval(ids)
        rows = {"k": [], "v": [], "k_hat": [], "v_hat": []}
        for head in range(n_kv_heads):
            for pos in range(1, N_TOKENS):
                k, v = exact.read_kv(0, head, pos)
                k_hat, v_hat = session.read_kv(0, head, pos)
                rows["k"].append(k)
                rows["v"].append(v)
                rows["k_hat"].append(k_hat)
                rows["v_hat"].append(v_hat)
        vectors[kv_type] = {name: np.array(values, dtype=np.float64) for name, values in rows.items()}
    return request.param, vectors


def relative_mse(exact, decoded):
    return float((((exact - decoded) ** 2).sum(axis=1) / (exact**2).sum(axis=1)).mean())


def centered_score_cosine(keys, decoded, seed=0):
    """Mean cosine between exact and compressed scores of 64 random queries.

    The mean score of each query is removed first: softmax ignores it, and
    keeping it would let the keys' common component inflate the cosine.
    """
    queries = np.random.default_rng(seed).standard_normal((64, keys.shape[1]))
    exact = queries @ keys.T
    approx = queries @ decoded.T
    exact -= exact.mean(axis=1, keepdims=True)
    approx -= approx.mean(axis=1, keepdims=True)
    cosines = (exact * approx).sum(axis=1) / np.linalg.norm(exact, axis=1) / np.linalg.norm(approx, axis=1)
    return float(cosines.mean())


@pytest.mark.parametrize("kv_type", TYPES)
def test_key_error_below_lloyd_max(captured, kv_type):
    _, vectors = captured
    v = vectors[kv_type]
    assert relative_mse(v["k"], v["k_hat"]) < LLOYD_MAX[kv_type]


@pytest.mark.parametrize("kv_type", TYPES)
def test_value_error_near_lloyd_max(captured, kv_type):
    _, vectors = captured
    v = vectors[kv_type]
    error = relative_mse(v["v"], v["v_hat"])
    assert 0.5 * LLOYD_MAX[kv_type] < error < 1.1 * LLOYD_MAX[kv_type]


@pytest.mark.parametrize("kv_type", sorted(MIN_SCORE_COSINE))
def test_score_cosine_meets_bound(captured, kv_type):
    _, vectors = captured
    v = vectors[kv_type]
    assert centered_score_cosine(v["k"], v["k_hat"]) >= MIN_SCORE_COSINE[kv_type]


def test_error_falls_with_bits(captured):
    _, vectors = captured
    key_errors = [relative_mse(vectors[t]["k"], vectors[t]["k_hat"]) for t in TYPES]
    value_errors = [relative_mse(vectors[t]["v"], vectors[t]["v_hat"]) for t in TYPES]
    score_errors = [1 - centered_score_cosine(vectors[t]["k"], vectors[t]["k_hat"]) for t in TYPES]
    assert key_errors[0] > key_errors[1] > key_errors[2]
    assert value_errors[0] > value_errors[1] > value_errors[2]
    assert score_errors[0] > score_errors[1] > score_errors[2]
