"""The CLI shell: --help/--version stay light, errors are one line, usage errors exit 2."""

from __future__ import annotations

import json
import subprocess
import sys


def run_module(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmcli", *args], capture_output=True, text=True, env=env)


def test_help_and_version_import_no_torch():
    code = (
        "import sys\n"
        "from llmcli.cli import app\n"
        "for args in (['--help'], ['--version'], ['info', '--help']):\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'numpy') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in proc.stderr, proc.stderr


def test_root_help_imports_no_command_module_and_no_markdown_parser():
    """`llmcli --help` lists the commands from cli.COMMANDS; `info --help` loads info's module only.
    Neither imports the Markdown parser or Rich's tracebacks (nor pygments, which both use)."""
    code = (
        "import sys\n"
        "from llmcli.cli import main\n"
        "sys.argv = ['llmcli', *sys.argv[1:]]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "names = [m for m in sys.modules if m.startswith(('llmcli.commands.', 'markdown_it', 'rich.traceback', 'pygments'))]\n"
        "loaded = sorted(m for m in names if not m.startswith('llmcli.commands._'))  # helpers\n"
        "print('LOADED', loaded, file=sys.stderr)\n"
    )
    root = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True)
    assert "LOADED []" in root.stderr, root.stderr
    assert "detokenize" in root.stdout and "Turn token ids back into text." in root.stdout
    info = subprocess.run([sys.executable, "-c", code, "info", "--help"], capture_output=True, text=True)
    assert "LOADED ['llmcli.commands.info']" in info.stderr, info.stderr


def test_the_help_formatters_stand_ins_build_the_real_objects():
    """While Typer's help formatter is imported, stand-ins answer for rich.markdown and
    rich.traceback; afterwards the real modules import as usual, and Typer's names for them
    build the real objects (Traceback through its from_exception, as Typer calls it)."""
    code = (
        "import sys\n"
        "from llmcli import cli\n"
        "cli._import_typer_help()\n"
        "import typer.rich_utils as ru\n"
        "assert 'rich.markdown' not in sys.modules and 'rich.traceback' not in sys.modules\n"
        "import rich.markdown, rich.traceback\n"
        "assert isinstance(ru.Markdown('*x*'), rich.markdown.Markdown)\n"
        "try:\n"
        "    1 / 0\n"
        "except ZeroDivisionError as e:\n"
        "    assert isinstance(ru.Traceback.from_exception(type(e), e, e.__traceback__), rich.traceback.Traceback)\n"
        "print('OK')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "OK\n", r.stderr


def test_the_help_summaries_are_the_commands_own():
    """cli.COMMANDS names every command the modules register, each with its help's first line."""
    import importlib

    import typer
    import typer.main

    from llmcli.cli import COMMANDS

    registered = {}
    for module in sorted({c.module for c in COMMANDS.values()}):
        app = typer.Typer()
        importlib.import_module(f"llmcli.commands.{module}").register(app)
        for name, command in typer.main.get_group(app).commands.items():
            registered[name] = (module, command.help.strip().splitlines()[0])
    assert registered == {name: (c.module, c.summary) for name, c in COMMANDS.items()}


def test_bare_llmcli_prints_the_help_and_no_error(cli):
    r = cli()
    assert r.exit_code == 2
    assert "Usage: llmcli" in r.stdout and "detokenize" in r.stdout
    assert r.stderr == ""


def test_version(cli):
    from llmcli import __version__

    r = cli("--version")
    assert r.exit_code == 0
    assert r.stdout.strip() == f"llmcli {__version__}"


def test_bad_option_value_is_one_line_usage_error(cli, tiny_model_dir):
    r = cli("info", "-m", tiny_model_dir, "--dtype", "float8")
    assert r.exit_code == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error:") and "float8" in lines[0]
    assert lines[1].startswith("hint:")
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_unknown_model_suggests_alias(cli):
    r = cli("info", "-m", "smollm")
    assert r.exit_code == 1
    assert "unknown model 'smollm'" in r.stderr
    assert "smollm2" in r.stderr
    assert "Traceback" not in r.stderr


def test_errors_in_a_real_process_have_no_traceback(tmp_path):
    proc = run_module("info", "-m", str(tmp_path / "missing.gguf"))
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: no such file or directory")
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_a_process_that_loaded_torch_exits_with_its_output_and_code(tiny_model_dir, tmp_path):
    """Once torch is loaded llmcli skips the interpreter's teardown (os._exit): everything
    written must still arrive, and the exit code must be the command's."""
    proc = run_module("probs", "-m", str(tiny_model_dir), "--json", "--num", "500", "The cat")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["table"]["rows"]) == 500  # all of a large output, flushed
    too_long = "The quick brown fox jumps over the lazy dog. " * 40  # longer than the context window
    proc = run_module("generate", "-m", str(tiny_model_dir), "--raw", too_long)
    assert proc.returncode == 1 and proc.stderr.startswith("error:") and proc.stdout == ""
    head = subprocess.run(
        f"{sys.executable} -m llmcli generate -m {tiny_model_dir} -t 0 -n 200 --raw 'The cat' | head -c 3",
        shell=True, capture_output=True, text=True,
    )
    assert head.returncode == 0 and len(head.stdout) == 3 and head.stderr == ""


def test_verbose_shows_the_traceback(tmp_path):
    proc = run_module("--verbose", "info", "-m", str(tmp_path / "missing.gguf"))
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ModelNotFound" in proc.stderr


def test_models_json_lists_aliases(cli):
    r = cli("models", "--json")
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    assert {a["name"] for a in data["aliases"]} == {"smollm2", "gemma3-270m"}
    assert data["cache"] == []  # the session's isolated cache starts empty


def test_shell_completion_is_offered(cli):
    """Typer's own: the script for a shell, and completing a subcommand's name."""
    import os

    r = cli("--show-completion", "bash")
    assert r.exit_code == 0 and "_llmcli_completion" in r.stdout and "complete" in r.stdout
    env = {"_LLMCLI_COMPLETE": "complete_bash", "COMP_WORDS": "llmcli gen", "COMP_CWORD": "1", "PATH": os.environ["PATH"]}
    proc = subprocess.run([sys.executable, "-c", "from llmcli.cli import main; main()"], capture_output=True, text=True, env={**os.environ, **env})
    assert "generate" in proc.stdout.split()


def test_flags_show_no_type_in_help_and_options_keep_theirs():
    """A flag takes no value, so its help row names no type (Typer 0.29 wrote `<bool>`); an
    option that takes one keeps it (`--system <str>`, `--file <path>`)."""
    import os
    import re

    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    root = run_module("--help", env=env)
    tokenize = run_module("tokenize", "--help", env=env)
    assert root.returncode == 0 and tokenize.returncode == 0, root.stderr + tokenize.stderr
    rows = {m.group(1): m.group(2) for m in re.finditer(r"│ (--[\w-]+)([^│]*)│", root.stdout + tokenize.stdout)}
    assert {"--verbose", "--version", "--help", "--chat", "--parse-special", "--system", "--file"} <= set(rows)
    for flag in ("--verbose", "--version", "--help", "--chat", "--parse-special"):
        assert "<bool>" not in rows[flag], (flag, rows[flag])
    assert "<str>" in rows["--system"] and "<path>" in rows["--file"]
    assert "<bool>" not in root.stdout + tokenize.stdout
