"""Argument checks of the ``turbokv`` command line, which run before any model is loaded.

A model path that does not exist is passed wherever the check under test
must reject the arguments first: the command then exits 2 (usage error)
instead of 1 (model not found), so loading was never attempted.
"""

import pytest
from click.testing import CliRunner

import turbokv
from turbokv.cli import main

MISSING_MODEL = "/nonexistent/turbokv-test-model.gguf"


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_unknown_kv_type_lists_choices():
    for flag in ("-k", "--cache-type-k", "-v", "--cache-type-v"):
        result = invoke("run", MISSING_MODEL, flag, "turbo_kv_9b")

        assert result.exit_code == 2, result.output
        assert "turbo_kv_9b" in result.output
        for kv_type in turbokv.KV_TYPES:
            assert kv_type in result.output


def test_ppl_unknown_kv_type_exits_2():
    result = invoke("ppl", MISSING_MODEL, "-k", "q3_bogus")

    assert result.exit_code == 2, result.output
    assert "turbo_kv_4b" in result.output


@pytest.mark.parametrize(
    "option, value",
    [
        ("--temp", "-1"),
        ("--temp", "nan"),
        ("--top-p", "0"),
        ("--top-p", "1.5"),
        ("--top-k", "-1"),
        ("--min-p", "1.5"),
        ("--min-p", "-0.1"),
        ("--repeat-penalty", "0"),
        ("-n", "0"),
        ("--n-predict", "-5"),
        ("--ctx", "0"),
        ("-t", "-1"),
        ("--seed", "-1"),
        ("--ctx", "many"),
    ],
)
def test_run_invalid_number_exits_2(option, value):
    result = invoke("run", MISSING_MODEL, option, value)

    assert result.exit_code == 2, result.output
    assert option in result.output
    assert value in result.output


@pytest.mark.parametrize("option, value", [("--ctx", "0"), ("-t", "-1")])
def test_ppl_invalid_number_exits_2(option, value):
    result = invoke("ppl", MISSING_MODEL, option, value)

    assert result.exit_code == 2, result.output
    assert option in result.output


def test_valid_limits_reach_model_loading():
    # The edges of each range are valid, so the command gets as far as the missing file.
    result = invoke(
        "run", MISSING_MODEL, "--temp", "0", "--top-p", "1", "--top-k", "0", "--min-p", "0",
        "-n", "1", "--ctx", "1", "-t", "0",
    )

    assert result.exit_code == 1, result.output


@pytest.mark.parametrize("command", ["run", "ppl", "info", "tokenize"])
def test_missing_model_exits_1_naming_path(command):
    args = [command, MISSING_MODEL] + (["hello"] if command == "tokenize" else [])
    result = invoke(*args)

    assert result.exit_code == 1, result.output
    assert MISSING_MODEL in result.output
    assert "Traceback" not in result.output
    assert result.output.count("\n") == 1


def test_info_without_model_exits_2():
    result = invoke("info")

    assert result.exit_code == 2, result.output
    assert "--cpu" in result.output


def test_info_cpu_prints_simd_path():
    result = invoke("info", "--cpu")

    assert result.exit_code == 0, result.output
    assert result.output.strip() in ("scalar", "avx2", "neon")


def test_invalid_gguf_exits_1(tmp_path):
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_bytes(b"this is not a GGUF file\n" * 8)

    result = invoke("info", str(not_gguf))

    assert result.exit_code == 1, result.output
    assert result.output.startswith("turbokv: error: ")
    assert "Traceback" not in result.output


def test_ctrl_c_exits_130(monkeypatch):
    class InterruptedModel:
        def __init__(self, *args, **kwargs):
            raise KeyboardInterrupt

    monkeypatch.setattr("turbokv.cli.Model", InterruptedModel)
    result = invoke("run", MISSING_MODEL, "-p", "hello")

    assert result.exit_code == 130, result.output
    assert "interrupted" in result.output
    assert "Traceback" not in result.output
