"""`llmcli neighbors`: nearest tokens in embedding space, `a - b + c` analogies, a token's vector.

Only the input embedding matrix is used (no forward pass). With several `-m`, each model answers
in its own column; a model where the word is several tokens says so in its column, and the
command fails only when no model could answer.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from llmcli import options, render
from llmcli.commands import view_options as vo
from llmcli.errors import BadInput

SHOW = "What to show"


class Method(str, Enum):
    add = "add"
    mul = "mul"


def neighbors(
    token: Annotated[Optional[str], typer.Argument(help="A word or token (looked up with a leading space first).", show_default=False)] = None,
    analogy: Annotated[
        Optional[str], typer.Option("--analogy", "-a", metavar="EXPR", help='Vector arithmetic: "king - man + woman".', rich_help_panel=SHOW)
    ] = None,
    method: Annotated[Method, typer.Option("--method", help="Analogies: add (3CosAdd) or mul (3CosMul).", rich_help_panel=SHOW)] = Method.add,
    num: Annotated[int, typer.Option("--num", "-n", help="How many neighbours to list.", rich_help_panel=SHOW)] = 10,
    all_pieces: Annotated[bool, typer.Option("--all-pieces", help="Rank every token, not only whole words.", rich_help_panel=SHOW)] = False,
    average: Annotated[bool, typer.Option("--average", help="A word of several tokens stands for the mean of their vectors.", rich_help_panel=SHOW)] = False,
    center: Annotated[bool, typer.Option("--center", help="Subtract the mean embedding before comparing.", rich_help_panel=SHOW)] = False,
    vector: Annotated[bool, typer.Option("--vector", help="Show the token's vector itself: first numbers, norm, where it sits.", rich_help_panel=SHOW)] = False,
    dims: Annotated[int, typer.Option("--dims", help="With --vector: how many numbers to show.", rich_help_panel=SHOW)] = 8,
    model: vo.Models = None,
    dtype: options.DTypeOpt = options.DType.auto,
    device: options.DeviceOpt = options.Device.auto,
    trust_remote_code: options.TrustRemoteCode = False,
    json: options.Json = False,
    svg: vo.Svg = None,
    html: vo.Html = None,
) -> None:
    """Nearest tokens to a token in the input embeddings (cosine), analogies, and the vector itself."""
    vo.check_exports(json, svg, html)
    if (token is None) == (analogy is None):
        raise BadInput("give a TOKEN or --analogy, not both" if token else "no token given", 'e.g. llmcli neighbors tower, or llmcli neighbors --analogy "king - man + woman"')
    if vector and analogy is not None:
        raise BadInput("--vector shows one token's vector", "drop --analogy, or --vector")
    if analogy is not None:
        from llmcli.inspect.neighbors import parse_analogy

        parse_analogy(analogy)  # a malformed expression fails before any model loads
    if num < 1:
        raise BadInput(f"--num must be at least 1 (got {num})", "it is how many neighbours to list")
    names = model or [None]
    results = [_ask(name, token, analogy, method, num, all_pieces, average, center, vector, dims, (dtype, device, trust_remote_code), len(names) > 1) for name in names]
    from llmcli.render.neighbors import Refused

    answered = [r for r in results if not isinstance(r, Refused)]
    if not answered:
        raise BadInput(results[0].message, results[0].hint)
    if json:
        docs = [r.to_dict() if not isinstance(r, Refused) else {"model": r.model, "error": r.message, "hint": r.hint} for r in results]
        render.print_json(docs[0] if len(docs) == 1 else docs)
        return
    from llmcli.render import views
    from llmcli.render.neighbors import render_results

    console = views.recording(bool(svg or html))
    render_results(results, console=console)
    views.save_exports(console, svg, html, title="llmcli neighbors")


def _ask(name, token, analogy, method, num, all_pieces, average, center, vector, dims, loading, several):
    from llmcli.inspect import neighbors as nb
    from llmcli.render.neighbors import Refused

    loaded = vo.load(name, *loading)
    model, tokenizer, label = loaded.model, loaded.tokenizer, loaded.label
    try:
        if vector:
            return nb.vector(model, tokenizer, token, dims=dims, average=average, label=label)
        if analogy is not None:
            return nb.analogy(model, tokenizer, analogy, method=method.value, k=num, all_pieces=all_pieces, center=center, average=average, label=label)
        return nb.nearest(model, tokenizer, token, k=num, all_pieces=all_pieces, center=center, average=average, label=label)
    except BadInput as e:
        if not several or "not one token" not in e.message:
            raise
        return Refused(label, e.message, e.hint)


def register(app: typer.Typer) -> None:
    app.command()(neighbors)
