"""Distributions over the vocabulary: softmax at a temperature, entropy, ranks. Pure torch
(imported inside the functions, so the remote path, which has no logits, never loads it).

Probabilities are computed in float64 from the model's float32 logits, so the numbers
shown are softmax(logits / T) to well under 1e-6, whatever dtype the weights had. (A
float32 softmax over SmolLM2's 49,152 logits is off by up to 7e-6.) T = 0 is greedy
decoding: a one-hot on the argmax, not a division by zero.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) in float64; T = 0 is greedy: all the mass on the argmax."""
    import torch

    logits = logits.double()
    if temperature == 0:
        probs = torch.zeros_like(logits)
        probs[int(torch.argmax(logits))] = 1.0
        return probs
    return torch.softmax(logits / temperature, dim=-1)


def entropy(probs: torch.Tensor) -> float:
    """Shannon entropy in nats (0 log 0 = 0)."""
    import torch

    return float(torch.special.entr(probs).sum())


def ranked(logits: torch.Tensor) -> torch.Tensor:
    """Token ids by descending logit; ties keep the lower id first (as argmax does)."""
    import torch

    return torch.sort(logits, descending=True, stable=True).indices


def rank_of(logits: torch.Tensor, token_id: int) -> int:
    """1 + the number of tokens with a strictly higher logit."""
    return 1 + int((logits > logits[token_id]).sum())
