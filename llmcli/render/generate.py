"""`generate`'s output: the streamed reply on stdout, stats and logprobs on stderr, and JSON.

The reply is written piece by piece with a flush after each, so it reaches a pipe as it
is generated. On a terminal, control characters in it are shown as `\\xNN` (a model's
ESC cannot restyle the terminal); into a pipe or a file the text goes out exactly.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from llmcli import render


class LiveText:
    """Streams the reply to stdout; `strip_leading` drops whitespace before its first word."""

    def __init__(self, *, strip_leading: bool, echo: bool = True):
        self.strip_leading = strip_leading
        self.echo = echo
        self.text = ""
        self._out = sys.stdout
        self._terminal = self._out.isatty()

    def feed(self, piece: str) -> None:
        if self.strip_leading and not self.text:
            piece = piece.lstrip()
        if not piece:
            return
        self.text += piece
        if self.echo:
            self._out.write(render.escape_controls(piece) if self._terminal else piece)
            self._out.flush()

    def close(self) -> None:
        """End with a newline, so the shell prompt (or the next line of a script) starts on its own line."""
        if self.echo and self.text and not self.text.endswith("\n"):
            self._out.write("\n")
            self._out.flush()


def stats_line(stats: Any) -> Text:
    """`12 prompt tokens · 40 tokens (length) · first token 0.21 s · …`, dim."""
    parts = [
        f"{stats.prompt_tokens:,} prompt tokens",
        f"{stats.generated_tokens:,} generated ({stats.finish_reason})",
        f"first token {stats.time_to_first_token:.2f} s",
        f"prefill {stats.prefill_tokens_per_second:,.0f} tok/s",
        f"decode {stats.decode_tokens_per_second:.1f} tok/s",
        f"total {stats.total_seconds:.2f} s",
        f"peak memory {stats.peak_memory_bytes / 2**20:,.0f} MiB",
    ]
    return Text(" · ".join(parts), style="dim")


def print_stats(stats: Any) -> None:
    render.stderr().print(stats_line(stats), soft_wrap=True)


def print_logprobs(tokenizer: Any, events: list[Any]) -> None:
    """Each generated token with its log-probability and the best alternatives, on stderr."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("token")
    table.add_column("id", justify="right", style="dim")
    table.add_column("logprob", justify="right")
    table.add_column("prob", justify="right")
    if any(e.top for e in events):
        table.add_column("alternatives (prob)", overflow="fold")
    for n, e in enumerate(events, 1):
        row = [
            str(n),
            _token(tokenizer, e.id),
            str(e.id),
            f"{e.logprob:.3f}",
            f"{100 * math.exp(e.logprob):.1f}%",
        ]
        if e.top:
            alternatives = Text()
            for i, _piece, logprob in e.top:
                if alternatives:
                    alternatives.append("  ")
                alternatives.append_text(_token(tokenizer, i, style="bold" if i == e.id else ""))
                alternatives.append(f" {100 * math.exp(logprob):.1f}%", style="dim")
            row.append(alternatives)
        table.add_row(*row)
    render.print_block(render.stderr(), table)


def _token(tokenizer: Any, token_id: int, style: str = "") -> Text:
    from llmcli.tokens import piece_text

    return Text(render.visible_whitespace(piece_text(tokenizer, token_id)) or "∅", style=style)


def _piece(tokenizer: Any, token_id: int) -> str:
    """A token's text in OpenAI's logprobs shape: as the tokenizer decodes it alone (its
    exact bytes go beside it)."""
    return tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)


def generation_json(loaded: Any, prompt: Any, settings: Any, generation: Any, text: str, events: list[Any] | None) -> dict:
    """The whole run as one document; `logprobs` in the OpenAI shape when asked for."""
    stats = generation.stats
    data = {
        "model": loaded.label,
        "mode": prompt.mode,
        "prompt": prompt.text,
        "prompt_token_ids": list(prompt.ids),
        "text": text,
        "token_ids": list(generation.token_ids),
        "finish_reason": stats.finish_reason,
        "usage": {
            "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.generated_tokens,
            "total_tokens": stats.prompt_tokens + stats.generated_tokens,
        },
        "timings": {
            "load_seconds": loaded.load_seconds,
            "time_to_first_token": stats.time_to_first_token,
            "prefill_tokens_per_second": stats.prefill_tokens_per_second,
            "decode_tokens_per_second": stats.decode_tokens_per_second,
            "total_seconds": stats.total_seconds,
        },
        "peak_memory_bytes": stats.peak_memory_bytes,
        "settings": settings.to_dict(),
    }
    if events is not None:
        data["logprobs"] = {"content": [_logprob_entry(loaded.tokenizer, e) for e in events]}
    return data


def _logprob_entry(tokenizer: Any, event: Any) -> dict:
    from llmcli.tokens import token_bytes

    def entry(token_id: int, logprob: float) -> dict:
        return {"token": _piece(tokenizer, token_id), "logprob": logprob, "bytes": list(token_bytes(tokenizer, token_id))}

    return entry(event.id, event.logprob) | {"top_logprobs": [entry(i, lp) for i, _piece, lp in event.top]}
