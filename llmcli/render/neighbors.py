"""`neighbors` on the terminal: ranked tables of nearby tokens, an analogy's answers, one vector.

Layout choices:
- A ranked table (rank, token, id, score, and on a terminal a bar on the score's scale) under a
  line saying what was asked, how, and over which tokens; the embedding facts (matrix shape,
  tied head, Gemma's √d scale, centred or raw) underneath.
- Several models side by side, one column each; a model where the word is several tokens
  shows that (with its pieces) in its column instead of a table.
- Token text literal, whitespace drawn, as everywhere.
"""

from __future__ import annotations

from typing import Sequence, Union

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from llmcli import render
from llmcli.inspect.neighbors import NeighborsReport, VectorReport, Word
from llmcli.render import views
from llmcli.render.pieces import bar, quoted, token_text

BAR = 10
_METHODS = {"cosine": "cosine", "3cosadd": "3CosAdd: unit vectors, positives − negatives, then cosine", "3cosmul": "3CosMul (Levy & Goldberg 2014)"}


class Refused:
    """A model where the question could not be asked (the word is several tokens there)."""

    def __init__(self, model: str, message: str, hint: str | None = None):
        self.model, self.message, self.hint = model, message, hint


Result = Union[NeighborsReport, VectorReport, Refused]


def _word(word: Word) -> Text:
    if not word.averaged:
        return quoted(word.pieces[0])
    out = Text.assemble(("mean of ", "dim"))
    for i, piece in enumerate(word.pieces):
        if i:
            out.append("+", style="dim")
        out.append_text(quoted(piece))
    return out


def _question(report: NeighborsReport) -> Text:
    if report.method == "cosine":
        return Text.assemble(("Nearest to ", "bold"), _word(report.positive[0]))
    out = Text()
    terms = [("", report.positive[0])] + [(" − ", w) for w in report.negative] + [(" + ", w) for w in report.positive[1:]]
    for sign, word in terms:
        out.append(sign, style="bold")
        out.append_text(_word(word))
    out.append(" ≈ ?", style="bold")
    return out


def _facts(report: NeighborsReport | VectorReport, short: bool) -> list[Text]:
    facts = report.facts
    if short:
        lines = [Text(f"{facts.vocab_size:,} × {facts.dim} · {'tied' if facts.tied else 'untied'} head", style="dim")]
        if isinstance(report, NeighborsReport):
            lines.append(Text(f"{facts.candidates:,} {facts.pieces} · {'centred' if facts.centered else 'raw'}", style="dim"))
        if facts.embed_scale:
            lines.append(Text(f"× √{facts.dim} = {facts.embed_scale:.2f} in the model", style="dim"))
        return lines
    tied = "tied to the output head" if facts.tied else "the output head is a separate matrix"
    lines = [Text(f"{facts.vocab_size:,} × {facts.dim} input embeddings · {tied}", style="dim")]
    if isinstance(report, NeighborsReport):
        centred = "centred (the mean embedding subtracted first)" if facts.centered else "raw vectors (--center subtracts the mean)"
        lines.append(Text(f"{facts.candidates:,} {facts.pieces} ranked · {centred}", style="dim"))
    if facts.embed_scale:
        lines.append(Text(f"the model multiplies these vectors by √{facts.dim} = {facts.embed_scale:.2f} before the first block; cosines do not change", style="dim"))
    return lines


def _table(report: NeighborsReport, console: Console, narrow: bool) -> Table:
    t = views.table(console)
    t.add_column("rank", justify="right", no_wrap=True)
    t.add_column("token", no_wrap=True, max_width=16, overflow="ellipsis")
    if not narrow:
        t.add_column("id", justify="right", no_wrap=True)
    t.add_column("score" if report.method == "3cosmul" else "cosine", justify="right", no_wrap=True)
    show_bar = not views.plain(console) and not narrow and report.method != "3cosmul"
    if show_bar:
        t.add_column("", no_wrap=True, style="cyan")
    for n in report.neighbors:
        cells: list = [str(n.rank), token_text(n.text)]
        if not narrow:
            cells.append(str(n.id))
        cells.append(f"{n.score:.3f}")
        if show_bar:
            cells.append(bar(max(0.0, n.score), BAR))
        t.add_row(*cells)
    return t


def _neighbors(report: NeighborsReport, console: Console, narrow: bool) -> Group:
    method = {"cosine": "cosine", "3cosadd": "3CosAdd", "3cosmul": "3CosMul"}[report.method] if narrow else _METHODS[report.method]
    parts = [_question(report), Text(f"{views.model_name(report.model)} · {method}", style="dim"), _table(report, console, narrow)]
    return Group(*parts, *_facts(report, narrow))


def _numbers(values: Sequence[float], width: int) -> list[Text]:
    """The first components, as many to a line as fit, each line led by its first index."""
    per_line = max(1, (width - 7) // 9)
    lines = []
    for start in range(0, len(values), per_line):
        chunk = values[start : start + per_line]
        lines.append(Text.assemble((f"{start:>5}  ", "dim"), " ".join(f"{x:+.5f}"[:8] for x in chunk)))
    return lines


def _vector(report: VectorReport, width: int) -> Group:
    word = report.word
    where = " (the mean of its pieces' vectors)" if word.averaged else f": row {word.ids[0]} of the embedding matrix"
    lines = [
        Text.assemble(_word(word), (f" is a list of {report.facts.dim} numbers{where}", "dim")),
        Text(f"{views.model_name(report.model)} · the first {len(report.first)}:", style="dim"),
        *_numbers(report.first, width),
        Text.assemble(("norm ", "dim"), f"{report.norm:.3f}", (f", larger than {report.percentile:.1f}% of the vocabulary's vectors", "dim")),
        Text(f"(their norms: min {report.norm_min:.3f}, median {report.norm_median:.3f}, max {report.norm_max:.3f})", style="dim"),
    ]
    if report.facts.embed_scale:
        lines.append(Text(f"scaled by √{report.facts.dim} = {report.facts.embed_scale:.2f} as the model reads it, its norm is {report.norm * report.facts.embed_scale:.2f}", style="dim"))
    return Group(*lines, *_facts(report, True)[:1])


def _refused(result: Refused) -> Group:
    lines = [Text(views.model_name(result.model), style="bold"), render.literal(result.message, style="yellow")]
    if result.hint:
        lines.append(render.literal(result.hint, style="dim"))
    return Group(*lines)


def _one(result: Result, console: Console, narrow: bool):
    if isinstance(result, Refused):
        return _refused(result)
    if isinstance(result, VectorReport):
        return _vector(result, console.width // (2 if narrow else 1))
    return _neighbors(result, console, narrow)


def render_results(results: Sequence[Result], console: Console | None = None) -> None:
    out = console or render.stdout()
    if len(results) == 1:
        views.emit(out, _one(results[0], out, narrow=False))
        return
    narrow = True  # side by side: short facts, no id column or bars
    grid = Table.grid(padding=(0, 3))
    for _ in results:
        grid.add_column(ratio=1)
    grid.add_row(*[_one(r, out, narrow) for r in results])
    note = Text("the vocabularies differ: each model ranks its own tokens", style="dim")
    views.emit(out, grid, None, note)
