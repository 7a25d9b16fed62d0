"""Measure what each KV cache type trades: bytes, decode and prefill speed, and quality.

``run_bench`` drives ``turbokv bench``. Each KV type sets keys and values
together. Speed is measured in one session per type: the session is filled
with the shipped text up to each depth in increasing order, and at each depth
``runs`` single-token decode steps are timed one by one. Quality is the
perplexity of the shipped text and the KL divergence of each type's
next-token distributions from an fp32 cache run over the same chunks.
"""

import datetime
import logging
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from turbokv import _turbokv
from turbokv.model import read_perplexity_text
from turbokv.paths import centers_cache_dir

logger = logging.getLogger(__name__)

#: The reference type: speed and quality deltas are relative to it.
BASE_TYPE = "fp32"

#: Tokens of the timed prefill, as llama-bench's ``-p 512``.
PREFILL_TOKENS = 512
#: Untimed decode steps before the timed ones at each depth. The first
#: steps in a new process or after a prefill run up to 2x slower (SmolLM2,
#: one thread: 113 to 214 tok/s over the first 6 steps, then about 225),
#: probably while CPU caches refill with weights. With one warm-up step,
#: bench printed turbo_kv_4b at 109% to 115% of fp32 at depth 0.
WARMUP_STEPS = 8

#: Tokens per ``eval`` call while filling a session up to a depth.
FILL_BATCH = 512

#: Bytes per element of the float cache types, for the compression ratios.
FP16_BYTES = 2
FP32_BYTES = 4

#: ``progress(steps_done_now, description)``, called as each step finishes.
Progress = Callable[[int, str], None]


@dataclass
class BenchSettings:
    """Settings of one ``run_bench`` call: KV types, depths, repetitions and perplexity size."""

    kv_types: List[str]
    #: Cache positions at which decode speed is timed.
    depths: List[int]
    #: Timed single-token decode steps per depth; the reported rate is their median.
    runs: int = 8
    n_threads: int = 2
    #: Tokens per perplexity chunk.
    ppl_ctx: int = 512
    #: Perplexity chunks to score (0 skips perplexity and KL divergence).
    ppl_chunks: int = 4


@dataclass
class TypeResult:
    """Every number measured for one KV cache type (keys and values of that type)."""

    kv_type: str
    head_dim: int
    #: Bytes one head vector of ``head_dim`` elements occupies.
    row_bytes: int
    bits_per_element: float
    compression_vs_fp16: float
    compression_vs_fp32: float
    #: Median decode tokens per second at each depth (keys are depths as strings, for JSON).
    decode_tokens_per_second: Dict[str, float] = field(default_factory=dict)
    #: Each timed decode step in seconds, per depth.
    decode_step_seconds: Dict[str, List[float]] = field(default_factory=dict)
    #: Decode speed in percent of the fp32 cache's at the same depth.
    decode_vs_fp32_percent: Dict[str, float] = field(default_factory=dict)
    prefill_tokens_per_second: Optional[float] = None
    #: Bytes the KV cache allocates for a context of each depth.
    kv_bytes: Dict[str, int] = field(default_factory=dict)
    perplexity: Optional[float] = None
    perplexity_delta: Optional[float] = None
    #: Mean KL(fp32 || this type) per scored token, in nats.
    kl_divergence: Optional[float] = None
    kl_divergence_stderr: Optional[float] = None
    #: Percent of scored positions where this type and fp32 rank the same token first.
    top1_agreement: Optional[float] = None


@dataclass
class BenchReport:
    """A whole ``turbokv bench`` run: settings, machine and per-type results."""

    turbokv_version: str
    date: str
    machine: dict
    model: dict
    settings: dict
    results: List[TypeResult]
    #: Types that could not run, with the error each one raised.
    skipped: Dict[str, str]

    def to_dict(self) -> dict:
        return asdict(self)


def machine_facts() -> dict:
    """Return the CPU model (from /proc/cpuinfo where it exists), core count and kernel SIMD path."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(("model name", "Model")):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        logger.info("no /proc/cpuinfo, reporting the CPU as %s", cpu)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
        "simd_path": _turbokv.simd_path(),
        # Other processes competing for the cores slow every rate down, so
        # the load is recorded with the numbers.
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def text_tokens(model: "_turbokv.Model", n_tokens: int) -> List[int]:
    """Return at least ``n_tokens`` tokens of the shipped text (with BOS), repeating it if it is too short."""
    tokens = model.tokenize(read_perplexity_text(), add_special=True)
    body = tokens[1:] if tokens and tokens[0] == model.bos_id else tokens
    while len(tokens) < n_tokens:
        tokens.extend(body)
    return tokens


def probe_kv_type(model: "_turbokv.Model", kv_type: str) -> Optional[str]:
    """Return None if a session with ``kv_type`` evaluates a token, else the error it raised.

    An unfinished kernel raises a Rust panic, which PyO3 turns into
    ``pyo3_runtime.PanicException``, a ``BaseException``: that is caught too.
    """
    token = model.bos_id if model.bos_id is not None else 0
    try:
        session = _turbokv.Session(model, 2, kv_type, kv_type)
        session.eval([token])
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # noqa: B036 -- see the docstring
        return f"{type(error).__name__}: {error}"
    return None


def measure_sizes(model: "_turbokv.Model", kv_type: str, head_dim: int, depths: Sequence[int]) -> TypeResult:
    """Return a result with the storage numbers of ``kv_type`` filled in."""
    row_bytes = _turbokv.KvStore(kv_type, 1, head_dim, 1).row_bytes
    result = TypeResult(
        kv_type=kv_type,
        head_dim=head_dim,
        row_bytes=row_bytes,
        bits_per_element=8 * row_bytes / head_dim,
        compression_vs_fp16=FP16_BYTES * head_dim / row_bytes,
        compression_vs_fp32=FP32_BYTES * head_dim / row_bytes,
    )
    for depth in depths:
        result.kv_bytes[str(depth)] = model.kv_cache_bytes(max(depth, 1), kv_type, kv_type) if depth else 0
    return result


def measure_speed(
    model: "_turbokv.Model",
    kv_type: str,
    tokens: Sequence[int],
    settings: BenchSettings,
    result: TypeResult,
    progress: Progress,
) -> None:
    """Time the prefill of ``PREFILL_TOKENS`` and decode steps at each depth, into ``result``.

    One session is filled once, depth after depth. The tokens decoded at a
    depth are the text's next tokens, so depth ``d`` times positions
    ``d .. d + WARMUP_STEPS + runs`` and only the last ``runs`` are timed.
    """
    depths = sorted(settings.depths)
    steps_per_depth = WARMUP_STEPS + settings.runs
    n_ctx = max(depths[-1] + steps_per_depth * len(depths), PREFILL_TOKENS)
    session = _turbokv.Session(model, n_ctx, kv_type, kv_type)

    start = time.perf_counter()
    session.eval(list(tokens[:PREFILL_TOKENS]))
    result.prefill_tokens_per_second = PREFILL_TOKENS / (time.perf_counter() - start)
    progress(1, f"{kv_type}: prefill {PREFILL_TOKENS}")
    if depths[0] < PREFILL_TOKENS:
        session.reset()

    for depth in depths:
        _fill_to(session, tokens, depth)
        step_seconds = []
        for step in range(steps_per_depth):
            token = tokens[session.n_past]
            start = time.perf_counter()
            session.eval([token])
            if step >= WARMUP_STEPS:
                step_seconds.append(time.perf_counter() - start)
        result.decode_step_seconds[str(depth)] = step_seconds
        result.decode_tokens_per_second[str(depth)] = 1.0 / statistics.median(step_seconds)
        progress(1, f"{kv_type}: decode at depth {depth}")


def _fill_to(session: "_turbokv.Session", tokens: Sequence[int], depth: int) -> None:
    """Evaluate the text's tokens from the session's position up to ``depth`` positions."""
    if session.n_past > depth:
        # Only happens when a depth is below the previous depth plus its decode
        # steps, so that depth is measured slightly deeper than asked.
        logger.info("session contains %d tokens, more than depth %d; timing decode there", session.n_past, depth)
        return
    while session.n_past < depth:
        end = min(depth, session.n_past + FILL_BATCH)
        session.eval(list(tokens[session.n_past : end]))


def measure_quality(
    model: "_turbokv.Model",
    kv_type: str,
    tokens: Sequence[int],
    settings: BenchSettings,
    result: TypeResult,
    progress: Progress,
) -> None:
    """Score ``ppl_chunks`` chunks of the text: perplexity, and KL divergence from fp32 for other types."""
    scored = list(tokens[: settings.ppl_ctx * settings.ppl_chunks])

    def report_chunk(done: int, total: int) -> None:
        progress(1, f"{kv_type}: perplexity chunk {done}/{total}")

    if kv_type == BASE_TYPE:
        # KL divergence of fp32 from itself is 0 by definition, so score it alone.
        stats = model.perplexity(scored, settings.ppl_ctx, kv_type, kv_type, progress=report_chunk)
        result.perplexity = stats["ppl"]
        result.kl_divergence = 0.0
        result.kl_divergence_stderr = 0.0
        result.top1_agreement = 100.0
        return

    stats = model.perplexity_kl(
        scored, settings.ppl_ctx, kv_type, kv_type, BASE_TYPE, BASE_TYPE, progress=report_chunk
    )
    result.perplexity = stats["ppl"]
    result.perplexity_delta = stats["ppl"] - stats["ppl_base"]
    result.kl_divergence = stats["kl_divergence"]
    result.kl_divergence_stderr = stats["kl_divergence_stderr"]
    result.top1_agreement = stats["top1_agreement"]


def count_steps(settings: BenchSettings) -> int:
    """Return how many progress steps ``run_bench`` reports, for a progress bar's length."""
    per_type = 1 + len(settings.depths) + settings.ppl_chunks
    return 1 + per_type * len(settings.kv_types)


def run_bench(model_path: str, settings: BenchSettings, progress: Optional[Progress] = None) -> BenchReport:
    """Measure every type in ``settings.kv_types`` on the model at ``model_path``.

    Types that fail (for example, KV kernels that are not built yet) are
    left out of the results and listed in ``skipped`` with their error.
    """
    report_step = progress or (lambda steps, description: None)
    model = _turbokv.Model(model_path, settings.n_threads, centers_cache_dir())
    facts = model.info()
    head_dim = facts["head_dim"]

    max_depth = max(settings.depths)
    n_tokens = max(max_depth + (WARMUP_STEPS + settings.runs) * len(settings.depths), PREFILL_TOKENS)
    n_tokens = max(n_tokens, settings.ppl_ctx * settings.ppl_chunks)
    tokens = text_tokens(model, n_tokens + 1)
    report_step(1, "load model and text")

    results: List[TypeResult] = []
    skipped: Dict[str, str] = {}
    for kv_type in settings.kv_types:
        error = probe_kv_type(model, kv_type)
        if error is not None:
            logger.warning("skipping KV type %s, which fails to run in this build: %s", kv_type, error)
            skipped[kv_type] = error
            report_step(1 + len(settings.depths) + settings.ppl_chunks, f"{kv_type}: skipped")
            continue

        result = measure_sizes(model, kv_type, head_dim, settings.depths)
        measure_speed(model, kv_type, tokens, settings, result, report_step)
        if settings.ppl_chunks > 0:
            measure_quality(model, kv_type, tokens, settings, result, report_step)
        results.append(result)

    _add_relative_speed(results)
    return BenchReport(
        turbokv_version=_turbokv.__version__,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        machine=machine_facts(),
        model={
            "path": model_path,
            "name": facts.get("name"),
            "architecture": facts["architecture"],
            "file_bytes": facts["file_bytes"],
            "n_layer": facts["n_layer"],
            "n_kv_heads": facts["n_kv_heads"],
            "head_dim": head_dim,
            "n_vocab": facts["n_vocab"],
            "sliding_windows": facts["sliding_windows"],
        },
        settings={**asdict(settings), "prefill_tokens": PREFILL_TOKENS, "base_type": BASE_TYPE},
        results=results,
        skipped=skipped,
    )


def _add_relative_speed(results: List[TypeResult]) -> None:
    base = next((r for r in results if r.kv_type == BASE_TYPE), None)
    if base is None:
        return
    for result in results:
        for depth, rate in result.decode_tokens_per_second.items():
            # Divide first: 100 * x / x can round to 99.99999999999999.
            result.decode_vs_fp32_percent[depth] = 100.0 * (rate / base.decode_tokens_per_second[depth])
        if result.perplexity is not None and base.perplexity is not None and result is not base:
            result.perplexity_delta = result.perplexity - base.perplexity
    base.perplexity_delta = 0.0 if base.perplexity is not None else None


def format_table(report: BenchReport) -> str:
    """Return the results as a Markdown table, one row per KV type."""
    depths = [str(d) for d in report.settings["depths"]]
    max_depth = str(max(report.settings["depths"]))
    header = (
        ["KV type", "bytes/row", "bits/elem", "vs fp16", "vs fp32"]
        + [f"decode t/s @{d} (vs fp32)" for d in depths]
        + ["prefill t/s", "PPL", "ΔPPL", "KL div", "top-1 %", f"KV MiB @{max_depth}"]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in report.results:
        cells = [
            r.kv_type,
            str(r.row_bytes),
            f"{r.bits_per_element:.2f}",
            f"{r.compression_vs_fp16:.2f}x",
            f"{r.compression_vs_fp32:.2f}x",
        ]
        for d in depths:
            percent = r.decode_vs_fp32_percent.get(d)
            relative = f" ({percent:.0f}%)" if percent is not None else ""
            cells.append(f"{r.decode_tokens_per_second[d]:.1f}{relative}")
        cells += [
            _format_optional(r.prefill_tokens_per_second, ".1f"),
            _format_optional(r.perplexity, ".4f"),
            _format_optional(r.perplexity_delta, "+.4f"),
            _format_optional(r.kl_divergence, ".6f"),
            _format_optional(r.top1_agreement, ".2f"),
            f"{r.kv_bytes[max_depth] / 2**20:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    for kv_type, error in report.skipped.items():
        lines.append(f"skipped {kv_type} (fails to run in this build): {error}")
    return "\n".join(lines)


def _format_optional(value: Optional[float], spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def plot_report(report: BenchReport, path: str) -> None:
    """Draw decode tokens per second and KV cache memory against depth, one line per type, into ``path``.

    Needs matplotlib: ``pip install "turbokv[plot]"``.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError('--plot needs matplotlib; install it with: pip install "turbokv[plot]"') from None

    depths = report.settings["depths"]
    figure, (speed_axes, memory_axes) = plt.subplots(1, 2, figsize=(11, 4.5))
    for r in report.results:
        speed_axes.plot(depths, [r.decode_tokens_per_second[str(d)] for d in depths], marker="o", label=r.kv_type)
        memory_axes.plot(depths, [r.kv_bytes[str(d)] / 2**20 for d in depths], marker="o", label=r.kv_type)

    speed_axes.set(xlabel="depth (cached tokens)", ylabel="decode tokens/s", title="Decode speed")
    memory_axes.set(xlabel="depth (cached tokens)", ylabel="KV cache MiB", title="KV cache memory")
    for axes in (speed_axes, memory_axes):
        axes.grid(True, alpha=0.3)
        axes.legend()
    name = report.model.get("name") or os.path.basename(report.model["path"])
    figure.suptitle(f"{name}, {report.settings['n_threads']} threads, {report.machine['cpu']}")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
