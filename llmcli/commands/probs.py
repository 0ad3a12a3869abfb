"""`llmcli probs`: the next-token probability table, and what temperature and sampling do to it.

Options are checked before the model loads, so a typo fails in milliseconds. The prompt is the
raw text byte for byte (a trailing newline from `echo` is a token too); `--chat` sends it
through the chat template as a user message, so the table is the assistant's first token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llmcli import options, render
from llmcli.commands import _input
from llmcli.commands._load import load
from llmcli.errors import BadInput

PROMPT = "Prompt"
SAMPLING = "Temperature and sampling"
SHOW = "What to show"


@options.loading
def probs(
    text: Annotated[Optional[str], typer.Argument(help="The prompt. Without it: --file, or stdin when piped.", show_default=False)] = None,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", help="Read the prompt from a file ('-' for stdin).", rich_help_panel=PROMPT)] = None,
    chat: Annotated[
        bool, typer.Option("--chat", help="Wrap TEXT as a user message in the chat template: the table is the reply's first token.", rich_help_panel=PROMPT)
    ] = False,
    system: Annotated[Optional[str], typer.Option("--system", "-s", help="System message (with --chat).", rich_help_panel=PROMPT)] = None,
    num: Annotated[int, typer.Option("--num", help="Rows in the table: the N most likely tokens.", rich_help_panel=SHOW)] = 10,
    position: Annotated[
        Optional[int],
        typer.Option(
            "--position",
            help="Predict after the prompt token at this index (0-based; negative counts from the end) and show the token that actually came next.",
            rich_help_panel=SHOW,
        ),
    ] = None,
    target: Annotated[
        Optional[list[str]], typer.Option("--target", metavar="TEXT", help="Rank and probability of this continuation (repeatable).", rich_help_panel=SHOW)
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="Unroll N steps of generation: candidates, pick, growing text.", rich_help_panel=SHOW)] = 0,
    verbose_steps: Annotated[bool, typer.Option("--verbose-steps", help="With --steps: a full table at every step.", rich_help_panel=SHOW)] = False,
    temperature: Annotated[
        Optional[str],
        typer.Option(
            "--temperature",
            "-t",
            metavar="T[,T...]",
            help="One temperature, or a comma-separated sweep (0.5,1,1.5): a probability column each. 0 is greedy. With --steps: how to pick (default greedy).",
            rich_help_panel=SAMPLING,
            show_default=False,
        ),
    ] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Replay the sampler: keep the K most likely.", rich_help_panel=SAMPLING)] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", help="Replay the sampler: keep the smallest set holding probability P.", rich_help_panel=SAMPLING)] = None,
    min_p: Annotated[
        Optional[float], typer.Option("--min-p", help="Replay the sampler: keep tokens at least M times as likely as the top one.", rich_help_panel=SAMPLING)
    ] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed for sampled --steps (0 to 2**64 - 1).", rich_help_panel=SAMPLING)] = None,
    model: options.Model = None,
    json: options.Json = False,
    svg: options.Svg = None,
    html: options.Html = None,
    *,
    loading,
) -> None:
    """The next-token probability table; temperature sweeps, sampler cuts, generation step by step."""
    from llmcli.render import views

    views.check_exports(json, svg, html)
    temperatures = _input.parse_temperatures(temperature) if temperature is not None else None
    cuts = {"top_k": top_k, "top_p": top_p, "min_p": min_p}
    _check_options(num, steps, position, target or [], temperatures, any(v is not None for v in cuts.values()), verbose_steps, system, chat)
    settings = _step_settings(temperatures, cuts, seed, steps)
    prompt_text = _input.read_text("probs", text if str(file) != "-" else "-", None if str(file) == "-" else file, empty_ok=True)

    loaded = load(model, loading)
    prompt = loaded.prompt(prompt_text, system=system, mode="chat" if chat else "raw")
    with _input.flags(("position", "--position"), ("the target", "--target")):
        report = loaded.next_token(prompt, num=num, temperatures=temperatures or (1.0,), position=-1 if position is None else position, targets=target or (), **cuts)
    if num > report.table.vocab_size:
        render.warn(f"--num {num:,} is more than the vocabulary: the table shows all {report.table.vocab_size:,} tokens")
    console = views.recording(bool(svg or html))
    if steps:
        _check_room(steps, len(prompt.ids), loaded.context_length)
        _unroll(loaded, prompt, report, settings, num, json=json, verbose=verbose_steps, out=console)
    elif json:
        render.print_json(report.to_dict())
    else:
        from llmcli.render.probs import render_report

        render_report(report, console=console)
    views.save_exports(console, svg, html, title="llmcli probs")


def _unroll(loaded, prompt, report, settings, num: int, *, json: bool, verbose: bool, out) -> None:
    """The loop unrolled: each step printed as it is computed (or all of them in --json)."""
    from dataclasses import replace

    unrolling = loaded.unroll(prompt, settings=settings, candidates=num)
    if json:
        render.print_json(replace(report, steps=unrolling.result).to_dict())
        return
    from llmcli.render.probs import render_heading
    from llmcli.render.steps import StepsView

    render_heading(report, out, generating=True)
    view = StepsView(out, settings, prompt.text, verbose=verbose)
    for step in unrolling:
        view.add(step)
    view.close(unrolling.result)


def _check_room(steps: int, prompt_tokens: int, window: int | None) -> None:
    if window and steps > window - prompt_tokens:
        raise BadInput(
            f"--steps {steps:,} is more than the {window - prompt_tokens:,} tokens left in the context window",
            f"the model's window holds {window:,} tokens and the prompt takes {prompt_tokens:,}",
        )


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
    if temperatures is not None and len(temperatures) > 1 and (sampler_on or steps):
        what = "--steps" if steps else "the sampler replay (--top-k/--top-p/--min-p)"
        raise BadInput(f"{what} takes one --temperature, not a list", "a sweep (0.5,1,1.5) is a table of its own")
    if position is not None and steps:
        raise BadInput("--position and --steps do not mix", "--steps always continues from the end of the prompt")
    if position is not None and targets:
        raise BadInput("--position and --target do not mix", "--target scores a continuation of the whole prompt")


def _step_settings(temperatures, cuts, seed, steps):
    """The engine's settings for --steps (validated by the engine, so the ranges are `generate`'s):
    greedy unless a temperature is given."""
    from llmcli.sampling import SamplingSettings

    temperature = temperatures[0] if temperatures else 0.0
    return SamplingSettings(temperature=temperature, seed=seed, max_new_tokens=max(steps, 1), **cuts).validate()


def register(app: typer.Typer) -> None:
    app.command()(probs)
