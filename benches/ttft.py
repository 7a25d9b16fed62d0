"""Time from model load to the first generated token of a 1-token prompt.

Each run loads the model, creates a session and evaluates one token. A
TurboQuant key cache needs the model's key centers when its session is
created: the script times that twice, once calibrating them on every load
("calibrate") and once reading them from a centers cache folder filled by
an untimed load first ("cached", what every load after the first on a
machine does). It prints the median total and each run's load, session and
eval times in milliseconds. Run it from the repository root after building
the native module:

    PYTHONPATH=python python3 benches/ttft.py MODEL turbo_kv_4b fp32
"""

import argparse
import statistics
import tempfile
import time
from typing import Optional

from turbokv import _turbokv


def time_first_token(
    path: str, kv_type: str, n_threads: int, n_ctx: int, centers_dir: Optional[str]
) -> tuple[float, float, float]:
    """Return the seconds spent loading, creating the session and evaluating one token."""
    t0 = time.perf_counter()
    model = _turbokv.Model(path, n_threads, centers_dir)
    t1 = time.perf_counter()
    session = _turbokv.Session(model, n_ctx, kv_type, kv_type)
    t2 = time.perf_counter()
    session.eval([model.bos_id or 0])
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="GGUF file; keep it in the page cache (run once first) for repeatable numbers")
    parser.add_argument("kv_types", nargs="+", help="KV cache types for keys and values, e.g. turbo_kv_4b fp32")
    parser.add_argument("--runs", type=int, default=5, help="runs per KV type (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="worker threads (default 2)")
    parser.add_argument("--ctx", type=int, default=4096, help="session context in tokens (default 4096)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as centers_dir:
        for kv_type in args.kv_types:
            modes = {kv_type: None}
            if kv_type.startswith("turbo"):
                modes = {f"{kv_type} (calibrate)": None, f"{kv_type} (cached)": centers_dir}
                time_first_token(args.model, kv_type, args.threads, args.ctx, centers_dir)
            for label, directory in modes.items():
                parts = [time_first_token(args.model, kv_type, args.threads, args.ctx, directory) for _ in range(args.runs)]
                totals = [sum(p) for p in parts]
                runs_ms = [tuple(round(x * 1000) for x in p) for p in parts]
                print(
                    f"{label}: median {statistics.median(totals) * 1000:.0f} ms; "
                    f"load/session/eval of each run (ms): {runs_ms}"
                )


if __name__ == "__main__":
    main()
