"""Small pieces every next-token view draws with: token text shown literally, percentages,
bars, and the table shape the probs views share.

Token text is literal: spaces `·`, newlines `↵`, tabs `→`, control characters `\\xNN` and
other invisible characters (no-break space, zero-width joiner) `\\uNNNN` are drawn dim, so
they read as markers, not as text; special tokens are magenta. Bars are on an absolute
scale (a full bar is probability 1), in eighths of a cell; any non-zero probability gets
at least a sliver.
"""

from __future__ import annotations

import unicodedata

from rich import box
from rich.table import Table
from rich.text import Text

from llmcli import render

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


def grid_table(plain: bool, **kwargs) -> Table:
    """Columns two cells apart, a rule under the header on a terminal, nothing around the edges."""
    if plain:
        return Table(box=None, show_edge=False, pad_edge=False, padding=(0, 1, 0, 1), **kwargs)
    return Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), **kwargs)


def heat(p: float | None) -> str:
    """A style for a probability: the likely stand out, the negligible recede."""
    if p is None or p < 0.01:
        return "dim"
    return "bold" if p >= 0.5 else ""


def token_column(table: Table, header: str = "token") -> None:
    table.add_column(header, max_width=TOKEN_WIDTH, no_wrap=True, overflow="ellipsis")


