"""`llmcli.inspect.attention` against transformers' own eager `output_attentions`.

The reference is a second copy of each tiny model loaded with `attn_implementation="eager"`
and run with `output_attentions=True`; the model under test is loaded the normal way (sdpa)
and must come back to sdpa afterwards.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from llmcli.errors import BadInput
from llmcli.inspect import attention as at
from tests.tiny_inspect_models import GEMMA_LAYER_TYPES, GEMMA_SLIDING_WINDOW, tiny_gemma_dir  # noqa: F401  (fixture)

TEXT = "The capital of France is Paris. The quick brown fox jumps over the lazy dog."
_LOADED: dict[str, tuple] = {}


@pytest.fixture(params=["llama", "gemma3"])
def models(request, tiny_model_dir, tiny_gemma_dir):  # noqa: F811
    """(loaded model under test, an eager reference copy)."""
    from transformers import AutoModelForCausalLM

    from llmcli.models import load_model

    path = {"llama": tiny_model_dir, "gemma3": tiny_gemma_dir}[request.param]
    if request.param not in _LOADED:
        reference = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", dtype=torch.float32).eval()
        _LOADED[request.param] = (load_model(str(path)), reference)
    return _LOADED[request.param]


def raw_ids(tokenizer, text):
    from llmcli.prompting import build_raw_prompt

    return build_raw_prompt(tokenizer, text).ids


def reference_attentions(reference, ids):
    with torch.no_grad():
        return reference(torch.tensor([ids]), output_attentions=True).attentions


def test_every_layer_and_head_equals_output_attentions(models):
    loaded, reference = models
    ids = raw_ids(loaded.tokenizer, TEXT)
    expected = reference_attentions(reference, ids)
    arch = at.attention_arch(loaded.model)
    worst = 0.0
    for layer in range(arch.num_layers):
        for head in [None, *range(arch.num_heads)]:
            pattern = at.attention_pattern(loaded.model, loaded.tokenizer, ids, layer=layer, head=head)
            weights = torch.tensor(pattern.weights, dtype=torch.float64)
            truth = expected[layer][0].double()
            truth = truth.mean(dim=0) if head is None else truth[head]  # --mean is the mean of the heads
            worst = max(worst, float((weights - truth).abs().max()))
            assert torch.allclose(weights.sum(dim=-1), torch.ones(len(ids), dtype=torch.float64), atol=1e-5)
            assert float(weights.triu(diagonal=1).abs().max()) == 0.0  # the causal mask
    assert worst < 1e-5
    assert loaded.model.config._attn_implementation == "sdpa"  # switched back


def test_architecture_facts(models):
    loaded, _ = models
    arch = at.attention_arch(loaded.model)
    config = loaded.model.config
    assert (arch.num_layers, arch.num_heads, arch.num_kv_heads) == (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads)
    group = config.num_attention_heads // config.num_key_value_heads
    assert arch.kv_groups == tuple(tuple(range(kv * group, (kv + 1) * group)) for kv in range(config.num_key_value_heads))
    if config.model_type.startswith("gemma"):
        assert arch.layer_types == tuple(GEMMA_LAYER_TYPES) and arch.sliding_window == GEMMA_SLIDING_WINDOW
    else:
        assert set(arch.layer_types) == {at.FULL} and arch.sliding_window is None


def test_a_sliding_layer_sees_only_its_window(models):
    loaded, _ = models
    arch = at.attention_arch(loaded.model)
    ids = raw_ids(loaded.tokenizer, TEXT)
    if arch.sliding_window is None:  # Llama: every layer sees back to the first token
        for layer in range(arch.num_layers):
            assert at.attention_pattern(loaded.model, loaded.tokenizer, ids, layer=layer, head=0).weights[-1][0] > 0
        return
    assert len(ids) > arch.sliding_window
    sliding = arch.layer_types.index(at.SLIDING)
    weights = torch.tensor(at.attention_pattern(loaded.model, loaded.tokenizer, ids, layer=sliding, head=0).weights)
    for q in range(len(ids)):
        assert float(weights[q, : max(0, q - arch.sliding_window + 1)].sum()) == 0.0
    full = arch.layer_types.index(at.FULL)
    weights = torch.tensor(at.attention_pattern(loaded.model, loaded.tokenizer, ids, layer=full, head=0).weights)
    assert float(weights[-1, 0]) > 0


def test_top3_and_drop_first(models):
    loaded, reference = models
    ids = raw_ids(loaded.tokenizer, TEXT)
    truth = reference_attentions(reference, ids)[1][0, 2].double()
    plain = at.attention_pattern(loaded.model, loaded.tokenizer, ids, layer=1, head=2)
    for q, top in zip(plain.queries, plain.top):
        order = torch.topk(truth[q, : q + 1], min(3, q + 1))
        assert [a.position for a in top] == order.indices.tolist()
        assert [a.weight for a in top] == pytest.approx(order.values.tolist(), abs=1e-6)
    assert plain.sink == pytest.approx(truth[:, 0].tolist(), abs=1e-6)
    dropped = at.attention_pattern(loaded.model, loaded.tokenizer, ids, layer=1, head=2, drop_first=True)
    assert dropped.queries[0] == 1 and dropped.keys[0] == 1
    renormalised = truth[1:, 1:] / truth[1:, 1:].sum(dim=-1, keepdim=True)
    assert float((torch.tensor(dropped.weights, dtype=torch.float64) - renormalised).abs().max()) < 1e-5
    assert all(a.position != 0 for top in dropped.top for a in top)


def test_a_range_shows_part_of_the_rows_and_says_what_is_hidden(models):
    loaded, reference = models
    ids = raw_ids(loaded.tokenizer, TEXT)
    truth = reference_attentions(reference, ids)[0][0].double().mean(dim=0)
    start, end = 4, 10
    pattern = at.attention_pattern(loaded.model, loaded.tokenizer, ids, layer=0, start=start, end=end)
    assert pattern.queries == pattern.keys == tuple(range(start, end))
    assert float((torch.tensor(pattern.weights, dtype=torch.float64) - truth[start:end, start:end]).abs().max()) < 1e-5
    assert pattern.hidden == pytest.approx(truth[start:end, :start].sum(dim=-1).tolist(), abs=1e-6)


def test_the_head_overview_is_each_heads_mean_entropy(models):
    loaded, reference = models
    ids = raw_ids(loaded.tokenizer, TEXT)
    expected = reference_attentions(reference, ids)
    overview = at.head_overview(loaded.model, loaded.tokenizer, ids)
    for layer, weights in enumerate(expected):
        rows = weights[0, :, 1:].double()
        entropy = -(rows * torch.where(rows > 0, rows.log2(), torch.zeros_like(rows))).sum(dim=-1).mean(dim=-1)
        assert overview.entropy[layer] == pytest.approx(entropy.tolist(), abs=1e-5)
        assert overview.sink[layer] == pytest.approx(rows[:, :, 0].mean(dim=-1).tolist(), abs=1e-6)
    assert overview.uniform_entropy == pytest.approx(sum(math.log2(q + 1) for q in range(1, len(ids))) / (len(ids) - 1))


@pytest.mark.parametrize(
    "kwargs, fragments",
    [
        ({"layer": 99}, ["layer 99", "from 0 to"]),
        ({"layer": -99}, ["layer -99"]),
        ({"head": 4}, ["head 4", "from 0 to 3"]),
        ({"start": 5, "end": 3}, ["positions 5 to 3"]),
        ({"end": 999}, ["positions 0 to 999"]),
    ],
)
def test_out_of_range_indices_say_the_valid_range(models, kwargs, fragments):
    loaded, _ = models
    with pytest.raises(BadInput) as error:
        at.attention_pattern(loaded.model, loaded.tokenizer, raw_ids(loaded.tokenizer, TEXT), **kwargs)
    text = error.value.message + " " + error.value.hint
    assert all(f in text for f in fragments), text


def test_the_json_is_strict(models):
    loaded, _ = models
    pattern = at.attention_pattern(loaded.model, loaded.tokenizer, raw_ids(loaded.tokenizer, TEXT), layer=-1, head=0, drop_first=True)
    data = json.loads(json.dumps(pattern.to_dict()), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert data["layer"] == at.attention_arch(loaded.model).num_layers - 1
    assert data["kv_head"] == 0 and data["arch"]["kv_groups"][0][0] == 0 and "layer_types" in data["arch"]
    assert len(data["weights"]) == len(data["queries"])
