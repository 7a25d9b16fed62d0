"""``turbokv chat`` on SmolLM2: fed by CliRunner, and once as a program on a real terminal (pty)."""

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import turbokv
from turbokv.cli import main

MISSING_MODEL = "/nonexistent/turbokv-test-model.gguf"
GREEDY = ["--system", "You are a helpful assistant.", "--temp", "0", "-k", "fp32", "-v", "fp32", "-t", "2", "--ctx", "512"]

# Greedy replies to these keep a top-2 logit gap of at least 1.4 at every token
# (measured on AVX2 with GREEDY's system message and fp32 cache), so a change of
# summation order cannot flip them. The follow-up only makes sense after the
# first question. "What is the capital of France?" is avoided because its first
# token is a near-tie ("The" vs "La").
QUESTION, ANSWER = "What is the capital of Japan?", "Tokyo"
FOLLOW_UP, FOLLOW_UP_ANSWER = "And of Germany?", "Berlin"


def chat(model_path, *args, input=""):
    return CliRunner().invoke(main, ["chat", str(model_path), *GREEDY, *args], input=input)


def prompt_sizes(stderr):
    """Return the prompt size of each turn from the --verbose log."""
    return [int(n) for n in re.findall(r"chat prompt: (\d+) tokens", stderr)]


def test_chat_answers_two_turns(smollm_path):
    result = chat(smollm_path, "-n", "40", input=f"{QUESTION}\n{FOLLOW_UP}\n/exit\n")

    assert result.exit_code == 0, result.output
    replies = [line for line in result.stdout.split("> ") if line.strip()]
    assert len(replies) == 2, result.stdout
    assert ANSWER in replies[0]
    assert FOLLOW_UP_ANSWER in replies[1]


def test_chat_turns_reuse_cache(smollm_path):
    result = CliRunner().invoke(
        main, ["--verbose", "chat", str(smollm_path), *GREEDY, "-n", "40"],
        input=f"{QUESTION}\n{FOLLOW_UP}\n",
    )

    assert result.exit_code == 0, result.output
    reused = [int(n) for n in re.findall(r"(\d+) reused from the KV cache", result.stderr)]
    sizes = prompt_sizes(result.stderr)
    assert reused[0] == 0
    assert reused[-1] > sizes[0], result.stderr


def test_chat_reset_forgets_history(smollm_path):
    question = f"{QUESTION}\n"
    result = CliRunner().invoke(
        main, ["--verbose", "chat", str(smollm_path), *GREEDY, "-n", "8"],
        input=question + question + "/reset\n" + question + "/exit\n",
    )

    assert result.exit_code == 0, result.output
    assert "(conversation reset)" in result.stderr
    first, second, after_reset = prompt_sizes(result.stderr)
    assert second > first
    assert after_reset == first


def test_chat_eof_exits_cleanly(smollm_path):
    result = chat(smollm_path, "-n", "4", input="Hi\n")

    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("> \n")


def test_chat_unknown_command_continues(smollm_path):
    result = chat(smollm_path, "-n", "20", input=f"/help\n{QUESTION}\n")

    assert result.exit_code == 0, result.output
    assert "unknown command /help" in result.stderr
    assert ANSWER in result.stdout


def test_chat_context_overflow_continues(smollm_path):
    result = CliRunner().invoke(
        main, ["chat", str(smollm_path), *GREEDY[:-2], "--ctx", "64", "-n", "8"],
        input="word " * 80 + "\nHi\n",
    )

    assert result.exit_code == 0, result.output
    assert "context size is 64" in result.stderr
    assert "/reset" in result.stderr
    assert result.stdout.count("> ") == 3


def test_chat_template_file_used(smollm_path, tmp_path):
    template = tmp_path / "strict.jinja"
    template.write_text("{{ raise_exception('custom template in use') }}", encoding="utf-8")

    result = chat(smollm_path, "--chat-template", str(template), input="Hi\n")

    assert result.exit_code == 1
    assert "custom template in use" in result.stderr


def test_chat_template_file_renders_prompt(smollm_path, tmp_path):
    template = tmp_path / "chatml.jinja"
    template.write_text(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "<|im_start|>assistant\n",
        encoding="utf-8",
    )

    result = chat(smollm_path, "--chat-template", str(template), "-n", "20", input=f"{QUESTION}\n")

    assert result.exit_code == 0, result.output
    assert ANSWER in result.stdout


def test_chat_template_syntax_error(smollm_path, tmp_path):
    template = tmp_path / "broken.jinja"
    template.write_text("{% for m in messages %}\n{{ m['content'] }", encoding="utf-8")

    result = chat(smollm_path, "--chat-template", str(template))

    assert result.exit_code == 1
    assert f"invalid chat template ({template}), line 2" in result.stderr


def test_chat_template_file_missing(smollm_path, tmp_path):
    result = chat(smollm_path, "--chat-template", str(tmp_path / "absent.jinja"))

    assert result.exit_code == 1
    assert "absent.jinja" in result.stderr


@pytest.mark.parametrize(
    "option, value",
    [("--temp", "-1"), ("--top-p", "0"), ("--min-p", "2"), ("-n", "0"), ("-n", "-2"), ("--ctx", "0"), ("-k", "q9")],
)
def test_chat_invalid_option_exits_2(option, value):
    result = CliRunner().invoke(main, ["chat", MISSING_MODEL, option, value])

    assert result.exit_code == 2, result.output


# A real terminal


class Terminal:
    """``turbokv chat`` running on a pseudo-terminal, read through its master side."""

    def __init__(self, args):
        self.master, slave = os.openpty()
        env = dict(os.environ, PYTHONPATH=str(Path(turbokv.__file__).resolve().parent.parent), TERM="dumb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "turbokv", "chat", *args],
            stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
        )
        os.close(slave)
        self.output = ""

    def read_until(self, pattern, timeout=120.0):
        """Read until ``pattern`` matches the output after the current end; return the new text."""
        start = len(self.output)
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.output[start:]):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {pattern!r}; output so far:\n{self.output}")
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    data = os.read(self.master, 4096)
                except OSError:  # EIO: the program exited and closed the terminal
                    data = b""
                if not data:
                    raise AssertionError(f"the program exited while waiting for {pattern!r}:\n{self.output}")
                self.output += data.decode("utf-8", errors="replace").replace("\r\n", "\n")
        return self.output[start:]

    def type(self, text):
        os.write(self.master, text.encode())

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        os.close(self.master)


def test_chat_on_real_terminal(smollm_path):
    terminal = Terminal([str(smollm_path), *GREEDY, "-n", "300"])
    try:
        assert "/reset starts a new conversation" in terminal.read_until(r"> ")

        terminal.type(f"{QUESTION}\n")
        assert ANSWER in terminal.read_until(r"\n> ")
        terminal.type(f"{FOLLOW_UP}\n")
        assert FOLLOW_UP_ANSWER in terminal.read_until(r"\n> ")

        # Ctrl-C during a reply stops the reply, not the chat.
        terminal.type("Write a long story about a dragon and a knight.\n")
        terminal.read_until(r"\n\S+ \S+ \S+")
        os.killpg(terminal.process.pid, signal.SIGINT)
        assert "(reply interrupted)" in terminal.read_until(r"\n> ")

        terminal.type("/reset\n")
        assert "(conversation reset)" in terminal.read_until(r"\n> ")
        terminal.type(f"{QUESTION}\n")
        assert ANSWER in terminal.read_until(r"\n> ")

        terminal.type("\x04")  # Ctrl-D at the start of a line: end of input
        assert terminal.process.wait(timeout=30) == 0
    finally:
        terminal.close()
