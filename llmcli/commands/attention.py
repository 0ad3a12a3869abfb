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
from llmcli.commands import view_options as vo
from llmcli.errors import BadInput

TEXT = "Text"
SHOW = "What to show"


def attention(
    text: Annotated[Optional[str], typer.Argument(help="The text. Without it: --file, or stdin when piped.", show_default=False)] = None,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", help="Read the text from a file ('-' for stdin).", rich_help_panel=TEXT)] = None,
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
    dtype: options.DTypeOpt = options.DType.auto,
    device: options.DeviceOpt = options.Device.auto,
    trust_remote_code: options.TrustRemoteCode = False,
    json: options.Json = False,
    svg: vo.Svg = None,
    html: vo.Html = None,
) -> None:
    """A layer's attention pattern as a heatmap: query tokens down the side, keys across."""
    vo.check_exports(json, svg, html)
    if head is not None and mean:
        raise BadInput("--head and --mean cannot be combined", "one head, or the mean over the layer's heads")
    if heads and (head is not None or mean or layer is not None or drop_first or start is not None or end is not None):
        raise BadInput("--heads shows every head of every layer", "drop --layer/--head/--mean/--drop-first/--from/--to, or --heads")
    from llmcli.commands.probs import read_prompt

    source = read_prompt(text, file)
    if source == "":
        raise BadInput("the text is empty: there is no attention to show", 'give some text, e.g. llmcli attention "The cat sat on the mat"')

    from llmcli.inspect import attention as at
    from llmcli.inspect.next_token import check_prompt
    from llmcli.prompting import build_raw_prompt

    loaded = vo.load(model, dtype, device, trust_remote_code)
    ids = build_raw_prompt(loaded.tokenizer, source).ids
    check_prompt(ids, loaded.context_length)
    if heads:
        result = at.head_overview(loaded.model, loaded.tokenizer, ids, label=loaded.label)
    else:
        first = 0 if start is None else _position("--from", start, len(ids))
        last = len(ids) if end is None else _position("--to", end, len(ids), end=True)
        result = at.attention_pattern(
            loaded.model, loaded.tokenizer, ids, layer=layer, head=head, drop_first=drop_first, start=first, end=last, label=loaded.label
        )
    if json:
        render.print_json(result.to_dict())
        return
    from llmcli.render import attention as show
    from llmcli.render import views

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
