"""What the user gives a command: the text (argument, --file, stdin), the system prompt, the mode.

One reader for every command, so the same mistake gets the same words everywhere:
- the text comes from the argument, `--file PATH`, or stdin (`-`, or piped with no
  argument); text is read byte for byte (no newline translation: raw means raw) and must
  be UTF-8 (the error names the first bad byte and its offset);
- `join=True` (generate, compare) adds piped stdin or --file after the argument and a
  blank line, as simonw/llm does; otherwise giving both is an error;
- nothing at all is "no prompt given"; given but empty (or only whitespace, unless
  `empty_ok`) is "the prompt is empty".
"""

from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path
from typing import IO, Iterator

from llmcli.errors import BadInput


def read_text(
    command: str,
    argument: str | None,
    file: Path | None,
    stdin: IO[str] | None = None,
    *,
    join: bool = False,
    empty_ok: bool = False,
    what: str = "prompt",
) -> str:
    stdin = sys.stdin if stdin is None else stdin
    if argument == "-":
        argument, rest = None, _read_stdin(stdin)
    elif file is not None:
        if argument is not None and not join:
            raise BadInput(f"give the {what} as an argument or with --file, not both", "drop one of them")
        rest = read_file(file, "--file")
    elif argument is None or join:
        rest = None if _is_terminal(stdin) else _read_stdin(stdin)
    else:
        rest = None
    if argument is None and rest is None:
        raise BadInput(f"no {what} given", f'give it as an argument (llmcli {command} "..."), with --file, or on stdin')
    parts = [part for part in (argument, rest) if part is not None and (empty_ok or part.strip())]
    if not parts:
        if empty_ok:
            return ""
        raise BadInput(f"the {what} is empty", "give some text")
    return "\n\n".join(parts)


def read_system(system: str | None, system_file: Path | None, prompt_name: str | None) -> str | None:
    """The system prompt from --system, --system-file or --prompt NAME (one of them)."""
    given = [name for name, value in (("--system", system), ("--system-file", system_file), ("--prompt", prompt_name)) if value is not None]
    if len(given) > 1:
        raise BadInput(f"{' and '.join(given)} both give a system prompt", "use one of them")
    if system_file is not None:
        return read_file(system_file, "--system-file")
    if prompt_name is not None:
        from llmcli.prompting import load_system_prompt

        return load_system_prompt(prompt_name)
    return system


def read_mode(raw: bool, chat: bool, system: str | None) -> str:
    """The prompt mode --raw / --chat ask for ("auto" when neither), checked against a system prompt."""
    if raw and chat:
        raise BadInput("--raw and --chat contradict each other", "pick one")
    if raw and system is not None:
        raise BadInput("a system prompt needs chat mode, and --raw sends the text as is", "drop --raw or the system prompt")
    return "raw" if raw else "chat" if chat else "auto"


def read_file(path: Path, option: str) -> str:
    try:
        data = path.expanduser().read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{option}: no such file: {path}", "check the path") from None
    except IsADirectoryError:
        raise BadInput(f"{option}: cannot read {path}: it is a directory", "give a text file") from None
    except OSError as e:
        raise BadInput(f"{option}: cannot read {path}: {e.strerror or e}", "check the path and its permissions") from None
    return utf8(data, str(path))


def _read_stdin(stdin: IO[str]) -> str:
    stream = getattr(stdin, "buffer", None)
    return stdin.read() if stream is None else utf8(stream.read(), "stdin")


def utf8(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(
            f"{where} is not UTF-8 text (byte 0x{data[e.start]:02X} at offset {e.start})",
            "convert it first, e.g. `iconv -f latin1 -t utf-8`",
        ) from None


def _is_terminal(stream: IO[str] | None) -> bool:
    try:
        return stream is None or stream.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def flags(*words: tuple[str, str]) -> Iterator[None]:
    """Errors the library words about values ("position 9 is outside…") said in terms of the
    command's flags ("--position 9 is outside…"): pairs of (the library's word, the flag)."""
    try:
        yield
    except BadInput as e:
        for word, flag in words:
            if e.message.startswith(word):
                raise BadInput(flag + e.message[len(word) :], e.hint) from e
        raise


def parse_temperatures(text: str) -> tuple[float, ...]:
    """'0.5,1,1.5' -> (0.5, 1.0, 1.5); every value finite and >= 0."""
    values = []
    for part in text.replace(" ", "").split(","):
        try:
            value = float(part)
        except ValueError:
            raise BadInput(
                f"--temperature: '{part}' is not a number", "give one temperature or a comma-separated list, e.g. --temperature 0.5,1,1.5"
            ) from None
        if not math.isfinite(value) or value < 0:
            raise BadInput(f"--temperature: {part} is out of range", "temperatures are >= 0 (0 means greedy)")
        values.append(value)
    return tuple(values)
