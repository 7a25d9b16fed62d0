"""Malformed, truncated and inconsistent model files.

Every file must make ``turbokv.Model`` raise turbokv's own exception (a
``TurbokvError``, which is a ``ValueError``) whose message names the field or
tensor, within a second, with memory bounded by the file size. The loads run
in child processes (tests/load_worker.py), so a crash or hang fails the case
instead of ending the test run. The child limits its address space, so an
allocation sized by an unchecked header number aborts it even if its pages
would never be touched.

Three groups of files:

- the hand-built cases of ``gguf_cases.all_cases()``;
- the real Gemma 3 and SmolLM2 files, truncated at every structural boundary
  (header fields, metadata entries, tensor infos, padding, tensor data) and at
  seeded random points;
- synthetic llama and gemma3 models (``synthetic.py``) with a key of the
  wrong type, a missing key, vocabulary arrays of mismatched lengths, a
  missing or misshaped tensor, an unknown architecture or tensor type.
"""

from __future__ import annotations

import json
import mmap
import os
import random
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import gguf
import pytest

import turbokv

import gguf_cases
from gguf_cases import ARRAY, FLOAT32, INT32, STRING, UINT8, UINT32, Tensor, array_payload, gguf_string, kv_entry, u32
from synthetic import write_gemma3, write_llama

WORKER = Path(__file__).with_name("load_worker.py")
# Child processes import the same turbokv as this process, installed or not.
PYTHON_PATH = str(Path(turbokv.__file__).resolve().parents[1])

MAX_SECONDS_PER_CASE = 1.0

# Growth of the child's peak RSS allowed on top of its baseline: twice the
# file size (mapped pages, the vocabulary's strings and hash maps built from
# the header) plus a fixed allowance for allocator and thread overhead.
RSS_SLACK_BYTES = 64 * 2**20

# Address space the child may reserve beyond what it uses after importing
# turbokv: room for the mmap of the largest file plus thread stacks and
# allocator arenas, far below what an unchecked header count would request.
ADDRESS_SPACE_HEADROOM = 2**30

# Seconds a worker may run per case before it counts as hung, plus a start-up allowance.
WORKER_SECONDS_PER_CASE = 2.0
WORKER_START_SECONDS = 30.0

RANDOM_CUTS_PER_MODEL = 24


# ---------------------------------------------------------------------------
# Running cases in child processes.


def run_worker(cases: Sequence[dict]) -> Tuple[List[dict], int, str]:
    """Run one worker over ``cases``; return its result lines, exit status and stderr."""
    request = json.dumps({"address_space_headroom": ADDRESS_SPACE_HEADROOM, "cases": list(cases)})
    env = dict(os.environ, PYTHONPATH=PYTHON_PATH + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen(
        [sys.executable, str(WORKER)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    timeout = WORKER_START_SECONDS + WORKER_SECONDS_PER_CASE * len(cases)
    try:
        stdout, stderr = process.communicate(request, timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        stderr += f"\nworker killed after {timeout:.0f} s"
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return lines, process.returncode, stderr


def run_cases(cases: Sequence[dict]) -> Dict[str, dict]:
    """Run ``cases`` and return each case's outcome by name.

    When a worker dies or hangs, the first case without a result is recorded
    as ``crashed`` and a new worker carries on with the cases after it.
    """
    outcomes: Dict[str, dict] = {}
    pending = list(cases)
    while pending:
        lines, returncode, stderr = run_worker(pending)
        ready = lines[0] if lines and lines[0].get("ready") else None
        if ready is None:
            raise RuntimeError(f"the load worker failed to start (exit status {returncode}):\n{stderr[-4000:]}")

        for line in lines[1:]:
            line["baseline_rss_kib"] = ready["max_rss_kib"]
            outcomes[line["name"]] = line
        done = len(lines) - 1
        if done == len(pending):
            break

        crashed = pending[done]
        outcomes[crashed["name"]] = {
            "outcome": "crashed",
            "returncode": returncode,
            "stderr": stderr[-2000:],
        }
        pending = pending[done + 1 :]
    return outcomes


def check_outcome(outcome: dict, expected: Sequence[str]) -> List[str]:
    """Return the problems with one case's outcome; an empty list means the case passed."""
    if outcome["outcome"] == "crashed":
        return [f"the loader crashed or hung (exit status {outcome['returncode']}): {outcome['stderr']}"]
    if outcome["outcome"] == "loaded":
        return ["the file loaded without error"]

    problems = []
    if not outcome["is_turbokv_error"]:
        problems.append(f"raised {outcome['type']}, not a turbokv.TurbokvError: {outcome['message']}")
    missing = [text for text in expected if text not in outcome["message"]]
    if missing:
        problems.append(f"message {outcome['message']!r} lacks {missing}")
    if outcome["seconds"] > MAX_SECONDS_PER_CASE:
        problems.append(f"took {outcome['seconds']:.2f} s, more than {MAX_SECONDS_PER_CASE} s")

    growth = (outcome["max_rss_kib"] - outcome["baseline_rss_kib"]) * 1024
    allowed = 2 * outcome["file_bytes"] + RSS_SLACK_BYTES
    if growth > allowed:
        problems.append(f"peak RSS grew by {growth} bytes, more than {allowed} for a {outcome['file_bytes']}-byte file")
    return problems


def assert_all_rejected(cases: Sequence[dict], expected: Dict[str, Sequence[str]]) -> None:
    outcomes = run_cases(cases)
    failures = []
    for case in cases:
        problems = check_outcome(outcomes[case["name"]], expected[case["name"]])
        failures.extend(f"{case['name']}: {problem}" for problem in problems)
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures[:40])


# ---------------------------------------------------------------------------
# Hand-built malformed files.

STATIC_CASES = gguf_cases.all_cases()


@pytest.fixture(scope="module")
def static_outcomes(tmp_path_factory) -> Dict[str, dict]:
    folder = tmp_path_factory.mktemp("gguf-cases")
    cases = []
    for index, (name, data, _) in enumerate(STATIC_CASES):
        path = folder / f"case-{index}.gguf"
        path.write_bytes(data)
        cases.append({"name": name, "path": str(path)})
    return run_cases(cases)


@pytest.mark.parametrize("name, expected", [(name, expected) for name, _, expected in STATIC_CASES])
def test_malformed_file_rejected(static_outcomes, name, expected):
    problems = check_outcome(static_outcomes[name], [expected])

    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------
# Truncated real models.


def _align(position: int, alignment: int) -> int:
    return (position + alignment - 1) // alignment * alignment


class GgufLayout:
    """Positions of the fields of a GGUF file, from a walk of its header.

    ``gguf.GGUFReader`` would give the same offsets but takes seconds on a
    vocabulary of 262k tokens, so this walks the bytes directly.
    """

    def __init__(self, data) -> None:
        tensor_count, kv_count = struct.unpack_from("<QQ", data, 8)
        # (key, value type id, entry start, value start, value end)
        self.kvs: List[Tuple[str, int, int, int, int]] = []
        position = 24
        for _ in range(kv_count):
            key_end = gguf_cases._skip_string(data, position)
            key = bytes(data[position + 8 : key_end]).decode("utf-8")
            (type_id,) = struct.unpack_from("<I", data, key_end)
            value_end = gguf_cases._skip_value(data, key_end + 4, type_id)
            self.kvs.append((key, type_id, position, key_end + 4, value_end))
            position = value_end

        # (name, dims, type id, info start, data offset relative to the data section)
        self.tensors: List[Tuple[str, List[int], int, int, int]] = []
        for _ in range(tensor_count):
            name_end = gguf_cases._skip_string(data, position)
            name = bytes(data[position + 8 : name_end]).decode("utf-8")
            (n_dims,) = struct.unpack_from("<I", data, name_end)
            dims = list(struct.unpack_from(f"<{n_dims}Q", data, name_end + 4))
            type_id, offset = struct.unpack_from("<IQ", data, name_end + 4 + 8 * n_dims)
            self.tensors.append((name, dims, type_id, position, offset))
            position = name_end + 4 + 8 * n_dims + 12

        self.infos_end = position
        self.data_start = _align(position, self._alignment(data))

    def _alignment(self, data) -> int:
        for key, type_id, _, value_start, _ in self.kvs:
            if key == gguf_cases.ALIGNMENT_KEY and type_id == UINT32:
                return struct.unpack_from("<I", data, value_start)[0]
        return gguf_cases.DEFAULT_ALIGNMENT


def tensor_n_bytes(dims: Sequence[int], type_id: int) -> int:
    block_size, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(type_id)]
    n_elements = 1
    for dim in dims:
        n_elements *= dim
    return n_elements // block_size * type_size


def structural_boundaries(path: Path) -> Tuple[List[Tuple[str, int]], int]:
    """Return (label, file offset) of every field boundary of a GGUF file, and the end of its tensor data."""
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        layout = GgufLayout(data)

    boundaries = [("magic", 0), ("version", 4), ("tensor_count", 8), ("kv_count", 16)]
    for key, _, start, value_start, _ in layout.kvs:
        boundaries.append((f"metadata '{key}' key length", start))
        boundaries.append((f"metadata '{key}' key", start + 8))
        boundaries.append((f"metadata '{key}' value type", value_start - 4))
        boundaries.append((f"metadata '{key}' value", value_start))
    for name, _, _, info_start, _ in layout.tensors:
        boundaries.append((f"tensor info '{name}'", info_start))
    boundaries.append(("alignment padding", layout.infos_end))

    data_end = 0
    for index, (name, dims, type_id, _, offset) in enumerate(layout.tensors):
        start = layout.data_start + offset
        n_bytes = tensor_n_bytes(dims, type_id)
        boundaries.append((f"tensor data '{name}'", start))
        if index % 16 == 0:
            boundaries.append((f"middle of tensor data '{name}'", start + n_bytes // 2))
        data_end = max(data_end, start + n_bytes)
    return boundaries, data_end


def truncation_cases(path: Path, seed: int) -> Tuple[List[dict], Dict[str, Sequence[str]]]:
    """Return cases cutting ``path`` at each boundary and at random points, longest first.

    Header and metadata fields are also cut 1 byte in, and so are the first
    and last tensor infos. The other tensor infos and tensor data are cut at
    their start only, which keeps the run short: every cut after the
    vocabulary costs a full metadata parse.
    """
    boundaries, data_end = structural_boundaries(path)
    tensor_infos = [label for label, _ in boundaries if label.startswith("tensor info")]
    cut_inside = set(tensor_infos[:1] + tensor_infos[-1:])

    cuts: Dict[int, str] = {}
    for label, offset in boundaries:
        cuts.setdefault(offset, f"cut at {label}")
        if not label.startswith(("tensor", "middle")) or label in cut_inside:
            cuts.setdefault(offset + 1, f"cut 1 byte into {label}")
    cuts.setdefault(data_end - 1, "cut 1 byte before the end of the tensor data")

    rng = random.Random(seed)
    for _ in range(RANDOM_CUTS_PER_MODEL):
        cuts.setdefault(rng.randrange(1, data_end), "cut at a random point")

    cases, expected = [], {}
    for cut in sorted((c for c in cuts if 0 <= c < data_end), reverse=True):
        name = f"{path.name} {cuts[cut]} (byte {cut})"
        cases.append({"name": name, "source": str(path), "cut": cut})
        # A cut in the header or metadata names the field and the word
        # "truncated". A cut in the tensor data names the tensor whose data
        # no longer fits (a later field than the cut, so only the shared text).
        expected[name] = ["truncated"]
    return cases, expected


def test_truncated_real_models_rejected(gemma_path, smollm_path):
    batches = [truncation_cases(gemma_path, seed=1), truncation_cases(smollm_path, seed=2)]

    # The two models run in parallel workers; each worker loads its cuts in turn.
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda batch: run_cases(batch[0]), batches))

    failures = []
    for (cases, expected), batch_outcomes in zip(batches, outcomes):
        for case in cases:
            for problem in check_outcome(batch_outcomes[case["name"]], expected[case["name"]]):
                failures.append(f"{case['name']}: {problem}")
    n_cases = sum(len(cases) for cases, _ in batches)
    assert not failures, f"{len(failures)} of {n_cases} truncations failed:\n" + "\n".join(failures[:40])


def test_truncation_messages_name_field(gemma_path):
    # Spot checks that a cut names what it cut through, beyond the word "truncated".
    boundaries, data_end = structural_boundaries(gemma_path)
    offsets = dict(boundaries)
    first_tensor = next(label for label, _ in boundaries if label.startswith("tensor info"))[len("tensor info ") :]
    # Cut inside the name's length field, so the name is unknown to the reader.
    cases = [
        {"name": "last tensor's data", "source": str(gemma_path), "cut": data_end - 1},
        {"name": "first tensor info", "source": str(gemma_path), "cut": offsets[f"tensor info {first_tensor}"] + 3},
        {"name": "scores", "source": str(gemma_path), "cut": offsets["metadata 'tokenizer.ggml.scores' value"] + 100},
        {"name": "kv_count", "source": str(gemma_path), "cut": 20},
    ]
    expected = {
        "last tensor's data": ["extends past the end of the file", "truncated"],
        "first tensor info": ["tensor #0 (name)", "truncated"],
        "scores": ["tokenizer.ggml.scores", "262144 FLOAT32 elements", "truncated"],
        "kv_count": ["kv_count", "truncated"],
    }

    assert_all_rejected(cases, expected)


def test_unknown_tensor_type_in_real_model(tmp_path, gemma_path):
    data = gguf_cases.patch_tensor_type(gemma_path.read_bytes(), "blk.3.ffn_up.weight", 99)
    path = tmp_path / "gemma-type-99.gguf"
    path.write_bytes(data)
    cases = [{"name": "type 99", "path": str(path)}]

    assert_all_rejected(cases, {"type 99": ["blk.3.ffn_up.weight", "unsupported type id 99"]})


def test_intact_real_models_load(gemma_path, smollm_path):
    # The controls: the worker, its address-space limit and the timing bound
    # must let valid files through, or every rejection above proves nothing.
    cases = [{"name": "gemma", "path": str(gemma_path)}, {"name": "smollm", "path": str(smollm_path)}]
    outcomes = run_cases(cases)

    for case in cases:
        outcome = outcomes[case["name"]]
        assert outcome["outcome"] == "loaded", outcome
        assert outcome["seconds"] < MAX_SECONDS_PER_CASE, outcome


# ---------------------------------------------------------------------------
# Synthetic models with inconsistent metadata or tensors.


class GgufParts:
    """A GGUF file split into raw metadata entries and tensors, to edit and write back."""

    def __init__(self, data: bytes) -> None:
        layout = GgufLayout(data)
        self.kvs: Dict[str, Tuple[int, bytes]] = {
            key: (type_id, data[value_start:value_end]) for key, type_id, _, value_start, value_end in layout.kvs
        }
        self.tensors: Dict[str, Tensor] = {}
        for name, dims, type_id, _, offset in layout.tensors:
            start = layout.data_start + offset
            data_bytes = data[start : start + tensor_n_bytes(dims, type_id)]
            self.tensors[name] = Tensor(name, dims, type_id, data_bytes)

    def set_kv(self, key: str, type_id: int, payload: bytes) -> "GgufParts":
        self.kvs[key] = (type_id, payload)
        return self

    def set_string(self, key: str, text: str) -> "GgufParts":
        return self.set_kv(key, STRING, gguf_string(text))

    def remove_kv(self, key: str) -> "GgufParts":
        del self.kvs[key]
        return self

    def set_tensor(self, name: str, dims: Sequence[int]) -> "GgufParts":
        """Give tensor ``name`` new F32 dims (zero data of the matching size)."""
        n_elements = 1
        for dim in dims:
            n_elements *= dim
        self.tensors[name] = Tensor(name, dims, gguf_cases.GGML_F32, bytes(4 * n_elements))
        return self

    def remove_tensor(self, name: str) -> "GgufParts":
        del self.tensors[name]
        return self

    def build(self) -> bytes:
        entries = [kv_entry(key, type_id, payload) for key, (type_id, payload) in self.kvs.items()]
        return gguf_cases.build(entries, list(self.tensors.values()))


def string_array(strings: Sequence[str]) -> bytes:
    return array_payload(STRING, len(strings), b"".join(gguf_string(s) for s in strings))


def f32_array(values: Sequence[float]) -> bytes:
    return array_payload(FLOAT32, len(values), struct.pack(f"<{len(values)}f", *values))


def i32_array(values: Sequence[int]) -> bytes:
    return array_payload(INT32, len(values), struct.pack(f"<{len(values)}i", *values))


@pytest.fixture(scope="module")
def synthetic_files(tmp_path_factory) -> Dict[str, bytes]:
    folder = tmp_path_factory.mktemp("synthetic")
    # Small F32 models: 64-wide, one layer, about 300 tokens.
    shape = dict(n_embd=64, n_layer=2, n_head=2, n_kv_heads=1, n_ff=128)
    write_llama(folder / "llama.gguf", **shape)
    write_gemma3(folder / "gemma3.gguf", **shape)
    return {arch: (folder / f"{arch}.gguf").read_bytes() for arch in ("llama", "gemma3")}


def synthetic_mutations(files: Dict[str, bytes]) -> List[Tuple[str, bytes, Sequence[str]]]:
    """Return (name, file bytes, expected message parts) for each inconsistent synthetic model."""
    cases: List[Tuple[str, bytes, Sequence[str]]] = []

    def llama() -> GgufParts:
        return GgufParts(files["llama"])

    def gemma() -> GgufParts:
        return GgufParts(files["gemma3"])

    # Known keys with the wrong value type.
    wrong_types = [
        ("general.architecture", UINT32, u32(1)),
        ("llama.embedding_length", STRING, gguf_string("64")),
        ("llama.block_count", FLOAT32, struct.pack("<f", 2.0)),
        ("llama.attention.head_count", ARRAY, i32_array([2, 2])),
        ("llama.context_length", STRING, gguf_string("512")),
        ("llama.rope.freq_base", STRING, gguf_string("10000")),
        ("llama.attention.layer_norm_rms_epsilon", STRING, gguf_string("1e-5")),
        ("tokenizer.ggml.model", UINT8, b"\x01"),
        ("tokenizer.ggml.tokens", ARRAY, i32_array([1, 2, 3])),
        ("tokenizer.ggml.token_type", ARRAY, f32_array([1.0, 1.0])),
        ("tokenizer.ggml.merges", ARRAY, i32_array([1])),
        ("tokenizer.ggml.bos_token_id", STRING, gguf_string("1")),
        ("tokenizer.ggml.add_bos_token", UINT32, u32(1)),
    ]
    for key, type_id, payload in wrong_types:
        cases.append((f"llama {key} of wrong type", llama().set_kv(key, type_id, payload).build(), [key]))
    cases.append(
        (
            "gemma3 sliding_window of wrong type",
            gemma().set_string("gemma3.attention.sliding_window", "8").build(),
            ["gemma3.attention.sliding_window"],
        )
    )
    cases.append(
        (
            "gemma3 scores of wrong type",
            gemma().set_kv("tokenizer.ggml.scores", ARRAY, string_array(["0.0"])).build(),
            ["tokenizer.ggml.scores"],
        )
    )

    # Out-of-range values.
    out_of_range = [
        ("llama.block_count", u32(0)),
        ("llama.embedding_length", u32(2**31)),
        ("llama.attention.head_count_kv", u32(3)),
        ("llama.context_length", u32(0)),
        ("tokenizer.ggml.bos_token_id", u32(10**6)),
    ]
    for key, payload in out_of_range:
        cases.append((f"llama {key} out of range", llama().set_kv(key, UINT32, payload).build(), [key]))

    # Vocabulary arrays whose lengths disagree.
    reader_tokens = _string_array_values(files["gemma3"], "tokenizer.ggml.tokens")
    n_vocab = len(reader_tokens)
    cases.append(
        (
            "gemma3 scores shorter than tokens",
            gemma().set_kv("tokenizer.ggml.scores", ARRAY, f32_array([0.0] * (n_vocab - 1))).build(),
            ["tokenizer.ggml.scores", str(n_vocab - 1), str(n_vocab)],
        )
    )
    cases.append(
        (
            "gemma3 token_type longer than tokens",
            gemma().set_kv("tokenizer.ggml.token_type", ARRAY, i32_array([1] * (n_vocab + 1))).build(),
            ["tokenizer.ggml.token_type", str(n_vocab + 1), str(n_vocab)],
        )
    )
    llama_tokens = _string_array_values(files["llama"], "tokenizer.ggml.tokens")
    cases.append(
        (
            "llama tokens shorter than vocab_size",
            llama().set_kv("tokenizer.ggml.tokens", ARRAY, string_array(llama_tokens[:-1])).build(),
            ["tokenizer.ggml.tokens", str(len(llama_tokens) - 1)],
        )
    )
    cases.append(
        (
            "llama vocab_size larger than the token_embd rows",
            llama().set_kv("llama.vocab_size", UINT32, u32(len(llama_tokens) + 5)).build(),
            [str(len(llama_tokens) + 5)],
        )
    )

    # Missing required keys.
    for key in (
        "general.architecture",
        "llama.embedding_length",
        "llama.block_count",
        "llama.attention.head_count",
        "llama.feed_forward_length",
        "llama.context_length",
        "tokenizer.ggml.model",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
    ):
        cases.append((f"llama without {key}", llama().remove_kv(key).build(), [key]))
    cases.append(
        (
            "gemma3 without sliding_window",
            gemma().remove_kv("gemma3.attention.sliding_window").build(),
            ["gemma3.attention.sliding_window"],
        )
    )

    # Tensors missing or of the wrong shape for the architecture.
    for name in ("token_embd.weight", "output_norm.weight", "blk.1.ffn_down.weight", "blk.0.attn_k.weight"):
        cases.append((f"llama without {name}", llama().remove_tensor(name).build(), [name, "missing"]))
    for name in ("blk.0.attn_q_norm.weight", "blk.1.post_ffw_norm.weight"):
        cases.append((f"gemma3 without {name}", gemma().remove_tensor(name).build(), [name, "missing"]))
    cases.append(
        (
            "llama attn_k transposed",
            llama().set_tensor("blk.0.attn_k.weight", [32, 64]).build(),
            ["blk.0.attn_k.weight", "[32, 64]", "[64, 32]"],
        )
    )
    cases.append(
        (
            "llama ffn_up too small",
            llama().set_tensor("blk.1.ffn_up.weight", [64, 64]).build(),
            ["blk.1.ffn_up.weight", "[64, 64]", "[64, 128]"],
        )
    )
    cases.append(
        (
            "gemma3 q_norm of n_embd",
            gemma().set_tensor("blk.0.attn_q_norm.weight", [64]).build(),
            ["blk.0.attn_q_norm.weight", "[64]", "[32]"],
        )
    )
    cases.append(
        (
            "llama output_norm 2-D",
            llama().set_tensor("output_norm.weight", [64, 2]).build(),
            ["output_norm.weight", "[64, 2]"],
        )
    )

    # Unknown architecture: the message lists the supported ones.
    cases.append(
        (
            "unknown architecture",
            llama().set_string("general.architecture", "mamba").build(),
            ["'mamba'", "llama", "gemma3"],
        )
    )
    cases.append(
        (
            "unknown tokenizer model",
            llama().set_string("tokenizer.ggml.model", "wordpiece").build(),
            ["tokenizer.ggml.model", "wordpiece"],
        )
    )
    return cases


def _string_array_values(data: bytes, key: str) -> List[str]:
    type_id, payload = GgufParts(data).kvs[key]
    assert type_id == ARRAY
    elem_type, count = struct.unpack_from("<IQ", payload)
    assert elem_type == STRING
    values, position = [], 12
    for _ in range(count):
        (length,) = struct.unpack_from("<Q", payload, position)
        values.append(payload[position + 8 : position + 8 + length].decode("utf-8"))
        position += 8 + length
    return values


def test_synthetic_models_load(tmp_path, synthetic_files):
    # The controls: the unedited files, written back through GgufParts, load.
    cases, expected = [], {}
    for arch, data in synthetic_files.items():
        path = tmp_path / f"{arch}.gguf"
        path.write_bytes(GgufParts(data).build())
        cases.append({"name": arch, "path": str(path)})
    outcomes = run_cases(cases)

    for case in cases:
        assert outcomes[case["name"]]["outcome"] == "loaded", outcomes[case["name"]]


def test_inconsistent_synthetic_models_rejected(tmp_path, synthetic_files):
    cases, expected = [], {}
    for index, (name, data, parts) in enumerate(synthetic_mutations(synthetic_files)):
        path = tmp_path / f"mutation-{index}.gguf"
        path.write_bytes(data)
        cases.append({"name": name, "path": str(path)})
        expected[name] = parts

    assert_all_rejected(cases, expected)
