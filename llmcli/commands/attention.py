"""`llmcli attention`: which earlier tokens each token looks at, in one layer, as a heatmap.

One forward pass over the whole text with eager attention (the model's own weights). Layers
and heads are numbered from 0, as transformers and TransformerLens number them; the default is
the middle layer and the mean over its query heads. `--heads` shows every head's entropy at
every layer instead, to find the interesting ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llmcli import options, render
from llmcli.commands import _input
from llmcli.commands._load import load
from llmcli.errors import BadInput

TEXT = "Text"
SHOW = "What to show"


@options.loading
def attention(
    text: Annotated[Optional[str], typer.Argument(help="The text. Without it: --file, or stdin when piped.", show_default=False)] = None,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", help="Read the text from a file.", rich_help_panel=TEXT)] = None,
    layer: Annotated[Optional[int], typer.Option("--layer", "-l", help="The layer, from 0 (negative counts from the end). Default: the middle one.", rich_help_panel=SHOW)] = None,
    head: Annotated[Optional[int], typer.Option("--head", help="One query head, from 0.", rich_help_panel=SHOW)] = None,
    mean: Annotated[bool, typer.Option("--mean", help="The mean over the layer's query heads (the default).", rich_help_panel=SHOW)] = False,
    drop_first: Annotated[
        bool, typer.Option("--drop-first", help="Hide the first token (BOS, the attention sink) and renormalise the rest.", rich_help_panel=SHOW)
    ] = False,
    start: Annotated[Optional[int], typer.Option("--from", help="Show tokens from this position on.", rich_help_panel=SHOW)] = None,
    end: Annotated[Optional[int], typer.Option("--to", help="Show tokens before this position (exclusive).", rich_help_panel=SHOW)] = None,
    heads: Annotated[bool, typer.Option("--heads", help="Every head of every layer: the entropy of its attention.", rich_help_panel=SHOW)] = False,
    no_summary: Annotated[bool, typer.Option("--no-summary", help="Only the heatmap, not each query's top 3.", rich_help_panel=SHOW)] = False,
    model: options.Model = None,
    json: options.Json = False,
    svg: options.Svg = None,
    html: options.Html = None,
    *,
    loading,
) -> None:
    """A layer's attention pattern as a heatmap: query tokens down the side, keys across."""
    from llmcli.render import attention as show
    from llmcli.render import views

    views.check_exports(json, svg, html)
    if head is not None and mean:
        raise BadInput("--head and --mean cannot be combined", "one head, or the mean over the layer's heads")
    if heads and (head is not None or mean or layer is not None or drop_first or start is not None or end is not None):
        raise BadInput("--heads shows every head of every layer", "drop --layer/--head/--mean/--drop-first/--from/--to, or --heads")
    source = _input.read_text("attention", text, file, what="text")
    loaded = load(model, loading, views=True)
    if heads:
        result = loaded.attention_heads(source)
    else:
        ids = loaded.prompt(source, mode="raw").ids
        first = 0 if start is None else _position("--from", start, len(ids))
        last = len(ids) if end is None else _position("--to", end, len(ids), end=True)
        if first >= last:
            raise BadInput(f"--from {start} --to {end} is not a range of this text's {len(ids)} tokens", "--to is exclusive and comes after --from")
        flags = (("layer", "--layer"), ("head", "--head"), ("dropping the first token", "--drop-first"))
        with _input.flags(*flags):
            result = loaded.attention(source, ids=ids, layer=layer, head=head, drop_first=drop_first, start=first, end=last)
    if json:
        render.print_json(result.to_dict())
        return
    console = views.recording(bool(svg or html))
    if heads:
        show.render_overview(result, console=console)
    else:
        show.render_pattern(result, show_summary=not no_summary, console=console)
    views.save_exports(console, svg, html, title="llmcli attention")


def _position(flag: str, value: int, count: int, *, end: bool = False) -> int:
    """--from/--to as Python slice bounds: negative counts from the end; --to may be the length."""
    index = value + count if value < 0 else value
    if not 0 <= index <= (count if end else count - 1):
        raise BadInput(
            f"{flag} {value} is outside the text, which has {count} token{'s' if count != 1 else ''}",
            f"positions run from 0 to {count - 1}; --to is exclusive; negative counts from the end",
        )
    return index


def register(app: typer.Typer) -> None:
    app.command()(attention)
