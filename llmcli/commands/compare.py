"""`llmcli compare`: the same prompt through several models, side by side.

The sides: `--base` and `--instruct` (defaults gemma3-270m and smollm2), or any models with
`-m A -m B [-m C ...]`, or one model with and without its chat template
(`--template-vs-raw`). Each side gets a letter, A, B, C..., that labels its column.

Decisions:
- Each side gets the prompt the way it expects it: the base side the raw text, the
  instruct side the chat template with the text as the user message; a `-m` side by
  whether its tokenizer has a chat template (as `generate` decides). `--raw` / `--chat`
  force one mode for every side (`--chat` on a base model uses prompts/base-chat.txt, as
  in `generate`). A system prompt reaches the sides in chat mode only; a raw side gets
  the text alone, and the user is told.
- Every side samples with the same settings and the same seed: without `--seed`, one is
  drawn once and reported (in the footer and in `--json`), so the run can be repeated.
- Models run one after the other. By default every model is loaded before the first one
  generates, so a model that fails to load fails before anything else waits on it;
  `--low-memory` loads each just before its turn and frees it afterwards. The same model
  on two sides is loaded once.
- Before anything is drawn, every model is resolved and (for GGUF files) converted into
  the cache, so a first-time conversion's progress bar never fights the live columns.
- `--probs` shows the next-token tables instead of generations: the same forward pass and
  table as `llmcli probs` (at T = 1: each model's own distribution), so `--json` holds
  exactly the document `probs --json` prints for that model and rendered prompt; the
  sampling options do not apply to it.
- An error while one side loads or runs names the side: `model B (--instruct smolm2): ...`.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer

from llmcli import options, render
from llmcli.commands.generate import build_prompt, read_mode_and_system, read_prompt
from llmcli.errors import BadInput, LlmcliError

DEFAULT_BASE = "gemma3-270m"
DEFAULT_INSTRUCT = "smollm2"
DEFAULT_MAX_NEW_TOKENS = 128  # enough to see a base model ramble on and an instruct model stop
DEFAULT_TEMPERATURE = 0.7  # generate's default
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

MODELS = "Models"
PROMPT = "Prompt"
SAMPLING = "Sampling (the same for every model)"
OUTPUT = "Output"


@dataclass(frozen=True)
class Side:
    """One column of the comparison, as the options describe it (nothing loaded yet)."""

    letter: str
    model: str  # as typed, or the default alias
    role: str | None  # "base" | "instruct" from --base/--instruct; None: decided by the chat template
    mode: str  # "raw" | "chat" | "auto" (chat if the tokenizer has a template, else raw)
    option: str  # how it was chosen: "--base", "--instruct", "-m", for error messages

    def describe(self) -> str:
        return f"model {self.letter} ({self.option} {self.model})"


def compare(
    ctx: typer.Context,
    prompt: Annotated[
        Optional[str],
        typer.Argument(help="The prompt. '-' reads stdin; piped stdin is added after the argument and a blank line.", show_default=False),
    ] = None,
    base: Annotated[
        Optional[str], typer.Option("--base", metavar="MODEL", help=f"The base model: gets the raw text. Default: {DEFAULT_BASE}.", rich_help_panel=MODELS, show_default=False)
    ] = None,
    instruct: Annotated[
        Optional[str],
        typer.Option("--instruct", metavar="MODEL", help=f"The instruct model: gets its chat template. Default: {DEFAULT_INSTRUCT}.", rich_help_panel=MODELS, show_default=False),
    ] = None,
    model: Annotated[
        Optional[list[str]],
        typer.Option(
            "-m",
            "--model",
            metavar="MODEL",
            help="Compare these models instead (repeat: -m A -m B [-m C]). Alias, .gguf file, Hugging Face directory or hub id.",
            rich_help_panel=MODELS,
            show_default=False,
        ),
    ] = None,
    template_vs_raw: Annotated[
        bool,
        typer.Option("--template-vs-raw", help=f"One model (-m, default {DEFAULT_INSTRUCT}) with the raw text and with its chat template.", rich_help_panel=MODELS),
    ] = False,
    low_memory: Annotated[
        bool, typer.Option("--low-memory", help="Keep one model in memory at a time: load each just before its turn.", rich_help_panel=MODELS)
    ] = False,
    file: Annotated[
        Optional[Path], typer.Option("--file", "-f", help="Read the prompt from a file.", rich_help_panel=PROMPT, show_default=False)
    ] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Send every model the raw text.", rich_help_panel=PROMPT)] = False,
    chat: Annotated[
        bool, typer.Option("--chat", help="Send every model a chat prompt (base models get prompts/base-chat.txt).", rich_help_panel=PROMPT)
    ] = False,
    system: Annotated[
        Optional[str], typer.Option("--system", "-s", help="A system prompt (for the models in chat mode).", rich_help_panel=PROMPT, show_default=False)
    ] = None,
    system_file: options.SystemFile = None,
    prompt_name: options.PromptName = None,
    max_new_tokens: options.MaxNewTokens = DEFAULT_MAX_NEW_TOKENS,
    temperature: options.Temperature = DEFAULT_TEMPERATURE,
    top_k: options.TopK = None,
    top_p: options.TopP = None,
    min_p: options.MinP = None,
    repetition_penalty: options.RepetitionPenalty = 1.0,
    seed: Annotated[
        Optional[int], typer.Option("--seed", help="Make sampling reproducible (default: one drawn at random, shown).", rich_help_panel=SAMPLING, show_default=False)
    ] = None,
    stop: options.Stop = None,
    probs: Annotated[
        bool,
        typer.Option("--probs", help="Next-token tables side by side and how much they agree, instead of generations.", rich_help_panel=OUTPUT),
    ] = False,
    num: Annotated[int, typer.Option("--num", help="With --probs: rows in each table (the k of the top-k overlap).", rich_help_panel=OUTPUT)] = 10,
    show_prompt: Annotated[
        bool, typer.Option("--show-prompt", help="Show the prompt each model receives (chat template, special tokens).", rich_help_panel=OUTPUT)
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="One JSON document with every model's result.", rich_help_panel=OUTPUT)] = False,
    dtype: options.DTypeOpt = options.DType.auto,
    device: options.DeviceOpt = options.Device.auto,
    trust_remote_code: options.TrustRemoteCode = False,
    quantize: options.QuantizeOpt = options.Quantize.none,
    compile: options.CompileOpt = False,
) -> None:
    """The same prompt through a base and an instruct model (or any models), side by side.

    The base model keeps autocompleting the text; the instruct model answers it.
    """
    # One set of settings for every side, llmcli's own defaults: a model's recommended
    # values (which generate and chat use) would make the sides sample differently.
    settings = options.sampling_settings(ctx)
    system_text = read_mode_and_system(raw, chat, system, system_file, prompt_name)
    if num < 1:
        raise BadInput(f"--num must be at least 1 (got {num})", "it is the number of rows each table shows")
    sides = plan_sides(model, base, instruct, template_vs_raw=template_vs_raw, raw=raw, chat=chat)
    text = read_prompt(prompt, file, sys.stdin)
    if probs:
        _warn_unused_sampling(settings)
    elif settings.seed is None and settings.temperature > 0:
        import secrets

        settings = replace(settings, seed=secrets.randbelow(2**31))  # one seed for every side

    pool = ModelPool(
        sides,
        dtype=dtype,
        device=device,
        trust_remote_code=trust_remote_code,
        low_memory=low_memory,
        quantize=quantize,
        compile=compile,
    )
    pool.prepare()
    request = Request(text=text, system=system_text, show_prompt=show_prompt, json=json)
    if probs:
        run_probs(pool, request, num=num)
    else:
        run_generations(pool, request, settings)


@dataclass(frozen=True)
class Request:
    text: str
    system: str | None
    show_prompt: bool
    json: bool


def plan_sides(
    models: list[str] | None,
    base: str | None,
    instruct: str | None,
    *,
    template_vs_raw: bool = False,
    raw: bool = False,
    chat: bool = False,
) -> tuple[Side, ...]:
    """The sides the options ask for, checked before anything loads."""
    if models and (base or instruct):
        raise BadInput("-m and --base/--instruct both choose the models", "use --base and --instruct, or -m for each model")
    forced = "raw" if raw else "chat" if chat else None
    if template_vs_raw:
        if forced:
            raise BadInput(f"--template-vs-raw sends the prompt both ways; --{forced} would force one", f"drop --{forced}")
        if base:
            raise BadInput("--template-vs-raw compares one model with itself", "give it with -m MODEL (or --instruct MODEL)")
        if models and len(models) > 1:
            raise BadInput(f"--template-vs-raw compares one model with itself (got {len(models)} -m)", "give one -m MODEL")
        name, option = (models[0], "-m") if models else (instruct or DEFAULT_INSTRUCT, "--instruct")
        return (Side("A", name, None, "raw", option), Side("B", name, None, "chat", option))
    if models:
        if len(models) < 2:
            raise BadInput(
                "compare needs two models or more (got one -m)",
                "add another -m MODEL, or --template-vs-raw to compare one model with and without its chat template",
            )
        if len(models) > len(LETTERS):
            raise BadInput(f"at most {len(LETTERS)} models (got {len(models)})")
        return tuple(Side(LETTERS[i], name, None, forced or "auto", "-m") for i, name in enumerate(models))
    return (
        Side("A", base or DEFAULT_BASE, "base", forced or "raw", "--base"),
        Side("B", instruct or DEFAULT_INSTRUCT, "instruct", forced or "chat", "--instruct"),
    )


@contextlib.contextmanager
def naming(side: Side) -> Iterator[None]:
    """Errors raised while working on one side say which side."""
    try:
        yield
    except LlmcliError as e:
        raise type(e)(f"{side.describe()}: {e.message}", e.hint) from e


def _warn_unused_sampling(settings: Any) -> None:
    defaults = {
        "--temperature": (settings.temperature, DEFAULT_TEMPERATURE),
        "--top-k": (settings.top_k, None),
        "--top-p": (settings.top_p, None),
        "--min-p": (settings.min_p, None),
        "--repetition-penalty": (settings.repetition_penalty, 1.0),
        "--seed": (settings.seed, None),
        "--max-new-tokens": (settings.max_new_tokens, DEFAULT_MAX_NEW_TOKENS),
        "--stop": (settings.stop, ()),
    }
    given = [name for name, (value, default) in defaults.items() if value != default]
    if given:
        render.warn(
            f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to --probs: "
            "the tables show each model's own next-token distribution (T=1)"
        )


# ---------------------------------------------------------------- loading


class ModelPool:
    """Loads each distinct model once; with `low_memory`, only one is held at a time."""

    def __init__(
        self,
        sides: tuple[Side, ...],
        *,
        dtype: Any,
        device: Any,
        trust_remote_code: bool,
        low_memory: bool,
        quantize: Any = "none",
        compile: bool = False,
    ):
        self.sides = sides
        self.dtype = dtype
        self.device = device
        self.trust_remote_code = trust_remote_code
        self.quantize, self.compile = quantize, compile
        self.low_memory = low_memory
        self._loaded: dict[str, Any] = {}

    def prepare(self) -> None:
        """Resolve every name (a typo fails at once), then convert GGUF files into the cache.

        Errors name the side.
        """
        from llmcli.models import model_dir, resolve

        refs = []
        for side in self._first_sides():
            with naming(side):
                refs.append((side, resolve(side.model)))
        for side, ref in refs:
            with naming(side):
                model_dir(ref)

    def _first_sides(self) -> list[Side]:
        seen: dict[str, Side] = {}
        for side in self.sides:
            seen.setdefault(side.model, side)
        return list(seen.values())

    def is_loaded(self, side: Side) -> bool:
        return side.model in self._loaded

    def load_all_first(self, on_loading=lambda side: None) -> None:
        """Without --low-memory: every model before any runs, so a failure comes before the waiting."""
        if self.low_memory:
            return
        for side in self._first_sides():
            on_loading(side)
            self.get(side)

    def get(self, side: Side) -> Any:
        from llmcli.models import load_model

        if side.model not in self._loaded:
            with naming(side):
                self._loaded[side.model] = load_model(
                    side.model, self.dtype, self.device, self.trust_remote_code, quantize=self.quantize, compile=self.compile
                )
        return self._loaded[side.model]

    def done(self, index: int) -> None:
        """Side `index` has finished: with --low-memory, free its model unless a later side uses it."""
        model = self.sides[index].model
        if self.low_memory and all(s.model != model for s in self.sides[index + 1 :]):
            if self._loaded.pop(model, None) is not None:
                import gc

                import torch

                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()


def side_prompt(tokenizer: Any, text: str, system: str | None, side: Side):
    """The prompt this side's model receives (a `prompting.Prompt`)."""
    from llmcli.prompting import has_chat_template

    mode = side.mode
    if mode == "auto":
        mode = "chat" if has_chat_template(tokenizer) else "raw"
    if mode == "raw":
        return build_prompt(tokenizer, text, None, raw=True, chat=False)
    return build_prompt(tokenizer, text, system, raw=False, chat=True)


def _header(side: Side, loaded: Any, prompt: Any):
    from llmcli.inspect.comparison import prompt_segments
    from llmcli.prompting import has_chat_template
    from llmcli.render.compare import Header

    name = loaded.label
    if loaded.ref.kind in ("gguf", "hf-dir"):
        name = Path(name).name or name  # a path: its last part is enough for a column
    role = side.role or ("instruct" if has_chat_template(loaded.tokenizer) else "base")
    return Header(
        letter=side.letter,
        model=name,
        role=role,
        mode=prompt.mode,
        prompt_tokens=len(prompt.ids),
        prompt=prompt_segments(loaded.tokenizer, prompt.ids),
    )


def _entry(side: Side, header: Any, loaded: Any) -> dict[str, Any]:
    return {"side": side.letter, "model": loaded.label, "role": header.role, "mode": header.mode}


def _warn_no_system(request: Request, side: Side, header: Any) -> None:
    if request.system is not None and header.mode == "raw":
        render.warn(f"{side.letter} ({header.model}) gets the raw text: the system prompt only goes into chat prompts")


# ---------------------------------------------------------------- generations


def run_generations(pool: ModelPool, request: Request, settings: Any) -> None:
    from llmcli.generation import generate
    from llmcli.render.compare import Column, make_display
    from llmcli.render.generate import generation_json

    sides = pool.sides
    columns = [Column(side.letter, side.model) for side in sides]
    display = make_display(columns, json=request.json, show_prompt=request.show_prompt, settings=settings)
    results: list[dict[str, Any]] = []
    interrupted = False
    with display:
        pool.load_all_first(on_loading=lambda side: display.loading(sides.index(side)))
        for i, side in enumerate(sides):
            if not pool.is_loaded(side):
                display.loading(i)
            loaded = pool.get(side)
            with naming(side):
                prompt = side_prompt(loaded.tokenizer, request.text, request.system, side)
                header = _header(side, loaded, prompt)
                _warn_no_system(request, side, header)
                generation = generate(
                    loaded.model,
                    loaded.tokenizer,
                    prompt.ids,
                    settings,
                    stop_strings=prompt.stop_strings,
                    context_length=loaded.context_length,
                )
            display.start(i, header)
            reply = ""
            try:
                for event in generation:
                    piece = event.text
                    if prompt.mode != "raw" and not reply:
                        piece = piece.lstrip()  # as `generate`: a reply starts at its first word
                    reply += piece
                    display.feed(i, piece)
            except KeyboardInterrupt:
                pass  # Ctrl-C while drawing, not while computing: reading .stats records it
            stats = generation.stats
            display.finish(i, stats)
            results.append(_entry(side, header, loaded) | {"generation": generation_json(loaded, prompt, settings, generation, reply, None)})
            del generation, loaded  # the generation holds the model and its KV cache
            pool.done(i)
            if stats.finish_reason == "interrupted":
                interrupted = True
                break
    if request.json:
        render.print_json({"prompt": request.text, "system": request.system, "settings": settings.to_dict(), "models": results})
    if interrupted:
        raise typer.Exit(130)


# ---------------------------------------------------------------- next-token tables


def run_probs(pool: ModelPool, request: Request, *, num: int) -> None:
    from llmcli.inspect import next_token as nt
    from llmcli.inspect.comparison import Distribution, pairwise
    from llmcli.render.compare import ProbsSide, loading_status, render_probs

    results: list[dict[str, Any]] = []
    distributions: list[Distribution] = []
    shown: list[ProbsSide] = []
    with loading_status(quiet=request.json) as status:
        pool.load_all_first(on_loading=lambda side: status(f"Loading {side.model}…"))
        for i, side in enumerate(pool.sides):
            if not pool.is_loaded(side):
                status(f"Loading {side.model}…")
            loaded = pool.get(side)
            status(f"Running {side.model}…")
            with naming(side):
                prompt = side_prompt(loaded.tokenizer, request.text, request.system, side)
                header = _header(side, loaded, prompt)
                _warn_no_system(request, side, header)
                ids = list(prompt.ids)
                nt.check_prompt(ids, loaded.context_length)
                start = time.perf_counter()
                table, logits = nt.table_at(loaded.model, loaded.tokenizer, ids, num=num)
                forward_seconds = time.perf_counter() - start
            report = nt.ProbsReport(
                model=loaded.label,
                mode=prompt.mode,
                prompt=prompt.text,
                prompt_tokens=nt.prompt_tokens(loaded.tokenizer, ids),
                table=table,
                timings={"load_seconds": loaded.load_seconds, "forward_seconds": forward_seconds},
            )
            distributions.append(Distribution(side.letter, table, logits, loaded.tokenizer))
            shown.append(ProbsSide(header, table))
            results.append(_entry(side, header, loaded) | {"probs": report.to_dict()})
            del loaded
            pool.done(i)
    agreements = pairwise(distributions)
    if request.json:
        render.print_json(
            {"prompt": request.text, "system": request.system, "models": results, "agreement": [a.to_dict() for a in agreements]}
        )
    else:
        render_probs(shown, agreements, show_prompt=request.show_prompt)


def register(app: typer.Typer) -> None:
    app.command()(compare)
