"""compare's generations on the terminal while the models run: columns that stay live.

- One column per model, of equal width, separated by `│` (at 80 columns: two of 37 cells,
  three of 24). Each has a header (its letter, the model, then role · how the prompt was
  built · prompt tokens), the generated text, and a stats line. Text wraps at spaces and a
  word longer than the column folds onto the next line: nothing is cut.
- While the models generate, on a terminal, a transient Rich `Live` shows the columns,
  each cropped to its last lines (`↑ N more lines` above them), so the live view always
  fits the screen: a `Live` taller than the terminal smears. When every model is done the
  live view is erased and the full columns are printed once, for good.
- Piped (`render.plain()`), the columns become sections one after another, each headed
  `== A: model · role · mode · N prompt tokens`, its text written as it comes (exact, as
  `generate` writes it); the stats lines go to stderr.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Sequence

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from llmcli import render
from llmcli.render.compare import Header, badge, pack, prompt_text, settings_line, stats_text


@dataclass
class Column:
    """One side's state while the comparison runs."""

    letter: str
    model: str  # as typed, until the header replaces it
    status: str = "waiting"  # waiting | loading | running | done | skipped
    header: Header | None = None
    text: str = ""
    stats: Any = None


class Display:
    """What the command calls as the models run; this base class only keeps the state (used for --json)."""

    def __init__(self, columns: list[Column], *, show_prompt: bool = False, settings: Any = None):
        self.columns = columns
        self.show_prompt = show_prompt
        self.settings = settings

    def __enter__(self) -> Display:
        return self

    def __exit__(self, *exc: object) -> None:
        for column in self.columns:
            if column.status in ("waiting", "loading"):
                column.status = "skipped"

    def loading(self, index: int) -> None:
        self.columns[index].status = "loading"

    def start(self, index: int, header: Header) -> None:
        column = self.columns[index]
        column.header, column.status, column.model = header, "running", header.model
        for other in self.columns:  # models loaded up front wait for their turn
            if other.status == "loading" and other is not column:
                other.status = "waiting"

    def feed(self, index: int, piece: str) -> None:
        self.columns[index].text += piece

    def finish(self, index: int, stats: Any) -> None:
        self.columns[index].stats, self.columns[index].status = stats, "done"


def make_display(columns: list[Column], *, json: bool, show_prompt: bool, settings: Any) -> Display:
    """Live columns on a terminal, sections in a pipe, nothing but state for --json."""
    if json:
        return Display(columns, settings=settings)
    if render.plain():
        return Sections(columns, show_prompt=show_prompt, settings=settings)
    return LiveColumns(columns, render.stdout(), show_prompt=show_prompt, settings=settings)


class LiveColumns(Display):
    """The columns, live while the models run (tails only), then printed in full once."""

    REFRESH_PER_SECOND = 8

    def __init__(self, columns: list[Column], console: Console, *, show_prompt: bool = False, settings: Any = None):
        super().__init__(columns, show_prompt=show_prompt, settings=settings)
        self.console = console
        self._live: Live | None = None

    def __enter__(self) -> LiveColumns:
        self._live = Live(
            console=self.console,
            get_renderable=lambda: columns_view(self.columns, self.console, show_prompt=self.show_prompt, height=self.console.height),
            transient=True,
            refresh_per_second=self.REFRESH_PER_SECOND,
        )
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        if self._live is not None:
            self._live.stop()
        if any(c.status in ("running", "done") for c in self.columns):
            self.console.print(columns_view(self.columns, self.console, show_prompt=self.show_prompt))
            if self.settings is not None:
                self.console.print(settings_line(self.settings))

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.refresh()

    def loading(self, index: int) -> None:
        super().loading(index)
        self._refresh()

    def start(self, index: int, header: Header) -> None:
        super().start(index, header)
        self._refresh()

    def finish(self, index: int, stats: Any) -> None:
        super().finish(index, stats)
        self._refresh()


class Sections(Display):
    """Plain text for a pipe: one labelled section per model, its text as it comes; stats on stderr."""

    def __init__(self, columns: list[Column], *, show_prompt: bool = False, settings: Any = None):
        super().__init__(columns, show_prompt=show_prompt, settings=settings)
        self.out = sys.stdout
        self._sections = 0

    def start(self, index: int, header: Header) -> None:
        super().start(index, header)
        if self._sections:
            self.out.write("\n")
        self._sections += 1
        self.out.write(f"== {header.letter}: {render.escape_controls(header.model)} · {header.description}\n")
        if self.show_prompt:
            self.out.write("-- prompt\n" + "".join(text for text, _ in header.prompt) + "\n-- reply\n")
        self.out.flush()

    def feed(self, index: int, piece: str) -> None:
        super().feed(index, piece)
        self.out.write(piece)
        self.out.flush()

    def finish(self, index: int, stats: Any) -> None:
        from llmcli.render.stats import stats_line

        super().finish(index, stats)
        column = self.columns[index]
        if column.text and not column.text.endswith("\n"):
            self.out.write("\n")
        self.out.flush()
        line = stats_line(stats, prompt=True, speeds=True, memory=True)
        render.stderr().print(Text.assemble(f"{column.letter}: ", line), soft_wrap=True)

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        if self.settings is not None and self._sections:
            render.stderr().print(settings_line(self.settings), soft_wrap=True)


# ---------------------------------------------------------------- the columns view


def column_width(console_width: int, count: int) -> int:
    """Each column's text width: columns are 1 cell of padding each side and 1 separator apart."""
    return max(8, (console_width - (count - 1)) // count - 2)


def columns_view(columns: Sequence[Column], console: Console, *, show_prompt: bool = False, height: int | None = None) -> Table:
    """The columns side by side. With `height`, each cell keeps only its last lines so the view fits."""
    width = column_width(console.width, len(columns))
    table = Table(box=box.MINIMAL, show_edge=False, pad_edge=False, padding=(0, 1), show_header=True)
    headings = [_heading(c, width) for c in columns]
    for heading in headings:
        table.add_column(heading, width=width, overflow="fold", vertical="top")
    prompts = [_prompt_cell(c) for c in columns] if show_prompt else None
    texts = [_text_cell(c) for c in columns]
    stats = [stats_text(c.stats, width) if c.stats is not None else Text("") for c in columns]
    if height is not None:
        # What is left once the headings, the two rules, the stats (room kept for two lines) and
        # the line the cursor sits on below the view are drawn.
        fixed = max(_lines(console, h, width) for h in headings) + max(2, *(_lines(console, s, width) for s in stats)) + 3
        room = max(4, height - fixed)
        if prompts is not None:
            prompt_room = min(max(_lines(console, p, width) for p in prompts), max(2, room // 3))
            prompts = [_tail(console, p, width, prompt_room) for p in prompts]
            room = max(3, room - prompt_room - 1)
        texts = [_tail(console, t, width, room) for t in texts]
    if prompts is not None:
        table.add_row(*prompts, end_section=True)
    table.add_row(*texts, end_section=True)
    table.add_row(*stats)
    return table


def _heading(column: Column, width: int) -> Text:
    title = Text.assemble(badge(column.letter), " ", render.literal(column.model, style="bold"))
    if column.header is not None:
        title.append(f"  {column.header.role}", style="italic")
        title.append("\n" + pack(column.header.prompt_parts(), width), style="dim")
    else:
        title.append("\n")
        title.append({"loading": "loading…", "skipped": "not run"}.get(column.status, ""), style="dim italic")
    return title


def _prompt_cell(column: Column) -> Text:
    if column.header is None:
        return Text("")
    return prompt_text(column.header.prompt)


def _text_cell(column: Column) -> Text:
    if column.status == "loading":
        return Text("loading the model…", style="dim italic")
    if column.status == "waiting":
        return Text("waiting for its turn", style="dim italic")
    if column.status == "skipped":
        return Text("not run", style="dim italic")
    if not column.text:
        if column.status == "running":
            return Text("reading the prompt…", style="dim italic")
        ended = column.stats is not None and column.stats.finish_reason == "stop"
        return Text("(no text: its first token ended the reply)" if ended else "(no text)", style="dim italic")
    text = render.literal(column.text)
    if column.status == "running":
        text.append("▌", style="dim")
    return text


def _lines(console: Console, text: Text, width: int) -> int:
    return len(text.wrap(console, width, overflow="fold"))


def _tail(console: Console, text: Text, width: int, lines: int) -> Text:
    """The last `lines` lines of `text` wrapped at `width`, the first saying how many are hidden."""
    wrapped = text.wrap(console, width, overflow="fold")
    if len(wrapped) <= lines:
        return text
    keep = max(1, lines - 1)
    hidden = len(wrapped) - keep
    return Text("\n").join([Text(f"↑ {hidden} more line{'s' if hidden != 1 else ''}", style="dim italic"), *wrapped[-keep:]])


