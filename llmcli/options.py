"""Options shared by the commands, declared once.

- Single options are annotations: `model: options.Model = None`, `json: options.Json = False`.
- Groups are decorators that add their parameters to a command's signature (Typer reads
  the signature) and hand the command one value instead:
  `@options.loading` -> `loading: dict` (the keywords of `llmcli.load`);
  `@options.sampling(max_new_tokens=512)` -> `settings: SamplingSettings`, validated before
  any model loads, and `typed: frozenset[str]`, the sampling flags the user typed (the
  others take the model's recommended values, `with_recommended`).
Choices are Enums, so a bad value (`--dtype float8`) is a usage error listing the valid ones.
`-n` is `--max-new-tokens` everywhere, as in llama.cpp: tokens to generate.
"""

from __future__ import annotations

import functools
import inspect
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

LOADING = "Model loading"
REMOTE = "Remote models (openai:MODEL)"
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


class Engine(str, Enum):
    auto = "auto"
    llmcli = "llmcli"
    transformers = "transformers"


class Quantize(str, Enum):
    none = "none"
    int8 = "int8"
    int4 = "int4"


Model = Annotated[
    Optional[str],
    typer.Option(
        "-m",
        "--model",
        help="Alias (smollm2, gemma3-270m), a .gguf file, a Hugging Face directory or hub id, "
        "or openai:MODEL on an OpenAI-compatible server (openai:MODEL@http://host:port/v1). "
        "Default: $LLMCLI_MODEL or smollm2.",
        rich_help_panel=LOADING,
        show_default=False,
    ),
]
Models = Annotated[
    Optional[list[str]],
    typer.Option(
        "-m",
        "--model",
        help="Alias (smollm2, gemma3-270m), a .gguf file, a Hugging Face directory or hub id; "
        "repeat it to see models side by side. Default: $LLMCLI_MODEL or smollm2.",
        rich_help_panel=LOADING,
        show_default=False,
        metavar="MODEL",
    ),
]
EXPORT = "Export"
Svg = Annotated[
    Optional[Path],
    typer.Option("--svg", metavar="FILE", help="Also save what is printed as an SVG picture.", rich_help_panel=EXPORT, show_default=False),
]
Html = Annotated[
    Optional[Path],
    typer.Option("--html", metavar="FILE", help="Also save what is printed as an HTML page.", rich_help_panel=EXPORT, show_default=False),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]
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


BaseUrl = Annotated[
    Optional[str],
    typer.Option(
        "--base-url",
        metavar="URL",
        help="The server of openai:MODEL models, e.g. http://127.0.0.1:8000/v1. Default: $LLMCLI_BASE_URL, then $OPENAI_BASE_URL.",
        rich_help_panel=REMOTE,
        show_default=False,
    ),
]
ApiKeyEnv = Annotated[
    Optional[str],
    typer.Option(
        "--api-key-env",
        metavar="NAME",
        help="The environment variable holding the server's API key (the key itself never goes on the command line). Default: $LLMCLI_API_KEY.",
        rich_help_panel=REMOTE,
        show_default=False,
    ),
]


def _option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


_LOADING = [
    _option("dtype", Annotated[DType, typer.Option("--dtype", help="Weight dtype; auto is float32 on the CPU.", rich_help_panel=LOADING)], DType.auto),
    _option(
        "device",
        Annotated[Device, typer.Option("--device", help="Where the weights live; auto picks a GPU when there is one.", rich_help_panel=LOADING)],
        Device.auto,
    ),
    _option(
        "quantize",
        Annotated[
            Quantize,
            typer.Option(
                "--quantize",
                help="Quantize the Linear weights (CPU): faster decoding, probabilities a little off float32's. "
                "int4 is the fastest, and close only for models stored at 4 bits (smollm2).",
                rich_help_panel=LOADING,
            ),
        ],
        Quantize.none,
    ),
    _option(
        "compile",
        Annotated[bool, typer.Option("--compile", help="torch.compile the decode step: ~1.5x faster decoding with --quantize, after 10-40 s of compiling at load.", rich_help_panel=LOADING)],
        False,
    ),
    _option(
        "engine",
        Annotated[
            Engine,
            typer.Option(
                "--engine",
                help="What runs the model: llmcli's own forward pass (Llama, Gemma 3, Qwen, Mistral; faster to load and decode) "
                "or transformers (everything else, and the reference). auto picks llmcli's where it can.",
                rich_help_panel=LOADING,
            ),
        ],
        Engine.auto,
    ),
    _option(
        "max_memory",
        Annotated[
            Optional[str],
            typer.Option(
                "--max-memory",
                metavar="SIZE",
                help="Keep at most SIZE of the weights in memory (2GiB, 500MB) and offload the rest to disk: a model bigger than RAM runs, slowly.",
                rich_help_panel=LOADING,
                show_default=False,
            ),
        ],
        None,
    ),
    _option(
        "trust_remote_code",
        Annotated[bool, typer.Option("--trust-remote-code", help="Allow what a model ships to run code: its own Python modules, and pickle checkpoints (.bin, .pt).", rich_help_panel=LOADING)],
        False,
    ),
    _option("base_url", BaseUrl, None),
    _option("api_key_env", ApiKeyEnv, None),
]


def _with_parameters(command: Callable, added: list[inspect.Parameter], receives: tuple[str, ...], make: Callable[[dict], dict]) -> Callable:
    """`command` with the `added` parameters in its signature instead of the ones it
    `receives`: `make(values of the added)` gives those."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name not in receives]
    names = {p.name for p in added}

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in list(kwargs) if name in names}
        return command(*args, **kwargs, **make(values))

    parameters = sorted([*own, *added], key=lambda p: p.kind)
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper


def loading(command: Callable) -> Callable:
    """Add --dtype, --device, --quantize, --compile, --trust-remote-code, --base-url,
    --api-key-env; the command gets `loading`."""

    def make(values: dict) -> dict:
        return {"loading": {name: getattr(value, "value", value) for name, value in values.items()}}  # Enums to strings

    return _with_parameters(command, _LOADING, ("loading",), make)


# ---------------------------------------------------------------- sampling

SAMPLING_FLAGS = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty", "seed", "max_new_tokens", "stop")
RECOMMENDED = "the model's recommendation, else 0.7"


def _sampling_parameters(max_new_tokens: int, recommended: bool) -> list[inspect.Parameter]:
    def opt(name: str, kind: Any, flags: tuple[str, ...], help: str, default: Any, **extra: Any) -> inspect.Parameter:
        return _option(name, Annotated[kind, typer.Option(*flags, help=help, rich_help_panel=SAMPLING, **extra)], default)

    return [
        opt("max_new_tokens", int, ("--max-new-tokens", "-n"), "Stop after this many new tokens.", max_new_tokens),
        opt(
            "temperature",
            float,
            ("--temperature", "-t"),
            "0 = greedy (deterministic); higher = more varied. "
            + (
                "Sampling flags you leave out take the model's recommended values where it has them (smollm2: temperature 0.2, top-p 0.9)."
                if recommended
                else "The same for every model."
            ),
            0.7,
            show_default=RECOMMENDED if recommended else True,
        ),
        opt("top_k", Optional[int], ("--top-k",), "Sample from the k most likely tokens only.", None, show_default=False),
        opt("top_p", Optional[float], ("--top-p",), "Sample from the smallest set of tokens holding this much probability.", None, show_default=False),
        opt("min_p", Optional[float], ("--min-p",), "Drop tokens less likely than this times the most likely one.", None, show_default=False),
        opt("repetition_penalty", float, ("--repetition-penalty",), "Above 1 makes tokens already seen less likely.", 1.0),
        opt("seed", Optional[int], ("--seed",), "Make sampling reproducible (0 to 2**64 - 1).", None, show_default=False),
        opt(
            "stop",
            Optional[list[str]],
            ("--stop",),
            "Stop before this text (repeatable); it is not printed. \\n and \\t mean newline and tab.",
            None,
            metavar="TEXT",
            show_default=False,
        ),
    ]


def sampling(*, max_new_tokens: int = 512, recommended: bool = True) -> Callable[[Callable], Callable]:
    """Add the sampling flags; the command gets `settings` (validated) and `typed`.
    `recommended`: flags left out take the model's recommended values (the help says so)."""

    def decorate(command: Callable) -> Callable:
        def make(values: dict) -> dict:
            from llmcli.sampling import SamplingSettings

            ctx = values.pop("_llmcli_ctx")
            typed = frozenset(name for name in SAMPLING_FLAGS if _typed(ctx, name))
            settings = SamplingSettings(**{**values, "stop": stop_strings(values["stop"])}).validate()
            return {"settings": settings, "typed": typed}

        added = [*_sampling_parameters(max_new_tokens, recommended), _option("_llmcli_ctx", typer.Context, None)]
        return _with_parameters(command, added, ("settings", "typed"), make)

    return decorate


def _typed(ctx: Any, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def stop_strings(values: list[str] | None) -> tuple[str, ...]:
    """--stop values with `\\n`, `\\t`, `\\r` and `\\\\` as the characters: a shell
    passes `--stop "\\n"` as two characters."""
    import re

    return tuple(re.sub(r"\\([ntr\\])", lambda m: _ESCAPES[m.group(1)], v) for v in values or ())


def with_recommended(settings: Any, model: Any, typed: frozenset[str]) -> Any:
    """`settings` with the model's recommended sampling values in place of the defaults of
    every flag the user did not type."""
    from dataclasses import replace

    changes = {k: v for k, v in model.recommended_sampling().items() if k not in typed}
    return replace(settings, **changes).validate() if changes else settings
