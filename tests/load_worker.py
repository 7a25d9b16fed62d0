"""Child process that loads model files with turbokv and reports each outcome.

The hostile-file tests run this script in a subprocess, so a crash (a
segfault, an abort on a failed allocation) ends this process and fails the
tests instead of killing the pytest run.

Input on stdin, one JSON object::

    {"address_space_headroom": BYTES,
     "cases": [{"name": ..., "path": ...}, {"name": ..., "source": ..., "cut": N}, ...]}

A case with ``source`` and ``cut`` loads the first ``cut`` bytes of
``source``. The worker copies ``source`` once and shrinks the copy in place
with ``os.truncate``, so cases of one source must come in descending ``cut``
order.

Output on stdout: a ``{"ready": ...}`` line, then one JSON line per case,
flushed before the next case starts, so the parent can tell which case a
crash happened in. Memory is reported as ``ru_maxrss`` in KiB (Linux units).
"""

import json
import os
import resource
import shutil
import sys
import tempfile
import time


def virtual_memory_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmSize not found in /proc/self/status")


def max_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def load(turbokv, path: str) -> dict:
    """Load ``path`` and return the outcome: the exception's type and message, or ``loaded``."""
    started = time.perf_counter()
    try:
        turbokv.Model(path, n_ctx=64, n_threads=1, cache_type_k="fp32", cache_type_v="fp32")
        outcome = {"outcome": "loaded"}
    except Exception as error:  # noqa: BLE001 - the parent judges the type
        outcome = {
            "outcome": "raised",
            "type": type(error).__name__,
            "is_turbokv_error": isinstance(error, turbokv.TurbokvError),
            "message": str(error),
        }
    outcome["seconds"] = time.perf_counter() - started
    outcome["max_rss_kib"] = max_rss_kib()
    return outcome


def main() -> None:
    request = json.load(sys.stdin)
    import turbokv

    # Any allocation sized by an unchecked header number (even one whose pages
    # are never touched) fails against this limit, and Rust aborts the process.
    headroom = int(request["address_space_headroom"])
    limit = virtual_memory_bytes() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    print(json.dumps({"ready": True, "max_rss_kib": max_rss_kib()}), flush=True)
    work_dir = tempfile.mkdtemp(prefix="turbokv-hostile-")
    copies = {}
    try:
        for case in request["cases"]:
            path = case.get("path")
            if path is None:
                source = case["source"]
                if source not in copies:
                    copies[source] = os.path.join(work_dir, f"cut-{len(copies)}.gguf")
                    shutil.copyfile(source, copies[source])
                path = copies[source]
                os.truncate(path, case["cut"])

            result = load(turbokv, path)
            result["name"] = case["name"]
            result["file_bytes"] = os.path.getsize(path)
            print(json.dumps(result), flush=True)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
