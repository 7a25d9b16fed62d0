"""The public ``Model`` class on top of the native engine in ``turbokv._turbokv``.

This layer validates arguments (raising ``TurbokvError``, a ``ValueError``,
that names the value and the valid range), turns prompts into token ids,
streams text without splitting UTF-8 characters and packages timings.
"""

import codecs
import logging
import math
import numbers
import os
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, List, Optional, Sequence, Union

from turbokv import _turbokv
from turbokv._turbokv import ContextOverflowError, TurbokvError
from turbokv.paths import centers_cache_dir

if TYPE_CHECKING:
    # Only for annotations: importing numpy starts OpenBLAS threads that spin
    # for tens of milliseconds, so `import turbokv` leaves it to the first
    # call that returns an array.
    import numpy as np

    from turbokv import chat

logger = logging.getLogger(__name__)

#: A prompt is text (``bytes`` must be UTF-8) or a sequence of token ids.
Prompt = Union[str, bytes, Sequence[int]]

DEFAULT_KV_TYPE = "turbo_kv_4b"

#: Text that ``Model.perplexity`` scores when it is given none, in the package's data folder.
PERPLEXITY_TEXT = "pride_and_prejudice_ch1-6.txt"

_SEED_MAX = 2**64 - 1


def _check_int(name: str, value: object, minimum: int, maximum: Optional[int] = None) -> int:
    """Return ``value`` as an int, or raise if it is not an integer in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")

    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        valid = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise TurbokvError(f"invalid {name}={value}: expected an integer {valid}")
    return value


def _check_float(name: str, value: object, low: float, high: float, low_open: bool = False) -> float:
    """Return ``value`` as a float, or raise if it is outside ``[low, high]`` (``(low, high]`` if ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")

    value = float(value)
    too_low = value <= low if low_open else value < low
    if math.isnan(value) or too_low or value > high:
        left = "(" if low_open else "["
        valid = f"in {left}{low:g}, {high:g}]" if math.isfinite(high) else f"{'>' if low_open else '>='} {low:g}"
        raise TurbokvError(f"invalid {name}={value:g}: expected a number {valid}")
    return value


def _check_kv_type(name: str, value: str) -> str:
    if value not in _turbokv.KV_TYPES:
        choices = ", ".join(_turbokv.KV_TYPES)
        raise TurbokvError(f"invalid {name}={value!r}: expected one of {choices}")
    return value


def _check_model_path(path: Union[str, "os.PathLike[str]"]) -> Path:
    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"model path is a directory, expected a .gguf file: {path}")
    return path


def _decode_utf8(text: Union[str, bytes]) -> str:
    """Return ``text`` as ``str``; bytes must be valid UTF-8."""
    if isinstance(text, str):
        return text
    if not isinstance(text, (bytes, bytearray)):
        raise TypeError(f"text must be str or bytes, got {type(text).__name__}")

    try:
        return bytes(text).decode("utf-8")
    except UnicodeDecodeError as error:
        bad = text[error.start : error.end].hex(" ")
        raise TurbokvError(
            f"text is not valid UTF-8: byte(s) {bad} at offset {error.start} ({error.reason})"
        ) from None


def _make_sampler(
    temperature: float,
    top_k: int,
    top_p: float,
    min_p: float,
    repeat_penalty: float,
    repeat_last_n: int,
    seed: Optional[int],
) -> "_turbokv.Sampler":
    """Validate the sampling settings and build a native sampler."""
    temperature = _check_float("temperature", temperature, 0.0, math.inf)
    top_k = _check_int("top_k", top_k, 0)
    top_p = _check_float("top_p", top_p, 0.0, 1.0, low_open=True)
    min_p = _check_float("min_p", min_p, 0.0, 1.0)
    repeat_penalty = _check_float("repeat_penalty", repeat_penalty, 0.0, math.inf, low_open=True)
    repeat_last_n = _check_int("repeat_last_n", repeat_last_n, 0)
    if seed is not None:
        seed = _check_int("seed", seed, 0, _SEED_MAX)

    return _turbokv.Sampler(
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repeat_penalty=repeat_penalty,
        repeat_last_n=repeat_last_n,
        seed=seed,
    )


def _tokens_per_second(n_tokens: int, seconds: float) -> Optional[float]:
    """Return the rate, or None when nothing was timed (so JSON output stays valid)."""
    if n_tokens <= 0 or seconds <= 0:
        return None
    return n_tokens / seconds


@dataclass(frozen=True)
class GenerationResult:
    """A finished generation: text, token ids, why it stopped and timings."""

    text: str
    token_ids: List[int]
    prompt_token_ids: List[int]
    #: ``"eog"`` (end-of-generation token), ``"length"`` (``max_tokens``) or ``"context"`` (context full).
    stop_reason: Optional[str]
    n_prompt: int
    n_decoded: int
    prompt_seconds: float
    decode_seconds: float
    #: Bytes allocated for keys and values in the generation's session.
    kv_bytes: int
    n_ctx: int
    cache_type_k: str
    cache_type_v: str

    @property
    def prompt_tokens_per_second(self) -> Optional[float]:
        return _tokens_per_second(self.n_prompt, self.prompt_seconds)

    @property
    def decode_tokens_per_second(self) -> Optional[float]:
        return _tokens_per_second(self.n_decoded, self.decode_seconds)

    def to_dict(self) -> dict:
        """Return the fields and both rates as a JSON-serializable dict."""
        result = asdict(self)
        result["prompt_tokens_per_second"] = self.prompt_tokens_per_second
        result["decode_tokens_per_second"] = self.decode_tokens_per_second
        return result


class Generation(Iterator[str]):
    """A running generation. Iterating it yields text pieces as tokens are sampled.

    A piece never ends inside a UTF-8 character: the bytes of each token are fed
    to an incremental decoder, which holds back an incomplete trailing sequence
    until the next token completes it. Invalid bytes become U+FFFD.
    """

    def __init__(
        self,
        model: "Model",
        session: "_turbokv.Session",
        generator: "_turbokv.Generator",
        prompt_token_ids: List[int],
    ) -> None:
        self._model = model
        self._session = session
        self._generator = generator
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pieces: List[str] = []
        self._finished = False
        self.prompt_token_ids = prompt_token_ids
        self.token_ids: List[int] = []

    def __iter__(self) -> "Generation":
        return self

    def __next__(self) -> str:
        while not self._finished:
            piece = self._step()
            if piece:
                self._pieces.append(piece)
                return piece
        raise StopIteration

    def _step(self) -> str:
        """Sample one token and return the text it completes, which may be empty."""
        try:
            token = next(self._generator)
        except StopIteration:
            self._finished = True
            return self._decoder.decode(b"", final=True)
        except BaseException:
            # A KeyboardInterrupt or engine error leaves the native generator in
            # an unknown state, so this generation ends here. The model is
            # unaffected because the session belongs to this generation only.
            self._finished = True
            raise

        self.token_ids.append(token)
        return self._decoder.decode(self._model.token_to_piece(token))

    def close(self) -> None:
        """Stop generating: iteration ends, and the session keeps the tokens evaluated so far."""
        self._finished = True

    @property
    def text(self) -> str:
        """The text generated so far."""
        return "".join(self._pieces)

    @property
    def n_prompt(self) -> int:
        """Prompt tokens evaluated by this generation."""
        return self._generator.n_prompt

    @property
    def stop_reason(self) -> Optional[str]:
        """``None`` while running, then ``"eog"``, ``"length"`` or ``"context"``."""
        return self._generator.stop_reason

    def result(self) -> GenerationResult:
        """Run the generation to its end and return the result."""
        for _ in self:
            pass

        generator = self._generator
        return GenerationResult(
            text=self.text,
            token_ids=list(self.token_ids),
            prompt_token_ids=list(self.prompt_token_ids),
            stop_reason=generator.stop_reason,
            n_prompt=generator.n_prompt,
            n_decoded=generator.n_decoded,
            prompt_seconds=generator.prompt_seconds,
            decode_seconds=generator.decode_seconds,
            kv_bytes=self._session.kv_bytes,
            n_ctx=self._session.n_ctx,
            cache_type_k=self._model.cache_type_k,
            cache_type_v=self._model.cache_type_v,
        )


@dataclass(frozen=True)
class PerplexityResult:
    """Perplexity computed the way llama-perplexity does (see ``Model.perplexity``)."""

    perplexity: float
    #: Mean negative log-likelihood per scored token, in nats.
    nll: float
    n_tokens: int
    n_scored: int
    n_chunks: int
    n_ctx: int
    cache_type_k: str
    cache_type_v: str

    def to_dict(self) -> dict:
        return asdict(self)


def read_perplexity_text() -> str:
    """Return the text shipped for perplexity: chapters 1 to 6 of Pride and Prejudice."""
    resource = resources.files("turbokv").joinpath("data").joinpath(PERPLEXITY_TEXT)
    try:
        return resource.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"perplexity text not found in the turbokv package: data/{PERPLEXITY_TEXT}; "
            "reinstall turbokv or pass text explicitly"
        ) from None


class Model:
    """A GGUF model with a context size and KV cache types for its sessions.

    ``n_threads = 0`` uses every core. ``cache_type_k`` and ``cache_type_v``
    are names from ``turbokv.KV_TYPES``. Each generation and each ``logits``
    call gets its own session, so an interrupted call leaves the model usable.
    ``create_chat_completion`` instead keeps one session across calls, so a
    conversation re-sent with one more message reuses its cached prefix.
    """

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]"],
        n_ctx: int = 2048,
        n_threads: int = 0,
        cache_type_k: str = DEFAULT_KV_TYPE,
        cache_type_v: str = DEFAULT_KV_TYPE,
    ) -> None:
        self._n_ctx = _check_int("n_ctx", n_ctx, 1)
        n_threads = _check_int("n_threads", n_threads, 0)
        self._cache_type_k = _check_kv_type("cache_type_k", cache_type_k)
        self._cache_type_v = _check_kv_type("cache_type_v", cache_type_v)
        self._path = _check_model_path(path)
        # Created on first use by create_chat_completion.
        self._chat_slot: Optional["chat.SessionSlot"] = None
        self._chat_template: Optional["chat.ChatTemplate"] = None

        logger.info("loading %s with %s threads", self._path, n_threads or "all")
        self._native = _turbokv.Model(str(self._path), n_threads, centers_cache_dir())

        n_ctx_train = self._native.n_ctx_train
        if self._n_ctx > n_ctx_train:
            logger.warning(
                "n_ctx=%d is larger than the %d tokens %s was trained on; output past %d tokens may degrade",
                self._n_ctx,
                n_ctx_train,
                self._path.name,
                n_ctx_train,
            )

    def __repr__(self) -> str:
        return (
            f"Model({str(self._path)!r}, n_ctx={self._n_ctx}, n_threads={self.n_threads}, "
            f"cache_type_k={self._cache_type_k!r}, cache_type_v={self._cache_type_v!r})"
        )

    @property
    def path(self) -> Path:
        return self._path

    @property
    def n_ctx(self) -> int:
        """Context size in tokens of each generation's session."""
        return self._n_ctx

    @property
    def n_ctx_train(self) -> int:
        return self._native.n_ctx_train

    @property
    def n_vocab(self) -> int:
        return self._native.n_vocab

    @property
    def n_threads(self) -> int:
        return self._native.n_threads

    @property
    def bos_id(self) -> Optional[int]:
        return self._native.bos_id

    @property
    def eos_id(self) -> Optional[int]:
        return self._native.eos_id

    @property
    def eog_ids(self) -> List[int]:
        return self._native.eog_ids

    @property
    def chat_template(self) -> Optional[str]:
        return self._native.chat_template

    @property
    def add_bos(self) -> bool:
        """Whether tokenizing with ``add_special`` prepends BOS."""
        return self._native.add_bos

    @property
    def cache_type_k(self) -> str:
        return self._cache_type_k

    @property
    def cache_type_v(self) -> str:
        return self._cache_type_v

    def info(self) -> dict:
        """Return the native model facts plus this model's context, threads and KV cache settings."""
        facts = dict(self._native.info())
        facts.update(
            path=str(self._path),
            n_ctx=self._n_ctx,
            n_threads=self.n_threads,
            cache_type_k=self._cache_type_k,
            cache_type_v=self._cache_type_v,
            kv_cache_bytes=self.kv_cache_bytes(),
            simd_path=_turbokv.simd_path(),
        )
        return facts

    def kv_cache_bytes(
        self,
        n_ctx: Optional[int] = None,
        cache_type_k: Optional[str] = None,
        cache_type_v: Optional[str] = None,
    ) -> int:
        """Return the bytes a session allocates for keys and values (defaults: this model's settings)."""
        n_ctx = self._n_ctx if n_ctx is None else _check_int("n_ctx", n_ctx, 1)
        cache_type_k = self._cache_type_k if cache_type_k is None else _check_kv_type("cache_type_k", cache_type_k)
        cache_type_v = self._cache_type_v if cache_type_v is None else _check_kv_type("cache_type_v", cache_type_v)
        return self._native.kv_cache_bytes(n_ctx, cache_type_k, cache_type_v)

    # Tokens

    def tokenize(self, text: Union[str, bytes], add_special: bool = True, parse_special: bool = False) -> List[int]:
        """Split ``text`` into token ids.

        ``add_special`` adds the BOS/EOS tokens that the vocabulary adds by
        default. ``parse_special`` turns special-token text such as ``<start_of_turn>``
        into its single id instead of tokenizing it as plain text.
        """
        return self._native.tokenize(_decode_utf8(text), add_special, parse_special)

    def token_to_piece(self, token: int, special: bool = False) -> bytes:
        """Return the bytes of one token, which may be part of a UTF-8 character."""
        return self._native.token_to_piece(self._check_token(token), special)

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> str:
        """Join the tokens' text; invalid UTF-8 becomes U+FFFD."""
        ids = self._check_tokens(tokens)
        return self._native.detokenize(ids, special).decode("utf-8", errors="replace")

    def _check_token(self, token: int) -> int:
        return _check_int("token id", token, 0, self.n_vocab - 1)

    def _check_tokens(self, tokens: Sequence[int]) -> List[int]:
        if isinstance(tokens, (str, bytes)):
            raise TypeError("expected a sequence of token ids, got text; call tokenize() first")
        return [self._check_token(token) for token in tokens]

    # Generation

    def generate(
        self,
        prompt: Prompt,
        max_tokens: int = 128,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        repeat_last_n: int = 64,
        seed: Optional[int] = None,
        stream: bool = False,
        truncate: bool = False,
        add_special: bool = True,
        parse_special: bool = False,
    ) -> Union[str, Generation]:
        """Continue ``prompt`` and return the new text, or with ``stream`` a ``Generation``.

        The sampling settings match llama.cpp's: ``temperature = 0`` is greedy,
        and ``top_k = 0``, ``top_p = 1``, ``min_p = 0`` and ``repeat_penalty = 1``
        disable those filters. ``seed = None`` picks a random seed.

        A prompt with more than ``n_ctx`` tokens raises ``ContextOverflowError``.
        With ``truncate``, the prompt is cut instead when it leaves less room
        than ``min(max_tokens, n_ctx // 2)`` new tokens. The cut keeps its first
        token if that is BOS, and its last tokens. An empty prompt starts from
        BOS alone.
        """
        generation = self._start(
            prompt,
            max_tokens=max_tokens,
            sampler=_make_sampler(temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed),
            truncate=truncate,
            add_special=add_special,
            parse_special=parse_special,
        )
        if stream:
            return generation
        return generation.result().text

    def generate_tokens(
        self,
        prompt: Prompt,
        max_tokens: int = 128,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        repeat_last_n: int = 64,
        seed: Optional[int] = None,
        truncate: bool = False,
        add_special: bool = True,
        parse_special: bool = False,
    ) -> GenerationResult:
        """Generate like ``generate`` and return the token ids, stop reason and timings too."""
        generation = self._start(
            prompt,
            max_tokens=max_tokens,
            sampler=_make_sampler(temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed),
            truncate=truncate,
            add_special=add_special,
            parse_special=parse_special,
        )
        return generation.result()

    def _start(
        self,
        prompt: Prompt,
        max_tokens: int,
        sampler: "_turbokv.Sampler",
        truncate: bool,
        add_special: bool,
        parse_special: bool,
    ) -> Generation:
        max_tokens = _check_int("max_tokens", max_tokens, 1)
        prompt_ids = self._prompt_ids(prompt, add_special, parse_special)
        prompt_ids = self._fit_prompt(prompt_ids, max_tokens, truncate)

        session = self._new_session()
        generator = _turbokv.Generator(session, prompt_ids, sampler, max_tokens)
        return Generation(self, session, generator, prompt_ids)

    def _prompt_ids(self, prompt: Prompt, add_special: bool, parse_special: bool) -> List[int]:
        if isinstance(prompt, (str, bytes, bytearray)):
            ids = self.tokenize(prompt, add_special=add_special, parse_special=parse_special)
        else:
            ids = self._check_tokens(prompt)

        if ids:
            return ids
        if self.bos_id is None:
            raise TurbokvError(
                f"the prompt is empty and {self._path.name} has no BOS token to start from; pass a non-empty prompt"
            )
        return [self.bos_id]

    def _fit_prompt(self, ids: List[int], max_tokens: int, truncate: bool) -> List[int]:
        """Return ``ids``, truncated from the left if ``truncate`` is set and they leave too little room."""
        if not truncate:
            if len(ids) > self._n_ctx:
                raise ContextOverflowError(
                    f"the prompt has {len(ids)} tokens but the context size is {self._n_ctx}; "
                    "raise n_ctx, shorten the prompt or pass truncate=True"
                )
            return ids

        room = min(max_tokens, self._n_ctx // 2)
        keep = self._n_ctx - room
        if len(ids) <= keep:
            return ids

        logger.warning("truncating the prompt from %d to its last %d tokens", len(ids), keep)
        if self.bos_id is not None and ids[0] == self.bos_id and keep > 1:
            return [ids[0]] + ids[len(ids) - keep + 1 :]
        return ids[len(ids) - keep :]

    def _new_session(
        self,
        n_ctx: Optional[int] = None,
        cache_type_k: Optional[str] = None,
        cache_type_v: Optional[str] = None,
    ) -> "_turbokv.Session":
        n_ctx = self._n_ctx if n_ctx is None else _check_int("n_ctx", n_ctx, 1)
        cache_type_k = self._cache_type_k if cache_type_k is None else _check_kv_type("cache_type_k", cache_type_k)
        cache_type_v = self._cache_type_v if cache_type_v is None else _check_kv_type("cache_type_v", cache_type_v)
        return _turbokv.Session(self._native, n_ctx, cache_type_k, cache_type_v)

    # Evaluation

    def logits(self, tokens: Prompt) -> "np.ndarray":
        """Evaluate ``tokens`` in a fresh session and return float32 logits of shape ``(n_tokens, n_vocab)``.

        Text is tokenized with special tokens added (BOS where the vocabulary adds one).
        """
        if isinstance(tokens, (str, bytes, bytearray)):
            ids = self.tokenize(tokens)
        else:
            ids = self._check_tokens(tokens)

        if not ids:
            raise TurbokvError("logits() needs at least one token, got none")
        if len(ids) > self._n_ctx:
            raise ContextOverflowError(
                f"{len(ids)} tokens do not fit the context of {self._n_ctx}; raise n_ctx"
            )

        session = self._new_session()
        return session.eval(ids, all_logits=True)

    def perplexity(
        self,
        text: Optional[Union[str, bytes]] = None,
        n_ctx: int = 512,
        progress: Optional[Callable[[int, int], None]] = None,
        cache_type_k: Optional[str] = None,
        cache_type_v: Optional[str] = None,
        n_chunks: Optional[int] = None,
    ) -> PerplexityResult:
        """Compute perplexity the way llama-perplexity does.

        The text (by default chapters 1 to 6 of Pride and Prejudice, shipped
        with turbokv) is tokenized with BOS and split into non-overlapping
        chunks of ``n_ctx`` tokens, and the second half of each chunk is
        scored. Like llama-perplexity, this needs at least ``2 * n_ctx``
        tokens. ``n_chunks`` scores only the first chunks, as
        llama-perplexity's ``--chunks`` does. ``progress(done, total)`` runs
        after each chunk.
        """
        n_ctx = _check_int("n_ctx", n_ctx, 1)
        if n_chunks is not None:
            n_chunks = _check_int("n_chunks", n_chunks, 2)
        cache_type_k = self._cache_type_k if cache_type_k is None else _check_kv_type("cache_type_k", cache_type_k)
        cache_type_v = self._cache_type_v if cache_type_v is None else _check_kv_type("cache_type_v", cache_type_v)
        if text is None:
            text = read_perplexity_text()

        tokens = self.tokenize(text, add_special=True)
        if len(tokens) < 2 * n_ctx:
            raise TurbokvError(
                f"the text has {len(tokens)} tokens, but perplexity with n_ctx={n_ctx} needs at least "
                f"{2 * n_ctx}; pass a longer text or a smaller n_ctx"
            )
        if n_chunks is not None:
            tokens = tokens[: n_chunks * n_ctx]

        scores = self._native.perplexity(tokens, n_ctx, cache_type_k, cache_type_v, progress)
        return PerplexityResult(
            perplexity=scores["ppl"],
            nll=scores["nll"],
            n_tokens=len(tokens),
            n_scored=scores["n_scored"],
            n_chunks=scores["n_chunks"],
            n_ctx=n_ctx,
            cache_type_k=cache_type_k,
            cache_type_v=cache_type_v,
        )

    # Chat

    def chat(
        self,
        system: Optional[str] = None,
        chat_template: Optional[Union[str, "chat.ChatTemplate"]] = None,
        n_ctx: Optional[int] = None,
        cache_type_k: Optional[str] = None,
        cache_type_v: Optional[str] = None,
    ) -> "chat.ChatSession":
        """Start a conversation that keeps its messages and KV cache across turns.

        ``system`` is the system message. ``chat_template`` (Jinja template
        text or a ``ChatTemplate``) replaces the model's template (see
        ``turbokv.chat.load_chat_template``).
        The session's context and KV cache types default to this model's.
        """
        from turbokv import chat

        if system is not None and not isinstance(system, str):
            raise TypeError(f"system must be str, got {type(system).__name__}")
        if isinstance(chat_template, chat.ChatTemplate):
            template = chat_template
        else:
            template = chat.load_chat_template(self, chat_template, name="chat_template argument")
        session = self._new_session(n_ctx, cache_type_k, cache_type_v)
        return chat.ChatSession(self, session, template, system=system)

    def create_chat_completion(
        self,
        messages: Sequence[dict],
        max_tokens: Optional[int] = None,
        temperature: float = 0.2,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        repeat_last_n: int = 64,
        seed: Optional[int] = None,
        stream: bool = False,
    ) -> Any:
        """Reply to ``messages`` and return an OpenAI-shaped dict, as llama-cpp-python does.

        ``messages`` is a list of ``{"role": ..., "content": ...}`` dicts,
        rendered with the model's chat template (or the known format of its
        architecture). Returns a ``chat.completion`` dict whose
        ``finish_reason`` is ``"stop"`` after an end-of-generation token and
        ``"length"`` otherwise, or with ``stream`` an iterator of
        ``chat.completion.chunk`` dicts. ``max_tokens = None`` generates until
        the end of the context. The defaults are llama-cpp-python's.

        The model keeps one session for these calls: each call evaluates only
        the prompt tokens after the prefix shared with the previous call's
        tokens (``usage.prompt_tokens_details.cached_tokens`` counts the
        reused ones). A streamed reply still running is closed by the next call.
        """
        from turbokv import chat

        if self._chat_template is None:
            self._chat_template = chat.load_chat_template(self)
        if self._chat_slot is None:
            self._chat_slot = chat.SessionSlot(self._new_session())

        completion = chat.start_completion(
            self,
            self._chat_slot,
            self._chat_template,
            messages,
            max_tokens,
            chat.sampling_settings(temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed),
        )
        return completion.chunks() if stream else completion.to_dict()
