"""Reading what the user types: a `read_line() -> str | None` callable (None = end of input).

The chat loop only ever sees that callable, so tests drive it with a list of strings and
the loop never knows whether a terminal is there.

`terminal_reader` is the prompt-toolkit one:
- history persists in `chat_history` under the user state dir (platformdirs; on Linux
  `$XDG_STATE_HOME/llmcli`), Up/Down walk it;
- Tab completes slash commands and their arguments;
- a paste arrives as one bracketed paste, newlines and all, so a pasted block is one
  message, never several turns;
- Alt-Enter (Esc Enter) or Ctrl-J insert a newline; a message that starts with `\"\"\"`
  goes on over several lines until the closing `\"\"\"`, as in Ollama;
- Ctrl-C clears the line (on an empty line it says how to leave); Ctrl-D on an empty line
  ends the chat. prompt-toolkit's own Ctrl-C raises KeyboardInterrupt; ours never does,
  so a Ctrl-C at the prompt cannot end the session.

`lines_reader` is the one for stdin that is not a terminal: each line is one message
(`\"\"\"` blocks still work), no prompt is printed.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, TextIO

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.application import run_in_terminal
from prompt_toolkit.completion import Completer, Completion
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.output import Output
from prompt_toolkit.styles import Style

from llmcli.errors import BadInput

ReadLine = Callable[[], "str | None"]
QUOTES = '"""'
STYLE = Style.from_dict({"prompt": "bold ansigreen", "placeholder": "ansibrightblack"})
PLACEHOLDER = FormattedText([("class:placeholder", "Send a message (/help for commands)")])


def unquote_block(text: str) -> str:
    """A `\"\"\"…\"\"\"` block's inside; any other text unchanged."""
    stripped = text.strip()
    if not stripped.startswith(QUOTES):
        return text
    inner = stripped[len(QUOTES) :]
    return inner[: -len(QUOTES)] if inner.endswith(QUOTES) else inner


def block_is_open(text: str) -> bool:
    """True while a message that started with `\"\"\"` still waits for its closing `\"\"\"`."""
    stripped = text.strip()
    return stripped.startswith(QUOTES) and (len(stripped) < 2 * len(QUOTES) or not stripped.endswith(QUOTES))


def lines_reader(stream: TextIO) -> ReadLine:
    """One message per line of `stream` (a `\"\"\"` block spans lines); None at the end.

    Lines are read as bytes and must be UTF-8, as every command's input must: a line that is
    not ends the chat with one error line naming it (the replies so far stay printed)."""
    raw = getattr(stream, "buffer", None)
    count = 0

    def next_line() -> str:
        nonlocal count
        if raw is None:
            return stream.readline()
        data = raw.readline()
        count += 1
        try:
            return data.decode("utf-8").replace("\r\n", "\n")
        except UnicodeDecodeError as e:
            raise BadInput(
                f"stdin line {count} is not UTF-8 text (byte 0x{data[e.start]:02X} at offset {e.start})",
                "convert it first, e.g. `iconv -f latin1 -t utf-8`",
            ) from None

    def read_line() -> str | None:
        line = next_line()
        if not line:
            return None
        text = line.rstrip("\n")
        while block_is_open(text):
            more = next_line()
            if not more:
                break
            text += "\n" + more.rstrip("\n")
        return unquote_block(text)

    return read_line


@contextmanager
def keys_not_echoed(stream: TextIO | None = None) -> Iterator[None]:
    """While the model writes, the terminal does not echo what the user types.

    Echoed keys (and the `^C` a Ctrl-C echoes) would land inside the live part of the
    reply and throw Rich's line count off, leaving stray lines behind. The keys are not
    lost: they wait in the terminal's input queue for the next prompt. Ctrl-C still sends
    SIGINT (that is ISIG, not ECHO). No terminal, or no termios (Windows): nothing to do.
    """
    try:
        import termios

        fd = (stream or sys.stdin).fileno()
        saved = termios.tcgetattr(fd)
    except (ImportError, OSError, ValueError, AttributeError):
        yield
        return
    quiet = termios.tcgetattr(fd)
    quiet[3] &= ~(termios.ECHO | getattr(termios, "ECHOCTL", 0))
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)  # TCSANOW, not TCSAFLUSH: keep the typed-ahead keys


def history_path() -> Path:
    from platformdirs import user_state_dir

    return Path(user_state_dir("llmcli")) / "chat_history"


def terminal_reader(
    completions: Mapping[str, Iterable[str]],
    *,
    history: Path | None = None,
    input: Input | None = None,
    output: Output | None = None,
) -> ReadLine:
    """The interactive reader. `completions` maps each slash command to its argument words;
    `input`/`output` default to the terminal (tests pass a pipe input)."""
    keys = KeyBindings()

    @keys.add("enter")
    def _enter(event) -> None:
        buffer = event.current_buffer
        if block_is_open(buffer.text):
            buffer.insert_text("\n")
        else:
            buffer.validate_and_handle()

    @keys.add("escape", "enter")
    @keys.add("c-j")
    def _newline(event) -> None:
        event.current_buffer.insert_text("\n")

    leaving = False  # hides the placeholder so the last screen shows no ghost prompt

    @keys.add("c-c")
    def _clear(event) -> None:
        buffer = event.current_buffer
        if buffer.text:
            buffer.reset()
        else:
            hint = FormattedText([("class:placeholder", "(Ctrl-D or /exit to leave)")])
            run_in_terminal(lambda: print_formatted_text(hint, style=STYLE, output=event.app.output))

    @keys.add("c-d")
    def _eof(event) -> None:
        nonlocal leaving
        buffer = event.current_buffer
        if buffer.text:
            buffer.delete()
        else:
            leaving = True
            event.app.exit(exception=EOFError())

    session: PromptSession = PromptSession(
        history=_history(history or history_path()),
        completer=SlashCompleter(completions),
        complete_while_typing=True,
        key_bindings=keys,
        enable_history_search=False,
        prompt_continuation=lambda width, line_number, wrap_count: " " * width,
        placeholder=lambda: [] if leaving else PLACEHOLDER,
        style=STYLE,
        input=input,
        output=output,
    )
    prompt = FormattedText([("class:prompt", "› ")])

    def read_line() -> str | None:
        try:
            text = session.prompt(prompt)
        except EOFError:
            return None
        return unquote_block(text)

    return read_line


def _history(path: Path) -> History:
    """A FileHistory at `path`, or one in memory when the state dir is not writable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
        if not os.access(path, os.W_OK):
            raise PermissionError(path)
        return FileHistory(str(path))
    except OSError:
        return InMemoryHistory()


class SlashCompleter(Completer):
    """Completes `/command` names, then the argument words of the command typed."""

    def __init__(self, completions: Mapping[str, Iterable[str]]):
        self.completions = {name: list(words) for name, words in completions.items()}

    def get_completions(self, document, complete_event):
        text = document.text_before_cursor
        if not text.startswith("/") or "\n" in text:
            return
        parts = text.split(" ")
        if len(parts) == 1:
            for name in self.completions:
                if name.startswith(text):
                    yield Completion(name, start_position=-len(text))
        elif len(parts) == 2:
            for word in self.completions.get(parts[0], ()):
                if word.startswith(parts[1]):
                    yield Completion(word, start_position=-len(parts[1]))
