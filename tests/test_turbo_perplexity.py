"""Perplexity of the compressed caches against turbokv's fp32 cache and llama.cpp's q4_0 cache.

Each case scores the first 16 chunks of 512 tokens of the shipped text with
a TurboQuant cache and an fp32 cache side by side (``perplexity_kl``), as
BENCHMARKS.md records. llama.cpp's perplexities with f16 and q4_0 caches on
the same text and chunks come from the logs that
benches/llama_cpp_baseline.sh wrote to benches/results/llama_cpp/.

Measured (perplexity increase over fp32, KL divergence from fp32):

| model | 5b/5b | 4b/4b | 4b keys, fp16 values | 3b/3b | llama.cpp q4_0 |
|---|---|---|---|---|---|
| Gemma 3 270M | +0.69%, 0.012 | +2.14%, 0.026 | +1.27%, 0.020 | +6.57%, 0.072 | +11.26% |
| SmolLM2-135M | +0.28%, 0.008 | +1.32%, 0.021 | +1.32%, 0.016 | +7.09%, 0.068 | +6.02% |

The computation is deterministic, so these bounds cannot flake; a change
that makes the caches worse fails them.

NOTE: on 16 chunks, perplexity increases below about 0.5% are noise. A
change can lower the KL divergence and still raise the increase (SmolLM2's
turbo_kv_4b keys with fp16 values: KL 0.0170 to 0.0161, +0.83% to +1.32%),
and reordering f32 additions in the weight kernels moves it as well. The
1.5% bound has 0.2% to 0.3% of margin on both models.
"""

import re
from pathlib import Path

import pytest

import turbokv
from turbokv import _turbokv

pytestmark = pytest.mark.slow

N_CTX = 512
N_CHUNKS = 16
LLAMA_LOGS = Path(__file__).resolve().parent.parent / "benches" / "results" / "llama_cpp"
LLAMA_NAMES = {"gemma_path": "gemma3-270m-q4_k_m", "smollm_path": "smollm2-135m-q4_1"}

# Largest accepted perplexity increase over the fp32 cache, in percent.
MAX_INCREASE = {
    ("turbo_kv_5b", "turbo_kv_5b"): 1.0,
    ("turbo_kv_4b", "fp16"): 1.5,
}

# Largest accepted KL divergence from the fp32 cache, per model. Measured:
# about 0.026 and 0.020 on Gemma, 0.021 and 0.016 on SmolLM2. Key centers
# without the per-pair chunk scaling gave 0.0292, 0.0239, 0.0239 and 0.0170,
# which these bounds reject.
MAX_KL = {
    "gemma_path": {("turbo_kv_4b", "turbo_kv_4b"): 0.027, ("turbo_kv_4b", "fp16"): 0.021},
    "smollm_path": {("turbo_kv_4b", "turbo_kv_4b"): 0.0225, ("turbo_kv_4b", "fp16"): 0.0175},
}


def llama_perplexity(model_fixture: str, cache_type: str) -> float:
    """Return llama-perplexity's final estimate from its committed log."""
    log = LLAMA_LOGS / f"{LLAMA_NAMES[model_fixture]}-ppl-{cache_type}.txt"
    match = re.search(r"Final estimate: PPL = ([0-9.]+)", log.read_text(encoding="utf-8"))
    assert match, f"{log} has no final estimate; rerun benches/llama_cpp_baseline.sh"
    return float(match.group(1))


@pytest.fixture(scope="module", params=["gemma_path", "smollm_path"])
def scored(request):
    """(model fixture name, {(K, V): perplexity_kl result}) for every type pair the tests use."""
    model = _turbokv.Model(str(request.getfixturevalue(request.param)), 2)
    tokens = model.tokenize(turbokv.model.read_perplexity_text(), add_special=True)[: N_CHUNKS * N_CTX]
    pairs = [
        ("turbo_kv_5b", "turbo_kv_5b"),
        ("turbo_kv_4b", "turbo_kv_4b"),
        ("turbo_kv_4b", "fp16"),
        ("turbo_kv_3b", "turbo_kv_3b"),
    ]
    return request.param, {pair: model.perplexity_kl(tokens, N_CTX, *pair) for pair in pairs}


def increase_percent(result: dict) -> float:
    return 100.0 * (result["ppl"] / result["ppl_base"] - 1.0)


@pytest.mark.parametrize("pair", list(MAX_INCREASE))
def test_perplexity_increase_within_goal(scored, pair):
    _, results = scored
    result = results[pair]

    assert result["n_chunks"] == N_CHUNKS
    assert increase_percent(result) <= MAX_INCREASE[pair], f"{pair}: {increase_percent(result):+.2f}%"


@pytest.mark.parametrize("pair", [("turbo_kv_4b", "turbo_kv_4b"), ("turbo_kv_4b", "fp16")])
def test_divergence_within_bound(scored, pair):
    model_fixture, results = scored
    kl = results[pair]["kl_divergence"]

    assert kl <= MAX_KL[model_fixture][pair], f"{pair}: KL {kl:.5f}"


def test_turbo_4b_beats_llama_q4_0(scored):
    model_fixture, results = scored
    llama_increase = 100.0 * (llama_perplexity(model_fixture, "q4_0") / llama_perplexity(model_fixture, "f16") - 1.0)

    ours = increase_percent(results[("turbo_kv_4b", "turbo_kv_4b")])

    assert ours < llama_increase, f"turbo_kv_4b {ours:+.2f}% against llama.cpp q4_0 {llama_increase:+.2f}%"


def test_fp32_base_matches_llama_f16(scored):
    model_fixture, results = scored
    base = results[("turbo_kv_4b", "fp16")]["ppl_base"]

    assert base == pytest.approx(llama_perplexity(model_fixture, "f16"), rel=0.01)


def test_divergence_falls_with_bits(scored):
    _, results = scored
    kl = {bits: results[(f"turbo_kv_{bits}b", f"turbo_kv_{bits}b")]["kl_divergence"] for bits in (3, 4, 5)}

    assert kl[3] > kl[4] > kl[5] > 0.0
