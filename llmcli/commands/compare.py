"""`llmcli compare`: the same prompt through several models, side by side.

The sides and their prompts are `compare_sides`'. Every side samples with the same
settings, llmcli's own defaults (a model's recommended values would make the sides sample
differently), and the same seed: without `--seed` one is drawn once and reported. Models
run one after the other; every model is resolved and (for GGUF files) converted first, so
a first-time conversion's bar never fights the live columns, and loaded before the first
one generates (`--low-memory`: each just before its turn, freed after). `--probs` shows the
next-token tables instead (the document `probs --json` prints, per model).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from llmcli import options, render
from llmcli.commands import _input
from llmcli.commands.compare_sides import DEFAULT_BASE, DEFAULT_INSTRUCT, entry, first_side_of, header, naming, plan_sides, side_prompt

MODELS = "Models"
PROMPT = "Prompt"
OUTPUT = "Output"


@options.loading
@options.sampling(max_new_tokens=128, recommended=False)
def compare(
    prompt: Annotated[Optional[str], typer.Argument(help="The prompt. '-' reads stdin; piped stdin is added after the argument and a blank line.", show_default=False)] = None,
    base: Annotated[Optional[str], typer.Option("--base", metavar="MODEL", help=f"The base model: gets the raw text. Default: {DEFAULT_BASE}.", rich_help_panel=MODELS, show_default=False)] = None,
    instruct: Annotated[
        Optional[str], typer.Option("--instruct", metavar="MODEL", help=f"The instruct model: gets its chat template. Default: {DEFAULT_INSTRUCT}.", rich_help_panel=MODELS, show_default=False)
    ] = None,
    model: Annotated[
        Optional[list[str]],
        typer.Option("-m", "--model", metavar="MODEL", help="Compare these models instead (repeat: -m A -m B [-m C]).", rich_help_panel=MODELS, show_default=False),
    ] = None,
    template_vs_raw: Annotated[
        bool, typer.Option("--template-vs-raw", help=f"One model (-m, default {DEFAULT_INSTRUCT}) with the raw text and with its chat template.", rich_help_panel=MODELS)
    ] = False,
    low_memory: Annotated[bool, typer.Option("--low-memory", help="Keep one model in memory at a time: load each just before its turn.", rich_help_panel=MODELS)] = False,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", help="Read the prompt from a file.", rich_help_panel=PROMPT, show_default=False)] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Send every model the raw text.", rich_help_panel=PROMPT)] = False,
    chat: Annotated[bool, typer.Option("--chat", help="Send every model a chat prompt (base models get prompts/base-chat.txt).", rich_help_panel=PROMPT)] = False,
    system: Annotated[Optional[str], typer.Option("--system", "-s", help="A system prompt (for the models in chat mode).", rich_help_panel=PROMPT, show_default=False)] = None,
    system_file: options.SystemFile = None,
    prompt_name: options.PromptName = None,
    probs: Annotated[bool, typer.Option("--probs", help="Next-token tables side by side and how much they agree, instead of generations.", rich_help_panel=OUTPUT)] = False,
    num: Annotated[int, typer.Option("--num", help="With --probs: rows in each table (the k of the top-k overlap).", rich_help_panel=OUTPUT)] = 10,
    show_prompt: Annotated[bool, typer.Option("--show-prompt", help="Show the prompt each model receives (chat template, special tokens).", rich_help_panel=OUTPUT)] = False,
    json: Annotated[bool, typer.Option("--json", help="One JSON document with every model's result.", rich_help_panel=OUTPUT)] = False,
    *,
    settings,
    typed,
    loading,
) -> None:
    """The same prompt through a base and an instruct model (or any models), side by side.

    The base model keeps autocompleting the text; the instruct model answers it.
    """
    from llmcli.api import ModelPool
    from llmcli.errors import BadInput

    system_text = _input.read_system(system, system_file, prompt_name)
    mode = _input.read_mode(raw, chat, system_text)
    if num < 1:
        raise BadInput(f"--num must be at least 1 (got {num})", "it is the number of rows each table shows")
    sides = plan_sides(model, base, instruct, template_vs_raw=template_vs_raw, mode=mode)
    text = _input.read_text("compare", prompt, file, join=True)
    if probs and typed:
        flags = ", ".join("--" + name.replace("_", "-") for name in options.SAMPLING_FLAGS if name in typed)
        render.warn(f"{flags} {'does' if len(typed) == 1 else 'do'} not apply to --probs: the tables show each model's own next-token distribution (T=1)")
    elif settings.seed is None and settings.temperature > 0:
        import secrets

        settings = replace(settings, seed=secrets.randbelow(2**31))  # one seed for every side

    from llmcli.commands._load import progress_label
    from llmcli.render.progress import LoadProgress

    pool = ModelPool([s.model for s in sides], low_memory=low_memory, progress=lambda name: LoadProgress(progress_label(name)), **loading)
    pool.prepare(lambda name: naming(first_side_of(sides, name)))
    run = _probs if probs else _generations
    run(pool, sides, text, system_text, settings=settings, num=num, show_prompt=show_prompt, json=json)


def _sides(pool: Any, sides: tuple, text: str, system: str | None, on_loading) -> Any:
    """Each side with its model and prompt, loading models as their turn comes (all of them
    first unless --low-memory); the model is freed after its last side."""
    if not pool.low_memory:
        for name in pool.names:
            on_loading(first_side_of(sides, name))
            with naming(first_side_of(sides, name)):
                pool.get(name)
        for side in sides:  # every prompt built once before any side runs: a template that fails, fails first
            with naming(side):
                side_prompt(pool.get(side.model), text, system, side)
    for i, side in enumerate(sides):
        if not pool.is_loaded(side.model):
            on_loading(side)
        with naming(side):
            model = pool.get(side.model)
            built = side_prompt(model, text, system, side)
        heading = header(side, model, built)
        if system is not None and built.mode == "raw":
            render.warn(f"{side.letter} ({heading.model}) gets the raw text: the system prompt only goes into chat prompts")
        yield side, model, built, heading
        del model  # before the next one loads: with --low-memory, one model at a time
        pool.done(side.model, still_needed=any(s.model == side.model for s in sides[i + 1 :]))


def _generations(pool, sides, text, system, *, settings, show_prompt, json, **_) -> None:
    from llmcli.render.compare_live import Column, make_display

    display = make_display([Column(side.letter, side.model) for side in sides], json=json, show_prompt=show_prompt, settings=settings)
    results: list[dict[str, Any]] = []
    interrupted = False
    with display:
        for side, model, built, heading in _sides(pool, sides, text, system, lambda side: display.loading(sides.index(side))):
            i = sides.index(side)
            with naming(side):
                response = model.generate(built, settings=settings)
            display.start(i, heading)
            response.consume(lambda event: display.feed(i, event.text))
            display.finish(i, response.stats)
            results.append(entry(side, heading, model) | {"generation": response.to_dict()})
            interrupted = response.interrupted
            del response, model  # the generation holds the model and its KV cache: --low-memory frees it next
            if interrupted:
                break
    if json:
        render.print_json({"prompt": text, "system": system, "settings": settings.to_dict(), "models": results})
    if interrupted:
        raise typer.Exit(130)


def _probs(pool, sides, text, system, *, num, show_prompt, json, **_) -> None:
    from llmcli.inspect.comparison import Distribution, pairwise
    from llmcli.render.compare import ProbsSide, loading_status, render_probs

    results, distributions, shown = [], [], []
    with loading_status(quiet=json) as status:
        for side, model, built, heading in _sides(pool, sides, text, system, lambda side: status(f"Loading {side.model}…")):
            status(f"Running {side.model}…")
            with naming(side):
                report = model.next_token(built, num=num)
            distributions.append(Distribution(side.letter, report.table, report.logits, model.tokenizer))
            shown.append(ProbsSide(heading, report.table))
            results.append(entry(side, heading, model) | {"probs": report.to_dict()})
            del model
    agreements = pairwise(distributions)
    if json:
        render.print_json({"prompt": text, "system": system, "models": results, "agreement": [a.to_dict() for a in agreements]})
    else:
        render_probs(shown, agreements, show_prompt=show_prompt)


def register(app: typer.Typer) -> None:
    app.command()(compare)
