"""Pieces the inspection views (`score`, `lens`, `attention`, `neighbors`) share.

- `emit` prints a renderable; on a non-terminal it first trims each line's trailing spaces,
  which Rich pads table cells with, so piped output is clean plain text.
- `recording` / `save_exports`: `--svg FILE` / `--html FILE` are Rich's own export of exactly
  what was printed on the console (`Console(record=True)`).
- One colour ramp (viridis: dark to bright, distinct in 256 colours and to most colour-blind
  readers) for heatmaps and shaded grids, and an ASCII ramp for output without colour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from rich import box
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from llmcli import render
from llmcli.errors import LlmcliError

RAMP = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"]
ASCII_RAMP = ".:-=+*#%@"  # one per RAMP level; a space is left for what cannot be seen at all
MODEL_NAME_WIDTH = 24


def coloured(console: Console) -> bool:
    """True when colours reach the reader: a terminal, with colour, without NO_COLOR."""
    return console.is_terminal and console.color_system is not None and not console.no_color


def plain(console: Console) -> bool:
    return not console.is_terminal


def level(value: float, gamma: float = 1.0) -> int:
    """0..len(RAMP)-1 for a value in [0, 1]; gamma < 1 spreads out the small values."""
    value = min(1.0, max(0.0, value)) ** gamma
    return min(len(RAMP) - 1, int(value * len(RAMP)))


def level_floor(index: int, gamma: float = 1.0) -> float:
    """The smallest value shown at `index` (the inverse of `level`)."""
    return (index / len(RAMP)) ** (1 / gamma)


def shade(index: int) -> str:
    """A background from the ramp, with a foreground that stays readable on it."""
    return f"{'#000000' if index >= 5 else '#ffffff'} on {RAMP[index]}"


def table(console: Console, **kwargs) -> Table:
    """probs' table look: a rule under the header on a terminal, bare aligned columns otherwise."""
    if plain(console):
        return Table(box=None, show_edge=False, pad_edge=False, padding=(0, 1, 0, 1), **kwargs)
    return Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), **kwargs)


def model_name(label: str) -> str:
    """A model's label for headings: an alias as is, a path by its last part."""
    name = Path(label).name if "/" in label.strip("/") or label.startswith("/") else label
    return name if len(name) <= MODEL_NAME_WIDTH else name[: MODEL_NAME_WIDTH - 1] + "…"


class _Trimmed:
    """A renderable with each line's trailing plain spaces removed (for non-terminals)."""

    def __init__(self, renderable: RenderableType):
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in console.render_lines(self.renderable, options, pad=False, new_lines=False):
            yield from _rstrip(line)
            yield Segment.line()


def _rstrip(line: list[Segment]) -> list[Segment]:
    segments = list(line)
    while segments and not segments[-1].control and segments[-1].text.rstrip(" ") == "":
        segments.pop()
    if segments and not segments[-1].control:
        last = segments[-1]
        segments[-1] = Segment(last.text.rstrip(" "), last.style)
    return segments


def emit(console: Console, *renderables: RenderableType) -> None:
    """Print each renderable (a blank line for None); trailing spaces trimmed when not a terminal."""
    for renderable in renderables:
        if renderable is None:
            console.print()
        elif plain(console):
            console.print(_Trimmed(renderable), soft_wrap=False)
        else:
            console.print(renderable)


def legend(items: Iterable[tuple[str, str]], console: Console) -> Text:
    """`██ label  ██ label` on a terminal; the labels alone otherwise."""
    out = Text()
    for style, label in items:
        if out:
            out.append("  ")
        if coloured(console):
            out.append("  ", style=style)
            out.append(" ")
        out.append(label)
    return out


def scale_bar(low: str, high: str, note: str = "") -> Text:
    """`low ██████████ high (note)`: the ramp from its first level to its last."""
    out = Text(f"{low} ")
    for index in range(len(RAMP)):
        out.append("  ", style=shade(index))
    out.append(f" {high}")
    if note:
        out.append(f"  ({note})", style="dim")
    return out


# ---------------------------------------------------------------------------- --svg / --html


def check_exports(json: bool, svg: Path | None, html: Path | None) -> None:
    """--svg and --html export the view: --json prints none."""
    if json and (svg is not None or html is not None):
        raise LlmcliError("--svg and --html export the view; --json prints no view", "drop --json, or the export")


def recording(record: bool) -> Console:
    """The stdout console; recording when an export was asked for (a reader that leaves
    the pipe early is no error for either)."""
    return render._Console(highlight=False, record=True) if record else render.stdout()


def save_exports(console: Console, svg: Path | None, html: Path | None, title: str) -> None:
    """Write what `console` printed as SVG and/or HTML (Rich's export), and say so on stderr.
    Each file is written beside its target and renamed over it: a full disk or a Ctrl-C
    never leaves half a file (nor destroys the one there before)."""
    import errno
    import os
    import tempfile

    for path, kind in ((svg, "svg"), (html, "html")):
        if path is None:
            continue
        document = console.export_svg(title=title, clear=False) if kind == "svg" else console.export_html(clear=False)
        target = Path(path).expanduser()
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(document)
            os.replace(tmp, target)
        except OSError as e:
            full = e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
            raise LlmcliError(
                f"cannot write {path}: {e.strerror or e}",
                "free some disk space, or write it somewhere else" if full else "check that the directory exists and is writable",
            ) from None
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
        render.stderr().print(render.literal(f"wrote {path}", style="dim"), soft_wrap=True)
