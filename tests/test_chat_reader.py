"""The readers: prompt-toolkit keys (paste, newline, quotes, Ctrl-C, Ctrl-D), pipes, completion."""

from __future__ import annotations

import io
import os

import pytest
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from llmcli.chat import commands
from llmcli.chat.reader import SlashCompleter, block_is_open, lines_reader, terminal_reader, unquote_block

ENTER, ALT_ENTER, CTRL_J, CTRL_C, CTRL_D = "\r", "\x1b\r", "\n", "\x03", "\x04"


def paste(text: str) -> str:
    return f"\x1b[200~{text}\x1b[201~"


def read_all(keys: str, tmp_path, history=None) -> list[str | None]:
    """Type `keys` into the real prompt-toolkit reader; collect messages until Ctrl-D."""
    with create_pipe_input() as pipe:
        pipe.send_text(keys)
        history = history or tmp_path / "history"
        read = terminal_reader(commands.completions(), history=history, input=pipe, output=DummyOutput())
        got = []
        while (line := read()) is not None:
            got.append(line)
    return got


def test_enter_sends_and_ctrl_d_ends(tmp_path):
    assert read_all("hello" + ENTER + "second" + ENTER + CTRL_D, tmp_path) == ["hello", "second"]


def test_a_multi_line_paste_is_one_message(tmp_path):
    pasted = "line one\nline two\r\nline three"
    assert read_all(paste(pasted) + ENTER + CTRL_D, tmp_path) == ["line one\nline two\nline three"]


def test_alt_enter_and_ctrl_j_insert_newlines(tmp_path):
    keys = "a" + ALT_ENTER + "b" + CTRL_J + "c" + ENTER + CTRL_D
    assert read_all(keys, tmp_path) == ["a\nb\nc"]


def test_triple_quotes_keep_the_message_open_until_closed(tmp_path):
    keys = '"""' + ENTER + "first" + ENTER + "second" + ENTER + '"""' + ENTER + CTRL_D
    assert read_all(keys, tmp_path) == ["\nfirst\nsecond\n"]


def test_ctrl_c_clears_the_line_and_the_reader_goes_on(tmp_path):
    keys = "typo typo" + CTRL_C + "kept" + ENTER + CTRL_C + "after" + ENTER + CTRL_D
    assert read_all(keys, tmp_path) == ["kept", "after"]


def test_history_is_written_to_the_file(tmp_path):
    read_all("remember me" + ENTER + CTRL_D, tmp_path)
    assert "remember me" in (tmp_path / "history").read_text(encoding="utf-8")


def test_an_unwritable_history_location_falls_back_to_memory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with create_pipe_input() as pipe:
        pipe.send_text("ok" + ENTER)
        read = terminal_reader({}, history=blocker / "sub" / "history", input=pipe, output=DummyOutput())
        assert read() == "ok"


def test_lines_reader_gives_one_message_per_line_and_none_at_the_end():
    read = lines_reader(io.StringIO('hi\n\nbye\n"""\nblock\nlines\n"""\nlast'))
    assert [read(), read(), read(), read(), read(), read()] == ["hi", "", "bye", "\nblock\nlines\n", "last", None]


@pytest.mark.parametrize(
    "text, open_, inner",
    [
        ('"""', True, ""),
        ('"""abc', True, "abc"),
        ('"""abc"""', False, "abc"),
        ('""""""', False, ""),
        ("plain", False, "plain"),
    ],
)
def test_quote_blocks(text, open_, inner):
    assert block_is_open(text) is open_
    assert unquote_block(text) == inner


def complete(text: str) -> list[str]:
    completer = SlashCompleter(commands.completions())
    return [c.text for c in completer.get_completions(Document(text), None)]


def test_tab_completes_commands_and_their_arguments():
    assert complete("/sh") == ["/show"]
    assert set(complete("/s")) >= {"/show", "/set", "/save", "/system", "/stats"}
    assert complete("/show p") == ["prompt"]
    assert "temperature" in complete("/set t")
    assert complete("hello /sh") == []


def test_keys_are_not_echoed_while_the_model_writes_and_echo_comes_back():
    termios = pytest.importorskip("termios")
    pty = pytest.importorskip("pty")
    from llmcli.chat.reader import keys_not_echoed

    master, slave = pty.openpty()
    try:
        with open(slave, "r", closefd=False) as tty:
            assert termios.tcgetattr(slave)[3] & termios.ECHO
            with keys_not_echoed(tty):
                assert not termios.tcgetattr(slave)[3] & termios.ECHO
                assert termios.tcgetattr(slave)[3] & termios.ISIG  # Ctrl-C still interrupts
                os.write(master, b"typed ahead\n")
            assert termios.tcgetattr(slave)[3] & termios.ECHO
            assert os.read(slave, 100) == b"typed ahead\n"  # kept for the next prompt, not flushed
    finally:
        os.close(master)
        os.close(slave)


def test_keys_not_echoed_is_harmless_without_a_terminal():
    from llmcli.chat.reader import keys_not_echoed

    ran = []
    with keys_not_echoed(io.StringIO()):  # no file descriptor: nothing to switch
        ran.append(True)
    assert ran == [True]


def test_history_is_recalled_in_the_next_session(tmp_path):
    """What was sent in one chat comes back with Up in the next (the same history file)."""
    history = tmp_path / "history"
    assert read_all("what is a token?" + ENTER + CTRL_D, tmp_path, history=history) == ["what is a token?"]
    UP = "\x1b[A"
    assert read_all(UP + ENTER + CTRL_D, tmp_path, history=history) == ["what is a token?"]
    assert read_all(UP + ENTER + CTRL_D, tmp_path, history=tmp_path / "other") == [""]
