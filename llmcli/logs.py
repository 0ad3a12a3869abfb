"""Library noise: hidden from users in normal use, all of it shown with `--verbose`.

transformers, torch, accelerate and huggingface_hub talk through three channels: Python
warnings (FutureWarning, DeprecationWarning, UserWarning), their loggers, and tqdm bars.
None of it is meant for someone running `llmcli generate`: a deprecation inside a library
is the developers' business, and a new release adding one must not change what a user
sees (transformers 5.24 printed a FutureWarning on every reply). The CLI calls
`configure` once, before any of those libraries is imported:

- quiet: warnings ignored; transformers' and huggingface_hub's verbosity at "error" and
  their progress bars off (through the environment variables they read when imported,
  or their setters when already imported); a do-nothing handler on the root logger, so
  a library that logs without handlers of its own (accelerate, torch) does not reach
  Python's last-resort stderr handler.
- verbose: every warning shown (once per place), the libraries at "warning" (their own
  default; "info" dumps whole configs), and the root logger printing `name: message`
  lines on stderr.

Code that uses `import llmcli` keeps its own warning and logging settings: only the CLI
calls this.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

_QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}
_VERBOSE_ENV = {"TRANSFORMERS_VERBOSITY": "warning", "HF_HUB_VERBOSITY": "warning"}


def configure(verbose: bool) -> None:
    """Set warnings, library verbosity and logging for one CLI run."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_llmcli", False)]:
        root.removeHandler(handler)  # a second run in the same process (tests) starts afresh
    if verbose:
        warnings.simplefilter("default")
        os.environ.update(_VERBOSE_ENV)
        for name in [k for k, v in _QUIET_ENV.items() if os.environ.get(k) == v and k not in _VERBOSE_ENV]:
            del os.environ[name]
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        root.setLevel(logging.WARNING)
    else:
        warnings.simplefilter("ignore")
        os.environ.update(_QUIET_ENV)
        handler = logging.NullHandler()
    handler._llmcli = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    _set_imported_libraries(verbose)


def _set_imported_libraries(verbose: bool) -> None:
    """Libraries read those variables when first imported; one already imported (a test
    process, or a plugin) is told through its own setters."""
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        if verbose:
            hf_logging.set_verbosity_warning()
            hf_logging.enable_progress_bar()
        else:
            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_warning() if verbose else hub_logging.set_verbosity_error()
