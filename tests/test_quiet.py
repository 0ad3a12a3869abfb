"""Library noise never reaches a user's terminal; `--verbose` brings it back.

A new transformers release once printed a FutureWarning after every reply. These tests
run the real commands in real processes and allow on stderr only the lines llmcli itself
writes, so the next such warning fails here rather than on a user's screen.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

NOISE = (
    "import warnings, logging\n"
    "warnings.warn('a library deprecation', FutureWarning)\n"
    "warnings.warn('a library deprecation', DeprecationWarning)\n"
    "warnings.warn('a library remark', UserWarning)\n"
    "logging.getLogger('accelerate').warning('a library log line')\n"
)


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_quiet_hides_warnings_and_library_logs():
    proc = run_python("from llmcli import logs\nlogs.configure(verbose=False)\n" + NOISE)
    assert proc.returncode == 0 and proc.stderr == ""


def test_verbose_shows_them():
    proc = run_python("from llmcli import logs\nlogs.configure(verbose=True)\n" + NOISE)
    assert proc.returncode == 0
    for text in ("FutureWarning: a library deprecation", "DeprecationWarning: a library deprecation",
                 "UserWarning: a library remark", "accelerate: a library log line"):
        assert text in proc.stderr


def test_quiet_reaches_transformers_already_imported():
    """In a process that imported transformers first, its own logger is turned down too."""
    proc = run_python(
        "import transformers\nfrom transformers.utils import logging as hf\n"
        "from llmcli import logs\nlogs.configure(verbose=False)\n"
        "hf.get_logger('transformers.x').warning('advice nobody asked for')\n"
    )
    assert proc.returncode == 0 and proc.stderr == ""


def test_verbose_flag_is_read_before_the_command_runs(tiny_model_dir):
    """The CLI configures logging in its root callback: a warning raised inside a command
    is hidden without --verbose and shown with it."""
    code = (
        "import sys, warnings\n"
        "from llmcli import cli, models\n"
        "real = models.load_model\n"
        "def noisy(*a, **k):\n"
        "    warnings.warn('deprecated inside a library', FutureWarning)\n"
        "    return real(*a, **k)\n"
        "models.load_model = noisy\n"
        "sys.argv = ['llmcli', *sys.argv[1:]]\n"
        "cli.main()\n"
    )
    quiet = subprocess.run([sys.executable, "-c", code, "info", "-m", str(tiny_model_dir)], capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    loud = subprocess.run([sys.executable, "-c", code, "--verbose", "info", "-m", str(tiny_model_dir)], capture_output=True, text=True)
    assert loud.returncode == 0 and "deprecated inside a library" in loud.stderr


# ---------------------------------------------------------------- every command, for real

# What llmcli itself writes on stderr for these runs (models cached, stdout a pipe).
CHAT_STATS = re.compile(r"^\d[\d,]* tokens? · [\d.]+ tok/s · first token [\d.]+ s · re-read [\d,]+ prompt tokens · context [\d,]+ / [\d,]+ \(\d+%\)( · .*)?$")
COMPARE_STATS = re.compile(r"^[AB]: \d[\d,]* prompt tokens · .* · peak memory [\d,]+ MiB$")
COMPARE_SETTINGS = re.compile(r"^The same for every model: .*$")

COMMANDS = {
    "info": (["info", "-m", "smollm2"], None, []),
    "generate": (["generate", "-m", "smollm2", "-t", "0", "-n", "8", "What is the capital of France?"], None, []),
    "generate-gemma": (["generate", "-m", "gemma3-270m", "-t", "0", "-n", "8", "The capital of France is"], None, []),
    "chat": (["chat", "-m", "smollm2", "-t", "0", "-n", "8"], "Hi\n", [CHAT_STATS]),
    "probs": (["probs", "-m", "smollm2", "The capital of France is"], None, []),
    "probs-steps": (["probs", "-m", "smollm2", "--steps", "3", "-t", "1", "--seed", "1", "Once upon a time"], None, []),
    "tokenize": (["tokenize", "-m", "smollm2", "-m", "gemma3-270m", "Hello world"], None, []),
    "tokenize-chat": (["tokenize", "--chat", "Hello"], None, []),
    "compare": (["compare", "-t", "0", "-n", "6", "Explain what a token is."], None, [COMPARE_STATS, COMPARE_SETTINGS]),
    "compare-probs": (["compare", "--probs", "The capital of France is"], None, []),
    "models": (["models"], None, []),
    "quantized": (["generate", "-m", "smollm2", "--quantize", "int8", "-t", "0", "-n", "4", "Hi"], None, []),
}


@pytest.mark.integration
@pytest.mark.parametrize("name", COMMANDS)
def test_stderr_holds_only_llmcli_lines(real_cache, name):
    args, stdin, allowed = COMMANDS[name]
    proc = subprocess.run([sys.executable, "-m", "llmcli", *args], input=stdin or "", capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    strangers = [line for line in proc.stderr.splitlines() if line.strip() and not any(p.match(line) for p in allowed)]
    assert strangers == [], proc.stderr
