"""Slash commands: one table, one dispatcher, one small function per command.

Each function takes the `ChatLoop` and the text after the command name, prints through
the loop's consoles, and returns False only to end the chat. A `LlmcliError` raised by a
command (a bad `/set` value, a missing file) is printed as one line and the chat goes on.
Unknown commands say so and suggest the nearest name.
"""

from __future__ import annotations

import difflib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from rich import box
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from llmcli import render
from llmcli.chat.session import SETTABLE, ChatSession
from llmcli.errors import LlmcliError

if TYPE_CHECKING:
    from llmcli.chat.loop import ChatLoop


@dataclass(frozen=True)
class Command:
    name: str
    run: Callable[["ChatLoop", str], "bool | None"]
    usage: str
    help: str
    words: tuple[str, ...] = ()  # argument words Tab completes
    aliases: tuple[str, ...] = ()
    spaced: bool = True  # a blank line after its output (on a terminal)


COMMANDS: dict[str, Command] = {}
SHOW_TOPICS = ("settings", "prompt", "template", "info")


def command(name: str, usage: str, help: str, words: tuple[str, ...] = (), aliases: tuple[str, ...] = (), spaced: bool = True):
    def register(fn):
        COMMANDS[name] = Command(name, fn, usage, help, words, aliases, spaced)
        return fn

    return register


def lookup(name: str) -> Command | None:
    return COMMANDS.get(name) or next((c for c in COMMANDS.values() if name in c.aliases), None)


def completions() -> dict[str, tuple[str, ...]]:
    """What the reader's Tab completes: every name and alias, with its argument words."""
    return {name: c.words for c in COMMANDS.values() for name in (c.name, *c.aliases)}


def dispatch(loop: ChatLoop, line: str) -> bool:
    """Run one `/command args` line; False when the chat should end."""
    name, _, arg = line.strip().partition(" ")
    if "\n" in name:  # `/system` followed by a pasted block on the next line
        name, _, rest = name.partition("\n")
        arg = rest + (" " + arg if arg else "")
    name = name.lower()
    cmd = lookup(name)
    if cmd is None:
        names = [n for c in COMMANDS.values() for n in (c.name, *c.aliases)]
        topic = next((t for t in SHOW_TOPICS if name[1:] == t), None)
        near = [f"/show {topic}"] if topic else difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        hint = f"did you mean {near[0]}?" if near else "type /help for the list"
        loop.error(LlmcliError(f"unknown command {name}", hint + " (start with // to send a message that begins with /)"))
        if loop.markdown:
            loop.out.print()
        return True
    try:
        go_on = cmd.run(loop, arg.strip()) is not False
    except LlmcliError as e:
        loop.error(e)
        go_on = True
    except Exception as e:  # noqa: BLE001 - a bug in one command must not end the session
        logging.getLogger("llmcli").error("%s failed", name, exc_info=True)  # shown with --verbose
        loop.error(LlmcliError(f"{name} failed: {type(e).__name__}: {e}", "the conversation is kept; --verbose shows the traceback"))
        go_on = True
    if go_on and cmd.spaced and loop.markdown:
        loop.out.print()
    return go_on


# ---------------------------------------------------------------------- the commands


@command("/help", "/help", "this list", aliases=("/?",))
def cmd_help(loop: ChatLoop, arg: str) -> None:
    table = Table(box=None, show_header=False, padding=(0, 2, 0, 0))
    table.add_column(style="cyan", no_wrap=True)
    table.add_column()
    for c in COMMANDS.values():
        table.add_row(Text(c.usage), Text(c.help))
    loop.out.print(table)
    keys = Table(box=None, show_header=False, padding=(0, 2, 0, 0))
    keys.add_column(style="cyan", no_wrap=True)
    keys.add_column()
    for key, what in (
        ("Alt-Enter, Ctrl-J", "new line (a paste is always one message)"),
        ('"""', 'start a multi-line message; end it with """'),
        ("Ctrl-C", "stop the reply (it is kept, marked interrupted); at the prompt, clear the line"),
        ("Ctrl-D", "leave"),
        ("//text", "send a message that starts with /"),
    ):
        keys.add_row(Text(key), Text(what))
    loop.out.print()
    loop.out.print(keys)


def _system_words() -> tuple[str, ...]:
    from llmcli.prompting import list_system_prompts

    return ("none", *(f"@{name}" for name in list_system_prompts()))


@command("/system", "/system [TEXT | @NAME | none]", "show or set the system prompt (@NAME: one from prompts/)", words=_system_words())
def cmd_system(loop: ChatLoop, arg: str) -> None:
    session = loop.session
    if not arg:
        default = loop.model.default_system
        if session.system:
            loop.out.print(Panel(render.literal(session.system), title="system prompt", title_align="left", box=box.ROUNDED))
            if default:
                loop.info("it replaces the chat template's default system prompt")
        elif default:
            loop.out.print(Panel(render.literal(default), title="system prompt: the chat template's default", title_align="left", box=box.ROUNDED))
            loop.info("the template adds it when you set none; /system TEXT replaces it")
        else:
            loop.info("no system prompt (set one with /system TEXT)")
        return
    if arg.lower() in ("none", "off"):
        session.system = None
        default = loop.model.default_system
        loop.info("system prompt removed" + (f"; the chat template's default applies again: “{_clip(default)}”" if default else ""))
        return
    if arg.startswith("@"):
        from llmcli.prompting import load_system_prompt

        arg = load_system_prompt(arg[1:])
    session.system = arg.strip()
    loop.info(f"system prompt set ({len(session.system):,} characters); it applies from the next reply")


@command("/set", "/set KEY VALUE", ", ".join(SETTABLE), words=SETTABLE)
def cmd_set(loop: ChatLoop, arg: str) -> None:
    key, _, value = arg.partition(" ")
    if not key:
        from llmcli.chat.show import show_settings

        show_settings(loop)
        return
    if not value.strip():
        raise LlmcliError(f"/set {key} needs a value", f"e.g. /set {key} {_example(key)}")
    settings = loop.session.set(key, value)
    key = key.lower().replace("-", "_")
    loop.info(f"{key} = {_value(getattr(settings, key))}")


@command("/show", "/show settings|prompt|template|info", "sampling settings · the exact prompt the model reads · the template · the model", words=SHOW_TOPICS)
def cmd_show(loop: ChatLoop, arg: str) -> None:
    topic = arg.strip().lower() or "settings"
    matches = [t for t in SHOW_TOPICS if t.startswith(topic)]
    if len(matches) != 1:
        raise LlmcliError(f"/show {topic}: no such topic", "one of: " + ", ".join(SHOW_TOPICS))
    from llmcli.chat import show

    {"settings": show.show_settings, "prompt": show.show_prompt, "template": show.show_template, "info": show.show_info}[matches[0]](loop)


@command("/clear", "/clear", "forget the conversation (the system prompt stays)")
def cmd_clear(loop: ChatLoop, arg: str) -> None:
    n = loop.session.clear()
    loop.reset_trim_notice()
    loop.info(f"conversation cleared ({n} message{'s' if n != 1 else ''} forgotten)")


@command("/undo", "/undo", "drop the last exchange (your message and its reply)")
def cmd_undo(loop: ChatLoop, arg: str) -> None:
    removed = loop.session.undo()
    first = removed[0].content
    loop.info(f"removed {len(removed)} message{'s' if len(removed) != 1 else ''}: “{_clip(first)}”")


@command("/retry", "/retry", "write the last reply again", spaced=False)
def cmd_retry(loop: ChatLoop, arg: str) -> None:
    loop.session.pop_reply_for_retry()
    loop.respond()


@command("/save", "/save [PATH]", "save the chat as JSON (default: chat-DATE-TIME.json here)")
def cmd_save(loop: ChatLoop, arg: str) -> None:
    path = arg or time.strftime("chat-%Y%m%d-%H%M%S.json")
    loop.session.model = loop.model.label
    target = loop.session.save(path)
    n = len(loop.session.messages)
    what = f"{n} message{'s' if n != 1 else ''}" if n else "no messages yet (only the settings and the system prompt)"
    loop.info(f"saved {what} to {target}")


@command("/load", "/load PATH", "continue a chat saved with /save")
def cmd_load(loop: ChatLoop, arg: str) -> None:
    if not arg:
        raise LlmcliError("/load needs a file", "e.g. /load chat.json")
    loaded = ChatSession.load(arg)
    note = ""
    if loaded.model and loaded.model != loop.model.label:
        note = f" (saved with {loaded.model}, continuing with {loop.model.label})"
    loaded.model = loop.model.label
    loop.session = loaded
    loop.reset_trim_notice()
    replay(loop)
    n = len(loaded.messages)
    loop.info(f"loaded {n} message{'s' if n != 1 else ''} from {arg}{note}")


@command("/tokens", "/tokens [reply|prompt]", "the last reply or the whole prompt as tokens, with counts", words=("reply", "prompt"))
def cmd_tokens(loop: ChatLoop, arg: str) -> None:
    which = arg.strip().lower() or ("reply" if loop.session.last_reply() else "prompt")
    if which not in ("reply", "prompt"):
        raise LlmcliError(f"/tokens {which}: say reply or prompt")
    from llmcli.chat import views

    views.show_tokens(loop, which)


@command("/probs", "/probs [N]", "the next-token table where the reply begins (top N, default 10)")
def cmd_probs(loop: ChatLoop, arg: str) -> None:
    try:
        top = int(arg) if arg else 10
    except ValueError:
        raise LlmcliError(f"/probs takes a number of rows, not '{arg}'", "e.g. /probs 20") from None
    if not 1 <= top <= 1000:
        raise LlmcliError("/probs N: N must be between 1 and 1000")
    from llmcli.chat import views

    views.show_probs(loop, top)


@command("/score", "/score", "what the model thought of its own last reply: each token's surprise")
def cmd_score(loop: ChatLoop, arg: str) -> None:
    from llmcli.chat import views

    views.show_score(loop)


@command("/lens", "/lens [K]", "each layer's guess at the last reply's first token (logit lens)")
def cmd_lens(loop: ChatLoop, arg: str) -> None:
    from llmcli.chat import views

    views.show_lens(loop, _number("/lens", arg, 5, 1, 50))


@command("/attention", "/attention [LAYER]", "the last reply's attention back over the conversation")
def cmd_attention(loop: ChatLoop, arg: str) -> None:
    from llmcli.chat import views

    views.show_attention(loop, _number("/attention", arg, None, -1000, 1000))


@command("/stats", "/stats", "numbers of the last reply and of the session")
def cmd_stats(loop: ChatLoop, arg: str) -> None:
    table = Table(box=None, show_header=False, padding=(0, 2, 0, 0))
    table.add_column(style="cyan", no_wrap=True)
    table.add_column(justify="right")
    last = loop.last
    if last is not None:
        g = last.generation
        table.add_row(Text("last reply", style="bold"), "")
        table.add_row("  prompt tokens", f"{g.prompt_tokens:,}")
        table.add_row("  generated tokens", f"{g.generated_tokens:,}")
        table.add_row("  time to first token", f"{g.time_to_first_token:.3f} s")
        table.add_row("  prompt processing", f"{g.prefill_tokens_per_second:,.1f} tok/s")
        table.add_row("  generation", f"{g.decode_tokens_per_second:,.1f} tok/s")
        table.add_row("  total time", f"{g.total_seconds:.2f} s")
        if g.peak_memory_bytes:
            table.add_row("  peak memory", f"{g.peak_memory_bytes / 2**20:,.0f} MiB")
        table.add_row("  finished because", {"stop": "end of turn", "length": "max_new_tokens reached"}.get(g.finish_reason, g.finish_reason))
    else:
        table.add_row("last reply", "none yet")
    session = loop.session
    window = loop.context_length
    table.add_row(Text("session", style="bold"), "")
    table.add_row("  messages", f"{len(session.messages):,}")
    table.add_row("  tokens generated", f"{loop.generated_total:,}")
    if last is not None:
        used = last.conversation_tokens
        table.add_row("  context used", f"{used:,} / {window:,}" if window else f"{used:,}")
    elif window:
        table.add_row("  context window", f"{window:,} tokens")
    if session.dropped:
        table.add_row("  dropped to fit", f"{session.dropped:,} oldest messages")
    loop.out.print(table)


@command("/exit", "/exit", "leave (Ctrl-D works too)", aliases=("/quit", "/bye"))
def cmd_exit(loop: ChatLoop, arg: str) -> bool:
    return False


# ---------------------------------------------------------------------- helpers


def replay(loop: ChatLoop) -> None:
    """Show a loaded conversation as it looked: each message once, replies as Markdown."""
    for m in loop.session.messages:
        if m.role == "user":
            loop.out.print(Text.assemble(("› ", "bold green"), render.escape_controls(m.content)))
            continue
        if loop.markdown:
            loop.out.print(Markdown(render.escape_controls(m.content.strip()), hyperlinks=False))  # no OSC 8 links
        else:
            loop.out.print(render.literal(m.content.strip()))
        if m.interrupted:
            loop.out.print(Text("interrupted", style="dim yellow"))
        loop.out.print()


def _number(command: str, arg: str, default, low: int, high: int):
    """A slash command's optional whole-number argument."""
    if not arg:
        return default
    try:
        value = int(arg)
    except ValueError:
        raise LlmcliError(f"{command} takes a whole number, not '{arg}'", f"e.g. {command} {max(low, 1)}") from None
    if not low <= value <= high:
        raise LlmcliError(f"{command} {value}: out of range", f"from {low} to {high}")
    return value


def _value(value) -> str:
    return "off" if value is None else str(value)


def _example(key: str) -> str:
    return {"temperature": "0.7", "top_p": "0.9", "top_k": "40", "min_p": "0.05", "max_new_tokens": "256", "seed": "42"}.get(key, "1.1")


def _clip(text: str | None, width: int = 50) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"
