"""What is installed and cached: the built-in aliases, llmcli's conversion cache, the HF cache.

Plain data for `llmcli models` (and `--json`); `remove` deletes cache entries (never the
alias packages themselves, which pip owns). Entries are rebuilt on next use.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from llmcli.models.cache import cache_dir, cache_entries
from llmcli.models.registry import ALIASES


@dataclass(frozen=True)
class AliasRow:
    name: str
    title: str
    kind: str
    installed: bool
    package: str
    licence: str
    cached: bool


@dataclass(frozen=True)
class CacheRow:
    name: str
    path: str
    bytes: int
    source: str
    alias: str | None


@dataclass(frozen=True)
class HubRow:
    repo_id: str
    bytes: int
    path: str


@dataclass(frozen=True)
class Catalog:
    cache_dir: str
    aliases: list[AliasRow]
    cache: list[CacheRow]
    hub: list[HubRow]


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def engine_files(entry: Path) -> list[Path]:
    """The engine's prepared weights made from a cache entry (`backends.engine.prepared_path`)."""
    folder = cache_dir() / "engine"
    return sorted(folder.glob(f"{entry.name}-*.safetensors")) if folder.is_dir() else []


def catalog() -> Catalog:
    entries = cache_entries()
    cached_aliases = {meta.get("alias") for _, meta in entries}
    aliases = [
        AliasRow(a.name, a.title, a.kind, a.installed(), a.package, a.licence, a.name in cached_aliases)
        for a in ALIASES.values()
    ]
    cache = [
        CacheRow(d.name, str(d), dir_size(d) + sum(f.stat().st_size for f in engine_files(d)), meta["source"], meta.get("alias"))
        for d, meta in entries
    ]
    return Catalog(str(cache_dir()), aliases, cache, hub_models())


def hub_models() -> list[HubRow]:
    """Models in the Hugging Face cache (none if there is no cache yet)."""
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir()
    except Exception:  # CacheNotFound, or an unreadable cache: nothing to list
        return []
    return [HubRow(r.repo_id, r.size_on_disk, str(r.repo_path)) for r in info.repos if r.repo_type == "model"]


def remove(name: str | None, everything: bool) -> list[CacheRow]:
    """Delete matching cache entries: by entry name, by alias, or all of them."""
    rows = catalog().cache
    chosen = rows if everything else [r for r in rows if name in (r.name, r.alias)]
    for row in chosen:
        shutil.rmtree(row.path)
        # The tokenizer-only entry of the same source, if `tokenize` made one.
        shutil.rmtree(Path(row.path).parent.parent / "tokenizers" / row.name, ignore_errors=True)
        for prepared in engine_files(Path(row.path)):  # and the engine's own layout of its weights
            prepared.unlink(missing_ok=True)
    return chosen
