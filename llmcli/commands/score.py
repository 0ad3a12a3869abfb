"""`llmcli score`: how surprised the model is by each token of a text — the training loss, made visible.

The text is scored byte for byte (raw), or with `--chat` as an assistant reply after the chat
template's prompt (only the reply's tokens count; `--user` is the message it answers).
Options are checked before any model loads.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from llmcli import options, render
from llmcli.commands import _input
from llmcli.commands._load import load
from llmcli.errors import BadInput

TEXT = "Text"
SHOW = "What to show"


class By(str, Enum):
    rank = "rank"
    surprisal = "surprisal"


@options.loading
def score(
    text: Annotated[Optional[str], typer.Argument(help="The text. Without it: --file, or stdin when piped.", show_default=False)] = None,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", help="Read the text from a file.", rich_help_panel=TEXT)] = None,
    chat: Annotated[bool, typer.Option("--chat", help="Score TEXT as the assistant's reply inside the chat template.", rich_help_panel=TEXT)] = False,
    user: Annotated[Optional[str], typer.Option("--user", help="With --chat: the user message the reply answers.", rich_help_panel=TEXT)] = None,
    system: Annotated[Optional[str], typer.Option("--system", "-s", help="With --chat: a system message.", rich_help_panel=TEXT)] = None,
    by: Annotated[By, typer.Option("--by", help="Colour tokens by rank bucket (GLTR) or by surprisal in bits.", rich_help_panel=SHOW)] = By.rank,
    surprises: Annotated[int, typer.Option("--surprises", help="How many of the least likely tokens to list.", rich_help_panel=SHOW)] = 8,
    stride: Annotated[
        Optional[int], typer.Option("--stride", help="Past the context window: tokens of context each new window keeps (default half the window).", rich_help_panel=SHOW)
    ] = None,
    window: Annotated[Optional[int], typer.Option("--window", help="Tokens per forward pass (default the model's context window).", rich_help_panel=SHOW)] = None,
    model: options.Models = None,
    json: options.Json = False,
    svg: options.Svg = None,
    html: options.Html = None,
    *,
    loading,
) -> None:
    """Colour each token of a text by how surprised the model was; NLL, perplexity, bits per byte."""
    from llmcli.render import views
    from llmcli.render.score import ScoringProgress, render_reports

    views.check_exports(json, svg, html)
    if (user is not None or system is not None) and not chat:
        raise BadInput("--user and --system need --chat", "they are the turns before the reply being scored")
    if surprises < 0:
        raise BadInput(f"--surprises must be 0 or more (got {surprises})", "it is how many tokens the surprises table lists")
    if window is not None and window < 2:
        raise BadInput(f"--window must be at least 2 (got {window})", "it is how many tokens one forward pass reads")
    source = _input.read_text("score", text, file, what="text")
    reports = []
    for name in model or [None]:
        loaded = load(name, loading, views=True)
        with ScoringProgress(loaded.label) as progress, _input.flags(("stride", "--stride"), ("window", "--window")):
            reports.append(loaded.score(source, chat=chat, user=user, system=system, stride=stride, window=window, progress=progress))
    if json:
        render.print_json([r.to_dict() for r in reports])
        return
    console = views.recording(bool(svg or html))
    render_reports(reports, by=by.value, surprises=surprises, console=console)
    views.save_exports(console, svg, html, title="llmcli score")


def register(app: typer.Typer) -> None:
    app.command()(score)
