"""`llmcli.inspect.neighbors` against cosines computed directly over the embedding matrix.

The references use `torch.nn.functional.cosine_similarity` on the float64 matrix and write
gensim's 3CosAdd and 3CosMul out from their definitions.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from llmcli.errors import BadInput
from llmcli.inspect import neighbors as nb
from tests.tiny_inspect_models import tiny_gemma_dir, untied_llama_dir  # noqa: F401  (fixtures)

WORDS = ["the", "capital", "France", "model", "dog", "cat", "sea", "token", "world", "Good", "morning", "night", "quick", "sat", "torch"]
_LOADED: dict[str, object] = {}


@pytest.fixture(params=["tied", "untied", "gemma3"])
def loaded(request, tiny_model_dir, untied_llama_dir, tiny_gemma_dir):  # noqa: F811
    from llmcli.models import load_model

    path = {"tied": tiny_model_dir, "untied": untied_llama_dir, "gemma3": tiny_gemma_dir}[request.param]
    if request.param not in _LOADED:
        _LOADED[request.param] = load_model(str(path))
    return _LOADED[request.param]


def one_token(tokenizer, word) -> int | None:
    """The id of the word's one-token form, with a leading space first, else as typed."""
    for form in (" " + word, word):
        ids = tokenizer(form, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            return ids[0]
    return None


def single_token_words(tokenizer, n=4) -> list[str]:
    """Words of WORDS that are one token in this vocabulary (the tiny SentencePiece one has few)."""
    found = [w for w in WORDS if one_token(tokenizer, w) is not None]
    assert len(found) >= n, found
    return found[:n]


def token_id(tokenizer, word) -> int:
    found = one_token(tokenizer, word)
    assert found is not None
    return found


def matrix(loaded) -> torch.Tensor:
    return loaded.model.get_input_embeddings().weight.detach().double()


def whole_words(tokenizer, vocab) -> torch.Tensor:
    """Independently: tokens whose decoded text is a space and then letters, specials excluded."""
    special = set(tokenizer.all_special_ids)
    keep = torch.zeros(vocab, dtype=torch.bool)
    for i in range(min(vocab, len(tokenizer))):
        text = tokenizer.decode([i])
        keep[i] = i not in special and len(text) > 1 and text[0] == " " and text[1:].isalpha()
    return keep


def expected_ranking(scores: torch.Tensor, allowed: torch.Tensor, k: int) -> list[int]:
    return torch.topk(torch.where(allowed, scores, torch.tensor(-2.0, dtype=scores.dtype)), k).indices.tolist()


@pytest.mark.parametrize("center", [False, True])
def test_nearest_is_a_direct_cosine_with_the_query_excluded(loaded, center):
    tokenizer = loaded.tokenizer
    word = single_token_words(tokenizer)[1]
    query = token_id(tokenizer, word)
    E = matrix(loaded)
    if center:
        E = E - E.mean(dim=0)
    scores = F.cosine_similarity(E, E[query][None], dim=-1)
    report = nb.nearest(loaded.model, tokenizer, word, k=6, center=center)
    allowed = whole_words(tokenizer, E.shape[0])
    assert int(allowed.sum()) == report.facts.candidates
    allowed[query] = False
    assert [n.id for n in report.neighbors] == expected_ranking(scores, allowed, 6)
    assert max(abs(n.score - float(scores[n.id])) for n in report.neighbors) < 1e-5
    assert query not in [n.id for n in report.neighbors]
    assert report.positive[0].ids == (query,) and report.facts.centered is center


def test_all_pieces_ranks_every_token_but_specials(loaded):
    tokenizer = loaded.tokenizer
    word = single_token_words(tokenizer)[0]
    report = nb.nearest(loaded.model, tokenizer, word, k=20, all_pieces=True)
    E = matrix(loaded)
    query = token_id(tokenizer, word)
    scores = F.cosine_similarity(E, E[query][None], dim=-1)
    allowed = torch.zeros(E.shape[0], dtype=torch.bool)
    allowed[: len(tokenizer)] = True
    allowed[list(set(tokenizer.all_special_ids) | {query})] = False
    assert [n.id for n in report.neighbors] == expected_ranking(scores, allowed, 20)
    assert report.facts.pieces == "all pieces"


@pytest.mark.parametrize("center", [False, True])
def test_analogy_is_gensims_3cosadd(loaded, center):
    tokenizer = loaded.tokenizer
    a, b, c = single_token_words(tokenizer, 3)
    ids = [token_id(tokenizer, w) for w in (a, b, c)]
    E = matrix(loaded)
    if center:
        E = E - E.mean(dim=0)
    unit = E / E.norm(dim=-1, keepdim=True)
    target = unit[ids[0]] - unit[ids[1]] + unit[ids[2]]
    scores = F.cosine_similarity(E, target[None], dim=-1)
    allowed = whole_words(tokenizer, E.shape[0])
    allowed[ids] = False
    report = nb.analogy(loaded.model, tokenizer, f"{a} - {b} + {c}", k=5, center=center)
    assert [n.id for n in report.neighbors] == expected_ranking(scores, allowed, 5)
    assert max(abs(n.score - float(scores[n.id])) for n in report.neighbors) < 1e-5
    assert report.method == "3cosadd" and report.expression == f"{a} - {b} + {c}"


def test_analogy_by_3cosmul(loaded):
    tokenizer = loaded.tokenizer
    a, b, c = single_token_words(tokenizer, 3)
    ids = [token_id(tokenizer, w) for w in (a, b, c)]
    E = matrix(loaded)
    unit = E / E.norm(dim=-1, keepdim=True)
    shifted = [(1 + unit @ unit[i]) / 2 for i in ids]
    scores = shifted[0] * shifted[2] / (shifted[1] + 1e-6)
    allowed = whole_words(tokenizer, E.shape[0])
    allowed[ids] = False
    report = nb.analogy(loaded.model, tokenizer, f"{a} - {b} + {c}", k=5, method="mul")
    assert [n.id for n in report.neighbors] == torch.topk(torch.where(allowed, scores, torch.tensor(-1.0, dtype=scores.dtype)), 5).indices.tolist()
    assert max(abs(n.score - float(scores[n.id])) for n in report.neighbors) < 1e-5
    assert report.method == "3cosmul"


def test_a_word_of_several_tokens_is_refused_with_its_pieces_or_averaged(loaded):
    tokenizer = loaded.tokenizer
    word = "zqxjkv"
    ids = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
    assert len(ids) > 1
    with pytest.raises(BadInput) as error:
        nb.nearest(loaded.model, tokenizer, word)
    assert f"{len(ids)} tokens" in error.value.message and "--average" in error.value.hint
    report = nb.nearest(loaded.model, tokenizer, word, average=True, k=5)
    E = matrix(loaded)
    scores = F.cosine_similarity(E, E[ids].mean(dim=0)[None], dim=-1)
    allowed = whole_words(tokenizer, E.shape[0])
    allowed[ids] = False
    assert report.positive[0].averaged and report.positive[0].ids == tuple(ids)
    assert [n.id for n in report.neighbors] == expected_ranking(scores, allowed, 5)


def test_vector_facts(loaded):
    tokenizer = loaded.tokenizer
    word = single_token_words(tokenizer)[0]
    query = token_id(tokenizer, word)
    E = matrix(loaded)
    report = nb.vector(loaded.model, tokenizer, word, dims=6)
    assert report.first == pytest.approx(E[query, :6].tolist(), abs=1e-7)
    norms = E.norm(dim=-1)
    assert report.norm == pytest.approx(float(norms[query]), rel=1e-9)
    assert report.percentile == pytest.approx(100 * float((norms < norms[query]).double().mean()))
    assert report.norm_max == pytest.approx(float(norms.max())) and report.norm_min == pytest.approx(float(norms.min()))
    facts = report.facts
    assert (facts.vocab_size, facts.dim) == tuple(E.shape)
    model = loaded.model
    assert facts.tied == (model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr())
    expected_scale = model.config.hidden_size**0.5 if model.config.model_type.startswith("gemma") else None
    assert facts.embed_scale == (pytest.approx(expected_scale) if expected_scale else None)


@pytest.mark.parametrize("expression", ["king man woman", "king - + woman", "- man", "king +", "+ woman", "king - man - woman -"])
def test_a_malformed_analogy_is_refused(expression):
    with pytest.raises(BadInput, match="the analogy"):
        nb.parse_analogy(expression)


def test_parse_analogy():
    assert nb.parse_analogy("king - man + woman") == (["king", "woman"], ["man"])
    assert nb.parse_analogy(" -man+woman ") == (["woman"], ["man"])
    assert nb.parse_analogy("Paris - France + Italy") == (["Paris", "Italy"], ["France"])


def test_empty_word_and_bad_numbers(loaded):
    for call in (
        lambda: nb.nearest(loaded.model, loaded.tokenizer, "  "),
        lambda: nb.nearest(loaded.model, loaded.tokenizer, "the", k=0),
        lambda: nb.vector(loaded.model, loaded.tokenizer, "the", dims=0),
        lambda: nb.analogy(loaded.model, loaded.tokenizer, "a - b + c", method="div"),
    ):
        with pytest.raises(BadInput):
            call()


def test_the_json_is_strict(loaded):
    a, b, c = single_token_words(loaded.tokenizer, 3)
    report = nb.analogy(loaded.model, loaded.tokenizer, f"{a} - {b} + {c}")
    data = json.loads(json.dumps(report.to_dict()), parse_constant=lambda x: pytest.fail(f"non-JSON constant {x}"))
    assert data["expression"] == f"{a} - {b} + {c}" and len(data["neighbors"]) == 10
    assert {"rank", "id", "text", "score"} == set(data["neighbors"][0])
