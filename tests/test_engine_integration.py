"""The engine against transformers on the two embedded models (their converted caches).

The same checks as test_engine.py, on real weights: logits (prefill and cached decode steps),
greedy tokens against generate(), hidden states, eager attention weights, tokenizer ids and the
chat template. Gemma 3 270M gets a prompt longer than its 512-token sliding window, so its
local layers really slide. Every expected value is computed here by transformers.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from llmcli.backends.engine import prepared_path
from llmcli.engine import load, load_tokenizer
from tests.test_engine_tokenizer import CONVERSATIONS, HARD_TEXT

pytestmark = pytest.mark.integration

MODELS = ["smollm2", "gemma3-270m"]
LOGITS_TOL = 1e-4
ATTENTION_TOL = 1e-5
TEXT = (
    "The sun rises in the east and sets in the west. Water boils at 100 degrees Celsius at sea "
    "level. In 2024, the capital of France was"
)

_cache: dict = {}


def converted(name: str):
    from llmcli.models import model_dir, resolve

    path, _ = model_dir(resolve(name))
    return path


def pair(name: str):
    """(engine model, transformers model, engine tokenizer) for a model, loaded once per module."""
    if name not in _cache:
        path = converted(name)
        reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        # The weights as a user's run maps them: the engine's prepared layout, from the cache.
        _cache[name] = (load(path, prepared=prepared_path(path, "float32")), reference, load_tokenizer(path))
    return _cache[name]


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


@pytest.mark.parametrize("name", MODELS)
def test_logits_prefill_and_cached_steps(real_cache, name):
    engine, reference, tokenizer = pair(name)
    ids = torch.tensor([tokenizer.encode(TEXT)])
    prompt, steps = ids.shape[1] - 6, 6
    with torch.no_grad():
        full = reference(ids).logits
    assert max_diff(engine(ids, logits_to_keep=0).logits, full) < LOGITS_TOL

    hf_cache, cache = DynamicCache(config=reference.config), engine.new_cache(ids.shape[1])
    with torch.no_grad():
        expected = reference(ids[:, :prompt], cache=hf_cache, use_cache=True).logits[:, -1]
    assert max_diff(engine(ids[:, :prompt], cache).logits[:, -1], expected) < LOGITS_TOL
    for step in range(prompt, prompt + steps):
        with torch.no_grad():
            expected = reference(ids[:, step : step + 1], cache=hf_cache, use_cache=True).logits[:, -1]
        assert max_diff(engine(ids[:, step : step + 1], cache).logits[:, -1], expected) < LOGITS_TOL


@pytest.mark.parametrize("name", MODELS)
def test_greedy_tokens_equal_generate(real_cache, name):
    engine, reference, tokenizer = pair(name)
    ids = torch.tensor([tokenizer.encode(TEXT)])
    with torch.no_grad():
        expected = reference.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False
        )[0, ids.shape[1] :].tolist()
    eos = reference.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    cache = engine.new_cache(ids.shape[1] + 20)
    logits, tokens = engine(ids, cache).logits, []
    while len(tokens) < 20 and (not tokens or tokens[-1] not in eos):
        tokens.append(int(logits[0, -1].argmax()))
        logits = engine(torch.tensor([tokens[-1:]]), cache).logits
    assert tokens == expected


@pytest.mark.parametrize("name", MODELS)
def test_hidden_states(real_cache, name):
    engine, reference, tokenizer = pair(name)
    ids = torch.tensor([tokenizer.encode(TEXT)])
    with torch.no_grad():
        expected = reference(ids, output_hidden_states=True).hidden_states
    got = engine(ids, output_hidden_states=True).hidden_states
    assert len(got) == len(expected) == engine.config.num_layers + 1
    for layer, (a, b) in enumerate(zip(got, expected)):
        # Relative to the layer's largest value: Gemma's residual stream reaches the thousands,
        # where float32 itself resolves only ~1e-4, and the two sides' matrix products sum in
        # different orders (the engine's weights are stored transposed).
        scale = max(1.0, b.abs().max().item())
        assert max_diff(a, b) < LOGITS_TOL * scale, f"hidden state {layer}: {max_diff(a, b):.2e} at scale {scale:.0f}"


@pytest.mark.parametrize("name", MODELS)
def test_attention_weights(real_cache, name):
    engine, _, tokenizer = pair(name)
    eager = AutoModelForCausalLM.from_pretrained(converted(name), dtype=torch.float32, attn_implementation="eager")
    ids = torch.tensor([tokenizer.encode(TEXT)])
    with torch.no_grad():
        expected = eager.eval()(ids, output_attentions=True).attentions
    got = engine(ids, output_attentions=True).attentions
    assert len(got) == len(expected) == engine.config.num_layers
    for layer, (a, b) in enumerate(zip(got, expected)):
        assert max_diff(a, b) < ATTENTION_TOL, f"layer {layer}"


def test_gemma_past_its_sliding_window(real_cache):
    """A prompt longer than the 512-token window: the local layers drop the far past, the global
    ones keep it; logits of the prompt's end and of cached steps after it match transformers."""
    engine, reference, tokenizer = pair("gemma3-270m")
    assert set(engine.config.windows) == {None, 512}
    ids = torch.tensor([tokenizer.encode(" ".join([TEXT] * 20))])[:, :600]
    assert ids.shape[1] == 600
    hf_cache, cache = DynamicCache(config=reference.config), engine.new_cache(ids.shape[1])
    with torch.no_grad():
        expected = reference(ids[:, :-3], cache=hf_cache, use_cache=True).logits[:, -1]
    assert max_diff(engine(ids[:, :-3], cache).logits[:, -1], expected) < LOGITS_TOL
    for step in range(ids.shape[1] - 3, ids.shape[1]):
        with torch.no_grad():
            expected = reference(ids[:, step : step + 1], cache=hf_cache, use_cache=True).logits[:, -1]
        assert max_diff(engine(ids[:, step : step + 1], cache).logits[:, -1], expected) < LOGITS_TOL

    # and the window matters at this length: without it the logits are far off
    unwindowed = load(converted("gemma3-270m"))
    for block in unwindowed.layers:
        block.attn.window = None
    assert max_diff(unwindowed(ids).logits[:, -1], engine(ids).logits[:, -1]) > 1e-2


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("split", [False, True])
def test_tokenizer_ids(real_cache, name, split):
    path = converted(name)
    reference, tokenizer = AutoTokenizer.from_pretrained(path), load_tokenizer(path)
    for text in HARD_TEXT:
        expected = reference(text, split_special_tokens=split).input_ids
        assert tokenizer.encode(text, split_special_tokens=split) == expected, text
        assert tokenizer.decode(expected) == reference.decode(expected)
        assert tokenizer.decode(expected, skip_special_tokens=True) == reference.decode(expected, skip_special_tokens=True)
    assert tokenizer.special_tokens == reference.special_tokens_map
    assert (tokenizer.encode("Hi")[0] == tokenizer.bos_token_id) == (name == "gemma3-270m")


@pytest.mark.parametrize("generation_prompt", [True, False])
def test_smollm2_chat_template(real_cache, generation_prompt):
    path = converted("smollm2")
    reference, tokenizer = AutoTokenizer.from_pretrained(path), load_tokenizer(path)
    for conversation in CONVERSATIONS + [[{"role": "user", "content": "What is the capital of France?"}]]:
        expected = reference.apply_chat_template(conversation, tokenize=False, add_generation_prompt=generation_prompt)
        assert tokenizer.apply_chat_template(conversation, add_generation_prompt=generation_prompt) == expected


def test_gemma_has_no_chat_template(real_cache):
    path = converted("gemma3-270m")
    assert AutoTokenizer.from_pretrained(path).chat_template is None
    assert load_tokenizer(path).chat_template is None
