"""Turning llmcli's data into terminal output.

Two consoles: `stdout()` carries data, `stderr()` carries talk (progress, stats, warnings,
errors). Rich already drops colour when its file is not a terminal and honours NO_COLOR;
`plain()` tells a renderer to drop decoration too (box borders, bars).

Text that comes from a model or a tokenizer is never handed to Rich as markup: it goes
through `literal()`, which also makes control characters visible, so a model that emits
`[bold]` or ESC[31m cannot restyle the user's terminal. The bidi overrides and isolates
(U+202A-U+202E, U+2066-U+2069), which reorder what follows them on the line ("Trojan
Source"), are made visible too, and so are lone surrogates (a saved file or
surrogateescape input can hold them; no terminal encoding can write them).
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.text import Text

PIPE_WIDTH = 10_000  # "as wide as it needs": layouts printed into a pipe never wrap a cell

# C0 controls except tab and newline, DEL, and the C1 block. ESC is the dangerous one.
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0)]}
# Bidi overrides and isolates, and surrogates (only ever lone in a str).
_INVISIBLE = [*range(0x202A, 0x202F), *range(0x2066, 0x206A), *range(0xD800, 0xE000)]
_CONTROL.update({c: f"\\u{c:04x}" for c in _INVISIBLE})


# Consoles are made per call, not cached: Rich decides colour support when a Console is
# created, and tests swap sys.stdout between invocations. Into a pipe or a file, a line of
# text is not wrapped at an imagined 80 columns (soft wrap): a reader gets whole lines.
class _Console(Console):
    def on_broken_pipe(self) -> None:
        """The reader left (`llmcli probs … | head`): not an error. Rich exits 1 here."""
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self.file.fileno())
        raise SystemExit(0)


def stdout() -> Console:
    return _unwrapped_when_piped(_Console(highlight=False))


def stderr() -> Console:
    return _unwrapped_when_piped(_Console(stderr=True, highlight=False))


def _unwrapped_when_piped(console: Console) -> Console:
    console.soft_wrap = not console.is_terminal
    return console


def print_block(console: Console, renderable: object) -> None:
    """Print a table (or any layout) as a terminal shows it. Into a pipe or a file it is laid
    out at its natural width, not squeezed into an imagined 80 columns (no data cell
    wraps), and without the spaces Rich pads each line with, so lines end where their
    text does. Only for layouts: model text is printed exactly, trailing spaces and all."""
    if console.is_terminal:
        console.print(renderable)
        return
    width = console.width
    console.width = PIPE_WIDTH
    try:
        with console.capture() as captured:
            console.print(renderable)
    finally:
        console.width = width
    console.out("".join(line.rstrip(" ") + "\n" for line in captured.get().splitlines()), end="", highlight=False)


def plain() -> bool:
    """True when stdout is not a terminal (a pipe or a file): print bare text."""
    return not stdout().is_terminal


def escape_controls(text: str) -> str:
    """Control characters as visible `\\xNN` escapes; tabs and newlines kept."""
    return text.translate(_CONTROL)


def literal(text: str, style: str = "") -> Text:
    """Model or tokenizer text as a Rich Text: never parsed as markup, controls escaped."""
    return Text(escape_controls(text), style=style)


def visible_whitespace(text: str) -> str:
    """Spaces as `·`, newlines as `↵`, tabs as `→`, and other controls escaped."""
    return escape_controls(text).replace(" ", "·").replace("\n", "↵").replace("\t", "→")


def error(message: str, hint: str | None = None, console: Console | None = None) -> None:
    """One line of error (and one of hint), on stderr unless another console is given (the chat's)."""
    console = console or stderr()
    # soft_wrap: the message stays one line whatever the terminal width.
    console.print(Text.assemble(("error: ", "bold red"), escape_controls(message)), soft_wrap=True)
    if hint:
        console.print(Text.assemble(("hint: ", "yellow"), escape_controls(hint)), soft_wrap=True)


def warn(message: str) -> None:
    stderr().print(Text.assemble(("warning: ", "yellow"), escape_controls(message)), soft_wrap=True)


def print_json(data: object) -> None:
    """One JSON document on stdout, token text readable (ensure_ascii off) but with DEL,
    the C1 controls, bidi overrides and lone surrogates escaped too: `json.dumps` escapes
    only U+0000-U+001F, and U+009B is a one-character CSI to some terminals. (Escaped,
    they are the same JSON: a reader gets the same strings back.)"""
    import json

    text = json.dumps(data, ensure_ascii=False, indent=2)
    sys.stdout.write(text.translate(_C1_ESCAPES) + "\n")
    sys.stdout.flush()


_C1_ESCAPES = {c: f"\\u{c:04x}" for c in [0x7F, *range(0x80, 0xA0), *_INVISIBLE]}


def sampling_words(settings) -> list[str]:
    """The sampling in effect, in words: the temperature and whichever filters are on."""
    if settings.temperature == 0:
        parts = ["greedy (temperature 0)"]
    else:
        parts = [f"temperature {settings.temperature:g}"]
        if settings.top_k:
            parts.append(f"top-k {settings.top_k}")
        if settings.top_p is not None and settings.top_p < 1:
            parts.append(f"top-p {settings.top_p:g}")
        if settings.min_p:
            parts.append(f"min-p {settings.min_p:g}")
    if settings.repetition_penalty != 1:
        parts.append(f"repetition penalty {settings.repetition_penalty:g}")
    return parts
