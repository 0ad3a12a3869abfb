"""The engine against transformers, on a tiny random model of every family it implements.

Every expected value is computed here by transformers (the reference) on the same saved model;
nothing is copied from an earlier run. The prompts are longer than the tiny models' sliding
windows (tiny_families.WINDOW), so a window applied wrongly shows in the numbers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache

from llmcli.engine import UnsupportedModel, load
from tests.tiny_families import FAMILIES, WINDOW, build_family

LOGITS_TOL = 1e-4
ATTENTION_TOL = 1e-5
PROMPT = 14  # tokens, more than twice the window
STEPS = 8  # cached decode steps compared one by one


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {name: build_family(name, root / name) for name in FAMILIES}


_loaded: dict = {}


def models(family_dirs, name, attn="sdpa"):
    """(engine model, transformers model) for a family, loaded once per module."""
    key = (name, attn)
    if key not in _loaded:
        path = family_dirs[name]
        reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=attn).eval()
        _loaded[key] = (load(path), reference)
    return _loaded[key]


def prompt_ids(vocab: int, length: int = PROMPT, batch: int = 1, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (batch, length), generator=generator)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


@pytest.mark.parametrize("name", FAMILIES)
def test_prefill_logits_match_transformers(family_dirs, name):
    engine, reference = models(family_dirs, name)
    ids = prompt_ids(engine.config.vocab_size, batch=2)
    with torch.no_grad():
        expected = reference(ids).logits
    got = engine(ids, logits_to_keep=0).logits
    assert got.dtype == torch.float32
    assert max_diff(got, expected) < LOGITS_TOL
    # the default keeps the last position only, as generation needs
    assert max_diff(engine(ids).logits, expected[:, -1:]) < LOGITS_TOL


@pytest.mark.parametrize("name", ["llama", "qwen3", "gemma3_text"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_follows_transformers_casts(family_dirs, name, dtype):
    """In 16 bits the order of casts shows: Llama's norm casts x̂ down before scaling, Gemma's
    scales in float32, and both sides round their weights the same way."""
    path = family_dirs[name]
    reference = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
    ids = prompt_ids(reference.config.get_text_config().vocab_size, seed=8)
    with torch.no_grad():
        expected = reference(ids).logits
    assert max_diff(load(path, dtype=dtype)(ids, logits_to_keep=0).logits, expected) < 1e-3


@pytest.mark.parametrize("name", FAMILIES)
def test_cached_decode_steps_match_transformers(family_dirs, name):
    """A prefill, then one token at a time through each side's own cache; every step compared."""
    engine, reference = models(family_dirs, name)
    ids = prompt_ids(engine.config.vocab_size, PROMPT + STEPS, seed=2)
    hf_cache = DynamicCache(config=reference.config)
    cache = engine.new_cache(max_tokens=PROMPT + STEPS)
    with torch.no_grad():
        expected = reference(ids[:, :PROMPT], cache=hf_cache, use_cache=True).logits[:, -1]
    assert max_diff(engine(ids[:, :PROMPT], cache).logits[:, -1], expected) < LOGITS_TOL
    for step in range(PROMPT, PROMPT + STEPS):
        token = ids[:, step : step + 1]
        with torch.no_grad():
            expected = reference(token, cache=hf_cache, use_cache=True).logits[:, -1]
        assert max_diff(engine(token, cache).logits[:, -1], expected) < LOGITS_TOL, f"step {step}"
    assert cache.length == PROMPT + STEPS


@pytest.mark.parametrize("name", FAMILIES)
def test_greedy_tokens_match_generate(family_dirs, name):
    engine, reference = models(family_dirs, name)
    ids = prompt_ids(engine.config.vocab_size, 5, seed=3)
    with torch.no_grad():
        generated = reference.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False, pad_token_id=0
        )[0, ids.shape[1] :].tolist()
    eos = reference.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])

    cache = engine.new_cache(max_tokens=ids.shape[1] + 20)
    logits, tokens = engine(ids, cache).logits, []
    for _ in range(20):
        token = int(logits[0, -1].argmax())
        tokens.append(token)
        if token in eos:
            break
        logits = engine(torch.tensor([[token]]), cache).logits
    assert tokens == generated
    assert len(tokens) >= 5  # the comparison is about a real stretch of decoding


@pytest.mark.parametrize("name", FAMILIES)
def test_hidden_states_match_output_hidden_states(family_dirs, name):
    engine, reference = models(family_dirs, name)
    ids = prompt_ids(engine.config.vocab_size, seed=4)
    with torch.no_grad():
        expected = reference(ids, output_hidden_states=True).hidden_states
    got = engine(ids, output_hidden_states=True).hidden_states
    assert len(got) == len(expected) == engine.config.num_layers + 1
    for layer, (a, b) in enumerate(zip(got, expected)):
        assert max_diff(a, b) < LOGITS_TOL, f"hidden state {layer}"
    # the last one is after the final norm: the head applied to it gives the logits
    head = engine.lm_head(got[-1][:, -1:]).float()
    if engine.config.final_logit_softcapping:
        cap = engine.config.final_logit_softcapping
        head = torch.tanh(head / cap) * cap
    assert max_diff(head, engine(ids).logits) < 1e-5


@pytest.mark.parametrize("name", FAMILIES)
def test_attention_weights_match_eager_output_attentions(family_dirs, name):
    engine, reference = models(family_dirs, name, attn="eager")
    ids = prompt_ids(engine.config.vocab_size, seed=5)
    with torch.no_grad():
        expected = reference(ids, output_attentions=True).attentions
    got = engine(ids, output_attentions=True).attentions
    assert len(got) == len(expected) == engine.config.num_layers
    for layer, (a, b) in enumerate(zip(got, expected)):
        assert max_diff(a, b) < ATTENTION_TOL, f"layer {layer}"
        assert torch.allclose(a.sum(-1), torch.ones(()), atol=1e-5)
        if engine.config.windows[layer] is not None:  # the window hides the far past exactly
            assert a[0, :, -1, : PROMPT - WINDOW].abs().max() == 0

    # A cached decode step's weights are the last row of the full sequence's.
    cache = engine.new_cache(max_tokens=PROMPT)
    engine(ids[:, :-1], cache)
    step = engine(ids[:, -1:], cache, output_attentions=True).attentions
    for layer, (a, b) in enumerate(zip(step, expected)):
        assert max_diff(a, b[:, :, -1:]) < ATTENTION_TOL, f"decode step, layer {layer}"


# config.json as older transformers and hub checkpoints write it; transformers fills in the rest
# from its config classes' defaults and __post_init__, which the engine must reproduce.
OLDER_CONFIGS = {
    "gemma3 flat rope keys, window pattern": (
        "gemma3_text",
        {"sliding_window_pattern": 3, "rope_theta": 200000.0, "rope_local_base_freq": 500.0},
        ("layer_types", "rope_parameters", "_sliding_window_pattern"),
    ),
    "llama rope_scaling with 'type'": (
        "llama3",
        {
            "rope_theta": 5000.0,
            "rope_scaling": {
                "type": "llama3",
                "factor": 4.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 32,
            },
        },
        ("rope_parameters",),
    ),
    "qwen2 window switched off": ("qwen2", {"use_sliding_window": False, "max_window_layers": 0}, ("layer_types",)),
    "qwen2 window from max_window_layers": ("qwen2", {"max_window_layers": 2}, ("layer_types",)),
    "mistral no window": ("mistral", {"sliding_window": None}, ()),
    "mistral attention_bias ignored": ("mistral", {"attention_bias": True}, ()),
    "qwen3 top-level rope_theta": ("qwen3", {"rope_theta": 30000.0}, ("rope_parameters",)),
}


@pytest.mark.parametrize("variant", OLDER_CONFIGS)
def test_older_config_formats_read_as_transformers_reads_them(family_dirs, tmp_path, variant):
    name, changes, removed = OLDER_CONFIGS[variant]
    path = tmp_path / name
    shutil.copytree(family_dirs[name], path)
    config = json.loads((path / "config.json").read_text())
    config = {k: v for k, v in config.items() if k not in removed} | changes
    (path / "config.json").write_text(json.dumps(config))
    reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    ids = prompt_ids(reference.config.vocab_size, seed=9)
    with torch.no_grad():
        expected = reference(ids).logits
    assert max_diff(load(path)(ids, logits_to_keep=0).logits, expected) < LOGITS_TOL


@pytest.mark.parametrize("name", ["mistral", "qwen2", "gemma3_text"])
def test_sliding_window_changes_the_logits(family_dirs, name):
    """The parity above means something: with the windows switched off the logits move well past
    the tolerance, so the prompts are long enough for the windows to matter."""
    engine = load(family_dirs[name])
    ids = prompt_ids(engine.config.vocab_size, seed=6)
    windowed = engine(ids).logits
    for block in engine.layers:
        block.attn.window = None
    assert max_diff(engine(ids).logits, windowed) > 100 * LOGITS_TOL


def test_gemma_softcapping_is_applied(family_dirs):
    engine, reference = models(family_dirs, "gemma3_text")
    cap = engine.config.final_logit_softcapping
    assert cap == 3.0
    ids = prompt_ids(engine.config.vocab_size, seed=7)
    logits = engine(ids, logits_to_keep=0).logits
    assert logits.abs().max() < cap
    raw = engine.lm_head(engine(ids, output_hidden_states=True).hidden_states[-1]).float()
    assert raw.abs().max() > 1.5 * cap  # the cap bends real logits, it is not a no-op here


def test_gemma3_wrapper_with_transformers5_key_names(family_dirs, tmp_path):
    """transformers saves the multimodal wrapper's text model under `language_model.model.`; a
    checkpoint written with its in-memory names (`model.language_model.`) loads the same."""
    from safetensors.torch import load_file, save_file

    source = family_dirs["gemma3"]
    renamed = tmp_path / "renamed"
    shutil.copytree(source, renamed)
    state = load_file(source / "model.safetensors")
    state = {k.replace("language_model.model.", "model.language_model.", 1): v for k, v in state.items()}
    save_file(state, renamed / "model.safetensors", metadata={"format": "pt"})
    ids = prompt_ids(64)
    assert max_diff(load(renamed)(ids).logits, load(source)(ids).logits) == 0


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_llmcli_quantize_works_on_the_engine(family_dirs, mode):
    """The engine's layers are plain nn.Linear: llmcli.quantize swaps them as it does a
    transformers model's, and the fused layers quantize to the same numbers as the separate ones
    (int8 scales are per row, int4 groups run along the inputs)."""
    from llmcli.quantize import quantize_model

    path = family_dirs["llama3"]
    engine = load(path)
    reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    report, expected_report = quantize_model(engine, mode), quantize_model(reference, mode)
    assert report.layers == 3 * 4 + 1  # qkv, o, gate_up, down per layer, and the head
    assert (report.bytes_before, report.bytes_after) == (expected_report.bytes_before, expected_report.bytes_after)
    ids = prompt_ids(engine.config.vocab_size, seed=10)
    with torch.no_grad():
        expected = reference(ids).logits
    assert max_diff(engine(ids, logits_to_keep=0).logits, expected) < LOGITS_TOL


def test_tied_and_untied_heads(family_dirs):
    tied = load(family_dirs["llama"])
    untied = load(family_dirs["llama3"])
    assert tied.lm_head.weight is tied.embed.weight
    assert untied.lm_head.weight is not untied.embed.weight


def test_unsupported_models_raise(family_dirs, tmp_path):
    def variant(name: str, **changes) -> object:
        path = tmp_path / name
        shutil.copytree(family_dirs["llama"], path)
        config = json.loads((path / "config.json").read_text())
        config.update(changes)
        (path / "config.json").write_text(json.dumps(config))
        return path

    with pytest.raises(UnsupportedModel, match="gpt2"):
        load(variant("gpt2", model_type="gpt2"))
    with pytest.raises(UnsupportedModel, match="yarn"):
        load(variant("yarn", rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0}))
    with pytest.raises(UnsupportedModel, match="activation"):
        load(variant("relu", hidden_act="relu"))
    with pytest.raises(UnsupportedModel, match="do not fit"):
        load(variant("shapes", intermediate_size=96))
    missing = variant("no-weights")
    (missing / "model.safetensors").unlink()
    with pytest.raises(UnsupportedModel, match="safetensors"):
        load(missing)


def test_cache_overflow_is_a_clear_error(family_dirs):
    engine = load(family_dirs["llama"])
    cache = engine.new_cache(max_tokens=4)
    engine(prompt_ids(64, 3), cache)
    with pytest.raises(ValueError, match="holds 4 tokens"):
        engine(prompt_ids(64, 2), cache)


def test_engine_does_not_import_transformers(family_dirs):
    """Model, tokenizer and chat template, in a fresh interpreter: transformers never loads."""
    code = textwrap.dedent(
        f"""
        import sys, torch
        from llmcli.engine import load
        from llmcli.engine.tokenizer import load_tokenizer
        path = {str(family_dirs["llama"])!r}
        model = load(path)
        tokenizer = load_tokenizer(path)
        text = tokenizer.apply_chat_template([{{"role": "user", "content": "Hi"}}], add_generation_prompt=True)
        model(torch.tensor([tokenizer.encode(text)]), model.new_cache(64), output_attentions=True)
        print(sorted(m for m in sys.modules if m.split(".")[0] == "transformers"))
        """
    )
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=root)
    assert result.stdout.strip() == "[]"
