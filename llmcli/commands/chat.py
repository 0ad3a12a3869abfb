"""`llmcli chat`: talk to a model in the terminal.

Options -> load -> session -> `ChatLoop` with the right reader, dispatcher and consoles:
- stdin a terminal (and stdout too): prompt-toolkit reader, header, Markdown replies;
- otherwise each input line is one message and replies are plain text on stdout, with
  the stats lines on stderr, so `printf 'hi\\nbye\\n' | llmcli chat` works in scripts.
Sampling flags left out take the model's recommended values; a chat continued with
`--load` keeps its saved settings except the flags typed now.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from llmcli import options
from llmcli.commands import _input
from llmcli.commands._load import load


@options.loading
@options.sampling(max_new_tokens=512)
def chat(
    model: options.Model = None,
    system: options.System = None,
    system_file: options.SystemFile = None,
    prompt_name: options.PromptName = None,
    load_file: Annotated[Optional[Path], typer.Option("--load", help="Continue a chat saved with /save.", show_default=False)] = None,
    *,
    settings,
    typed,
    loading,
) -> None:
    """Chat with a model: streamed Markdown replies, slash commands (/help), stats after each reply."""
    from llmcli.chat.session import ChatSession

    system_text = _input.read_system(system, system_file, prompt_name)
    system_text = (system_text.strip() or None) if system_text is not None else None
    if load_file is not None:
        session = ChatSession.load(load_file)
        session.settings = replace(session.settings, **{k: getattr(settings, k) for k in typed}).validate()
        if system_text is not None:
            session.system = system_text
    else:
        session = ChatSession(system=system_text, settings=settings)

    loaded = load(model, loading)
    if load_file is None:
        session.settings = options.with_recommended(session.settings, loaded, typed)
    session.model = loaded.label
    run_chat(loaded, session, replay=load_file is not None)


def run_chat(model, session, *, replay: bool = False) -> None:
    """Pick the reader and consoles for this terminal (or pipe) and run the loop."""
    from llmcli import render
    from llmcli.chat import commands
    from llmcli.chat.header import print_header
    from llmcli.chat.loop import ChatLoop
    from llmcli.chat.reader import keys_not_echoed, lines_reader, terminal_reader

    out = render.stdout()
    if sys.stdin.isatty() and out.is_terminal:
        reader = terminal_reader(commands.completions())
        loop = ChatLoop(model, session, reader, out, commands.dispatch, while_replying=keys_not_echoed)
        print_header(loop)
        if replay:
            commands.replay(loop)
    else:  # a script: one message per line, the replies as plain text, the talk on stderr
        reader = lines_reader(sys.stdin)
        loop = ChatLoop(model, session, reader, out, commands.dispatch, status=render.stderr(), markdown=False, exit_on_ctrl_c=True)
    loop.run()


def register(app: typer.Typer) -> None:
    app.command()(chat)
