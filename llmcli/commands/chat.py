"""`llmcli chat`: talk to a model in the terminal.

Options -> load -> session -> `ChatLoop` with the right reader and consoles:
- stdin a terminal (and stdout too): prompt-toolkit reader, header, Markdown replies;
- otherwise each input line is one message and replies are plain text on stdout, with
  the stats lines on stderr, so `printf 'hi\\nbye\\n' | llmcli chat` works in scripts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from llmcli import options



def chat(
    ctx: typer.Context,
    model: options.Model = None,
    system: options.System = None,
    system_file: options.SystemFile = None,
    prompt_name: options.PromptName = None,
    max_new_tokens: options.MaxNewTokens = 512,
    temperature: options.Temperature = 0.7,
    top_k: options.TopK = None,
    top_p: options.TopP = None,
    min_p: options.MinP = None,
    repetition_penalty: options.RepetitionPenalty = 1.0,
    seed: options.Seed = None,
    stop: options.Stop = None,
    load: Annotated[
        Optional[Path], typer.Option("--load", help="Continue a chat saved with /save.", show_default=False)
    ] = None,
    dtype: options.DTypeOpt = options.DType.auto,
    device: options.DeviceOpt = options.Device.auto,
    trust_remote_code: options.TrustRemoteCode = False,
    quantize: options.QuantizeOpt = options.Quantize.none,
    compile: options.CompileOpt = False,
) -> None:
    """Chat with a model: streamed Markdown replies, slash commands (/help), stats after each reply."""
    from llmcli.chat.session import ChatSession
    from llmcli.commands.generate import read_system

    settings = options.sampling_settings(ctx)
    given = options.given_on_command_line(ctx)
    system_text = read_system(system, system_file, prompt_name)
    system_text = (system_text.strip() or None) if system_text is not None else None

    if load is not None:
        session = ChatSession.load(load)
        # The file's settings, except the ones given on this command line.
        if given:
            session.settings = _replace(session.settings, {k: getattr(settings, k) for k in given})
        if system_text is not None:
            session.system = system_text
    else:
        session = ChatSession(system=system_text, settings=settings)

    from llmcli.models import load_model

    loaded = load_model(model, dtype, device, trust_remote_code, quantize=quantize, compile=compile)
    if load is None:
        session.settings = options.with_recommended(session.settings, loaded, given)
    session.model = loaded.label
    run_chat(loaded, session, replay=load is not None)


def run_chat(loaded, session, *, replay: bool = False) -> None:
    """Pick the reader and consoles for this terminal (or pipe) and run the loop."""
    from llmcli import render
    from llmcli.chat import commands
    from llmcli.chat.header import print_header
    from llmcli.chat.loop import ChatLoop
    from llmcli.chat.reader import keys_not_echoed, lines_reader, terminal_reader

    out = render.stdout()
    if sys.stdin.isatty() and out.is_terminal:
        loop = ChatLoop(loaded, session, terminal_reader(commands.completions()), out, while_replying=keys_not_echoed)
        print_header(loop)
        if replay:
            commands.replay(loop)
    else:  # a script: one message per line, the replies as plain text, the talk on stderr
        loop = ChatLoop(
            loaded, session, lines_reader(sys.stdin), out, status=render.stderr(), markdown=False, exit_on_ctrl_c=True
        )
    loop.run()


def _replace(settings, changes: dict):
    from dataclasses import replace

    new = replace(settings, **changes)
    new.validate()
    return new


def register(app: typer.Typer) -> None:
    app.command()(chat)
