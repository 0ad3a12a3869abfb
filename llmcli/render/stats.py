"""A generation's numbers in words, for every place that shows them.

`stats_parts` is the one formatter: `generate --stats`, the chat's line after each reply,
compare's columns and its piped sections each ask for the parts they have room for.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

REASONS = {"stop": "stopped", "length": "hit the limit", "interrupted": "interrupted"}


def stats_parts(
    stats: Any,
    *,
    prompt: bool = False,
    speeds: bool = False,
    memory: bool = False,
    total: bool = True,
    reason: bool = True,
    window: int | None = None,
) -> list[str]:
    """`40 tokens, hit the limit` · `15.2 tok/s` · `first token 0.21 s` · …

    `prompt` adds the prompt's token count; `speeds` prefill and decode speed (else just
    the decode speed); `window` the context used of the model's window; `memory` the peak.
    """
    n = stats.generated_tokens
    parts = [f"{stats.prompt_tokens:,} prompt tokens"] if prompt else []
    made = f"{n:,} token{'s' if n != 1 else ''}"
    parts.append(f"{made}, {REASONS.get(stats.finish_reason, stats.finish_reason)}" if reason else made)
    if speeds:
        parts += [f"prefill {stats.prefill_tokens_per_second:,.0f} tok/s", f"decode {stats.decode_tokens_per_second:.1f} tok/s"]
    elif n > 1:  # decoding speed needs a second token
        parts.append(f"{stats.decode_tokens_per_second:.1f} tok/s")
    parts.append(f"first token {stats.time_to_first_token:.2f} s")
    if total:
        parts.append(f"total {stats.total_seconds:.2f} s")
    if window is not None:
        used = stats.prompt_tokens + stats.generated_tokens
        parts.append(f"context {used:,} / {window:,} ({100 * used / window:.0f}%)" if window else f"context {used:,}")
    if memory and stats.peak_memory_bytes:  # 0: not known (a remote model's server does not say)
        parts.append(f"peak memory {stats.peak_memory_bytes / 2**20:,.0f} MiB")
    return parts


def stats_line(stats: Any, **parts: Any) -> Text:
    """The parts on one dim line, joined by ` · `."""
    return Text(" · ".join(stats_parts(stats, **parts)), style="dim")
