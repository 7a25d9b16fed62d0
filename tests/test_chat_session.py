"""Multi-turn chat on real models: KV cache reuse, reply content and the OpenAI-shaped results.

The reuse checks compare the cache after each turn, byte for byte, with a
fresh session that evaluated the same tokens in one call.
"""

import pytest

import turbokv
from turbokv import _turbokv

SYSTEM = "You are a helpful assistant."
N_CTX = 512

# Questions the 135M model answers correctly with greedy sampling, each paired
# with a word its answer must contain. The second depends on the first turn.
# After SYSTEM, each greedy reply keeps a top-2 logit gap of at least 1.4 at
# every token (measured on AVX2 with fp32, fp16 and turbo_kv_4b caches, and in
# llama-cpp-python 0.3.36), so a change of summation order cannot flip it.
# "What is the capital of France?" is avoided because its first token is a
# near-tie ("The" vs "La", gap under 0.1).
CAPITALS = [("What is the capital of Japan?", "Tokyo"), ("And of Germany?", "Berlin")]
FIRST_QUESTION, FIRST_ANSWER = CAPITALS[0]
FOLLOW_UP, FOLLOW_UP_ANSWER = CAPITALS[1]


def native_session(model, kv_type, n_ctx=N_CTX):
    """Return a native session, or xfail where this build lacks the KV type's kernels."""
    try:
        return _turbokv.Session(model._native, n_ctx, kv_type, kv_type)
    except BaseException as error:
        # The engine's unfinished TurboQuant path panics (todo!), which pyo3
        # raises as PanicException, a BaseException.
        if type(error).__name__ != "PanicException":
            raise
        pytest.xfail(f"the {kv_type} KV cache is not implemented in this build: {error}")


@pytest.fixture(scope="module")
def smollm(smollm_path):
    return turbokv.Model(smollm_path, n_ctx=N_CTX, n_threads=2, cache_type_k="fp32", cache_type_v="fp32")


def cached_rows(session, layer, n_kv_heads):
    """Return the K and V bytes of positions [0, n_past) of every KV head of ``layer``.

    Slots past n_past may hold rows from before a truncation, so they are left
    out. The layout is [n_kv_heads][n_ctx][row] (no sliding window here).
    """
    rows = []
    for store in session.cache_bytes(layer):
        head_bytes = len(store) // n_kv_heads
        row_bytes = head_bytes // session.n_ctx
        for head in range(n_kv_heads):
            start = head * head_bytes
            rows.append(store[start : start + session.n_past * row_bytes])
    return rows


def assert_cache_matches_fresh_prefill(model, session, kv_type):
    info = model.info()
    fresh = native_session(model, kv_type)
    fresh.eval(session.tokens)

    assert fresh.n_past == session.n_past
    for layer in range(info["n_layer"]):
        assert cached_rows(session, layer, info["n_kv_heads"]) == cached_rows(fresh, layer, info["n_kv_heads"]), (
            f"layer {layer} differs from a fresh prefill"
        )


@pytest.mark.parametrize("kv_type", ["fp32", "fp16", "turbo_kv_4b"])
def test_turns_reuse_cache_byte_identical(smollm, kv_type):
    native_session(smollm, kv_type)
    conversation = smollm.chat(system=SYSTEM, cache_type_k=kv_type, cache_type_v=kv_type)
    questions = [FIRST_QUESTION, FOLLOW_UP, "Name a color.", "Thanks!"]

    previous_prompt = []
    for turn, question in enumerate(questions):
        before = list(conversation.session.tokens)
        completion = conversation.send(question, temperature=0, max_tokens=12, stream=True)
        for _ in completion:
            pass
        prompt = completion.prompt_token_ids
        n_cached = completion.n_cached

        # The reused prefix is shared and maximal, and only the rest was evaluated.
        assert prompt[:n_cached] == before[:n_cached]
        if n_cached < min(len(before), len(prompt) - 1):
            assert before[n_cached] != prompt[n_cached]
        assert completion.n_prompt == len(prompt) - n_cached
        if turn > 0:
            assert n_cached >= len(previous_prompt), f"turn {turn} re-read the previous prompt"
            assert completion.n_prompt < len(prompt)

        tokens = conversation.session.tokens
        assert tokens[: len(prompt)] == prompt
        assert len(tokens) == len(prompt) + completion.n_completion - (completion.finish_reason == "length")
        assert_cache_matches_fresh_prefill(smollm, conversation.session, kv_type)
        previous_prompt = prompt


@pytest.mark.parametrize("kv_type", ["fp32", "turbo_kv_4b"])
def test_capitals_answered_across_turns(smollm, kv_type):
    native_session(smollm, kv_type)
    conversation = smollm.chat(system=SYSTEM, cache_type_k=kv_type, cache_type_v=kv_type)

    for question, expected in CAPITALS:
        answer = conversation.send(question, temperature=0, max_tokens=40)
        assert expected in answer, f"{question!r} -> {answer!r}"

    assert [message["role"] for message in conversation.messages] == [
        "system", "user", "assistant", "user", "assistant",
    ]
    assert FOLLOW_UP_ANSWER in conversation.messages[-1]["content"]


def test_same_prompt_evaluates_one_token(smollm):
    conversation = smollm.chat(system=SYSTEM)
    messages = [{"role": "user", "content": FIRST_QUESTION}]

    first = conversation.create_chat_completion(messages, temperature=0, max_tokens=8)
    again = conversation.create_chat_completion(messages, temperature=0, max_tokens=8)

    n_prompt = first["usage"]["prompt_tokens"]
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] == n_prompt - 1
    assert again["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]


def test_completion_dict_shape(smollm):
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": FIRST_QUESTION}]

    result = smollm.create_chat_completion(messages, temperature=0, max_tokens=40)

    assert result["id"].startswith("chatcmpl-")
    assert result["object"] == "chat.completion"
    assert isinstance(result["created"], int)
    assert result["model"] == str(smollm.path)
    choice = result["choices"][0]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert FIRST_ANSWER in choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    usage = result["usage"]
    assert usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_finish_reason_length(smollm):
    messages = [{"role": "user", "content": "Write a long story about a dragon."}]

    result = smollm.create_chat_completion(messages, temperature=0, max_tokens=3)

    assert result["choices"][0]["finish_reason"] == "length"
    assert result["usage"]["completion_tokens"] == 3


def test_stream_chunks_match_completion(smollm):
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": FIRST_QUESTION}]
    whole = smollm.create_chat_completion(messages, temperature=0, max_tokens=40)

    chunks = list(smollm.create_chat_completion(messages, temperature=0, max_tokens=40, stream=True))

    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert chunks[-1]["choices"][0]["delta"] == {}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(chunk["choices"][0]["finish_reason"] is None for chunk in chunks[:-1])
    text = "".join(chunk["choices"][0]["delta"]["content"] for chunk in chunks[1:-1])
    assert text == whole["choices"][0]["message"]["content"]


def test_model_completions_reuse_cache(smollm):
    first_messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": FIRST_QUESTION}]
    first = smollm.create_chat_completion(first_messages, temperature=0, max_tokens=40)
    answer = first["choices"][0]["message"]

    second = smollm.create_chat_completion(
        first_messages + [answer, {"role": "user", "content": FOLLOW_UP}], temperature=0, max_tokens=40
    )

    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] >= first["usage"]["prompt_tokens"]
    assert FOLLOW_UP_ANSWER in second["choices"][0]["message"]["content"]


def test_closed_stream_keeps_partial_reply(smollm):
    conversation = smollm.chat(system=SYSTEM)
    completion = conversation.send(FIRST_QUESTION, temperature=0, max_tokens=40, stream=True)

    first_piece = next(completion)
    completion.close()

    assert completion.finish_reason == "length"
    assert list(completion) == []
    assert conversation.messages[-1] == {"role": "assistant", "content": first_piece}
    answer = conversation.send(FOLLOW_UP, temperature=0, max_tokens=40)
    assert FOLLOW_UP_ANSWER in answer


def test_new_reply_closes_running_stream(smollm):
    conversation = smollm.chat(system=SYSTEM)
    running = conversation.send(FIRST_QUESTION, temperature=0, max_tokens=40, stream=True)
    next(running)

    conversation.send(FOLLOW_UP, temperature=0, max_tokens=4)

    assert running.finish_reason is not None
    assert list(running) == []
    roles = [message["role"] for message in conversation.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert conversation.messages[2]["content"] == running.text


def test_empty_rendered_prompt_rejected(smollm):
    conversation = smollm.chat(chat_template="{# renders nothing #}")

    with pytest.raises(turbokv.TurbokvError, match="rendered an empty prompt"):
        conversation.send("Hi")


def test_context_overflow_keeps_conversation(smollm):
    conversation = smollm.chat(system=SYSTEM, n_ctx=64)

    with pytest.raises(turbokv.ContextOverflowError, match="context size is 64"):
        conversation.send("word " * 100, temperature=0)

    assert conversation.messages == [{"role": "system", "content": SYSTEM}]
    assert FIRST_ANSWER in conversation.send(FIRST_QUESTION, temperature=0, max_tokens=20)


def test_reset_keeps_system_and_cache(smollm):
    conversation = smollm.chat(system=SYSTEM)
    conversation.send(FIRST_QUESTION, temperature=0, max_tokens=8)

    conversation.reset()
    completion = conversation.send("Name a color.", temperature=0, max_tokens=4, stream=True)
    for _ in completion:
        pass

    assert conversation.messages[0] == {"role": "system", "content": SYSTEM}
    assert len(conversation.messages) == 3
    assert completion.n_cached > 0


@pytest.mark.slow
def test_wrapped_sliding_window_is_cleared(gemma_path):
    # Gemma 3's sliding-window layers keep 512 positions. After more than 512
    # tokens their ring has wrapped, so a prompt that diverges earlier cannot
    # reuse the cache: the session is cleared and the whole prompt evaluated.
    model = turbokv.Model(gemma_path, n_ctx=1024, n_threads=2, cache_type_k="fp32", cache_type_v="fp32")
    conversation = model.chat()
    long_text = " ".join(f"item{i}" for i in range(160))
    first = [{"role": "user", "content": "Summarize: " + long_text}]
    second = [{"role": "user", "content": "Count: " + long_text}]

    conversation.create_chat_completion(first, temperature=0, max_tokens=2)
    assert conversation.n_past > 512
    reply = conversation.create_chat_completion(second, temperature=0, max_tokens=8)

    assert reply["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    fresh = model.chat().create_chat_completion(second, temperature=0, max_tokens=8)
    assert reply["choices"][0]["message"]["content"] == fresh["choices"][0]["message"]["content"]
