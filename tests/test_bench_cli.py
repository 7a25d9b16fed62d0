"""turbokv bench and turbokv ppl --kl-divergence on SmolLM2-135M, with small sizes.

Each test evaluates real text with two caches, so the module is marked slow."""

import json

import pytest
from click.testing import CliRunner

from turbokv import _turbokv
from turbokv.bench import WARMUP_STEPS
from turbokv.cli import main

N_CTX = 64

pytestmark = pytest.mark.slow


def invoke(*args):
    result = CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def smollm_native(smollm_path):
    return _turbokv.Model(str(smollm_path), 2)


@pytest.fixture(scope="module")
def short_text(tmp_path_factory):
    """The start of the shipped text: about 3 chunks of N_CTX tokens, so the whole file scores fast."""
    path = tmp_path_factory.mktemp("text") / "short.txt"
    path.write_text(open_text()[:1000], encoding="utf-8")
    return path


def test_ppl_kl_fp32_against_itself(smollm_path, short_text):
    result = invoke(
        "ppl", smollm_path, "-f", short_text, "--ctx", N_CTX, "-k", "fp32", "-v", "fp32", "-t", 2,
        "--kl-divergence", "--json",
    )
    stats = json.loads(result.stdout)
    assert stats["n_chunks"] >= 2
    assert stats["kl_divergence"] == 0.0
    assert stats["kl_divergence_max"] == 0.0
    assert stats["top1_agreement"] == 100.0
    assert stats["ppl"] == stats["ppl_base"]


@pytest.mark.parametrize("kl", [False, True])
def test_ppl_chunks_limits_scored_chunks(smollm_path, short_text, kl):
    flags = ["--kl-divergence"] if kl else []
    result = invoke(
        "ppl", smollm_path, "-f", short_text, "--ctx", N_CTX, "--chunks", 2, "-k", "fp16", "-v", "fp16", "-t", 2,
        "--json", *flags,
    )
    stats = json.loads(result.stdout)
    assert stats["n_chunks"] == 2
    assert stats["n_scored"] == 2 * (N_CTX - 1 - N_CTX // 2)


def test_ppl_kl_fp16_matches_plain_ppl(smollm_path, smollm_native):
    tokens = smollm_native.tokenize(open_text(), add_special=True)[: 3 * N_CTX]
    kl = smollm_native.perplexity_kl(tokens, N_CTX, "fp16", "fp16")
    plain_fp16 = smollm_native.perplexity(tokens, N_CTX, "fp16", "fp16")
    plain_fp32 = smollm_native.perplexity(tokens, N_CTX, "fp32", "fp32")

    assert kl["n_chunks"] == 3
    assert kl["n_scored"] == 3 * (N_CTX - 1 - N_CTX // 2)
    assert kl["ppl"] == pytest.approx(plain_fp16["ppl"], rel=1e-12)
    assert kl["ppl_base"] == pytest.approx(plain_fp32["ppl"], rel=1e-12)
    # fp16 rounding of keys and values moves the distributions a little, not a lot.
    assert 0.0 < kl["kl_divergence"] < 0.05
    assert kl["kl_divergence_max"] >= kl["kl_divergence"]
    assert 80.0 <= kl["top1_agreement"] <= 100.0


def test_ppl_kl_rejects_short_text(smollm_path, tmp_path):
    text = tmp_path / "short.txt"
    text.write_text("Too short to score.", encoding="utf-8")
    result = CliRunner().invoke(main, ["ppl", str(smollm_path), "-f", str(text), "--ctx", "64", "--kl-divergence"])
    assert result.exit_code == 1
    assert "needs at least 128" in result.stderr


def test_bench_json_report(smollm_path, tmp_path):
    out = tmp_path / "bench.json"
    result = invoke(
        "bench", smollm_path, "-k", "fp32,fp16,turbo_kv_4b", "--depth", "16,0", "--ctx", N_CTX, "--chunks", 2,
        "--runs", 2, "-t", 2, "--json", out,
    )
    report = json.loads(out.read_text(encoding="utf-8"))
    results = {r["kv_type"]: r for r in report["results"]}

    # Every requested type is either measured or skipped with its error.
    assert set(results) | set(report["skipped"]) == {"fp32", "fp16", "turbo_kv_4b"}
    assert report["settings"]["depths"] == [0, 16]
    assert report["machine"]["cores"] >= 1
    assert report["turbokv_version"] == _turbokv.__version__

    fp32, fp16 = results["fp32"], results["fp16"]
    assert fp32["row_bytes"] == 4 * 64
    assert fp16["bits_per_element"] == 16.0
    assert fp16["compression_vs_fp32"] == 2.0
    assert fp16["kv_bytes"]["16"] * 2 == fp32["kv_bytes"]["16"]
    assert fp32["decode_vs_fp32_percent"] == {"0": 100.0, "16": 100.0}
    assert len(fp16["decode_step_seconds"]["16"]) == 2
    assert fp16["prefill_tokens_per_second"] > 0
    assert fp32["kl_divergence"] == 0.0
    assert fp16["kl_divergence"] > 0.0
    assert fp16["perplexity_delta"] == pytest.approx(fp16["perplexity"] - fp32["perplexity"])
    assert "| fp16 | 128 | 16.00 |" in result.stdout


@pytest.mark.parametrize("model_fixture", ["smollm_path", "gemma_path"])
def test_bench_table_json_and_plot(request, model_fixture, tmp_path):
    model_path = request.getfixturevalue(model_fixture)
    json_path, png_path = tmp_path / "bench.json", tmp_path / "bench.png"
    result = invoke(
        "bench", model_path, "-k", "fp32,turbo_kv_4b", "--depth", "0,16", "--ctx", N_CTX, "--chunks", 2,
        "--runs", 2, "-t", 2, "--json", json_path, "--plot", png_path,
    )

    assert "| turbo_kv_4b |" in result.stdout
    report = json.loads(json_path.read_text(encoding="utf-8"))
    assert [r["kv_type"] for r in report["results"]] == ["fp32", "turbo_kv_4b"]
    png = png_path.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    # Two titled panels with axes and a legend are far larger than an empty image.
    assert len(png) > 20_000


def test_bench_rejects_unknown_type(smollm_path):
    result = CliRunner().invoke(main, ["bench", str(smollm_path), "-k", "fp32,q9_9"])
    assert result.exit_code == 2
    assert "q9_9" in result.output


def open_text() -> str:
    from turbokv.model import read_perplexity_text

    return read_perplexity_text()


def test_bench_help_states_warmup_steps():
    result = invoke("bench", "--help")
    text = " ".join(result.output.split())
    assert f"after {WARMUP_STEPS} untimed steps" in text
