"""Decode and prefill speed of several KV types in one process, in alternating rounds.

Usage: PYTHONPATH=python python3 benches/kv_ab.py MODEL THREADS DEPTHS TYPES [ROUNDS]
e.g.   PYTHONPATH=python python3 benches/kv_ab.py model.gguf 2 0,8192 fp32,turbo_kv_4b 5

Each type gets its own session, filled once to each depth. Every round times
16 single-token decode steps per type, one type after the other, so a slow
spell of a shared machine hits all types alike. The script prints the median
of the rounds for each type and its ratio to the first type. Prefill is the median of 3
512-token batches from an empty cache.
"""

import statistics
import sys
import time

from turbokv import _turbokv
from turbokv.bench import text_tokens

STEPS = 16


def main() -> None:
    path, threads = sys.argv[1], int(sys.argv[2])
    depths = [int(x) for x in sys.argv[3].split(",")]
    types = sys.argv[4].split(",")
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 5

    model = _turbokv.Model(path, threads)
    tokens = text_tokens(model, max(depths) + 600)
    sessions = {t: _turbokv.Session(model, max(depths) + 600, t, t) for t in types}

    prefill = {t: [] for t in types}
    for _ in range(3):
        for t, session in sessions.items():
            session.reset()
            start = time.perf_counter()
            session.eval(tokens[:512])
            prefill[t].append(512 / (time.perf_counter() - start))
    for t in types:
        print(f"prefill {t}: {statistics.median(prefill[t]):.1f} tok/s")

    for depth in depths:
        for session in sessions.values():
            session.reset()
            while session.n_past < depth:
                end = min(depth, session.n_past + 512)
                session.eval(tokens[session.n_past : end])
        rates = {t: [] for t in types}
        for _ in range(rounds):
            for t, session in sessions.items():
                session.truncate(depth)
                start = time.perf_counter()
                for i in range(STEPS):
                    session.eval([tokens[depth + i]])
                rates[t].append(STEPS / (time.perf_counter() - start))
        base = statistics.median(rates[types[0]])
        cells = [f"{t} {statistics.median(rates[t]):.1f} ({statistics.median(rates[t]) / base:.2f}x)" for t in types]
        print(f"depth {depth}: " + "  ".join(cells))


if __name__ == "__main__":
    main()
