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
from llmcli.commands import view_options as vo
from llmcli.errors import BadInput

PROMPT = "Prompt"
SHOW = "What to show"


def lens(
    text: Annotated[Optional[str], typer.Argument(help="The prompt. Without it: --file, or stdin when piped.", show_default=False)] = None,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", help="Read the prompt from a file ('-' for stdin).", rich_help_panel=PROMPT)] = None,
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
    dtype: options.DTypeOpt = options.DType.auto,
    device: options.DeviceOpt = options.Device.auto,
    trust_remote_code: options.TrustRemoteCode = False,
    json: options.Json = False,
    svg: vo.Svg = None,
    html: vo.Html = None,
) -> None:
    """What each layer would predict: every block's output through the final norm and the head."""
    vo.check_exports(json, svg, html)
    if top_k < 1:
        raise BadInput(f"--top-k must be at least 1 (got {top_k})", "it is how many tokens each layer lists")
    if target == "":
        raise BadInput("--target is empty", 'give the token to follow, e.g. --target " Paris"')
    from llmcli.commands.probs import read_prompt

    source = read_prompt(text, file)
    if source == "":
        raise BadInput("the prompt is empty: there is nothing to look at", 'give some text, e.g. llmcli lens "The capital of France is"')

    from llmcli.inspect import lens as ln
    from llmcli.inspect.next_token import check_prompt, resolve_position
    from llmcli.prompting import Message, build_chat_prompt, build_raw_prompt

    loaded = vo.load(model, dtype, device, trust_remote_code)
    tokenizer = loaded.tokenizer
    prompt = build_chat_prompt(tokenizer, [Message("user", source)]) if chat else build_raw_prompt(tokenizer, source)
    ids = list(prompt.ids)
    check_prompt(ids, loaded.context_length)
    index = resolve_position(-1 if position is None else position, len(ids))
    config = loaded.model.config.get_text_config()
    chosen = ln.parse_layers(layers, config.num_hidden_layers) if layers is not None else None

    from llmcli.render import views

    console = views.recording(bool(svg or html))
    if grid and not json:
        from llmcli.render.lens import grid_capacity

        first = max(0, len(ids) - grid_capacity(console.width, views.coloured(console)))
        positions = sorted(set(range(first, len(ids))) | {index})
    else:
        positions = list(range(len(ids))) if grid else [index]
    report = ln.logit_lens(loaded.model, tokenizer, ids, positions=positions, layers=chosen, top_k=top_k, target=target, label=loaded.label)
    if json:
        render.print_json(report.to_dict())
        return
    from llmcli.render.lens import render_report

    render_report(report, grid=grid, position=index if (position is not None or not grid) else None, console=console)
    views.save_exports(console, svg, html, title="llmcli lens")


def register(app: typer.Typer) -> None:
    app.command()(lens)
