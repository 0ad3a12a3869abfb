"""`probs` on the terminal: the next-token table, the temperature sweep, the sampler replay,
targets, and the unrolled loop.

Layout choices:
- Everything fits 80 columns: the token column is capped (long pieces end in `…`), numbers are
  right-aligned with fixed decimals, probabilities are percentages.
- Bars are on an absolute scale (a full bar is probability 1), so two rows, two temperatures or
  two prompts compare by length. Eighth-blocks give them sub-character resolution; any non-zero
  probability gets at least a sliver.
- Token text is literal: spaces `·`, newlines `↵`, tabs `→`, control characters `\\xNN` and
  other invisible characters (no-break space, zero-width joiner) `\\uNNNN` are drawn dim, so
  they read as markers, not as text; special tokens are magenta.
- When stdout is not a terminal (`render.plain()`), tables lose their borders, bars and colour
  and stay aligned columns of plain text.
"""

from __future__ import annotations

import math
import unicodedata
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from llmcli import render
from llmcli.inspect.next_token import (
    NextTokenTable,
    ProbsReport,
    PromptToken,
    Step,
    TargetScore,
    Unrolled,
)
from llmcli.inspect.sampler import SamplerReplay

TOKEN_WIDTH = 16
BAR_WIDTH = 20
_EIGHTHS = " ▏▎▍▌▋▊▉"
_VISIBLE = {" ": "·", "\n": "↵", "\t": "→"}
_INVISIBLE = {"Zs", "Zl", "Zp", "Cf"}  # other spaces, line/paragraph separators, format characters


# ---------------------------------------------------------------------------- small pieces


def token_text(text: str, special: bool = False) -> Text:
    """A token's text, literally: whitespace and controls as dim markers, specials in magenta."""
    if text == "":
        return Text("(empty)", style="dim italic")
    out = Text(style="magenta" if special else "")
    for ch in text:
        if ch in _VISIBLE:
            out.append(_VISIBLE[ch], style="dim")
        elif unicodedata.category(ch) in _INVISIBLE:  # no-break and wide spaces, zero-width joiners
            out.append(f"\\u{ord(ch):04x}", style="dim")
        else:
            escaped = render.escape_controls(ch)
            out.append(escaped, style="dim" if escaped != ch else "")
    return out


def quoted(text: str, special: bool = False) -> Text:
    return Text.assemble(("“", "dim"), token_text(text, special), ("”", "dim"))


def percent(p: float | None) -> str:
    """0.4483 -> '44.83%'; tiny but non-zero probabilities stay distinguishable from zero."""
    if p is None:
        return "—"
    if p == 0:
        return "0"
    if p < 0.00005:
        return "<0.01%"
    return f"{100 * p:.2f}%"


def short_percent(p: float) -> str:
    """One decimal, for the alternatives beside a pick."""
    return "<0.1%" if 0 < p < 0.0005 else f"{100 * p:.1f}%"


def small_prob(p: float) -> str:
    """For products of probabilities, which can be very small: percent, or scientific below 0.01%."""
    return percent(p) if p >= 0.0001 or p == 0 else f"{p:.2e}"


def bar(p: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar `width` cells long at p = 1, in eighths of a cell."""
    eighths = round(max(0.0, min(1.0, p)) * width * 8)
    if eighths == 0 and p > 0:
        eighths = 1
    full, rest = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[rest] if rest else "")


def token_id(i: int) -> str:
    """A token's id; "?" for a remote token whose server did not say."""
    return str(i) if i >= 0 else "?"


def temperature_label(t: float) -> str:
    return f"T={t:g}"


def _table(plain: bool, **kwargs) -> Table:
    """Columns two cells apart, a rule under the header on a terminal, nothing around the edges."""
    if plain:
        return Table(box=None, show_edge=False, pad_edge=False, padding=(0, 1, 0, 1), **kwargs)
    return Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), **kwargs)


def heat(p: float | None) -> str:
    """A style for a probability: the likely stand out, the negligible recede."""
    if p is None or p < 0.01:
        return "dim"
    return "bold" if p >= 0.5 else ""


def _token_column(table: Table, header: str = "token") -> None:
    table.add_column(header, max_width=TOKEN_WIDTH, no_wrap=True, overflow="ellipsis")


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
    out.print(_heading(report, out.width))
    if report.approximate:  # a remote model: the table is the server's top 20
        out.print(Text(report.approximate, style="yellow"))
    out.print()
    if report.steps is not None:
        _render_steps(out, report, plain, verbose_steps)
    elif report.sampler is not None:
        out.print(_sampler_table(table, report.sampler, plain))
        out.print()
        out.print(_sampler_footer(report.sampler))
    elif len(table.columns) == 1:
        out.print(_single_table(table, plain))
        out.print()
        if table.actual_next is not None:
            out.print(_actual_next(table))
        out.print(_footer(table, bool(report.approximate)))
    else:
        out.print(_sweep_table(table, plain))
        if table.actual_next is not None:
            out.print()
            out.print(_actual_next(table))
    for target in report.targets:
        out.print()
        _render_target(out, target, table.vocab_size, plain)


def _heading(report: ProbsReport, width: int) -> Text:
    """What was predicted after what: the end of the prompt, then the model and the token count."""
    table = report.table
    n = len(report.prompt_tokens)
    model = report.model if "/" not in report.model.strip("/") else Path(report.model).name
    where = f"{model} · {report.mode} prompt · {n} token{'s' if n != 1 else ''}"
    seen = report.prompt_tokens[: table.position + 1]
    if not seen and report.prompt:  # a server that does not tokenize: the prompt's text
        seen = (PromptToken(-1, report.prompt, False),)
        where = f"{model} · {report.mode} prompt"
    if report.steps is not None:
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
    t = _table(plain)
    t.add_column("rank", justify="right")
    _token_column(t)
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
    t = _table(plain)
    t.add_column("rank", justify="right")
    _token_column(t)
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


def _actual_next(table: NextTokenTable) -> Text:
    actual = table.actual_next
    assert actual is not None
    return Text.assemble(
        ("came next in the prompt: ", "bold"),
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
    t = _table(plain)
    t.add_column("rank", justify="right")
    _token_column(t)
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
    t = _table(plain)
    t.add_column("#", justify="right")
    _token_column(t)
    t.add_column("id", justify="right")
    t.add_column("rank", justify="right")
    t.add_column("logit", justify="right")
    t.add_column("prob", justify="right")
    t.add_column("log p", justify="right")
    for i, tok in enumerate(target.tokens, start=1):
        t.add_row(
            str(i), token_text(tok.text, tok.special), token_id(tok.id), f"{tok.rank:,}", f"{tok.logit:.2f}", small_prob(tok.prob), f"{tok.logprob:.3f}"
        )
    out.print(t)
    out.print(Text(f"ranks are among all {vocab_size:,} tokens; each token is scored after the ones before it,\nand the target's probability is the product", style="dim"))


# ---------------------------------------------------------------------------- the loop


def _sampling_label(steps: Unrolled) -> str:
    if steps.greedy:
        return "greedy (T=0): every step picks the most likely token"
    parts = [temperature_label(steps.temperature)]
    if steps.top_k is not None:
        parts.append(f"top-k {steps.top_k}")
    if steps.top_p is not None:
        parts.append(f"top-p {steps.top_p:g}")
    if steps.min_p is not None:
        parts.append(f"min-p {steps.min_p:g}")
    parts.append(f"seed {steps.seed}" if steps.seed is not None else "no seed")
    return "sampled: " + ", ".join(parts) + " · prob is the model's own, before the cuts"


def _render_steps(out: Console, report: ProbsReport, plain: bool, verbose: bool) -> None:
    steps = report.steps
    assert steps is not None
    out.print(Text(_sampling_label(steps), style="dim"))
    out.print()
    if verbose:
        for step in steps.steps:
            _step_table(out, step, plain)
            out.print()
    else:
        out.print(_steps_table(steps, plain, out.width))
    reason = {"stop": "an end token or stop string", "length": "the step limit", "interrupted": "Ctrl-C"}.get(
        steps.finish_reason, steps.finish_reason
    )
    out.print()
    out.print(Text(f"{len(steps.steps)} step{'s' if len(steps.steps) != 1 else ''}, stopped by {reason}:", style="dim"))
    prompt = report.prompt if len(report.prompt) <= 60 else "…" + report.prompt[-59:]
    out.print(Text.assemble(render.literal(prompt, style="dim"), render.literal(steps.text, style="bold")))


def _steps_table(steps: Unrolled, plain: bool, width: int) -> Table:
    t = _table(plain)
    t.add_column("step", justify="right")
    t.add_column("picked", max_width=12, no_wrap=True, overflow="ellipsis")
    t.add_column("prob", justify="right")
    t.add_column("next best", max_width=26, no_wrap=True, overflow="ellipsis")
    t.add_column("text so far", no_wrap=True, overflow="ellipsis")
    budget = max(12, width - 59)
    for step in steps.steps:
        picked = token_text(step.text, step.special)
        if step.rank not in (None, 1):
            picked.append(f" #{step.rank}", style="yellow")
        elif step.rank is None and not steps.greedy:
            picked.append(f" >#{len(step.candidates)}", style="yellow")
        others = [a for a in step.candidates if a.id != step.id][:2]
        best = Text()
        for a in others:
            if best:
                best.append("  ")
            best.append_text(token_text(a.text, a.special))
            best.append(f" {short_percent(a.prob)}", style="dim")
        so_far = _visible_tail(step.output, budget)
        t.add_row(str(step.index), picked, percent(step.prob), best, so_far)
    return t


def _visible_tail(text: str, width: int) -> Text:
    shown = token_text(text) if text else Text("")
    if shown.cell_len <= width:
        return shown
    return Text.assemble(("…", "dim"), shown[len(shown) - (width - 1) :])


def _step_table(out: Console, step: Step, plain: bool) -> None:
    title = Text.assemble(
        (f"step {step.index}", "bold"),
        ("  picked ", "dim"),
        quoted(step.text, step.special),
        (f"  {percent(step.prob)}", ""),
    )
    out.print(title)
    t = _table(plain)
    t.add_column("rank", justify="right")
    _token_column(t)
    t.add_column("id", justify="right")
    t.add_column("prob", justify="right")
    t.add_column("cum", justify="right")
    if not plain:
        t.add_column("", no_wrap=True, style="cyan", min_width=BAR_WIDTH)
    t.add_column("")
    cum = 0.0
    for a in step.candidates:
        cum += a.prob
        cells: list[Text | str] = [str(a.rank), token_text(a.text, a.special), token_id(a.id), percent(a.prob), percent(cum)]
        if not plain:
            cells.append(bar(a.prob))
        cells.append(Text("◀ picked", style="bold yellow") if a.id == step.id else "")
        t.add_row(*cells)
    if step.rank is None:
        t.add_row("", token_text(step.text, step.special), token_id(step.id), percent(step.prob), "", *([""] if not plain else []), Text("◀ picked", style="bold yellow"))
    out.print(t)
    out.print(Text.assemble(("text so far: ", "dim"), _visible_tail(step.output, max(20, out.width - 14))))
