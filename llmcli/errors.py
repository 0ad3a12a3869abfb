"""The errors a user can cause, raised anywhere and reported once at the CLI boundary.

A `LlmcliError` is a known failure (missing model, bad value, context overflow...): the
boundary prints its message and hint as one line each on stderr and exits 1, with no
traceback unless `--verbose`. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class LlmcliError(Exception):
    """A failure the user can fix; `hint` says how."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class ModelNotFound(LlmcliError):
    pass


class BadInput(LlmcliError):
    pass
