"""Plain numpy forward pass of llama and gemma3 GGUF models, used as an independent reference.

``forward(path, tokens)`` returns the logits at every position of a token list,
computed in float64 from weights dequantized by gguf.quants. The graphs follow
llama.cpp's (src/models/llama.cpp and src/models/gemma3.cpp):

- llama: x = embd[tokens]; per layer x += attn(rms(x) * attn_norm) and
  x += down(silu(gate(h)) * up(h)) with h = rms(x) * ffn_norm; rope on adjacent
  pairs (2i, 2i+1); logits = (rms(x) * output_norm) @ output^T.
- gemma3: x = embd[tokens] * sqrt(n_embd); per-head RMS norm of q and k before a
  NeoX rope on pairs (i, i + n_rot/2); q scaled by 1/sqrt(head_dim) (by
  1/sqrt(n_embd/n_head) for the 62-layer 27B, as llama.cpp does);
  post_attention_norm and post_ffw_norm before each residual add; GELU (tanh
  form) feed-forward; local layers use rope base 10000 and a sliding window.

Both use output.weight when present and token_embd otherwise. Nothing here
imports turbokv, so the tests can compare turbokv against it.

With ``quantize_activations=True`` every matrix product first rounds its input
rows the way ggml's CPU backend encodes them for the weight's type
(``vec_dot_type`` in ggml-cpu.c): Q8_0 blocks for Q4_0, Q5_0 and Q8_0 weights,
Q8_1 for Q4_1 and Q5_1, Q8_K for the K-quants, f16 for F16 and bf16 for BF16.
The rounded rows are then multiplied in float64, so what remains between this
and llama.cpp is summation order and the f16 rounding of Q8_1's block sum.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import gguf
import numpy as np
from gguf import GGMLQuantizationType

# Rows of the output projection multiplied at once, so a 262144-token vocabulary
# never needs a full float64 copy of the embedding matrix.
OUTPUT_ROWS_PER_STEP = 16384


@dataclasses.dataclass
class Hparams:
    """Hyperparameters read from GGUF metadata, named as in llama.cpp's llama_hparams."""

    arch: str
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_embd_head_k: int
    n_embd_head_v: int
    n_rot: int
    n_vocab: int
    rms_eps: float
    rope_freq_base: float
    rope_freq_scale: float
    swa_layers: List[bool]              # gemma3: True where a layer uses the sliding window
    n_swa: int
    rope_freq_base_swa: float
    final_logit_softcapping: float
    attention_scale: float


class ReferenceModel:
    """A GGUF model loaded as dequantized float32 arrays in numpy order [n_out, n_in]."""

    def __init__(self, path: Union[str, Path]):
        reader = gguf.GGUFReader(str(path))
        self.metadata = read_metadata(reader)
        self.hparams = read_hparams(self.metadata)
        self.tensors = read_tensors(reader)
        self.types = {tensor.name: GGMLQuantizationType(tensor.tensor_type) for tensor in reader.tensors}
        # Block minimums [n_out, n_blocks] of Q4_1 and Q5_1 matrices, for the Q8_1 block-sum term.
        self.block_mins = {
            tensor.name: read_block_mins(tensor) for tensor in reader.tensors
            if ACTIVATION_ENCODING.get(GGMLQuantizationType(tensor.tensor_type)) == GGMLQuantizationType.Q8_1
        }
        self.quantize_activations = False   # set by each forward call

    def weight(self, name: str) -> np.ndarray:
        return self.tensors[name]

    def layer(self, il: int, name: str) -> np.ndarray:
        return self.tensors[f"blk.{il}.{name}.weight"]

    def output_name(self) -> str:
        return "output.weight" if "output.weight" in self.tensors else "token_embd.weight"

    def output_weight(self) -> np.ndarray:
        return self.tensors[self.output_name()]

    def forward(self, tokens: Sequence[int], round_kv_to_f16: bool = False,
                quantize_activations: bool = False) -> np.ndarray:
        """Return float64 logits [len(tokens), n_vocab] for tokens at positions 0, 1, ...

        round_kv_to_f16 rounds keys and values to float16 after rope, the way
        llama.cpp's default f16 KV cache stores them. quantize_activations
        rounds the input of every matrix product as ggml does for the weight's
        type (see the module docstring).
        """
        self.quantize_activations = quantize_activations
        hp = self.hparams
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.ndim != 1 or len(tokens) == 0:
            raise ValueError(f"tokens must be a non-empty 1-D list, got shape {tokens.shape}")
        if tokens.min() < 0 or tokens.max() >= hp.n_vocab:
            raise ValueError(f"token ids must lie in [0, {hp.n_vocab}), got {tokens.min()}..{tokens.max()}")

        x = self.weight("token_embd.weight")[tokens].astype(np.float64)
        if hp.arch == "gemma3":
            x = x * float(np.float32(math.sqrt(hp.n_embd)))

        positions = np.arange(len(tokens))
        for il in range(hp.n_layer):
            if hp.arch == "gemma3":
                x = self.gemma3_layer(il, x, positions, round_kv_to_f16)
            else:
                x = self.llama_layer(il, x, positions, round_kv_to_f16)

        x = rms_norm(x, hp.rms_eps) * self.weight("output_norm.weight")
        logits = self.matmul(x, self.output_name(), project_in_steps)
        if hp.final_logit_softcapping > 0.0:
            cap = hp.final_logit_softcapping
            logits = cap * np.tanh(logits / cap)
        return logits

    def llama_layer(self, il: int, x: np.ndarray, positions: np.ndarray,
                    round_kv_to_f16: bool) -> np.ndarray:
        hp = self.hparams
        h = rms_norm(x, hp.rms_eps) * self.layer(il, "attn_norm")
        q, k, v = self.project_qkv(il, h)

        freq_factors = self.tensors.get("rope_freqs.weight")
        q = rope_normal(q, positions, hp.n_rot, hp.rope_freq_base, hp.rope_freq_scale, freq_factors)
        k = rope_normal(k, positions, hp.n_rot, hp.rope_freq_base, hp.rope_freq_scale, freq_factors)

        attn = attention(q * hp.attention_scale, k, v, positions, window=0, round_kv_to_f16=round_kv_to_f16)
        x = x + self.project(attn, il, "attn_output")

        h = rms_norm(x, hp.rms_eps) * self.layer(il, "ffn_norm")
        return x + self.feed_forward(il, h, silu)

    def gemma3_layer(self, il: int, x: np.ndarray, positions: np.ndarray,
                     round_kv_to_f16: bool) -> np.ndarray:
        hp = self.hparams
        h = rms_norm(x, hp.rms_eps) * self.layer(il, "attn_norm")
        q, k, v = self.project_qkv(il, h)

        # Per-head RMS norm: q and k are [n_tokens, heads, head_dim].
        q = rms_norm(q, hp.rms_eps) * self.layer(il, "attn_q_norm")
        k = rms_norm(k, hp.rms_eps) * self.layer(il, "attn_k_norm")

        local = hp.swa_layers[il]
        base = hp.rope_freq_base_swa if local else hp.rope_freq_base
        # llama.cpp runs local layers at rope scale 1 (rope_freq_scale_train_swa), whatever the global scaling.
        freq_scale = 1.0 if local else hp.rope_freq_scale
        q = rope_neox(q, positions, hp.n_rot, base, freq_scale)
        k = rope_neox(k, positions, hp.n_rot, base, freq_scale)

        window = hp.n_swa if local else 0
        attn = attention(q * hp.attention_scale, k, v, positions, window, round_kv_to_f16)
        attn = self.project(attn, il, "attn_output")
        x = x + rms_norm(attn, hp.rms_eps) * self.layer(il, "post_attention_norm")

        h = rms_norm(x, hp.rms_eps) * self.layer(il, "ffn_norm")
        ffn = self.feed_forward(il, h, gelu_tanh)
        return x + rms_norm(ffn, hp.rms_eps) * self.layer(il, "post_ffw_norm")

    def project_qkv(self, il: int, h: np.ndarray):
        """Return q [T, n_head, head_dim_k], k [T, n_head_kv, head_dim_k], v [T, n_head_kv, head_dim_v]."""
        hp = self.hparams
        n_tokens = h.shape[0]
        q = self.project(h, il, "attn_q")
        k = self.project(h, il, "attn_k")
        v = self.project(h, il, "attn_v")
        return (
            q.reshape(n_tokens, hp.n_head, hp.n_embd_head_k),
            k.reshape(n_tokens, hp.n_head_kv, hp.n_embd_head_k),
            v.reshape(n_tokens, hp.n_head_kv, hp.n_embd_head_v),
        )

    def feed_forward(self, il: int, h: np.ndarray, activation) -> np.ndarray:
        gate = self.project(h, il, "ffn_gate")
        up = self.project(h, il, "ffn_up")
        return self.project(activation(gate) * up, il, "ffn_down")

    def project(self, x: np.ndarray, il: int, name: str) -> np.ndarray:
        """Return x @ W.T for layer il's matrix `name`."""
        return self.matmul(x, f"blk.{il}.{name}.weight")

    def matmul(self, x: np.ndarray, weight_name: str, multiply=None) -> np.ndarray:
        """Return x @ W.T for the named matrix, rounding x first if the forward pass asks.

        `multiply(x, weight)` does the float64 product (linear by default).
        """
        multiply = multiply or linear
        weight = self.tensors[weight_name]
        if not self.quantize_activations:
            return multiply(x, weight)

        weight_type = self.types[weight_name]
        out = multiply(round_like_vec_dot(x, weight_type), weight)
        if weight_name in self.block_mins:
            out += q8_1_sum_correction(x, self.block_mins[weight_name])
        return out


def forward(path: Union[str, Path], tokens: Sequence[int], round_kv_to_f16: bool = False,
            quantize_activations: bool = False) -> np.ndarray:
    """Load the GGUF file at `path` and return float64 logits [len(tokens), n_vocab]."""
    model = ReferenceModel(path)
    return model.forward(tokens, round_kv_to_f16=round_kv_to_f16, quantize_activations=quantize_activations)


# Activation rounding, as ggml's CPU backend encodes matrix-product inputs

QK8 = 32        # elements per Q8_0 and Q8_1 block
QK_K = 256      # elements per Q8_K block

# ggml's vec_dot_type of each weight type (F32 keeps f32 activations).
ACTIVATION_ENCODING = {
    GGMLQuantizationType.F16: GGMLQuantizationType.F16,
    GGMLQuantizationType.BF16: GGMLQuantizationType.BF16,
    GGMLQuantizationType.Q4_0: GGMLQuantizationType.Q8_0,
    GGMLQuantizationType.Q5_0: GGMLQuantizationType.Q8_0,
    GGMLQuantizationType.Q8_0: GGMLQuantizationType.Q8_0,
    GGMLQuantizationType.Q4_1: GGMLQuantizationType.Q8_1,
    GGMLQuantizationType.Q5_1: GGMLQuantizationType.Q8_1,
    GGMLQuantizationType.Q2_K: GGMLQuantizationType.Q8_K,
    GGMLQuantizationType.Q3_K: GGMLQuantizationType.Q8_K,
    GGMLQuantizationType.Q4_K: GGMLQuantizationType.Q8_K,
    GGMLQuantizationType.Q5_K: GGMLQuantizationType.Q8_K,
    GGMLQuantizationType.Q6_K: GGMLQuantizationType.Q8_K,
}


def round_like_vec_dot(x: np.ndarray, weight_type: GGMLQuantizationType) -> np.ndarray:
    """Return the float64 values ggml multiplies when rows x meet a `weight_type` matrix.

    The rows are first rounded to float32, the precision llama.cpp keeps
    activations in, then encoded and decoded as the weight's vec_dot_type.
    """
    encoding = ACTIVATION_ENCODING.get(weight_type)
    if encoding is None:
        return x

    rows = np.asarray(x, dtype=np.float32)
    if encoding == GGMLQuantizationType.F16:
        return rows.astype(np.float16).astype(np.float64)
    if encoding == GGMLQuantizationType.BF16:
        return round_to_bf16(rows)
    if encoding == GGMLQuantizationType.Q8_K:
        return round_to_q8_k(rows)
    return round_to_q8_0(rows)


def round_to_bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 (nearest, ties to even), as ggml_fp32_to_bf16 does for finite values."""
    bits = x.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return rounded.astype(np.uint32).view(np.float32).astype(np.float64)


def encode_q8_0(x: np.ndarray):
    """Return (d float32 [n_blocks], q float64 [n_blocks, 32]) of float32 rows x, as Q8_0 and Q8_1 encode them.

    d = amax / 127 and q = round(x / d), half away from zero, as ggml's
    quantize_row_q8_0_ref. The blocks run along the flattened rows.
    """
    blocks = x.reshape(-1, QK8)
    d = (np.abs(blocks).max(axis=-1) / np.float32(127.0)).astype(np.float32)
    inverse = np.zeros_like(d)
    np.divide(np.float32(1.0), d, out=inverse, where=d != 0)
    scaled = blocks * inverse[:, None]
    q = np.sign(scaled) * np.floor(np.abs(scaled).astype(np.float64) + 0.5)
    return d, q


def round_to_q8_0(x: np.ndarray) -> np.ndarray:
    """Encode and decode blocks of 32 as Q8_0 and Q8_1 do; the decoded value uses d rounded to f16."""
    d, q = encode_q8_0(x)
    decoded = d.astype(np.float16).astype(np.float64)[:, None] * q
    return decoded.reshape(x.shape)


def q8_1_sum_correction(x: np.ndarray, block_mins: np.ndarray) -> np.ndarray:
    """Return the part of a Q4_1 or Q5_1 product that round_to_q8_0 leaves out, [T, n_out].

    ggml adds min * s per block, where s = f16(d * sum(q)) is stored with the
    Q8_1 block, instead of min * f16(d) * sum(q). block_mins is [n_out, n_blocks].
    """
    rows = np.asarray(x, dtype=np.float32)
    d, q = encode_q8_0(rows)
    sum_q = q.sum(axis=-1).astype(np.float32)
    stored_sum = (d * sum_q).astype(np.float16).astype(np.float64)
    decoded_sum = d.astype(np.float16).astype(np.float64) * sum_q
    delta = (stored_sum - decoded_sum).reshape(rows.shape[0], -1)
    return delta @ block_mins.T.astype(np.float64)


def round_to_q8_k(x: np.ndarray) -> np.ndarray:
    """Encode and decode blocks of 256 as Q8_K does.

    The element of largest magnitude (the first one on ties) maps to -127,
    q = nearest_int(-127 / max * x) rounds half to even and is capped at 127,
    and the float32 d = max / -127 decodes it.
    """
    blocks = x.reshape(-1, QK_K)
    index = np.abs(blocks).argmax(axis=-1)
    signed_max = blocks[np.arange(len(blocks)), index]

    iscale = np.zeros_like(signed_max)
    np.divide(np.float32(-127.0), signed_max, out=iscale, where=signed_max != 0)
    q = np.minimum(np.rint(blocks * iscale[:, None]), 127.0)
    d = np.zeros_like(iscale)
    np.divide(np.float32(1.0), iscale, out=d, where=iscale != 0)
    decoded = d.astype(np.float64)[:, None] * q.astype(np.float64)
    return decoded.reshape(x.shape)


# Building blocks


def linear(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Return x @ weight.T in float64 for a weight stored [n_out, n_in]."""
    return x @ weight.T.astype(np.float64)


def rms_norm(x: np.ndarray, eps: float) -> np.ndarray:
    """Normalize the last axis by its root mean square, as ggml_rms_norm does."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU in the tanh approximation that ggml_gelu computes."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def rope_angles(positions: np.ndarray, n_rot: int, freq_base: float, freq_scale: float,
                freq_factors: Optional[np.ndarray] = None) -> np.ndarray:
    """Return rotation angles [n_tokens, n_rot/2]: pos * scale * base^(-2i/n_rot) / factor_i."""
    exponents = np.arange(n_rot // 2, dtype=np.float64) * (-2.0 / n_rot)
    inv_freq = np.power(float(freq_base), exponents)
    if freq_factors is not None:
        inv_freq = inv_freq / freq_factors.astype(np.float64)[: n_rot // 2]
    return positions[:, None].astype(np.float64) * freq_scale * inv_freq[None, :]


def rotate(x0: np.ndarray, x1: np.ndarray, angles: np.ndarray):
    # angles is [n_tokens, n_rot/2]; x0 and x1 are [n_tokens, heads, n_rot/2].
    cos = np.cos(angles)[:, None, :]
    sin = np.sin(angles)[:, None, :]
    return x0 * cos - x1 * sin, x0 * sin + x1 * cos


def rope_normal(x: np.ndarray, positions: np.ndarray, n_rot: int, freq_base: float,
                freq_scale: float, freq_factors: Optional[np.ndarray] = None) -> np.ndarray:
    """Rotate adjacent pairs (2i, 2i+1) of the first n_rot dims (llama.cpp's LLAMA_ROPE_TYPE_NORM)."""
    angles = rope_angles(positions, n_rot, freq_base, freq_scale, freq_factors)
    out = x.copy()
    out[..., 0:n_rot:2], out[..., 1:n_rot:2] = rotate(x[..., 0:n_rot:2], x[..., 1:n_rot:2], angles)
    return out


def rope_neox(x: np.ndarray, positions: np.ndarray, n_rot: int, freq_base: float,
              freq_scale: float) -> np.ndarray:
    """Rotate pairs (i, i + n_rot/2) of the first n_rot dims (llama.cpp's LLAMA_ROPE_TYPE_NEOX)."""
    half = n_rot // 2
    angles = rope_angles(positions, n_rot, freq_base, freq_scale)
    out = x.copy()
    out[..., :half], out[..., half:n_rot] = rotate(x[..., :half], x[..., half:n_rot], angles)
    return out


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, positions: np.ndarray,
              window: int, round_kv_to_f16: bool) -> np.ndarray:
    """Causal grouped-query attention over pre-scaled queries; returns [T, n_head * head_dim_v].

    Query head h reads key/value head h // (n_head / n_head_kv), as ggml's
    broadcasting mul_mat does. With window > 0 a query at position p attends only
    to keys at positions > p - window.
    """
    if round_kv_to_f16:
        k = k.astype(np.float16).astype(np.float64)
        v = v.astype(np.float16).astype(np.float64)

    n_tokens, n_head, _ = q.shape
    group = n_head // k.shape[1]
    k = np.repeat(k, group, axis=1)
    v = np.repeat(v, group, axis=1)

    scores = np.einsum("qhd,khd->hqk", q, k)
    distance = positions[:, None] - positions[None, :]     # query minus key position
    visible = distance >= 0
    if window > 0:
        visible &= distance < window
    scores = np.where(visible[None, :, :], scores, -np.inf)

    scores = scores - scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    weights /= weights.sum(axis=-1, keepdims=True)
    out = np.einsum("hqk,khd->qhd", weights, v)
    return out.reshape(n_tokens, -1)


def project_in_steps(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Return x @ weight.T in float64, a block of output rows at a time."""
    logits = np.empty((x.shape[0], weight.shape[0]), dtype=np.float64)
    for start in range(0, weight.shape[0], OUTPUT_ROWS_PER_STEP):
        block = weight[start:start + OUTPUT_ROWS_PER_STEP]
        logits[:, start:start + OUTPUT_ROWS_PER_STEP] = linear(x, block)
    return logits


# GGUF reading


def read_metadata(reader: gguf.GGUFReader) -> Dict[str, object]:
    metadata = {}
    for key, field in reader.fields.items():
        if key.startswith("tokenizer.ggml.") and key != "tokenizer.ggml.model":
            continue    # token lists are large and the forward pass does not need them
        metadata[key] = field.contents()
    metadata["n_vocab"] = len(reader.fields["tokenizer.ggml.tokens"].data)
    return metadata


def read_block_mins(tensor) -> np.ndarray:
    """Return the f16 block minimums m of a Q4_1 or Q5_1 tensor as float32 [n_rows, n_blocks].

    Both block layouts start with d and then m, each an f16.
    """
    block_size, block_bytes = gguf.GGML_QUANT_SIZES[GGMLQuantizationType(tensor.tensor_type)]
    n_rows = int(np.prod(tensor.shape[1:]))
    blocks = np.asarray(tensor.data, dtype=np.uint8).reshape(-1, block_bytes)
    mins = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
    return mins.reshape(n_rows, int(tensor.shape[0]) // block_size)


def read_tensors(reader: gguf.GGUFReader) -> Dict[str, np.ndarray]:
    """Dequantize every tensor to float32 in numpy order (ggml's ne reversed)."""
    tensors = {}
    for tensor in reader.tensors:
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        shape = tuple(int(n) for n in reversed(tensor.shape))
        tensors[tensor.name] = np.asarray(values, dtype=np.float32).reshape(shape)
    return tensors


def read_hparams(metadata: Dict[str, object]) -> Hparams:
    arch = str(metadata["general.architecture"])
    if arch not in ("llama", "gemma3"):
        raise ValueError(f"unsupported architecture {arch!r}: the reference runs llama and gemma3")

    def get(key: str, default=None):
        value = metadata.get(f"{arch}.{key}", default)
        if value is None:
            raise KeyError(f"GGUF metadata key {arch}.{key} is missing")
        return value

    n_embd = int(get("embedding_length"))
    n_layer = int(get("block_count"))
    n_head = int(get("attention.head_count"))
    n_embd_head_k = int(get("attention.key_length", n_embd // n_head))
    n_swa = int(get("attention.sliding_window", 0)) if arch == "gemma3" else 0

    return Hparams(
        arch=arch,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        n_head_kv=int(get("attention.head_count_kv", n_head)),
        n_embd_head_k=n_embd_head_k,
        n_embd_head_v=int(get("attention.value_length", n_embd // n_head)),
        n_rot=int(get("rope.dimension_count", n_embd_head_k)),
        n_vocab=int(metadata["n_vocab"]),
        rms_eps=float(get("attention.layer_norm_rms_epsilon")),
        rope_freq_base=float(get("rope.freq_base", 10000.0)),
        rope_freq_scale=rope_freq_scale(metadata, arch),
        swa_layers=swa_layers(metadata, arch, n_layer, n_swa),
        n_swa=n_swa,
        # NOTE: the llama.cpp gemma3 loaders consulted for this module hard-code
        # base 10000 for local layers. This key is honored only if a file sets it.
        rope_freq_base_swa=float(get("rope.freq_base_swa", 10000.0)),
        final_logit_softcapping=final_logit_softcapping(metadata, arch, n_swa),
        attention_scale=attention_scale(arch, n_embd, n_head, n_layer, n_embd_head_k),
    )


def rope_freq_scale(metadata: Dict[str, object], arch: str) -> float:
    """Return 1/factor of linear rope scaling, as llama.cpp derives rope_freq_scale_train."""
    scaling_type = str(metadata.get(f"{arch}.rope.scaling.type", "none"))
    if scaling_type not in ("none", "linear"):
        raise NotImplementedError(f"rope scaling type {scaling_type!r} is not supported by the reference")
    factor = metadata.get(f"{arch}.rope.scaling.factor", metadata.get(f"{arch}.rope.scale_linear", 0.0))
    return 1.0 if not factor else 1.0 / float(factor)


def swa_layers(metadata: Dict[str, object], arch: str, n_layer: int, n_swa: int) -> List[bool]:
    """Return which layers use the sliding window: il % 6 < 5 for gemma3 unless sliding_window_pattern is set."""
    if arch != "gemma3" or n_swa <= 0:
        return [False] * n_layer
    pattern = metadata.get(f"{arch}.attention.sliding_window_pattern", 6)
    if isinstance(pattern, (list, tuple)):
        return [bool(flag) for flag in pattern]
    period = int(pattern)
    return [period == 0 or il % period < period - 1 for il in range(n_layer)]


def final_logit_softcapping(metadata: Dict[str, object], arch: str, n_swa: int) -> float:
    # llama.cpp's gemma3 graph soft-caps logits only when the model has no sliding window.
    if arch != "gemma3" or n_swa > 0:
        return 0.0
    return float(metadata.get(f"{arch}.final_logit_softcapping", 0.0))


def attention_scale(arch: str, n_embd: int, n_head: int, n_layer: int, n_embd_head_k: int) -> float:
    """Return the factor applied to queries before q.k."""
    # llama.cpp identifies Gemma 3 27B by its 62 layers and scales by n_embd / n_head there.
    if arch == "gemma3" and n_layer == 62:
        return 1.0 / math.sqrt(n_embd // n_head)
    return 1.0 / math.sqrt(n_embd_head_k)
