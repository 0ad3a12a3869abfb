"""How llmcli calls a transformers model's forward pass: the one place that knows its keywords.

- The KV cache argument: transformers 5.24 renamed `past_key_values` to `cache` (the old
  name still works but prints a FutureWarning on every call, and goes in 5.40). The name
  is read off the installed version's `forward` signature, so both old and new releases
  get the keyword they expect.
- `logits_to_keep`: when the model takes it, only the positions asked for go through the
  output head. A long prompt's full [tokens x vocabulary] logits would take hundreds of MB
  (Gemma's vocabulary is 262k tokens).

torch and transformers are imported inside the functions: `llmcli --help` imports no torch.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any


@functools.lru_cache(maxsize=None)
def _class_parameters(model_class: type) -> frozenset[str]:
    return _parameters(model_class.forward)


def _parameters(function: Any) -> frozenset[str]:
    try:
        return frozenset(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return frozenset()


def accepts(model: Any, parameter: str) -> bool:
    """True when the model's forward takes `parameter` (read once per model class)."""
    if hasattr(type(model), "forward"):
        return parameter in _class_parameters(type(model))
    return parameter in _parameters(getattr(model, "forward", model))  # a stand-in wrapping a model


def cache_keyword(model: Any) -> str:
    """`cache` on transformers 5.24 and later, `past_key_values` before."""
    return "cache" if accepts(model, "cache") else "past_key_values"


def new_cache(model: Any) -> Any:
    """An empty KV cache for `model` (transformers' DynamicCache)."""
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def call(model: Any, ids: Any, *, cache: Any = None, keep: int | None = None, **extra: Any) -> Any:
    """`model(input_ids=ids, …)` with the cache (None: no cache) and the last `keep`
    positions' logits (None: all), in the keywords this transformers release takes."""
    kwargs: dict[str, Any] = dict(extra)
    if cache is None:
        kwargs["use_cache"] = False
    else:
        kwargs[cache_keyword(model)] = cache
        kwargs["use_cache"] = True
    if keep is not None and accepts(model, "logits_to_keep"):
        kwargs["logits_to_keep"] = keep
    return model(input_ids=ids, **kwargs)


def decoder(model: Any):
    """A decode step with a KV cache of its own: `step(ids)` feeds the next ids and returns
    the float32 logits after the last one, on the CPU (generation.Decoder)."""
    import torch

    cache = new_cache(model)

    def step(ids: list[int]) -> Any:
        with torch.inference_mode():
            input_ids = torch.tensor([ids], dtype=torch.long, device=model.device)
            out = call(model, input_ids, cache=cache, keep=1)  # only the last position's logits
        return out.logits[0, -1].float().cpu()

    return step
