"""`probs` on the terminal: the next-token table, the temperature sweep, the sampler replay,
and targets (the unrolled loop is `render.steps`; the small pieces `render.pieces`).

Layout choices:
- Everything fits 80 columns: the token column is capped (long pieces end in `…`), numbers are
  right-aligned with fixed decimals, probabilities are percentages.
- Bars are on an absolute scale (a full bar is probability 1), so two rows, two temperatures or
  two prompts compare by length.
- When stdout is not a terminal (`render.plain()`), tables lose their borders, bars and colour
  and stay aligned columns of plain text.
"""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from llmcli import render
from llmcli.inspect.next_token import (
    NextTokenTable,
    ProbsReport,
    PromptToken,
    TargetScore,
)
from llmcli.inspect.sampler import SamplerReplay
from llmcli.render.pieces import BAR_WIDTH, bar, grid_table, heat, percent, quoted, small_prob, temperature_label, token_column, token_id, token_text

def _tail(tokens: tuple[PromptToken, ...], width: int) -> Text:
    """The end of the prompt, as many tokens as fit in `width` cells, `…` when cut."""
    pieces: list[Text] = []
    used = 0
    for tok in reversed(tokens):
        piece = token_text(tok.text, tok.special)
        if used + piece.cell_len > width - 1 and pieces:
            pieces.append(Text("…", style="dim"))
            break
        pieces.append(piece)
        used += piece.cell_len
    return Text.assemble(*reversed(pieces))


# ---------------------------------------------------------------------------- the report


def render_report(report: ProbsReport, *, verbose_steps: bool = False, console: Console | None = None) -> None:
    """The whole report on stdout (or `console`); with `--steps`, the loop replaces the table."""
    out = console or render.stdout()
    plain = render.plain() if console is None else not out.is_terminal
    table = report.table
    render_heading(report, out)
    if report.steps is not None:
        from llmcli.render.steps import StepsView

        view = StepsView(out, report.steps, report.prompt, verbose=verbose_steps)
        for step in report.steps.steps:
            view.add(step)
        view.close(report.steps)
    elif report.sampler is not None:
        render.print_block(out, _sampler_table(table, report.sampler, plain))
        out.print()
        out.print(_sampler_footer(report.sampler))
    elif len(table.columns) == 1:
        render.print_block(out, _single_table(table, plain))
        out.print()
        if table.actual_next is not None:
            out.print(_actual_next(table, report.next_is))
        out.print(_footer(table, bool(report.approximate)))
    else:
        render.print_block(out, _sweep_table(table, plain))
        if table.actual_next is not None:
            out.print()
            out.print(_actual_next(table, report.next_is))
    for target in report.targets:
        out.print()
        _render_target(out, target, table.vocab_size, plain)


def render_heading(report: ProbsReport, out: Console, *, generating: bool = False) -> None:
    """What is predicted after what, and a blank line: the top of every probs view."""
    out.print(_heading(report, out.width, generating or report.steps is not None))
    if report.approximate:  # a remote model: the table is the server's top 20
        out.print(Text(report.approximate, style="yellow"))
    out.print()


def _heading(report: ProbsReport, width: int, generating: bool) -> Text:
    """What was predicted after what: the end of the prompt, then the model and the token count."""
    table = report.table
    n = len(report.prompt_tokens)
    model = report.model if "/" not in report.model.strip("/") else Path(report.model).name
    where = f"{model} · {report.mode} prompt · {n} token{'s' if n != 1 else ''}"
    seen = report.prompt_tokens[: table.position + 1]
    if not seen and report.prompt:  # a server that does not tokenize: the prompt's text
        seen = (PromptToken(-1, report.prompt, False),)
        where = f"{model} · {report.mode} prompt"
    if generating:
        label = "Generating after "
    elif table.position == n - 1:
        label = "Next token after "
    else:
        label = f"Next token after position {table.position}, "
    one_line = width - len(label) - len(where) - 5
    if one_line >= min(24, sum(len(t.text) for t in seen) + 1):
        return Text.assemble((label, "bold"), ("“", "dim"), _tail(seen, one_line), ("”", "dim"), ("   " + where, "dim"))
    budget = max(12, width - len(label) - 2)
    return Text.assemble((label, "bold"), ("“", "dim"), _tail(seen, budget), ("”", "dim"), ("\n" + where, "dim"))


def _single_table(table: NextTokenTable, plain: bool) -> Table:
    column = table.columns[0]
    t = grid_table(plain)
    t.add_column("rank", justify="right")
    token_column(t)
    t.add_column("id", justify="right")
    t.add_column("logit", justify="right")
    t.add_column("prob" if column.temperature == 1 else f"p {temperature_label(column.temperature)}", justify="right")
    t.add_column("cum", justify="right")
    actual = table.actual_next.id if table.actual_next else None
    if not plain:
        t.add_column("", no_wrap=True, style="cyan", min_width=BAR_WIDTH if actual is not None else 0)
    if actual is not None:
        t.add_column("", no_wrap=True)
    for row, p, cum in zip(table.rows, column.probs, column.cumulative):
        cells: list[Text | str] = [str(row.rank), token_text(row.text, row.special), token_id(row.id), f"{row.logit:.2f}", percent(p), percent(cum)]
        if not plain:
            cells.append(bar(p))
        if actual is not None:
            cells.append(Text("◀ came next", style="bold yellow") if row.id == actual else "")
        t.add_row(*cells)
    return t


def _footer(table: NextTokenTable, top_only: bool = False) -> Text:
    column = table.columns[0]
    vocabulary = f"the server's top {table.vocab_size}" if top_only else f"{table.vocab_size:,} tokens"
    at = "" if column.temperature == 1 else f" at {temperature_label(column.temperature)}"
    return Text.assemble(
        ("entropy ", "dim"),
        f"{column.entropy_bits:.2f} bits",
        (f"{at}: as uncertain as a fair pick among {_effective(column.entropy)} tokens\n", "dim"),
        (f"these {len(table.rows)} rows hold ", "dim"),
        percent(column.coverage),
        (f" of the probability (vocabulary: {vocabulary})", "dim"),
    )


def _effective(entropy_nats: float) -> str:
    """exp(entropy): how many equally likely tokens would be this uncertain."""
    n = math.exp(entropy_nats)
    return f"{n:.1f}" if n < 100 else f"{n:,.0f}"


def _sweep_table(table: NextTokenTable, plain: bool) -> Table:
    t = grid_table(plain)
    t.add_column("rank", justify="right")
    token_column(t)
    t.add_column("id", justify="right")
    t.add_column("logit", justify="right")
    for column in table.columns:
        t.add_column(temperature_label(column.temperature), justify="right", no_wrap=True)
    for i, row in enumerate(table.rows):
        cells = [str(row.rank), token_text(row.text, row.special), token_id(row.id), f"{row.logit:.2f}"]
        for column in table.columns:
            p = column.probs[i]
            cells.append(Text(percent(p), style=heat(p)))
        t.add_row(*cells)
    t.add_section()
    if plain:
        t.add_row()
    t.add_row("", Text("entropy, bits", style="dim"), "", "", *[f"{c.entropy_bits:.2f}" for c in table.columns])
    t.add_row("", Text("rows hold", style="dim"), "", "", *[percent(c.coverage) for c in table.columns])
    return t


def _actual_next(table: NextTokenTable, next_is: str = "prompt") -> Text:
    actual = table.actual_next
    assert actual is not None
    return Text.assemble(
        ("the reply began with: " if next_is == "reply" else "came next in the prompt: ", "bold"),
        quoted(actual.text, actual.special),
        f"  rank {actual.rank:,}  prob {small_prob(actual.prob)}",
        (f"  (id {actual.id}, logit {actual.logit:.2f})", "dim"),
    )


# ---------------------------------------------------------------------------- the sampler


def _stage_label(name: str, setting: float) -> str:
    if name == "temperature":
        return temperature_label(setting)
    if name == "top-k":
        return f"top-k {setting:g}"
    return f"{name} {setting:g}"


def _sampler_table(table: NextTokenTable, replay: SamplerReplay, plain: bool) -> Table:
    t = grid_table(plain)
    t.add_column("rank", justify="right")
    token_column(t)
    t.add_column("id", justify="right")
    t.add_column("logit", justify="right")
    t.add_column("prob", justify="right")
    # T=1 changes nothing: its column would repeat `prob`.
    stages = [s for s in replay.stages if not (s.name == "temperature" and s.setting == 1)]
    for stage in stages:
        t.add_column(_stage_label(stage.name, stage.setting), justify="right", no_wrap=True)
    final = replay.final
    for i, row in enumerate(table.rows):
        cut = final.probs[i] is None
        cells: list[Text | str] = [str(row.rank), token_text(row.text, row.special), token_id(row.id), f"{row.logit:.2f}", percent(row.prob)]
        for stage in stages:
            p = stage.probs[i]
            cells.append(Text("cut", style="dim red") if p is None else Text(percent(p), style="bold" if stage is final else ""))
        t.add_row(*cells, style="dim" if cut else None)
    t.add_section()
    if plain:
        t.add_row()
    t.add_row("", Text("survivors", style="dim"), "", "", f"{table.vocab_size:,}", *[f"{s.survivors:,}" for s in stages])
    t.add_row("", Text("mass kept", style="dim"), "", "", "", *[percent(s.mass_kept) for s in stages])
    return t


def _sampler_footer(replay: SamplerReplay) -> Text:
    final = replay.final
    hidden = final.survivors - sum(p is not None for p in final.probs)
    text = Text(
        "Each column renormalises the survivors of the stage before it (the order the sampler applies them); "
        "the last column is what sampling draws from.",
        style="dim",
    )
    if hidden > 0:
        text.append(f" {hidden:,} more survivor{'s' if hidden != 1 else ''} not shown (raise -n).", style="dim")
    return text


# ---------------------------------------------------------------------------- targets


def _render_target(out: Console, target: TargetScore, vocab_size: int, plain: bool) -> None:
    n = len(target.tokens)
    first = target.tokens[0]
    if n == 1:
        out.print(
            Text.assemble(
                ("target ", "bold"),
                quoted(first.text, first.special),
                f"  rank {first.rank:,} of {vocab_size:,}  logit {first.logit:.2f}  prob {small_prob(first.prob)}",
                (f"  log p {first.logprob:.3f}", "dim"),
            )
        )
        return
    out.print(
        Text.assemble(
            ("target ", "bold"),
            quoted(target.text),
            (f"  {n} tokens", "dim"),
            f"  prob {small_prob(target.prob)}",
            (f"  log p {target.logprob:.3f}", "dim"),
        )
    )
    t = grid_table(plain)
    t.add_column("#", justify="right")
    token_column(t)
    t.add_column("id", justify="right")
    t.add_column("rank", justify="right")
    t.add_column("logit", justify="right")
    t.add_column("prob", justify="right")
    t.add_column("log p", justify="right")
    for i, tok in enumerate(target.tokens, start=1):
        t.add_row(
            str(i), token_text(tok.text, tok.special), token_id(tok.id), f"{tok.rank:,}", f"{tok.logit:.2f}", small_prob(tok.prob), f"{tok.logprob:.3f}"
        )
    render.print_block(out, t)
    out.print(Text(f"ranks are among all {vocab_size:,} tokens; each token is scored after the ones before it, and the target's probability is the product", style="dim"))
