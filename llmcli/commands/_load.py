"""Loading a model for a command: `llmcli.load` with the command's loading options, and
a progress bar on stderr for a first-use conversion or `--compile`."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load(name: str | None, loading: dict[str, Any], *, views: bool = False):
    """The `llmcli.Model` for `-m NAME` (None: the default model). `views`: for score, lens,
    attention and neighbors, which run transformers' own modules; left to choose, they load
    on transformers once rather than the engine and then transformers beside it."""
    from llmcli.api import load as load_model
    from llmcli.render.progress import LoadProgress

    if views and loading.get("engine", "auto") == "auto":
        loading = {**loading, "engine": "transformers"}

    with LoadProgress(progress_label(name)) as progress:
        return load_model(name, progress=progress, **loading)


def progress_label(name: str | None) -> str:
    """How a progress bar names a model: an alias as it is, a path by its last part."""
    from llmcli.models import default_model_name

    name = name or default_model_name()
    if name.startswith("openai:"):
        return name.split("@", 1)[0]  # a remote model: its name, without the server's URL
    return Path(name).name if "/" in name or name.endswith(".gguf") else name
