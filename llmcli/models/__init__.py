"""The one place that turns a model name into a loaded model.

- `registry`: the built-in aliases, as data (which package holds each file).
- `resolve`: a name -> `ModelRef` (alias, .gguf path, HF directory, hub id), and the
  Hugging Face directory to read it from.
- `cache`: GGUF files converted once into safetensors entries, atomically.
- `load`: the weights and tokenizer, with plain `LoadOptions` and a progress callback.

Importing this package imports no torch or transformers; loading does.
"""

from llmcli.models.cache import cache_dir, cache_entries, cache_entry, ensure_converted
from llmcli.models.load import LoadedModel, LoadOptions, context_length, load_model, load_tokenizer, recommended_sampling
from llmcli.models.registry import ALIASES, DEFAULT_MODEL, Alias, default_model_name
from llmcli.models.resolve import ModelRef, cached_tokenizer_json, model_dir, resolve, tokenizer_dir

__all__ = [
    "ALIASES",
    "DEFAULT_MODEL",
    "Alias",
    "LoadOptions",
    "LoadedModel",
    "ModelRef",
    "cache_dir",
    "cache_entries",
    "cache_entry",
    "cached_tokenizer_json",
    "context_length",
    "default_model_name",
    "ensure_converted",
    "load_model",
    "load_tokenizer",
    "model_dir",
    "recommended_sampling",
    "resolve",
    "tokenizer_dir",
]
