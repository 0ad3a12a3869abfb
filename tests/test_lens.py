"""`llmcli.inspect.lens` on tied, untied and Gemma 3 tiny models, against a direct computation.

The reference writes the final RMSNorm out by hand (`x * rsqrt(mean(x²) + eps) * w` for Llama,
`* (1 + w)` for Gemma), multiplies by the head's weight and applies the softcap, all in float64
from `output_hidden_states`; the last layer is compared with the model's own logits.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from llmcli.errors import BadInput
from llmcli.inspect import lens as ln
from tests.tiny_inspect_models import tiny_gemma_dir, untied_llama_dir  # noqa: F401  (fixtures)

PROMPT = "The capital of France is"
_LOADED: dict[str, object] = {}


@pytest.fixture(params=["tied", "untied", "gemma3"])
def loaded(request, tiny_model_dir, untied_llama_dir, tiny_gemma_dir):  # noqa: F811
    from llmcli.models import load_model

    path = {"tied": tiny_model_dir, "untied": untied_llama_dir, "gemma3": tiny_gemma_dir}[request.param]
    if request.param not in _LOADED:
        _LOADED[request.param] = load_model(str(path))
    return _LOADED[request.param]


def raw_ids(tokenizer, text):
    from llmcli.prompting import build_raw_prompt

    return build_raw_prompt(tokenizer, text).ids


def direct_lens(model, ids) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per hidden state (embeddings first): softmax(head(norm(h))) in float64; and the model's own probabilities."""
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True)
    config = model.config
    gemma = config.model_type.startswith("gemma")
    weight = model.model.norm.weight.detach().double()
    scale = (1 + weight) if gemma else weight
    head = model.lm_head.weight.detach().double()
    cap = getattr(config, "final_logit_softcapping", None)
    layers = []
    for index, state in enumerate(out.hidden_states):
        h = state[0].double()
        if index < len(out.hidden_states) - 1:  # the last state comes back already normed
            h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + config.rms_norm_eps) * scale
        logits = h @ head.T
        if cap:
            logits = torch.tanh(logits / cap) * cap
        layers.append(torch.softmax(logits, dim=-1))
    return layers, torch.softmax(out.logits[0].double(), dim=-1)


def test_every_layer_equals_a_direct_computation_and_the_last_the_model(loaded):
    ids = raw_ids(loaded.tokenizer, PROMPT)
    report = ln.logit_lens(loaded.model, loaded.tokenizer, ids, top_k=8)
    layers, own = direct_lens(loaded.model, ids)
    assert report.num_layers == loaded.model.config.num_hidden_layers == len(layers) - 1
    assert [row.layer for row in report.rows] == list(range(-1, report.num_layers))
    for row, expected in zip(report.rows, layers):
        for cell in row.cells:
            p = expected[cell.position]
            assert [t.id for t in cell.top] == torch.topk(p, 8).indices.tolist()
            assert max(abs(t.prob - float(p[t.id])) for t in cell.top) < 1e-5
            assert cell.entropy == pytest.approx(float(torch.special.entr(p).sum()), abs=1e-5)
            final = own[cell.position]
            assert cell.kl == pytest.approx(float((final * (final.log() - p.log())).sum()), abs=1e-5)
    last = report.rows[-1]
    for cell in last.cells:
        assert max(abs(t.prob - float(own[cell.position, t.id])) for t in cell.top) < 1e-6
        assert cell.kl == pytest.approx(0, abs=1e-9) and cell.answer_rank == 1
    assert [a.id for a in report.answers] == own.argmax(-1).tolist()


def test_the_norm_and_softcap_are_the_models_own(loaded):
    report = ln.logit_lens(loaded.model, loaded.tokenizer, raw_ids(loaded.tokenizer, PROMPT))
    assert report.norm == type(loaded.model.model.norm).__name__
    assert report.softcap == getattr(loaded.model.config, "final_logit_softcapping", None)
    assert report.tied == (loaded.model.lm_head.weight.data_ptr() == loaded.model.model.embed_tokens.weight.data_ptr())


def test_first_top1_and_settled_follow_the_answers_rank(loaded):
    ids = raw_ids(loaded.tokenizer, PROMPT)
    report = ln.logit_lens(loaded.model, loaded.tokenizer, ids)
    layers, own = direct_lens(loaded.model, ids)
    for j, position in enumerate(report.positions):
        answer = int(own[position].argmax())
        ranks = [1 + int((p[position] > p[position, answer]).sum()) for p in layers]
        assert [c.answer_rank for c in report.column(position)] == ranks
        assert report.first_top1[j] == ranks.index(1) - 1
        settled = report.settled[j] + 1  # index into ranks
        assert all(r == 1 for r in ranks[settled:]) and (settled == 0 or ranks[settled - 1] != 1)


def test_a_target_is_followed_across_layers(loaded):
    tokenizer = loaded.tokenizer
    ids = raw_ids(tokenizer, PROMPT)
    position = len(ids) - 1
    report = ln.logit_lens(loaded.model, tokenizer, ids, positions=[position], target=" Paris")
    target_ids = tokenizer(" Paris", add_special_tokens=False)["input_ids"]
    assert report.target.id == target_ids[0] and report.target.pieces == len(target_ids) and report.target.source == "target"
    layers, _ = direct_lens(loaded.model, ids)
    for cell, p in zip(report.column(position), layers):
        assert cell.target_rank == 1 + int((p[position] > p[position, target_ids[0]]).sum())
        assert abs(cell.target_prob - float(p[position, target_ids[0]])) < 1e-5


def test_at_an_earlier_position_the_token_that_came_next_is_the_target(loaded):
    ids = raw_ids(loaded.tokenizer, PROMPT)
    report = ln.logit_lens(loaded.model, loaded.tokenizer, ids, positions=[1])
    assert report.target.source == "next" and report.target.id == ids[2]


def test_layers_thin_the_rows_but_keep_the_embeddings_and_the_last(loaded):
    ids = raw_ids(loaded.tokenizer, PROMPT)
    n = loaded.model.config.num_hidden_layers
    layers = ln.parse_layers("0:1", n)
    report = ln.logit_lens(loaded.model, loaded.tokenizer, ids, layers=layers)
    assert [row.layer for row in report.rows] == [-1, 0, n - 1] if n > 1 else [-1, 0]
    full = ln.logit_lens(loaded.model, loaded.tokenizer, ids)
    assert report.first_top1 == full.first_top1  # computed over every layer whatever is shown


@pytest.mark.parametrize("spec, expected", [("0:30:3", (0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 29)), ("::10", (0, 10, 20, 29)), ("-3:", (27, 28, 29)), ("0,5,9", (0, 5, 9, 29)), ("29", (29,))])
def test_parse_layers(spec, expected):
    assert ln.parse_layers(spec, 30) == expected


@pytest.mark.parametrize("spec", ["a:b", "0:30:0", "1:2:3:4", "40", "-31", "5:5", ""])
def test_parse_layers_refuses_nonsense(spec):
    with pytest.raises(BadInput, match="layers"):
        ln.parse_layers(spec, 30)


def test_bad_inputs(loaded):
    with pytest.raises(BadInput, match="empty"):
        ln.logit_lens(loaded.model, loaded.tokenizer, [])
    with pytest.raises(BadInput, match="target"):
        ln.logit_lens(loaded.model, loaded.tokenizer, raw_ids(loaded.tokenizer, PROMPT), target="")
    with pytest.raises(BadInput, match="top_k"):
        ln.logit_lens(loaded.model, loaded.tokenizer, raw_ids(loaded.tokenizer, PROMPT), top_k=0)


def test_the_json_is_strict(loaded):
    report = ln.logit_lens(loaded.model, loaded.tokenizer, raw_ids(loaded.tokenizer, PROMPT), target=" Paris")
    data = json.loads(json.dumps(report.to_dict()), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    cell = data["rows"][0]["cells"][0]
    assert {"top", "entropy", "entropy_bits", "kl", "answer_rank", "target_rank", "target_prob"} <= set(cell)
    assert data["rows"][0]["label"] == "embed"
    assert cell["entropy_bits"] == pytest.approx(cell["entropy"] / math.log(2))
