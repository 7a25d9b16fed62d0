"""turbokv against the numpy reference forward pass on tiny synthetic models.

tests/synthetic.py writes random llama and gemma3 GGUF files and
tests/reference.py runs them in float64 without turbokv. Three tolerances
apply, by weight storage:

- F32, F16 and BF16 weights: turbokv multiplies the same float weights with
  f32 activations and sums in f32, so logits agree to FLOAT_REL_TOL of the
  largest reference logit (measured: about 5e-7).
- Quantized weights: the reference rounds each matrix input as ggml does
  (quantize_activations=True). turbokv agrees to about 1e-6 until a value
  whose f32 rounding differs in the last bit lands on the other side of an
  8-bit rounding step. Each such flip moves one activation by one step, and
  a few flips move logits by up to 0.08 (measured on 6 seeds). QUANT_MAX_DIFF
  and QUANT_RMS_DIFF bound that; the ratio check below makes sure turbokv
  still reproduces the rounding rather than skipping it.
- fp16 KV cache: the reference rounds keys and values to f16 after rope, and
  FP16_REL_TOL allows for values that round to the other f16 neighbour.

NOTE: ggml rounds activations to f16 (bf16) before products with F16 (BF16)
weights, but turbokv keeps them in f32. The float tests therefore compare
against the reference without activation rounding.
"""

import numpy as np
import pytest

from turbokv import _turbokv

from reference import ReferenceModel
from synthetic import random_tokens, write_gemma3, write_llama

N_THREADS = 2
N_CTX = 64

# Largest accepted |turbokv - reference| over the largest |reference logit|,
# for float weights with an fp32 cache (measured: below 1e-6).
FLOAT_REL_TOL = 2e-5

# The same with an fp16 cache. A key or value whose f32 value differs from
# the reference's in the last bit can round to the neighbouring f16, which
# moves it by 2^-11 of its size (measured: 4e-5 on one model).
FP16_REL_TOL = 1e-4

# Largest accepted |turbokv - reference| of any logit with quantized weights
# (logits of these models reach about 4), and of a row's root mean square.
QUANT_MAX_DIFF = 0.15
QUANT_RMS_DIFF = 0.04

# turbokv must be at least this much closer (in RMS) to the reference that
# rounds activations than the two references are to each other.
ROUNDING_RATIO = 0.75

WRITERS = {"llama": write_llama, "gemma3": write_gemma3}

FLOAT_TYPES = ["F32", "F16", "BF16"]
QUANT_TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]

# (n_head, n_kv_heads) for GQA ratios 1, 2, 3 and 4.
HEAD_LAYOUTS = {1: (4, 4), 2: (4, 2), 3: (6, 2), 4: (4, 1)}


def build(tmp_path, arch, name=None, **overrides):
    """Write a synthetic model to tmp_path / `name` (default: arch.gguf) and return (path, config)."""
    settings = {"n_embd": 128, "n_head": 4, "n_kv_heads": 2, "n_ff": 256}
    settings.update(overrides)
    path = tmp_path / (name or f"{arch}.gguf")
    config = WRITERS[arch](path, **settings)
    return path, config


def engine_logits(path, tokens, cache_type="fp32"):
    """Logits [T, n_vocab] of turbokv evaluating `tokens` as one batch."""
    model = _turbokv.Model(str(path), N_THREADS)
    session = _turbokv.Session(model, N_CTX, cache_type, cache_type)
    return session.eval(tokens, all_logits=True).astype(np.float64)


def engine_logits_stepwise(path, tokens, cache_type="fp32"):
    """Logits [T, n_vocab] of turbokv evaluating `tokens` one at a time, as decoding does."""
    model = _turbokv.Model(str(path), N_THREADS)
    session = _turbokv.Session(model, N_CTX, cache_type, cache_type)
    return np.stack([session.eval([t]) for t in tokens]).astype(np.float64)


def tokens_for(path, n_tokens, seed=1):
    n_vocab = ReferenceModel(path).hparams.n_vocab
    return random_tokens(n_vocab, n_tokens, seed=seed)


def assert_float_match(ours, expected, label="", rel_tol=FLOAT_REL_TOL):
    assert ours.shape == expected.shape
    scale = np.abs(expected).max()
    rel = np.abs(ours - expected).max() / scale
    assert rel < rel_tol, f"{label}: max difference {rel:.2e} of the logit scale {scale:.3f}"
    np.testing.assert_array_equal(ours.argmax(axis=1), expected.argmax(axis=1), err_msg=label)


def assert_quant_match(ours, rounded, unrounded, label=""):
    """Compare with the reference that rounds activations (`rounded`) and the one that does not."""
    diff = ours - rounded
    max_diff = np.abs(diff).max()
    assert max_diff < QUANT_MAX_DIFF, f"{label}: max logit difference {max_diff:.4f}"

    rms = np.sqrt((diff ** 2).mean(axis=1)).max()
    assert rms < QUANT_RMS_DIFF, f"{label}: RMS logit difference {rms:.4f}"

    ours_rms = np.sqrt((diff ** 2).mean())
    rounding_rms = np.sqrt(((rounded - unrounded) ** 2).mean())
    assert ours_rms < ROUNDING_RATIO * rounding_rms, (
        f"{label}: turbokv is {ours_rms:.2e} from the rounded reference, but the activation "
        f"rounding itself only moves logits by {rounding_rms:.2e}"
    )


# Float weights: head dimensions and GQA ratios


LLAMA_HEAD_DIMS = [32, 64, 80, 96, 128]
GEMMA_HEAD_DIMS = [32, 64, 80, 128, 256]
SHAPES = [("llama", d, g) for d in LLAMA_HEAD_DIMS for g in HEAD_LAYOUTS] + [
    ("gemma3", d, g) for d in GEMMA_HEAD_DIMS for g in HEAD_LAYOUTS
]


@pytest.mark.parametrize("arch,head_dim,gqa", SHAPES, ids=[f"{a}-hd{d}-gqa{g}" for a, d, g in SHAPES])
def test_head_shapes_match_reference(tmp_path, arch, head_dim, gqa):
    n_head, n_kv_heads = HEAD_LAYOUTS[gqa]
    path, _ = build(tmp_path, arch, head_dim=head_dim, n_head=n_head, n_kv_heads=n_kv_heads)
    tokens = tokens_for(path, 16)

    expected = ReferenceModel(path).forward(tokens)
    assert_float_match(engine_logits(path, tokens), expected, f"{arch} head_dim {head_dim} gqa {gqa}")


# Sliding windows


@pytest.mark.parametrize("window", [1, 3, 5, 24])
def test_sliding_window_matches_reference(tmp_path, window):
    """Run seven Gemma 3 layers (5 is global, the others local) over 20 tokens, which wrap windows below 20."""
    path, _ = build(tmp_path, "gemma3", n_layer=7, sliding_window=window, n_embd=64, n_ff=128)
    tokens = tokens_for(path, 20)

    reference = ReferenceModel(path)
    assert reference.hparams.swa_layers == [True] * 5 + [False, True]
    expected = reference.forward(tokens)
    assert_float_match(engine_logits(path, tokens), expected, f"window {window}")


def test_window_changes_logits(tmp_path):
    """The window must matter: a model with window 3 differs from the same weights with window 24."""
    short, _ = build(tmp_path, "gemma3", "short.gguf", n_layer=2, sliding_window=3)
    long_path, _ = build(tmp_path, "gemma3", "long.gguf", n_layer=2, sliding_window=24)
    tokens = tokens_for(short, 12)

    ours_short = engine_logits(short, tokens)
    ours_long = engine_logits(long_path, tokens)
    np.testing.assert_allclose(ours_short[:3], ours_long[:3], rtol=0, atol=1e-5)
    assert np.abs(ours_short[3:] - ours_long[3:]).max() > 1e-2


# Weight storage types


WEIGHT_CASES = [(a, t) for a in WRITERS for t in FLOAT_TYPES + QUANT_TYPES]


@pytest.mark.parametrize("arch,weight_type", WEIGHT_CASES, ids=[f"{a}-{t}" for a, t in WEIGHT_CASES])
def test_weight_types_match_reference(tmp_path, arch, weight_type):
    # Rows are 256 wide so that K-quant blocks fit. The tied embedding has the same type.
    path, _ = build(tmp_path, arch, n_embd=256, head_dim=64, n_ff=512, weight_type=weight_type)
    tokens = tokens_for(path, 12)
    reference = ReferenceModel(path)
    ours = engine_logits(path, tokens)

    label = f"{arch} {weight_type}"
    if weight_type in FLOAT_TYPES:
        assert_float_match(ours, reference.forward(tokens), label)
    else:
        rounded = reference.forward(tokens, quantize_activations=True)
        assert_quant_match(ours, rounded, reference.forward(tokens), label)


@pytest.mark.parametrize("arch", sorted(WRITERS))
def test_mixed_types_and_separate_output(tmp_path, arch):
    """Per-role storage as quantizers mix them, with an untied output matrix."""
    tensor_types = {
        "token_embd": "Q4_K", "output": "Q6_K", "attn_q": "Q4_0", "attn_k": "Q5_1",
        "attn_v": "Q8_0", "attn_output": "Q5_K", "ffn_gate": "Q3_K", "ffn_up": "Q4_1",
        "ffn_down": "Q2_K",
    }
    path, _ = build(tmp_path, arch, n_embd=256, head_dim=64, n_ff=512, tied_output=False,
                    tensor_types=tensor_types)
    tokens = tokens_for(path, 12)
    reference = ReferenceModel(path)
    assert "output.weight" in reference.tensors

    rounded = reference.forward(tokens, quantize_activations=True)
    unrounded = reference.forward(tokens)
    assert_quant_match(engine_logits(path, tokens), rounded, unrounded, arch)
    # Evaluated one token at a time, the projections that share an activation
    # encoding run in one dispatch, and the others encode their own input.
    assert_quant_match(engine_logits_stepwise(path, tokens), rounded, unrounded, f"{arch} stepwise")


@pytest.mark.parametrize("arch", sorted(WRITERS))
def test_decode_matches_batch_bits(tmp_path, arch):
    """Decode splits n_ff 600 into FFN tasks of 24 rows on 2 threads, and the logits keep the batch's bits."""
    path, _ = build(tmp_path, arch, n_ff=600)
    tokens = tokens_for(path, 6)
    np.testing.assert_array_equal(engine_logits_stepwise(path, tokens), engine_logits(path, tokens))


@pytest.mark.parametrize("arch", sorted(WRITERS))
def test_separate_output_float(tmp_path, arch):
    path, _ = build(tmp_path, arch, tied_output=False)
    tokens = tokens_for(path, 10)
    reference = ReferenceModel(path)
    assert "output.weight" in reference.tensors
    assert_float_match(engine_logits(path, tokens), reference.forward(tokens), arch)


# Rope scaling


@pytest.mark.parametrize("arch", sorted(WRITERS))
@pytest.mark.parametrize("factor", [2.0, 8.0])
def test_linear_rope_scaling_matches_reference(tmp_path, arch, factor):
    """Gemma 3 has 7 layers so that both local layers (never scaled) and a global layer run."""
    n_layer = 7 if arch == "gemma3" else 2
    path, _ = build(tmp_path, arch, n_layer=n_layer, n_embd=64, n_ff=128, rope_scaling_factor=factor)
    tokens = tokens_for(path, 20)

    expected = ReferenceModel(path).forward(tokens)
    assert_float_match(engine_logits(path, tokens), expected, f"{arch} factor {factor}")


# Gemma 3 27B attention scale


def test_gemma3_62_layers_scale_by_n_embd(tmp_path):
    """llama.cpp treats a 62-layer Gemma 3 as the 27B and scales q by 1/sqrt(n_embd / n_head)."""
    path, _ = build(tmp_path, "gemma3", n_layer=62, n_embd=64, n_head=4, n_kv_heads=2, head_dim=32, n_ff=64)
    tokens = tokens_for(path, 8)
    reference = ReferenceModel(path)
    assert reference.hparams.attention_scale == 1 / 4

    assert_float_match(engine_logits(path, tokens), reference.forward(tokens), "62-layer gemma3")


# fp16 KV cache


@pytest.mark.parametrize("arch", sorted(WRITERS))
@pytest.mark.parametrize("weight_type", ["F32", "Q4_K"])
def test_fp16_cache_matches_reference(tmp_path, arch, weight_type):
    path, _ = build(tmp_path, arch, n_embd=256, head_dim=64, n_ff=512, n_layer=3,
                    sliding_window=5, weight_type=weight_type)
    tokens = tokens_for(path, 16)
    reference = ReferenceModel(path)
    ours = engine_logits(path, tokens, "fp16")

    label = f"{arch} {weight_type} fp16 cache"
    if weight_type == "F32":
        assert_float_match(ours, reference.forward(tokens, round_kv_to_f16=True), label, FP16_REL_TOL)
    else:
        rounded = reference.forward(tokens, round_kv_to_f16=True, quantize_activations=True)
        unrounded = reference.forward(tokens, round_kv_to_f16=True)
        assert_quant_match(ours, rounded, unrounded, label)


def test_fp16_cache_rounding_is_visible(tmp_path):
    """The f16 rounding of K and V must show: turbokv's fp16 cache is closer to the rounded reference."""
    path, _ = build(tmp_path, "llama", n_layer=3)
    tokens = tokens_for(path, 16)
    reference = ReferenceModel(path)
    ours = engine_logits(path, tokens, "fp16")

    to_rounded = np.abs(ours - reference.forward(tokens, round_kv_to_f16=True)).max()
    to_exact = np.abs(ours - reference.forward(tokens)).max()
    assert to_rounded * 10 < to_exact
