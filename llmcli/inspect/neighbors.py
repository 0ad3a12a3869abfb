"""What `llmcli neighbors` computes: nearest tokens in the input embedding matrix, analogies, one vector.

Pure: a model, its tokenizer and words in, frozen dataclasses out; `to_dict()` is `--json`.

Decisions and gotchas:
- The matrix is the input embedding's weight as stored, [vocabulary, hidden]. Gemma's embedding
  module multiplies it by √hidden before the first block; a common factor changes no cosine,
  so it is reported, not applied. Both embedded models tie their output head to this matrix.
- A word is looked up first with a leading space (" tower": the form a word takes mid-sentence
  in byte-level BPE and SentencePiece vocabularies), then as typed. A word that is several
  tokens either way is refused with its pieces, or, with `average`, stands for the mean of its
  pieces' vectors.
- Candidates are whole-word tokens by default: a piece that decodes to a space followed by
  letters only (str.isalpha, so any script) — what a word looks like after the tokenizer's
  space marker (`Ġ`, `▁`). `all_pieces` takes every token that is not special. The query's own
  tokens, and an analogy's inputs, are never among the answers.
- Cosine similarity on the raw vectors; `center` subtracts the mean embedding (over the whole
  vocabulary) first, since embedding matrices are anisotropic: all vectors share a common
  direction that inflates every cosine.
- Analogies follow gensim's `most_similar` (3CosAdd): unit-normalise each input, add the
  positives and subtract the negatives, normalise, rank by cosine. `cosmul` is gensim's
  `most_similar_cosmul` (Levy & Goldberg 2014, 3CosMul): cosines shifted to [0, 1] by (1 + cos) / 2,
  the product over positives divided by the product over negatives + 1e-6.
- Cosines are float32 dot products over blocks of rows (a float64 copy of Gemma's 262,144 x
  640 matrix would take 1.3 GB and most of a second), good to about 1e-7; the inputs' sums,
  the mean embedding and the 3CosMul products are float64.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import torch

from llmcli.errors import BadInput
from llmcli.inspect import model_parts as parts
from llmcli.inspect.next_token import json_safe
from llmcli.tokens import piece_text, special_ids

_ROWS = 16384  # matrix rows per block
_COSMUL_EPSILON = 1e-6  # gensim's


@dataclass(frozen=True)
class Word:
    text: str  # as asked
    ids: tuple[int, ...]  # the token(s) it stands for
    pieces: tuple[str, ...]
    averaged: bool  # several tokens, standing for the mean of their vectors


@dataclass(frozen=True)
class Neighbor:
    rank: int
    id: int
    text: str
    score: float


@dataclass(frozen=True)
class EmbeddingFacts:
    vocab_size: int
    dim: int
    tied: bool  # the output head is this very matrix
    embed_scale: float | None  # what the model multiplies the vectors by (Gemma: √hidden)
    candidates: int  # how many tokens were ranked
    pieces: str  # "whole words" | "all pieces"
    centered: bool


@dataclass(frozen=True)
class NeighborsReport:
    model: str
    method: str  # "cosine" | "3cosadd" | "3cosmul"
    positive: tuple[Word, ...]  # the query word, or an analogy's positive terms
    negative: tuple[Word, ...]
    neighbors: tuple[Neighbor, ...]
    facts: EmbeddingFacts
    expression: str  # the word, or the analogy as written ("king - man + woman")

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))


@dataclass(frozen=True)
class VectorReport:
    model: str
    word: Word
    first: tuple[float, ...]  # the vector's first components
    norm: float
    percentile: float  # % of the vocabulary with a smaller norm
    norm_min: float
    norm_median: float
    norm_max: float
    facts: EmbeddingFacts

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))


# ---------------------------------------------------------------------------- words and candidates


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])


def lookup(tokenizer: Any, text: str, *, average: bool = False) -> Word:
    """The token a word is (with a leading space first), or the mean of its pieces with `average`."""
    if not text.strip():
        raise BadInput("the word is empty", 'give a word, e.g. llmcli neighbors tower')
    forms = [text] if text[0].isspace() else [" " + text, text]
    for form in forms:
        ids = _encode(tokenizer, form)
        if len(ids) == 1:
            return Word(text, tuple(ids), (piece_text(tokenizer, ids[0]),), False)
    ids = _encode(tokenizer, forms[0])
    pieces = tuple(piece_text(tokenizer, i) for i in ids)
    if not average:
        shown = " ".join(repr(p) for p in pieces)
        raise BadInput(
            f"{text!r} is not one token in this vocabulary: it is {len(ids)} tokens, {shown}",
            "give one of the pieces, or add --average to use the mean of their vectors",
        )
    return Word(text, tuple(ids), pieces, True)


def piece_texts(tokenizer: Any, vocab: int) -> list[str | None]:
    """Every id's text as it decodes inside a sentence (None for ids the tokenizer does not have)."""
    from llmcli.tokens import view

    return [None if data is None else data.decode("utf-8", errors="replace") for data in view(tokenizer).many_bytes(range(vocab))]


def candidate_mask(tokenizer: Any, vocab: int, all_pieces: bool) -> torch.Tensor:
    special = special_ids(tokenizer)
    keep = [
        text is not None and i not in special and (all_pieces or (len(text) > 1 and text[0] == " " and text[1:].isalpha()))
        for i, text in enumerate(piece_texts(tokenizer, vocab))
    ]
    return torch.tensor(keep, dtype=torch.bool)

# ---------------------------------------------------------------------------- cosines


def _matrix(model: Any) -> torch.Tensor:
    return model.get_input_embeddings().weight.detach()


def _mean_row(matrix: torch.Tensor) -> torch.Tensor:
    total = torch.zeros(matrix.shape[1], dtype=torch.float64)
    for rows in parts.chunks(matrix.shape[0], _ROWS):
        total += matrix[rows].double().cpu().sum(dim=0)
    return total / matrix.shape[0]


def cosines(matrix: torch.Tensor, vectors: torch.Tensor, mean: torch.Tensor | None = None) -> torch.Tensor:
    """cos(row, v) for every row of `matrix` and every v in `vectors` [k, d] -> [k, vocab].
    With `mean`, the rows are centred on it first (the vectors are taken as given: centre them too)."""
    vectors = vectors.double()
    vectors = (vectors / torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)).float()
    centre = None if mean is None else mean.float()
    out = torch.empty(vectors.shape[0], matrix.shape[0], dtype=torch.float64)
    for rows in parts.chunks(matrix.shape[0], _ROWS):
        block = matrix[rows].float().cpu()
        if centre is not None:
            block = block - centre
        norms = torch.linalg.vector_norm(block, dim=-1).clamp_min(1e-30)
        out[:, rows] = ((vectors @ block.T) / norms).double()
    return out


def _vector(matrix: torch.Tensor, word: Word) -> torch.Tensor:
    return matrix[list(word.ids)].double().cpu().mean(dim=0)


def _facts(model: Any, mask: torch.Tensor, all_pieces: bool, center: bool) -> EmbeddingFacts:
    matrix = _matrix(model)
    return EmbeddingFacts(
        vocab_size=matrix.shape[0],
        dim=matrix.shape[1],
        tied=parts.tied_head(model),
        embed_scale=parts.embed_scale(model),
        candidates=int(mask.sum()),
        pieces="all pieces" if all_pieces else "whole words",
        centered=center,
    )


def _ranked(scores: torch.Tensor, mask: torch.Tensor, exclude: set[int], tokenizer: Any, k: int) -> tuple[Neighbor, ...]:
    allowed = mask.clone()
    allowed[list(exclude)] = False
    masked = torch.where(allowed, scores, torch.tensor(-math.inf, dtype=scores.dtype))
    values, ids = torch.topk(masked, min(k, int(allowed.sum())))
    return tuple(Neighbor(rank, int(i), piece_text(tokenizer, int(i)), float(v)) for rank, (v, i) in enumerate(zip(values, ids), start=1))


# ---------------------------------------------------------------------------- the three questions


def nearest(
    model: Any, tokenizer: Any, text: str, *, k: int = 10, all_pieces: bool = False, center: bool = False, average: bool = False, label: str = ""
) -> NeighborsReport:
    """The `k` tokens whose embeddings have the highest cosine with the word's."""
    _check_k(k)
    word = lookup(tokenizer, text, average=average)
    matrix = _matrix(model)
    mask = candidate_mask(tokenizer, matrix.shape[0], all_pieces)
    mean = _mean_row(matrix) if center else None
    query = _vector(matrix, word) - (0 if mean is None else mean)
    scores = cosines(matrix, query[None], mean)[0]
    found = _ranked(scores, mask, set(word.ids), tokenizer, k)
    return NeighborsReport(label, "cosine", (word,), (), found, _facts(model, mask, all_pieces, center), text)


def parse_analogy(expression: str) -> tuple[list[str], list[str]]:
    """'king - man + woman' -> (['king', 'woman'], ['man'])."""
    hint = 'write it as words joined by + and -, e.g. --analogy "king - man + woman"'
    parts_ = re.split(r"([+-])", expression.strip())
    if len(parts_) < 3:
        raise BadInput(f"the analogy {expression!r} has no + or -", hint)
    signs = ["+"] + parts_[1::2]
    terms = parts_[0::2]
    if terms[0].strip() == "" and len(terms) > 1:  # a leading sign: '-man + woman'
        signs, terms = signs[1:], terms[1:]
    positive, negative = [], []
    for sign, term in zip(signs, terms):
        if not term.strip():
            raise BadInput(f"the analogy {expression!r} has an empty term", hint)
        (positive if sign == "+" else negative).append(term.strip())
    if not positive or not negative:
        raise BadInput(f"the analogy {expression!r} needs at least one term added and one subtracted", hint)
    return positive, negative


def analogy(
    model: Any,
    tokenizer: Any,
    expression: str,
    *,
    method: str = "add",
    k: int = 10,
    all_pieces: bool = False,
    center: bool = False,
    average: bool = False,
    label: str = "",
) -> NeighborsReport:
    """`a - b + c` by 3CosAdd (`method="add"`) or 3CosMul (`"mul"`), inputs excluded."""
    _check_k(k)
    if method not in ("add", "mul"):
        raise BadInput(f"method {method!r} is not add or mul", "3CosAdd is add (the default), 3CosMul is mul")
    positive_text, negative_text = parse_analogy(expression)
    positive = [lookup(tokenizer, t, average=average) for t in positive_text]
    negative = [lookup(tokenizer, t, average=average) for t in negative_text]
    matrix = _matrix(model)
    mask = candidate_mask(tokenizer, matrix.shape[0], all_pieces)
    mean = _mean_row(matrix) if center else None
    inputs = torch.stack([_vector(matrix, w) for w in positive + negative])
    if mean is not None:
        inputs = inputs - mean
    units = inputs / torch.linalg.vector_norm(inputs, dim=-1, keepdim=True)
    if method == "add":
        target = units[: len(positive)].sum(dim=0) - units[len(positive) :].sum(dim=0)
        scores = cosines(matrix, (target / torch.linalg.vector_norm(target))[None], mean)[0]
    else:
        shifted = (1 + cosines(matrix, units, mean)) / 2
        scores = shifted[: len(positive)].prod(dim=0) / (shifted[len(positive) :].prod(dim=0) + _COSMUL_EPSILON)
    exclude = {i for w in positive + negative for i in w.ids}
    found = _ranked(scores, mask, exclude, tokenizer, k)
    name = "3cosadd" if method == "add" else "3cosmul"
    written = re.sub(r"\s*([+-])\s*", r" \1 ", expression.strip()).strip()
    return NeighborsReport(label, name, tuple(positive), tuple(negative), found, _facts(model, mask, all_pieces, center), written)


def vector(model: Any, tokenizer: Any, text: str, *, dims: int = 8, average: bool = False, label: str = "") -> VectorReport:
    """The word's embedding vector itself: its first components, its norm and where that norm sits."""
    if dims < 1:
        raise BadInput(f"dims must be at least 1 (got {dims})", "it is how many components to show")
    word = lookup(tokenizer, text, average=average)
    matrix = _matrix(model)
    vec = _vector(matrix, word)
    norms = torch.cat([torch.linalg.vector_norm(matrix[rows].double().cpu(), dim=-1) for rows in parts.chunks(matrix.shape[0], _ROWS)])
    norm = float(torch.linalg.vector_norm(vec))
    mask = torch.ones(matrix.shape[0], dtype=torch.bool)
    return VectorReport(
        model=label,
        word=word,
        first=tuple(vec[:dims].tolist()),
        norm=norm,
        percentile=100 * float((norms < norm).double().mean()),
        norm_min=float(norms.min()),
        norm_median=float(norms.median()),
        norm_max=float(norms.max()),
        facts=_facts(model, mask, True, False),
    )


def _check_k(k: int) -> None:
    if k < 1:
        raise BadInput(f"k must be at least 1 (got {k})", "it is how many neighbours to list")

