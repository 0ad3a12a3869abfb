"""The next-token table from a server's top 20: what `probs` shows for a remote model.

A server returns at most the 20 most likely next tokens with their log-probabilities
(OpenAI's limit, vLLM's default). Those numbers are exact; whatever needs the rest of the
distribution is recomputed over those tokens as if they were all there is, and the report
says so (`NOTE`):
- the T=1 column is the server's own probabilities (exact: the rows hold less than 100%);
- another temperature is softmax(logprob / T) renormalised over the tokens returned: close
  for T < 1 (the tail only shrinks), too generous to the top for T > 1;
- entropy is that of the renormalised set;
- the sampler replay runs the engine's stages in the engine's order (temperature, top-k,
  top-p, min-p, `llmcli.sampling`'s definitions) over the set; mass kept is within it.
A log-probability is a logit shifted by a constant, so the logit column shows the
log-probability. Pure Python: the remote path never imports torch (tests check the replay
against `inspect.sampler.sampler_replay` on the same numbers).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from llmcli.inspect.next_token import Candidate, NextTokenTable, TemperatureColumn
from llmcli.inspect.sampler import SamplerReplay, SamplerStage
from llmcli.tokens import piece_text

NOTE = (
    "from the server's top {n}: the T=1 probabilities are the server's own; other temperatures, "
    "the entropy and the sampler replay are recomputed over those {n} tokens (approximate)"
)


def softmax(values: Sequence[float], temperature: float = 1.0) -> list[float]:
    """softmax(values / T) over the finite values (-inf gets 0); T = 0 is a one-hot on the best."""
    alive = [v for v in values if v != -math.inf]
    if not alive:
        return [0.0] * len(values)
    if temperature == 0:
        best = values.index(max(alive))
        return [1.0 if i == best else 0.0 for i in range(len(values))]
    top = max(alive) / temperature
    weights = [math.exp(v / temperature - top) if v != -math.inf else 0.0 for v in values]
    total = sum(weights)
    return [w / total for w in weights]


def entropy(probs: Sequence[float]) -> float:
    return -sum(p * math.log(p) for p in probs if p > 0)


def table(ids: Sequence[int], logprobs: Sequence[float], vocabulary: Any, *, num: int, temperatures: Sequence[float], position: int) -> NextTokenTable:
    """The top `num` of the server's tokens (ids and logprobs best first), a column per temperature."""
    rows = tuple(
        Candidate(rank, token_id, piece_text(vocabulary, token_id), token_id in vocabulary.special_ids, lp, lp, math.exp(lp))
        for rank, (token_id, lp) in enumerate(zip(ids[:num], logprobs[:num]), start=1)
    )
    columns = []
    for t in temperatures:
        probs = [math.exp(lp) for lp in logprobs] if t == 1 else softmax(logprobs, t)
        shown = probs[: len(rows)]
        cumulative = [sum(shown[: i + 1]) for i in range(len(shown))]
        columns.append(TemperatureColumn(float(t), tuple(shown), tuple(cumulative), entropy(softmax(logprobs, t)), cumulative[-1] if cumulative else 0.0))
    return NextTokenTable(position, len(ids), rows, tuple(columns), entropy(softmax(logprobs)))


# ---------------------------------------------------------------- the sampler, over the set


def _top_k(values: list[float], k: int) -> list[float]:
    if not k or k >= len(values):
        return values
    kth = sorted(values, reverse=True)[k - 1]
    return [v if v >= kth else -math.inf for v in values]


def _top_p(values: list[float], p: float) -> list[float]:
    if p is None or p >= 1:
        return values
    probs = softmax(values)
    order = sorted(range(len(values)), key=lambda i: -values[i])
    out, before = list(values), 0.0
    for i in order:
        if before >= p:  # the most likely token always has 0 before it
            out[i] = -math.inf
        before += probs[i]
    return out


def _min_p(values: list[float], m: float) -> list[float]:
    if not m:
        return values
    probs = softmax(values)
    return [v if q >= m * max(probs) else -math.inf for v, q in zip(values, probs)]


def replay(ids: Sequence[int], logprobs: Sequence[float], shown_ids: Sequence[int], *, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, min_p: float | None = None) -> SamplerReplay:
    """`sampler_replay` over the server's tokens: which survive each stage, renormalised."""
    current = list(logprobs)
    previous = softmax(current)
    index = {token_id: i for i, token_id in enumerate(ids)}
    plan: list[tuple[str, float, Any]] = [("temperature", temperature, None)]
    plan += [(name, value, stage) for name, value, stage in (("top-k", top_k, _top_k), ("top-p", top_p, _top_p), ("min-p", min_p, _min_p)) if value is not None]
    stages = []
    for name, setting, stage in plan:
        if name == "temperature":
            if temperature == 0:
                best = current.index(max(current))
                current = [v if i == best else -math.inf for i, v in enumerate(current)]
            else:
                current = [v / temperature for v in current]
        else:
            current = stage(current, setting)
        alive = [v != -math.inf for v in current]
        probs = softmax(current, 1.0 if temperature != 0 else 0)
        survivors = sum(alive)
        order = sorted((i for i in range(len(current)) if alive[i]), key=lambda i: -current[i]) if survivors < len(current) else []
        stages.append(
            SamplerStage(
                name=name,
                setting=float(setting),
                survivors=survivors,
                mass_kept=sum(q for q, a in zip(previous, alive) if a),
                probs=tuple(probs[index[t]] if t in index and alive[index[t]] else None for t in shown_ids),
                survivor_ids=tuple(ids[i] for i in order),
                survivor_probs=tuple(probs[i] for i in order),
            )
        )
        previous = probs
    return SamplerReplay(tuple(stages))
