"""The chat loop: read a line, run a slash command or answer it, repeat.

`ChatLoop` gets everything from outside: the loaded model, the session, a `read_line`
callable (None = end of input) and the consoles to print on. Tests drive it with a list
of strings and a recording console; the command wires in prompt-toolkit and the real
terminal. Nothing here reads stdin or checks for a terminal itself.

One turn (`respond`): trim the conversation to the context window (the engine's
`trim_to_context`; the oldest turns go, the system prompt stays, the user is told the
first time), build the prompt (`build_chat_prompt`: the tokenizer's chat template, or the
plain-text template from prompts/ whose stop strings end the reply where the next user
turn would begin), stream `generate`'s tokens into a `MarkdownStream` (or `PlainStream`),
keep the reply, print the stats line.

Ctrl-C while the model writes: the engine ends the generation with finish_reason
"interrupted" and keeps the text so far; should the interrupt land in our own rendering
code instead, we stop iterating and reading `.stats` closes the generation, which records
"interrupted" too. Either way the partial reply is kept, marked, and the loop goes on.
"""

from __future__ import annotations

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


@dataclass
class TurnStats:
    """The last reply's numbers: the engine's GenerationStats plus the window it ran in."""

    generation: Any  # llmcli.generation.GenerationStats
    context_length: int | None
    dropped: int

    @property
    def context_used(self) -> int:
        return self.generation.prompt_tokens + self.generation.generated_tokens


@dataclass
class ChatLoop:
    """One chat: `run()` reads lines until None or /exit; `respond()` answers the conversation."""

    loaded: Any  # llmcli.models.LoadedModel
    session: ChatSession
    read_line: ReadLine
    out: Console  # replies and command output
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
        from llmcli.chat.commands import dispatch

        text = line.strip()
        if not text:
            return True
        if text.startswith("/") and not text.startswith("//"):
            return dispatch(self, text)
        if text.startswith("//"):  # `//etc/hosts is…` sends a message that starts with a slash
            text = text[1:]
        self.session.add_user(text)
        self.respond()
        return True

    # ------------------------------------------------------------------ one reply

    @property
    def context_length(self) -> int | None:
        return self.loaded.context_length

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
        message that does not fit even alone trims nothing: `generate` refuses it.
        `upto` builds the prompt as it was before the session's message at that index;
        `generation_prompt=False` leaves out the assistant prefix the template puts last.
        """
        from llmcli.prompting import build_chat_prompt, trim_to_context

        tokenizer = self.loaded.tokenizer
        messages = self.session.prompt_messages()
        if upto is not None:
            messages = messages[: len(messages) - len(self.session.messages) + upto]
        dropped = 0
        if self.context_length:
            messages, dropped = trim_to_context(tokenizer, messages, self.context_length, self.reserve())
        prompt = build_chat_prompt(tokenizer, messages, add_generation_prompt=generation_prompt)
        if dropped and commit and upto is None and len(prompt.ids) < self.context_length:
            if self.session.keep_last(sum(1 for m in messages if m.role != "system")):
                self._tell_trimmed()
        return prompt

    def respond(self) -> None:
        """Generate the reply to the conversation as it stands, show it, keep it."""
        from llmcli.generation import generate

        try:
            prompt = self.build_prompt(commit=True)
            generation = generate(
                self.loaded.model,
                self.loaded.tokenizer,
                prompt.ids,
                self.session.settings,
                stop_strings=prompt.stop_strings,
                context_length=self.context_length,
            )
        except (LlmcliError, KeyboardInterrupt) as e:
            # The message just sent cannot be answered (too long for the window, or Ctrl-C
            # before the model started): take it back so the conversation stays usable.
            if self.awaiting_reply:
                self.session.messages.pop()
            if isinstance(e, LlmcliError):
                self.error(e)
            elif self.exit_on_ctrl_c:
                raise
            else:
                self.status.print(stats_line(None, interrupted=True))
            return
        with CtrlCOnlyInEngine() as ctrl_c:
            with self.while_replying():
                self._stream_reply(generation, ctrl_c)
            interrupted = self._keep_reply(generation)
        if interrupted and self.exit_on_ctrl_c:
            raise KeyboardInterrupt

    def _stream_reply(self, generation, ctrl_c: CtrlCOnlyInEngine) -> None:
        stream = MarkdownStream(self.out) if self.markdown else PlainStream(self.out)
        with stream:
            events = iter(generation)
            started = False  # the reply is shown from its first non-blank character on
            try:
                while True:
                    with ctrl_c.allowed():  # the engine catches it and ends with "interrupted"
                        event = next(events, None)
                    if event is None:
                        break
                    text = event.text if started else event.text.lstrip()
                    started = started or bool(text)
                    stream.feed(text)
            except KeyboardInterrupt:
                pass  # it came while we were drawing: reading .stats closes the generation as interrupted

    def _keep_reply(self, generation) -> bool:
        """Put the reply in the session, print its stats line; return True if it was interrupted."""
        stats = generation.stats
        interrupted = stats.finish_reason == "interrupted"
        self.last = TurnStats(stats, self.context_length, self.session.dropped)
        self.generated_total += stats.generated_tokens
        line = stats_line(self.last, interrupted)
        if interrupted and not generation.text.strip():
            # Nothing was written: keep no empty reply, and take the question back too, so
            # the conversation still alternates (Up brings the message back).
            if self.awaiting_reply:
                self.session.messages.pop()
            line.append(" · nothing written, message not kept", style="dim")
        else:
            self.session.add_assistant(generation.text, interrupted=interrupted)
            self.last_reply_message, self.last_reply_ids = self.session.messages[-1], list(generation.token_ids)
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
        self.status.print(Text.assemble(("error: ", "bold red"), render.escape_controls(e.message)))
        if e.hint:
            self.status.print(Text.assemble(("hint: ", "yellow"), render.escape_controls(e.hint)))


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
    """`42 tokens · 31.5 tok/s · first token 0.12 s · context 1,024 / 8,192 (12%)`, dim."""
    line = Text(style="dim")
    if interrupted:
        line.append("interrupted", style="yellow")
        if turn is not None:
            line.append(" · ")
    if turn is None:
        return line
    g = turn.generation
    parts = [
        f"{g.generated_tokens:,} token{'s' if g.generated_tokens != 1 else ''}",
        f"{g.decode_tokens_per_second:.1f} tok/s",
        f"first token {g.time_to_first_token:.2f} s",
    ]
    if turn.context_length:
        share = 100 * turn.context_used / turn.context_length
        parts.append(f"context {turn.context_used:,} / {turn.context_length:,} ({share:.0f}%)")
    else:
        parts.append(f"context {turn.context_used:,}")
    if turn.dropped:
        parts.append(f"{turn.dropped} oldest message{'s' if turn.dropped != 1 else ''} dropped")
    if g.finish_reason == "length":
        parts.append("stopped at max_new_tokens")
    line.append(" · ".join(parts))
    return line
