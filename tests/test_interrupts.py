"""Ctrl-C, KeyboardInterrupt, threads and long runs of calls.

- Ctrl-C during ``turbokv run`` exits 130 with one line on stderr.
- A KeyboardInterrupt during streaming leaves the model usable.
- One model serves 4 threads at once with the same greedy outputs as
  sequential calls, and its compute releases the GIL.
- 1000 short generations keep the process RSS flat.
"""

import _thread
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import turbokv
from synthetic import write_llama

# Child processes import the same turbokv as this process, installed or not.
PYTHON_PATH = str(Path(turbokv.__file__).resolve().parents[1])

PROMPTS = [
    "The capital of France is",
    "Once upon a time, there was",
    "def fibonacci(n):",
    "The three primary colors are",
]


@pytest.fixture(scope="module")
def smollm(smollm_path):
    return turbokv.Model(smollm_path, n_ctx=128, n_threads=2, cache_type_k="fp32", cache_type_v="fp32")


def cli_env():
    return dict(os.environ, PYTHONPATH=PYTHON_PATH + os.pathsep + os.environ.get("PYTHONPATH", ""))


def test_ctrl_c_during_run_exits_130(smollm_path):
    command = [
        sys.executable, "-m", "turbokv", "run", str(smollm_path), "-p", "Once upon a time", "--no-echo",
        "-n", "2000", "--ctx", "2048", "--temp", "0", "-k", "fp32", "-v", "fp32", "-t", "1",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
    try:
        first = process.stdout.read(1)
        assert first, "turbokv run printed nothing before exiting"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    stderr_text = stderr.decode("utf-8", errors="replace")
    assert process.returncode == 130, stderr_text
    assert "Traceback" not in stderr_text
    assert "interrupted" in stderr_text


def test_interrupt_during_streaming_keeps_model_usable(smollm):
    expected = smollm.generate_tokens(PROMPTS[0], max_tokens=8, temperature=0).token_ids
    generation = smollm.generate(PROMPTS[1], max_tokens=100, temperature=0, stream=True)

    # interrupt_main raises KeyboardInterrupt in this thread as SIGINT would,
    # at the first bytecode after the native step in progress returns.
    pieces = []
    with pytest.raises(KeyboardInterrupt):
        for piece in generation:
            pieces.append(piece)
            if len(pieces) == 2:
                threading.Timer(0.01, _thread.interrupt_main).start()
            if len(pieces) > 50:
                break

    assert len(pieces) < 50
    again = smollm.generate_tokens(PROMPTS[0], max_tokens=8, temperature=0).token_ids
    assert again == expected


def test_interrupt_stops_perplexity_between_chunks(smollm):
    # Without a progress callback no Python code runs between chunks, so
    # only the native module's signal check can end this call early.
    text = turbokv.model.read_perplexity_text()[:40_000]
    timer = threading.Timer(0.5, _thread.interrupt_main)

    started = time.perf_counter()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        smollm.perplexity(text, n_ctx=64)
    seconds = time.perf_counter() - started

    # The whole text takes about 150 chunks; the interrupt must land within a few.
    assert seconds < 20, f"perplexity ran {seconds:.1f} s after the interrupt"
    assert smollm.generate("Hi", max_tokens=1, temperature=0) is not None


def test_four_threads_match_sequential(smollm):
    sequential = [smollm.generate_tokens(prompt, max_tokens=12, temperature=0).token_ids for prompt in PROMPTS]

    results = [None] * len(PROMPTS)
    errors = []
    barrier = threading.Barrier(len(PROMPTS))

    def worker(index):
        try:
            barrier.wait()
            results[index] = smollm.generate_tokens(PROMPTS[index], max_tokens=12, temperature=0).token_ids
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(len(PROMPTS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert not errors, errors
    assert results == sequential


def test_streams_interleaved_in_one_thread(smollm):
    sequential = [smollm.generate_tokens(prompt, max_tokens=6, temperature=0).token_ids for prompt in PROMPTS[:2]]
    first = smollm.generate(PROMPTS[0], max_tokens=6, temperature=0, stream=True)
    second = smollm.generate(PROMPTS[1], max_tokens=6, temperature=0, stream=True)

    for _ in range(6):
        next(first, None)
        next(second, None)
    first.result()
    second.result()

    assert [first.token_ids, second.token_ids] == sequential


def test_compute_releases_gil(smollm):
    tokens = smollm.tokenize("word " * 24)
    count = 0
    running = True

    def spin():
        nonlocal count
        while running:
            count += 1

    thread = threading.Thread(target=spin)
    thread.start()
    try:
        time.sleep(0.05)
        before = count
        started = time.perf_counter()
        smollm.logits(tokens)
        seconds = time.perf_counter() - started
        during = count - before
    finally:
        running = False
        thread.join()

    # With the GIL held for the whole call, the counter could only move in
    # the few switch intervals (5 ms each) before the native code starts.
    assert seconds > 0.05, f"the call took only {seconds:.3f} s, too short to tell"
    assert during > 10_000, f"the counter thread advanced {during} times in {seconds:.2f} s"


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


# Growth allowed over 1000 calls after warm-up: 20 KiB per call on average.
# A leaked session (128 KiB of KV cache at n_ctx 256 here) exceeds it many
# times over. A leak of one logits row (about 1 KiB) per call would not.
RSS_GROWTH_LIMIT = 20 * 2**20


def test_thousand_generations_keep_rss_flat(tmp_path):
    # A tiny synthetic llama makes each call take well under a millisecond.
    # The calls run the same session, generator and sampler code as a real model.
    path = tmp_path / "tiny.gguf"
    write_llama(path, n_embd=64, n_layer=2, n_head=2, n_kv_heads=1, n_ff=128)
    model = turbokv.Model(path, n_ctx=256, n_threads=1, cache_type_k="fp32", cache_type_v="fp32")

    def call(index):
        prompt = f"call {index}"
        if index % 2:
            return model.generate(prompt, max_tokens=1 + index % 2, temperature=0)
        return model.generate_tokens(prompt, max_tokens=2, temperature=0.8, seed=index)

    for index in range(100):
        call(index)
    baseline = rss_bytes()
    for index in range(1000):
        call(index)
    growth = rss_bytes() - baseline

    assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth / 2**20:.1f} MiB over 1000 calls"
