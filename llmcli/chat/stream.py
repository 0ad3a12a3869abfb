"""Showing a reply while it is being written.

`MarkdownStream` renders a growing Markdown text without re-drawing the transcript:
- the text is cut into blocks at blank lines and at code fences; a block is printed
  once, for good, as soon as the next one starts;
- only the last, unfinished block is live (a transient Rich `Live`), re-rendered at most
  `refresh_per_second` times;
- the live block never grows taller than the screen: when it would, its finished lines
  are printed for good and only the rest stays live. A `Live` taller than the terminal
  is what makes other chat tools freeze or smear long replies; here the live part is
  always a few lines, so a reply of any length scrolls like ordinary output.

Fenced code blocks are rendered with `Syntax` directly (not through Rich's Markdown) so a
long one that is printed in pieces still looks like one block: only its first piece has
top padding and only its last has bottom padding.

`PlainStream` is the same interface for a stdout that is not a terminal: the text as it
comes, nothing else.

Model text is never Rich markup here: Markdown is parsed by markdown-it, not by Rich's
markup parser, and control characters are made visible before anything is printed. A
Markdown link is shown as its text and its address (`hyperlinks=False`), never as a
terminal hyperlink (an OSC 8 escape whose target the model chose and the user cannot see).
"""

from __future__ import annotations

import re
import time

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.segment import Segment
from rich.markdown import Markdown
from rich.syntax import Syntax
from rich.text import Text

from llmcli.render import escape_controls

CODE_THEME = "monokai"
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)")


class PlainStream:
    """The reply as plain text, written as it arrives (for pipes and files)."""

    def __init__(self, console: Console):
        self.console = console
        self.text = ""

    def __enter__(self) -> PlainStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def feed(self, piece: str) -> None:
        piece = escape_controls(piece)
        self.text += piece
        self.console.file.write(piece)
        self.console.file.flush()

    def close(self) -> None:
        if self.text and not self.text.endswith("\n"):
            self.console.file.write("\n")
        self.console.file.flush()


class MarkdownStream:
    """The reply as Markdown: finished blocks printed once, the last block live."""

    def __init__(self, console: Console, *, refresh_per_second: float = 12.0, code_theme: str = CODE_THEME):
        self.console = console
        self.code_theme = code_theme
        self.interval = 1.0 / refresh_per_second
        self.text = ""
        self._done = 0  # text[:_done] is printed for good
        self._scan = 0  # start of the first line not yet looked at
        self._fence: tuple[str, str] | None = None  # (marker, language) inside a code fence
        self._fence_top = True  # the open code block's first piece is not printed yet
        self._gap = False  # a blank line goes before the next block
        self._last_refresh = 0.0
        self._live = Live(
            console=console,
            transient=True,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
            vertical_overflow="visible",
        )

    def __enter__(self) -> MarkdownStream:
        self._live.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def max_live_rows(self) -> int:
        return max(4, self.console.height - 4)

    # ------------------------------------------------------------------ feeding

    def feed(self, piece: str) -> None:
        self.text += escape_controls(piece)
        self._print_finished_blocks()
        now = time.monotonic()
        if now - self._last_refresh >= self.interval:
            self._refresh()
            self._last_refresh = now

    def close(self) -> None:
        """Print what is left, for good, and take the live part away."""
        if not self._live.is_started:
            return
        self._live.update(Text(""), refresh=False)
        self._live.stop()  # transient: erases the live lines
        rest = self.text[self._done :]
        if self._fence:
            self._print_code(rest, bottom=True)
        elif rest.strip():
            self._print_markdown(rest)
        self._done = len(self.text)

    # ------------------------------------------------------------------ blocks

    def _print_finished_blocks(self) -> None:
        """Walk the complete lines not yet looked at; print each block that has ended."""
        text = self.text
        while (newline := text.find("\n", self._scan)) != -1:
            line, start, end = text[self._scan : newline], self._scan, newline + 1
            self._scan = end
            if self._fence:
                marker = self._fence[0]
                if line.strip().startswith(marker) and not line.strip().strip(marker[0]):
                    self._print_code(text[self._done : start], bottom=True)
                    self._fence, self._done, self._gap = None, end, True
            elif match := _FENCE.match(line):
                self._print_markdown(text[self._done : start])
                self._fence, self._fence_top, self._done = (match.group(1), match.group(2)), True, end
            elif not line.strip():
                self._print_markdown(text[self._done : start])
                self._done = end

    def _refresh(self) -> None:
        """Re-render the live block; if it got taller than the screen, print its head for good."""
        live = self._live_renderable()
        if self._height(live) > self.max_live_rows:
            self._print_head_of_live_block()
            live = self._live_renderable()
        self._live.update(live, refresh=True)

    def _print_head_of_live_block(self) -> None:
        pending = self.text[self._done :]
        cut = pending.rfind("\n") + 1  # keep the line being written live
        if cut == 0 and not self._fence:
            cut = pending.rfind(" ") + 1  # one enormous line: break it at a space
        if cut <= 0:
            cut = len(pending)
        head = pending[:cut]
        if self._fence:
            self._print_code(head, bottom=False)
        else:
            self._print_markdown(head.rstrip("\n"), gap_after=False)
        self._done += cut
        self._scan = max(self._scan, self._done)

    def _live_renderable(self) -> RenderableType:
        pending = self.text[self._done :]
        if self._fence:
            body: RenderableType = self._code(pending, top=self._fence_top, bottom=True)
        elif pending.strip():
            body = _Trimmed(Markdown(pending, code_theme=self.code_theme, hyperlinks=False))
        else:
            return Text("")
        return Group(Text(""), body) if self._gap else body

    # ------------------------------------------------------------------ printing

    def _print_markdown(self, source: str, *, gap_after: bool = True) -> None:
        if not source.strip():
            return
        if self._gap:
            self.console.print()
        self.console.print(_Trimmed(Markdown(source, code_theme=self.code_theme, hyperlinks=False)))
        self._gap = gap_after

    def _print_code(self, code: str, *, bottom: bool) -> None:
        if self._fence_top and self._gap:
            self.console.print()
        self.console.print(self._code(code, top=self._fence_top, bottom=bottom))
        self._fence_top = False
        self._gap = bottom

    def _code(self, code: str, *, top: bool, bottom: bool) -> Syntax:
        language = (self._fence[1] if self._fence else "") or "text"
        return Syntax(
            code.rstrip("\n") if bottom else code.removesuffix("\n"),
            language,
            theme=self.code_theme,
            word_wrap=True,
            padding=(int(top), 1, int(bottom), 1),
        )

    def _height(self, renderable: RenderableType) -> int:
        return len(self.console.render_lines(renderable, self.console.options, pad=False))


class _Trimmed:
    """A renderable without its leading and trailing blank lines.

    Rich's Markdown puts a blank line before some elements (lists) and not others; the
    stream decides the spacing between blocks itself, so each block is trimmed.
    """

    def __init__(self, renderable: RenderableType):
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = console.render_lines(self.renderable, options, pad=False)
        blank = [not "".join(s.text for s in line).strip() for line in lines]
        start = blank.index(False) if False in blank else len(lines)
        end = len(lines) - blank[::-1].index(False) if False in blank else 0
        for line in lines[start:end]:
            yield from _without_trailing_blanks(line)
            yield Segment.line()


def _without_trailing_blanks(line: list[Segment]) -> list[Segment]:
    """Drop the padding Rich adds after a paragraph's text, so copied text has no trailing
    spaces; padding with a background (code blocks) is part of the look and stays."""
    line = list(line)
    while line and not (line[-1].style and line[-1].style.bgcolor):
        last = line.pop()
        text = last.text.rstrip()
        if text:
            line.append(Segment(text, last.style, last.control))
            break
    return line
