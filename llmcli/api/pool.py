"""Several models for one job (compare): each distinct name loaded once, or one at a time.

`prepare()` resolves every name first (a typo fails at once) and converts GGUF files into
the cache before anything is drawn; `get(name)` loads on first use; with `low_memory`,
`done(name, still_needed)` frees a model no later step needs.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from llmcli.api.model import Model, load


class ModelPool:
    def __init__(self, names: Sequence[str], *, low_memory: bool = False, progress: Callable[[str], Any] | None = None, **options: Any):
        self.names = list(dict.fromkeys(names))
        self.low_memory = low_memory
        self.options = options  # llmcli.load's keywords: dtype, device, quantize, ...
        self.progress = progress  # name -> a progress callback for that model's load
        self._loaded: dict[str, Model] = {}

    def prepare(self, name_errors: Callable[[str], Any]) -> None:
        """Resolve, then convert, every model; `name_errors(name)` is a context manager that
        words an error in terms of the option that named the model."""
        from llmcli.models import model_dir, resolve

        refs = []
        for name in (n for n in self.names if not (n or "").startswith("openai:")):  # a remote model has nothing to prepare
            with name_errors(name):
                refs.append((name, resolve(name)))
        for name, ref in refs:
            with name_errors(name):
                model_dir(ref, self.progress(name) if self.progress else _quiet)

    def is_loaded(self, name: str) -> bool:
        return name in self._loaded

    def get(self, name: str) -> Model:
        if name not in self._loaded:
            progress = self.progress(name) if self.progress else None
            self._loaded[name] = load(name, progress=progress, **self.options)
        return self._loaded[name]

    def done(self, name: str, still_needed: bool) -> None:
        """With low_memory, free `name`'s model unless a later step still needs it."""
        if not self.low_memory or still_needed or self._loaded.pop(name, None) is None:
            return
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _quiet(stage: str, done: int, total: int | None) -> None:
    pass
