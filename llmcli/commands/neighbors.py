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
from llmcli.commands import _input
from llmcli.commands._load import load
from llmcli.errors import BadInput

SHOW = "What to show"


class Method(str, Enum):
    add = "add"
    mul = "mul"


@options.loading
def neighbors(
    token: Annotated[Optional[str], typer.Argument(help="A word or token (looked up with a leading space first).", show_default=False)] = None,
    analogy: Annotated[
        Optional[str], typer.Option("--analogy", "-a", metavar="EXPR", help='Vector arithmetic: "king - man + woman".', rich_help_panel=SHOW)
    ] = None,
    method: Annotated[Method, typer.Option("--method", help="Analogies: add (3CosAdd) or mul (3CosMul).", rich_help_panel=SHOW)] = Method.add,
    num: Annotated[int, typer.Option("--num", help="How many neighbours to list.", rich_help_panel=SHOW)] = 10,
    all_pieces: Annotated[bool, typer.Option("--all-pieces", help="Rank every token, not only whole words.", rich_help_panel=SHOW)] = False,
    average: Annotated[bool, typer.Option("--average", help="A word of several tokens stands for the mean of their vectors.", rich_help_panel=SHOW)] = False,
    center: Annotated[bool, typer.Option("--center", help="Subtract the mean embedding before comparing.", rich_help_panel=SHOW)] = False,
    vector: Annotated[bool, typer.Option("--vector", help="Show the token's vector itself: first numbers, norm, where it sits.", rich_help_panel=SHOW)] = False,
    dims: Annotated[int, typer.Option("--dims", help="With --vector: how many numbers to show.", rich_help_panel=SHOW)] = 8,
    model: options.Models = None,
    json: options.Json = False,
    svg: options.Svg = None,
    html: options.Html = None,
    *,
    loading,
) -> None:
    """Nearest tokens to a token in the input embeddings (cosine), analogies, and the vector itself."""
    from llmcli.inspect.neighbors import parse_analogy
    from llmcli.render import views
    from llmcli.render.neighbors import Refused, render_results

    views.check_exports(json, svg, html)
    if (token is None) == (analogy is None):
        raise BadInput("give a TOKEN or --analogy, not both" if token else "no token given", 'e.g. llmcli neighbors tower, or llmcli neighbors --analogy "king - man + woman"')
    if vector and analogy is not None:
        raise BadInput("--vector shows one token's vector", "drop --analogy, or --vector")
    if num < 1:
        raise BadInput(f"--num must be at least 1 (got {num})", "it is how many neighbours to list")
    with _input.flags(("the analogy", "--analogy"), ("dims", "--dims")):
        if analogy is not None:
            parse_analogy(analogy)  # a malformed expression fails before any model loads
        names = model or [None]
        results = [_ask(load(name, loading, views=True), token, analogy, method.value, num, all_pieces, average, center, vector, dims, len(names) > 1) for name in names]
    answered = [r for r in results if not isinstance(r, Refused)]
    if not answered:
        raise BadInput(results[0].message, results[0].hint)
    if json:
        render.print_json([r.to_dict() if not isinstance(r, Refused) else {"model": r.model, "error": r.message, "hint": r.hint} for r in results])
        return
    console = views.recording(bool(svg or html))
    render_results(results, console=console)
    views.save_exports(console, svg, html, title="llmcli neighbors")


def _ask(loaded, token, analogy, method, num, all_pieces, average, center, vector, dims, several):
    """One model's answer; with several models a word that is not one token in this one's
    vocabulary is a note in its column, not an error for all."""
    from llmcli.render.neighbors import Refused

    try:
        if vector:
            return loaded.vector(token, dims=dims, average=average)
        if analogy is not None:
            return loaded.analogy(analogy, method=method, k=num, all_pieces=all_pieces, center=center, average=average)
        return loaded.neighbors(token, k=num, all_pieces=all_pieces, center=center, average=average)
    except BadInput as e:
        if not several or "not one token" not in e.message:
            raise
        return Refused(loaded.label, e.message, e.hint)


def register(app: typer.Typer) -> None:
    app.command()(neighbors)
