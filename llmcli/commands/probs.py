"""`llmcli probs`: the next-token probability table, and what temperature and sampling do to it.

Options are checked before the model loads, so a typo fails in milliseconds. The prompt is the
raw text byte for byte (a trailing newline from `echo` is a token too); `--chat` sends it
through the chat template as a user message, so the table is the assistant's first token.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from llmcli import options, render
from llmcli.errors import BadInput

PROMPT = "Prompt"
SAMPLING = "Temperature and sampling"
SHOW = "What to show"


def probs(
    text: Annotated[
        Optional[str],
        typer.Argument(help="The prompt. Without it: --file, or stdin when piped.", show_default=False),
    ] = None,
    file: Annotated[
        Optional[Path],
        typer.Option("--file", "-f", help="Read the prompt from a file ('-' for stdin).", rich_help_panel=PROMPT),
    ] = None,
    chat: Annotated[
        bool,
        typer.Option("--chat", help="Wrap TEXT as a user message in the chat template: the table is the reply's first token.", rich_help_panel=PROMPT),
    ] = False,
    system: Annotated[
        Optional[str], typer.Option("--system", "-s", help="System message (with --chat).", rich_help_panel=PROMPT)
    ] = None,
    num: Annotated[int, typer.Option("--num", "-n", help="Rows in the table.", rich_help_panel=SHOW)] = 10,
    position: Annotated[
        Optional[int],
        typer.Option(
            "--position",
            help="Predict after the prompt token at this index (0-based; negative counts from the end) "
            "and show the token that actually came next.",
            rich_help_panel=SHOW,
        ),
    ] = None,
    target: Annotated[
        Optional[list[str]],
        typer.Option("--target", metavar="TEXT", help="Rank and probability of this continuation (repeatable).", rich_help_panel=SHOW),
    ] = None,
    steps: Annotated[
        int, typer.Option("--steps", help="Unroll N steps of generation: candidates, pick, growing text.", rich_help_panel=SHOW)
    ] = 0,
    verbose_steps: Annotated[
        bool, typer.Option("--verbose-steps", help="With --steps: a full table at every step.", rich_help_panel=SHOW)
    ] = False,
    temperature: Annotated[
        Optional[str],
        typer.Option(
            "--temperature",
            "-t",
            metavar="T[,T...]",
            help="One temperature, or a comma-separated sweep (0.5,1,1.5): a probability column each. "
            "0 is greedy. With --steps: how to pick (default greedy).",
            rich_help_panel=SAMPLING,
            show_default=False,
        ),
    ] = None,
    top_k: Annotated[
        Optional[int], typer.Option("--top-k", help="Replay the sampler: keep the K most likely.", rich_help_panel=SAMPLING)
    ] = None,
    top_p: Annotated[
        Optional[float],
        typer.Option("--top-p", help="Replay the sampler: keep the smallest set holding probability P.", rich_help_panel=SAMPLING),
    ] = None,
    min_p: Annotated[
        Optional[float],
        typer.Option("--min-p", help="Replay the sampler: keep tokens at least M times as likely as the top one.", rich_help_panel=SAMPLING),
    ] = None,
    seed: Annotated[
        Optional[int], typer.Option("--seed", help="Random seed for sampled --steps.", rich_help_panel=SAMPLING)
    ] = None,
    model: options.Model = None,
    dtype: options.DTypeOpt = options.DType.auto,
    device: options.DeviceOpt = options.Device.auto,
    trust_remote_code: options.TrustRemoteCode = False,
    quantize: options.QuantizeOpt = options.Quantize.none,
    compile: options.CompileOpt = False,
    json: options.Json = False,
) -> None:
    """The next-token probability table; temperature sweeps, sampler cuts, generation step by step."""
    from llmcli.inspect.next_token import parse_temperatures

    targets = list(target or [])
    temperatures = parse_temperatures(temperature) if temperature is not None else None
    sampler_on = any(v is not None for v in (top_k, top_p, min_p))
    _check_options(num, steps, position, targets, temperatures, sampler_on, verbose_steps, system, chat)
    settings = _settings(temperatures, top_k, top_p, min_p, seed, steps) if (sampler_on or steps) else None
    prompt_text = read_prompt(text, file)

    from llmcli.commands.generate import build_prompt
    from llmcli.inspect import next_token as nt
    from llmcli.models import load_model

    loaded = load_model(model, dtype, device, trust_remote_code, quantize=quantize, compile=compile)
    tokenizer = loaded.tokenizer
    prompt = build_prompt(tokenizer, prompt_text, system, raw=not chat, chat=chat)  # raw unless --chat
    ids = list(prompt.ids)
    nt.check_prompt(ids, loaded.context_length)

    start = time.perf_counter()
    table, logits = nt.table_at(
        loaded.model,
        tokenizer,
        ids,
        position=-1 if position is None else position,
        num=num,
        temperatures=temperatures or (1.0,),
    )
    forward_seconds = time.perf_counter() - start
    replay = None
    if sampler_on:
        replay = nt.sampler_replay(
            logits,
            [r.id for r in table.rows],
            temperature=temperatures[0] if temperatures else 1.0,
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
        )
    scores = tuple(nt.score_target(loaded.model, tokenizer, ids, t, context_length=loaded.context_length) for t in targets)
    unrolled = None
    if steps:
        unrolled = nt.unroll(
            loaded.model,
            tokenizer,
            ids,
            settings,
            stop_strings=prompt.stop_strings,
            candidates=num,
            context_length=loaded.context_length,
        )
    report = nt.ProbsReport(
        model=loaded.label,
        mode=prompt.mode,
        prompt=prompt.text,
        prompt_tokens=nt.prompt_tokens(tokenizer, ids),
        table=table,
        sampler=replay,
        targets=scores,
        steps=unrolled,
        timings={"load_seconds": loaded.load_seconds, "forward_seconds": forward_seconds},
    )
    if json:
        render.print_json(report.to_dict())
    else:
        from llmcli.render.probs import render_report

        render_report(report, verbose_steps=verbose_steps)


def _check_options(num, steps, position, targets, temperatures, sampler_on, verbose_steps, system, chat) -> None:
    """Refuse combinations that make no sense, before anything heavy loads."""
    if num < 1:
        raise BadInput(f"--num must be at least 1 (got {num})", "it is the number of rows the table shows")
    if steps < 0:
        raise BadInput(f"--steps must be 0 or more (got {steps})", "it is the number of tokens to generate")
    if verbose_steps and not steps:
        raise BadInput("--verbose-steps needs --steps N", "e.g. --steps 5 --verbose-steps")
    if system is not None and not chat:
        raise BadInput("--system needs --chat", "the system message goes into the chat template")
    several = temperatures is not None and len(temperatures) > 1
    if several and (sampler_on or steps):
        what = "--steps" if steps else "the sampler replay (--top-k/--top-p/--min-p)"
        raise BadInput(f"{what} takes one --temperature, not a list", "a sweep (0.5,1,1.5) is a table of its own")
    if position is not None and steps:
        raise BadInput("--position and --steps do not mix", "--steps always continues from the end of the prompt")
    if position is not None and targets:
        raise BadInput("--position and --target do not mix", "--target scores a continuation of the whole prompt")


def _settings(temperatures, top_k, top_p, min_p, seed, steps):
    """The engine's own settings object, validated by the engine (so the ranges are the same as `generate`'s)."""
    from llmcli.generation import SamplingSettings

    settings = SamplingSettings(
        # --steps picks greedily unless a temperature is given; the replay starts from T=1.
        temperature=temperatures[0] if temperatures else (0.0 if steps else 1.0),
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        seed=seed,
        max_new_tokens=max(steps, 1),
    )
    settings.validate()
    return settings


def read_prompt(text: str | None, file: Path | None) -> str:
    """TEXT, else --file, else stdin when it is not a terminal. Never stripped: raw means raw."""
    if text is not None and file is not None:
        raise BadInput("give the prompt as TEXT or --file, not both")
    if text is not None:
        return text
    if file is not None:
        if str(file) == "-":
            return sys.stdin.read()
        try:
            return file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise BadInput(f"cannot read {file}: {reason}", "check the path (the file must be UTF-8 text)") from None
    if sys.stdin is None or sys.stdin.isatty():
        raise BadInput("no prompt", 'give it as an argument (llmcli probs "The capital of France is"), with --file, or on stdin')
    return sys.stdin.read()


def register(app: typer.Typer) -> None:
    app.command()(probs)
