"""What a slow load shows on stderr: a bar while a GGUF file is converted, a spinner while
`--compile` works, then one dim line each.

`LoadProgress` is the callback the loader reports to (`progress(stage, done, total)`,
see `llmcli.models.cache`); it draws with Rich and knows nothing of how loading works.
The bar knows its total from the start (the loader reads the tensor count from the
file's header first). Nothing is drawn when nothing slow happens (a cached model), and
on a stderr that is not a terminal only the closing lines appear.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from llmcli import render


class LoadProgress:
    def __init__(self, label: str, console: Console | None = None):
        self.label = label
        self.console = console or render.stderr()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._started = 0.0

    def __enter__(self) -> LoadProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()  # an error or Ctrl-C mid-load: take the bar away

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if stage == "dequantizing":
            self._bar(f"Dequantizing {self.label} (first load only)", done, total)
        elif stage == "writing":
            self._bar(f"Writing {self.label} to the cache", done, total)
        elif stage == "converted":
            self._stop()
            self._say(f"Converted {self.label} once; later loads read the cache.")
        elif stage == "compiling":
            self._spinner(f"Compiling {self.label} for faster decoding (tens of seconds; --compile)")
        elif stage == "compiled":
            seconds = time.perf_counter() - self._started
            self._stop()
            self._say(f"Compiled {self.label} in {seconds:.0f} s.")

    def _bar(self, description: str, done: int, total: int | None) -> None:
        if self._progress is None:
            columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            self._start(Progress(*columns, console=self.console, transient=True), description, total)
        assert self._progress is not None and self._task is not None
        self._progress.update(self._task, description=description, completed=done, total=total)

    def _spinner(self, description: str) -> None:
        self._stop()
        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        self._start(Progress(*columns, console=self.console, transient=True), description, None)

    def _start(self, progress: Progress, description: str, total: int | None) -> None:
        self._progress, self._started = progress, time.perf_counter()
        self._task = progress.add_task(description, total=total)
        progress.start()

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = self._task = None

    def _say(self, message: str) -> None:
        self.console.print(render.literal(message, style="dim"))
