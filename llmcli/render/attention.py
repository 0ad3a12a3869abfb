"""`attention` on the terminal: a layer's pattern as a heatmap, its summary, the head overview.

Layout choices:
- Query tokens down the side (position and token, literal, whitespace drawn), keys across,
  numbered by position in two header lines (tens, units); a key's token is the query label of
  the same number. Cells are two columns wide (about square) when that fits, else one; when
  even one does not fit, the pattern is cut to the last N tokens with a note saying so and how
  much of the attention went to the keys cut off. Never a wrapped grid.
- Shade is √weight on the viridis ramp (a square-root scale: attention is mostly small numbers,
  and a linear one would show little but the sink), with the scale in the legend. The causal
  mask is the dotted upper triangle; keys beyond a sliding window are dashes.
- Without colour each cell is a character of `.:;=+*#%@` (light to heavy), the causal triangle
  is left blank and window-masked keys are `-`.
- Below, for each query: the three keys it attends to most, with their weights.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from llmcli import render
from llmcli.inspect.attention import SLIDING, AttentionPattern, HeadOverview
from llmcli.render import views
from llmcli.render.pieces import token_text

GAMMA = 0.5
PLAIN_RAMP = ".:;=+*#%@"
TOKEN_WIDTH = 10


def _groups(arch) -> str:
    return " | ".join(f"{g[0]}–{g[-1]}" if len(g) > 1 else str(g[0]) for g in arch.kv_groups)


def _what(pattern: AttentionPattern) -> list[str]:
    arch = pattern.arch
    kind = f"sliding window of {arch.sliding_window}" if pattern.layer_type == SLIDING else "full attention"
    layer = f"layer {pattern.layer} of 0–{arch.num_layers - 1} ({kind})"
    if pattern.head is None:
        kv = arch.num_kv_heads
        return [layer, f"mean of its {arch.num_heads} query heads; {kv} KV head{'s' if kv > 1 else ''}, shared by query heads {_groups(arch)}"]
    group = arch.kv_groups[pattern.kv_head]
    shared = f", shared with heads {', '.join(map(str, (h for h in group if h != pattern.head)))}" if len(group) > 1 else ""
    return [layer, f"query head {pattern.head} of 0–{arch.num_heads - 1} (KV head {pattern.kv_head}{shared})"]


def _label(pattern: AttentionPattern, q: int, digits: int) -> Text:
    token = pattern.tokens[q]
    piece = token_text(token.text, token.special)
    if piece.cell_len > TOKEN_WIDTH:
        piece.truncate(TOKEN_WIDTH - 1)
        piece.append("…", style="dim")
    piece.pad_right(TOKEN_WIDTH - piece.cell_len)
    return Text.assemble((f"{q:>{digits}} ", "dim"), piece, " ")


def _crop(pattern: AttentionPattern, keep: int) -> tuple[list[int], list[list[float]], list[float]]:
    """The last `keep` queries and keys, with the weight of the keys cut added to each row's hidden mass."""
    cut = max(0, len(pattern.keys) - keep)
    keys = list(pattern.keys[cut:])
    weights = [list(row[cut:]) for row in pattern.weights[cut:]]
    hidden = [h + sum(row[:cut]) for h, row in zip(pattern.hidden[cut:], pattern.weights[cut:])]
    return keys, weights, hidden


def _cell(weight: float, q: int, k: int, window: int | None, width: int, coloured: bool) -> Text:
    if k > q:
        return Text((" " * (width - 1) + "·") if coloured else " " * width, style="dim")
    if window is not None and q - k >= window:
        return Text("-" * width, style="dim")
    index = views.level(weight, GAMMA)
    if coloured:
        return Text(" " * width, style=f"on {views.RAMP[index]}")
    return Text(PLAIN_RAMP[index] * width)


def heatmap(pattern: AttentionPattern, console: Console) -> list:
    coloured = views.coloured(console)
    digits = len(str(max(pattern.queries)))
    label_width = digits + 1 + TOKEN_WIDTH + 1
    room = console.width - label_width
    n = len(pattern.keys)
    width = 2 if n * 2 <= room else 1
    keep = min(n, max(1, room // width))
    keys, weights, hidden = _crop(pattern, keep)
    window = pattern.arch.sliding_window if pattern.layer_type == SLIDING else None
    lines: list = []
    tens = Text(" " * label_width)
    units = Text(" " * label_width)
    for k in keys:
        tens.append((str(k // 10 % 10) if k % 10 == 0 and k >= 10 else " ").rjust(width), style="dim")
        units.append(str(k % 10).rjust(width), style="dim")
    lines += [Text.assemble(("query ↓  key →", "dim")), tens, units]
    for q, row in zip(keys, weights):
        line = _label(pattern, q, digits)
        for k, weight in zip(keys, row):
            line.append_text(_cell(weight, q, k, window, width, coloured))
        lines.append(line)
    lines.append(None)
    note = "√weight: a cell's shade" if coloured else "each cell: " + " ".join(f"{c}≥{views.level_floor(i, GAMMA):.2f}" for i, c in enumerate(PLAIN_RAMP))
    if coloured:
        lines.append(Text.assemble(views.scale_bar("0", "1", note), ("   ", ""), ("·", "dim"), (" causal mask", "dim")))
    else:
        lines += [Text(note, style="dim"), Text("blank: the causal mask", style="dim")]
    if window is not None and max(pattern.queries) >= window:
        lines.append(Text(f"- beyond this layer's sliding window: a query sees only the last {window} tokens", style="dim"))
    if keep < n:
        lost = sum(hidden) / len(hidden)
        lines.append(Text(f"the last {keep} of {n} tokens fit this width (--from/--to pick others); the keys cut off hold {lost:.0%} of each row on average", style="dim"))
    elif any(h > 0.005 for h in hidden):
        lines.append(Text(f"earlier keys outside the range hold {sum(hidden) / len(hidden):.0%} of each row on average", style="dim"))
    return lines


def summary(pattern: AttentionPattern, console: Console):
    t = views.table(console)
    t.add_column("query", justify="right", no_wrap=True)
    t.add_column("token", no_wrap=True, max_width=TOKEN_WIDTH + 2, overflow="ellipsis")
    t.add_column("attends most to", no_wrap=True, overflow="ellipsis")
    for q, top in zip(pattern.queries, pattern.top):
        token = pattern.tokens[q]
        most = Text()
        for a in top:
            if most:
                most.append("   ")
            most.append(f"{a.position} ", style="dim")
            most.append_text(token_text(a.text, a.special))
            most.append(f" {a.weight:.2f}", style="dim")
        t.add_row(str(q), token_text(token.text, token.special), most)
    return t


def render_pattern(pattern: AttentionPattern, *, show_summary: bool = True, console: Console | None = None) -> None:
    out = console or render.stdout()
    heading = Text.assemble(("Attention", "bold"), (f"  {views.model_name(pattern.model)} · {len(pattern.tokens)} tokens", "dim"))
    notes = [Text(line, style="dim") for line in _what(pattern)]
    sink = sum(pattern.sink) / len(pattern.sink)
    if not pattern.drop_first and sink > 0.5 and len(pattern.tokens) > 2:
        notes.append(Text(f"the first token takes {sink:.0%} of the attention (the sink); --drop-first hides it", style="dim"))
    if pattern.drop_first:
        notes.append(Text(f"first token hidden, rows renormalised; it took {sink:.0%} of the attention (the sink)", style="dim"))
    views.emit(out, heading, *notes, None, *heatmap(pattern, out))
    if show_summary:
        views.emit(out, None, Text.assemble(("Each query's top 3", "bold"), (": the keys it attends to most (position, token, weight)", "dim")), summary(pattern, out))


def render_overview(overview: HeadOverview, console: Console | None = None) -> None:
    out = console or render.stdout()
    arch = overview.arch
    coloured = views.coloured(out)
    width = 6
    per_line = max(1, (out.width - 10) // width)
    heading = Text.assemble(("Attention heads", "bold"), (f"  {views.model_name(overview.model)} · {len(overview.tokens)} tokens · {arch.num_layers} layers × {arch.num_heads} query heads", "dim"))
    lines: list = [heading, Text(f"mean entropy of each head's rows in bits: low = focused on a few tokens; spreading evenly over every earlier token would give {overview.uniform_entropy:.2f}", style="dim"), None]
    for first in range(0, arch.num_heads, per_line):
        heads = range(first, min(arch.num_heads, first + per_line))
        lines.append(Text.assemble(("layer    ", "dim"), *[(f"h{h}".rjust(width), "dim") for h in heads]))
        for layer in range(arch.num_layers):
            kind = "s" if arch.layer_types[layer] == SLIDING else " "
            line = Text(f"{layer:>5} {kind}  ", style="dim")
            for h in heads:
                bits = overview.entropy[layer][h]
                focus = 1 - bits / overview.uniform_entropy if overview.uniform_entropy else 0.0
                cell = Text(f"{bits:.2f}".rjust(width - 1) + " ")
                if coloured:
                    cell.stylize(views.shade(views.level(max(0.0, focus))), 0, width - 1)
                line.append_text(cell)
            lines.append(line)
        lines.append(None)
    if coloured:
        lines.append(Text.assemble(("shade: how focused (1 − entropy / even spread): ", "dim"), views.scale_bar("0", "1")))
    lines.append(Text(f"KV heads: query heads {_groups(arch)} share one each", style="dim"))
    if arch.sliding_window:
        lines.append(Text(f"s: a sliding-window layer (window {arch.sliding_window}); the others attend to everything before them", style="dim"))
    views.emit(out, *lines)
