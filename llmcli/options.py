"""Options shared by every command that loads a model, declared once.

Use them as parameter annotations: `model: options.Model = None`. Choices are Enums so a
bad value (`--dtype float8`) is a usage error listing the valid ones.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

LOADING = "Model loading"
PROMPT = "Prompt"
SAMPLING = "Sampling"


class DType(str, Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


Model = Annotated[
    Optional[str],
    typer.Option(
        "-m",
        "--model",
        help="Alias (smollm2, gemma3-270m), a .gguf file, a Hugging Face directory or hub id. "
        "Default: $LLMCLI_MODEL or smollm2.",
        rich_help_panel=LOADING,
        show_default=False,
    ),
]
DTypeOpt = Annotated[
    DType, typer.Option("--dtype", help="Weight dtype; auto is float32 on the CPU.", rich_help_panel=LOADING)
]
DeviceOpt = Annotated[
    Device, typer.Option("--device", help="Where the weights live; auto picks a GPU when there is one.", rich_help_panel=LOADING)
]
class Quantize(str, Enum):
    none = "none"
    int8 = "int8"
    int4 = "int4"


QuantizeOpt = Annotated[
    Quantize,
    typer.Option(
        "--quantize",
        help="Quantize the Linear weights (CPU): faster decoding, probabilities a little off float32's. "
        "int4 is the fastest, and close only for models stored at 4 bits (smollm2).",
        rich_help_panel=LOADING,
    ),
]
CompileOpt = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="torch.compile the forward pass: faster decoding after tens of seconds of compiling.",
        rich_help_panel=LOADING,
    ),
]
TrustRemoteCode = Annotated[
    bool,
    typer.Option("--trust-remote-code", help="Allow code shipped with a hub model to run.", rich_help_panel=LOADING),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]


# ---------------------------------------------------------------- prompting and sampling
# Shared by generate, chat and compare; each command gives its own default.

System = Annotated[
    Optional[str], typer.Option("--system", "-s", help="A system prompt.", rich_help_panel=PROMPT, show_default=False)
]
SystemFile = Annotated[
    Optional[Path],
    typer.Option("--system-file", help="Read the system prompt from a file.", rich_help_panel=PROMPT, show_default=False),
]
PromptName = Annotated[
    Optional[str],
    typer.Option("--prompt", help="A system prompt from prompts/ by name (e.g. engineer).", rich_help_panel=PROMPT, show_default=False),
]
MaxNewTokens = Annotated[
    int, typer.Option("--max-new-tokens", "-n", help="Stop after this many new tokens.", rich_help_panel=SAMPLING)
]
Temperature = Annotated[
    float,
    typer.Option(
        "--temperature",
        "-t",
        help="0 = greedy (deterministic); higher = more varied. Sampling flags you leave out take the model's "
        "recommended values where it has them (smollm2: temperature 0.2, top-p 0.9).",
        rich_help_panel=SAMPLING,
    ),
]
TopK = Annotated[
    Optional[int],
    typer.Option("--top-k", help="Sample from the k most likely tokens only.", rich_help_panel=SAMPLING, show_default=False),
]
TopP = Annotated[
    Optional[float],
    typer.Option(
        "--top-p", help="Sample from the smallest set of tokens holding this much probability.", rich_help_panel=SAMPLING, show_default=False
    ),
]
MinP = Annotated[
    Optional[float],
    typer.Option("--min-p", help="Drop tokens less likely than this times the most likely one.", rich_help_panel=SAMPLING, show_default=False),
]
RepetitionPenalty = Annotated[
    float, typer.Option("--repetition-penalty", help="Above 1 makes tokens already seen less likely.", rich_help_panel=SAMPLING)
]
Seed = Annotated[Optional[int], typer.Option("--seed", help="Make sampling reproducible.", rich_help_panel=SAMPLING, show_default=False)]
Stop = Annotated[
    Optional[list[str]],
    typer.Option(
        "--stop",
        metavar="TEXT",
        help="Stop before this text (repeatable); it is not printed. \\n and \\t mean newline and tab.",
        rich_help_panel=SAMPLING,
        show_default=False,
    ),
]

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def stop_strings(values: list[str] | None) -> tuple[str, ...]:
    """--stop values with `\\n`, `\\t`, `\\r` and `\\\\` as the characters: a shell
    passes `--stop "\\n"` as two characters."""
    import re

    return tuple(re.sub(r"\\([ntr\\])", lambda m: _ESCAPES[m.group(1)], v) for v in values or ())


SAMPLING_FLAGS = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty", "seed", "max_new_tokens", "stop")


def sampling_settings(ctx: typer.Context):
    """The running command's sampling flags (its parameters named in SAMPLING_FLAGS) as
    validated SamplingSettings: a bad value fails before a model loads."""
    from llmcli.generation import SamplingSettings

    values = {name: ctx.params[name] for name in SAMPLING_FLAGS}
    return SamplingSettings(**{**values, "stop": stop_strings(values["stop"])}).validate()


def given_on_command_line(ctx: typer.Context, names: tuple[str, ...] = SAMPLING_FLAGS) -> set[str]:
    """Which of these parameters the user typed; the others hold their defaults."""
    given = set()
    for name in names:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name == "COMMANDLINE":
            given.add(name)
    return given


def with_recommended(settings, loaded, given: set[str]):
    """`settings` with the model's recommended sampling values (`models.recommended_sampling`)
    in place of the defaults of every flag not in `given`."""
    from dataclasses import replace

    from llmcli.models import recommended_sampling

    changes = {k: v for k, v in recommended_sampling(loaded).items() if k not in given}
    return replace(settings, **changes).validate() if changes else settings
