"""Chat: render chat templates, build prompts and run multi-turn conversations.

A GGUF file may carry a Jinja chat template (``tokenizer.chat_template``). The
template comes from the model file, so it is untrusted: it is rendered in
jinja2's ``ImmutableSandboxedEnvironment`` with the settings and variables that
Hugging Face transformers uses (``trim_blocks``, ``lstrip_blocks``,
``messages``, ``add_generation_prompt``, ``bos_token``, ``eos_token``,
``raise_exception``, ``strftime_now``).

Each completion reuses the KV cache of its session for the longest prefix its
prompt shares with the tokens already evaluated, so a conversation evaluates
only each turn's new tokens.
"""

import json
import logging
import operator
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from turbokv import _turbokv
from turbokv._turbokv import ContextOverflowError, TurbokvError
from turbokv.model import Generation, _check_int, _make_sampler

if TYPE_CHECKING:
    from turbokv.model import Model

logger = logging.getLogger(__name__)

#: A chat message: a mapping with ``role`` and ``content`` strings.
Message = Mapping[str, Any]

# Google's Gemma format, as llama.cpp's built-in "gemma" template writes it:
# "assistant" becomes "model", contents are trimmed, and the (trimmed) system
# messages are prepended to the next user turn followed by a blank line,
# because Gemma has no system role. BOS is added by the tokenizer, not here.
GEMMA_TEMPLATE = (
    "{%- set state = namespace(system='') -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- set state.system = state.system + (message['content'] | trim) -%}"
    "{%- else -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{- '<start_of_turn>' + role + '\n' -}}"
    "{%- if state.system and role != 'model' -%}"
    "{{- state.system + '\n\n' -}}"
    "{%- set state.system = '' -%}"
    "{%- endif -%}"
    "{{- (message['content'] | trim) + '<end_of_turn>\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<start_of_turn>model\n' -}}"
    "{%- endif -%}"
)

#: Chat formats of architectures whose GGUF files may lack a template, keyed by ``info()["architecture"]``.
BUILTIN_TEMPLATES = {"gemma3": GEMMA_TEMPLATE}

# Upper bound on a string or list built by `*` inside a template, so a hostile
# template cannot ask for gigabytes with one expression.
MAX_REPEAT_LENGTH = 1 << 20

# Sampling defaults of llama-cpp-python's Llama.create_chat_completion (0.3.36).
CHAT_TEMPERATURE = 0.2
CHAT_TOP_K = 40
CHAT_TOP_P = 0.95
CHAT_MIN_P = 0.05


class _TemplateRaised(jinja2.TemplateError):
    """The template called ``raise_exception``."""


def _raise_exception(message: str) -> None:
    raise _TemplateRaised(message)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: Optional[int] = None,
    separators: Optional[Sequence[str]] = None,
    sort_keys: bool = False,
) -> str:
    """``tojson`` as transformers defines it for chat templates: unicode kept, no HTML escaping."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class _GenerationTag(jinja2.ext.Extension):
    """Render ``{% generation %}...{% endgeneration %}`` as its body.

    Transformers uses the tag to mark assistant tokens for training masks; it
    does not change the rendered text.
    """

    tags = {"generation"}

    def parse(self, parser: "jinja2.parser.Parser") -> List["jinja2.nodes.Node"]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


class _ChatSandbox(ImmutableSandboxedEnvironment):
    """The sandbox for chat templates, with `*` and `**` bounded."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context: jinja2.runtime.Context, op: str, left: Any, right: Any) -> Any:
        if op == "*":
            return self._repeat(left, right)
        if isinstance(left, int) and isinstance(right, int) and abs(right) > 64 and abs(left) > 1:
            raise jinja2.sandbox.SecurityError(f"{left} ** {right} is too large for a chat template")
        return operator.pow(left, right)

    @staticmethod
    def _repeat(left: Any, right: Any) -> Any:
        for sequence, count in ((left, right), (right, left)):
            if isinstance(sequence, (str, list, tuple)) and isinstance(count, int):
                if len(sequence) * count > MAX_REPEAT_LENGTH:
                    raise jinja2.sandbox.SecurityError(
                        f"repeating a sequence of length {len(sequence)} {count} times exceeds "
                        f"{MAX_REPEAT_LENGTH} items"
                    )
        return operator.mul(left, right)


def _make_environment() -> ImmutableSandboxedEnvironment:
    # NOTE: the sandbox blocks unsafe attribute access and mutation, and `*` and
    # `**` are bounded, but rendering has no time limit: a template with deeply
    # nested loops can still run for a long time.
    environment = _ChatSandbox(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_GenerationTag, jinja2.ext.loopcontrols],
    )
    environment.filters["tojson"] = _tojson
    environment.globals["raise_exception"] = _raise_exception
    environment.globals["strftime_now"] = _strftime_now
    return environment


def check_messages(messages: Sequence[Message]) -> List[Dict[str, Any]]:
    """Return copies of ``messages`` as dicts, or raise if one lacks a ``role`` or ``content`` string."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list of {{'role': ..., 'content': ...}} dicts, got {type(messages).__name__}")
    if not messages:
        raise TurbokvError("messages is empty; pass at least one {'role': 'user', 'content': ...} message")

    checked = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise TypeError(f"messages[{index}] must be a dict, got {type(message).__name__}")
        for key in ("role", "content"):
            if not isinstance(message.get(key), str):
                raise TurbokvError(f"messages[{index}] has no {key!r} string: {dict(message)!r}")
        checked.append(dict(message))
    return checked


class ChatTemplate:
    """A compiled chat template and the BOS and EOS text it is rendered with.

    ``name`` identifies the template's origin (a file, the model's metadata or
    a built-in format) in error messages.
    """

    def __init__(self, source: str, name: str, bos_token: str = "", eos_token: str = "") -> None:
        self.source = source
        self.name = name
        self.bos_token = bos_token
        self.eos_token = eos_token
        try:
            self._template = _make_environment().from_string(source)
        except jinja2.TemplateSyntaxError as error:
            raise TurbokvError(f"invalid chat template ({name}), line {error.lineno}: {error.message}") from None

    def __repr__(self) -> str:
        return f"ChatTemplate(name={self.name!r})"

    def render(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        """Render ``messages`` to prompt text; ``add_generation_prompt`` appends the assistant's turn header."""
        checked = check_messages(messages)
        try:
            return self._template.render(
                messages=checked,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except _TemplateRaised as error:
            raise TurbokvError(f"the chat template ({self.name}) rejected the messages: {error}") from None
        except (jinja2.TemplateError, TypeError, ValueError, LookupError, AttributeError, OverflowError) as error:
            raise TurbokvError(
                f"rendering the chat template ({self.name}) failed: {type(error).__name__}: {error}"
            ) from None


def _special_text(model: "Model", token: Optional[int]) -> str:
    if token is None:
        return ""
    return model.token_to_piece(token, special=True).decode("utf-8", errors="replace")


def load_chat_template(model: "Model", source: Optional[str] = None, name: Optional[str] = None) -> ChatTemplate:
    """Pick the chat template of ``model``.

    ``source`` (template text, for example from ``--chat-template FILE``) wins.
    Otherwise the model's ``tokenizer.chat_template`` is used, then the known
    format of its architecture. A model with neither raises ``TurbokvError``.
    """
    bos_token = _special_text(model, model.bos_id)
    eos_token = _special_text(model, model.eos_id)

    if source is not None:
        return ChatTemplate(source, name or "user-supplied template", bos_token, eos_token)

    embedded = model.chat_template
    if embedded:
        return ChatTemplate(embedded, f"tokenizer.chat_template of {model.path.name}", bos_token, eos_token)

    architecture = model.info()["architecture"]
    builtin = BUILTIN_TEMPLATES.get(architecture)
    if builtin is not None:
        logger.info("%s has no chat template; using the built-in %s format", model.path.name, architecture)
        return ChatTemplate(builtin, f"built-in {architecture} format", bos_token, eos_token)

    raise TurbokvError(
        f"{model.path.name} has no chat template and turbokv knows no chat format for architecture "
        f"{architecture!r}; pass a Jinja template with --chat-template FILE (or chat_template=...)"
    )


def chat_prompt_ids(
    model: "Model", template: ChatTemplate, messages: Sequence[Message], add_generation_prompt: bool = True
) -> List[int]:
    """Render ``messages`` and tokenize the text the way llama.cpp does.

    Special-token text (``<|im_start|>``) becomes its token id. BOS is added
    when the vocabulary adds it, and a BOS that the template writes itself is
    then dropped so the prompt does not start with two (llama.cpp's
    common/chat.cpp does the same). A vocabulary that adds no BOS keeps the
    template's, as llama-cpp-python's Jinja2 chat handler does.
    """
    text = template.render(messages, add_generation_prompt=add_generation_prompt)
    if model.add_bos and template.bos_token and text.startswith(template.bos_token):
        text = text[len(template.bos_token) :]
    return model.tokenize(text, add_special=True, parse_special=True)


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def reuse_prefix(session: "_turbokv.Session", prompt_ids: Sequence[int]) -> List[int]:
    """Keep the cached prefix that ``prompt_ids`` shares with ``session`` and return the tokens left to evaluate.

    At least the last prompt token is always returned, because its logits
    give the first sampled token. The session may keep fewer tokens than the
    shared prefix: truncating a sliding-window cache whose ring has wrapped
    clears it.
    """
    prefix = common_prefix_length(session.tokens, prompt_ids)
    prefix = min(prefix, len(prompt_ids) - 1)
    session.truncate(prefix)

    n_past = session.n_past
    if n_past > prefix:
        # The engine keeps at most `prefix` tokens. More would leave positions
        # of the old conversation in the cache.
        raise RuntimeError(f"session kept {n_past} tokens after truncating to {prefix}")
    if n_past < prefix:
        logger.info("the sliding-window cache could not be truncated to %d tokens and was cleared", prefix)
    return list(prompt_ids[n_past:])


class ChatCompletion(Iterator[str]):
    """One assistant reply being generated. Iterating it yields text pieces.

    ``to_dict()`` runs it to the end and returns an OpenAI ``chat.completion``
    dict; ``chunks()`` yields ``chat.completion.chunk`` dicts instead.
    ``on_finish(completion)`` runs once, when the reply ends or is closed.
    """

    def __init__(
        self,
        generation: Generation,
        prompt_ids: List[int],
        n_cached: int,
        model_name: str,
        on_finish: Optional[Callable[["ChatCompletion"], None]] = None,
    ) -> None:
        self.id = f"chatcmpl-{uuid.uuid4()}"
        self.created = int(time.time())
        self.model_name = model_name
        self.prompt_token_ids = prompt_ids
        #: Prompt tokens whose keys and values were reused from the session's cache.
        self.n_cached = n_cached
        self._generation = generation
        self._on_finish = on_finish
        self._closed = False

    def __iter__(self) -> "ChatCompletion":
        return self

    def __next__(self) -> str:
        if self._closed:
            raise StopIteration
        try:
            return next(self._generation)
        except StopIteration:
            self.close()
            raise
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop generating. The text so far stays the reply; the session stays usable."""
        if self._closed:
            return
        self._closed = True
        self._generation.close()
        if self._on_finish is not None:
            self._on_finish(self)

    @property
    def text(self) -> str:
        return self._generation.text

    @property
    def n_prompt(self) -> int:
        """Prompt tokens evaluated for this reply (the prompt less the reused prefix)."""
        return self._generation.n_prompt

    @property
    def n_completion(self) -> int:
        return len(self._generation.token_ids)

    @property
    def finish_reason(self) -> Optional[str]:
        """``None`` while running, ``"stop"`` after an end-of-generation token, else ``"length"``."""
        if not self._closed:
            return None
        return "stop" if self._generation.stop_reason == "eog" else "length"

    def usage(self) -> dict:
        n_prompt = len(self.prompt_token_ids)
        return {
            "prompt_tokens": n_prompt,
            "completion_tokens": self.n_completion,
            "total_tokens": n_prompt + self.n_completion,
            "prompt_tokens_details": {"cached_tokens": self.n_cached},
        }

    def _header(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model_name}

    def to_dict(self) -> dict:
        """Run the reply to its end and return it as an OpenAI ``chat.completion`` dict."""
        for _ in self:
            pass
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": self.text},
            "logprobs": None,
            "finish_reason": self.finish_reason,
        }
        return {**self._header("chat.completion"), "choices": [choice], "usage": self.usage()}

    def chunks(self) -> Iterator[dict]:
        """Yield ``chat.completion.chunk`` dicts: the role, one per text piece, then the finish reason."""
        yield self._chunk({"role": "assistant"}, None)
        for piece in self:
            yield self._chunk({"content": piece}, None)
        yield self._chunk({}, self.finish_reason)

    def _chunk(self, delta: dict, finish_reason: Optional[str]) -> dict:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**self._header("chat.completion.chunk"), "choices": [choice]}


class SessionSlot:
    """A native session and the reply, if any, still generating into it."""

    def __init__(self, session: "_turbokv.Session") -> None:
        self.session = session
        self.active: Optional[ChatCompletion] = None


def start_completion(
    model: "Model",
    slot: SessionSlot,
    template: ChatTemplate,
    messages: Sequence[Message],
    max_tokens: Optional[int],
    sampling: dict,
    on_finish: Optional[Callable[[ChatCompletion], None]] = None,
) -> ChatCompletion:
    """Start a reply to ``messages`` in ``slot``'s session, reusing its cached prefix.

    A reply still generating in the same session is closed first, because two
    generators cannot share one cache. ``max_tokens = None`` generates until
    an end-of-generation token or the end of the context.
    """
    session = slot.session
    if max_tokens is not None:
        max_tokens = _check_int("max_tokens", max_tokens, 1)
    sampler = _make_sampler(**sampling)
    prompt_ids = chat_prompt_ids(model, template, messages)
    if not prompt_ids:
        raise TurbokvError(f"the chat template ({template.name}) rendered an empty prompt for {len(messages)} messages")

    n_ctx = session.n_ctx
    if len(prompt_ids) >= n_ctx:
        raise ContextOverflowError(
            f"the chat prompt has {len(prompt_ids)} tokens but the context size is {n_ctx}, which leaves no room "
            "for a reply; start a new conversation or raise n_ctx"
        )

    if slot.active is not None:
        slot.active.close()
    suffix = reuse_prefix(session, prompt_ids)
    n_cached = len(prompt_ids) - len(suffix)
    logger.info("chat prompt: %d tokens, %d reused from the KV cache", len(prompt_ids), n_cached)

    if max_tokens is None:
        max_tokens = n_ctx - len(prompt_ids)
    generator = _turbokv.Generator(session, suffix, sampler, max_tokens)
    generation = Generation(model, session, generator, suffix)

    def finish(completion: ChatCompletion) -> None:
        if slot.active is completion:
            slot.active = None
        if on_finish is not None:
            on_finish(completion)

    completion = ChatCompletion(generation, prompt_ids, n_cached, str(model.path), finish)
    slot.active = completion
    return completion


def sampling_settings(
    temperature: float,
    top_k: int,
    top_p: float,
    min_p: float,
    repeat_penalty: float,
    repeat_last_n: int,
    seed: Optional[int],
) -> dict:
    """Collect the sampling keyword arguments of ``_make_sampler`` (validated when the reply starts)."""
    return dict(
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repeat_penalty=repeat_penalty,
        repeat_last_n=repeat_last_n,
        seed=seed,
    )


class ChatSession:
    """A conversation that keeps its messages and one KV cache across turns.

    Each ``send`` renders the whole conversation, but evaluates only the tokens
    after the prefix it shares with what the cache holds. Create one with
    ``Model.chat()``. Not safe to use from several threads at once.
    """

    def __init__(
        self,
        model: "Model",
        session: "_turbokv.Session",
        template: ChatTemplate,
        system: Optional[str] = None,
    ) -> None:
        self.model = model
        self.template = template
        self.system = system
        self._slot = SessionSlot(session)
        self.messages: List[Dict[str, str]] = []
        self.reset()

    def __repr__(self) -> str:
        return f"ChatSession({self.model!r}, messages={len(self.messages)}, n_past={self.n_past})"

    @property
    def session(self) -> "_turbokv.Session":
        """The native session whose KV cache the conversation reuses."""
        return self._slot.session

    @property
    def n_past(self) -> int:
        """Tokens in the KV cache."""
        return self._slot.session.n_past

    def reset(self) -> None:
        """Forget the conversation except the system message.

        The KV cache is kept: the next turn reuses the prefix it still shares,
        such as the system message.
        """
        if self._slot.active is not None:
            self._slot.active.close()
        self.messages = [] if self.system is None else [{"role": "system", "content": self.system}]

    def send(
        self,
        content: str,
        max_tokens: Optional[int] = None,
        temperature: float = CHAT_TEMPERATURE,
        top_k: int = CHAT_TOP_K,
        top_p: float = CHAT_TOP_P,
        min_p: float = CHAT_MIN_P,
        repeat_penalty: float = 1.0,
        repeat_last_n: int = 64,
        seed: Optional[int] = None,
        stream: bool = False,
    ) -> Any:
        """Add a user message and return the assistant's reply text, or with ``stream`` a ``ChatCompletion``.

        The reply joins the conversation when it ends, or when a streamed reply
        is closed early (then with the text generated so far). If the prompt
        does not fit the context, ``ContextOverflowError`` is raised and the
        user message is not kept.
        """
        if not isinstance(content, str):
            raise TypeError(f"content must be str, got {type(content).__name__}")

        # A reply still streaming ends here, so its text joins the history
        # before the new message.
        if self._slot.active is not None:
            self._slot.active.close()
        messages = self.messages + [{"role": "user", "content": content}]
        completion = start_completion(
            self.model,
            self._slot,
            self.template,
            messages,
            max_tokens,
            sampling_settings(temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed),
            on_finish=self._record_reply,
        )
        self.messages = messages
        if stream:
            return completion
        return completion.to_dict()["choices"][0]["message"]["content"]

    def _record_reply(self, completion: ChatCompletion) -> None:
        self.messages.append({"role": "assistant", "content": completion.text})

    def create_chat_completion(
        self,
        messages: Sequence[Message],
        max_tokens: Optional[int] = None,
        temperature: float = CHAT_TEMPERATURE,
        top_k: int = CHAT_TOP_K,
        top_p: float = CHAT_TOP_P,
        min_p: float = CHAT_MIN_P,
        repeat_penalty: float = 1.0,
        repeat_last_n: int = 64,
        seed: Optional[int] = None,
        stream: bool = False,
    ) -> Any:
        """Reply to ``messages`` (which this session does not keep) in this session's KV cache.

        See ``Model.create_chat_completion``.
        """
        completion = start_completion(
            self.model,
            self._slot,
            self.template,
            messages,
            max_tokens,
            sampling_settings(temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed),
        )
        return completion.chunks() if stream else completion.to_dict()

