"""A preallocated key/value cache: one buffer per layer, written in place, never reallocated.

transformers' DynamicCache concatenates each step's keys onto the old ones (a copy of the whole
cache per layer per token). Here `new_cache(max_tokens)` allocates
`[batch, kv_heads, max_tokens, head_dim]` for keys and for values once; a forward pass writes its
tokens at `length` and attends to the prefix `[:length + new]`, a view.

Sliding-window layers keep every position too (their attention masks or slices the old ones
away), which spends memory a ring buffer would save but keeps one code path and lets
`output_attentions` return rows over all positions for every layer.
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(
        self,
        num_layers: int,
        batch: int,
        num_kv_heads: int,
        max_tokens: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
        spare: int = 0,  # positions allocated beyond max_tokens, never filled (see EngineModel.new_cache)
    ):
        shape = (batch, num_kv_heads, max_tokens + spare, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.max_tokens = max_tokens
        self.batch = batch
        self.length = 0  # positions filled; the model advances it after a forward pass

    def update(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this pass's keys/values [batch, kv_heads, new, head_dim] at `length`; return all so far."""
        end = self.length + keys.shape[2]
        self.keys[layer][:, :, self.length : end] = keys
        self.values[layer][:, :, self.length : end] = values
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def check_room(self, batch: int, new_tokens: int) -> None:
        if batch != self.batch:
            raise ValueError(f"the cache was made for a batch of {self.batch}, not {batch}")
        if self.length + new_tokens > self.max_tokens:
            raise ValueError(
                f"the cache holds {self.max_tokens} tokens; {self.length} are used and {new_tokens} more do not fit"
            )

    def truncate(self, length: int) -> None:
        """Forget every position from `length` on (to re-run a suffix, e.g. after /retry)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} tokens to {length}")
        self.length = length
