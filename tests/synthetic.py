"""Write tiny random GGUF models that llama.cpp and turbokv can both load.

Two architectures are supported, with the metadata keys and tensor names that
llama.cpp reads for them (src/llama-model.cpp, src/llama-vocab.cpp):

- ``llama``: attn_norm, q/k/v/output, ffn_norm, SwiGLU feed-forward, output_norm,
  optional output.weight (tied to token_embd when absent).
- ``gemma3``: as above plus per-head attn_q_norm/attn_k_norm, post_attention_norm,
  post_ffw_norm, GELU feed-forward and a sliding window on local layers.

Each file carries a vocabulary of about 300 tokens: a GPT-2 style byte-level BPE
(``gpt2``) or a SentencePiece style vocabulary with byte fallback (``spm``).
Weights are drawn from a seeded normal distribution and scaled by 1/sqrt(fan_in),
so activations stay near unit scale and logits stay well conditioned.

Matrices are stored in any of F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
(encoded by gguf.quants) and Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (encoded here,
because gguf.quants only decodes K-quants). Norm weights are always F32.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import gguf
import numpy as np
from gguf import GGMLQuantizationType, TokenType

QK_K = 256

QuantType = Union[str, GGMLQuantizationType]

# Roles of the weight matrices, as the last-but-one part of their tensor name.
MATRIX_ROLES = (
    "token_embd", "output", "attn_q", "attn_k", "attn_v", "attn_output",
    "ffn_gate", "ffn_up", "ffn_down",
)


@dataclasses.dataclass
class SyntheticConfig:
    """Shape, numerics and storage of a synthetic model."""

    arch: str = "llama"                 # "llama" or "gemma3"
    n_embd: int = 256
    n_layer: int = 2
    n_head: int = 4
    n_kv_heads: int = 2
    head_dim: Optional[int] = None      # None means n_embd // n_head
    n_ff: int = 512
    vocab: Optional[str] = None         # "gpt2" or "spm"; None picks gpt2 for llama, spm for gemma3
    weight_type: QuantType = "F32"      # default storage of every matrix
    # Storage per tensor, keyed by role ("attn_q") or full name ("blk.0.attn_q.weight").
    tensor_types: Dict[str, QuantType] = dataclasses.field(default_factory=dict)
    tied_output: bool = True            # omit output.weight so token_embd is reused
    rope_theta: float = 10000.0
    rope_scaling_factor: Optional[float] = None   # writes rope.scaling.type = linear
    rms_eps: float = 1e-6
    sliding_window: int = 8             # gemma3 only: keys at positions > p - window are visible
    context_length: int = 512
    seed: int = 0

    @property
    def n_embd_head(self) -> int:
        return self.head_dim if self.head_dim is not None else self.n_embd // self.n_head

    @property
    def vocab_kind(self) -> str:
        if self.vocab is not None:
            return self.vocab
        return "spm" if self.arch == "gemma3" else "gpt2"


@dataclasses.dataclass
class Vocabulary:
    """Token strings and the tokenizer metadata llama.cpp needs to load them."""

    model: str                          # tokenizer.ggml.model
    pre: Optional[str]                  # tokenizer.ggml.pre
    tokens: List[str]
    token_types: List[int]
    scores: Optional[List[float]]
    merges: Optional[List[str]]
    bos_id: int
    eos_id: int
    unk_id: Optional[int]
    pad_id: Optional[int]
    add_bos: bool


def write_llama(path: Union[str, Path], **overrides) -> SyntheticConfig:
    """Write a random llama-architecture model to `path` and return its configuration."""
    config = SyntheticConfig(arch="llama", rms_eps=1e-5, **overrides)
    write_model(path, config)
    return config


def write_gemma3(path: Union[str, Path], **overrides) -> SyntheticConfig:
    """Write a random gemma3-architecture model to `path` and return its configuration."""
    settings = {"rope_theta": 1_000_000.0}
    settings.update(overrides)
    config = SyntheticConfig(arch="gemma3", **settings)
    write_model(path, config)
    return config


def write_model(path: Union[str, Path], config: SyntheticConfig) -> None:
    """Write the GGUF file described by `config`."""
    if config.arch not in ("llama", "gemma3"):
        raise ValueError(f"unsupported arch {config.arch!r}: use 'llama' or 'gemma3'")
    if config.n_head % config.n_kv_heads != 0:
        raise ValueError(
            f"n_head={config.n_head} is not a multiple of n_kv_heads={config.n_kv_heads}"
        )

    vocab = build_vocabulary(config.vocab_kind)
    writer = gguf.GGUFWriter(str(path), config.arch)
    add_hparams(writer, config, len(vocab.tokens))
    add_vocabulary(writer, vocab)

    for name, values in random_weights(config, len(vocab.tokens)):
        add_weight(writer, name, values, tensor_type(config, name))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def random_tokens(n_vocab: int, n_tokens: int, seed: int = 0) -> List[int]:
    """Return `n_tokens` seeded random token ids in [0, n_vocab)."""
    rng = np.random.default_rng(seed)
    return [int(t) for t in rng.integers(0, n_vocab, size=n_tokens)]


# Hyperparameters


def add_hparams(writer: gguf.GGUFWriter, config: SyntheticConfig, n_vocab: int) -> None:
    head_dim = config.n_embd_head
    writer.add_name(f"synthetic {config.arch}")
    writer.add_context_length(config.context_length)
    writer.add_embedding_length(config.n_embd)
    writer.add_block_count(config.n_layer)
    writer.add_feed_forward_length(config.n_ff)
    writer.add_head_count(config.n_head)
    writer.add_head_count_kv(config.n_kv_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(config.rope_theta)
    writer.add_layer_norm_rms_eps(config.rms_eps)
    writer.add_vocab_size(n_vocab)

    if config.rope_scaling_factor is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(config.rope_scaling_factor)
    if config.arch == "gemma3":
        writer.add_sliding_window(config.sliding_window)


# Weights


def random_weights(config: SyntheticConfig, n_vocab: int):
    """Yield (tensor name, float32 array in numpy order [n_out, n_in]) pairs."""
    rng = np.random.default_rng(config.seed)
    n_embd = config.n_embd
    q_dim = config.n_head * config.n_embd_head
    kv_dim = config.n_kv_heads * config.n_embd_head

    def matrix(n_out: int, n_in: int) -> np.ndarray:
        return (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(np.float32)

    def norm(n: int) -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    # Unit-norm embedding rows keep Gemma's sqrt(n_embd) input scaling near unit RMS.
    yield "token_embd.weight", matrix(n_vocab, n_embd)
    yield "output_norm.weight", norm(n_embd)
    if not config.tied_output:
        yield "output.weight", matrix(n_vocab, n_embd)

    for il in range(config.n_layer):
        prefix = f"blk.{il}."
        yield prefix + "attn_norm.weight", norm(n_embd)
        yield prefix + "attn_q.weight", matrix(q_dim, n_embd)
        yield prefix + "attn_k.weight", matrix(kv_dim, n_embd)
        yield prefix + "attn_v.weight", matrix(kv_dim, n_embd)
        yield prefix + "attn_output.weight", matrix(n_embd, q_dim)
        yield prefix + "ffn_norm.weight", norm(n_embd)
        yield prefix + "ffn_gate.weight", matrix(config.n_ff, n_embd)
        yield prefix + "ffn_up.weight", matrix(config.n_ff, n_embd)
        yield prefix + "ffn_down.weight", matrix(n_embd, config.n_ff)
        if config.arch == "gemma3":
            yield prefix + "attn_q_norm.weight", norm(config.n_embd_head)
            yield prefix + "attn_k_norm.weight", norm(config.n_embd_head)
            yield prefix + "post_attention_norm.weight", norm(n_embd)
            yield prefix + "post_ffw_norm.weight", norm(n_embd)


def tensor_role(name: str) -> str:
    """Return the role of a tensor name: "blk.0.attn_q.weight" -> "attn_q"."""
    return name.split(".")[-2]


def tensor_type(config: SyntheticConfig, name: str) -> GGMLQuantizationType:
    role = tensor_role(name)
    if role not in MATRIX_ROLES:
        return GGMLQuantizationType.F32
    chosen = config.tensor_types.get(name, config.tensor_types.get(role, config.weight_type))
    if isinstance(chosen, GGMLQuantizationType):
        return chosen
    return GGMLQuantizationType[chosen.upper()]


def add_weight(writer: gguf.GGUFWriter, name: str, values: np.ndarray,
               qtype: GGMLQuantizationType) -> None:
    if qtype == GGMLQuantizationType.F32:
        writer.add_tensor(name, values)
        return
    if qtype == GGMLQuantizationType.F16:
        writer.add_tensor(name, values.astype(np.float16))
        return

    block_size, _ = gguf.GGML_QUANT_SIZES[qtype]
    if values.shape[-1] % block_size != 0:
        raise ValueError(
            f"{name}: row length {values.shape[-1]} is not a multiple of the {qtype.name} "
            f"block size {block_size}; choose dimensions that are"
        )
    writer.add_tensor(name, quantize(values, qtype), raw_dtype=qtype)


def quantize(values: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """Encode float32 rows as `qtype` blocks, returning uint8 [rows, bytes per row]."""
    k_quant_encoders = {
        GGMLQuantizationType.Q2_K: encode_q2_k,
        GGMLQuantizationType.Q3_K: encode_q3_k,
        GGMLQuantizationType.Q4_K: encode_q4_k,
        GGMLQuantizationType.Q5_K: encode_q5_k,
        GGMLQuantizationType.Q6_K: encode_q6_k,
    }
    encoder = k_quant_encoders.get(qtype)
    if encoder is None:
        return gguf.quants.quantize(values, qtype)

    rows = values.shape[0]
    blocks = values.reshape(-1, QK_K).astype(np.float32)
    return encoder(blocks).reshape(rows, -1)


# K-quant encoders. They follow the block layouts that gguf.quants decodes
# (the same as ggml's block_q2_K ... block_q6_K) but pick scales by
# plain min/max per sub-block rather than ggml's error-minimizing search.


def as_f16(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float16).astype(np.float32)


def affine_scales(blocks: np.ndarray, n_levels: int) -> Tuple[np.ndarray, ...]:
    """Pick the 6-bit scales and mins of 8 sub-blocks of 32 for Q4_K and Q5_K.

    Returns (d, dmin, sc, m, q): a sub-block element decodes as
    d * sc[j] * q - dmin * m[j] with q in [0, n_levels - 1].
    """
    n_blocks = blocks.shape[0]
    sub = blocks.reshape(n_blocks, 8, 32)
    sub_min = np.minimum(sub.min(axis=-1), 0.0)
    sub_scale = (sub.max(axis=-1) - sub_min) / (n_levels - 1)

    d = as_f16(sub_scale.max(axis=-1) / 63.0)
    dmin = as_f16(-sub_min.min(axis=-1) / 63.0)
    sc = np.clip(np.rint(safe_divide(sub_scale, d[:, None])), 0, 63).astype(np.uint8)
    m = np.clip(np.rint(safe_divide(-sub_min, dmin[:, None])), 0, 63).astype(np.uint8)

    step = d[:, None, None] * sc[..., None]
    offset = dmin[:, None, None] * m[..., None]
    q = np.clip(np.rint(safe_divide(sub + offset, step)), 0, n_levels - 1).astype(np.uint8)
    return d, dmin, sc, m, q.reshape(n_blocks, QK_K)


def safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Divide, returning 0 where the denominator is 0 (an all-zero sub-block)."""
    denominator = np.broadcast_to(denominator, np.broadcast(numerator, denominator).shape)
    out = np.zeros(denominator.shape, dtype=np.float32)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def pack_k_scales(sc: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Pack eight 6-bit scales and eight 6-bit mins into the 12-byte K-quant layout."""
    packed = np.zeros((sc.shape[0], 12), dtype=np.uint8)
    packed[:, 0:4] = (sc[:, 0:4] & 0x3F) | ((sc[:, 4:8] >> 4) << 6)
    packed[:, 4:8] = (m[:, 0:4] & 0x3F) | ((m[:, 4:8] >> 4) << 6)
    packed[:, 8:12] = (sc[:, 4:8] & 0x0F) | ((m[:, 4:8] & 0x0F) << 4)
    return packed


def pack_low_nibbles(q: np.ndarray) -> np.ndarray:
    """Pack the low 4 bits of 256 values: byte b of chunk c contains elements 64c+b and 64c+32+b."""
    low = (q & 0x0F).reshape(-1, 4, 2, 32)
    return (low[:, :, 0, :] | (low[:, :, 1, :] << 4)).reshape(-1, 128)


def f16_bytes(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float16).reshape(-1, 1).view(np.uint8)


def encode_q4_k(blocks: np.ndarray) -> np.ndarray:
    d, dmin, sc, m, q = affine_scales(blocks, 16)
    return np.concatenate(
        [f16_bytes(d), f16_bytes(dmin), pack_k_scales(sc, m), pack_low_nibbles(q)], axis=1
    )


def encode_q5_k(blocks: np.ndarray) -> np.ndarray:
    d, dmin, sc, m, q = affine_scales(blocks, 32)
    # Bit j of qh[b] is the fifth bit of element 32j + b.
    high = ((q >> 4) & 1).reshape(-1, 8, 32)
    qh = np.zeros((q.shape[0], 32), dtype=np.uint8)
    for j in range(8):
        qh |= high[:, j, :] << j
    return np.concatenate(
        [f16_bytes(d), f16_bytes(dmin), pack_k_scales(sc, m), qh, pack_low_nibbles(q)], axis=1
    )


def pack_2bit_quants(q: np.ndarray) -> np.ndarray:
    """Pack 256 2-bit values into 64 bytes: element 128h + 32s + b sits in byte 32h + b, bits 2s."""
    parts = (q & 0x03).reshape(-1, 2, 4, 32)
    packed = parts[:, :, 0] | (parts[:, :, 1] << 2) | (parts[:, :, 2] << 4) | (parts[:, :, 3] << 6)
    return packed.reshape(-1, 64)


def encode_q2_k(blocks: np.ndarray) -> np.ndarray:
    """Encode 16 sub-blocks of 16 as d * sc[s] * q - dmin * m[s], q in [0, 3], 4-bit sc and m."""
    n_blocks = blocks.shape[0]
    sub = blocks.reshape(n_blocks, 16, 16)
    sub_min = np.minimum(sub.min(axis=-1), 0.0)
    sub_scale = (sub.max(axis=-1) - sub_min) / 3.0

    d = as_f16(sub_scale.max(axis=-1) / 15.0)
    dmin = as_f16(-sub_min.min(axis=-1) / 15.0)
    sc = np.clip(np.rint(safe_divide(sub_scale, d[:, None])), 0, 15).astype(np.uint8)
    m = np.clip(np.rint(safe_divide(-sub_min, dmin[:, None])), 0, 15).astype(np.uint8)

    step = d[:, None, None] * sc[..., None]
    offset = dmin[:, None, None] * m[..., None]
    q = np.clip(np.rint(safe_divide(sub + offset, step)), 0, 3).astype(np.uint8).reshape(n_blocks, QK_K)
    return np.concatenate(
        [sc | (m << 4), pack_2bit_quants(q), f16_bytes(d), f16_bytes(dmin)], axis=1
    )


def encode_q3_k(blocks: np.ndarray) -> np.ndarray:
    """Encode 16 sub-blocks of 16 as d * (scale[s] - 32) * q, q in [-4, 3], 6-bit scales."""
    n_blocks = blocks.shape[0]
    sub = blocks.reshape(n_blocks, 16, 16)
    sub_scale = np.abs(sub).max(axis=-1) / 4.0
    d = as_f16(sub_scale.max(axis=-1) / 31.0)
    scales = np.clip(np.rint(safe_divide(sub_scale, d[:, None])), 0, 31).astype(np.uint8)

    step = d[:, None, None] * scales[..., None].astype(np.float32)
    q = np.clip(np.rint(safe_divide(sub, step)), -4, 3).astype(np.int16).reshape(n_blocks, QK_K)

    # Stored as 2 low bits in qs plus hmask bit j of byte b for element 32j + b;
    # a set hmask bit means q = low bits, a clear one means q = low bits - 4.
    stored = (q + 4).astype(np.uint8)
    high = ((stored >> 2) & 1).reshape(n_blocks, 8, 32)
    hmask = np.zeros((n_blocks, 32), dtype=np.uint8)
    for j in range(8):
        hmask |= high[:, j, :] << j

    # Scale s (stored + 32) keeps its low 4 bits in byte s % 8, nibble s // 8,
    # and its high 2 bits in byte 8 + s % 4, bit pair s // 4.
    biased = scales + 32
    low = biased & 0x0F
    packed = np.zeros((n_blocks, 12), dtype=np.uint8)
    packed[:, 0:8] = low[:, 0:8] | (low[:, 8:16] << 4)
    top = (biased >> 4) & 0x03
    for pair in range(4):
        packed[:, 8:12] |= top[:, 4 * pair:4 * pair + 4] << (2 * pair)
    return np.concatenate([hmask, pack_2bit_quants(stored), packed, f16_bytes(d)], axis=1)


def encode_q6_k(blocks: np.ndarray) -> np.ndarray:
    """Encode 16 sub-blocks of 16 as d * scale[s] * (q - 32), q in [0, 63]."""
    n_blocks = blocks.shape[0]
    sub = blocks.reshape(n_blocks, 16, 16)
    sub_scale = np.abs(sub).max(axis=-1) / 31.0
    d = as_f16(sub_scale.max(axis=-1) / 127.0)
    scales = np.clip(np.rint(safe_divide(sub_scale, d[:, None])), -128, 127).astype(np.int8)

    step = d[:, None, None] * scales[..., None].astype(np.float32)
    q = np.clip(np.rint(safe_divide(sub, step)) + 32, 0, 63).astype(np.uint8).reshape(n_blocks, QK_K)

    # Element e lives in half h = e // 128. Its low 4 bits sit in ql byte
    # 64h + (e % 64), nibble (e % 128) // 64. Its high 2 bits sit in qh byte
    # 32h + (e % 32), bit pair (e % 128) // 32.
    halves = q.reshape(n_blocks, 2, 128)
    low = halves & 0x0F
    ql = (low[:, :, 0:64] | (low[:, :, 64:128] << 4)).reshape(n_blocks, 128)
    high = (halves >> 4).reshape(n_blocks, 2, 4, 32)
    qh = (high[:, :, 0] | (high[:, :, 1] << 2) | (high[:, :, 2] << 4) | (high[:, :, 3] << 6))
    return np.concatenate(
        [ql, qh.reshape(n_blocks, 64), scales.view(np.uint8), f16_bytes(d)], axis=1
    )


# Vocabularies


def gpt2_byte_symbols() -> List[str]:
    """Return the printable symbol GPT-2's byte-level BPE uses for each byte 0..255."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    symbols = {}
    shifted = 0
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + shifted)
            shifted += 1
    return [symbols[byte] for byte in range(256)]


# Merges in priority order. "Ġ" is GPT-2's symbol for the space byte.
GPT2_MERGES = [
    ("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"),
    ("o", "n"), ("Ġ", "s"), ("r", "e"), ("a", "t"), ("Ġ", "w"), ("o", "u"),
    ("e", "n"), ("Ġ", "c"), ("i", "s"), ("Ġ", "o"), ("Ġ", "b"), ("e", "s"),
    ("Ġa", "n"), ("Ġan", "d"), ("Ġ", "f"), ("Ġo", "f"), ("i", "t"), ("Ġt", "o"),
    ("n", "g"), ("in", "g"), ("Ġ", "m"), ("Ġ", "p"), ("o", "r"), ("l", "l"),
    ("Ġ", "h"), ("a", "n"), ("Ġ", "d"), ("e", "d"), ("Ġ", "i"), ("Ġi", "n"),
    ("Ġ", "l"), ("a", "r"), ("a", "s"), ("Ġw", "as"), ("Ġ", "Ġ"),
]


def build_vocabulary(kind: str) -> Vocabulary:
    if kind == "gpt2":
        return gpt2_vocabulary()
    if kind == "spm":
        return spm_vocabulary()
    raise ValueError(f"unknown vocabulary kind {kind!r}: use 'gpt2' or 'spm'")


def gpt2_vocabulary() -> Vocabulary:
    """Build a byte-level BPE vocabulary shaped like SmolLM2's: specials, bytes, merges."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = specials + gpt2_byte_symbols()
    token_types = [int(TokenType.CONTROL)] * len(specials)
    token_types += [int(TokenType.NORMAL)] * 256

    known = set(tokens)
    merges = []
    for left, right in GPT2_MERGES:
        # Merges must combine existing tokens, in an order llama.cpp can replay.
        if left not in known or right not in known:
            continue
        merges.append(f"{left} {right}")
        merged = left + right
        if merged not in known:
            tokens.append(merged)
            token_types.append(int(TokenType.NORMAL))
            known.add(merged)

    return Vocabulary(
        model="gpt2", pre="gpt-2", tokens=tokens, token_types=token_types, scores=None,
        merges=merges, bos_id=1, eos_id=2, unk_id=0, pad_id=2, add_bos=False,
    )


SPM_PIECES = [
    "▁", "e", "t", "a", "o", "i", "n", "s", "h", "r", "d", "l", "u", "c", "m", "w",
    "▁t", "▁a", "▁the", "▁of", "▁and", "▁to", "▁in", "▁is", "▁was", "he", "in", "er",
    "an", "on", "re", "at", "en", "es", "or", "ing", "ed", "▁s", "▁w", "▁c",
]


def spm_vocabulary() -> Vocabulary:
    """Build a SentencePiece vocabulary shaped like Gemma 3's: specials, byte fallback, pieces."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    special_types = [TokenType.CONTROL, TokenType.CONTROL, TokenType.CONTROL,
                     TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    byte_tokens = [f"<0x{byte:02X}>" for byte in range(256)]

    tokens = specials + byte_tokens + SPM_PIECES
    token_types = [int(t) for t in special_types]
    token_types += [int(TokenType.BYTE)] * 256 + [int(TokenType.NORMAL)] * len(SPM_PIECES)
    # SentencePiece merges prefer higher scores, so merge priority follows SPM_PIECES order.
    scores = [0.0] * (len(specials) + 256) + [-float(i) for i in range(len(SPM_PIECES))]

    return Vocabulary(
        model="llama", pre="default", tokens=tokens, token_types=token_types, scores=scores,
        merges=None, bos_id=2, eos_id=1, unk_id=3, pad_id=0, add_bos=True,
    )


def add_vocabulary(writer: gguf.GGUFWriter, vocab: Vocabulary) -> None:
    writer.add_tokenizer_model(vocab.model)
    if vocab.pre is not None:
        writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    if vocab.scores is not None:
        writer.add_token_scores(vocab.scores)
    if vocab.merges is not None:
        writer.add_token_merges(vocab.merges)
    writer.add_bos_token_id(vocab.bos_id)
    writer.add_eos_token_id(vocab.eos_id)
    if vocab.unk_id is not None:
        writer.add_unk_token_id(vocab.unk_id)
    if vocab.pad_id is not None:
        writer.add_pad_token_id(vocab.pad_id)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)

