"""What a model name points at, found without loading anything heavy.

A name is a built-in alias (`registry.ALIASES`), a `.gguf` path, a Hugging Face-format
directory, or a hub id (`org/name`). `resolve` turns it into a `ModelRef`; `model_dir`
then gives the Hugging Face directory to load (converting a GGUF file into the cache
first, or finding a hub model in the HF cache). A hub id offline and not cached fails
with one line saying how to get it.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from llmcli.errors import ModelNotFound
from llmcli.models import cache
from llmcli.models.registry import ALIASES, default_model_name


@dataclass(frozen=True)
class ModelRef:
    """What a model name points at. `path` is a .gguf file or an HF directory; None for a hub id."""

    name: str
    kind: str  # "alias" | "gguf" | "hf-dir" | "hub"
    path: Path | None = None
    alias: str | None = None
    hub_id: str | None = None

    @property
    def label(self) -> str:
        """How commands name the model: the alias, else what the user typed."""
        return self.alias or self.name

    @property
    def is_gguf(self) -> bool:
        return self.kind in ("alias", "gguf")


def resolve(name: str | None) -> ModelRef:
    """Turn what the user typed into a ModelRef."""
    name = name or default_model_name()
    if name in ALIASES:
        return ModelRef(name, "alias", ALIASES[name].gguf(), alias=name)
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "config.json").exists():
            return ModelRef(name, "hf-dir", path)
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelRef(name, "gguf", ggufs[0])
        raise ModelNotFound(
            f"{name} is a directory but not a model: no config.json" + (" and several .gguf files" if ggufs else ""),
            "pass a Hugging Face model directory or a .gguf file",
        )
    if path.is_file():
        if path.suffix.lower() == ".gguf" or _has_gguf_magic(path):
            return ModelRef(name, "gguf", path)
        raise ModelNotFound(f"{name} is not a GGUF file", "pass a .gguf file, a model directory, or an alias")
    # A hub id is exactly `org/name`; anything else with a slash, a .gguf suffix or a
    # leading ./ or ~ was meant as a path.
    if name.endswith(".gguf") or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelNotFound(f"no such file or directory: {name}", "check the path")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        return ModelRef(name, "hub", hub_id=name)
    close = difflib.get_close_matches(name, ALIASES, n=1)
    hint = f"did you mean '{close[0]}'?" if close else "built-in models: " + ", ".join(ALIASES)
    raise ModelNotFound(f"unknown model '{name}'", hint + " (or give a .gguf path, a model directory, or org/name)")


def _has_gguf_magic(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


def model_dir(ref: ModelRef, progress: cache.Progress = cache.no_progress) -> tuple[Path, bool]:
    """The Hugging Face directory to load `ref` from, and whether it was converted just now."""
    if ref.is_gguf:
        return cache.ensure_converted(ref, progress)
    if ref.kind == "hub":
        assert ref.hub_id is not None
        return hub_dir(ref.hub_id), False
    assert ref.path is not None
    return ref.path, False


def tokenizer_dir(ref: ModelRef) -> Path | None:
    """A saved Hugging Face tokenizer for a GGUF-backed ref: the finished model entry's,
    else the tokenizer-only entry. None when neither exists yet."""
    if not ref.is_gguf or ref.path is None:
        return None
    entry = cache.cache_entry(ref.path)
    if cache.finished(entry):
        return entry
    alone = cache.tokenizer_entry(ref.path)
    return alone if cache.finished(alone) else None


def cached_tokenizer_json(ref: ModelRef) -> Path | None:
    """The tokenizer.json llmcli saved for a GGUF-backed ref (readable with `tokenizers`
    alone, no transformers import), or None."""
    found = tokenizer_dir(ref)
    return found / "tokenizer.json" if found and (found / "tokenizer.json").exists() else None


def hub_dir(hub_id: str) -> Path:
    """The local snapshot of a hub model: from the HF cache, or downloaded when online."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(hub_id, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    how = f"download it where there is network (`hf download {hub_id}`) or pass a local path"
    if constants.HF_HUB_OFFLINE:
        raise ModelNotFound(f"'{hub_id}' is not in the Hugging Face cache and HF_HUB_OFFLINE is set", how)
    patterns = ["*.json", "*.safetensors", "*.model", "*.jinja", "*.txt", "tokenizer*"]
    try:
        return Path(snapshot_download(hub_id, allow_patterns=patterns))
    except RepositoryNotFoundError as e:
        raise ModelNotFound(f"'{hub_id}' was not found on the Hugging Face hub", "check the name") from e
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as e:
        raise ModelNotFound(f"'{hub_id}' is not in the Hugging Face cache and the hub is unreachable", how) from e
