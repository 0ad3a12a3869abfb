"""`probs --steps`: the generation loop unrolled, a row (or a table) per step as it is computed.

`StepsView` is fed one `Step` at a time, so a long unroll shows its steps as they come,
on a terminal and in a pipe alike: the rows are printed one by one under a header, with
fixed column widths, rather than as one table at the end. A legend says what the marks on
a sampled pick mean: `#4`, the pick was the 4th most likely of the candidates shown; `>#10`,
it was not among the 10 shown at all.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from llmcli import render
from llmcli.inspect.next_token import Step, Unrolled
from llmcli.render.pieces import BAR_WIDTH, bar, grid_table, percent, quoted, short_percent, temperature_label, token_column, token_id, token_text

# Fixed widths, so rows printed one at a time line up: step, picked, prob, next best.
WIDTHS = (4, 14, 7, 26)


def sampling_label(steps) -> str:
    """How the steps pick (an `Unrolled` or the `SamplingSettings` it runs with)."""
    if steps.temperature == 0:
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


class StepsView:
    def __init__(self, out: Console, settings, prompt: str, *, verbose: bool = False):
        self.out, self.settings, self.prompt, self.verbose = out, settings, prompt, verbose
        self.plain = not out.is_terminal
        out.print(Text(sampling_label(settings), style="dim"))
        if settings.temperature != 0:
            out.print(Text("a mark after a pick: #4, the 4th most likely of the candidates shown; >#N, not among the N shown", style="dim"))
        out.print()
        if not verbose:
            self._row("step", "picked", "prob", "next best", "text so far", header=True)

    def add(self, step: Step) -> None:
        if self.verbose:
            self._step_table(step)
            self.out.print()
            return
        picked = token_text(step.text, step.special)
        if step.rank not in (None, 1):
            picked.append(f" #{step.rank}", style="yellow")
        elif step.rank is None and self.settings.temperature != 0:
            picked.append(f" >#{len(step.candidates)}", style="yellow")
        best = Text()
        for a in [a for a in step.candidates if a.id != step.id][:2]:
            if best:
                best.append("  ")
            best.append_text(token_text(a.text, a.special))
            best.append(f" {short_percent(a.prob)}", style="dim")
        self._row(str(step.index), picked, percent(step.prob), best, _visible_tail(step.output, self._room()))

    def close(self, unrolled: Unrolled) -> None:
        reason = {"stop": "an end token or stop string", "length": "the step limit", "interrupted": "Ctrl-C"}.get(
            unrolled.finish_reason, unrolled.finish_reason
        )
        n = len(unrolled.steps)
        self.out.print()
        self.out.print(Text(f"{n} step{'s' if n != 1 else ''}, stopped by {reason}:", style="dim"))
        prompt = self.prompt if len(self.prompt) <= 60 else "…" + self.prompt[-59:]
        self.out.print(Text.assemble(render.literal(prompt, style="dim"), render.literal(unrolled.text, style="bold")))

    def _room(self) -> int:
        return max(12, self.out.width - sum(WIDTHS) - 2 * len(WIDTHS) - 1)

    def _row(self, *cells, header: bool = False) -> None:
        t = Table.grid(padding=(0, 2))
        for i, width in enumerate(WIDTHS):
            t.add_column(justify="right" if i in (0, 2) else "left", width=width, no_wrap=True, overflow="ellipsis")
        t.add_column(no_wrap=True, overflow="ellipsis", width=self._room())
        t.add_row(*(Text(c, style="bold" if not self.plain else "") if header else c for c in cells))
        render.print_block(self.out, t)
        if header and not self.plain:
            self.out.print(Text("─" * min(self.out.width, sum(WIDTHS) + 2 * len(WIDTHS) + self._room()), style="dim"))

    def _step_table(self, step: Step) -> None:
        out, plain = self.out, self.plain
        out.print(Text.assemble((f"step {step.index}", "bold"), ("  picked ", "dim"), quoted(step.text, step.special), f"  {percent(step.prob)}"))
        t = grid_table(plain)
        t.add_column("rank", justify="right")
        token_column(t)
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
        render.print_block(out, t)
        out.print(Text.assemble(("text so far: ", "dim"), _visible_tail(step.output, max(20, out.width - 14))))


def _visible_tail(text: str, width: int) -> Text:
    shown = token_text(text) if text else Text("")
    if shown.cell_len <= width:
        return shown
    return Text.assemble(("…", "dim"), shown[len(shown) - (width - 1) :])
