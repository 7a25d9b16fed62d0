"""Chat templates: prompts equal llama.cpp's, and the sandbox contains hostile templates.

The fixtures come from scripts/make_chat_fixtures.py: llama-cpp-python's
Jinja2 chat handler for SmolLM2 (which ships a ChatML template) and llama.cpp's
built-in gemma format for Gemma 3 270M (which ships none).
"""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import turbokv
from turbokv.chat import ChatTemplate, chat_prompt_ids, check_messages, load_chat_template

FIXTURES = Path(__file__).parent / "fixtures"

USER = [{"role": "user", "content": "Hi"}]


def load_cases(name):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))["cases"]


@pytest.fixture(scope="module")
def smollm(smollm_path):
    return turbokv.Model(smollm_path, n_ctx=256, cache_type_k="fp32", cache_type_v="fp32")


@pytest.fixture(scope="module")
def gemma(gemma_path):
    return turbokv.Model(gemma_path, n_ctx=256, cache_type_k="fp32", cache_type_v="fp32")


def render(source, messages=USER, **variables):
    return ChatTemplate(source, "test template", bos_token="<s>", eos_token="</s>").render(messages, **variables)


# Parity with llama.cpp


@pytest.mark.parametrize("case", load_cases("chat_smollm2.json"), ids=lambda case: case["name"])
def test_smollm2_prompt_matches_llama_cpp(smollm, case):
    template = load_chat_template(smollm)
    add_generation_prompt = case["add_generation_prompt"]

    text = template.render(case["messages"], add_generation_prompt=add_generation_prompt)
    ids = chat_prompt_ids(smollm, template, case["messages"], add_generation_prompt=add_generation_prompt)

    assert text == case["prompt"]
    assert ids == case["token_ids"]


@pytest.mark.parametrize("case", load_cases("chat_gemma3.json"), ids=lambda case: case["name"])
def test_gemma3_prompt_matches_llama_cpp(gemma, case):
    template = load_chat_template(gemma)
    add_generation_prompt = case["add_generation_prompt"]

    text = template.render(case["messages"], add_generation_prompt=add_generation_prompt)
    ids = chat_prompt_ids(gemma, template, case["messages"], add_generation_prompt=add_generation_prompt)

    assert template.name == "built-in gemma3 format"
    assert text == case["prompt"]
    assert ids == case["token_ids"]


def test_smollm2_uses_embedded_template(smollm):
    template = load_chat_template(smollm)

    assert template.source == smollm.chat_template
    assert "tokenizer.chat_template" in template.name
    assert template.bos_token == "<|im_start|>"
    assert template.eos_token == "<|im_end|>"


# BOS handling


def test_template_bos_not_doubled_when_vocab_adds_bos(gemma):
    template = ChatTemplate("{{ bos_token }}{{ messages[0]['content'] }}", "test", bos_token="<bos>")

    ids = chat_prompt_ids(gemma, template, USER)

    assert ids[0] == gemma.bos_id
    assert ids.count(gemma.bos_id) == 1
    assert ids == gemma.tokenize("Hi", add_special=True)


def test_vocab_bos_added_without_template_bos(gemma):
    template = ChatTemplate("{{ messages[0]['content'] }}", "test", bos_token="<bos>")

    ids = chat_prompt_ids(gemma, template, USER)

    assert ids[0] == gemma.bos_id
    assert ids.count(gemma.bos_id) == 1


def test_template_bos_kept_when_vocab_adds_none(smollm):
    # SmolLM2's vocabulary adds no BOS, so only the template's own BOS text
    # (<|im_start|>, id 1) starts the prompt, as in llama-cpp-python.
    template = ChatTemplate("{{ bos_token }}{{ messages[0]['content'] }}", "test", bos_token="<|im_start|>")

    ids = chat_prompt_ids(smollm, template, USER)

    assert ids[0] == smollm.bos_id
    assert ids.count(smollm.bos_id) == 1
    assert chat_prompt_ids(smollm, ChatTemplate("{{ messages[0]['content'] }}", "test"), USER)[0] != smollm.bos_id


# Template variables and Hugging Face compatibility


def test_template_variables():
    source = "{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ messages | length }}"

    assert render(source) == "<s>|</s>|True|1"
    assert render(source, add_generation_prompt=False) == "<s>|</s>|False|1"


def test_trim_and_lstrip_blocks():
    source = "  {% for message in messages %}\n{{ message['content'] }}\n  {% endfor %}\n"

    assert render(source, USER + USER) == "Hi\nHi\n"


def test_raise_exception_message_in_error():
    source = "{% if messages[0]['role'] != 'system' %}{{ raise_exception('a system message is required') }}{% endif %}"

    with pytest.raises(turbokv.TurbokvError, match="rejected the messages: a system message is required"):
        render(source)


def test_strftime_now():
    assert render("{{ strftime_now('%Y') }}").isdigit()


def test_tojson_keeps_unicode():
    messages = [{"role": "user", "content": "日本語 🙂"}]

    assert render("{{ messages[0] | tojson }}", messages) == '{"role": "user", "content": "日本語 🙂"}'


def test_loop_controls_and_generation_tag():
    source = (
        "{% for message in messages %}{% if loop.index > 1 %}{% break %}{% endif %}"
        "{% generation %}{{ message['content'] }}{% endgeneration %}{% endfor %}"
    )

    assert render(source, USER + [{"role": "user", "content": "second"}]) == "Hi"


def test_extra_message_keys_reach_template():
    messages = [{"role": "user", "content": "Hi", "name": "alice"}]

    assert render("{{ messages[0]['name'] }}", messages) == "alice"


# Sandbox


@pytest.mark.parametrize(
    "source",
    [
        "{{ messages.__class__.__mro__[1].__subclasses__() }}",
        "{{ raise_exception.__globals__['__builtins__'] }}",
        "{{ ''.__class__.__base__ }}",
        "{{ cycler.__init__.__globals__.os.system('true') }}",
    ],
)
def test_sandbox_blocks_internals(source):
    with pytest.raises(turbokv.TurbokvError, match="rendering the chat template"):
        render(source)


def test_sandbox_renders_unsafe_attribute_empty():
    assert render("{{ raise_exception.__globals__ }}") == ""
    assert render("{{ messages.__class__ }}") == ""


def test_sandbox_blocks_mutating_messages():
    messages = [{"role": "user", "content": "Hi"}]

    with pytest.raises(turbokv.TurbokvError, match="rendering the chat template"):
        render("{{ messages.append({'role': 'user', 'content': 'x'}) }}", messages)
    with pytest.raises(turbokv.TurbokvError, match="rendering the chat template"):
        render("{% set _ = messages[0].update({'content': 'changed'}) %}", messages)
    assert messages == [{"role": "user", "content": "Hi"}]


def test_sandbox_bounds_repetition():
    with pytest.raises(turbokv.TurbokvError, match="exceeds"):
        render("{{ 'x' * 100000000 }}")
    with pytest.raises(turbokv.TurbokvError, match="too large"):
        render("{{ 10 ** 100000000 }}")
    assert render("{{ '-' * 3 }}{{ 2 ** 10 }}") == "---1024"


def test_syntax_error_names_template_and_line():
    with pytest.raises(turbokv.TurbokvError, match=r"invalid chat template \(test template\), line 2"):
        ChatTemplate("ok\n{% for %}", "test template")


# Messages


@pytest.mark.parametrize(
    "messages, error, match",
    [
        ([], turbokv.TurbokvError, "messages is empty"),
        ("Hi", TypeError, "list of"),
        (["Hi"], TypeError, r"messages\[0\] must be a dict"),
        ([{"role": "user"}], turbokv.TurbokvError, r"messages\[0\] has no 'content' string"),
        ([{"content": "Hi"}], turbokv.TurbokvError, r"messages\[0\] has no 'role' string"),
        ([{"role": "user", "content": None}], turbokv.TurbokvError, "'content'"),
    ],
)
def test_invalid_messages_rejected(messages, error, match):
    with pytest.raises(error, match=match):
        check_messages(messages)


# Choosing the template


def fake_model(architecture, chat_template=None):
    """An object with the attributes load_chat_template reads, for architectures we have no file of."""
    return SimpleNamespace(
        path=Path(f"/models/{architecture}.gguf"),
        chat_template=chat_template,
        bos_id=None,
        eos_id=None,
        info=lambda: {"architecture": architecture},
    )


def test_unknown_architecture_without_template_fails():
    with pytest.raises(turbokv.TurbokvError, match=r"no chat template .*'qwen9'.*--chat-template FILE"):
        load_chat_template(fake_model("qwen9"))


def test_user_template_wins(smollm):
    template = load_chat_template(smollm, "{{ messages[0]['content'] }}!", name="mine.jinja")

    assert template.name == "mine.jinja"
    assert template.render(USER) == "Hi!"
    assert load_chat_template(fake_model("qwen9"), "x").render(USER) == "x"
