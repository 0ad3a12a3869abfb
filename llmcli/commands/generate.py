"""`llmcli generate`: one generation for scripts, streamed to stdout.

The prompt comes from the argument, `--file`, or stdin (`-`, or piped with no argument);
an argument plus piped stdin (or `--file`) is the argument, a blank line, then the rest,
as in simonw/llm. Instruct models get their chat template by default, base models the
raw text; `--raw` / `--chat` force either (`--chat` on a base model uses the plain-text
template in prompts/, as does a system prompt without `--chat`).

Output: stdout carries only the generated text (or one JSON document with `--json`);
`--stats` and the `--logprobs` table go to stderr. The reply of a chat ends with a
newline; the text in `--json` is exact. Sampling flags left out take the model's
recommended values (`models.recommended_sampling`, as `chat` does), else temperature 0.7,
about what Ollama and llama.cpp default to: a user asking a model for text expects
varied text; `--temperature 0` is greedy and deterministic.
In chat modes the reply's leading whitespace is dropped (a plain-text template ends at
`Assistant:`, so a base model's reply starts with a space).
`token_ids` and `logprobs` in `--json` include the end-of-turn token that stopped the
reply (as `model.generate()` returns it); its text is not part of `text`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Annotated, Optional

import typer

from llmcli import options, render
from llmcli.errors import BadInput

PROMPT = "Prompt"
SAMPLING = "Sampling"
OUTPUT = "Output"


def generate(
    ctx: typer.Context,
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
    max_new_tokens: options.MaxNewTokens = 512,
    temperature: options.Temperature = 0.7,
    top_k: options.TopK = None,
    top_p: options.TopP = None,
    min_p: options.MinP = None,
    repetition_penalty: options.RepetitionPenalty = 1.0,
    seed: options.Seed = None,
    stop: options.Stop = None,
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
    dtype: options.DTypeOpt = options.DType.auto,
    device: options.DeviceOpt = options.Device.auto,
    trust_remote_code: options.TrustRemoteCode = False,
    quantize: options.QuantizeOpt = options.Quantize.none,
    compile: options.CompileOpt = False,
) -> None:
    """Generate text from a prompt and stream it to stdout."""
    settings = options.sampling_settings(ctx)
    system_text = read_mode_and_system(raw, chat, system, system_file, prompt_name)
    text = read_prompt(prompt, file, sys.stdin)

    from llmcli.models import load_model

    loaded = load_model(model, dtype, device, trust_remote_code, quantize=quantize, compile=compile)
    settings = options.with_recommended(settings, loaded, options.given_on_command_line(ctx))
    built = build_prompt(loaded.tokenizer, text, system_text, raw=raw, chat=chat)
    run_generation(loaded, built, settings, json=json, stats=stats, logprobs=logprobs)


def read_mode_and_system(raw: bool, chat: bool, system: str | None, system_file: Path | None, prompt_name: str | None) -> str | None:
    """The system prompt, after refusing --raw with --chat, or --raw with a system prompt."""
    if raw and chat:
        raise BadInput("--raw and --chat contradict each other", "pick one")
    system_text = read_system(system, system_file, prompt_name)
    if raw and system_text is not None:
        raise BadInput("a system prompt needs chat mode, and --raw sends the text as is", "drop --raw or the system prompt")
    return system_text


def read_system(system: str | None, system_file: Path | None, prompt_name: str | None) -> str | None:
    given = [name for name, value in (("--system", system), ("--system-file", system_file), ("--prompt", prompt_name)) if value is not None]
    if len(given) > 1:
        raise BadInput(f"{' and '.join(given)} both give a system prompt", "use one of them")
    if system_file is not None:
        return _read_file(system_file, "--system-file")
    if prompt_name is not None:
        from llmcli.prompting import load_system_prompt

        return load_system_prompt(prompt_name)
    return system


def read_prompt(argument: str | None, file: Path | None, stdin: IO[str]) -> str:
    """The prompt: argument, file or stdin; argument + (file or piped stdin) joined by a blank line."""
    if argument == "-":
        argument, rest = None, stdin.read()
    elif file is not None:
        rest = _read_file(file, "--file")
    elif not _is_terminal(stdin):
        rest = stdin.read()
    else:
        rest = None
    parts = [part for part in (argument, rest) if part and part.strip()]
    if not parts:
        raise BadInput("the prompt is empty", "give it as an argument, with --file, or on stdin")
    return "\n\n".join(parts)


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _read_file(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{option}: no such file: {path}", "check the path") from None
    except IsADirectoryError:
        raise BadInput(f"{option}: {path} is a directory", "give a text file") from None
    except UnicodeDecodeError:
        raise BadInput(f"{option}: {path} is not UTF-8 text", "give a text file") from None
    except OSError as e:
        raise BadInput(f"{option}: cannot read {path}: {e.strerror}", "check the path and its permissions") from None


def build_prompt(tokenizer, text: str, system: str | None, *, raw: bool, chat: bool):
    from llmcli.prompting import Message, build_chat_prompt, build_raw_prompt, has_chat_template

    if raw or not (chat or system is not None or has_chat_template(tokenizer)):
        return build_raw_prompt(tokenizer, text)
    messages = [Message("system", system)] if system is not None else []
    return build_chat_prompt(tokenizer, [*messages, Message("user", text)])


def run_generation(loaded, prompt, settings, *, json: bool, stats: bool, logprobs: int | None) -> None:
    from llmcli.generation import generate
    from llmcli.render.generate import LiveText, generation_json, print_logprobs, print_stats

    generation = generate(
        loaded.model,
        loaded.tokenizer,
        prompt.ids,
        settings,
        stop_strings=prompt.stop_strings,
        top_logprobs=logprobs or 0,
        context_length=loaded.context_length,
    )
    reply = LiveText(strip_leading=prompt.mode != "raw", echo=not json)
    events = []
    try:
        for event in generation:
            events.append(event)
            reply.feed(event.text)
    except KeyboardInterrupt:
        pass  # Ctrl-C while we were printing, not while the model computed: reading .stats records it
    reply.close()
    if json:
        render.print_json(generation_json(loaded, prompt, settings, generation, reply.text, events if logprobs is not None else None))
    elif logprobs is not None:
        print_logprobs(loaded.tokenizer, events)
    if stats:
        print_stats(generation.stats)
    if generation.stats.finish_reason == "interrupted":
        raise typer.Exit(130)


def register(app: typer.Typer) -> None:
    app.command()(generate)
