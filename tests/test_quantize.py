"""Weight-only quantization (`--quantize`) and the loading options that turn it on.

The expected values come from direct computations: the float32 model's own logits, and a
float32 matmul with the dequantized weights. No test measures time.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from llmcli.errors import LlmcliError
from llmcli.models import LoadOptions, load_model
from llmcli.quantize import (
    INT4_GROUP_SIZE,
    Int4Linear,
    Int8Linear,
    quantize_int4,
    quantize_int8,
    quantize_model,
)
from tests.tiny_models import TRAINING_TEXT


def dequantize_int8(q, scales):
    return q.float() * scales.float()[:, None]


def dequantize_int4(q, scales, zeros, group=INT4_GROUP_SIZE):
    n, k = q.shape
    groups = (q.float().reshape(n, k // group, group) - 8) * scales.float()[..., None] + zeros.float()[..., None]
    return groups.reshape(n, k)


def probabilities(model, tokenizer, texts):
    """Next-token probabilities at every position of every text, as one [positions, vocab] tensor."""
    rows = []
    with torch.inference_mode():
        for text in texts:
            ids = torch.tensor([tokenizer(text)["input_ids"]])
            rows.append(model(ids).logits[0].float().softmax(-1))
    return torch.cat(rows)


@pytest.fixture(scope="module")
def float32_probs(tiny_model_dir):
    loaded = load_model(str(tiny_model_dir))
    return probabilities(loaded.model, loaded.tokenizer, TRAINING_TEXT)


# ---------------------------------------------------------------- the weights


def test_int8_weights_are_within_half_a_step():
    w = torch.randn(48, 96)
    q, scales = quantize_int8(w)
    assert q.dtype == torch.int8 and q.abs().max() <= 127
    error = (dequantize_int8(q, scales) - w).abs()
    assert (error <= scales.float()[:, None] / 2 * 1.01).all()


def test_int4_weights_are_within_half_a_step():
    w = torch.randn(48, 96)
    q, scales, zeros = quantize_int4(w)
    assert q.min() >= 0 and q.max() <= 15
    step = scales.float().repeat_interleave(INT4_GROUP_SIZE, dim=1)
    # half a step, plus the bfloat16 rounding of the zero point
    zero_rounding = zeros.float().abs().repeat_interleave(INT4_GROUP_SIZE, dim=1) * 2**-8
    assert ((dequantize_int4(q, scales, zeros) - w).abs() <= step / 2 * 1.01 + zero_rounding).all()


@pytest.mark.parametrize("rows", [1, 3, 40])
@pytest.mark.parametrize("bias", [False, True])
def test_quantized_layers_compute_with_their_dequantized_weights(rows, bias):
    """The packed kernels read back exactly the weights the quantizer chose (up to the
    bfloat16 rounding of activations and outputs)."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 48, bias=bias)
    x = torch.randn(2, rows, 96)
    for layer, weight in (
        (Int8Linear.quantize(linear), dequantize_int8(*quantize_int8(linear.weight))),
        (Int4Linear.quantize(linear), dequantize_int4(*quantize_int4(linear.weight))),
    ):
        expected = torch.nn.functional.linear(x, weight, linear.bias)
        got = layer(x)
        assert got.shape == expected.shape and got.dtype == torch.float32
        torch.testing.assert_close(got, expected, rtol=2e-2, atol=2e-2)


# ---------------------------------------------------------------- whole models


def test_int8_model_stays_close_to_float32(tiny_model_dir, float32_probs):
    loaded = load_model(str(tiny_model_dir), LoadOptions(quantize="int8"))
    assert loaded.quantize == "int8"
    assert isinstance(loaded.model.lm_head, Int8Linear)
    assert not any(type(m) is torch.nn.Linear for m in loaded.model.modules())
    probs = probabilities(loaded.model, loaded.tokenizer, TRAINING_TEXT)
    # A random model's distributions are flatter than a trained one's: near-ties flip.
    assert (probs.argmax(-1) == float32_probs.argmax(-1)).float().mean() >= 0.9
    assert (probs - float32_probs).abs().max() < 0.1


def test_int4_is_close_for_weights_on_a_4_bit_grid(tiny_model_dir, float32_probs):
    """GGUF Q4 files store weights on the same grid (groups of 32, a scale and a minimum):
    int4 of such a model changes only the rounding of scales, activations and outputs."""
    loaded = load_model(str(tiny_model_dir))
    with torch.no_grad():
        for module in loaded.model.model.modules():  # the layers; the head is int8 either way
            if type(module) is torch.nn.Linear:
                module.weight.copy_(dequantize_int4(*quantize_int4(module.weight)))
    on_grid = probabilities(loaded.model, loaded.tokenizer, TRAINING_TEXT)
    report = quantize_model(loaded.model, "int4")
    assert report.layers == 2 * 7 + 1 and report.skipped == ()
    assert isinstance(loaded.model.lm_head, Int8Linear)  # the head stays 8-bit
    assert isinstance(loaded.model.model.layers[0].mlp.up_proj, Int4Linear)
    probs = probabilities(loaded.model, loaded.tokenizer, TRAINING_TEXT)
    assert (probs.argmax(-1) == on_grid.argmax(-1)).float().mean() >= 0.9
    assert (probs - on_grid).abs().max() < 0.1


def test_int8_takes_int4_where_it_is_closer(tiny_model_dir):
    """A layer whose weights sit on int4's grid (a layer the file stored at 4 bits) gets int4
    under --quantize int8; a layer of ordinary float weights and the head get int8 rows."""
    loaded = load_model(str(tiny_model_dir))
    on_grid = loaded.model.model.layers[0]
    with torch.no_grad():
        for module in on_grid.modules():
            if type(module) is torch.nn.Linear:
                module.weight.copy_(dequantize_int4(*quantize_int4(module.weight)))
    quantize_model(loaded.model, "int8")
    kinds = lambda layer: {type(m) for m in layer.modules() if isinstance(m, (Int4Linear, Int8Linear))}  # noqa: E731
    assert kinds(on_grid) == {Int4Linear}
    assert kinds(loaded.model.model.layers[1]) == {Int8Linear}
    assert isinstance(loaded.model.lm_head, Int8Linear)


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_parameter_count_survives_quantization(tiny_model_dir, tied, mode):
    """`info` counts the same parameters, part by part, before and after: quantized weights
    are buffers, and a head tied to the embedding is not counted twice."""
    from llmcli.inspect.architecture import count_parameters

    config = AutoModelForCausalLM.from_pretrained(tiny_model_dir).config
    config.tie_word_embeddings = tied
    model = AutoModelForCausalLM.from_config(config)
    expected = count_parameters(model)
    assert sum(expected.values()) == sum(p.numel() for p in model.parameters())
    quantize_model(model, mode)
    assert count_parameters(model) == expected


def test_the_default_load_is_exact(tiny_model_dir, float32_probs):
    """No flag, no change: the model is transformers' own, with float32 logits to the bit."""
    loaded = load_model(str(tiny_model_dir))
    assert loaded.quantize == "none" and not loaded.compiled
    assert isinstance(loaded.model.lm_head, torch.nn.Linear)
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    assert torch.equal(probabilities(reference, loaded.tokenizer, TRAINING_TEXT), float32_probs)


def test_quantize_none_changes_nothing(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = {name: p.clone() for name, p in model.state_dict().items()}
    assert quantize_model(model, "none").layers == 0
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_unknown_mode_is_a_user_error(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with pytest.raises(LlmcliError, match="int3"):
        quantize_model(model, "int3")


# ---------------------------------------------------------------- the command line


def test_every_command_that_loads_a_model_takes_the_speed_options():
    import typer

    from llmcli.cli import app

    group = typer.main.get_command(app)
    ctx = typer.Context(group)
    loading = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)  # commands load on first use
        options = {opt for param in command.params for opt in getattr(param, "opts", [])}
        if "--dtype" in options:
            loading.append(name)
            assert {"--quantize", "--compile"} <= options, name
    assert {"generate", "probs", "chat", "info", "compare"} <= set(loading)


def test_probs_with_int8_shows_the_quantized_model(cli, tiny_model_dir):
    """The table is the quantized model's softmax, computed here directly."""
    r = cli("probs", "The cat", "-m", tiny_model_dir, "--quantize", "int8", "--json")
    assert r.exit_code == 0, r.stderr
    loaded = load_model(str(tiny_model_dir), LoadOptions(quantize="int8"))
    ids = loaded.tokenizer("The cat", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        expected = loaded.model(torch.tensor([ids])).logits[0, -1].float().softmax(-1)
    shown = json.loads(r.stdout)
    assert [t["id"] for t in shown["prompt_tokens"]] == ids
    assert [row["id"] for row in shown["table"]["rows"]] == expected.topk(len(shown["table"]["rows"])).indices.tolist()
    for row in shown["table"]["rows"]:
        assert row["prob"] == pytest.approx(float(expected[row["id"]]), abs=1e-6)


def test_greedy_generate_with_int4_is_the_quantized_models_argmax(cli, tiny_model_dir):
    r = cli("generate", "The cat", "-m", tiny_model_dir, "--quantize", "int4", "-t", "0", "-n", "5", "--raw", "--json")
    assert r.exit_code == 0, r.stderr
    loaded = load_model(str(tiny_model_dir), LoadOptions(quantize="int4"))
    ids = loaded.tokenizer("The cat", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        out = loaded.model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=5)
    assert json.loads(r.stdout)["token_ids"] == out[0, len(ids) :].tolist()


def test_bad_quantize_value_is_a_usage_error(cli, tiny_model_dir):
    r = cli("probs", "The cat", "-m", tiny_model_dir, "--quantize", "int3")
    assert r.exit_code == 2 and "int3" in r.stderr


@pytest.mark.slow
def test_compiled_greedy_tokens_match_eager(tiny_model_dir):
    """--compile changes how the forward runs, not what it computes (tens of seconds: it compiles)."""
    from llmcli.generation import generate
    from llmcli.sampling import SamplingSettings

    import inspect

    eager = load_model(str(tiny_model_dir))
    compiled = load_model(str(tiny_model_dir), LoadOptions(compile=True))  # compiles here, on a warm-up decode
    assert compiled.compiled
    assert "logits_to_keep" in inspect.signature(compiled.model.forward).parameters  # the engine asks
    ids = eager.tokenizer("The cat sat")["input_ids"]
    settings = SamplingSettings(temperature=0, max_new_tokens=12)
    expected = generate(eager.model, eager.tokenizer, ids, settings).run().token_ids
    assert generate(compiled.model, compiled.tokenizer, ids, settings).run().token_ids == expected
