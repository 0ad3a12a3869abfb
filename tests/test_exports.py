"""--svg / --html on the views that have tables: Rich's export of what was printed."""

from __future__ import annotations

import pytest

from tests.asserts import assert_one_line_error


@pytest.mark.parametrize("command", [["probs", "The capital of France is"], ["tokenize", "The capital of France is"], ["tokenize", "--chat", "Hi"]])
def test_an_svg_holds_what_was_shown(cli, tiny_model_dir, tmp_path, command):
    svg, html = tmp_path / "view.svg", tmp_path / "view.html"
    result = cli(*command, "-m", tiny_model_dir, "--svg", svg, "--html", html)
    assert result.exit_code == 0, result.stderr
    assert f"wrote {svg}" in result.stderr and f"wrote {html}" in result.stderr
    picture, page = svg.read_text(encoding="utf-8"), html.read_text(encoding="utf-8")
    assert picture.startswith("<svg") and "<html" in page.lower()
    word = "im_start" if "--chat" in command else "capital"  # the template's special token; the text's first word
    assert word in picture.replace("&#160;", " ") and word in page


def test_compare_exports_its_tables_and_refuses_otherwise(cli, tiny_model_dir, tiny_base_dir, tmp_path):
    svg = tmp_path / "compare.svg"
    result = cli("compare", "-m", tiny_base_dir, "-m", tiny_model_dir, "--probs", "The cat", "--svg", svg)
    assert result.exit_code == 0, result.stderr
    assert "Next token after the prompt" in svg.read_text(encoding="utf-8").replace("&#160;", " ")
    assert_one_line_error(cli("compare", "-m", tiny_base_dir, "-m", tiny_model_dir, "The cat", "--svg", svg), "--probs")
    assert_one_line_error(cli("probs", "-m", tiny_model_dir, "The cat", "--json", "--svg", svg), "--json")


def test_generate_logprobs_shades_the_text_on_a_terminal(monkeypatch):
    """A sure token and a surprising one get score's heat colours; into a pipe, plain text."""
    import io
    import math

    from llmcli.generation import TokenEvent
    from llmcli.render.generate import LiveText
    from llmcli.render.score import heat_style

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    screen = Terminal()
    monkeypatch.setattr("sys.stdout", screen)
    text = LiveText(heat=True)
    text.feed(TokenEvent(1, "sure", math.log(0.99)))
    text.feed(TokenEvent(2, " odd", math.log(2**-12)))
    shown = screen.getvalue()
    import re

    styles = dict((text, sgr) for sgr, text in re.findall(r"(\x1b\[[0-9;]*m)([^\x1b]+)", shown))
    assert set(styles) == {"sure", " odd"} and styles["sure"] != styles[" odd"]  # two shades
    assert heat_style(-math.log2(0.99)) != heat_style(12)
    pipe = io.StringIO()
    monkeypatch.setattr("sys.stdout", pipe)
    plain = LiveText(heat=True)
    plain.feed(TokenEvent(1, "sure", math.log(0.99)))
    assert pipe.getvalue() == "sure"
