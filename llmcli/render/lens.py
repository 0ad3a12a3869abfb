"""`lens` on the terminal: layers down the side, what each would predict.

Layout choices:
- The table (one position): a row per layer, its top-k tokens with probabilities (as many as
  fit the width; `--json` has them all), entropy in bits and KL to the final distribution. The
  final answer is bold wherever it appears, so its climb through the layers can be followed by
  eye; the top-1 cell is shaded by its probability. A `--target` adds its rank and probability.
- The grid (`--grid`): layers × positions, each cell the layer's top-1 token after that
  position, shaded by its probability (the viridis ramp: dark is unsure, bright is sure). It
  reads upwards, as tuned-lens plots do: the input token at the bottom, then the embeddings,
  the blocks, and on top the token that actually came next.
  Positions that do not fit are cut from the left, with a note: never a wrapped grid.
- Without colour the shading becomes the probability in percent beside each token.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from llmcli import render
from llmcli.inspect.lens import LensReport, LensToken
from llmcli.render import views
from llmcli.render.pieces import quoted, short_percent, token_text

CELL = 16  # a top-k cell: token and percentage
GRID_CELL = 8  # a grid cell on a terminal: the token, shaded
PLAIN_GRID_CELL = 11  # without colour: the token and its percentage
LABEL = 6


def grid_capacity(width: int, coloured: bool) -> int:
    """How many positions a grid fits in `width` columns."""
    return max(1, (width - LABEL) // (GRID_CELL if coloured else PLAIN_GRID_CELL))


def _clip(text: Text, width: int) -> Text:
    if text.cell_len <= width:
        return text
    clipped = text.copy()
    clipped.truncate(width - 1)
    clipped.append("…", style="dim")
    return clipped


def _padded(text: str, special: bool, size: int) -> Text:
    cell = _clip(token_text(text, special), size - 1)
    cell.pad_right(size - cell.cell_len)
    return cell


def _cell(token: LensToken, answer: int, width: int) -> Text:
    out = _clip(token_text(token.text, token.special), width - 6)
    if token.id == answer:
        out.stylize("bold underline")
    out.append(f" {short_percent(token.prob)}", style="dim")
    return out


def _heading(report: LensReport, position: int, width: int) -> Text:
    tokens = report.tokens[: position + 1]
    tail = Text()
    for token in reversed(tokens):
        piece = token_text(token.text, token.special)
        if tail.cell_len + piece.cell_len > max(12, width - 40):
            tail = Text.assemble(("…", "dim"), tail)
            break
        tail = Text.assemble(piece, tail)
    where = "the last position" if position == len(report.tokens) - 1 else f"position {position}"
    return Text.assemble(("Logit lens", "bold"), " after ", ("“", "dim"), tail, ("”", "dim"), (f" ({where})", "dim"))


def _about(report: LensReport) -> Text:
    head = "tied head" if report.tied else "untied head"
    cap = f", softcap {report.softcap:g}" if report.softcap else ""
    return Text(f"{views.model_name(report.model)} · {report.num_layers} layers · each block's output → {report.norm} → {head}{cap}", style="dim")


def render_table(report: LensReport, position: int, console: Console) -> None:
    column = report.column(position)
    j = report.positions.index(position)
    answer = report.answers[j]
    target = report.target
    fixed = LABEL + 8 + 9 + (16 if target else 0)
    shown = max(1, min(report.top_k, (console.width - fixed) // CELL))
    t = views.table(console)
    t.add_column("layer", justify="right", no_wrap=True)
    for i in range(shown):
        t.add_column(f"top-{i + 1}", no_wrap=True, min_width=8, max_width=CELL, overflow="ellipsis")
    t.add_column("entropy", justify="right", no_wrap=True)
    t.add_column("KL→final", justify="right", no_wrap=True)
    if target:
        t.add_column("target", justify="right", no_wrap=True)
    for row, cell in zip(report.rows, column):
        cells: list = [row.label]
        for i, token in enumerate(cell.top[:shown]):
            text = _cell(token, answer.id, CELL)
            if i == 0 and views.coloured(console):
                text.stylize(views.shade(views.level(token.prob)), 0, len(text))
            cells.append(text)
        cells += [""] * (shown - len(cell.top[:shown]))
        cells += [f"{cell.entropy_bits:.2f}", f"{cell.kl:.2f}"]
        if target:
            cells.append(f"#{cell.target_rank:,} {short_percent(cell.target_prob)}")
        t.add_row(*cells)
    first, settled = report.first_top1[j], report.settled[j]
    label = lambda layer: "the embeddings" if layer == -1 else f"layer {layer}"  # noqa: E731
    story = Text.assemble(("The answer ", "dim"), quoted(answer.text, answer.special), (f" ({short_percent(answer.prob)}) first becomes rank 1 at ", "dim"), label(first))
    if settled != first:
        story.append(f", and stays rank 1 from {label(settled)}", style="dim")
    notes = [story, Text("entropy in bits; KL(final ‖ layer) in nats", style="dim")]
    if target:
        what = "the token that came next" if target.source == "next" else "target"
        line = Text.assemble((f"{what} ", "dim"), quoted(target.piece, target.special))
        if target.pieces > 1:
            line.append(f": the first of its {target.pieces} tokens", style="dim")
        notes.insert(0, line)
    if shown < report.top_k:
        notes.append(Text(f"{shown} of the top {report.top_k} shown at this width; --json has all", style="dim"))
    views.emit(console, _heading(report, position, console.width), _about(report), None, t, None, *notes)


def render_grid(report: LensReport, console: Console) -> None:
    coloured = views.coloured(console)
    size = GRID_CELL if coloured else PLAIN_GRID_CELL
    positions = list(report.positions)[-grid_capacity(console.width, coloured) :]
    index = [report.positions.index(p) for p in positions]
    lines = [_heading(report, positions[-1], console.width), _about(report), None]
    following = Text("next".rjust(LABEL - 1) + " ", style="dim")
    for p in positions:
        nxt = report.tokens[p + 1] if p + 1 < len(report.tokens) else None
        following.append_text(_padded(nxt.text, nxt.special, size) if nxt else Text("?".ljust(size), style="dim"))
    lines.append(following)
    for row in reversed(report.rows):
        line = Text(row.label.rjust(LABEL - 1) + " ", style="dim")
        for j in index:
            top = row.cells[j].top[0]
            if coloured:
                cell = _padded(top.text, top.special, size - 1)
                cell.stylize(views.shade(views.level(top.prob)))
                cell.append(" ")
            else:
                cell = _clip(token_text(top.text, top.special), size - 5)
                cell.append(f" {min(99, round(100 * top.prob)):>2}")
                cell.pad_right(size - cell.cell_len)
            line.append_text(cell)
        lines.append(line)
    header = Text("input".rjust(LABEL - 1) + " ", style="dim")
    for p in positions:
        header.append_text(_padded(report.tokens[p].text, report.tokens[p].special, size))
    lines += [header, None]
    lines.append(Text("read upwards: each layer's top-1 token after the input token below it", style="dim"))
    if coloured:
        lines.append(Text.assemble(("shaded by its probability: ", "dim"), views.scale_bar("0", "1", f"steps of {1 / len(views.RAMP):.2f}")))
    else:
        lines.append(Text("beside each token: its probability in percent", style="dim"))
    if len(positions) < len(report.positions):
        lines.append(Text(f"the last {len(positions)} of {len(report.positions)} positions fit this width; --json has all", style="dim"))
    views.emit(console, *lines)


def render_report(report: LensReport, *, grid: bool = False, position: int | None = None, console: Console | None = None) -> None:
    out = console or render.stdout()
    if grid:
        render_grid(report, out)
    if not grid or position is not None or report.target is not None:
        if grid:
            views.emit(out, None)
        render_table(report, report.positions[-1] if position is None else position, out)
