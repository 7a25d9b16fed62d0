"""Write the fuzz targets' vocabularies and seed corpora.

    python3 fuzz/make_corpus.py

fuzz/vocab/ gets vocabulary-only GGUF files (tokenizer metadata, no
tensors), which the tokenizer target compiles in. fuzz/corpus/gguf/ gets
tiny synthetic models and small hand-built files; fuzz/corpus/tokenizer/
gets text seeds, each prefixed by the byte that picks vocabulary and flags.
The outputs are committed, so run this only to change them.
"""

import dataclasses
import sys
from pathlib import Path

import gguf

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "tests"))

import gguf_cases  # noqa: E402
from synthetic import add_vocabulary, build_vocabulary, write_gemma3, write_llama  # noqa: E402

# Pre-tokenizer of each BPE vocabulary, in the tokenizer target's order after spm.
BPE_PRES = ["default", "gpt-2", "llama3", "qwen2", "smollm"]

TEXT_SEEDS = [
    "Hello world",
    "The capital of France is Paris.",
    "  leading spaces\tand\ttabs\n\nnew lines  ",
    "<|im_start|>user\nhi<|im_end|>",
    "<start_of_turn>user\nhi<end_of_turn>",
    "numbers 12345 678.9 and 'contractions' don't we'll",
    "caf\u00e9 na\u00efve \u65e5\u672c\u8a9e \ud55c\uad6d\uc5b4 \U0001f600\U0001f680",
    "a" * 200,
]


def write_vocab(path: Path, kind: str, pre: str) -> None:
    vocab = dataclasses.replace(build_vocabulary(kind), pre=pre)
    writer = gguf.GGUFWriter(str(path), "llama")
    add_vocabulary(writer, vocab)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> None:
    vocab_dir = ROOT / "vocab"
    vocab_dir.mkdir(exist_ok=True)
    write_vocab(vocab_dir / "spm.gguf", "spm", "default")
    for pre in BPE_PRES:
        write_vocab(vocab_dir / f"bpe-{pre}.gguf", "gpt2", pre)

    gguf_dir = ROOT / "corpus" / "gguf"
    gguf_dir.mkdir(parents=True, exist_ok=True)
    tiny = dict(n_embd=32, n_layer=1, n_head=2, n_kv_heads=1, n_ff=32)
    write_llama(gguf_dir / "llama-f32.gguf", **tiny)
    write_llama(gguf_dir / "llama-q8_0.gguf", weight_type="Q8_0", **tiny)
    write_gemma3(gguf_dir / "gemma3-f32.gguf", **tiny)
    (gguf_dir / "cases-valid.gguf").write_bytes(gguf_cases.valid_file())
    for name in ("spm.gguf", "bpe-smollm.gguf"):
        (gguf_dir / f"vocab-{name}").write_bytes((vocab_dir / name).read_bytes())

    text_dir = ROOT / "corpus" / "tokenizer"
    text_dir.mkdir(parents=True, exist_ok=True)
    n_vocabs = 1 + len(BPE_PRES)
    for index, text in enumerate(TEXT_SEEDS):
        for vocab_index in range(n_vocabs):
            # Bits 0 and 1 are add_special and parse_special; the rest pick the vocabulary.
            selector = vocab_index << 2 | (index % 4)
            (text_dir / f"seed-{index}-{vocab_index}").write_bytes(bytes([selector]) + text.encode("utf-8"))


if __name__ == "__main__":
    main()
