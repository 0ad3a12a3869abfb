"""The chat loop: read a line, run a slash command or answer it, repeat.

`ChatLoop` gets everything from outside: the model (`llmcli.Model`), the session, a
`read_line` callable (None = end of input), the slash-command dispatcher and the consoles
to print on. Tests drive it with a list of strings and a recording console; the command
wires in prompt-toolkit, `chat.commands.dispatch` and the real terminal. Nothing here
reads stdin, checks for a terminal or knows a slash command.

One turn (`respond`): trim the conversation to the context window (`Model.fit`: the
oldest turns go, the system prompt stays, the user is told the first time), build the
prompt (`Model.chat_prompt`: the chat template, or for a base model the plain-text one,
whose stop strings end the reply where the next user turn would begin), stream the reply
into a `MarkdownStream` (or `PlainStream`), keep it, print the stats line.

Ctrl-C while the model writes stops the reply: the partial reply is kept, marked, and the
loop goes on (`Response.consume`, with `CtrlCOnlyInEngine` letting the signal in only
while the engine computes, never in the middle of drawing). Any other error inside a turn
is reported in one line and the conversation is kept: a turn never ends the session.
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Iterator

from rich.console import Console
from rich.text import Text

from llmcli import render
from llmcli.chat.reader import ReadLine
from llmcli.chat.session import ChatSession
from llmcli.chat.stream import MarkdownStream, PlainStream
from llmcli.errors import LlmcliError

# Room kept free for the reply when trimming: max_new_tokens, but never more than this
# share of the window (a 512-token reply budget must not wipe a 1k-window conversation).
MAX_RESERVE_SHARE = 0.25

Dispatch = Callable[["ChatLoop", str], bool]  # a `/command args` line -> False to end the chat


@dataclass
class TurnStats:
    """The last reply's numbers: the engine's GenerationStats, the window it ran in, and
    the conversation's size afterwards (what the next turn re-sends)."""

    generation: Any  # llmcli.generation.GenerationStats
    context_length: int | None
    dropped: int
    conversation_tokens: int  # the conversation as the model will read it next, reply included


@dataclass
class ChatLoop:
    """One chat: `run()` reads lines until None or /exit; `respond()` answers the conversation."""

    model: Any  # llmcli.Model
    session: ChatSession
    read_line: ReadLine
    out: Console  # replies and command output
    dispatch: Dispatch
    status: Console | None = None  # stats, notices and errors; defaults to `out`
    markdown: bool = True  # stream replies as Markdown; False = plain text as it comes
    while_replying: Callable[[], ContextManager] = nullcontext  # the terminal's state during a reply (no echo)
    exit_on_ctrl_c: bool = False  # scripts: Ctrl-C ends the chat (after keeping the partial reply)
    last: TurnStats | None = None
    generated_total: int = 0
    last_reply_message: Any = None  # the ChatMessage of the last reply generated here...
    last_reply_ids: list[int] = field(default_factory=list)  # ...and the token ids the model picked for it
    _trim_told: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.status is None:
            self.status = self.out

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        while (line := self.read_line()) is not None:
            try:
                if not self.handle(line):
                    break
            except KeyboardInterrupt:  # during a slash command (a slow /probs...): stop it, go on
                if self.exit_on_ctrl_c:
                    raise
                self.status.print(Text("interrupted", style="yellow"))

    def handle(self, line: str) -> bool:
        """One line of input; False when the chat should end."""
        text = line.strip()
        if not text:
            return True
        if text.startswith("/") and not text.startswith("//"):
            return self.dispatch(self, text)
        if text.startswith("//"):  # `//etc/hosts is…` sends a message that starts with a slash
            text = text[1:]
        self.session.add_user(text)
        self.respond()
        return True

    # ------------------------------------------------------------------ one reply

    @property
    def context_length(self) -> int | None:
        return self.model.context_length

    def reserve(self) -> int:
        window = self.context_length or 0
        return max(1, min(self.session.settings.max_new_tokens, int(window * MAX_RESERVE_SHARE)))

    @property
    def awaiting_reply(self) -> bool:
        """True when the conversation ends with a message the model has not answered."""
        return bool(self.session.messages) and self.session.messages[-1].role == "user"

    def build_prompt(self, *, commit: bool = False, upto: int | None = None, generation_prompt: bool = True):
        """The prompt the model receives next: the conversation trimmed to the window.

        With `commit` (a real turn) the trimmed messages leave the session for good and the
        user is told; without it (`/show prompt`, `/tokens`, `/probs`) nothing changes. A
        message that does not fit even alone trims nothing: generating refuses it.
        `upto` builds the prompt as it was before the session's message at that index;
        `generation_prompt=False` leaves out the assistant prefix the template puts last.
        """
        messages = self.session.prompt_messages()
        if upto is not None:
            messages = messages[: len(messages) - len(self.session.messages) + upto]
        messages, dropped = self.model.fit(messages, self.reserve())
        prompt = self.model.chat_prompt(messages, add_generation_prompt=generation_prompt)
        if dropped and commit and upto is None and len(prompt.ids) < (self.context_length or 0):
            if self.session.keep_last(sum(1 for m in messages if m.role != "system")):
                self._tell_trimmed()
        return prompt

    def respond(self) -> None:
        """Generate the reply to the conversation as it stands, show it, keep it."""
        try:
            response = self.model.generate(self.build_prompt(commit=True), settings=self.session.settings)
            with CtrlCOnlyInEngine() as ctrl_c, self.while_replying():
                stream = MarkdownStream(self.out) if self.markdown else PlainStream(self.out)
                with stream:
                    response.consume(lambda event: stream.feed(event.text), allow=ctrl_c.allowed)
        except KeyboardInterrupt:  # before the model started
            self._take_back_message()
            if self.exit_on_ctrl_c:
                raise
            self.status.print(stats_line(None, interrupted=True))
            return
        except LlmcliError as e:  # too long for the window, a bad setting...
            self._take_back_message()
            self.error(e)
            return
        except BrokenPipeError:  # the reader of stdout left (`llmcli chat < script | head`): the chat is over
            raise
        except Exception as e:  # noqa: BLE001 - a bug in one turn must not end the session
            logging.getLogger("llmcli").error("the reply failed", exc_info=True)  # shown with --verbose
            self._take_back_message()
            self.error(_unexpected(e))
            return
        interrupted = self._keep_reply(response)
        if interrupted and self.exit_on_ctrl_c:
            raise KeyboardInterrupt

    def _take_back_message(self) -> None:
        """The message just sent cannot be answered: take it back so the conversation stays usable."""
        if self.awaiting_reply:
            self.session.messages.pop()

    def _keep_reply(self, response) -> bool:
        """Put the reply in the session, print its stats line; return True if it was interrupted."""
        stats = response.stats
        interrupted = response.interrupted
        self.generated_total += stats.generated_tokens
        if interrupted and not response.text.strip():
            # Nothing was written: keep no empty reply, and take the question back too, so
            # the conversation still alternates (Up brings the message back).
            self._take_back_message()
            line = stats_line(TurnStats(stats, self.context_length, self.session.dropped, stats.prompt_tokens), interrupted)
            line.append(" · nothing written, message not kept", style="dim")
        else:
            self.session.add_assistant(response.text, interrupted=interrupted)
            self.last_reply_message, self.last_reply_ids = self.session.messages[-1], response.token_ids
            # A remote server without /tokenize gives no ids: its usage counts say how big the conversation is.
            size = len(self.build_prompt(generation_prompt=False).ids) or stats.prompt_tokens + stats.generated_tokens
            self.last = TurnStats(stats, self.context_length, self.session.dropped, size)
            line = stats_line(self.last, interrupted)
        self.status.print(line)
        if self.markdown:
            self.status.print()
        return interrupted

    # ------------------------------------------------------------------ talking to the user

    def _tell_trimmed(self) -> None:
        if self._trim_told:
            return
        self._trim_told = True
        self.notice(
            f"The conversation no longer fits the model's {self.context_length:,}-token context window: "
            "the oldest turns are being dropped (the system prompt stays). /show prompt shows what the model sees."
        )

    def reset_trim_notice(self) -> None:
        self._trim_told = False

    def notice(self, message: str) -> None:
        self.status.print(Text(render.escape_controls(message), style="yellow"))

    def info(self, message: str | Text) -> None:
        self.status.print(message if isinstance(message, Text) else Text(render.escape_controls(message), style="dim"))

    def error(self, e: LlmcliError) -> None:
        render.error(e.message, e.hint, console=self.status)


def _unexpected(e: Exception) -> LlmcliError:
    """An error llmcli did not foresee (a bug): reported in one line, the chat goes on."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return LlmcliError(
        f"the reply failed: {type(e).__name__}{': ' + first if first else ''}",
        "the conversation is kept; /save it, and run with --verbose to see the traceback",
    )


class CtrlCOnlyInEngine:
    """Let Ctrl-C through only while the engine computes; elsewhere hold it until then.

    A KeyboardInterrupt that lands in the middle of drawing the live reply tears the
    screen (Rich has written half a frame) or escapes `respond` entirely. While this
    guard is active, SIGINT outside `allowed()` is only noted; the next `allowed()` raises
    it, outside the engine, and the loop ends the generation as interrupted. Without a
    main thread to own the signal (tests in threads), it does nothing.
    """

    def __init__(self) -> None:
        self.held = True
        self.pending = False
        self._previous = None

    def __enter__(self) -> CtrlCOnlyInEngine:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _on_sigint(self, signum, frame) -> None:
        if self.held:
            self.pending = True
        else:
            raise KeyboardInterrupt

    @contextmanager
    def allowed(self) -> Iterator[None]:
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt
        self.held = False
        try:
            yield
        finally:
            self.held = True


def stats_line(turn: TurnStats | None, interrupted: bool = False) -> Text:
    """`42 tokens · 31.5 tok/s · first token 0.12 s · context 1,024 / 8,192 (12%)`, dim;
    then how much of that the next turn re-sends (the model keeps nothing between turns)."""
    from llmcli.render.stats import stats_parts

    line = Text(style="dim")
    if interrupted:
        line.append("interrupted", style="yellow")
        if turn is not None:
            line.append(" · ")
    if turn is None:
        return line
    g = turn.generation
    parts = stats_parts(g, reason=False, total=False)
    parts.append(f"re-read {g.prompt_tokens:,} prompt tokens")  # the model keeps nothing between turns
    window = turn.context_length
    used = turn.conversation_tokens
    parts.append(f"context {used:,} / {window:,} ({100 * used / window:.0f}%)" if window else f"context {used:,}")
    if turn.dropped:
        parts.append(f"{turn.dropped} oldest message{'s' if turn.dropped != 1 else ''} dropped")
    if g.finish_reason == "length":
        parts.append("stopped at max_new_tokens")
    line.append(" · ".join(parts))
    return line
