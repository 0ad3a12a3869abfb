"""Failure matrix, signals and pipes: Ctrl-C and a reader that leaves, at each stage of each command.

Real processes (tests/failures/processes.py), real signals. Each child is paused at a stage —
loading the model, converting a GGUF file, the first forward pass, writing its output — and
the test sends SIGINT there (then lets it go on, since a Ctrl-C that lands while the chat draws
is held until the engine runs again). Expected: exit 130, no traceback, no error line, no file
left half-written. A reader that leaves (`| head`) before the command writes, or in the middle
of a streamed reply: exit 0, quietly, whatever stage the command was at.

The commands that never import torch (tokenize and detokenize on a cached tokenizer,
`models`, `--help`) end through the interpreter's own shutdown, which a forked child does not
have: their broken-pipe rows start a cold interpreter.
"""

from __future__ import annotations

import signal

import pytest

from tests.failures.matrix import assert_cache_clean, assert_no_traceback, tree
from tests.failures.processes import COMPUTING, CONVERTING, EMITTING, HF_COMPUTING, HF_LOADING, JSON_OUT, LOADING, PRINTING, cold_run_reader_gone


def nth(module: str, path: str, n: int) -> tuple[str, str, int, str]:
    return (module, path, n, "before")


# command -> (argv, stdin, {stage: pause point}). "writing" pauses after some output is out.
COMMANDS = {
    "generate": (
        ["generate", "hi", "-n", "8", "-t", "0", "-m", "{tiny}"],
        None,
        {"loading": LOADING, "computing": COMPUTING, "writing": nth("llmcli.render.generate", "LiveText.feed", 4)},
    ),
    "generate-json": (["generate", "hi", "-n", "4", "-t", "0", "--json", "-m", "{tiny}"], None, {"writing": JSON_OUT}),
    "chat": (
        ["chat", "-n", "8", "-t", "0", "-m", "{tiny}"],
        b"hi\nmore\n",
        {"loading": LOADING, "computing": COMPUTING, "writing": nth("llmcli.chat.stream", "PlainStream.feed", 4)},
    ),
    "probs": (["probs", "hi", "-m", "{tiny}"], None, {"loading": LOADING, "computing": COMPUTING, "writing": PRINTING}),
    "probs-steps": (
        ["probs", "hi", "--steps", "5", "-m", "{tiny}"],
        None,
        {"computing": COMPUTING, "writing": nth("llmcli.render.steps", "StepsView.add", 3)},
    ),
    "score": (["score", "hi there the cat", "-m", "{tiny}"], None, {"loading": HF_LOADING, "computing": HF_COMPUTING, "writing": nth("llmcli.render.views", "emit", 2)}),
    "score-svg": (["score", "hi there the cat", "--svg", "{tmp}/out.svg", "-m", "{tiny}"], None, {"writing": nth("llmcli.render.views", "emit", 2)}),
    "lens": (["lens", "hi there", "-m", "{tiny}"], None, {"loading": HF_LOADING, "computing": HF_COMPUTING, "writing": EMITTING}),
    "attention": (["attention", "hi there", "-m", "{tiny}"], None, {"loading": HF_LOADING, "computing": HF_COMPUTING, "writing": EMITTING}),
    "neighbors": (["neighbors", "the", "-m", "{tiny}"], None, {"loading": HF_LOADING, "writing": EMITTING}),
    "compare": (
        ["compare", "hi", "-n", "8", "-t", "0", "-m", "{tiny}", "-m", "{base}"],
        None,
        {"loading": LOADING, "computing": COMPUTING, "writing": nth("llmcli.render.compare_live", "Sections.feed", 4)},
    ),
    "compare-probs": (["compare", "hi", "--probs", "-m", "{tiny}", "-m", "{base}"], None, {"computing": COMPUTING, "writing": PRINTING}),
    "info": (["info", "-m", "{tiny}"], None, {"loading": LOADING, "writing": PRINTING}),
    "tokenize": (["tokenize", "hi", "-m", "{tiny}"], None, {"loading": HF_LOADING, "writing": nth("llmcli.render.tokens", "render_spans", 1)}),
    # A GGUF file's first use: interrupted while converting.
    "generate-gguf": (["generate", "hi", "-n", "4", "-m", "{gguf}"], None, {"converting": CONVERTING}),
    "tokenize-gguf": (["tokenize", "hi", "-m", "{gguf}"], None, {"converting": nth("llmcli.models.cache", "save_tokenizer_entry", 1)}),
    "compare-gguf": (["compare", "hi", "-n", "4", "-m", "{tiny}", "-m", "{gguf}"], None, {"converting": CONVERTING}),
}

SIGINT_ROWS = [(command, stage) for command, (_, _, stages) in COMMANDS.items() for stage in stages]
STREAMING = ["generate", "chat", "probs-steps", "compare"]  # commands whose output comes out bit by bit


def _argv(command, places):
    args, stdin, _ = COMMANDS[command]
    return [a.format(**{k: str(v) for k, v in places.items()}) for a in args], stdin


def _quiet(stderr: str) -> None:
    """What a Ctrl-C may leave on stderr: the chat's and compare's 'interrupted' stats lines, the
    sampling note compare ends with. Never an error, a warning or a traceback."""
    assert_no_traceback(stderr)
    for line in filter(str.strip, stderr.splitlines()):
        assert not line.startswith(("error:", "warning:", "Exception", "hint:")), stderr
        assert "interrupted" in line or line.startswith("The same for every model"), stderr


@pytest.mark.parametrize("command, stage", SIGINT_ROWS, ids=[f"{c}/{s}" for c, s in SIGINT_ROWS])
def test_sigint_at_each_stage(zygote, child_env, cache_dir, places, tmp_path, command, stage):
    argv, stdin = _argv(command, places)
    before = tree(tmp_path)
    with zygote.spawn(argv, env=child_env, stdin=stdin, pause=COMMANDS[command][2][stage], cwd=tmp_path) as child:
        child.wait_ready()
        child.signal(signal.SIGINT)
        child.resume()  # a Ctrl-C held while drawing is raised when the engine next runs
        r = child.finish()
    assert r.code == 130, f"exit {r.code}; stderr:\n{r.err}"
    _quiet(r.err)
    if command == "score-svg":
        assert not (tmp_path / "out.svg").exists()  # interrupted before the export: no file at all
    if stage == "converting" and command == "generate-gguf":  # the next run converts cleanly
        again = zygote.run(argv, env=child_env, cwd=tmp_path)
        assert again.code == 0 and "Converted" in again.err, again.err
        assert_cache_clean(cache_dir, entries=1)
        return
    after = {k: v for k, v in tree(tmp_path).items() if not k.startswith(("cache", "home"))}
    assert after == {k: v for k, v in before.items() if not k.startswith(("cache", "home"))}  # nothing else written
    assert_cache_clean(cache_dir, entries=0)


READER_GONE = [c for c in COMMANDS if c not in ("tokenize-gguf", "compare-gguf", "score-svg")]  # the same output paths as others


@pytest.mark.parametrize("command", READER_GONE)
def test_the_reader_leaves_before_any_output(zygote, child_env, cache_dir, places, tmp_path, command):
    argv, stdin = _argv(command, places)
    with zygote.spawn(argv, env=child_env, stdin=stdin, cwd=tmp_path) as child:
        child.close_stdout()
        r = child.finish()
    assert r.code == 0, f"exit {r.code}; stderr:\n{r.err}"
    assert_no_traceback(r.err)
    assert "error:" not in r.err and "Exception ignored" not in r.err and "Broken pipe" not in r.err, r.err
    assert_cache_clean(cache_dir)


@pytest.mark.parametrize("command", STREAMING)
def test_the_reader_leaves_in_the_middle_of_the_output(zygote, child_env, cache_dir, places, tmp_path, command):
    """`| head -c5`: the first bytes are read, then the pipe closes while the command writes."""
    argv, stdin = _argv(command, places)
    with zygote.spawn(argv, env=child_env, stdin=stdin, pause=COMMANDS[command][2]["writing"], cwd=tmp_path) as child:
        child.wait_ready()
        assert child.read_stdout(1)  # some of it is out
        child.close_stdout()
        child.resume()
        r = child.finish()
    assert r.code == 0, f"exit {r.code}; stderr:\n{r.err}"
    assert_no_traceback(r.err)
    assert "error:" not in r.err and "Broken pipe" not in r.err and "BrokenPipeError" not in r.err, r.err


def test_the_reader_leaves_during_an_export(zygote, child_env, places, tmp_path):
    """With --svg the view is printed, then exported; the reader leaving first ends it with
    exit 0 and no half-written file."""
    argv, _ = _argv("score-svg", places)
    with zygote.spawn(argv, env=child_env, cwd=tmp_path) as child:
        child.close_stdout()
        r = child.finish()
    assert r.code == 0, r.err
    assert_no_traceback(r.err)
    svg = tmp_path / "out.svg"
    assert not svg.exists() or svg.read_text().rstrip().endswith("</svg>")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.svg")] == []


def test_the_disk_fills_up_during_an_export(zygote, child_env, places, tmp_path):
    """An --svg export past RLIMIT_FSIZE: one line, and the file that was there survives."""
    argv, _ = _argv("score-svg", places)
    svg = tmp_path / "out.svg"
    svg.write_text("<svg>an older picture</svg>\n")
    r = zygote.run(argv, env=child_env, cwd=tmp_path, fsize_limit=2000)
    assert_no_traceback(r.err)
    assert r.code == 1
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert lines[0].startswith(f"error: cannot write {svg}: File too large") and lines[1].startswith("hint: free some disk space"), r.err
    assert svg.read_text() == "<svg>an older picture</svg>\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# ---------------------------------------------------------------- commands that never load torch: a cold interpreter


@pytest.fixture
def cached_tokenizer(cli, tiny_gguf):
    """The GGUF's tokenizer saved in the cache, so tokenize and detokenize read it without transformers."""
    assert cli("tokenize", "hi", "-m", tiny_gguf).exit_code == 0
    return tiny_gguf


COLD = {
    "tokenize": ["tokenize", "hello there, the cat sat", "-m", "{gguf}"],
    "tokenize-json": ["tokenize", "hello there", "--json", "-m", "{gguf}"],
    "detokenize": ["detokenize", "1", "2", "3", "-m", "{gguf}"],
    "models": ["models"],
    "help": ["--help"],
    "generate-help": ["generate", "--help"],
}


@pytest.mark.parametrize("command", list(COLD))
def test_the_reader_leaves_a_command_without_torch(child_env, cached_tokenizer, places, tmp_path, command):
    argv = [a.format(**{k: str(v) for k, v in places.items()}) for a in COLD[command]]
    import os

    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("LLMCLI_", "PYTEST_"))}, **child_env, "HF_HUB_OFFLINE": "1"}
    r = cold_run_reader_gone(argv, env=env, cwd=tmp_path)
    assert r.err == "", r.err  # not even Python's "Exception ignored ... BrokenPipeError" at shutdown
    # Known, not changed: Typer prints --help through a Rich console of its own, and Rich's
    # Console.on_broken_pipe exits 1 (quietly) when the reader has left.
    assert r.code == (1 if command.endswith("help") else 0), f"exit {r.code}"
