"""compare's sides: which models, how each gets the prompt, how a column is headed.

The sides: `--base` and `--instruct` (defaults gemma3-270m and smollm2), or any models with
`-m A -m B [-m C ...]`, or one model with and without its chat template
(`--template-vs-raw`). Each side gets a letter, A, B, C..., that labels its column.

Each side gets the prompt the way it expects it: the base side the raw text, the instruct
side the chat template with the text as the user message; a `-m` side by whether its
tokenizer has a chat template (as `generate` decides). `--raw` / `--chat` force one mode
for every side. An error while one side loads or runs names the side:
`model B (--instruct smolm2): ...`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from llmcli.errors import BadInput, LlmcliError

DEFAULT_BASE = "gemma3-270m"
DEFAULT_INSTRUCT = "smollm2"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


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


def plan_sides(models: list[str] | None, base: str | None, instruct: str | None, *, template_vs_raw: bool = False, mode: str = "auto") -> tuple[Side, ...]:
    """The sides the options ask for, checked before anything loads. `mode` is the one
    --raw/--chat force on every side ("auto": none)."""
    if models and (base or instruct):
        raise BadInput("-m and --base/--instruct both choose the models", "use --base and --instruct, or -m for each model")
    forced = None if mode == "auto" else mode
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


def first_side_of(sides: tuple[Side, ...], name: str) -> Side:
    return next(side for side in sides if side.model == name)


def side_prompt(model: Any, text: str, system: str | None, side: Side):
    """The prompt this side's model receives (a `prompting.Prompt`); a raw side gets no system prompt."""
    mode = side.mode
    if mode == "auto":
        mode = "chat" if model.has_chat_template else "raw"
    return model.prompt(text, system=None if mode == "raw" else system, mode=mode)


def header(side: Side, model: Any, prompt: Any):
    """The column's heading: letter, model, role, how the prompt was built."""
    from llmcli.inspect.comparison import prompt_segments
    from llmcli.render.compare import Header

    name = model.label
    if Path(name).expanduser().exists():
        name = Path(name).name or name  # a path: its last part is enough for a column
    role = side.role or ("instruct" if model.has_chat_template else "base")
    return Header(side.letter, name, role, prompt.mode, len(prompt.ids), prompt_segments(model.tokenizer, prompt.ids))


def entry(side: Side, heading: Any, model: Any) -> dict[str, Any]:
    """The side in --json."""
    return {"side": side.letter, "model": model.label, "role": heading.role, "mode": heading.mode}


def each_side(pool: Any, sides: tuple, text: str, system: str | None, on_loading) -> Any:
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
            from llmcli import render

            render.warn(f"{side.letter} ({heading.model}) gets the raw text: the system prompt only goes into chat prompts")
        yield side, model, built, heading
        del model  # before the next one loads: with --low-memory, one model at a time
        pool.done(side.model, still_needed=any(s.model == side.model for s in sides[i + 1 :]))
