"""`generate`'s output: the streamed reply on stdout, stats and logprobs on stderr.

The reply is written piece by piece with a flush after each, so it reaches a pipe as it
is generated. On a terminal, control characters in it are shown as `\\xNN` (a model's
ESC cannot restyle the terminal); into a pipe or a file the text goes out exactly.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from llmcli import render


class LiveText:
    """Streams the reply to stdout as it comes (`feed` takes a TokenEvent).

    With `heat` on a terminal each piece is shaded by its token's surprisal, −log₂ p, on
    `score`'s scale (`generate --logprobs`), so the model's confidence shows while reading.
    """

    def __init__(self, *, echo: bool = True, heat: bool = False):
        self.echo = echo
        self.text = ""
        self._out = sys.stdout
        self._terminal = self._out.isatty()
        self._console = render.stdout() if heat and self._terminal else None

    def feed(self, event: Any) -> None:
        piece = event.text
        if not piece:
            return
        self.text += piece
        if not self.echo:
            return
        if self._console is not None:
            from llmcli.render.score import heat_style

            self._console.print(render.literal(piece, style=heat_style(-event.logprob / math.log(2))), end="")
            self._out.flush()
            return
        self._out.write(render.escape_controls(piece) if self._terminal else piece)
        self._out.flush()

    def close(self) -> None:
        """End with a newline, so the shell prompt (or the next line of a script) starts on its own line."""
        if self.echo and self.text and not self.text.endswith("\n"):
            self._out.write("\n")
            self._out.flush()


def print_stats(stats: Any) -> None:
    from llmcli.render.stats import stats_line

    render.stderr().print(stats_line(stats, prompt=True, speeds=True, memory=True))


def print_logprobs(tokenizer: Any, events: list[Any]) -> None:
    """Each generated token with its log-probability and the best alternatives, on stderr."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("token")
    table.add_column("id", justify="right", style="dim")
    table.add_column("logprob", justify="right")
    table.add_column("prob", justify="right")
    if any(e.top for e in events):
        table.add_column("alternatives (prob)", overflow="fold")
    for n, e in enumerate(events, 1):
        row = [
            str(n),
            _token(tokenizer, e.id),
            str(e.id) if e.id >= 0 else "?",
            f"{e.logprob:.3f}",
            f"{100 * math.exp(e.logprob):.1f}%",
        ]
        if e.top:
            alternatives = Text()
            for i, _piece, logprob in e.top:
                if alternatives:
                    alternatives.append("  ")
                alternatives.append_text(_token(tokenizer, i, style="bold" if i == e.id else ""))
                alternatives.append(f" {100 * math.exp(logprob):.1f}%", style="dim")
            row.append(alternatives)
        table.add_row(*row)
    render.print_block(render.stderr(), table)


def _token(tokenizer: Any, token_id: int, style: str = "") -> Text:
    from llmcli.tokens import piece_text

    return Text(render.visible_whitespace(piece_text(tokenizer, token_id)) or "∅", style=style)
