"""`llmcli models`: what is installed and cached; `models rm NAME|--all` frees the space."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Optional

import typer

from llmcli import options, render


app = typer.Typer(help="Built-in models, the conversion cache, and the Hugging Face cache.", no_args_is_help=False)


@app.callback(invoke_without_command=True)
def models(ctx: typer.Context, json: options.Json = False) -> None:
    """List the built-in models, llmcli's conversion cache and the Hugging Face cache."""
    if ctx.invoked_subcommand:
        return
    from llmcli.models.catalog import catalog

    cat = catalog()
    if json:
        render.print_json(asdict(cat))
    else:
        from llmcli.render.catalog import render_catalog

        render_catalog(cat)


@app.command("rm")
def rm(
    name: Annotated[Optional[str], typer.Argument(help="Cache entry name or alias.", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Remove every cache entry.")] = False,
) -> None:
    """Remove converted models from llmcli's cache (they are rebuilt on next use)."""
    from llmcli.errors import BadInput
    from llmcli.models.catalog import remove

    if not name and not all_:
        raise BadInput("say which entry to remove", "llmcli models rm NAME, or --all; `llmcli models` lists them")
    removed = remove(name, all_)
    if not removed and not all_:
        raise BadInput(f"no cache entry named '{name}'", "`llmcli models` lists the entries")
    for row in removed:
        render.stderr().print(render.literal(f"removed {row.name}"))


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="models")
