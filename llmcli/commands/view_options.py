"""Options the inspection views (`score`, `lens`, `attention`, `neighbors`) share, declared once.

Not a command module: it registers nothing. `--svg` / `--html` write Rich's export of exactly
what the command printed; `Models` is `-m` repeatable for the views that show models side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llmcli import options
from llmcli.errors import BadInput

EXPORT = "Export"

Models = Annotated[
    Optional[list[str]],
    typer.Option(
        "-m",
        "--model",
        help="Alias (smollm2, gemma3-270m), a .gguf file, a Hugging Face directory or hub id; "
        "repeat it to see models side by side. Default: $LLMCLI_MODEL or smollm2.",
        rich_help_panel=options.LOADING,
        show_default=False,
        metavar="MODEL",
    ),
]
Svg = Annotated[
    Optional[Path],
    typer.Option("--svg", metavar="FILE", help="Also save what is printed as an SVG picture.", rich_help_panel=EXPORT, show_default=False),
]
Html = Annotated[
    Optional[Path],
    typer.Option("--html", metavar="FILE", help="Also save what is printed as an HTML page.", rich_help_panel=EXPORT, show_default=False),
]


def check_exports(json: bool, svg: Path | None, html: Path | None) -> None:
    if json and (svg is not None or html is not None):
        raise BadInput("--svg and --html export the view; --json prints no view", "drop --json, or the export")


def load(name: str | None, dtype, device, trust_remote_code: bool):
    """The exact model (no quantization or compiling: these views show its real numbers)."""
    from llmcli.models import load_model

    return load_model(name, dtype, device, trust_remote_code)
