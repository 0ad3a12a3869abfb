"""Rotary position embeddings: inverse frequencies as transformers computes them, and cos/sin
tables computed once and sliced per forward pass.

HF's rotation is `x * cos + rotate_half(x) * sin` with `rotate_half(x) = cat(-x2, x1)` (x1, x2 the
two halves of a head). The table keeps sin with its first half negated instead, so the rotation is
`x * cos + roll(x, half) * signed_sin`: the same products (negating is exact, so the values are
bit-identical) in 4 ops instead of 7, and a decode step runs it once per layer for the queries and
keys together.

transformers recomputes `cos(position * inv_freq)` for every forward pass (and Gemma 3 twice, once
per layer type). A table row depends only on the position, so we compute each row once, with the
same float32 operations (`position.float() * inv_freq`, duplicated halves, `cos`/`sin`, then cast
to the model's dtype), which gives bit-identical values. Tables grow by doubling when a position
past their end is asked for, rather than being built for `max_position_embeddings` up front
(Gemma 3: 32k positions x 256 dims x 2 tables would be 64 MB of mostly unused rows).
"""

from __future__ import annotations

import math

import torch

from llmcli.engine.config import Rope


def inverse_frequencies(rope: Rope, head_dim: int) -> torch.Tensor:
    """`inv_freq` [head_dim / 2] in float32, as `modeling_rope_utils` (and Llama's default) compute it."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64).to(torch.float) / head_dim
    inv_freq = 1.0 / (rope.theta**exponents)
    if rope.kind == "linear":
        return inv_freq / rope.factor
    if rope.kind == "llama3":
        return _llama3(inv_freq, rope)
    return inv_freq


def _llama3(inv_freq: torch.Tensor, rope: Rope) -> torch.Tensor:
    """Llama 3.1's scaling: long wavelengths divided by `factor`, short ones kept, a smooth ramp between."""
    old_len = rope.original_max_positions
    low_freq_wavelen = old_len / rope.low_freq_factor
    high_freq_wavelen = old_len / rope.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / rope.factor, inv_freq)
    smooth = (old_len / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor)
    smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, scaled)


class RopeTable:
    """cos and signed sin [positions, head_dim] for one rope, in the model's dtype (see the module's docstring)."""

    def __init__(self, rope: Rope, head_dim: int, dtype: torch.dtype, device: torch.device | str = "cpu"):
        self.inv_freq = inverse_frequencies(rope, head_dim).to(device)
        self.dtype = dtype
        self.cos = self.sin = torch.empty(0, head_dim, dtype=dtype, device=device)

    def covering(self, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole tables, grown to hold positions 0 .. end - 1; the caller slices its rows (inside
        a compiled step, where a slice made outside would be a view whose offset is guarded)."""
        if end > self.cos.shape[0]:
            self._grow(max(end, 2 * self.cos.shape[0], 256))
        return self.cos, self.sin

    def _grow(self, positions: int) -> None:
        freqs = torch.arange(positions, device=self.inv_freq.device).float()[:, None] * self.inv_freq[None, :]
        angles = torch.cat((freqs, freqs), dim=-1)
        sin = angles.sin().to(self.dtype)
        half = sin.shape[-1] // 2
        self.cos, self.sin = angles.cos().to(self.dtype), torch.cat((-sin[:, :half], sin[:, half:]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """x [batch, heads, tokens, head_dim] rotated by the tables' rows [tokens, head_dim]. HF layout:
    dimension i pairs with i + head_dim/2 (not with its neighbour, as in llama.cpp)."""
    return x * cos + x.roll(x.shape[-1] // 2, -1) * signed_sin
