"""Streaming Markdown: finished blocks printed once, a short live tail, text kept literal."""

from __future__ import annotations

import io

from rich.console import Console

from llmcli.chat.stream import MarkdownStream, PlainStream

REPLY = """# Plan

Here is **bold** text, [bold]not markup[/bold] and an escape \x1b[31m sequence.

1. one
2. two

```python
def double(x):
    return x * 2
```

The end.
"""


def pieces(text: str, size: int = 3):
    return [text[i : i + size] for i in range(0, len(text), size)]


def stream_into(console: Console, text: str, **kwargs) -> MarkdownStream:
    stream = MarkdownStream(console, refresh_per_second=1e9, **kwargs)  # refresh on every piece
    with stream:
        for piece in pieces(text):
            stream.feed(piece)
    return stream


def plain_console(height: int = 25) -> Console:
    """Not a terminal: the transient live part draws nothing, so the file holds exactly
    what was printed for good."""
    return Console(file=io.StringIO(), width=60, height=height, color_system=None)


def test_finished_output_is_the_markdown_once():
    console = plain_console()
    stream_into(console, REPLY)
    out = console.file.getvalue()
    lines = [line.rstrip() for line in out.splitlines()]
    assert out.count("Plan") == 1 and out.count("The end.") == 1 and out.count("return x * 2") == 1
    assert "**" not in out  # rendered as Markdown
    assert "[bold]not markup[/bold]" in out  # but never as Rich markup
    assert "\\x1b[31m" in out and "\x1b" not in out  # escape made visible, not sent
    assert " 1 one" in lines and " 2 two" in lines
    paragraph_end = next(i for i, line in enumerate(lines) if line.endswith("sequence."))
    assert lines[paragraph_end + 1 : paragraph_end + 3] == ["", " 1 one"]  # one blank line between blocks


def test_each_block_is_printed_as_soon_as_the_next_starts():
    console = plain_console()
    stream = MarkdownStream(console, refresh_per_second=1e9)
    with stream:
        stream.feed("First paragraph.\n\nSecond")
        assert "First paragraph." in console.file.getvalue()
        assert "Second" not in console.file.getvalue()  # still live
        stream.feed(" paragraph.")
    assert console.file.getvalue().count("Second paragraph.") == 1


def test_a_reply_taller_than_the_screen_never_keeps_more_than_a_screen_live():
    console = plain_console(height=12)
    stream = MarkdownStream(console, refresh_per_second=1e9)
    code = "```python\n" + "".join(f"x{i} = {i}\n" for i in range(60)) + "```\n\n"
    prose = "word " * 400  # one paragraph, no newline at all
    with stream:
        for piece in pieces(code + prose, 5):
            stream.feed(piece)
            live_rows = stream._height(stream._live_renderable())
            assert live_rows <= stream.max_live_rows
    out = console.file.getvalue()
    lines = [line.strip() for line in out.splitlines()]
    assert all(lines.count(f"x{i} = {i}") == 1 for i in range(60))  # every line once, in order
    assert [line for line in lines if line.startswith("x")] == [f"x{i} = {i}" for i in range(60)]
    assert out.count("word") == 400
    # The code block printed in pieces still reads as one block: a padding row above and
    # below, no gap in between.
    first, last = lines.index("x0 = 0"), lines.index("x59 = 59")
    assert lines[first - 1] == "" and lines[last + 1] == ""
    assert all(lines[first : last + 1])


def test_the_terminal_sees_only_the_live_tail_redrawn():
    """On a real terminal the finished blocks are written once; what is redrawn is the tail."""
    console = Console(file=io.StringIO(), width=60, height=20, force_terminal=True, color_system=None)
    stream_into(console, "Alpha paragraph.\n\n" + "Beta " * 30 + "\n\nGamma.")
    out = console.file.getvalue()
    assert out.count("Alpha paragraph.") == 1  # printed once, never redrawn
    assert out.count("Gamma.") >= 1


def test_an_unclosed_code_fence_is_shown_as_code_at_the_end():
    console = plain_console()
    stream_into(console, "Look:\n\n```\nprint('hi')\n")
    out = console.file.getvalue()
    assert "print('hi')" in out and "```" not in out


def test_plain_stream_writes_the_text_as_it_comes():
    console = Console(file=io.StringIO(), width=60, color_system=None)
    with PlainStream(console) as stream:
        for piece in pieces("**Paris** [red]x[/red]\x1b[2J"):
            stream.feed(piece)
    assert console.file.getvalue() == "**Paris** [red]x[/red]\\x1b[2J\n"
