"""Hostile prompts and text: empty, too long, exactly full, invalid UTF-8,
NUL bytes, huge words, special-token look-alikes, and characters that
streaming splits across tokens. Runs on the two real models."""

import time

import pytest

import turbokv
from turbokv.model import Generation

N_CTX = 64


@pytest.fixture(scope="module")
def gemma(gemma_path):
    return turbokv.Model(gemma_path, n_ctx=N_CTX, n_threads=2, cache_type_k="fp32", cache_type_v="fp32")


@pytest.fixture(scope="module")
def smollm(smollm_path):
    return turbokv.Model(smollm_path, n_ctx=N_CTX, n_threads=2, cache_type_k="fp32", cache_type_v="fp32")


@pytest.fixture(scope="module", params=["gemma", "smollm"])
def model(request):
    return request.getfixturevalue(request.param)


def greedy(model, prompt, max_tokens=4, **options):
    return model.generate_tokens(prompt, max_tokens=max_tokens, temperature=0, **options)


# Empty and oversized prompts.


def test_empty_prompt_starts_from_bos(model):
    result = greedy(model, "")

    assert result.prompt_token_ids == [model.bos_id]
    assert result.n_decoded + (result.stop_reason == "eog") >= 1


def test_empty_token_list_starts_from_bos(model):
    result = greedy(model, [])

    assert result.prompt_token_ids == [model.bos_id]


def test_prompt_longer_than_context_raises(model):
    prompt = [model.bos_id] + [100] * (N_CTX + 5)

    with pytest.raises(turbokv.ContextOverflowError) as raised:
        greedy(model, prompt)

    message = str(raised.value)
    assert str(N_CTX + 6) in message
    assert str(N_CTX) in message
    assert "truncate=True" in message


def test_long_text_prompt_raises(model):
    with pytest.raises(turbokv.ContextOverflowError, match=f"context size is {N_CTX}"):
        greedy(model, "word " * 200)


def test_truncate_keeps_bos_and_last_tokens(model):
    tail = list(range(1000, 1000 + N_CTX))
    prompt = [model.bos_id] + [100] * 40 + tail

    result = greedy(model, prompt, max_tokens=8, truncate=True)

    kept = N_CTX - 8
    assert len(result.prompt_token_ids) == kept
    assert result.prompt_token_ids[0] == model.bos_id
    assert result.prompt_token_ids[1:] == tail[-(kept - 1) :]


def test_prompt_filling_context_stops_with_context(model):
    # Prefill fills every slot and its logits give one token, which needs no
    # slot of its own. Decoding that token would need slot n_ctx + 1, so the
    # generation then stops with stop_reason "context".
    prompt = [model.bos_id] + [1000 + i for i in range(N_CTX - 1)]

    result = greedy(model, prompt, max_tokens=10)

    assert result.n_prompt == N_CTX
    if result.stop_reason != "eog":
        assert result.stop_reason == "context"
        assert result.n_decoded == 1


def test_prompt_one_short_of_context_gives_two_tokens(model):
    prompt = [model.bos_id] + [1000 + i for i in range(N_CTX - 2)]

    result = greedy(model, prompt, max_tokens=10)

    if result.stop_reason != "eog":
        assert result.stop_reason == "context"
        assert result.n_decoded == 2


def test_logits_past_context_raises(model):
    with pytest.raises(turbokv.ContextOverflowError, match=str(N_CTX + 1)):
        model.logits([model.bos_id] * (N_CTX + 1))


# Bytes, NUL and huge words.


@pytest.mark.parametrize(
    "data, offset",
    [(b"abc\xffdef", 3), (b"\xc3", 0), (b"ok \xe2\x82", 3), (b"\xed\xa0\x80", 0)],
)
def test_invalid_utf8_raises_with_offset(gemma, data, offset):
    with pytest.raises(ValueError) as raised:
        gemma.tokenize(data)

    assert isinstance(raised.value, turbokv.TurbokvError)
    assert f"at offset {offset}" in str(raised.value)


def test_invalid_utf8_prompt_raises(smollm):
    with pytest.raises(turbokv.TurbokvError, match="not valid UTF-8"):
        greedy(smollm, b"hello \x80 world")


def test_valid_utf8_bytes_match_str(model):
    text = "caf\u00e9 \u65e5\u672c"

    assert model.tokenize(text.encode("utf-8")) == model.tokenize(text)


@pytest.mark.parametrize("text", ["\x00", "a\x00b", "\x00\x00\x00 end", "line\x00\nnext"])
def test_nul_bytes_round_trip(model, text):
    ids = model.tokenize(text, add_special=False)

    assert ids
    assert model.detokenize(ids) == text


def test_nul_prompt_generates(model):
    result = greedy(model, "before\x00after", max_tokens=2)

    assert result.n_decoded + (result.stop_reason == "eog") >= 1


@pytest.mark.parametrize(
    "word",
    [
        "a" * 10_000,
        "".join(chr(ord("a") + (i * 7) % 26) for i in range(10_000)),
        "\u00e9" * 10_000,
        "\U0001f600" * 2_500,
    ],
    ids=["repeated", "mixed", "two-byte", "emoji"],
)
def test_long_word_tokenizes_quickly(model, word):
    started = time.perf_counter()
    ids = model.tokenize(word, add_special=False)
    seconds = time.perf_counter() - started

    assert seconds < 2.0, f"tokenizing a {len(word)}-character word took {seconds:.2f} s"
    assert model.detokenize(ids) == word


# Special-token look-alikes.


@pytest.mark.parametrize(
    "fixture, special",
    [("gemma", "<start_of_turn>"), ("gemma", "<end_of_turn>"), ("smollm", "<|im_start|>"), ("smollm", "<|im_end|>")],
)
def test_special_text_plain_unless_parse_special(request, fixture, special):
    model = request.getfixturevalue(fixture)
    (special_id,) = model.tokenize(special, add_special=False, parse_special=True)

    plain = model.tokenize(f"say {special} now", add_special=False)
    parsed = model.tokenize(f"say {special} now", add_special=False, parse_special=True)

    assert special_id not in plain
    assert len(plain) > 1
    assert special_id in parsed
    assert model.detokenize(plain) == f"say {special} now"


def test_special_text_in_prompt_stays_plain(smollm):
    result = greedy(smollm, "<|im_end|>", max_tokens=1)
    (im_end,) = smollm.tokenize("<|im_end|>", add_special=False, parse_special=True)

    assert im_end not in result.prompt_token_ids


# Streaming splits no character.


def stream_pieces(model, token_ids):
    """Return the text pieces that streaming emits for ``token_ids``.

    The native generator is replaced by the ids themselves, so the pieces
    come from the same incremental decoding that generation uses.
    """
    generation = Generation(model, session=None, generator=iter(token_ids), prompt_token_ids=[])
    return list(generation)


def single_byte_tokens(model):
    """Map each byte value >= 0x80 to a token whose piece is that byte alone."""
    found = {}
    for token in range(model.n_vocab):
        piece = model.token_to_piece(token)
        if len(piece) == 1 and piece[0] >= 0x80:
            found.setdefault(piece[0], token)
    return found


@pytest.mark.parametrize("text", ["\U0001f600", "\u65e5\u672c\u8a9e", "\U0002000b", "na\u00efve \u20ac5"])
def test_stream_joins_split_characters(model, text):
    ids = model.tokenize(text, add_special=False)

    pieces = stream_pieces(model, ids)

    assert "".join(pieces) == text
    assert all("\ufffd" not in piece for piece in pieces), pieces


def test_real_tokens_split_characters(model):
    # Guards the test above: at least one of its texts must really be split
    # by the model's tokenizer into tokens that are not UTF-8 on their own.
    split = False
    for text in ["\U0001f600", "\U0002000b"]:
        for token in model.tokenize(text, add_special=False):
            try:
                model.token_to_piece(token).decode("utf-8")
            except UnicodeDecodeError:
                split = True

    assert split


@pytest.mark.parametrize("text", ["\U0001f600", "\u65e5\u672c", "\u00e9x\U0001f680"])
def test_stream_byte_by_byte(model, text):
    byte_tokens = single_byte_tokens(model)
    ids = []
    for byte in text.encode("utf-8"):
        ids.extend(model.tokenize(chr(byte), add_special=False) if byte < 0x80 else [byte_tokens[byte]])

    pieces = stream_pieces(model, ids)

    assert "".join(pieces) == text
    assert all("\ufffd" not in piece for piece in pieces), pieces


def test_stream_ends_with_incomplete_character(model):
    # A generation that stops inside a character ends with U+FFFD, once.
    byte_tokens = single_byte_tokens(model)
    ids = model.tokenize("ok", add_special=False) + [byte_tokens[0xF0], byte_tokens[0x9F]]

    pieces = stream_pieces(model, ids)

    assert "".join(pieces) == "ok\ufffd"


def test_generated_japanese_streams_whole_characters(smollm):
    # SmolLM2's byte-level BPE spells most Japanese characters with two
    # tokens, so the stream must hold the first token's bytes back.
    generation = smollm.generate("\u6771\u4eac\u306f\u65e5\u672c\u306e", max_tokens=12, temperature=0, stream=True)

    pieces = list(generation)

    token_pieces = [smollm.token_to_piece(token) for token in generation.token_ids]
    assert any(not is_utf8(piece) for piece in token_pieces), f"no token split a character: {token_pieces}"
    assert all("\ufffd" not in piece for piece in pieces), pieces
    assert "".join(pieces) == smollm.detokenize(generation.token_ids)


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
