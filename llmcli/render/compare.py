"""`compare` on the terminal: generations in columns, next-token tables side by side, agreement.

Layout choices (the live columns of the generations are `render.compare_live`'s):
- The next-token tables share one rank column, then token and probability (and a bar,
  when there is room) for each side. A token whose text is also in another side's table is
  green; the agreement figures follow, one block per pair of sides.
- Model and tokenizer text is literal everywhere (`render.literal`, `render.pieces.token_text`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from rich import box
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from llmcli import render
from llmcli.inspect.comparison import Agreement
from llmcli.inspect.next_token import NextTokenTable
from llmcli.render.pieces import bar, percent, quoted, token_text

SIDE_COLOURS = ("cyan", "yellow", "green", "blue", "red", "magenta")
MODE_TEXT = {"raw": "raw text", "chat": "chat template", "template": "plain-text chat template"}
SHARED_STYLE = "bold green"
SPECIAL_STYLE = "magenta"


@dataclass(frozen=True)
class Header:
    """Who a column is: its letter, model, role and the prompt that model receives."""

    letter: str
    model: str
    role: str  # "base" | "instruct"
    mode: str  # "raw" | "chat" | "template"
    prompt_tokens: int
    prompt: tuple[tuple[str, bool], ...]  # (text, special) segments

    def prompt_parts(self) -> list[str]:
        n = self.prompt_tokens
        return [MODE_TEXT.get(self.mode, self.mode), f"{n:,} prompt token{'s' if n != 1 else ''}"]

    @property
    def description(self) -> str:
        return " · ".join([self.role, *self.prompt_parts()])


def badge(letter: str, plain: bool = False) -> Text:
    if plain:
        return Text(letter)
    colour = SIDE_COLOURS[(ord(letter) - ord("A")) % len(SIDE_COLOURS)]
    return Text(f" {letter} ", style=f"bold black on {colour}")


def prompt_text(segments: Sequence[tuple[str, bool]]) -> Text:
    """The rendered prompt: text dim, special tokens in magenta, each newline marked `↵` and
    spaces at the end of a line `·` (small models are sensitive to stray whitespace)."""
    out = Text()
    for text, special in segments:
        escaped = render.escape_controls(text)
        if special:
            out.append(escaped, style=SPECIAL_STYLE)
            continue
        for i, line in enumerate(escaped.split("\n")):
            if i:
                out.append("↵", style="cyan")
                out.append("\n")
            body = line.rstrip(" ")
            out.append(body, style="dim")
            out.append("·" * (len(line) - len(body)), style="cyan")
    if out.plain.endswith("\n"):
        out.right_crop(1)  # the reply starts on that line; no empty line after the last ↵
    return out


def stats_text(stats: Any, width: int = 80) -> Text:
    """A column's stats: tokens and why it stopped, speed, time; packed into lines of `width`."""
    from llmcli.render.stats import stats_parts

    return Text(pack(stats_parts(stats), width), style="dim")


def pack_texts(items: Sequence[Text], width: int, separator: str = "  ") -> Text:
    """Like `pack`, for styled items: an item is never split across lines."""
    out = Text()
    used = 0
    for item in items:
        if used and used + len(separator) + item.cell_len > width:
            out.append("\n")
            used = 0
        elif used:
            out.append(separator)
            used += len(separator)
        out.append_text(item)
        used += item.cell_len
    return out


def pack(parts: Sequence[str], width: int, separator: str = " · ") -> str:
    """Parts joined by `separator`, a new line wherever the next part would not fit (never a
    line that starts with the separator)."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + len(separator) + len(part) <= width:
            lines[-1] += separator + part
        else:
            lines.append(part)
    return "\n".join(lines)


def settings_line(settings: Any) -> Text:
    """What every model sampled with, for the footer."""
    parts = render.sampling_words(settings)
    if settings.seed is not None and settings.temperature > 0:
        parts.append(f"seed {settings.seed}")
    parts.append(f"up to {settings.max_new_tokens:,} new tokens")
    return Text("The same for every model: " + " · ".join(parts), style="dim")


# ---------------------------------------------------------------- next-token tables


@dataclass(frozen=True)
class ProbsSide:
    header: Header
    table: NextTokenTable


@contextlib.contextmanager
def loading_status(*, quiet: bool = False) -> Iterator[Callable[[str], None]]:
    """A transient spinner on stderr (a terminal only) whose message the caller updates."""
    console = render.stderr()
    if quiet or not console.is_terminal:
        yield lambda message: None
        return
    with console.status("") as status:
        yield lambda message: status.update(Text(message, style="dim"))


def render_probs(sides: Sequence[ProbsSide], agreements: Sequence[Agreement], *, show_prompt: bool = False, console: Console | None = None) -> None:
    out = console or render.stdout()
    plain = render.plain() if console is None else not out.is_terminal
    parts: list[RenderableType] = [Text("Next token after the prompt: each model's own distribution (T=1)", style="bold")]
    for side in sides:
        h = side.header
        parts.append(Text.assemble(badge(h.letter, plain), " ", render.literal(h.model, style="bold"), (f" · {h.description}", "dim")))
        if show_prompt:
            parts.append(Padding(prompt_text(h.prompt), (0, 0, 0, 4), expand=False))
    parts += [Text(), probs_table(sides, out.width, plain)]
    models = {s.header.letter: s.header.model for s in sides}
    for a in agreements:
        parts += [Text(), agreement_text(a, models, plain, out.width)]
    render.print_block(out, Group(*parts))


def probs_table(sides: Sequence[ProbsSide], width: int, plain: bool) -> Table:
    n = len(sides)
    prob_width = 7  # "100.00%"
    token_width = max(6, min(16, (width - 4 - n * (prob_width + 2)) // n))
    bar_width = 0 if plain else min(20, (width - 4 - n * (token_width + prob_width + 3)) // n)
    if bar_width < 5:
        bar_width = 0
    if plain:
        t = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 1, 0, 1))
    else:
        t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    t.add_column("#", justify="right")
    for side in sides:
        colour = SIDE_COLOURS[(ord(side.header.letter) - ord("A")) % len(SIDE_COLOURS)]
        t.add_column(Text.assemble(badge(side.header.letter, plain), " token"), max_width=token_width, no_wrap=True, overflow="ellipsis")
        t.add_column("prob", justify="right", no_wrap=True)
        if bar_width:
            t.add_column("", width=bar_width, no_wrap=True, style=colour)
    texts = [{row.text for row in side.table.rows} for side in sides]
    for r in range(max(len(s.table.rows) for s in sides)):
        cells: list[Any] = [str(r + 1)]
        for i, side in enumerate(sides):
            if r >= len(side.table.rows):
                cells += ["", ""] + ([""] if bar_width else [])
                continue
            row = side.table.rows[r]
            token = token_text(row.text, row.special)
            if not plain and any(row.text in other for j, other in enumerate(texts) if j != i):
                token.stylize(SHARED_STYLE)
            cells += [token, percent(row.prob)] + ([bar(row.prob, bar_width)] if bar_width else [])
        t.add_row(*cells)
    t.add_section()
    if plain:
        t.add_row()
    for label, value in (("entropy, bits", lambda tb: f"{tb.entropy_bits:.2f}"), ("rows hold", lambda tb: percent(tb.columns[0].coverage))):
        cells = [""]
        for side in sides:
            cells += [Text(label, style="dim"), value(side.table)] + ([""] if bar_width else [])
        t.add_row(*cells)
    return t


def agreement_text(a: Agreement, models: dict[str, str], plain: bool = False, width: int = 80) -> RenderableType:
    """One block per pair: top-1, the top-k overlap, KL; long lines wrap under their value."""
    first, second = a.sides
    title = Text.assemble(
        badge(first, plain), " ", render.literal(models.get(first, first), style="bold"), ("  vs  ", "dim"),
        badge(second, plain), " ", render.literal(models.get(second, second), style="bold"),
    )
    top1 = Text.assemble(quoted(a.top1[0]), (" vs ", "dim"), quoted(a.top1[1]), "  ")
    if a.top1_agree:
        top1.append("agree", style="bold green")
    elif a.top1_agree_ignoring_whitespace:
        top1.append("the same apart from whitespace", style="yellow")
    else:
        top1.append("differ", style="bold red")
    label = f"top-{a.k}"
    room = max(20, width - len(label) - 6)  # the grid: 2 cells in front, 2 between label and value
    overlap = Text(f"{a.overlap} of {a.k} in both")
    items = [Text.assemble(quoted(t.text), (f" {first}#{t.ranks[0]} {second}#{t.ranks[1]}", "dim")) for t in a.shared]
    if items:
        overlap.append(":", style="dim")
        overlap.append("\n")
        overlap.append_text(pack_texts(items, room))
    exact = {shared.text.strip() for shared in a.shared}
    extra = [quoted(t) for t in a.shared_ignoring_whitespace if t not in exact]
    if extra:  # the same word, spaced differently ("The" and " The")
        overlap.append("\nignoring whitespace, also:" if items else "; ignoring whitespace:", style="dim")
        overlap.append("\n")
        overlap.append_text(pack_texts(extra, room))
    if a.kl is None:
        kl = Text(f"n/a: {a.kl_note}", style="dim")
    else:
        kl = Text(f"{first}‖{second} {a.kl_bits:.3f} bits · {second}‖{first} {a.kl_reverse_bits:.3f} bits")
        kl.append("  (0 = the same distribution)", style="dim")
    grid = Table.grid(padding=(0, 2), pad_edge=True)
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    grid.add_row("top-1", top1)
    grid.add_row(label, overlap)
    grid.add_row("KL", kl)
    return Group(title, grid)
