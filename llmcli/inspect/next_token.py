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
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch

from llmcli.errors import BadInput
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
    sampler: SamplerReplay | None = None
    targets: tuple[TargetScore, ...] = ()
    steps: Unrolled | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = _finite(asdict(self))
        data["table"]["entropy_bits"] = self.table.entropy_bits
        for column, source in zip(data["table"]["columns"], self.table.columns):
            column["entropy_bits"] = source.entropy_bits
        if self.steps is not None:
            data["steps"]["greedy"] = self.steps.greedy
        return data


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such floats become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
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


def forward_logits(model: Any, ids: Sequence[int], keep: int = 1) -> torch.Tensor:
    """One forward pass over `ids`; the float32 logits of the last `keep` positions, [keep, vocab], on the CPU."""
    from llmcli import forward

    keep = max(1, min(keep, len(ids)))
    input_ids = torch.tensor([list(ids)], dtype=torch.long, device=model.device)
    with torch.inference_mode():
        logits = forward.call(model, input_ids, keep=keep).logits
    return logits[0, -keep:].float().cpu()


# ---------------------------------------------------------------------------- distributions


def probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) in float64; T = 0 is greedy: all the mass on the argmax."""
    logits = logits.double()
    if temperature == 0:
        probs = torch.zeros_like(logits)
        probs[int(torch.argmax(logits))] = 1.0
        return probs
    return torch.softmax(logits / temperature, dim=-1)


def entropy(probs: torch.Tensor) -> float:
    """Shannon entropy in nats (0 log 0 = 0)."""
    return float(torch.special.entr(probs).sum())


def parse_temperatures(text: str) -> tuple[float, ...]:
    """'0.5,1,1.5' -> (0.5, 1.0, 1.5); every value finite and >= 0."""
    values = []
    for part in text.replace(" ", "").split(","):
        try:
            value = float(part)
        except ValueError:
            raise BadInput(
                f"--temperature: '{part}' is not a number",
                "give one temperature or a comma-separated list, e.g. --temperature 0.5,1,1.5",
            ) from None
        if not math.isfinite(value) or value < 0:
            raise BadInput(f"--temperature: {part} is out of range", "temperatures are >= 0 (0 means greedy)")
        values.append(value)
    return tuple(values)


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
    if num < 1:
        raise BadInput(f"--num must be at least 1 (got {num})", "it is the number of rows the table shows")
    if not temperatures:
        raise BadInput("no temperature given", "e.g. --temperature 1")
    logits = logits.double()
    vocab = logits.shape[-1]
    num = min(num, vocab)
    logprobs = torch.log_softmax(logits, dim=-1)
    top_ids = _ranked(logits)[:num]
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


def _ranked(logits: torch.Tensor) -> torch.Tensor:
    """Token ids by descending logit; ties keep the lower id first (as argmax does)."""
    return torch.sort(logits, descending=True, stable=True).indices


def rank_of(logits: torch.Tensor, token_id: int) -> int:
    """1 + the number of tokens with a strictly higher logit."""
    return 1 + int((logits > logits[token_id]).sum())


# ---------------------------------------------------------------------------- the sampler, stage by stage


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
    from llmcli import generation

    current = logits.double()  # float32 cumulative sums over a 262k vocabulary blur the top-p boundary
    previous = probabilities(current, 1.0)
    vocab = current.shape[-1]
    stages = []
    plan: list[tuple[str, float, Any]] = [("temperature", temperature, None)]
    if top_k is not None:
        plan.append(("top-k", top_k, generation.top_k_filter))
    if top_p is not None:
        plan.append(("top-p", top_p, generation.top_p_filter))
    if min_p is not None:
        plan.append(("min-p", min_p, generation.min_p_filter))
    for name, setting, stage in plan:
        if name == "temperature":
            if temperature == 0:
                greedy = torch.full_like(current, -math.inf)
                greedy[int(torch.argmax(current))] = current[int(torch.argmax(current))]
                current = greedy
            else:
                current = generation.apply_temperature(current, temperature)
        else:
            current = stage(current, setting)
        alive = torch.isfinite(current)
        probs = probabilities(current, 1.0) if temperature != 0 else probabilities(current, 0)
        mass_kept = float(previous[alive].sum())
        survivors = int(alive.sum())
        order = _ranked(current)[:survivors] if survivors < vocab else torch.tensor([], dtype=torch.long)
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


# ---------------------------------------------------------------------------- targets


def encode_target(tokenizer: Any, text: str) -> list[int]:
    """The ids of a continuation on its own: no BOS, special-token text kept as text."""
    if text == "":
        raise BadInput("--target is empty", 'give the continuation to score, e.g. --target " Paris"')
    try:
        ids = tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
    except TypeError:  # a tokenizer without split_special_tokens
        ids = tokenizer.encode(text, add_special_tokens=False)
    if not ids:
        raise BadInput(f"--target {text!r} encodes to no tokens", "give some visible text")
    return list(ids)


def score_target(model: Any, tokenizer: Any, prompt_ids: Sequence[int], text: str, *, context_length: int | None = None) -> TargetScore:
    """Rank, logit and probability of each token of `text` as a continuation of the prompt."""
    target = encode_target(tokenizer, text)
    check_prompt(prompt_ids, context_length, extra=len(target))
    ids = [*prompt_ids, *target]
    # Position len(prompt) - 1 predicts target[0]; the last position predicts past the target.
    logits = forward_logits(model, ids, keep=len(target) + 1)[:-1].double()
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


# ---------------------------------------------------------------------------- positions


def resolve_position(position: int, length: int) -> int:
    """A Python-style index into the prompt (-1 = the last token) -> 0..length-1."""
    if not -length <= position < length:
        where = "the only position is 0" if length == 1 else f"positions run from 0 to {length - 1}"
        raise BadInput(
            f"--position {position} is outside the prompt, which has {length} token{'s' if length != 1 else ''}",
            f"{where} (-1 is the last token; `llmcli tokenize` shows them)",
        )
    return position % length


def table_at(
    model: Any,
    tokenizer: Any,
    ids: Sequence[int],
    *,
    position: int = -1,
    num: int = 10,
    temperatures: Sequence[float] = (1.0,),
) -> tuple[NextTokenTable, torch.Tensor]:
    """The table after the token at `position` (and the logits it came from), in one forward pass.

    At an earlier position the table also carries the token that actually came next.
    """
    index = resolve_position(position, len(ids))
    logits = forward_logits(model, ids, keep=len(ids) - index)[0]
    actual = ids[index + 1] if index + 1 < len(ids) else None
    table = next_token_table(logits, tokenizer, num=num, temperatures=temperatures, position=index, actual_next=actual)
    return table, logits


# ---------------------------------------------------------------------------- the loop, unrolled


def unroll(
    model: Any,
    tokenizer: Any,
    prompt_ids: Sequence[int],
    settings: Any,
    *,
    stop_strings: Sequence[str] = (),
    candidates: int = 5,
    context_length: int | None = None,
) -> Unrolled:
    """Run the engine's decode loop for `settings.max_new_tokens` steps, keeping each step's candidates.

    `settings` is a `generation.SamplingSettings`; greedy when its temperature is 0.
    """
    from llmcli.generation import generate

    special = special_ids(tokenizer)
    run = generate(
        model,
        tokenizer,
        list(prompt_ids),
        settings,
        stop_strings=tuple(stop_strings),
        top_logprobs=candidates,
        context_length=context_length,
    )
    steps = []
    output = ""
    for index, event in enumerate(run, start=1):
        output += event.text
        alternatives = tuple(
            Alternative(rank, int(i), piece_text(tokenizer, int(i)), int(i) in special, float(lp), math.exp(float(lp)))
            for rank, (i, _piece, lp) in enumerate(event.top, start=1)
        )
        rank = next((a.rank for a in alternatives if a.id == event.id), None)
        steps.append(
            Step(
                index=index,
                id=event.id,
                text=piece_text(tokenizer, event.id),
                special=event.id in special,
                logprob=float(event.logprob),
                prob=math.exp(float(event.logprob)),
                rank=rank,
                candidates=alternatives,
                output=output,
            )
        )
    return Unrolled(
        steps=tuple(steps),
        text=run.text,
        finish_reason=run.stats.finish_reason,
        temperature=settings.temperature,
        top_k=settings.top_k,
        top_p=settings.top_p,
        min_p=settings.min_p,
        seed=settings.seed,
    )

