"""Type stubs for turbokv's private native module.

Use the public API in ``turbokv`` instead; this module may change between
releases. Calls that compute (loading, ``Session.eval``, ``Generator``
steps, ``Model.perplexity``) release the GIL.
"""

from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import numpy.typing as npt

__version__: str

#: KV cache type names accepted by ``Session``.
KV_TYPES: list[str]

class TurbokvError(ValueError):
    """Base class of every error turbokv raises for bad input."""

class GGUFFormatError(TurbokvError):
    """The model file is not valid GGUF; the message names the field or tensor."""

class UnsupportedModelError(TurbokvError):
    """The architecture, tensor type or tokenizer is not supported."""

class ContextOverflowError(TurbokvError):
    """More tokens than the context holds; the message gives both numbers."""

def simd_path() -> str:
    """The kernel instruction set in use: ``"scalar"``, ``"avx2"`` or ``"neon"``."""

def dequantize(type_name: str, data: bytes, n: int) -> npt.NDArray[np.float32]:
    """Dequantize ``n`` elements of GGML type ``type_name`` (for example ``"Q4_K"``)."""

def matvec(type_name: str, weights: bytes, n_cols: int, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Multiply weight rows of GGML type ``type_name`` by ``x`` on one thread (for tests and benchmarks).

    ``x`` is encoded in the type's activation format first (Q8_0, Q8_1 or
    Q8_K for quantized weights), as the engine does for each token.
    """

class KvStore:
    """One layer's key store of a KV cache, for timing writes (for tests and benchmarks)."""

    def __init__(self, cache_type: str, n_kv_heads: int, head_dim: int, capacity: int) -> None: ...
    @property
    def row_bytes(self) -> int:
        """Bytes one head vector occupies."""
    def write(self, first_slot: int, rows: npt.NDArray[np.float32]) -> None:
        """Store a flat float32 array of ``n_positions * n_kv_heads * head_dim`` values in slots ``first_slot..``."""
    def raw_bytes(self) -> bytes:
        """The stored bytes, ``[n_kv_heads][capacity][row_bytes]``."""

class Model:
    """Weights and tokenizer of one GGUF file, shared by any number of sessions."""

    def __init__(self, path: str, n_threads: int = 0, centers_cache_dir: Optional[str] = None) -> None:
        """Load ``path`` over mmap. ``n_threads = 0`` uses every core.

        With ``centers_cache_dir``, the key centers a TurboQuant session
        calibrates are stored in that folder and read back on later loads
        of the same file. Without it, each loaded model calibrates once.
        """

    @property
    def n_ctx_train(self) -> int: ...
    @property
    def n_vocab(self) -> int: ...
    @property
    def n_threads(self) -> int: ...
    @property
    def bos_id(self) -> Optional[int]: ...
    @property
    def eos_id(self) -> Optional[int]: ...
    @property
    def eog_ids(self) -> list[int]: ...
    @property
    def chat_template(self) -> Optional[str]: ...
    @property
    def add_bos(self) -> bool:
        """Whether tokenizing with ``add_special`` prepends BOS."""

    def kv_cache_bytes(self, n_ctx: int, cache_type_k: str = "fp32", cache_type_v: str = "fp32") -> int:
        """Bytes a session of ``n_ctx`` positions allocates for keys and values."""

    def info(self) -> dict:
        """Architecture, dimensions, tensor types and sizes, tokenizer facts."""

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]: ...
    def token_to_piece(self, token: int, special: bool = False) -> bytes: ...
    def detokenize(self, tokens: Sequence[int], special: bool = False) -> bytes: ...

    def perplexity(
        self,
        tokens: Sequence[int],
        n_ctx: int,
        cache_type_k: str = "fp32",
        cache_type_v: str = "fp32",
        progress: Optional[Callable[[int, int], None]] = None,
    ) -> dict:
        """Perplexity the way llama-perplexity computes it.

        The tokens are split into non-overlapping chunks of ``n_ctx``; each
        chunk starts with BOS when the vocabulary adds one, and only its
        second half is scored. Returns ``ppl``, ``nll``, ``n_scored``,
        ``n_chunks``. ``progress(done, total)`` runs after each chunk.
        """

    def perplexity_kl(
        self,
        tokens: Sequence[int],
        n_ctx: int,
        cache_type_k: str,
        cache_type_v: str,
        base_type_k: str = "fp32",
        base_type_v: str = "fp32",
        progress: Optional[Callable[[int, int], None]] = None,
    ) -> dict:
        """Score the chunks of ``perplexity`` with a base and a candidate KV cache side by side.

        Returns ``ppl``, ``nll`` and ``chunk_ppl`` of the candidate, the same
        with a ``_base`` suffix for the base, ``kl_divergence`` (mean
        KL(base || candidate) per scored token, in nats) with
        ``kl_divergence_stderr`` and ``kl_divergence_max``, ``top1_agreement``
        (percent of scored positions whose most likely token agrees),
        ``n_scored``, ``n_chunks``, ``n_ctx`` and the four type names.
        """

class Session:
    """One sequence's KV cache and position. Not shared between threads."""

    def __init__(self, model: Model, n_ctx: int, cache_type_k: str = "fp32", cache_type_v: str = "fp32") -> None: ...

    @property
    def n_ctx(self) -> int: ...
    @property
    def n_past(self) -> int:
        """Tokens in the cache."""
    @property
    def kv_bytes(self) -> int:
        """Bytes allocated for keys and values."""
    @property
    def tokens(self) -> list[int]:
        """The token ids in the cache, in order."""

    def eval(self, tokens: Sequence[int], all_logits: bool = False) -> npt.NDArray[np.float32]:
        """Append ``tokens`` to the cache and return logits.

        Returns the last position's row (shape ``(n_vocab,)``) or, with
        ``all_logits``, one row per token (shape ``(len(tokens), n_vocab)``).
        Raises ``ContextOverflowError`` if the cache would overflow.
        """

    @property
    def cache_type_k(self) -> str: ...
    @property
    def cache_type_v(self) -> str: ...

    def cache_bytes(self, layer: int) -> tuple[bytes, bytes]:
        """Raw stored keys and values of ``layer`` (for tests)."""

    def read_kv(self, layer: int, head: int, pos: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Decoded key and value of KV head ``head`` at position ``pos`` (for tests)."""

    def truncate(self, n_past: int) -> None:
        """Drop every cached position from ``n_past`` on."""

    def reset(self) -> None: ...

class Sampler:
    def __init__(
        self,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        repeat_last_n: int = 64,
        seed: Optional[int] = None,
    ) -> None:
        """Sampling settings. ``temperature = 0`` is greedy; ``top_k = 0``,
        ``top_p = 1`` and ``min_p = 0`` disable those filters."""

    def sample(self, logits: npt.NDArray[np.float32], history: Sequence[int] = ()) -> int: ...

class Generator(Iterator[int]):
    """Yields generated token ids; the prompt is evaluated on the first step.

    ``stop_reason`` is ``None`` while running, then ``"eog"`` (an
    end-of-generation token, not yielded), ``"length"`` (``max_tokens``
    reached) or ``"context"`` (the context is full).
    """

    def __init__(self, session: Session, prompt: Sequence[int], sampler: Sampler, max_tokens: int) -> None: ...
    def __iter__(self) -> "Generator": ...
    def __next__(self) -> int: ...
    @property
    def stop_reason(self) -> Optional[str]: ...
    @property
    def n_prompt(self) -> int: ...
    @property
    def prompt_seconds(self) -> float: ...
    @property
    def decode_seconds(self) -> float: ...
    @property
    def n_decoded(self) -> int: ...
