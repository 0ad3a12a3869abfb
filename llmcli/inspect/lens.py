"""What `llmcli lens` computes: the logit lens — what each layer would predict if the model stopped there.

The residual stream after block L is passed through the model's own final norm and output head
(nostalgebraist's logit lens; TransformerLens' accumulated residual). Pure: model, tokenizer
and ids in, frozen dataclasses out; `LensReport.to_dict()` is `--json`.

Decisions and gotchas (transformers 5.24, checked in its source):
- `output_hidden_states` gives n + 1 states: the embedding output (row `layer == -1`), then the
  output of each block. The last one is *already normed*: the decoder ends with
  `hidden_states = self.norm(hidden_states)` and `capture_outputs` replaces the last captured
  state by that `last_hidden_state`. So the norm is applied to states 0..n-1 and not again to
  state n; the last row therefore equals the model's own next-token distribution.
- The norm and the head are the model's modules, called, not re-implemented: Gemma's RMSNorm
  scales by 1 + weight, and its √hidden embedding scale is inside its embedding module, so the
  embedding row sees the scaled vectors the first block sees. `final_logit_softcapping` is
  applied as the model applies it. Tied and untied heads are the same call.
- Only top-k per cell is kept (Gemma has 262,144 tokens). Entropy and KL are computed on the
  full distribution first, in float64. KL is KL(final ‖ layer) = Σ p_final (log p_final − log
  p_layer), in nats: how much the final answer's distribution is lost by stopping early.
- "The answer" at a position is the final layer's top-1 token; `first_top1` is the first layer
  where it is already rank 1, `settled` the layer from which it stays rank 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch

from llmcli.errors import BadInput
from llmcli.inspect import model_parts as parts
from llmcli.inspect.next_token import PromptToken, encode_target, json_safe, prompt_tokens
from llmcli.tokens import piece_text, special_ids

EMBEDDINGS = -1  # the `layer` of the row read straight from the embedding output


@dataclass(frozen=True)
class LensToken:
    id: int
    text: str
    special: bool
    prob: float


@dataclass(frozen=True)
class LensCell:
    """One layer's prediction after one position."""

    position: int
    top: tuple[LensToken, ...]
    entropy: float  # nats, of the whole distribution
    kl: float  # KL(final ‖ this layer), nats
    answer_rank: int  # rank here of the final layer's top-1 token
    answer_prob: float
    target_rank: int | None = None
    target_prob: float | None = None

    @property
    def entropy_bits(self) -> float:
        return self.entropy / math.log(2)


@dataclass(frozen=True)
class LensRow:
    layer: int  # block index, numbered from 0; -1 for the embedding output
    cells: tuple[LensCell, ...]  # one per position in `LensReport.positions`

    @property
    def label(self) -> str:
        return "embed" if self.layer == EMBEDDINGS else str(self.layer)


@dataclass(frozen=True)
class LensTarget:
    text: str  # as asked
    id: int  # its first token, the one followed across layers
    piece: str
    special: bool
    pieces: int  # how many tokens the text is
    source: str  # "target" (asked for) | "next" (the token that came next in the prompt)


@dataclass(frozen=True)
class LensReport:
    model: str
    tokens: tuple[PromptToken, ...]
    positions: tuple[int, ...]
    rows: tuple[LensRow, ...]
    answers: tuple[LensToken, ...]  # the final layer's top-1, per position
    first_top1: tuple[int, ...]  # per position: the first layer where the answer is rank 1
    settled: tuple[int, ...]  # per position: the layer from which the answer stays rank 1
    target: LensTarget | None
    num_layers: int
    vocab_size: int
    norm: str  # the final norm's class, e.g. "Gemma3RMSNorm"
    softcap: float | None
    tied: bool
    top_k: int

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for row, source in zip(data["rows"], self.rows):
            row["label"] = source.label
            for cell, cell_source in zip(row["cells"], source.cells):
                cell["entropy_bits"] = cell_source.entropy_bits
        return json_safe(data)

    def column(self, position: int) -> list[LensCell]:
        """Every row's cell at one position."""
        j = self.positions.index(position)
        return [row.cells[j] for row in self.rows]


def parse_layers(spec: str, num_layers: int) -> tuple[int, ...]:
    """`--layers`: a Python-style slice over the blocks ('0:30:3', '::2', '-6:') or a comma list ('0,5,9').
    The last block (the model's own answer) is always kept."""
    spec = spec.strip()
    hint = f"e.g. --layers 0:{num_layers}:3 or --layers 0,4,8 (blocks run from 0 to {num_layers - 1})"
    try:
        if ":" in spec:
            parts_ = [int(p) if p.strip() else None for p in spec.split(":")]
            if len(parts_) > 3 or parts_[2:3] == [0]:
                raise ValueError
            chosen = list(range(num_layers))[slice(*parts_)]
        else:
            chosen = [int(p) for p in spec.split(",")]
    except ValueError:
        raise BadInput(f"layers {spec!r} is not a slice or a list of layers", hint) from None
    for layer in chosen:
        if not -num_layers <= layer < num_layers:
            raise BadInput(f"layers: layer {layer} is out of range for this model, which has {num_layers} layers", hint)
    if not chosen:
        raise BadInput(f"layers {spec!r} selects no layer", hint)
    kept = sorted({layer % num_layers for layer in chosen} | {num_layers - 1})
    return tuple(kept)


def logit_lens(
    model: Any,
    tokenizer: Any,
    ids: Sequence[int],
    *,
    positions: Sequence[int] | None = None,
    layers: Sequence[int] | None = None,
    top_k: int = 5,
    target: str | None = None,
    label: str = "",
) -> LensReport:
    """Every layer's top-k after each of `positions` (default: all), with entropy, KL and ranks.

    `layers` picks the block rows to keep (the embedding row is always kept); every layer is
    still computed, so `first_top1` and `settled` are exact whatever is shown.
    """
    ids = list(ids)
    if not ids:
        raise BadInput("the prompt is empty: there is nothing to look at", 'give some text, e.g. llmcli lens "The capital of France is"')
    if top_k < 1:
        raise BadInput(f"top_k must be at least 1 (got {top_k})", "it is how many tokens each layer lists")
    positions = list(range(len(ids))) if positions is None else [int(p) for p in positions]
    target_info = _target(tokenizer, ids, positions, target)
    special = special_ids(tokenizer)
    norm = parts.final_norm(model)
    with torch.inference_mode():
        out = parts.decoder(model)(input_ids=parts.input_tensor(model, ids), output_hidden_states=True, use_cache=False)
    states = out.hidden_states
    n = len(states) - 1
    keep = set(range(n)) if layers is None else {int(layer) for layer in layers}
    vocab = parts.text_config(model).vocab_size
    # cells[layer_index][position_index]; layer_index 0 is the embedding row
    cells: list[list[LensCell]] = [[] for _ in range(n + 1)]
    answers: list[LensToken] = []
    for chunk in parts.chunks(len(positions), parts.chunk_positions(vocab)):
        where = torch.tensor(positions[chunk], device=states[-1].device)
        with torch.inference_mode():
            final = parts.head_logits(model, states[-1][0, where]).double().cpu()
        final_logp = torch.log_softmax(final, dim=-1)
        answer = final.argmax(dim=-1)
        for j, token_id in enumerate(answer.tolist()):
            answers.append(LensToken(token_id, piece_text(tokenizer, token_id), token_id in special, math.exp(float(final_logp[j, token_id]))))
        for index, state in enumerate(states):
            with torch.inference_mode():
                hidden = state[0, where]
                logits = final if index == n else parts.head_logits(model, norm(hidden)).double().cpu()
            cells[index].extend(_cells(logits, final_logp, answer, positions[chunk], top_k, target_info, tokenizer, special))
    rows = tuple(LensRow(index - 1, tuple(cells[index])) for index in range(n + 1) if index == 0 or (index - 1) in keep)
    first_top1, settled = [], []
    for j in range(len(positions)):
        ranks = [cells[index][j].answer_rank for index in range(n + 1)]
        first_top1.append(ranks.index(1) - 1)
        settled.append(next(i for i in range(n + 1) if all(r == 1 for r in ranks[i:])) - 1)
    return LensReport(
        model=label,
        tokens=prompt_tokens(tokenizer, ids),
        positions=tuple(positions),
        rows=rows,
        answers=tuple(answers),
        first_top1=tuple(first_top1),
        settled=tuple(settled),
        target=target_info,
        num_layers=n,
        vocab_size=vocab,
        norm=type(norm).__name__,
        softcap=parts.softcap(model),
        tied=parts.tied_head(model),
        top_k=top_k,
    )


def _cells(logits, final_logp, answer, positions, top_k, target, tokenizer, special) -> list[LensCell]:
    logp = torch.log_softmax(logits, dim=-1)
    probs = logp.exp()
    entropy = torch.special.entr(probs).sum(dim=-1)
    kl = (final_logp.exp() * (final_logp - logp)).sum(dim=-1)
    values, ids = torch.topk(logp, min(top_k, logp.shape[-1]), dim=-1)
    answer_logit = logits.gather(1, answer[:, None])
    answer_rank = 1 + (logits > answer_logit).sum(dim=-1)
    out = []
    for j, position in enumerate(positions):
        target_rank = target_prob = None
        if target is not None:
            target_rank = 1 + int((logits[j] > logits[j, target.id]).sum())
            target_prob = float(probs[j, target.id])
        top = tuple(LensToken(int(i), piece_text(tokenizer, int(i)), int(i) in special, math.exp(float(v))) for v, i in zip(values[j], ids[j]))
        out.append(
            LensCell(
                position=position,
                top=top,
                entropy=float(entropy[j]),
                kl=max(0.0, float(kl[j])),
                answer_rank=int(answer_rank[j]),
                answer_prob=float(probs[j, int(answer[j])]),
                target_rank=target_rank,
                target_prob=target_prob,
            )
        )
    return out


def _target(tokenizer: Any, ids: list[int], positions: list[int], text: str | None) -> LensTarget | None:
    special = special_ids(tokenizer)
    if text is not None:
        target_ids = encode_target(tokenizer, text)
        first = target_ids[0]
        return LensTarget(text, first, piece_text(tokenizer, first), first in special, len(target_ids), "target")
    if len(positions) == 1 and positions[0] + 1 < len(ids):
        following = ids[positions[0] + 1]
        piece = piece_text(tokenizer, following)
        return LensTarget(piece, following, piece, following in special, 1, "next")
    return None
