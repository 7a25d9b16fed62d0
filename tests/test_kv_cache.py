"""Invariants of turbokv's KV cache on tiny synthetic models, for every KV type.

Each (token, head) is computed by the same code whatever the batch it
arrives in, so splitting a sequence into batches must not change a single
bit of the logits or of the stored cache. The models:

- llama: GQA ratio 3 and head_dim 80 (TurboQuant blocks of 64 and 16),
  Q8_0 weights.
- gemma3: seven layers with a sliding window of 3 (layer 5 is global), so
  the ring buffers wrap inside batches, Q4_0 weights.
"""

import numpy as np
import pytest

import turbokv
from turbokv import _turbokv

from synthetic import random_tokens, write_gemma3, write_llama

N_THREADS = 2
N_CTX = 32
WINDOW = 3
N_TOKENS = 20

MODELS = ["llama", "gemma3"]

# Token counts per eval call. Each plan sums to N_TOKENS.
SPLITS = {
    "one_by_one": [1] * N_TOKENS,
    "chunks": [2, 5, 1, 4, 8],
}


@pytest.fixture(scope="module")
def configs_and_paths(tmp_path_factory):
    """{name: (SyntheticConfig, path)} of the two models."""
    folder = tmp_path_factory.mktemp("kv_models")
    llama = folder / "llama.gguf"
    llama_config = write_llama(llama, n_embd=128, n_head=6, n_kv_heads=2, head_dim=80, n_ff=256,
                               weight_type="Q8_0")
    gemma = folder / "gemma3.gguf"
    gemma_config = write_gemma3(gemma, n_embd=64, n_head=4, n_kv_heads=2, head_dim=64, n_ff=128,
                                n_layer=7, sliding_window=WINDOW, weight_type="Q4_0")
    return {"llama": (llama_config, llama), "gemma3": (gemma_config, gemma)}


@pytest.fixture(scope="module")
def configs(configs_and_paths):
    return {name: config for name, (config, _) in configs_and_paths.items()}


@pytest.fixture(scope="module")
def models(configs_and_paths):
    return {name: _turbokv.Model(str(path), N_THREADS) for name, (_, path) in configs_and_paths.items()}


def sequence(model, n_tokens=N_TOKENS, seed=3):
    return random_tokens(model.n_vocab, n_tokens, seed=seed)


def n_layers(model):
    return model.info()["n_layer"]


def evaluate(model, tokens, split, kv_type, n_ctx=N_CTX):
    """Evaluate `tokens` in calls of `split` sizes and return (session, logits [T, n_vocab])."""
    session = _turbokv.Session(model, n_ctx, kv_type, kv_type)
    rows = []
    start = 0
    for size in split:
        rows.append(session.eval(tokens[start:start + size], all_logits=True))
        start += size
    assert start == len(tokens)
    return session, np.concatenate(rows)


def assert_same_cache(session, other, n_layer):
    for layer in range(n_layer):
        keys, values = session.cache_bytes(layer)
        other_keys, other_values = other.cache_bytes(layer)
        assert keys == other_keys, f"layer {layer}: keys differ"
        assert values == other_values, f"layer {layer}: values differ"


# Batch splits


@pytest.mark.parametrize("kv_type", turbokv.KV_TYPES)
@pytest.mark.parametrize("split", sorted(SPLITS))
@pytest.mark.parametrize("name", MODELS)
def test_split_evaluation_is_bit_identical(models, name, split, kv_type):
    model = models[name]
    tokens = sequence(model)
    whole, expected = evaluate(model, tokens, [N_TOKENS], kv_type)
    parts, logits = evaluate(model, tokens, SPLITS[split], kv_type)

    np.testing.assert_array_equal(logits, expected)
    assert parts.n_past == whole.n_past == N_TOKENS
    assert parts.tokens == tokens
    assert_same_cache(parts, whole, n_layers(model))


@pytest.mark.parametrize("name", MODELS)
def test_mixed_key_and_value_types_split(models, name):
    model = models[name]
    tokens = sequence(model)
    whole = _turbokv.Session(model, N_CTX, "fp16", "turbo_kv_3b")
    expected = whole.eval(tokens, all_logits=True)
    parts = _turbokv.Session(model, N_CTX, "fp16", "turbo_kv_3b")
    logits = np.concatenate([parts.eval(tokens[:7], all_logits=True), parts.eval(tokens[7:], all_logits=True)])

    np.testing.assert_array_equal(logits, expected)
    assert_same_cache(parts, whole, n_layers(model))


def test_window_wraps_inside_one_batch(models):
    """One batch longer than the window equals the same tokens fed one at a time, with a full ring."""
    model = models["gemma3"]
    tokens = sequence(model, 2 * WINDOW + 1)
    whole, expected = evaluate(model, tokens, [len(tokens)], "fp32")
    single, logits = evaluate(model, tokens, [1] * len(tokens), "fp32")
    np.testing.assert_array_equal(logits, expected)

    assert_same_cache(single, whole, n_layers(model))


def test_fp16_cache_stores_rounded_fp32_values(models):
    """Layer 0's keys and values do not depend on the cache type, so fp16 must store them rounded."""
    model = models["gemma3"]
    tokens = sequence(model)
    exact, _ = evaluate(model, tokens, [N_TOKENS], "fp32")
    half, _ = evaluate(model, tokens, [N_TOKENS], "fp16")

    for exact_bytes, half_bytes in zip(exact.cache_bytes(0), half.cache_bytes(0)):
        rounded = np.frombuffer(exact_bytes, dtype="<f4").astype(np.float16)
        np.testing.assert_array_equal(np.frombuffer(half_bytes, dtype="<f2"), rounded)


# Truncation


@pytest.mark.parametrize("kv_type", turbokv.KV_TYPES)
def test_truncate_then_eval_matches_fresh(models, kv_type):
    model = models["llama"]
    tokens = sequence(model)
    other = sequence(model, 11, seed=4)
    session, _ = evaluate(model, tokens, [N_TOKENS], kv_type)

    session.truncate(9)
    assert session.n_past == 9
    assert session.tokens == tokens[:9]
    logits = session.eval(other, all_logits=True)

    fresh, expected = evaluate(model, tokens[:9] + other, [9, 11], kv_type)
    np.testing.assert_array_equal(logits, expected[9:])
    assert_same_cache(session, fresh, n_layers(model))


@pytest.mark.parametrize("kv_type", turbokv.KV_TYPES)
def test_truncate_one_token_after_wrap(models, kv_type):
    """Going back one token keeps a wrapped ring usable: the slot it frees is the one rewritten."""
    model = models["gemma3"]
    tokens = sequence(model)
    replacement = sequence(model, 1, seed=5)
    session, _ = evaluate(model, tokens, [N_TOKENS], kv_type)

    session.truncate(N_TOKENS - 1)
    assert session.n_past == N_TOKENS - 1
    logits = session.eval(replacement, all_logits=True)

    fresh, expected = evaluate(model, tokens[:-1] + replacement, [N_TOKENS], kv_type)
    np.testing.assert_array_equal(logits, expected[-1:])
    assert_same_cache(session, fresh, n_layers(model))


def test_truncate_deep_after_wrap_clears_sequence(models):
    """A wrapped ring has lost the keys an earlier position needs, so the session starts over."""
    model = models["gemma3"]
    tokens = sequence(model)
    session, _ = evaluate(model, tokens, [N_TOKENS], "fp32")

    session.truncate(N_TOKENS - 2)
    assert session.n_past == 0
    assert session.tokens == []

    logits = session.eval(tokens, all_logits=True)
    _, expected = evaluate(model, tokens, [N_TOKENS], "fp32")
    np.testing.assert_array_equal(logits, expected)


def test_truncate_before_wrap_keeps_prefix(models):
    model = models["gemma3"]
    tokens = sequence(model, WINDOW)
    other = sequence(model, 2, seed=6)
    session, _ = evaluate(model, tokens, [WINDOW], "fp32")

    session.truncate(1)
    assert session.n_past == 1
    logits = session.eval(other, all_logits=True)

    _, expected = evaluate(model, tokens[:1] + other, [3], "fp32")
    np.testing.assert_array_equal(logits, expected[1:])


# Sizes


def turbo_block_lengths(head_dim):
    """Split head_dim into power-of-two blocks of at most 128, largest first (docs/kv-cache-format.md)."""
    lengths = []
    rest = head_dim
    length = 128
    while rest > 0:
        if rest >= length:
            lengths.append(length)
            rest -= length
        else:
            length //= 2
    return lengths


def turbo_block_bytes(bits, length):
    """Packed codes plus a binary16 scale (docs/kv-cache-format.md)."""
    if bits == 3:
        codes = (3 * length + 7) // 8
    elif bits == 4:
        codes = (length + 1) // 2
    else:
        # 5-bit codes: a bit plane of the high bits and a nibble plane.
        codes = (length + 7) // 8 + (length + 1) // 2
    return codes + 2


def row_bytes(kv_type, head_dim):
    if kv_type == "fp32":
        return 4 * head_dim
    if kv_type == "fp16":
        return 2 * head_dim
    bits = int(kv_type[len("turbo_kv_"):-1])
    return sum(turbo_block_bytes(bits, length) for length in turbo_block_lengths(head_dim))


def layer_windows(config):
    """Sliding window of each layer (None on global layers): Gemma 3 makes every sixth layer global."""
    if config.arch != "gemma3":
        return [None] * config.n_layer
    return [None if il % 6 == 5 else config.sliding_window for il in range(config.n_layer)]


def sink_bytes(config, k_type):
    """TurboQuant key caches also keep position 0's keys in binary16, on every layer."""
    if not k_type.startswith("turbo"):
        return 0
    return 2 * config.n_kv_heads * config.n_embd_head


def expected_kv_bytes(config, n_ctx, k_type, v_type):
    head_dim = config.n_embd_head
    slot_bytes = config.n_kv_heads * (row_bytes(k_type, head_dim) + row_bytes(v_type, head_dim))
    total = 0
    for window in layer_windows(config):
        capacity = n_ctx if window is None else min(window, n_ctx)
        total += capacity * slot_bytes + sink_bytes(config, k_type)
    return total


@pytest.mark.parametrize("n_ctx", [2, 3, 17])
@pytest.mark.parametrize("v_type", turbokv.KV_TYPES)
@pytest.mark.parametrize("k_type", turbokv.KV_TYPES)
@pytest.mark.parametrize("name", MODELS)
def test_kv_bytes_match_block_arithmetic(models, configs, name, k_type, v_type, n_ctx):
    model = models[name]
    expected = expected_kv_bytes(configs[name], n_ctx, k_type, v_type)

    session = _turbokv.Session(model, n_ctx, k_type, v_type)
    assert session.kv_bytes == expected
    assert model.kv_cache_bytes(n_ctx, k_type, v_type) == expected


@pytest.mark.parametrize("kv_type", turbokv.KV_TYPES)
def test_cache_bytes_have_allocated_size(models, configs, kv_type):
    config = configs["gemma3"]
    session = _turbokv.Session(models["gemma3"], N_CTX, kv_type, kv_type)
    slot_bytes = config.n_kv_heads * row_bytes(kv_type, config.n_embd_head)
    for layer, window in enumerate(layer_windows(config)):
        capacity = N_CTX if window is None else window
        keys, values = session.cache_bytes(layer)
        assert len(keys) == capacity * slot_bytes, f"layer {layer} keys"
        assert len(values) == capacity * slot_bytes, f"layer {layer} values"


# Input errors


@pytest.mark.parametrize("bad", [-1, "n_vocab", 2**40])
def test_token_out_of_range_raises(models, bad):
    model = models["llama"]
    bad_id = model.n_vocab if bad == "n_vocab" else bad
    tokens = sequence(model, 5)
    session = _turbokv.Session(model, N_CTX, "fp32", "fp32")
    session.eval(tokens[:2])

    with pytest.raises(ValueError, match=str(bad_id)):
        session.eval([tokens[2], bad_id])
    assert session.n_past == 2
    assert session.tokens == tokens[:2]

    logits = session.eval(tokens[2:], all_logits=True)
    _, expected = evaluate(model, tokens, [5], "fp32")
    np.testing.assert_array_equal(logits, expected[2:])


def test_context_overflow_keeps_state(models):
    model = models["llama"]
    tokens = sequence(model, 9)
    session = _turbokv.Session(model, 8, "fp32", "fp32")
    session.eval(tokens[:6])

    with pytest.raises(turbokv.ContextOverflowError):
        session.eval(tokens[6:9])
    assert session.n_past == 6

    session.eval(tokens[6:8])
    assert session.n_past == 8


# TurboQuant accuracy


@pytest.mark.parametrize("name", MODELS)
def test_turbo_error_falls_with_bits(models, name):
    """More bits per coordinate must bring the logits closer to the fp32 cache's."""
    model = models[name]
    tokens = sequence(model)
    _, exact = evaluate(model, tokens, [N_TOKENS], "fp32")

    errors = []
    for kv_type in ["turbo_kv_3b", "turbo_kv_4b", "turbo_kv_5b"]:
        _, logits = evaluate(model, tokens, [N_TOKENS], kv_type)
        errors.append(np.sqrt(((logits - exact) ** 2).mean()))
    assert errors[0] > errors[1] > errors[2] > 0, errors
