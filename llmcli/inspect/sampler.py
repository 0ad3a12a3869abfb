"""The sampler replayed stage by stage: what temperature, top-k, top-p and min-p keep.

Pure: a logits vector in, a `SamplerReplay` out. It calls the engine's own stages
(`llmcli.sampling`: `apply_temperature`, `top_k_filter`, `top_p_filter`, `min_p_filter`,
in the order the sampler applies them), so what it shows is what `generate` does, not a
second implementation that could drift. It feeds them float64 logits, so a top-p cut is
the exact set the definition gives; the sampler itself works in float32 and can differ on
a boundary token worth ~1e-6.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import torch

from llmcli import sampling
from llmcli.inspect.distribution import probabilities, ranked


@dataclass(frozen=True)
class SamplerStage:
    """The distribution after one sampler stage, renormalised over the tokens still possible."""

    name: str  # "temperature" | "top-k" | "top-p" | "min-p"
    setting: float
    survivors: int  # tokens still possible after this stage
    mass_kept: float  # probability the survivors had before this stage cut the rest
    probs: tuple[float | None, ...]  # each shown row's renormalised probability; None when cut
    # Every survivor, most likely first, with its renormalised probability. Left empty when
    # no token has been cut yet (it would be the whole vocabulary).
    survivor_ids: tuple[int, ...] = ()
    survivor_probs: tuple[float, ...] = ()


@dataclass(frozen=True)
class SamplerReplay:
    stages: tuple[SamplerStage, ...]

    @property
    def final(self) -> SamplerStage:
        return self.stages[-1]


def sampler_replay(
    logits: torch.Tensor,
    shown_ids: Sequence[int],
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
) -> SamplerReplay:
    """Run the engine's sampler stages one at a time and record what survives each.

    Stages that are not set are skipped, except temperature, which always comes first (it is
    what the later cuts see). T = 0 is greedy: only the argmax survives.
    """
    import torch

    current = logits.double()  # float32 cumulative sums over a 262k vocabulary blur the top-p boundary
    previous = probabilities(current, 1.0)
    vocab = current.shape[-1]
    stages = []
    plan: list[tuple[str, float, Any]] = [("temperature", temperature, None)]
    if top_k is not None:
        plan.append(("top-k", top_k, sampling.top_k_filter))
    if top_p is not None:
        plan.append(("top-p", top_p, sampling.top_p_filter))
    if min_p is not None:
        plan.append(("min-p", min_p, sampling.min_p_filter))
    for name, setting, stage in plan:
        if name == "temperature":
            if temperature == 0:
                greedy = torch.full_like(current, -math.inf)
                greedy[int(torch.argmax(current))] = current[int(torch.argmax(current))]
                current = greedy
            else:
                current = sampling.apply_temperature(current, temperature)
        else:
            current = stage(current, setting)
        alive = torch.isfinite(current)
        probs = probabilities(current, 1.0) if temperature != 0 else probabilities(current, 0)
        mass_kept = float(previous[alive].sum())
        survivors = int(alive.sum())
        order = ranked(current)[:survivors] if survivors < vocab else torch.tensor([], dtype=torch.long)
        stages.append(
            SamplerStage(
                name=name,
                setting=float(setting),
                survivors=survivors,
                mass_kept=mass_kept,
                probs=tuple(float(probs[i]) if bool(alive[i]) else None for i in shown_ids),
                survivor_ids=tuple(order.tolist()),
                survivor_probs=tuple(probs[order].tolist()),
            )
        )
        previous = probs
    return SamplerReplay(tuple(stages))


