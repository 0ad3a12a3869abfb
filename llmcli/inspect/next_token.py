"""What `llmcli probs` computes: the model's next-token distribution, and what sampling does to it.

Everything here is pure: logits (or a model and token ids) in, frozen dataclasses out. Rendering
lives in `llmcli.render.probs`; `ProbsReport.to_dict()` is the `--json` document.

Decisions and gotchas:
- Probabilities are computed in float64 from the model's float32 logits, so the numbers shown
  are softmax(logits / T) to well under 1e-6, whatever dtype the weights had. (A float32
  softmax over SmolLM2's 49,152 logits is off by up to 7e-6.) T = 0 is greedy decoding: a
  one-hot on the argmax (not a division by zero).
- Rows are ranked by logit. Temperature never reorders tokens (for T > 0), and every sampler cut
  (top-k, top-p, min-p) removes a tail in that order, so one ranking serves every column.
- The sampler replay calls the generation engine's own stages (`apply_temperature`,
  `top_k_filter`, `top_p_filter`, `min_p_filter`, in the order the sampler applies them), so
  what it shows is what `generate` does, not a second implementation that could drift. It
  feeds them float64 logits, so a top-p cut is the exact set the definition gives; the
  sampler itself works in float32 and can differ on a boundary token worth ~1e-6.
- `--steps` runs the engine's `generate` itself, so its picks are exactly `llmcli generate`'s.
- A token's text is `llmcli.tokens.piece_text`: its bytes as text, a piece that is part of a
  multi-byte character (byte-level BPE, or SentencePiece `<0xNN>` byte fallback) written as
  `<0xE2><0x80>`, as `tokenize` writes it, never as a silent U+FFFD.
- A `--target` is tokenized on its own (no BOS, special-token text kept literal) and appended to
  the prompt; a leading space usually belongs to the target (" Paris"), as in the table.
- Only the logits needed are computed (`logits_to_keep`): the full [tokens x vocabulary]
  matrix of a long prompt would take hundreds of megabytes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import torch

from llmcli.errors import BadInput
from llmcli.inspect.distribution import entropy, probabilities, rank_of, ranked
from llmcli.inspect.sampler import SamplerReplay
from llmcli.tokens import piece_text, special_ids

# ---------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Candidate:
    """One possible next token, with the model's own (T = 1) numbers."""

    rank: int  # 1 = the most likely
    id: int
    text: str
    special: bool
    logit: float
    logprob: float  # natural log of prob
    prob: float


@dataclass(frozen=True)
class TemperatureColumn:
    """The shown rows' probabilities at one temperature: softmax(logits / T)."""

    temperature: float
    probs: tuple[float, ...]  # one per row, in row order
    cumulative: tuple[float, ...]
    entropy: float  # of the whole distribution, in nats
    coverage: float  # probability the shown rows hold together

    @property
    def entropy_bits(self) -> float:
        return self.entropy / math.log(2)


@dataclass(frozen=True)
class NextTokenTable:
    """The top `len(rows)` next tokens after the prompt's token at `position`."""

    position: int  # index of the last token the model saw (0-based)
    vocab_size: int
    rows: tuple[Candidate, ...]
    columns: tuple[TemperatureColumn, ...]  # one per temperature asked; T = 1 by default
    entropy: float  # at T = 1, nats
    actual_next: Candidate | None = None  # at an earlier position: the token that came next

    @property
    def entropy_bits(self) -> float:
        return self.entropy / math.log(2)


@dataclass(frozen=True)
class TargetToken:
    id: int
    text: str
    special: bool
    rank: int  # among the whole vocabulary at that position
    logit: float
    logprob: float
    prob: float


@dataclass(frozen=True)
class TargetScore:
    """How likely the model found a chosen continuation, token by token (T = 1)."""

    text: str
    tokens: tuple[TargetToken, ...]
    logprob: float  # sum over the tokens
    prob: float  # product over the tokens

    @property
    def first_rank(self) -> int:
        return self.tokens[0].rank


@dataclass(frozen=True)
class Alternative:
    rank: int
    id: int
    text: str
    special: bool
    logprob: float
    prob: float


@dataclass(frozen=True)
class Step:
    """One turn of the generation loop: the candidates, the pick, the text so far."""

    index: int  # 1-based
    id: int
    text: str  # the picked token's piece
    special: bool
    logprob: float  # the model's (T = 1) log-probability of the pick
    prob: float
    rank: int | None  # the pick's rank among `candidates`; None when it was not among them
    candidates: tuple[Alternative, ...]
    output: str  # all the text generated up to and including this step


@dataclass(frozen=True)
class Unrolled:
    steps: tuple[Step, ...]
    text: str
    finish_reason: str
    temperature: float
    top_k: int | None
    top_p: float | None
    min_p: float | None
    seed: int | None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class PromptToken:
    id: int
    text: str
    special: bool


@dataclass(frozen=True)
class ProbsReport:
    """Everything one `llmcli probs` run shows; `to_dict()` is its `--json`."""

    model: str
    mode: str  # how the prompt was built: "raw" | "chat" | "template"
    prompt: str
    prompt_tokens: tuple[PromptToken, ...]
    table: NextTokenTable
    sampler: SamplerReplay | None = None  # llmcli.inspect.sampler
    targets: tuple[TargetScore, ...] = ()
    steps: Unrolled | None = None
    timings: dict[str, float] = field(default_factory=dict)
    next_is: str = "prompt"  # where the token after `position` came from: "prompt", or "reply" (chat's /probs)
    # The logits the table was made from (not in --json): compare's KL divergence needs them.
    logits: Any = field(default=None, repr=False, compare=False)
    # Set when the table comes from a server's top 20 instead of logits: what is approximate.
    approximate: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = json_safe(asdict(replace(self, logits=None)))
        del data["logits"]
        data["table"]["entropy_bits"] = self.table.entropy_bits
        for column, source in zip(data["table"]["columns"], self.table.columns):
            column["entropy_bits"] = source.entropy_bits
        if self.steps is not None:
            data["steps"]["greedy"] = self.steps.greedy
        return data


def json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity: such floats become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


# ---------------------------------------------------------------------------- token text


def prompt_tokens(tokenizer: Any, ids: Sequence[int]) -> tuple[PromptToken, ...]:
    special = special_ids(tokenizer)
    return tuple(PromptToken(i, piece_text(tokenizer, i), i in special) for i in ids)


# ---------------------------------------------------------------------------- the forward pass


def check_prompt(ids: Sequence[int], context_length: int | None, *, extra: int = 0) -> None:
    """Refuse a prompt with no tokens, or one (plus `extra` tokens) longer than the model's window."""
    if not ids:
        raise BadInput(
            "the prompt is empty, and this model's tokenizer adds no BOS token: there is nothing to predict from",
            "give some text (even a single space is a token)",
        )
    if context_length and len(ids) + extra > context_length:
        what = f"{len(ids)} tokens" + (f" (+{extra} to score)" if extra else "")
        raise BadInput(
            f"the prompt is {what}, longer than the model's context window of {context_length}",
            "shorten the prompt",
        )


# ---------------------------------------------------------------------------- distributions


def next_token_table(
    logits: torch.Tensor,
    tokenizer: Any,
    *,
    num: int = 10,
    temperatures: Sequence[float] = (1.0,),
    position: int = -1,
    actual_next: int | None = None,
) -> NextTokenTable:
    """The top `num` tokens of a 1-D logits vector, with a probability column per temperature."""
    import torch

    if num < 1:
        raise BadInput(f"a table needs at least 1 row (got {num})", "it is the number of most likely tokens shown")
    if not temperatures:
        raise BadInput("no temperature given", "e.g. temperatures=(1.0,)")
    logits = logits.double()
    vocab = logits.shape[-1]
    num = min(num, vocab)
    logprobs = torch.log_softmax(logits, dim=-1)
    top_ids = ranked(logits)[:num]
    special = special_ids(tokenizer)

    def candidate(token_id: int, rank: int) -> Candidate:
        return Candidate(
            rank=rank,
            id=token_id,
            text=piece_text(tokenizer, token_id),
            special=token_id in special,
            logit=float(logits[token_id]),
            logprob=float(logprobs[token_id]),
            prob=math.exp(float(logprobs[token_id])),
        )

    rows = tuple(candidate(int(i), rank) for rank, i in enumerate(top_ids.tolist(), start=1))
    columns = []
    for t in temperatures:
        probs = probabilities(logits, t)
        shown = probs[top_ids]
        cumulative = torch.cumsum(shown, dim=0)
        columns.append(
            TemperatureColumn(
                temperature=float(t),
                probs=tuple(shown.tolist()),
                cumulative=tuple(cumulative.tolist()),
                entropy=entropy(probs),
                coverage=float(cumulative[-1]),
            )
        )
    actual = None
    if actual_next is not None:
        actual = candidate(actual_next, rank_of(logits, actual_next))
    return NextTokenTable(
        position=position,
        vocab_size=vocab,
        rows=rows,
        columns=tuple(columns),
        entropy=entropy(torch.exp(logprobs)),
        actual_next=actual,
    )


# ---------------------------------------------------------------------------- targets


def encode_target(tokenizer: Any, text: str) -> list[int]:
    """The ids of a continuation on its own: no BOS, special-token text kept as text."""
    if text == "":
        raise BadInput("the target is empty", 'give the continuation to score, e.g. " Paris"')
    try:
        ids = tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
    except TypeError:  # a tokenizer without split_special_tokens
        ids = tokenizer.encode(text, add_special_tokens=False)
    if not ids:
        raise BadInput(f"the target {text!r} encodes to no tokens", "give some visible text")
    return list(ids)


# ---------------------------------------------------------------------------- positions


def resolve_position(position: int, length: int) -> int:
    """A Python-style index into the prompt (-1 = the last token) -> 0..length-1."""
    if not -length <= position < length:
        where = "the only position is 0" if length == 1 else f"positions run from 0 to {length - 1}"
        raise BadInput(
            f"position {position} is outside the prompt, which has {length} token{'s' if length != 1 else ''}",
            f"{where} (-1 is the last token; `llmcli tokenize` shows them)",
        )
    return position % length


def target_score(logits: torch.Tensor, tokenizer: Any, text: str, target: Sequence[int]) -> TargetScore:
    """Rank, logit and probability of each token of a continuation: `logits[i]` is the
    prediction made just before `target[i]`."""
    import torch

    logits = logits.double()
    logprobs = torch.log_softmax(logits, dim=-1)
    special = special_ids(tokenizer)
    tokens = tuple(
        TargetToken(
            id=token_id,
            text=piece_text(tokenizer, token_id),
            special=token_id in special,
            rank=rank_of(logits[i], token_id),
            logit=float(logits[i, token_id]),
            logprob=float(logprobs[i, token_id]),
            prob=math.exp(float(logprobs[i, token_id])),
        )
        for i, token_id in enumerate(target)
    )
    total = sum(t.logprob for t in tokens)
    return TargetScore(text=text, tokens=tokens, logprob=total, prob=math.exp(total))


# ---------------------------------------------------------------------------- the loop, unrolled


def step(index: int, event: Any, tokenizer: Any, output: str) -> Step:
    """One turn of the decode loop as a Step: the engine's TokenEvent (with its top
    alternatives) and the text generated so far."""
    special = special_ids(tokenizer)
    alternatives = tuple(
        Alternative(rank, int(i), piece_text(tokenizer, int(i)), int(i) in special, float(lp), math.exp(float(lp)))
        for rank, (i, _piece, lp) in enumerate(event.top, start=1)
    )
    return Step(
        index=index,
        id=event.id,
        text=piece_text(tokenizer, event.id),
        special=event.id in special,
        logprob=float(event.logprob),
        prob=math.exp(float(event.logprob)),
        rank=next((a.rank for a in alternatives if a.id == event.id), None),
        candidates=alternatives,
        output=output,
    )


