"""What `llmcli score` computes: how surprised a model is by each token of a text.

This is the training loss, token by token: the model reads the text once and, at every
position, gives the true next token a probability; −log p is its cross-entropy. Pure: a model,
its tokenizer and token ids in, frozen dataclasses out; `ScoreReport.to_dict()` is `--json`.

Decisions and gotchas:
- Natural logs throughout (`logprob`, `mean_nll`); `surprisal_bits` = −log₂ p. Log-probs are
  taken in float64 from the model's float32 logits, the way `next_token` does.
- Which tokens are scored: every token that has something before it. When the ids start with
  the tokenizer's BOS (Gemma), the first text token is scored from BOS; without one (SmolLM2)
  the first token has no prediction and is not scored (`first == "unscored"`). The mean NLL is
  then exactly transformers' `model(ids, labels=ids).loss`, which also predicts ids[1:].
- A chat reply (`score_reply`) is scored after the chat template's prompt: only the reply's
  tokens count, each predicted from the whole conversation before it.
- Longer than the context window: a sliding window (transformers' perplexity guide,
  llama-perplexity). Every token is scored exactly once; a window after the first keeps the
  `stride` tokens before its first scored token as context, so each token is scored with at
  least `stride` tokens of the text before it (all of them near the start). Windows advance by
  `window - stride` tokens. (The transformers guide calls that advance its stride; with the
  default, half the window, the two are the same.) When the text starts with BOS, later windows
  start with BOS too, as llama-perplexity does: models trained with it lean on the first
  position (the attention sink), and a window without it reads as garbage.
- Bits per byte = total bits / the UTF-8 bytes of the scored tokens (byte-level pieces, byte
  fallback and all): comparable across tokenizers, where per-token figures are not.
- Ranks are among the whole vocabulary: 1 + the number of tokens with a strictly higher logit.
  GLTR's buckets are ranks 1-10, 11-100, 101-1000 and beyond.
- The head is applied a chunk of positions at a time (`model_parts.chunk_positions`): a long
  window's full logits over Gemma's 262k vocabulary would not fit in memory.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import torch

from llmcli.errors import BadInput
from llmcli.inspect import model_parts as parts
from llmcli.inspect.next_token import PromptToken, json_safe, prompt_tokens
from llmcli.tokens import piece_text, special_ids

BUCKETS = ("top-10", "top-100", "top-1000", "beyond")
_BUCKET_LIMITS = (10, 100, 1000)
Progress = Callable[[int, int], None]  # (tokens scored so far, tokens to score)


def bucket_names(ranked: int | None = None) -> tuple[str, ...]:
    """GLTR's buckets; with ranks known only up to `ranked` (a server's top N), the buckets
    that can be told apart: top-10, top-N and beyond top-N."""
    if ranked is None:
        return BUCKETS
    return tuple(f"top-{limit}" for limit in _limits(ranked)) + (f"beyond top-{ranked}",)


def _limits(ranked: int | None) -> tuple[int, ...]:
    return _BUCKET_LIMITS if ranked is None else (*(limit for limit in _BUCKET_LIMITS if limit < ranked), ranked)[-2:]


def bucket_of(rank: int, ranked: int | None = None) -> str:
    """GLTR's bucket for a 1-based rank."""
    names = bucket_names(ranked)
    for limit, name in zip(_limits(ranked), names):
        if rank <= limit:
            return name
    return names[-1]


@dataclass(frozen=True)
class Expected:
    """One of the tokens the model thought most likely at a position."""

    id: int
    text: str
    special: bool
    prob: float


@dataclass(frozen=True)
class ScoredToken:
    position: int  # index into the scored ids
    id: int
    text: str
    special: bool
    logprob: float  # natural log of the model's probability for this token
    rank: int  # among the whole vocabulary, 1 = the model's top choice
    context: int  # tokens the model saw before this one (its window, BOS included)
    bytes: int  # UTF-8 bytes this token stands for
    expected: tuple[Expected, ...]  # the model's top choices here, most likely first
    ranked: int | None = None  # ranks known only up to here (a server's top N; rank N + 1 = beyond); None: exact

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)

    @property
    def surprisal_bits(self) -> float:
        return -self.logprob / math.log(2)

    @property
    def bucket(self) -> str:
        return bucket_of(self.rank, self.ranked)

    @property
    def rank_text(self) -> str:
        return f">{self.ranked}" if self.ranked is not None and self.rank > self.ranked else f"{self.rank:,}"


@dataclass(frozen=True)
class ScoreTotals:
    tokens: int
    mean_nll: float  # nats per token
    bytes: int
    buckets: tuple[tuple[str, int], ...]  # (bucket, tokens in it), in BUCKETS order

    @property
    def bits_per_token(self) -> float:
        return self.mean_nll / math.log(2)

    @property
    def perplexity(self) -> float:
        return math.exp(self.mean_nll)

    @property
    def bits_per_byte(self) -> float:
        """Total surprisal in bits over the UTF-8 bytes of the scored tokens."""
        return self.bits_per_token * self.tokens / self.bytes if self.bytes else math.nan


@dataclass(frozen=True)
class Scores:
    tokens: tuple[ScoredToken, ...]
    totals: ScoreTotals
    window: int  # the most tokens one forward pass saw
    stride: int  # with several windows: the least context a token past the first one had
    windows: int  # forward passes made
    vocab_size: int  # 0: not known (a remote model)

    @property
    def windowed(self) -> bool:
        return self.windows > 1


@dataclass(frozen=True)
class ScoreReport:
    """Everything one `llmcli score` run shows for one model; `to_dict()` is its `--json`."""

    model: str
    mode: str  # "raw" | "chat" | "template"
    text: str
    first: str  # "bos": the first token scored from BOS | "unscored": no BOS, so not scored | "reply"
    leading: tuple[PromptToken, ...]  # tokens of the text shown but not scored
    scores: Scores

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for token, source in zip(data["scores"]["tokens"], self.scores.tokens):
            token.update(prob=source.prob, surprisal_bits=source.surprisal_bits, bucket=source.bucket)
            if source.ranked is None:
                del token["ranked"]
        totals = self.scores.totals
        data["scores"]["totals"].update(
            buckets=dict(totals.buckets),
            bits_per_token=totals.bits_per_token,
            perplexity=totals.perplexity,
            bits_per_byte=totals.bits_per_byte,
        )
        return json_safe(data)


# ---------------------------------------------------------------------------- windows


def plan_windows(length: int, start: int, window: int, stride: int, bos: bool) -> list[tuple[int, int, int]]:
    """`(begin, end, first)` per forward pass: it reads ids[begin:end] (after a BOS when `bos`
    and begin > 0) and scores positions first..end-1. Every position from `start` on is scored once."""
    if length <= window:
        return [(0, length, start)] if start < length else []
    room = window - 1 if bos else window  # what a window after the first holds besides its BOS
    plan = []
    first = start
    while first < length:
        begin = max(0, first - stride)
        if not plan:  # the first window reaches back as far as it can
            begin = max(0, min(begin, length - room))
        end = min(length, begin + (window if begin == 0 else room))
        plan.append((begin, end, first))
        first = end
    return plan


def check_stride(window: int, stride: int, bos: bool) -> None:
    most = window - (2 if bos else 1)
    if not 1 <= stride <= most:
        raise BadInput(
            f"stride {stride} does not fit a window of {window} tokens",
            f"the stride is the context each window keeps: 1 to {most} (default {window // 2})",
        )


# ---------------------------------------------------------------------------- scoring


def score_ids(
    model: Any,
    tokenizer: Any,
    ids: Sequence[int],
    *,
    start: int = 1,
    window: int | None = None,
    stride: int | None = None,
    top: int = 3,
    progress: Progress | None = None,
) -> Scores:
    """Score ids[start:], each token from the ones before it, in windows of at most `window` tokens."""
    ids = list(ids)
    if not 1 <= start < len(ids):
        raise BadInput("there are no tokens to score", "give a text of at least two tokens")
    context = getattr(parts.text_config(model), "max_position_embeddings", None)
    if window and context and window > context:
        raise BadInput(
            f"window {window:,} is more than the model's context window of {context:,} tokens",
            f"one forward pass reads at most {context:,} tokens; longer texts are scored in windows",
        )
    window = window or context or len(ids)
    bos_id = getattr(tokenizer, "bos_token_id", None)
    bos = bos_id is not None and ids[0] == bos_id
    stride = window // 2 if stride is None else stride
    if len(ids) > window:
        check_stride(window, stride, bos)
    special = special_ids(tokenizer)
    sizes = byte_lengths(tokenizer, ids)
    total = len(ids) - start
    tokens: list[ScoredToken] = []
    vocab = parts.text_config(model).vocab_size
    plan = plan_windows(len(ids), start, window, stride, bos)
    for begin, end, first in plan:
        lead = [bos_id] if bos and begin > 0 else []
        content = lead + ids[begin:end]
        with torch.inference_mode():
            hidden = parts.decoder(model)(input_ids=parts.input_tensor(model, content), use_cache=False).last_hidden_state[0]
        # content[i] is predicted by row i - 1; position p sits at content index p - begin + len(lead)
        rows = torch.arange(first, end) - begin + len(lead) - 1
        for piece in parts.chunks(len(rows), parts.chunk_positions(vocab)):
            with torch.inference_mode():
                logits = parts.head_logits(model, hidden[rows[piece].to(hidden.device)]).double().cpu()
            logprobs = torch.log_softmax(logits, dim=-1)
            targets = torch.tensor(ids[first + piece.start : first + piece.stop])
            chosen = logits.gather(1, targets[:, None])
            ranks = 1 + (logits > chosen).sum(dim=1)
            top_values, top_ids = torch.topk(logprobs, min(top, vocab), dim=-1)
            for j, token_id in enumerate(targets.tolist()):
                position = first + piece.start + j
                tokens.append(
                    ScoredToken(
                        position=position,
                        id=token_id,
                        text=piece_text(tokenizer, token_id),
                        special=token_id in special,
                        logprob=float(logprobs[j, token_id]),
                        rank=int(ranks[j]),
                        context=position - begin + len(lead),
                        bytes=sizes[position],
                        expected=tuple(
                            Expected(int(i), piece_text(tokenizer, int(i)), int(i) in special, math.exp(float(v)))
                            for v, i in zip(top_values[j], top_ids[j])
                        ),
                    )
                )
        if progress is not None:
            progress(len(tokens), total)
    return Scores(
        tokens=tuple(tokens),
        totals=totals_of(tokens),
        window=min(window, len(ids)),
        stride=stride,
        windows=len(plan),
        vocab_size=vocab,
    )


def totals_of(tokens: Sequence[ScoredToken]) -> ScoreTotals:
    counts = {name: 0 for name in bucket_names(tokens[0].ranked if tokens else None)}
    for token in tokens:
        counts[token.bucket] += 1
    return ScoreTotals(
        tokens=len(tokens),
        mean_nll=-math.fsum(t.logprob for t in tokens) / len(tokens),
        bytes=sum(t.bytes for t in tokens),
        buckets=tuple(counts.items()),
    )


def score_text(model: Any, tokenizer: Any, text: str, *, label: str = "", **options: Any) -> ScoreReport:
    """Score a raw text (byte for byte, BOS in front when the tokenizer adds one)."""
    from llmcli.prompting import build_raw_prompt

    ids = build_raw_prompt(tokenizer, text).ids
    bos_id = getattr(tokenizer, "bos_token_id", None)
    has_bos = bool(ids) and bos_id is not None and ids[0] == bos_id
    body = ids[1:] if has_bos else ids
    if not body:
        raise BadInput("the text is empty: there is nothing to score", 'give some text, e.g. llmcli score "The capital of France is Paris."')
    if len(ids) < 2:
        piece = piece_text(tokenizer, ids[0])
        raise BadInput(
            f"the text is one token ({piece!r}) and this tokenizer adds no BOS: there is nothing to predict it from",
            "give at least two tokens of text",
        )
    scores = score_ids(model, tokenizer, ids, start=1, **options)
    leading = () if has_bos else prompt_tokens(tokenizer, ids[:1])
    return ScoreReport(label, "raw", text, "bos" if has_bos else "unscored", leading, scores)


def score_reply(
    model: Any, tokenizer: Any, prompt_ids: Sequence[int], reply_ids: Sequence[int], *, text: str, mode: str, label: str = "", **options: Any
) -> ScoreReport:
    """Score only `reply_ids`, as the continuation of a chat prompt (`prompt_ids`)."""
    if not reply_ids:
        raise BadInput("the reply is empty: there is nothing to score", "give the assistant reply as the text")
    ids = [*prompt_ids, *reply_ids]
    scores = score_ids(model, tokenizer, ids, start=len(prompt_ids), **options)
    return ScoreReport(label, mode, text, "reply", (), scores)


def score_served(scored: Any, *, label: str = "") -> ScoreReport:
    """A raw text's score from a server's own log-probabilities of it (`PromptLogprobs`, from
    /v1/completions with echo + logprobs): the same report, with ranks known only inside the
    server's top N and nothing a server does not say (its vocabulary size) made up."""
    entries = list(scored.tokens)
    if len(entries) < 2:
        raise BadInput("there are no tokens to score", "give a text of at least two tokens")
    ranked = min((len(e.top) for e in entries[1:]), default=0) or None
    if ranked is None:
        raise BadInput(f"{label} gave no top log-probabilities with the text", "score needs a server that returns them with echo (llmcli serve, vLLM)")
    tokens = []
    for position, entry in enumerate(entries[1:], start=1):
        same = [i for i, alt in enumerate(entry.top) if (alt.id, alt.text) == (entry.id, entry.text) or (alt.id is None and alt.text == entry.text)]
        tokens.append(
            ScoredToken(
                position=position,
                id=entry.id,
                text=entry.text,
                special=False,
                logprob=entry.logprob,
                rank=same[0] + 1 if same and same[0] < ranked else ranked + 1,
                context=position,
                bytes=len(entry.bytes if entry.bytes is not None else entry.text.encode("utf-8")),
                expected=tuple(Expected(alt.id, alt.text, False, math.exp(alt.logprob)) for alt in entry.top[:3]),
                ranked=ranked,
            )
        )
    first = entries[0]
    bos = not scored.text.startswith(first.text)  # a BOS token the server put in front: not the text's own
    leading = () if bos else (PromptToken(first.id, first.text, False),)
    scores = Scores(tuple(tokens), totals_of(tokens), window=len(entries), stride=0, windows=1, vocab_size=0)
    return ScoreReport(label, "raw", scored.text, "bos" if bos else "unscored", leading, scores)


# ---------------------------------------------------------------------------- bytes


def byte_lengths(tokenizer: Any, ids: Sequence[int]) -> list[int]:
    """How many UTF-8 bytes each token stands for (what bits per byte divides by)."""
    from llmcli.tokens import view

    return [len(data or b"") for data in view(tokenizer).many_bytes(ids)]
