"""The `llmcli` command: the root Typer app, `--version`, and the one error boundary.

This module must stay light: `llmcli --help` and `--version` never import torch or
transformers, nor any command's module (tests check it). A command's module is imported
when that command is run; it declares its options at import time and imports heavy
libraries inside its body.

Errors meet the user here, once: a `LlmcliError` becomes `error: …` and `hint: …` on
stderr and exit 1; a usage error (bad flag value) becomes one line and exit 2; Ctrl-C
exits 130 quietly. With `--verbose` the traceback is shown too. Any other exception is a
bug and keeps its traceback.
"""

from __future__ import annotations

import sys
import traceback
from typing import Annotated, Any, NamedTuple

import typer
import typer.main
from typer._click.exceptions import NoArgsIsHelpError
from typer.core import TyperCommand, TyperGroup

from llmcli import __version__, render
from llmcli.errors import LlmcliError
from llmcli import state


RICH_MARKUP_MODE = "rich"


class Command(NamedTuple):
    module: str  # llmcli.commands.<module>, whose register(app) adds the command
    summary: str  # the first line of the command's help (tests/test_cli.py checks they agree)


# In the order `--help` lists them. A command's module is imported, and its options built, only
# when that command runs (or shows its own help): listing them all here keeps `llmcli --help`
# and every single command from paying for the other twelve.
COMMANDS = {
    "chat": Command("chat", "Chat with a model: streamed Markdown replies, slash commands (/help), stats after each reply."),
    "generate": Command("generate", "Generate text from a prompt and stream it to stdout."),
    "info": Command("info", "Architecture, parameter counts by part, memory per dtype, special tokens, origin."),
    "tokenize": Command("tokenize", "Show how a model's tokenizer cuts text into tokens: coloured spans, ids, counts."),
    "detokenize": Command("tokenize", "Turn token ids back into text."),
    "probs": Command("probs", "The next-token probability table; temperature sweeps, sampler cuts, generation step by step."),
    "compare": Command("compare", "The same prompt through a base and an instruct model (or any models), side by side."),
    "score": Command("score", "Colour each token of a text by how surprised the model was; NLL, perplexity, bits per byte."),
    "lens": Command("lens", "What each layer would predict: every block's output through the final norm and the head."),
    "attention": Command("attention", "A layer's attention pattern as a heatmap: query tokens down the side, keys across."),
    "neighbors": Command("neighbors", "Nearest tokens to a token in the input embeddings (cosine), analogies, and the vector itself."),
    "serve": Command("serve", "Serve models over an OpenAI-compatible API: chat and completions with log-probabilities, tokenize."),
    "models": Command("catalog", "Built-in models, the conversion cache, and the Hugging Face cache."),
}


class BoundaryGroup(TyperGroup):
    """Typer's group with llmcli's error boundary around every command, and its commands
    loaded on first use (click's lazy-group pattern)."""

    _listing = False  # while the root help is being formatted: summaries, not commands

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: typer.Context, name: str):
        if name not in self.commands and name in COMMANDS:
            if self._listing:
                return TyperCommand(name, help=COMMANDS[name].summary)
            self._load(COMMANDS[name].module)
        return self.commands.get(name)

    def _load(self, module: str) -> None:
        import importlib

        commands = typer.Typer(rich_markup_mode=RICH_MARKUP_MODE)
        importlib.import_module(f"llmcli.commands.{module}").register(commands)
        for name, command in typer.main.get_group(commands).commands.items():
            self.add_command(command, name)

    def format_help(self, ctx: typer.Context, formatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LlmcliError as e:
            if state.verbose:
                traceback.print_exc()
            render.error(e.message, e.hint)
            raise typer.Exit(1) from None
        except BrokenPipeError:
            # `llmcli generate … | head -c1`: the reader left, which is not an error.
            _silence_stdout()
            raise typer.Exit(0) from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        state.verbose = False
        words = list(sys.argv[1:] if args is None else args)
        problem = _not_utf8(words)
        if problem is not None:
            render.error(*problem)
            if not standalone_mode:
                return 1
            sys.exit(1)
        if not words or set(words) & set(self.context_settings.get("help_option_names", ["--help"])):
            _import_typer_help()
            _flags_without_a_type()
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError:
            code = 2  # bare `llmcli`: the help is already printed, as click exits after it
        except typer.TyperException as e:
            # Typer's own click errors: a usage error (exit 2) gets the help hint.
            message = e.format_message() if hasattr(e, "format_message") else str(e)
            code = getattr(e, "exit_code", 1)
            hint = f"see '{self._help_path(e, words)} --help'" if code == 2 else None
            render.error(message, hint)
        except typer.Abort:
            code = 130
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)

    def _help_path(self, error: Exception, words: list[str]) -> str:
        """The command whose --help answers a usage error: the error's own, else the
        subcommand named on the command line (click reports some errors, such as an option
        missing its value, before it knows the subcommand)."""
        ctx = getattr(error, "ctx", None)
        if ctx is not None and ctx.parent is not None:
            return ctx.command_path
        command = next((w for w in words if not w.startswith("-")), None)
        root = ctx.command_path if ctx is not None else "llmcli"
        return f"{root} {command}" if command in COMMANDS else root


def _not_utf8(words) -> tuple[str, str] | None:
    """(error, hint) for the first command-line word that is not UTF-8, else None.

    Python hands such a word over with lone surrogates (surrogateescape), which no tokenizer
    takes. A word naming an existing file or directory is left alone: a path may be any bytes.
    """
    import os

    for number, word in enumerate(words, 1):
        value = word.split("=", 1)[1] if word.startswith("--") and "=" in word else word
        try:
            value.encode("utf-8")
            continue
        except UnicodeEncodeError:
            if os.path.exists(value):
                continue
        raw = value.encode("utf-8", "surrogateescape")
        try:
            raw.decode("utf-8")
            offset = 0
        except UnicodeDecodeError as e:
            offset = e.start
        return (
            f"argument {number} is not UTF-8 text (byte 0x{raw[offset]:02X} at offset {offset})",
            "convert it first, e.g. `iconv -f latin1 -t utf-8`, or pass the text with --file",
        )
    return None


def _deferred(module: str, name: str) -> type:
    """A class standing in for `module.name` in Typer's help formatter (a class: Typer writes
    `Markdown | Text` in annotations). Calling it, or an attribute such as
    `Traceback.from_exception`, imports the real module and goes to the real class."""
    import importlib

    def real() -> type:
        return getattr(importlib.import_module(module), name)

    class Forwarding(type):
        def __getattr__(cls, attribute: str):
            return getattr(real(), attribute)

    class Deferred(metaclass=Forwarding):
        def __new__(cls, *args, **kwargs):
            return real()(*args, **kwargs)

    return Deferred


# What typer.rich_utils imports at its top and llmcli's help never uses: rich.markdown (with
# markdown-it and pygments, ~22 ms) for rich_markup_mode="markdown", and rich.traceback (~5 ms
# more) for Typer's pretty exceptions, which llmcli turns off.
_UNUSED_BY_HELP = {"rich.markdown": "Markdown", "rich.traceback": "Traceback"}


def _import_typer_help() -> None:
    """Import Typer's help formatter without the modules in `_UNUSED_BY_HELP`.

    While typer.rich_utils is imported, a stand-in module answers for each; they are removed
    again at once, so anything else (the chat's replies) imports the real modules. `llmcli
    --help` takes ~86 ms instead of ~102 (`import typer, rich` alone: ~50; benchmarks/README.md).
    """
    import types

    if "typer.rich_utils" in sys.modules or any(module in sys.modules for module in _UNUSED_BY_HELP):
        return
    for module, name in _UNUSED_BY_HELP.items():
        stand_in = types.ModuleType(module)
        setattr(stand_in, name, _deferred(module, name))
        sys.modules[module] = stand_in
    try:
        import typer.rich_utils  # noqa: F401
    finally:
        for module in _UNUSED_BY_HELP:
            del sys.modules[module]


def _flags_without_a_type() -> None:
    """Typer 0.29's help writes `<bool>` beside every flag (`--verbose  -v  <bool>`), as if it
    took a value; `--verbose true` is then a usage error. A flag takes no value: its type column
    stays empty, as in click's and argparse's help. Every other option keeps its `<str>`/choices."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "_llmcli", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._llmcli = True
    TyperOption.display_type_rich = display_type_rich


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at devnull so the interpreter's final flush is quiet."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (tests)
        pass


app = typer.Typer(
    cls=BoundaryGroup,
    name="llmcli",
    help="Run a language model on your own machine, talk to it, and look inside it.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion, as Typer apps offer
    pretty_exceptions_enable=False,
    rich_markup_mode=RICH_MARKUP_MODE,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"llmcli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show library warnings, logs, progress bars and tracebacks.")
    ] = False,
) -> None:
    from llmcli import logs

    state.verbose = verbose
    logs.configure(verbose)  # before any command imports torch or transformers


def main() -> None:
    try:
        app()
        code = 0
    except SystemExit as e:
        code = e.code
    _exit(code)


def _exit(code) -> None:
    """Exit with `code`, skipping the interpreter's teardown once torch is loaded.

    Tearing down torch and transformers' thousands of modules and objects takes about a
    second after the command is done (measured on `probs`: 1.0-1.3 s of a 5.5 s run).
    The atexit handlers still run (logging, temporary files); then the process ends.
    """
    if "torch" not in sys.modules:
        sys.exit(code)
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    import atexit
    import os

    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):  # the reader left (`| head`), or stdout is closed
        pass
    atexit._run_exitfuncs()
    try:
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        pass
    os._exit(code or 0)
