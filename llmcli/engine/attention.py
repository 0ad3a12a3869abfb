"""Causal attention with grouped-query heads and optional sliding windows, in two flavours:

- `sdpa`: `F.scaled_dot_product_attention`, the fast path. A one-token decode step needs no
  causal mask (the cache holds only the past), so its query heads are regrouped by KV head
  (`[b, kv_heads, group, d]`) and attend to the unrepeated keys, as transformers' `pack_gqa` does;
  a sliding window is then a mask over the cache's positions. A prefill from position 0 inside
  the window uses `is_causal`; anything else gets an explicit boolean mask.
- `eager`: softmax(q·kᵀ · scale + mask) written out, with the softmax in float32 as transformers'
  `eager_attention_forward` does, because it returns the weights (`output_attentions`).

Shapes: q [batch, heads, new, head_dim]; k, v [batch, kv_heads, past + new, head_dim]; the new
queries sit at positions `past .. past + new - 1`. Query head h reads KV head h // (heads / kv_heads).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def visible(queries: int, keys: int, window: int | None, device: torch.device) -> torch.Tensor:
    """[queries, keys] bool: may the query at position keys-queries+i see the key at position j?
    Causal (j <= i), and inside the window when there is one (i - j < window), as transformers'
    `sliding_window_overlay` (`kv_idx > q_idx - sliding_window`)."""
    q_pos = torch.arange(keys - queries, keys, device=device)[:, None]
    k_pos = torch.arange(keys, device=device)[None, :]
    mask = k_pos <= q_pos
    if window is not None:
        mask &= k_pos > q_pos - window
    return mask


def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[b, kv_heads, s, d] -> [b, kv_heads * groups, s, d], each KV head repeated for its query heads."""
    if groups == 1:
        return x
    b, kv_heads, s, d = x.shape
    return x[:, :, None].expand(b, kv_heads, groups, s, d).reshape(b, kv_heads * groups, s, d)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, window: int | None) -> torch.Tensor:
    b, heads, new, d = q.shape
    kv_heads, total = k.shape[1], k.shape[2]
    groups = heads // kv_heads
    if new == 1:
        # The window's keys are the cache's last `window`: masked, not sliced, because under
        # torch.compile a slice that may or may not cut is a guard on the length, and crossing
        # it (at token `window`) would compile the step again mid-generation.
        mask = None if window is None else (torch.arange(total, device=q.device) >= total - window)[None]
        out = F.scaled_dot_product_attention(q.reshape(b, kv_heads, groups, d), k, v, attn_mask=mask, scale=scale)
        return out.reshape(b, heads, 1, d)
    if total == new and (window is None or new <= window):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=groups > 1)
    mask = visible(new, total, window, q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=groups > 1)


def eager(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, window: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(output [b, heads, new, d], weights [b, heads, new, past + new]); masked weights are exactly 0."""
    groups = q.shape[1] // k.shape[1]
    k, v = repeat_kv(k, groups), repeat_kv(v, groups)
    scores = torch.matmul(q, k.transpose(2, 3)) * scale
    scores = scores.masked_fill(~visible(q.shape[2], k.shape[2], window, q.device), float("-inf"))
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    return torch.matmul(weights, v), weights
