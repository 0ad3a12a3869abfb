"""`llmcli info`: the architecture and size of a model."""

from __future__ import annotations

import typer

from llmcli import options, render
from llmcli.commands._load import load


@options.loading
def info(model: options.Model = None, json: options.Json = False, *, loading) -> None:
    """Architecture, parameter counts by part, memory per dtype, special tokens, origin."""
    loaded = load(model, loading)
    data = loaded.info()
    if json:
        render.print_json(data.to_dict() | {"load_seconds": loaded.load_seconds})
    elif getattr(data, "remote", False):  # a model on a server: only what the server says
        window = f"{data.context_length:,} tokens" if data.context_length else "not reported"
        render.stdout().print(render.literal(f"{data.name}: {data.model} served at {data.base_url}; context window {window}"))
    else:
        from llmcli.render.info import render_info

        render_info(data, loaded.load_seconds)


def register(app: typer.Typer) -> None:
    app.command()(info)
