"""`score` on the terminal: the text coloured token by token, the totals, the surprises.

Layout choices:
- By rank (the default) each token gets GLTR's colour for its bucket (top-10 green, top-100
  yellow, top-1000 red, beyond purple), with a legend carrying each bucket's count. By surprisal
  (−log₂ p) a yellow-to-red heat scale in bits, with its legend. Text stays readable as text:
  spaces are spaces (the background shows each token's extent), a newline is drawn `↵` and
  still breaks the line, tabs `→`, controls `\\xNN`. Tokens that are not scored are dim.
- Without colour (a pipe, NO_COLOR) the coloured text becomes one row per token: position,
  token, rank, bucket, bits; everything else is the same.
- Surprises: the least likely tokens that were not the model's first choice, least likely
  first, each with the model's top 3 at that point.
- Several models: a comparison table first (bits per byte is the figure that compares across
  tokenizers), then each model's text and surprises.
"""

from __future__ import annotations

from typing import Sequence

from rich.console import Console
from rich.text import Text

from llmcli import render
from llmcli.inspect.score import ScoredToken, ScoreReport
from llmcli.render import views
from llmcli.render.pieces import quoted, short_percent, token_text

GLTR = {"top-10": "#000000 on #adff80", "top-100": "#000000 on #ffea80", "top-1000": "#000000 on #ff9280", "beyond": "#000000 on #e5b0ff"}
# ColorBrewer YlOrRd, lower bounds in bits
HEAT = [(0, "#ffffcc"), (1, "#ffeda0"), (2, "#fed976"), (4, "#feb24c"), (6, "#fd8d3c"), (8, "#fc4e2a"), (11, "#e31a1c"), (15, "#b10026")]
_DRAWN = {"\n": "↵\n", "\t": "→"}


def heat_style(bits: float) -> str:
    colour = [c for floor, c in HEAT if bits >= floor][-1] if bits >= 0 else HEAT[0][1]
    dark = colour in ("#e31a1c", "#b10026", "#fc4e2a")
    return f"{'#ffffff' if dark else '#000000'} on {colour}"


def bucket_style(bucket: str) -> str:
    """GLTR's colour; a server's coarser buckets (top-10, top-20, beyond top-20) take the
    colours of the ranks they hold: green, yellow, purple."""
    return GLTR.get(bucket) or (GLTR["beyond"] if bucket.startswith("beyond") else GLTR["top-100"])


def token_style(token: ScoredToken, by: str) -> str:
    return bucket_style(token.bucket) if by == "rank" else heat_style(token.surprisal_bits)


def _piece(text: str, style: str) -> Text:
    """Token text for the running text: literal, spaces kept, newline and tab drawn."""
    out = Text()
    for i, part in enumerate(render.escape_controls(text).split("\n")):
        if i:
            out.append("↵", style=f"{style} dim" if style else "dim")
            out.append("\n")
        out.append(part.replace("\t", "→"), style=style)
    return out


def coloured_text(report: ScoreReport, by: str) -> Text:
    out = Text()
    for token in report.leading:
        out.append_text(_piece(token.text, "dim"))
    for token in report.scores.tokens:
        out.append_text(_piece(token.text, "magenta" if token.special else token_style(token, by)))
    return out


def _legend(report: ScoreReport, by: str, console: Console) -> Text:
    if by == "rank":
        buckets = report.scores.totals.buckets
        return Text.assemble(("rank: ", "dim"), views.legend(((bucket_style(b), f"{b} {n}") for b, n in buckets), console))
    items = [(f"on {c}", f"{floor}+" if i == len(HEAT) - 1 else f"{floor}") for i, (floor, c) in enumerate(HEAT)]
    return Text.assemble(("surprisal, bits: ", "dim"), views.legend(items, console))


def _first_note(report: ScoreReport) -> Text:
    model = views.model_name(report.model)
    if report.first == "bos":
        return Text(f"The first token is scored from BOS ({model}'s tokenizer adds one).", style="dim")
    if report.first == "unscored":
        first = report.leading[0]
        return Text.assemble(quoted(first.text, first.special), (f" is not scored: nothing comes before it ({model} adds no BOS).", "dim"))
    return Text(f"Only the reply is scored: {report.scores.tokens[0].context} tokens of chat prompt come before it.", style="dim")


def _token_rows(report: ScoreReport, console: Console):
    t = views.table(console)
    for name, justify in (("pos", "right"), ("token", "left"), ("rank", "right"), ("bucket", "left"), ("bits", "right")):
        t.add_column(name, justify=justify, no_wrap=True, max_width=16 if name == "token" else None, overflow="ellipsis")
    for token in report.leading:
        t.add_row("", token_text(token.text, token.special), "—", "not scored", "")
    for token in report.scores.tokens:
        t.add_row(str(token.position), token_text(token.text, token.special), token.rank_text, token.bucket, f"{token.surprisal_bits:.2f}")
    return t


def _totals(report: ScoreReport, console: Console):
    totals, scores = report.scores.totals, report.scores
    t = views.table(console, show_header=False)
    t.add_column("what", style="dim", no_wrap=True)
    t.add_column("value", no_wrap=False)
    t.add_row("tokens scored", f"{totals.tokens:,}")
    t.add_row("mean NLL", f"{totals.mean_nll:.3f} nats · {totals.bits_per_token:.3f} bits per token")
    t.add_row("perplexity", f"{totals.perplexity:,.2f}")
    t.add_row("bits per byte", f"{totals.bits_per_byte:.3f}  ({totals.bytes:,} UTF-8 bytes scored)")
    if scores.windowed:
        t.add_row("window", f"{scores.windows} windows of ≤{scores.window:,} tokens, stride {scores.stride:,}: every token scored once, with at least {scores.stride:,} tokens of context")
    else:
        t.add_row("window", f"one pass over {scores.window:,} tokens")
    if scores.tokens and scores.tokens[0].ranked is not None:
        t.add_row("ranks", f"from the server's top {scores.tokens[0].ranked} log-probabilities: a rank past them is shown >{scores.tokens[0].ranked}")
    return t


def _surprises(report: ScoreReport, count: int, console: Console):
    worst = sorted((t for t in report.scores.tokens if t.rank > 1), key=lambda t: t.logprob)[:count]
    t = views.table(console, title=None)
    t.add_column("pos", justify="right", no_wrap=True)
    t.add_column("token", max_width=14, no_wrap=True, overflow="ellipsis")
    t.add_column("prob", justify="right", no_wrap=True)
    t.add_column("rank", justify="right", no_wrap=True)
    t.add_column("bits", justify="right", no_wrap=True)
    t.add_column("expected instead", no_wrap=True, overflow="ellipsis")
    for token in worst:
        expected = Text()
        for e in token.expected:
            if expected:
                expected.append("  ")
            expected.append_text(token_text(e.text, e.special))
            expected.append(f" {short_percent(e.prob)}", style="dim")
        t.add_row(str(token.position), token_text(token.text, token.special), short_percent(token.prob), token.rank_text, f"{token.surprisal_bits:.1f}", expected)
    return t


def _heading(report: ScoreReport) -> Text:
    mode = {"raw": "raw text", "chat": "as a chat reply", "template": "as a reply in the plain chat template"}[report.mode]
    n = len(report.leading) + len(report.scores.tokens)
    return Text.assemble(("Score", "bold"), (f"  {views.model_name(report.model)} · {mode} · {n:,} tokens, {report.scores.totals.tokens:,} scored", "dim"))


def render_one(report: ScoreReport, console: Console, *, by: str = "rank", surprises: int = 8) -> None:
    if views.coloured(console):
        text = coloured_text(report, by)
        views.emit(console, _heading(report), None, text, None, _legend(report, by, console), _first_note(report))
    else:
        views.emit(console, _heading(report), None, _token_rows(report, console), None, _first_note(report))
    views.emit(console, None, _totals(report, console))
    if surprises > 0 and any(t.rank > 1 for t in report.scores.tokens):
        title = Text.assemble(("Surprises", "bold"), (": the least likely tokens, and what the model expected there", "dim"))
        views.emit(console, None, title, _surprises(report, surprises, console))


def _comparison(reports: Sequence[ScoreReport], console: Console):
    t = views.table(console)
    t.add_column("", style="dim", no_wrap=True)
    for r in reports:
        t.add_column(views.model_name(r.model), justify="right", no_wrap=True)
    rows = [
        ("tokens scored", lambda r: f"{r.scores.totals.tokens:,}"),
        ("bits per byte", lambda r: f"{r.scores.totals.bits_per_byte:.3f}"),
        ("bits per token", lambda r: f"{r.scores.totals.bits_per_token:.3f}"),
        ("perplexity", lambda r: f"{r.scores.totals.perplexity:,.2f}"),
        ("top-10 share", lambda r: f"{dict(r.scores.totals.buckets).get('top-10', 0) / r.scores.totals.tokens:.0%}"),
    ]
    for name, value in rows:
        t.add_row(name, *[value(r) for r in reports])
    return t


def render_reports(reports: Sequence[ScoreReport], *, by: str = "rank", surprises: int = 8, console: Console | None = None) -> None:
    """One model's report, or several models' one after another after a comparison table."""
    out = console or render.stdout()
    if len(reports) > 1:
        note = Text("bits per byte compares across tokenizers; per-token figures do not (the tokens differ)", style="dim")
        views.emit(out, Text("Score: the same text under each model", style="bold"), _comparison(reports, out), note)
        for report in reports:
            views.emit(out, None, Text("─" * min(40, out.width), style="dim") if not views.plain(out) else None)
            render_one(report, out, by=by, surprises=surprises)
        return
    render_one(reports[0], out, by=by, surprises=surprises)


class ScoringProgress:
    """A bar on stderr while the windows of a long text are scored (a terminal only, and
    only when there is more than one window); the callback `Model.score` reports to."""

    def __init__(self, label: str):
        self.label, self.bar, self.task = label, None, None

    def __enter__(self):
        return self.update

    def update(self, done: int, total: int) -> None:
        console = render.stderr()
        if self.bar is None and done < total and console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            columns = (TextColumn(f"Scoring with {render.escape_controls(self.label)}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            self.bar = Progress(*columns, console=console, transient=True)
            self.task = self.bar.add_task("", total=total)
            self.bar.start()
        if self.bar is not None:
            self.bar.update(self.task, completed=done)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
