"""Builders of malformed GGUF files for the hostile-input tests.

Each case function returns ``(name, data, expected)``: a short case name, the
file's bytes, and a substring of the error message turbokv reports when it
opens ``data``. Functions that return several cases return a list of them,
and ``all_cases()`` collects every case. This module contains no tests itself.

The layout written here is GGUF version 3, little-endian: magic ``GGUF``,
u32 version, u64 tensor count, u64 metadata count, the metadata entries
(string key, u32 value type, value), the tensor infos (string name, u32
n_dims, u64 dims, u32 type id, u64 offset into the data section), padding to
the alignment, then the tensor data. A string is a u64 byte length followed
by UTF-8 bytes.
"""

from __future__ import annotations

import struct
from typing import Dict, List, Optional, Sequence, Tuple

Case = Tuple[str, bytes, str]

# GGUF metadata value type ids.
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)

# GGML tensor type ids used below.
GGML_F32 = 0
GGML_Q8_0 = 8
GGML_Q4_K = 12

ALIGNMENT_KEY = "general.alignment"
DEFAULT_ALIGNMENT = 32

# Every truncation error names the cut with this word.
TRUNCATED = "truncated"

_FIXED_SIZES = {UINT8: 1, INT8: 1, BOOL: 1, UINT16: 2, INT16: 2, UINT32: 4, INT32: 4, FLOAT32: 4, UINT64: 8, INT64: 8, FLOAT64: 8}


def u32(value: int) -> bytes:
    return struct.pack("<I", value)


def u64(value: int) -> bytes:
    return struct.pack("<Q", value)


def gguf_string(text: str | bytes) -> bytes:
    """Encode a GGUF string: u64 byte length, then the bytes."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return u64(len(raw)) + raw


def kv_entry(key: str, type_id: int, payload: bytes) -> bytes:
    """Encode one metadata entry whose value is already encoded in ``payload``."""
    return gguf_string(key) + u32(type_id) + payload


def array_payload(elem_type: int, count: int, elements: bytes = b"") -> bytes:
    """Encode an array value: element type, element count, then the elements."""
    return u32(elem_type) + u64(count) + elements


def tensor_info(name: str, dims: Sequence[int], type_id: int, offset: int) -> bytes:
    return gguf_string(name) + u32(len(dims)) + b"".join(u64(d) for d in dims) + u32(type_id) + u64(offset)


class Tensor:
    """Tensor to write: its data, and optionally a forged offset."""

    def __init__(self, name: str, dims: Sequence[int], type_id: int, data: bytes, offset: Optional[int] = None):
        self.name = name
        self.dims = list(dims)
        self.type_id = type_id
        self.data = data
        self.offset = offset


def build_parts(
    kvs: Sequence[bytes] = (),
    tensors: Sequence[Tensor] = (),
    version: int = 3,
    alignment: int = DEFAULT_ALIGNMENT,
    tensor_count: Optional[int] = None,
    kv_count: Optional[int] = None,
) -> List[Tuple[str, bytes]]:
    """Lay out a GGUF file as labelled parts, one per structural field.

    ``kvs`` are encoded entries (see ``kv_entry``). ``alignment`` lays out
    the data; add a ``general.alignment`` entry to ``kvs`` to announce
    another value than 32. The counts default to the real ones. The file ends
    right after the last tensor's data, so every strict prefix is truncated.
    """
    parts: List[Tuple[str, bytes]] = [
        ("magic", b"GGUF"),
        ("version", u32(version)),
        ("tensor_count", u64(len(tensors) if tensor_count is None else tensor_count)),
        ("kv_count", u64(len(kvs) if kv_count is None else kv_count)),
    ]
    for i, entry in enumerate(kvs):
        key_len = struct.unpack_from("<Q", entry)[0]
        parts.append((f"key #{i} length", entry[:8]))
        parts.append((f"key #{i} name", entry[8 : 8 + key_len]))
        parts.append((f"key #{i} value type", entry[8 + key_len : 12 + key_len]))
        parts.append((f"key #{i} value", entry[12 + key_len :]))

    offsets = []
    next_offset = 0
    for tensor in tensors:
        offsets.append(next_offset)
        next_offset = _align(next_offset + len(tensor.data), alignment)
    for i, (tensor, offset) in enumerate(zip(tensors, offsets)):
        written = offset if tensor.offset is None else tensor.offset
        parts.append((f"tensor #{i} name", gguf_string(tensor.name)))
        parts.append((f"tensor #{i} n_dims", u32(len(tensor.dims))))
        parts.append((f"tensor #{i} dims", b"".join(u64(d) for d in tensor.dims)))
        parts.append((f"tensor #{i} type id", u32(tensor.type_id)))
        parts.append((f"tensor #{i} offset", u64(written)))

    if tensors:
        header_len = sum(len(raw) for _, raw in parts)
        parts.append(("padding", bytes(_align(header_len, alignment) - header_len)))
        data_end = 0
        for i, (tensor, offset) in enumerate(zip(tensors, offsets)):
            parts.append((f"tensor #{i} padding", bytes(offset - data_end)))
            parts.append((f"tensor #{i} data", tensor.data))
            data_end = offset + len(tensor.data)
    return parts


def build(*args, **kwargs) -> bytes:
    """Build a GGUF file; takes the arguments of ``build_parts``."""
    return b"".join(raw for _, raw in build_parts(*args, **kwargs))


def _align(pos: int, alignment: int) -> int:
    return (pos + alignment - 1) // alignment * alignment


def _valid_kvs() -> List[bytes]:
    return [
        kv_entry("general.architecture", STRING, gguf_string("llama")),
        kv_entry("t.count", UINT32, u32(7)),
        kv_entry("t.scale", FLOAT32, struct.pack("<f", 0.5)),
        kv_entry("t.flag", BOOL, b"\x01"),
        kv_entry("t.tokens", ARRAY, array_payload(STRING, 2, gguf_string("a") + gguf_string("bc"))),
        kv_entry("t.ids", ARRAY, array_payload(INT32, 3, struct.pack("<3i", -1, 0, 1))),
    ]


def _valid_tensors() -> List[Tensor]:
    return [
        Tensor("norm.weight", [8], GGML_F32, bytes(range(32))),
        Tensor("embd.weight", [32, 2], GGML_Q8_0, bytes(2 * 34)),
    ]


def valid_parts() -> List[Tuple[str, bytes]]:
    """Return the labelled parts of a small valid file with metadata and two tensors."""
    return build_parts(_valid_kvs(), _valid_tensors())


def valid_file() -> bytes:
    """Return a small valid file, which turbokv opens without error."""
    return b"".join(raw for _, raw in valid_parts())


# ---------------------------------------------------------------------------
# Cases.


def truncations() -> List[Case]:
    """Cut the valid file at the start and in the middle of every field."""
    cases: List[Case] = []
    data = valid_file()
    start = 0
    for label, raw in valid_parts():
        if start > 0 and raw:
            cases.append((f"truncated before {label}", data[:start], TRUNCATED))
        if len(raw) > 1:
            cases.append((f"truncated inside {label}", data[: start + len(raw) // 2], TRUNCATED))
        start += len(raw)
    return cases


def empty_file() -> Case:
    return ("empty file", b"", "header magic")


def wrong_magic() -> Case:
    return ("wrong magic", b"GGML" + valid_file()[4:], "invalid magic")


def version_1() -> Case:
    return ("version 1", build(version=1), "unsupported GGUF version 1; supported versions are 2 and 3")


def unknown_version() -> Case:
    return ("version 4", build(version=4), "unsupported GGUF version 4")


def big_endian() -> Case:
    """Return a version 3 file whose version field is big-endian."""
    data = valid_file()
    return ("big-endian", data[:4] + struct.pack(">I", 3) + data[8:], "big-endian GGUF is not supported")


def huge_kv_count() -> Case:
    return ("huge kv_count", build(kv_count=2**64 - 1), "header kv_count 18446744073709551615")


def huge_tensor_count() -> Case:
    return ("huge tensor_count", build(tensor_count=2**60), "header tensor_count 1152921504606846976")


def huge_key_length() -> Case:
    data = build(kv_count=1) + u64(2**64 - 1) + bytes(16)
    return ("huge key length", data, "string of 18446744073709551615 bytes")


def huge_string_length() -> Case:
    entry = kv_entry("s", STRING, u64(2**63) + b"abc")
    return ("huge string length", build([entry]), "key 's' (string of 9223372036854775808 bytes)")


def huge_array_length() -> Case:
    entry = kv_entry("a", ARRAY, array_payload(UINT32, 2**40) + bytes(64))
    return ("huge array length", build([entry]), "array of 1099511627776 UINT32 elements")


def overflowing_array_length() -> Case:
    """Return an array whose element count times element size overflows 64 bits."""
    entry = kv_entry("a", ARRAY, array_payload(FLOAT64, 2**62) + bytes(64))
    return ("overflowing array length", build([entry]), "array of 4611686018427387904 FLOAT64 elements")


def string_array_too_long() -> Case:
    """Return 9 strings in 64 bytes: each string needs at least its 8-byte length."""
    entry = kv_entry("a", ARRAY, array_payload(STRING, 9) + bytes(64))
    return ("string array too long", build([entry]), "array of 9 STRING elements")


def unknown_value_type() -> Case:
    entry = kv_entry("k", 13, bytes(8))
    return ("unknown value type", build([entry]), "key #0 'k': unknown value type id 13")


def invalid_bool() -> Case:
    entry = kv_entry("b", BOOL, b"\x02")
    return ("invalid bool", build([entry]), "key 'b': invalid BOOL byte 2")


def invalid_utf8_key() -> Case:
    entry = gguf_string(b"\xc3\x28") + u32(UINT8) + b"\x00"
    return ("invalid UTF-8 key", build([entry]), "not valid UTF-8")


def deeply_nested_arrays() -> Case:
    """Return arrays nested 40 deep, where turbokv accepts at most 16 levels."""
    payload = array_payload(ARRAY, 1) * 39 + array_payload(UINT8, 0)
    entry = kv_entry("n", ARRAY, payload)
    return ("deeply nested arrays", build([entry]), "nested more than 16 deep")


def duplicate_key() -> Case:
    entries = [kv_entry("k", UINT8, b"\x01"), kv_entry("k", UINT8, b"\x02")]
    return ("duplicate key", build(entries), "duplicate key 'k'")


def alignment_zero() -> Case:
    entry = kv_entry(ALIGNMENT_KEY, UINT32, u32(0))
    return ("alignment 0", build([entry]), "alignment 0 is not a nonzero power of two")


def alignment_not_power_of_two() -> Case:
    entry = kv_entry(ALIGNMENT_KEY, UINT32, u32(48))
    return ("alignment 48", build([entry]), "alignment 48 is not a nonzero power of two")


def alignment_signed() -> Case:
    entry = kv_entry(ALIGNMENT_KEY, INT32, u32(32))
    return ("signed alignment", build([entry]), "'general.alignment' has type INT32")


def too_many_dims() -> Case:
    tensor = Tensor("w", [1, 1, 1, 1, 1], GGML_F32, bytes(4))
    return ("5 dims", build(tensors=[tensor]), "tensor #0 'w': n_dims 5 is out of range")


def no_dims() -> Case:
    tensor = Tensor("w", [], GGML_F32, bytes(4))
    return ("0 dims", build(tensors=[tensor]), "tensor #0 'w': n_dims 0 is out of range")


def zero_sized_dim() -> Case:
    tensor = Tensor("w", [4, 0], GGML_F32, bytes(4))
    return ("zero-sized dim", build(tensors=[tensor]), "tensor #0 'w': dims[1] is 0")


def element_count_overflow() -> Case:
    tensor = Tensor("w", [2**32, 2**32], GGML_F32, b"")
    return ("element count overflow", build(tensors=[tensor]), "element count of dims [4294967296, 4294967296] overflows")


def row_not_block_multiple() -> Case:
    tensor = Tensor("w", [100], GGML_Q4_K, bytes(144))
    return (
        "row not a block multiple",
        build(tensors=[tensor]),
        "row length dims[0] = 100 is not a multiple of the Q4_K block size 256",
    )


def tensor_data_beyond_end() -> Case:
    """Return a tensor whose offset points 1 MiB past the end of a small file."""
    tensor = Tensor("w", [4], GGML_F32, bytes(16), offset=2**20)
    return ("tensor data beyond end", build(tensors=[tensor]), "extends past the end of the file")


def tensor_data_cut_short() -> Case:
    """Return a file that ends 1 byte before the end of its only tensor's data."""
    tensor = Tensor("w", [16], GGML_F32, bytes(63))
    return ("tensor data cut short", build(tensors=[tensor]), "extends past the end of the file")


def unaligned_tensor_offset() -> Case:
    tensors = [Tensor("w", [1], GGML_F32, bytes(4), offset=4)]
    return ("unaligned tensor offset", build(tensors=tensors), "offset 4 is not a multiple of the alignment 32")


def overlapping_tensors() -> Case:
    tensors = [
        Tensor("a", [16], GGML_F32, bytes(64)),
        Tensor("b", [16], GGML_F32, bytes(64), offset=32),
    ]
    return ("overlapping tensors", build(tensors=tensors), "overlap")


def duplicate_tensor_name() -> Case:
    tensors = [Tensor("w", [1], GGML_F32, bytes(4)), Tensor("w", [1], GGML_F32, bytes(4))]
    return ("duplicate tensor name", build(tensors=tensors), "duplicate tensor name 'w'")


def unknown_tensor_type() -> Case:
    """Return a file with a tensor of type id 99, which turbokv does not support.

    The GGUF reader accepts this file and keeps the tensor without data. Only
    a loader that needs the tensor reports the expected message, so use
    ``patch_tensor_type`` on a real model to test that path end to end.
    """
    tensors = [Tensor("w", [7], 99, bytes(32)), Tensor("norm.weight", [4], GGML_F32, bytes(16))]
    return ("unknown tensor type", build(tensors=tensors), "tensor w has unsupported type id 99")


def all_cases() -> List[Case]:
    """Return every case that the GGUF reader rejects: the truncations, then
    each single case. ``unknown_tensor_type`` is left out because the reader
    accepts that file."""
    singles = [
        empty_file,
        wrong_magic,
        version_1,
        unknown_version,
        big_endian,
        huge_kv_count,
        huge_tensor_count,
        huge_key_length,
        huge_string_length,
        huge_array_length,
        overflowing_array_length,
        string_array_too_long,
        unknown_value_type,
        invalid_bool,
        invalid_utf8_key,
        deeply_nested_arrays,
        duplicate_key,
        alignment_zero,
        alignment_not_power_of_two,
        alignment_signed,
        too_many_dims,
        no_dims,
        zero_sized_dim,
        element_count_overflow,
        row_not_block_multiple,
        tensor_data_beyond_end,
        tensor_data_cut_short,
        unaligned_tensor_offset,
        overlapping_tensors,
        duplicate_tensor_name,
    ]
    return truncations() + [make() for make in singles]


# ---------------------------------------------------------------------------
# Patching real files.


def tensor_type_offsets(data: bytes) -> Dict[str, int]:
    """Map each tensor name to the file offset of its u32 type id field.

    Walks the header of a valid little-endian GGUF file (version 2 or 3).
    """
    if data[:4] != b"GGUF":
        raise ValueError("not a GGUF file: the magic is not b'GGUF'")
    tensor_count, kv_count = struct.unpack_from("<QQ", data, 8)
    pos = 24
    for _ in range(kv_count):
        pos = _skip_string(data, pos)
        (type_id,) = struct.unpack_from("<I", data, pos)
        pos = _skip_value(data, pos + 4, type_id)

    offsets: Dict[str, int] = {}
    for _ in range(tensor_count):
        (name_len,) = struct.unpack_from("<Q", data, pos)
        name = data[pos + 8 : pos + 8 + name_len].decode("utf-8")
        pos += 8 + name_len
        (n_dims,) = struct.unpack_from("<I", data, pos)
        pos += 4 + 8 * n_dims
        offsets[name] = pos
        pos += 4 + 8
    return offsets


def patch_tensor_type(data: bytes, tensor_name: str, type_id: int) -> bytes:
    """Return ``data`` with the type id of ``tensor_name`` replaced by ``type_id``.

    With an id that turbokv does not support (for example 99), loading the
    result fails with ``tensor <name> has unsupported type id <id>`` once the
    loader reaches that tensor.
    """
    offsets = tensor_type_offsets(data)
    if tensor_name not in offsets:
        raise KeyError(f"tensor {tensor_name!r} not found in the file")
    at = offsets[tensor_name]
    return data[:at] + u32(type_id) + data[at + 4 :]


def _skip_string(data: bytes, pos: int) -> int:
    (length,) = struct.unpack_from("<Q", data, pos)
    return pos + 8 + length


def _skip_value(data: bytes, pos: int, type_id: int) -> int:
    if type_id in _FIXED_SIZES:
        return pos + _FIXED_SIZES[type_id]
    if type_id == STRING:
        return _skip_string(data, pos)
    if type_id != ARRAY:
        raise ValueError(f"unknown value type id {type_id} at offset {pos}")

    elem_type, count = struct.unpack_from("<IQ", data, pos)
    pos += 12
    if elem_type in _FIXED_SIZES:
        return pos + count * _FIXED_SIZES[elem_type]
    for _ in range(count):
        pos = _skip_value(data, pos, elem_type)
    return pos
