"""Tokens on the terminal: coloured spans, tables, the chat x-ray, the multi-model summary.

The span view prints the text as the tokenizer cut it: each token on its own background
(the colours cycle so neighbours always differ), whitespace drawn (`·` space, `→` tab,
`↵` newline, which still breaks the line, so the text keeps its shape), special tokens
in gold, bytes that are not a whole character on their own in red (`<0xF0><0x9F>`),
followed by the character they spell once joined, dimmed and off the token colours.
Invisible characters (zero-width joiner, variation selectors, bidi controls, odd
spaces) are named (`<ZWJ>`, `<U+202E>`) and control characters escaped (`\\x1b`): no
token can change the terminal's state.

Without colour (a pipe, a file, NO_COLOR) the spans are separated by `│` instead (a
token that ends a line carries its `│` before the line break), and tables become
tab-separated lines.
"""

from __future__ import annotations

import sys
import unicodedata
from typing import Sequence

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from llmcli import render
from llmcli.inspect.tokens import ChatTokenization, Detokenization, Tokenization, spanning_characters
from llmcli.tokens import Token, hex_bytes, segments

PALETTE = ["#005f87", "#5f005f", "#005f00", "#875f00"]  # token backgrounds, cycled; exact in 256 colours
TEMPLATE_PALETTE = ["#3a3a3a", "#4e4e4e"]  # chat template tokens: greys, so the message stands out
TEXT_FG = "#eeeeee"
SPECIAL = "bold #1c1c1c on #d7af5f"
MARK = "#9e9e9e"  # whitespace marks and named invisibles, on the token's background
BYTES = "italic #ff8787"
SEPARATOR = "│"

_NAMES = {
    "\u200b": "ZWSP",
    "\u200c": "ZWNJ",
    "\u200d": "ZWJ",
    "\u2060": "WJ",
    "\ufeff": "BOM",
    "\u00a0": "NBSP",
    "\u00ad": "SHY",
    "\ufe0f": "VS16",
    "\ufe0e": "VS15",
}


def colour(console: Console) -> bool:
    return console.color_system is not None and not console.no_color and console.is_terminal


# ---------------------------------------------------------------- one token as text


def _invisible(char: str) -> str | None:
    """A visible name for a character that would otherwise show as nothing or move others."""
    if char in _NAMES:
        return _NAMES[char]
    category = unicodedata.category(char)
    if category in ("Cf", "Zl", "Zp") or (category == "Zs" and char != " "):
        return f"U+{ord(char):04X}"
    return None


def visible(text: str, base: str = "", mark: str = MARK) -> Text:
    """Text with whitespace drawn, invisibles named and controls escaped; newlines still break."""
    out = Text()
    marked = f"{base} {mark}"
    if text and unicodedata.combining(text[0]):
        out.append("◌", base)  # a lone combining mark, drawn on a dotted circle
    if text.isprintable():  # the common case: only spaces to draw
        for i, run in enumerate(text.split(" ")):
            if i:
                out.append("·", marked)
            if run:
                out.append(run, base)
        return out
    plain = []  # ordinary characters waiting to be appended as one run

    def flush() -> None:
        if plain:
            out.append(render.escape_controls("".join(plain)), base)
            plain.clear()

    for char in text:
        drawn = {" ": "·", "\t": "→", "\n": "↵"}.get(char)
        name = None if drawn or char.isprintable() else _invisible(char)
        if drawn is None and name is None:
            plain.append(char)
            continue
        flush()
        out.append(drawn or f"<{name}>", marked)
        if char == "\n":
            out.append("\n")
    flush()
    return out


def flat(text: str) -> str:
    """Whitespace drawn on one line, for table cells."""
    if text.isprintable() and not (text and unicodedata.combining(text[0])):
        return text.replace(" ", "·")
    return visible(text).plain.replace("\n", "")


def token_text(token: Token, base: str = "", coloured: bool = True) -> Text:
    """A token as shown in a span: its text, with stray bytes as hex (`<0xF0>` without colour)."""
    if token.special:
        return render.literal(token.text, SPECIAL)
    out = Text()
    for text, raw in segments(token.bytes):
        if raw is None:
            out.append_text(visible(text, base))
        else:  # the same `<0xF0><0x9F>` as piped and in --json, in red on a terminal
            out.append(hex_bytes(raw), f"{base} {BYTES}" if coloured else "")
    return out


def _hint(chars: str) -> Text:
    """The character that partial tokens spell, shown after them off the token colours."""
    shown = "".join(f"<{n}>" if (n := _invisible(c)) else c for c in chars)
    return Text(render.escape_controls(shown), style="dim")


# ---------------------------------------------------------------- the span view


def spans(tokens: Sequence[Token], console: Console, parts: Sequence[str] | None = None) -> Text:
    """The tokens one after the other, each on its own colour (or between `│` marks without colour)."""
    coloured = colour(console)
    composed = spanning_characters(tokens)
    out = Text()
    shade = {"message": 0, "template": 0}
    for i, token in enumerate(tokens):
        if not coloured:
            # `│` between tokens; a token ending in a newline gets it before the line break,
            # so one "\n\n" token and two "\n" tokens still look different.
            text = token_text(token, coloured=False)
            ends_line = text.plain.endswith("\n")
            if ends_line:
                text.right_crop(1)
            out.append_text(text)
            out.append(SEPARATOR if i < len(tokens) - 1 else "")
            out.append("\n" if ends_line else "")
            continue
        in_template = parts is not None and parts[i] == "template"  # "mixed" tokens carry message text
        palette = TEMPLATE_PALETTE if in_template else PALETTE
        key = "template" if in_template else "message"
        base = f"{TEXT_FG} on {palette[shade[key] % len(palette)]}"
        shade[key] += 1
        out.append_text(token_text(token, base))
        if token.index in composed:
            out.append_text(_hint(composed[token.index]))
    if out.plain.endswith("\n"):
        out.right_crop(1)  # the last token's newline is drawn as ↵; the print ends the line
    return out


def summary(tokenization: Tokenization) -> Text:
    n, chars = tokenization.count, tokenization.characters
    line = Text()
    line.append(f"{n:,} token{'s' if n != 1 else ''}", style="bold")
    line.append(f" · {chars:,} character{'s' if chars != 1 else ''}", style="dim")
    if tokenization.chars_per_token is not None:
        line.append(f" · {tokenization.chars_per_token:.2f} characters/token", style="dim")
    return line


def header(label: str) -> Text:
    return Text.assemble(("── ", "dim"), (render.escape_controls(label), "bold cyan"), (" ──", "dim"))


def render_spans(results: Sequence[Tokenization], console: Console | None = None) -> None:
    out = console or render.stdout()
    several = len(results) > 1
    for n, result in enumerate(results):
        if several:
            if n:
                out.print()
            out.print(header(result.model))
        if result.tokens:
            out.print(spans(result.tokens, out), soft_wrap=not colour(out))
        out.print(summary(result))
    if several:
        out.print()
        show(out, comparison(results))


def show(out: Console, thing: Table | Text | str) -> None:
    """Print a Rich renderable, or write plain tab-separated text as is (Rich would expand the tabs)."""
    if isinstance(thing, str) and out.record:  # an --svg/--html export: through the recording console
        out.out(thing, highlight=False)
    elif isinstance(thing, str):
        sys.stdout.write(thing + "\n")
        sys.stdout.flush()
    else:
        out.print(thing)


def comparison(results: Sequence[Tokenization]) -> Table | str:
    """Token counts per model: the summary row of a multi-model tokenize."""
    first = results[0].count
    rows = []
    for r in results:
        cpt = f"{r.chars_per_token:.2f}" if r.chars_per_token is not None else "-"
        vs = "" if r is results[0] or not first else f"{100 * (r.count - first) / first:+.0f}%"
        rows.append((r.model, f"{r.count:,}", cpt, vs))
    if render.plain():
        lines = ["model\ttokens\tcharacters/token\tvs first"] + ["\t".join(row) for row in rows]
        return "\n".join(render.escape_controls(line) for line in lines)
    table = Table(box=box.SIMPLE_HEAD, title="token counts", title_justify="left", title_style="bold")
    table.add_column("model", style="cyan")
    table.add_column("tokens", justify="right", style="bold")
    table.add_column("characters/token", justify="right")
    table.add_column(f"vs {render.escape_controls(results[0].model)}", justify="right")
    for row in rows:
        table.add_row(*(render.literal(cell) for cell in row))
    return table


# ---------------------------------------------------------------- tables


TABLE_COLUMNS = ("#", "id", "piece", "text", "bytes")


def token_rows(tokens: Sequence[Token]) -> list[tuple[str, ...]]:
    return [
        (str(t.index), str(t.id), flat(t.piece), flat(t.text), str(len(t.bytes)))
        for t in tokens
    ]


def token_table(tokens: Sequence[Token], parts: Sequence[str] | None = None) -> Text | str:
    """One row per token; without colour, tab-separated lines under a header line."""
    columns = TABLE_COLUMNS + (("part",) if parts else ())
    rows = token_rows(tokens)
    if parts:
        rows = [row + (part,) for row, part in zip(rows, parts)]
    if render.plain():
        return "\n".join("\t".join(r) for r in [columns, *rows])
    # Aligned lines rather than a rich Table: a Table lays out ~2,000 rows a second, and a
    # file's table can have tens of thousands.
    widths = [max([cell_len(c), *(cell_len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    right = {"#", "id", "bytes"}

    def cell(value: str, i: int) -> str:
        pad = " " * (widths[i] - cell_len(value))
        return pad + value if columns[i] in right else value + pad

    out = Text()
    out.append("  ".join(cell(c, i) for i, c in enumerate(columns)).rstrip(), "bold")
    out.append("\n" + "─" * (sum(widths) + 2 * (len(widths) - 1)), "dim")
    for token, row in zip(tokens, rows):
        gold = "bold #d7af5f" if token.special else ""
        styles = ["dim", "cyan", gold, gold or ("#ff8787" if not token.complete else ""), "dim", "dim"]
        out.append("\n")
        for i, value in enumerate(row):
            out.append(("  " if i else "") + cell(value, i), styles[i])
    return out


def render_tables(results: Sequence[Tokenization], console: Console | None = None) -> None:
    out = console or render.stdout()
    for n, result in enumerate(results):
        if n:
            out.print()
        if len(results) > 1:
            out.print(header(result.model))
        show(out, token_table(result.tokens))
        out.print(summary(result))
    if len(results) > 1:
        out.print()
        show(out, comparison(results))


# ---------------------------------------------------------------- --ids, --count, --json


def render_ids(results: Sequence[Tokenization]) -> None:
    _lines(results, lambda r: " ".join(map(str, r.ids)))


def render_counts(results: Sequence[Tokenization]) -> None:
    _lines(results, lambda r: str(r.count))


def _lines(results: Sequence[Tokenization], value) -> None:
    """One line per model; with several models each line starts with the model and a tab."""
    several = len(results) > 1
    for r in results:
        prefix = render.escape_controls(r.model) + "\t" if several else ""
        sys.stdout.write(prefix + value(r) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------- --chat

MODE_NAMES = {"chat": "chat template", "template": "plain-text template"}


def render_chat(results: Sequence[ChatTokenization], table: bool = False, console: Console | None = None) -> None:
    out = console or render.stdout()
    for n, chat in enumerate(results):
        if n:
            out.print()
        result = chat.tokenization
        mode = MODE_NAMES.get(chat.mode, chat.mode)
        out.print(header(f"{result.model} · {mode}"))
        if table:
            show(out, token_table(result.tokens, parts=chat.parts))
        elif result.tokens:
            out.print(spans(result.tokens, out, chat.parts), soft_wrap=not colour(out))
        out.print(summary(result))
        line = Text()
        line.append(f"template: {chat.added:,} token{'s' if chat.added != 1 else ''} added", style="bold")
        line.append(f" around {chat.message_tokens:,} message token{'s' if chat.message_tokens != 1 else ''}")
        if colour(out) and not table:
            line.append("  (", style="dim")
            line.append(" template ", style=f"{TEXT_FG} on {TEMPLATE_PALETTE[0]}")
            line.append(" ", style="dim")
            line.append(" special ", style=SPECIAL)
            line.append(")", style="dim")
        out.print(line)
    if len(results) > 1:
        out.print()
        show(out, comparison([c.tokenization for c in results]))


# ---------------------------------------------------------------- detokenize


def render_detokenized(result: Detokenization, table: bool = False) -> None:
    out = render.stdout()
    if table:
        show(out, token_table(result.tokens))
        out.print(Text("text: ", style="bold").append_text(render.literal(result.text)))
    elif out.is_terminal:
        out.print(render.literal(result.text), soft_wrap=True)
    else:
        # To a pipe or a file the text is data: exactly what the tokenizer decodes, nothing added.
        sys.stdout.write(result.text)
        sys.stdout.flush()
    if result.incomplete:
        ids = ", ".join(str(result.tokens[i].id) for i in result.incomplete)
        render.warn(f"token(s) {ids} hold part of a character the ids do not finish; the text shows it as U+FFFD")
