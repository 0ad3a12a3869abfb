"""The library under the CLI: `llmcli.load(name)` and what a loaded `Model` can do.

See `llmcli.api.model` for the tour. Nothing here imports Rich, Typer or `llmcli.render`:
the commands render what these functions return. Names are imported on first use, so
`llmcli.api.load_tokenizer` (the tokenize command's fast path) never imports torch.
"""

_EXPORTS = {
    "Model": "llmcli.api.model",
    "load": "llmcli.api.model",
    "ModelPool": "llmcli.api.pool",
    "Response": "llmcli.api.response",
    "Tokenizer": "llmcli.api.tokenizer",
    "load_tokenizer": "llmcli.api.model",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'llmcli.api' has no attribute {name!r}")
