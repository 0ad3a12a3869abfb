"""The progress a GGUF conversion (a bar) and `--compile` (a spinner) show on stderr.

transformers dequantizes GGUF tensors in a loop wrapped in its own tqdm bar
(`modeling_gguf_pytorch_utils.tqdm`). We swap that name for a wrapper that advances a
Rich bar instead, so the user sees one bar in llmcli's style, and nothing at all leaks
when stderr is not a terminal. If a transformers release renames the loop, the wrapper is
simply not called and the bar stays a spinner with elapsed time.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from llmcli import render, state


@contextlib.contextmanager
def conversion_progress(label: str) -> Iterator[None]:
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=render.stderr(),
        transient=True,
    )
    task = progress.add_task(f"Converting {label} to the cache (first load only)", total=None)
    original = gguf_utils.tqdm

    def tracked(iterable, *args, **kwargs):
        items = list(iterable)
        progress.update(task, total=len(items), description=f"Dequantizing {label} (first load only)")
        for item in items:
            yield item
            progress.advance(task)
        progress.update(task, description=f"Writing {label} to the cache")

    if not state.verbose:
        gguf_utils.tqdm = tracked
    try:
        with progress:
            yield
    finally:
        gguf_utils.tqdm = original
    render.stderr().print(render.literal(f"Converted {label} once; later loads read the cache.", style="dim"))


@contextlib.contextmanager
def compile_progress(label: str) -> Iterator[None]:
    """A spinner with elapsed time while torch.compile works, then one dim line."""
    import time

    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=render.stderr(), transient=True)
    progress.add_task(f"Compiling {label} for faster decoding (about a minute; --compile)", total=None)
    start = time.perf_counter()
    with progress:
        yield
    render.stderr().print(render.literal(f"Compiled {label} in {time.perf_counter() - start:.0f} s.", style="dim"))
