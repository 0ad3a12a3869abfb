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
    else:
        from llmcli.render.info import render_info

        render_info(data, loaded.load_seconds)


def register(app: typer.Typer) -> None:
    app.command()(info)
