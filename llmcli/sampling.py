"""Sampling: the settings, and the small pieces a sampler is built from.

In the spirit of mlx-lm's `sample_utils`: logits transforms (`apply_temperature`,
`top_k_filter`, `top_p_filter`, `min_p_filter`) that return new logits with the cut tokens
at -inf, composed by `make_sampler` in the order the engine applies them; and logits
processors (`make_logits_processors`: the repetition penalty) that also see the ids so
far. `probs` replays the same pieces stage by stage to show which tokens survive each cut.

torch is imported inside the functions: `SamplingSettings` is imported by the CLI layer
at start-up, and `llmcli --help` must not import torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable

from llmcli.errors import BadInput

if TYPE_CHECKING:
    from torch import Generator as TorchGenerator
    from torch import Tensor

MAX_SEED = 2**64 - 1  # the largest seed torch.Generator.manual_seed takes


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 0.7  # 0 = greedy
    top_k: int | None = None  # None (or 0) = off
    top_p: float | None = None  # None (or 1) = off
    min_p: float | None = None  # None (or 0) = off
    repetition_penalty: float = 1.0  # 1 = off
    seed: int | None = None
    max_new_tokens: int = 512
    stop: tuple[str, ...] = ()

    def validate(self) -> SamplingSettings:
        """Raise LlmcliError naming the first value out of range; return self."""
        checks = [
            ("temperature", _is_finite(self.temperature) and self.temperature >= 0, "≥ 0 (0 = greedy)"),
            ("top_k", self.top_k is None or self.top_k >= 0, "≥ 0 (0 = off)"),
            ("top_p", self.top_p is None or (_is_finite(self.top_p) and 0 < self.top_p <= 1), "in (0, 1]"),
            ("min_p", self.min_p is None or (_is_finite(self.min_p) and 0 <= self.min_p <= 1), "in [0, 1]"),
            ("repetition_penalty", _is_finite(self.repetition_penalty) and self.repetition_penalty > 0, "> 0 (1 = off)"),
            ("max_new_tokens", self.max_new_tokens >= 1, "≥ 1"),
            ("seed", self.seed is None or 0 <= self.seed <= MAX_SEED, f"between 0 and {MAX_SEED:,} (2**64 - 1)"),
            ("stop", all(self.stop), "non-empty strings"),
        ]
        for name, ok, valid in checks:
            if not ok:
                raise BadInput(
                    f"{name} must be {valid}; got {getattr(self, name)!r}",
                    "valid: temperature ≥ 0, top_k ≥ 0, 0 < top_p ≤ 1, 0 ≤ min_p ≤ 1, "
                    "repetition_penalty > 0, max_new_tokens ≥ 1, 0 ≤ seed < 2**64",
                )
        return self

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


def _is_finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


# ---------------------------------------------------------------- the pieces


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """Divide by T: below 1 sharpens the distribution, above 1 flattens it. T must be > 0."""
    return logits / temperature


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the k highest logits (and any tied with the k-th)."""
    if not k or k >= logits.shape[-1]:
        return logits
    import torch

    kth = torch.topk(logits, k).values[..., -1:]
    return logits.masked_fill(logits < kth, -math.inf)


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Keep the smallest set of most likely tokens whose probabilities add up to at least p."""
    if p is None or p >= 1:
        return logits
    import torch

    # The nucleus is usually a few dozen tokens: look for it among the best 64, then 8 times as
    # many, and so on; sorting the whole vocabulary took 3 ms a token on SmolLM2's 49k and 19 ms on
    # Gemma's 262k. The tokens kept are those a full sort keeps.
    n = logits.shape[-1]
    total = torch.logsumexp(logits, dim=-1, keepdim=True)
    k = min(64, n)
    while True:
        best, order = torch.topk(logits, k)  # in descending order
        probs = torch.exp(best - total)
        mass = torch.cumsum(probs, dim=-1)
        if k == n or bool((mass[..., -1] >= p).all()):  # every token past these has p or more before it
            break
        k = min(8 * k, n)
    drop = mass - probs >= p  # the mass before each; the most likely token always has 0 before it
    drop[..., 0] = False  # ...and always stays, even for a p so small it rounds to 0 in float32
    cut = torch.ones_like(logits, dtype=torch.bool).scatter(-1, order, drop)
    return logits.masked_fill(cut, -math.inf)


def min_p_filter(logits: Tensor, m: float) -> Tensor:
    """Keep tokens at least m times as likely as the most likely one."""
    if not m:
        return logits
    import torch

    probs = torch.softmax(logits, dim=-1)
    return logits.masked_fill(probs < m * probs.max(dim=-1, keepdim=True).values, -math.inf)


def make_sampler(settings: SamplingSettings, generator: TorchGenerator | None = None) -> Callable[[Tensor], int]:
    """logits -> the next token id: argmax at temperature 0, else a draw from the filtered softmax."""
    import torch

    if settings.temperature == 0:
        return lambda logits: int(torch.argmax(logits))

    def sample(logits: Tensor) -> int:
        scaled = apply_temperature(logits, settings.temperature)  # sharpen or flatten
        if not bool(torch.isfinite(scaled.max())):  # T so small that logits / T overflow: its limit, greedy
            return int(torch.argmax(logits))
        logits = scaled
        logits = top_k_filter(logits, settings.top_k or 0)  # only the k best
        logits = top_p_filter(logits, settings.top_p if settings.top_p is not None else 1.0)  # only the nucleus
        logits = min_p_filter(logits, settings.min_p or 0.0)  # only those close to the best
        return draw(torch.softmax(logits, dim=-1), generator)  # renormalise what survived, draw one

    return sample


def draw(probs: Tensor, generator: TorchGenerator | None = None) -> int:
    """One token id with probability probs[id] (1-D, summing to ~1): the first whose cumulative
    probability passes a uniform draw. torch.multinomial does the same job in 5.7 ms on a 262k
    vocabulary (an exponential variate per token); this takes a cumulative sum, well under 1 ms.
    A token of probability 0 is never drawn (its step of the sum is empty)."""
    import torch

    cdf = torch.cumsum(probs, dim=-1)
    u = torch.rand((), generator=generator, dtype=cdf.dtype) * cdf[-1]
    i = int(torch.searchsorted(cdf, u[None], right=True))
    if i >= probs.shape[-1]:  # u rounded up onto the total: the last token that can be drawn
        i = int(torch.nonzero(probs).max())
    return i


def make_logits_processors(settings: SamplingSettings) -> list[Callable[[list[int], Tensor], Tensor]]:
    """Processors that look at the ids so far (prompt and reply): the repetition penalty."""
    processors = []
    if settings.repetition_penalty != 1.0:
        processors.append(repetition_penalty(settings.repetition_penalty))
    return processors


def repetition_penalty(penalty: float) -> Callable[[list[int], Tensor], Tensor]:
    """CTRL's penalty, as transformers applies it: a seen token's logit is divided by the
    penalty if positive and multiplied by it if negative (both make it less likely)."""
    import torch

    def process(token_ids: list[int], logits: Tensor) -> Tensor:
        seen = torch.tensor(sorted(set(token_ids)), dtype=torch.long, device=logits.device)
        scores = logits[seen]
        logits = logits.clone()
        # A penalty below the dtype's smallest normal number would round to 0, and 0 / 0 is NaN.
        p = max(penalty, torch.finfo(logits.dtype).tiny)
        logits[seen] = torch.where(scores < 0, scores * p, scores / p)
        return logits

    return process


