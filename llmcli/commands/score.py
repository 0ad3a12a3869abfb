"""`llmcli score`: how surprised the model is by each token of a text — the training loss, made visible.

The text is scored byte for byte (raw), or with `--chat` as an assistant reply after the chat
template's prompt (only the reply's tokens count; `--user` is the message it answers).
Options are checked before any model loads.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from llmcli import options, render
from llmcli.commands import view_options as vo
from llmcli.errors import BadInput

TEXT = "Text"
SHOW = "What to show"


class By(str, Enum):
    rank = "rank"
    surprisal = "surprisal"


def score(
    text: Annotated[Optional[str], typer.Argument(help="The text. Without it: --file, or stdin when piped.", show_default=False)] = None,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", help="Read the text from a file ('-' for stdin).", rich_help_panel=TEXT)] = None,
    chat: Annotated[bool, typer.Option("--chat", help="Score TEXT as the assistant's reply inside the chat template.", rich_help_panel=TEXT)] = False,
    user: Annotated[Optional[str], typer.Option("--user", help="With --chat: the user message the reply answers.", rich_help_panel=TEXT)] = None,
    system: Annotated[Optional[str], typer.Option("--system", "-s", help="With --chat: a system message.", rich_help_panel=TEXT)] = None,
    by: Annotated[By, typer.Option("--by", help="Colour tokens by rank bucket (GLTR) or by surprisal in bits.", rich_help_panel=SHOW)] = By.rank,
    surprises: Annotated[int, typer.Option("--surprises", help="How many of the least likely tokens to list.", rich_help_panel=SHOW)] = 8,
    stride: Annotated[
        Optional[int],
        typer.Option("--stride", help="Past the context window: tokens of context each new window keeps (default half the window).", rich_help_panel=SHOW),
    ] = None,
    window: Annotated[
        Optional[int], typer.Option("--window", help="Tokens per forward pass (default the model's context window).", rich_help_panel=SHOW)
    ] = None,
    model: vo.Models = None,
    dtype: options.DTypeOpt = options.DType.auto,
    device: options.DeviceOpt = options.Device.auto,
    trust_remote_code: options.TrustRemoteCode = False,
    json: options.Json = False,
    svg: vo.Svg = None,
    html: vo.Html = None,
) -> None:
    """Colour each token of a text by how surprised the model was; NLL, perplexity, bits per byte."""
    vo.check_exports(json, svg, html)
    if (user is not None or system is not None) and not chat:
        raise BadInput("--user and --system need --chat", "they are the turns before the reply being scored")
    if surprises < 0:
        raise BadInput(f"--surprises must be 0 or more (got {surprises})", "it is how many tokens the surprises table lists")
    if window is not None and window < 2:
        raise BadInput(f"--window must be at least 2 (got {window})", "it is how many tokens one forward pass reads")
    from llmcli.commands.probs import read_prompt

    source = read_prompt(text, file)
    reports = [_score_one(name, source, chat, user, system, stride, window, dtype, device, trust_remote_code) for name in (model or [None])]
    if json:
        docs = [r.to_dict() for r in reports]
        render.print_json(docs[0] if len(docs) == 1 else docs)
        return
    from llmcli.render import score as show
    from llmcli.render import views

    console = views.recording(bool(svg or html))
    show.render_reports(reports, by=by.value, surprises=surprises, console=console)
    views.save_exports(console, svg, html, title="llmcli score")


def _score_one(name, source, chat, user, system, stride, window, dtype, device, trust_remote_code):
    from llmcli.inspect import score as sc

    loaded = vo.load(name, dtype, device, trust_remote_code)
    model, tokenizer = loaded.model, loaded.tokenizer
    with _progress(loaded.label) as progress:
        settings = {"stride": stride, "window": window, "progress": progress}
        if not chat:
            return sc.score_text(model, tokenizer, source, label=loaded.label, **settings)
        prompt, reply_ids, reply = _chat_ids(tokenizer, source, user, system)
        return sc.score_reply(model, tokenizer, prompt.ids, reply_ids, text=reply, mode=prompt.mode, label=loaded.label, **settings)


def _chat_ids(tokenizer, source: str, user: str | None, system: str | None):
    """The chat prompt up to the assistant's turn, and the reply's ids as its continuation."""
    from llmcli.prompting import Message, build_chat_prompt

    reply = source.strip()
    if not reply:
        raise BadInput("the reply is empty: there is nothing to score", "give the assistant's reply as the text")
    messages = ([Message("system", system)] if system is not None else []) + [Message("user", user or "")]
    prompt = build_chat_prompt(tokenizer, messages, add_generation_prompt=True)
    # The plain template ends at "Assistant:" with no space: the reply's first token carries it.
    continuation = " " + reply if prompt.mode == "template" else reply
    ids = tokenizer(continuation, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    return prompt, list(ids), reply


class _progress:
    """A bar on stderr while windows are scored, when stderr is a terminal and there is more than one."""

    def __init__(self, label: str):
        self.label, self.bar, self.task = label, None, None

    def __enter__(self):
        return self.update

    def update(self, done: int, total: int) -> None:
        console = render.stderr()
        if self.bar is None and done < total and console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn(f"Scoring with {self.label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True)
            self.task = self.bar.add_task("", total=total)
            self.bar.start()
        if self.bar is not None:
            self.bar.update(self.task, completed=done)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def register(app: typer.Typer) -> None:
    app.command()(score)
