"""A prompt's own log-probabilities: how likely the model found each token of a text,
given the tokens before it. The seam `score` and the server's `/v1/completions` echo use.

    scored = model.prompt_logprobs("The capital of France is Paris", top=5)
    scored.tokens[1].logprob, scored.tokens[1].top     # log p(token 1 | token 0), the 5 best there

A backend with logits (local) computes it in one forward pass over the prompt
(`Model.logits(ids, keep=len(ids))`) and a log-softmax in float64; a backend without them
(a remote server) answers `prompt_logprobs(prompt, top)` itself (echo + logprobs, or vLLM's
`prompt_logprobs`). The first token has no log-probability (nothing before it predicts it):
None, as OpenAI's legacy API and vLLM report it. Log-probabilities are the model's own, at
temperature 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmcli.prompting import Prompt


@dataclass(frozen=True)
class TokenLogprob:
    id: int | None  # None when a server does not say
    text: str  # the token decoded alone (a partial character decodes to U+FFFD, as OpenAI's API does)
    bytes: bytes | None  # its exact bytes (None when a server does not say)
    logprob: float | None  # None for the first token of a prompt
    top: tuple[TokenLogprob, ...] = ()  # the most likely tokens at this position, best first

    def to_dict(self) -> dict[str, Any]:
        data = {"id": self.id, "token": self.text, "logprob": self.logprob, "bytes": None if self.bytes is None else list(self.bytes)}
        return data | {"top_logprobs": [t.to_dict() for t in self.top]}


@dataclass(frozen=True)
class PromptLogprobs:
    model: str
    text: str  # the prompt as given
    tokens: tuple[TokenLogprob, ...]

    @property
    def total(self) -> float:
        """The sum of the known log-probabilities: log p(prompt | its first token)."""
        return sum(t.logprob for t in self.tokens if t.logprob is not None)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "text": self.text, "total_logprob": self.total, "tokens": [t.to_dict() for t in self.tokens]}


def prompt_logprobs(backend: Any, prompt: Prompt, top: int = 0) -> PromptLogprobs:
    """Each token of the prompt with its log-probability given the ones before it (and the
    `top` most likely tokens at its position)."""
    if "logits" not in backend.capabilities:
        return backend.prompt_logprobs(prompt, top)
    from llmcli.inspect.next_token import check_prompt

    ids = list(prompt.ids)
    check_prompt(ids, backend.context_length)
    return PromptLogprobs(backend.label, prompt.text, scored_tokens(backend.tokenizer, ids, backend.logits(ids, keep=len(ids)), top))


def scored_tokens(tokenizer: Any, ids: list[int], logits: Any, top: int = 0) -> tuple[TokenLogprob, ...]:
    """`logits[i]` predicts `ids[i + 1]`: the log-softmax at i scores the next token."""
    import torch

    logprobs = torch.log_softmax(logits.double(), dim=-1)
    best = torch.topk(logprobs, min(top, logprobs.shape[-1])) if top else None

    def token(token_id: int, logprob: float | None, alternatives: tuple[TokenLogprob, ...] = ()) -> TokenLogprob:
        return TokenLogprob(token_id, _decoded(tokenizer, token_id), _bytes(tokenizer, token_id), logprob, alternatives)

    out = [token(ids[0], None)]
    for i in range(1, len(ids)):
        alternatives = ()
        if best is not None:
            alternatives = tuple(token(int(j), float(v)) for j, v in zip(best.indices[i - 1].tolist(), best.values[i - 1].tolist()))
        out.append(token(ids[i], float(logprobs[i - 1, ids[i]]), alternatives))
    return tuple(out)


def _decoded(tokenizer: Any, token_id: int) -> str:
    return tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _bytes(tokenizer: Any, token_id: int) -> bytes:
    from llmcli.tokens import token_bytes

    return token_bytes(tokenizer, token_id)
