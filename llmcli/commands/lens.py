"""`llmcli lens`: the logit lens — what each layer would predict if the model stopped there.

The prompt is raw text byte for byte (as `probs`), or with `--chat` the chat template's prompt
for a user message. The table is for one position (default the last); `--grid` shows every
layer's top-1 at every position that fits the width.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llmcli import options, render
from llmcli.commands import _input
from llmcli.commands._load import load
from llmcli.errors import BadInput

PROMPT = "Prompt"
SHOW = "What to show"


@options.loading
def lens(
    text: Annotated[Optional[str], typer.Argument(help="The prompt. Without it: --file, or stdin when piped.", show_default=False)] = None,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", help="Read the prompt from a file.", rich_help_panel=PROMPT)] = None,
    chat: Annotated[bool, typer.Option("--chat", help="Wrap TEXT as a user message in the chat template.", rich_help_panel=PROMPT)] = False,
    position: Annotated[
        Optional[int],
        typer.Option("--position", help="The prompt token to predict after (0-based; negative counts from the end). Default: the last.", rich_help_panel=SHOW),
    ] = None,
    grid: Annotated[bool, typer.Option("--grid", help="A layers x positions grid of each layer's top-1 token.", rich_help_panel=SHOW)] = False,
    layers: Annotated[
        Optional[str],
        typer.Option("--layers", metavar="SLICE", help="Which layers to show: a slice (0:30:3) or a list (0,5,9); the last is always kept.", rich_help_panel=SHOW),
    ] = None,
    target: Annotated[
        Optional[str], typer.Option("--target", metavar="TEXT", help="Follow this token's rank and probability through the layers.", rich_help_panel=SHOW)
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Tokens kept per layer.", rich_help_panel=SHOW)] = 5,
    model: options.Model = None,
    json: options.Json = False,
    svg: options.Svg = None,
    html: options.Html = None,
    *,
    loading,
) -> None:
    """What each layer would predict: every block's output through the final norm and the head."""
    from llmcli.render import views

    views.check_exports(json, svg, html)
    if top_k < 1:
        raise BadInput(f"--top-k must be at least 1 (got {top_k})", "it is how many tokens each layer lists")
    if target == "":
        raise BadInput("--target is empty", 'give the token to follow, e.g. --target " Paris"')
    source = _input.read_text("lens", text, file)
    loaded = load(model, loading, views=True)
    prompt = loaded.prompt(source, mode="chat" if chat else "raw")
    count = len(prompt.ids)
    console = views.recording(bool(svg or html))
    index = -1 if position is None else position
    positions = [index]
    if grid:
        from llmcli.inspect.next_token import resolve_position
        from llmcli.render.lens import grid_capacity

        with _input.flags(("position", "--position")):
            index = resolve_position(index, count)
        first = 0 if json else max(0, count - grid_capacity(console.width, views.coloured(console)))
        positions = sorted(set(range(first, count)) | {index})
    flags = (("position", "--position"), ("layers", "--layers"), ("the target", "--target"))
    with _input.flags(*flags):
        report = loaded.lens(prompt, positions=positions, layers=layers, top_k=top_k, target=target)
    if json:
        render.print_json(report.to_dict())
        return
    from llmcli.render.lens import render_report

    shown = report.positions[-1] if not grid else (index if position is not None else None)
    render_report(report, grid=grid, position=shown, console=console)
    views.save_exports(console, svg, html, title="llmcli lens")


def register(app: typer.Typer) -> None:
    app.command()(lens)
