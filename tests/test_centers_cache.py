"""The key centers cache: stored on first use, read back on later loads, ignored when damaged.

A TurboQuant session's logits depend on the key centers, so comparing
logits shows which centers a session used: freshly calibrated ones, the
cached file's, or (for a damaged or foreign file) calibrated ones again.
"""

import struct

import numpy as np
import pytest

import turbokv
from turbokv import _turbokv

PROMPT = "It is a truth universally acknowledged, that a single man in possession of a good fortune"
KV_TYPE = "turbo_kv_4b"
HEADER = struct.Struct("<8sQII")
MASK = (1 << 64) - 1


def checksum(data: bytes) -> int:
    """The cache file's checksum, as `centers_cache::Hasher` computes it."""
    state = 0x243F6A8885A308D3

    def mix(word):
        nonlocal state
        state = ((state ^ word) * 0x9E3779B97F4A7C15) & MASK
        state = ((state << 29) | (state >> 35)) & MASK

    whole = len(data) // 8 * 8
    for (word,) in struct.iter_unpack("<Q", data[:whole]):
        mix(word)
    tail = data[whole:]
    mix(int.from_bytes(tail.ljust(8, b"\0"), "little") ^ (len(tail) << 56))

    x = state ^ len(data)
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & MASK
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & MASK
    return x ^ (x >> 33)


def prompt_logits(model):
    session = _turbokv.Session(model, 128, KV_TYPE, KV_TYPE)
    return session.eval(model.tokenize(PROMPT), all_logits=True)


def only_file(directory):
    files = list(directory.iterdir())
    assert len(files) == 1, f"expected one centers file, found {files}"
    return files[0]


@pytest.fixture(scope="module")
def uncached(smollm_path):
    """SmolLM2's logits with centers calibrated in place, no cache folder."""
    return prompt_logits(_turbokv.Model(str(smollm_path), 2))


def test_later_loads_reuse_stored_centers(smollm_path, uncached, tmp_path):
    first = prompt_logits(_turbokv.Model(str(smollm_path), 2, str(tmp_path)))
    stored = only_file(tmp_path)
    content = stored.read_bytes()
    magic, _, n_layer, kv_dim = HEADER.unpack_from(content)
    assert magic == b"TKVCENT1"
    assert (n_layer, kv_dim) == (30, 3 * 64)
    assert len(content) == HEADER.size + n_layer * 2 * kv_dim * 4 + 8

    second = prompt_logits(_turbokv.Model(str(smollm_path), 2, str(tmp_path)))
    assert stored.read_bytes() == content
    np.testing.assert_array_equal(first, uncached)
    np.testing.assert_array_equal(second, uncached)


def test_load_reads_edited_centers(smollm_path, uncached, tmp_path):
    prompt_logits(_turbokv.Model(str(smollm_path), 2, str(tmp_path)))
    stored = only_file(tmp_path)
    content = bytearray(stored.read_bytes())

    # Zero every layer's key center, keep the divisors, and re-seal the file.
    _, _, n_layer, kv_dim = HEADER.unpack_from(content)
    for layer in range(n_layer):
        start = HEADER.size + layer * 2 * kv_dim * 4
        content[start : start + kv_dim * 4] = bytes(kv_dim * 4)
    struct.pack_into("<Q", content, len(content) - 8, checksum(bytes(content[:-8])))
    stored.write_bytes(bytes(content))

    edited = prompt_logits(_turbokv.Model(str(smollm_path), 2, str(tmp_path)))
    assert not np.array_equal(edited, uncached), "the session did not read the edited centers"
    assert stored.read_bytes() == bytes(content)


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "nan_center", "other_model"])
def test_bad_file_is_recalibrated(smollm_path, gemma_path, uncached, tmp_path, damage):
    prompt_logits(_turbokv.Model(str(smollm_path), 2, str(tmp_path)))
    stored = only_file(tmp_path)
    good = stored.read_bytes()

    if damage == "flip_byte":
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 0x40
    elif damage == "truncate":
        bad = good[:-9]
    elif damage == "nan_center":
        bad = bytearray(good)
        struct.pack_into("<f", bad, HEADER.size, float("nan"))
        struct.pack_into("<Q", bad, len(bad) - 8, checksum(bytes(bad[:-8])))
    else:
        gemma_dir = tmp_path / "gemma"
        prompt_logits(_turbokv.Model(str(gemma_path), 2, str(gemma_dir)))
        bad = only_file(gemma_dir).read_bytes()
    stored.write_bytes(bytes(bad))

    logits = prompt_logits(_turbokv.Model(str(smollm_path), 2, str(tmp_path)))
    np.testing.assert_array_equal(logits, uncached)
    assert stored.read_bytes() == good, "the recalibrated centers were not stored again"


def test_unwritable_folder_still_loads(smollm_path, uncached, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder would go")
    logits = prompt_logits(_turbokv.Model(str(smollm_path), 2, str(blocker / "centers")))
    np.testing.assert_array_equal(logits, uncached)


def test_fp32_session_writes_nothing(smollm_path, tmp_path):
    model = _turbokv.Model(str(smollm_path), 2, str(tmp_path / "centers"))
    _turbokv.Session(model, 64, "fp32", "fp32").eval(model.tokenize(PROMPT))
    assert not (tmp_path / "centers").exists()


@pytest.mark.parametrize("disabled", [False, True])
def test_public_model_uses_cache_folder(smollm_path, tmp_path, monkeypatch, disabled):
    monkeypatch.setenv("TURBOKV_CACHE_DIR", str(tmp_path))
    if disabled:
        monkeypatch.setenv("TURBOKV_NO_CENTERS_CACHE", "1")
    model = turbokv.Model(smollm_path, n_ctx=64, n_threads=2, cache_type_k=KV_TYPE, cache_type_v=KV_TYPE)
    model.logits(PROMPT)
    centers = tmp_path / "centers"
    if disabled:
        assert not centers.exists()
    else:
        assert only_file(centers).name.startswith("centers-")
