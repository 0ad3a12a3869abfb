"""score, lens, attention and neighbors on the embedded models, against transformers and torch directly.

Every expected number is recomputed here: transformers' `labels=` loss, `output_hidden_states`
through a hand-written RMSNorm (w for SmolLM2, 1 + w for Gemma) and the head's weight,
`output_attentions` from a copy loaded with `attn_implementation="eager"`, and cosines with
`torch.nn.functional.cosine_similarity`.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.integration

MODELS = ("smollm2", "gemma3-270m")
TEXT = "The Eiffel Tower is in Paris, the capital of France. It was built in 1889 for the World's Fair."
_LOADED: dict[str, object] = {}


@pytest.fixture
def model(real_cache, request):
    from llmcli.models import load_model

    if request.param not in _LOADED:
        _LOADED[request.param] = load_model(request.param)
    return _LOADED[request.param]


def raw_ids(tokenizer, text):
    from llmcli.prompting import build_raw_prompt

    return build_raw_prompt(tokenizer, text).ids


@pytest.mark.parametrize("model", MODELS, indirect=True)
def test_score_nll_is_the_labels_loss_and_tokens_are_log_softmax(model):
    from llmcli.inspect import score as sc

    ids = raw_ids(model.tokenizer, TEXT)
    report = sc.score_text(model.model, model.tokenizer, TEXT)
    with torch.no_grad():
        out = model.model(torch.tensor([ids]), labels=torch.tensor([ids]))
    loss = float(out.loss)
    assert abs(report.scores.totals.mean_nll - loss) / loss < 1e-4
    logits = out.logits[0].double()
    logprobs = torch.log_softmax(logits, dim=-1)
    for token in report.scores.tokens:
        row = token.position - 1
        assert abs(token.logprob - float(logprobs[row, token.id])) < 1e-5
        assert token.rank == 1 + int((logits[row] > logits[row, token.id]).sum())
    assert report.first == ("bos" if model.tokenizer("a")["input_ids"][0] == model.tokenizer.bos_token_id else "unscored")


@pytest.mark.parametrize("model", ["smollm2"], indirect=True)
def test_score_windows_a_long_text(model):
    from llmcli.inspect import score as sc

    ids = raw_ids(model.tokenizer, TEXT * 6)
    scores = sc.score_ids(model.model, model.tokenizer, ids, window=64, stride=16)
    assert scores.windows > 1 and [t.position for t in scores.tokens] == list(range(1, len(ids)))
    for token in scores.tokens[:: max(1, len(scores.tokens) // 12)]:
        before = ids[token.position - token.context : token.position]
        assert min(token.position, 16) <= len(before) < 64
        with torch.no_grad():
            expected = torch.log_softmax(model.model(torch.tensor([before])).logits[0, -1].double(), -1)[token.id]
        assert abs(token.logprob - float(expected)) < 1e-5


@pytest.mark.parametrize("model", MODELS, indirect=True)
def test_lens_matches_a_direct_computation_and_the_model(model):
    """The reference is written out in the model's own float32, as the model computes. In float64
    it differs on Gemma's embedding row by up to ~1e-4: its √640-scaled, normed vectors give
    logits in the hundreds, and float32 rounds those by ~1e-5 — the model's own rounding, which
    its last layer has too. On an AVX-512 Xeon the model's float32 products round differently
    from this reference's by up to ~1e-4 of probability as well (on the AMD EPYC, under 1e-5),
    and the lens's last row from the model's own output by ~1e-6 (its head runs over all positions
    at once, in another kernel); a lens that skipped the norm or its scale would be off by whole
    percents."""
    from llmcli.inspect import lens as ln

    net = model.model
    ids = raw_ids(model.tokenizer, TEXT)
    report = ln.logit_lens(net, model.tokenizer, ids, top_k=10)
    with torch.no_grad():
        out = net(torch.tensor([ids]), output_hidden_states=True)
    config = net.config
    own = torch.softmax(out.logits[0].double(), dim=-1)
    for dtype, tolerance in ((torch.float32, 5e-4), (torch.float64, 1e-3)):
        weight = net.model.norm.weight.detach().to(dtype)
        scale = 1 + weight if config.model_type.startswith("gemma") else weight
        head = net.lm_head.weight.detach().to(dtype)
        worst_layer = worst_last = 0.0
        for row, state in zip(report.rows, out.hidden_states):
            h = state[0].to(dtype)
            if row.layer < report.num_layers - 1:  # the last state comes back already normed
                h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + config.rms_norm_eps) * scale
            p = torch.softmax((h @ head.T).double(), dim=-1)
            for cell in row.cells:
                worst_layer = max(worst_layer, max(abs(t.prob - float(p[cell.position, t.id])) for t in cell.top))
                if row.layer == report.num_layers - 1:
                    worst_last = max(worst_last, max(abs(t.prob - float(own[cell.position, t.id])) for t in cell.top))
        assert worst_layer < tolerance and worst_last < 1e-5, (dtype, worst_layer, worst_last)


@pytest.mark.parametrize("model", MODELS, indirect=True)
def test_attention_is_eager_output_attentions(model):
    from transformers import AutoModelForCausalLM

    from llmcli.inspect import attention as at

    ids = raw_ids(model.tokenizer, TEXT)
    reference = AutoModelForCausalLM.from_pretrained(model.path, attn_implementation="eager", dtype=torch.float32).eval()
    with torch.no_grad():
        expected = reference(torch.tensor([ids]), output_attentions=True).attentions
    arch = at.attention_arch(model.model)
    assert arch.num_heads // arch.num_kv_heads == {"smollm2": 3, "gemma3-270m": 4}[model.label]
    for layer in (0, arch.num_layers // 2, arch.num_layers - 1):
        for head in (None, 0, arch.num_heads - 1):
            weights = torch.tensor(at.attention_pattern(model.model, model.tokenizer, ids, layer=layer, head=head).weights, dtype=torch.float64)
            truth = expected[layer][0].double()
            truth = truth.mean(dim=0) if head is None else truth[head]
            assert float((weights - truth).abs().max()) < 1e-5
            assert float((weights.sum(-1) - 1).abs().max()) < 1e-5 and float(weights.triu(1).abs().max()) == 0
    assert model.model.config._attn_implementation != "eager"


@pytest.mark.parametrize("model", MODELS, indirect=True)
def test_neighbors_and_analogy_are_direct_cosines(model):
    from llmcli.inspect import neighbors as nb

    tokenizer = model.tokenizer
    E = model.model.get_input_embeddings().weight.detach().float()
    near = nb.nearest(model.model, tokenizer, "tower", k=10)
    (query,) = near.positive[0].ids
    scores = F.cosine_similarity(E, E[query][None], dim=-1)
    assert query not in [n.id for n in near.neighbors]
    assert max(abs(n.score - float(scores[n.id])) for n in near.neighbors) < 1e-5
    mask = nb.candidate_mask(tokenizer, E.shape[0], all_pieces=False)
    mask[query] = False
    assert [n.id for n in near.neighbors] == torch.topk(torch.where(mask, scores, torch.tensor(-2.0)), 10).indices.tolist()

    report = nb.analogy(model.model, tokenizer, "king - man + woman", k=5)
    ids = [w.ids[0] for w in (*report.positive, *report.negative)]  # king, woman, man
    unit = E / E.norm(dim=-1, keepdim=True)
    target = unit[ids[0]] + unit[ids[1]] - unit[ids[2]]
    scores = F.cosine_similarity(E, target[None], dim=-1)
    assert max(abs(n.score - float(scores[n.id])) for n in report.neighbors) < 1e-5
    assert report.neighbors[0].text == " queen"


@pytest.mark.parametrize("model", MODELS, indirect=True)
def test_the_four_commands_run_on_the_real_model(cli, model, tmp_path):
    alias = model.label
    for args in (["score", TEXT], ["lens", "The capital of France is", "--grid"], ["attention", TEXT], ["neighbors", "tower"]):
        svg = tmp_path / f"{args[0]}.svg"
        result = cli(*args, "-m", alias, "--svg", svg)
        assert result.exit_code == 0, result.stderr
        assert "France" in svg.read_text(encoding="utf-8") or args[0] == "neighbors"
        data = json.loads(cli(*args, "-m", alias, "--json").stdout)
        if args[0] in ("score", "neighbors"):  # the commands that take -m A -m B print a list, always
            (data,) = data
        assert data["model"] == alias
