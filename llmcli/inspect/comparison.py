"""How much two models agree about the next token: what `llmcli compare --probs` reports.

Pure: next-token tables (`next_token.NextTokenTable`) and logit vectors in, a frozen
`Agreement` per pair of models out. Rendering lives in `llmcli.render.compare`.

Decisions and gotchas:
- Tokens are compared by their decoded text, never by id: two tokenizers give the same id
  to unrelated pieces (id 669 is " The" in Gemma's vocabulary and something else in
  SmolLM2's). The text is what `probs` shows (`piece_text`: a piece that is part of a
  multi-byte character is its `<0xNN>` bytes), so equal texts mean equal bytes.
- Top-1 agreement is exact: " Paris" and "Paris" differ (one starts a new word, the other
  glues on). Whether they would agree ignoring surrounding whitespace is reported
  beside it, because a base model continuing raw text and an instruct model starting a
  reply often pick the same word with different spacing.
- The top-k overlap counts distinct texts found in both top-k lists (a table can hold
  two ids with the same text); beside it, the overlap once surrounding whitespace is
  dropped (pieces that are only whitespace are left out of that count).
- KL divergence needs both distributions over the same outcomes: the same vocabulary
  (every id the same token string) and logit vectors of the same length (a model may pad
  its output layer past its tokenizer). Otherwise it is `None` with the reason. It is
  computed at T = 1 (each model's own distribution), in float64, over the whole
  vocabulary, in both directions: KL is not symmetric.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import torch

from llmcli.inspect.next_token import NextTokenTable, json_safe
from llmcli.tokens import piece_text, special_ids


@dataclass(frozen=True)
class Distribution:
    """One model's next-token prediction, as compared: its side's label, table, logits and tokenizer."""

    side: str  # "A", "B", ...
    table: NextTokenTable
    logits: Any  # the 1-D float logits the table was made from
    tokenizer: Any


@dataclass(frozen=True)
class SharedToken:
    """A text in both top-k lists, with its rank and probability on each side (T = 1)."""

    text: str
    ranks: tuple[int, int]
    probs: tuple[float, float]


@dataclass(frozen=True)
class Agreement:
    """How two sides' next-token predictions compare."""

    sides: tuple[str, str]
    top1: tuple[str, str]  # each side's most likely token, as text
    top1_agree: bool  # the same text exactly
    top1_agree_ignoring_whitespace: bool  # the same once leading/trailing whitespace is dropped
    k: int  # how many rows each table has
    shared: tuple[SharedToken, ...]  # texts in both top-k lists, in the first side's order
    shared_ignoring_whitespace: tuple[str, ...]  # stripped texts in both lists ("The" and " The" match)
    same_vocabulary: bool
    kl: float | None  # KL(first ‖ second) in nats; None when not comparable
    kl_reverse: float | None  # KL(second ‖ first) in nats
    kl_note: str | None  # why there is no KL

    @property
    def overlap(self) -> int:
        return len(self.shared)

    @property
    def overlap_ignoring_whitespace(self) -> int:
        return len(self.shared_ignoring_whitespace)

    @property
    def kl_bits(self) -> float | None:
        return None if self.kl is None else self.kl / math.log(2)

    @property
    def kl_reverse_bits(self) -> float | None:
        return None if self.kl_reverse is None else self.kl_reverse / math.log(2)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["overlap"] = self.overlap
        data["overlap_ignoring_whitespace"] = self.overlap_ignoring_whitespace
        data["kl_bits"] = self.kl_bits
        data["kl_reverse_bits"] = self.kl_reverse_bits
        return json_safe(data)


def same_vocabulary(first: Any, second: Any) -> bool:
    """True when both tokenizers map every token string to the same id (and have the same size)."""
    if first is second:
        return True
    return len(first) == len(second) and first.get_vocab() == second.get_vocab()


def kl_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor) -> float:
    """KL(P ‖ Q) in nats, P = softmax(logits_p), Q = softmax(logits_q), in float64.

    Terms where P is 0 count 0; a token P gives mass that Q rules out (-inf logit) makes it infinite.
    """
    import torch

    log_p = torch.log_softmax(logits_p.double(), dim=-1)
    log_q = torch.log_softmax(logits_q.double(), dim=-1)
    p = log_p.exp()
    terms = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
    return float(terms.sum())


def agreement(first: Distribution, second: Distribution) -> Agreement:
    """Top-1 agreement, top-k overlap and (when the vocabularies match) KL between two sides."""
    a, b = first.table, second.table
    top_a, top_b = a.rows[0].text, b.rows[0].text
    k = min(len(a.rows), len(b.rows))
    rows_b: dict[str, Any] = {}
    for row in b.rows[:k]:
        rows_b.setdefault(row.text, row)  # the better-ranked of two ids with the same text
    shared: dict[str, SharedToken] = {}
    for row in a.rows[:k]:
        other = rows_b.get(row.text)
        if other is not None and row.text not in shared:
            shared[row.text] = SharedToken(row.text, (row.rank, other.rank), (row.prob, other.prob))

    stripped_b = {row.text.strip() for row in b.rows[:k]}
    # in the first side's order; pieces that are only whitespace would all match one another
    loose = [t for t in dict.fromkeys(row.text.strip() for row in a.rows[:k]) if t and t in stripped_b]
    remote = first.logits is None or second.logits is None
    same = not remote and same_vocabulary(first.tokenizer, second.tokenizer)
    kl = kl_reverse = None
    note = None
    if remote:
        note = "a remote model's server gives its top 20 tokens, not the whole distribution"
    elif not same:
        note = f"different vocabularies ({a.vocab_size:,} and {b.vocab_size:,} tokens)"
        if a.vocab_size == b.vocab_size:
            note = f"different vocabularies (both {a.vocab_size:,} tokens, but not the same strings)"
    elif first.logits.shape[-1] != second.logits.shape[-1]:
        note = f"the same vocabulary, but output layers of different sizes ({first.logits.shape[-1]:,} and {second.logits.shape[-1]:,})"
    else:
        kl = kl_divergence(first.logits, second.logits)
        kl_reverse = kl_divergence(second.logits, first.logits)
    return Agreement(
        sides=(first.side, second.side),
        top1=(top_a, top_b),
        top1_agree=top_a == top_b,
        top1_agree_ignoring_whitespace=top_a == top_b or (top_a.strip() == top_b.strip() != ""),
        k=k,
        shared=tuple(shared.values()),
        shared_ignoring_whitespace=tuple(loose),
        same_vocabulary=same,
        kl=kl,
        kl_reverse=kl_reverse,
        kl_note=note,
    )


def pairwise(distributions: Sequence[Distribution]) -> tuple[Agreement, ...]:
    """An Agreement for every pair of sides, in order: (A, B), (A, C), (B, C), ..."""
    return tuple(
        agreement(distributions[i], distributions[j])
        for i in range(len(distributions))
        for j in range(i + 1, len(distributions))
    )


def prompt_segments(tokenizer: Any, ids: Sequence[int]) -> tuple[tuple[str, bool], ...]:
    """The prompt as the model receives it: runs of ordinary text and special tokens, `(text, special)`.

    Ordinary ids are decoded a run at a time, so characters split across tokens come out whole;
    special tokens (a BOS the tokenizer adds, the chat template's markers) are pieces of their own.
    """
    special = special_ids(tokenizer)
    segments: list[tuple[str, bool]] = []
    run: list[int] = []

    def flush() -> None:
        if run:
            text = tokenizer.decode(run, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            segments.append((text, False))
            run.clear()

    for token_id in ids:
        if token_id in special:
            flush()
            segments.append((piece_text(tokenizer, token_id), True))
        else:
            run.append(token_id)
    flush()
    return tuple(segments)
