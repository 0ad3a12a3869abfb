"""`--compile` on the engine: the one-token step through torch.compile computes what the eager
step computes, compiles once for every cache size and position, and is what decode steps run.

Expected values come from transformers (float32) and from the same engine run eagerly
(quantized: the kernels' bfloat16 outputs are rounded wherever inductor's fused loops put the
rounding, so the tolerance there is a few bfloat16 steps at the logits' scale).
Slow: each test compiles (seconds on these tiny models, tens of seconds on a real one).
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters
from transformers import AutoModelForCausalLM, DynamicCache

from llmcli.engine import load
from tests.tiny_families import WINDOW, build_family

pytestmark = pytest.mark.slow

LOGITS_TOL = 1e-4
STEPS = 270  # past the 256 rows a RoPE table starts with, and far past the sliding window


def _graphs() -> int:
    return counters["stats"]["unique_graphs"]


def _compiled(path):
    model = load(path)
    model.compile_decode()  # compiles on a throwaway cache (or reuses the graph of a same-shaped model)
    calls = []
    step = model._compiled_step

    def counting(*args):
        calls.append(1)
        return step(*args)

    model._compiled_step = counting
    return model, calls


def _ids(vocab: int, length: int, seed: int) -> torch.Tensor:
    return torch.randint(3, vocab, (1, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["llama", "gemma3_text"])
def test_compiled_steps_match_transformers_and_compile_once(tmp_path, name):
    """Gemma 3's tiny model has a window of 6, two ropes, qk-norm and softcapping: every step
    here crosses what could be a guard (a longer cache, a window full, a table that grows)."""
    path = build_family(name, tmp_path / name)
    model, calls = _compiled(path)
    reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    graphs = _graphs()
    for prompt, steps, seed in ((9, STEPS, 1), (WINDOW + 1, 12, 2)):  # two caches of other sizes than the warm-up's
        ids = _ids(model.config.vocab_size, prompt + steps, seed)
        cache, hf_cache = model.new_cache(prompt + steps), DynamicCache(config=reference.config)
        model(ids[:, :prompt], cache)
        with torch.no_grad():
            reference(ids[:, :prompt], cache=hf_cache, use_cache=True)
        for position in range(prompt, prompt + steps):
            token = ids[:, position : position + 1]
            got = model(token, cache).logits[:, -1]
            with torch.no_grad():
                expected = reference(token, cache=hf_cache, use_cache=True).logits[:, -1]
            assert (got - expected).abs().max().item() < LOGITS_TOL, f"position {position}"
    assert len(calls) == STEPS + 12  # every decode step ran compiled; the prompts ran eagerly
    assert _graphs() == graphs  # and nothing compiled again


def test_prompts_hidden_states_and_attention_stay_eager(tmp_path):
    model, calls = _compiled(build_family("llama", tmp_path / "llama"))
    cache = model.new_cache(16)
    model(_ids(model.config.vocab_size, 5, 3), cache)
    out = model(torch.tensor([[4]]), cache, output_hidden_states=True, output_attentions=True)
    assert calls == [] and len(out.hidden_states) == model.config.num_layers + 1 and len(out.attentions) == model.config.num_layers


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_compiled_quantized_steps_match_eager_quantized(tmp_path, mode):
    from llmcli.quantize import quantize_model

    path = build_family("llama3", tmp_path / "llama3")
    eager = load(path)
    quantize_model(eager, mode)
    model = load(path)
    quantize_model(model, mode)
    model.compile_decode()
    ids = _ids(model.config.vocab_size, 40, 4)
    caches = eager.new_cache(40), model.new_cache(40)
    eager(ids[:, :8], caches[0])
    model(ids[:, :8], caches[1])
    for position in range(8, 40):
        token = ids[:, position : position + 1]
        expected, got = eager(token, caches[0]).logits, model(token, caches[1]).logits
        tolerance = 4 * 2**-8 * expected.abs().max().item()  # 4 bfloat16 steps at the largest logit
        assert (got - expected).abs().max().item() <= tolerance, f"position {position}"


def test_generate_with_compile_gives_the_eager_tokens(cli, tiny_model_dir):
    """Through the command: the engine loads, compiles (saying so on stderr) and decodes the
    same greedy tokens as without --compile."""
    import json

    args = ("generate", "The cat", "-m", tiny_model_dir, "-t", "0", "-n", "12", "--raw", "--json")
    eager = cli(*args)
    compiled = cli(*args, "--compile")
    assert eager.exit_code == 0 and compiled.exit_code == 0, compiled.stderr
    assert "Compiled" in compiled.stderr
    assert json.loads(compiled.stdout)["token_ids"] == json.loads(eager.stdout)["token_ids"]
    assert len(json.loads(eager.stdout)["token_ids"]) >= 5


def test_compile_runs_on_the_engine(tiny_model_dir):
    """--compile no longer sends the model to transformers: the engine compiles its own step."""
    import llmcli

    model = llmcli.load(str(tiny_model_dir), compile=True)
    assert model.backend.engine == "llmcli" and model.backend.engine_model._compiled_step is not None
    assert model.summary().compiled and not llmcli.load(str(tiny_model_dir)).summary().compiled  # the chat header says so


@pytest.mark.parametrize("engine", ["auto", "transformers"])  # both compile paths share the check
def test_compile_without_a_cpp_compiler_is_one_clear_error(tiny_model_dir, tmp_path, engine):
    """In a process of its own: inductor remembers the compiler it found. Fast: the check comes
    before the step is traced."""
    import os
    import subprocess
    import sys

    from tests.failures.matrix import assert_error

    env = {k: v for k, v in os.environ.items() if k != "CXX"} | {"PATH": str(tmp_path)}  # no g++ on it
    argv = [sys.executable, "-m", "llmcli", "generate", "Hi", "-m", str(tiny_model_dir), "--compile", "--engine", engine]
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert_error(r.returncode, r.stdout, r.stderr, "needs a C++ compiler", "install one")
