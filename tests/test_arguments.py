"""Invalid arguments to the Python API: each raises ValueError naming the value.

The same limits on the command line (exit code 2) are in test_cli_args.py.
"""

import logging
import math

import pytest

import turbokv


@pytest.fixture(scope="module")
def smollm(smollm_path):
    return turbokv.Model(smollm_path, n_ctx=32, n_threads=1, cache_type_k="fp32", cache_type_v="fp32")


@pytest.mark.parametrize("n_ctx", [0, -1, -(2**40)])
def test_context_not_positive_raises(smollm_path, n_ctx):
    with pytest.raises(ValueError, match=f"n_ctx={n_ctx}"):
        turbokv.Model(smollm_path, n_ctx=n_ctx)


def test_context_above_trained_length_warns(smollm_path, caplog):
    n_ctx_train = turbokv.Model(smollm_path, n_ctx=16).n_ctx_train

    with caplog.at_level(logging.WARNING, logger="turbokv.model"):
        model = turbokv.Model(smollm_path, n_ctx=n_ctx_train + 1)

    assert model.n_ctx == n_ctx_train + 1
    assert f"n_ctx={n_ctx_train + 1}" in caplog.text
    assert str(n_ctx_train) in caplog.text


@pytest.mark.parametrize("n_threads", [-1, -64])
def test_negative_threads_raises(smollm_path, n_threads):
    with pytest.raises(ValueError, match=f"n_threads={n_threads}"):
        turbokv.Model(smollm_path, n_threads=n_threads)


def test_zero_threads_uses_every_core(smollm_path):
    import os

    model = turbokv.Model(smollm_path, n_ctx=16, n_threads=0)

    assert model.n_threads == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("option", ["cache_type_k", "cache_type_v"])
def test_unknown_kv_type_lists_choices(smollm_path, option):
    with pytest.raises(ValueError) as raised:
        turbokv.Model(smollm_path, **{option: "turbo_kv_9b"})

    message = str(raised.value)
    assert f"{option}='turbo_kv_9b'" in message
    for kv_type in turbokv.KV_TYPES:
        assert kv_type in message


@pytest.mark.parametrize(
    "option, value",
    [
        ("temperature", -0.1),
        ("temperature", math.nan),
        ("top_p", 0.0),
        ("top_p", -0.5),
        ("top_p", 1.01),
        ("top_k", -1),
        ("min_p", 1.5),
        ("repeat_penalty", 0.0),
        ("repeat_last_n", -1),
        ("max_tokens", 0),
        ("max_tokens", -3),
        ("seed", -1),
    ],
)
def test_invalid_sampling_option_raises(smollm, option, value):
    with pytest.raises(ValueError) as raised:
        smollm.generate("Hi", **{option: value})

    assert isinstance(raised.value, turbokv.TurbokvError)
    assert f"invalid {option}=" in str(raised.value)
    assert "expected" in str(raised.value)


@pytest.mark.parametrize("option, value", [("top_k", 1.5), ("max_tokens", "4"), ("temperature", "hot")])
def test_wrong_type_option_raises_type_error(smollm, option, value):
    with pytest.raises(TypeError, match=option):
        smollm.generate("Hi", **{option: value})


@pytest.mark.parametrize("token", [-1, 49152, 2**40])
def test_token_id_out_of_range_raises(smollm, token):
    with pytest.raises(ValueError, match=f"token id={token}"):
        smollm.generate([1, token])


def test_limits_of_ranges_accepted(smollm):
    text = smollm.generate("Hi", max_tokens=1, temperature=0, top_p=1.0, top_k=0, min_p=0.0, seed=0)

    assert isinstance(text, str)


def test_missing_model_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        turbokv.Model(tmp_path / "absent.gguf")


def test_directory_as_model_raises(tmp_path):
    with pytest.raises(IsADirectoryError, match="directory"):
        turbokv.Model(tmp_path)
