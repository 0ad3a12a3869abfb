"""`info` as a two-column table: the numbers a reader of "Attention is all you need" looks for."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from llmcli import render
from llmcli.inspect.architecture import ModelInfo


def human_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def human_bytes(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def render_info(info: ModelInfo, load_seconds: float, console: Console | None = None) -> None:
    out = console or render.stdout()
    table = Table(box=box.SIMPLE_HEAD, show_header=False, title=Text(info.name, style="bold"), title_justify="left")
    table.add_column(style="cyan", no_wrap=True)
    table.add_column(overflow="fold")

    def row(key: str, value: object) -> None:
        table.add_row(key, render.literal(str(value)))

    row("family", f"{info.family} ({info.architecture})")
    row("layers", info.layers)
    row("attention heads", f"{info.attention_heads} query, {info.kv_heads} key/value, head dim {info.head_dim}")
    row("hidden size", info.hidden_size)
    row("MLP size", info.mlp_size)
    row("vocabulary", f"{info.vocab_size:,}")
    window = f"{info.context_length:,} tokens" if info.context_length else "unknown"
    if info.sliding_window:
        window += f" (sliding window {info.sliding_window:,} on some layers)"
    row("context window", window)
    row("tied embeddings", "yes (output head reuses the embedding matrix)" if info.tied_embeddings else "no")
    row("parameters", f"{info.parameters:,} ({human_count(info.parameters)})")
    for part, n in info.parameters_by_part.items():
        if n or part != "other":
            share = 100 * n / info.parameters if info.parameters else 0
            row(f"  {part.replace('_', ' ')}", f"{n:>13,}  {share:5.1f}%")
    for i, (dt, b) in enumerate(info.memory_bytes.items()):
        row("weights in memory" if i == 0 else "", f"{human_bytes(b):>10}  at {dt}")
    row("loaded as", f"{info.dtype} on {info.device} in {load_seconds:.1f} s")
    engines = {"llmcli": "llmcli's own forward pass (--engine transformers for transformers')", "transformers": "transformers"}
    row("engine", engines.get(info.engine, info.engine))
    if info.quantized_layers:
        layers = ", ".join(f"{n} at {kind}" for kind, n in sorted(info.quantized_layers.items(), key=lambda kv: -kv[1]))
        row("quantized", f"Linear layers: {layers} · weights now {human_bytes(info.resident_bytes)}")
    row("chat template", "yes" if info.chat_template else "no (a base model: llmcli chats through prompts/)")
    for i, t in enumerate(info.special_tokens):
        row("special tokens" if i == 0 else "", f"{t.role:<4} {t.token}  (id {t.id})")
    origin = info.loaded_from
    if origin.get("alias"):
        row("built-in alias", f"{origin['alias']} (licence: {origin['licence']})")
    row("source", origin["source"])
    if origin.get("cache_entry"):
        row("cache entry", origin["cache_entry"])
    elif origin["weights"] != origin["source"]:
        row("weights", origin["weights"])
    render.print_block(out, table)
