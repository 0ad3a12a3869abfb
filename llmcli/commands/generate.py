"""`llmcli generate`: one generation for scripts, streamed to stdout.

The prompt comes from the argument, `--file`, or stdin (`-`, or piped with no argument);
an argument plus piped stdin (or `--file`) is the argument, a blank line, then the rest,
as in simonw/llm. Instruct models get their chat template by default, base models the
raw text; `--raw` / `--chat` force either (`--chat` on a base model uses the plain-text
template in prompts/, as does a system prompt without `--chat`).

stdout carries only the generated text (or one JSON document with `--json`); `--stats`
and the `--logprobs` table go to stderr. Sampling flags left out take the model's
recommended values, else temperature 0.7, about what Ollama and llama.cpp default to.
`token_ids` and `logprobs` in `--json` include the end-of-turn token that stopped the
reply (as `model.generate()` returns it); its text is not part of `text`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llmcli import options, render
from llmcli.commands import _input
from llmcli.commands._load import load

PROMPT = "Prompt"
OUTPUT = "Output"


@options.loading
@options.sampling(max_new_tokens=512)
def generate(
    prompt: Annotated[
        Optional[str],
        typer.Argument(help="The prompt. '-' reads stdin; piped stdin is added after the argument and a blank line.", show_default=False),
    ] = None,
    model: options.Model = None,
    file: Annotated[
        Optional[Path], typer.Option("--file", "-f", help="Read the prompt from a file.", rich_help_panel=PROMPT, show_default=False)
    ] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Send the text as is (default for base models).", rich_help_panel=PROMPT)] = False,
    chat: Annotated[
        bool, typer.Option("--chat", help="Use the chat template (default for instruct models; base models get prompts/base-chat.txt).", rich_help_panel=PROMPT)
    ] = False,
    system: options.System = None,
    system_file: options.SystemFile = None,
    prompt_name: options.PromptName = None,
    stats: Annotated[bool, typer.Option("--stats", help="Print token counts, speed and memory to stderr.", rich_help_panel=OUTPUT)] = False,
    logprobs: Annotated[
        Optional[int],
        typer.Option(
            "--logprobs",
            help="Log-probability of each token and its N best alternatives (a table on stderr, or in --json).",
            min=0,
            max=20,
            rich_help_panel=OUTPUT,
            show_default=False,
        ),
    ] = None,
    json: Annotated[
        bool, typer.Option("--json", help="One JSON document: text, token ids, finish reason, usage, timings, logprobs.", rich_help_panel=OUTPUT)
    ] = False,
    *,
    settings,
    typed,
    loading,
) -> None:
    """Generate text from a prompt and stream it to stdout."""
    system_text = _input.read_system(system, system_file, prompt_name)
    mode = _input.read_mode(raw, chat, system_text)
    text = _input.read_text("generate", prompt, file, join=True)

    loaded = load(model, loading)
    response = loaded.generate(
        text, system=system_text, mode=mode, settings=options.with_recommended(settings, loaded, typed), top_logprobs=logprobs or 0
    )
    from llmcli.render.generate import LiveText, print_logprobs, print_stats

    reply = LiveText(echo=not json, heat=logprobs is not None)
    response.consume(reply.feed)
    reply.close()
    if json:
        render.print_json(response.to_dict(loaded.tokenizer, logprobs=logprobs is not None))
    elif logprobs is not None:
        print_logprobs(loaded.tokenizer, response.events)
    if stats:
        print_stats(response.stats)
    if response.interrupted:
        raise typer.Exit(130)


def register(app: typer.Typer) -> None:
    app.command()(generate)
