"""`generate` and the engine on the real embedded models (slow: select with -m integration).

The models are loaded once per module from the user's llmcli cache; the CLI runs in
process against the same cache. Expected values come from transformers directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from llmcli.generation import generate
from llmcli.sampling import SamplingSettings
from llmcli.prompting import build_raw_prompt

pytestmark = pytest.mark.integration

MODELS = ["smollm2", "gemma3-270m"]
RAW_PROMPTS = ["The capital of France is", "def fibonacci(n):", "日本の首都は", "I love pizza 🍕 and"]


@pytest.fixture(scope="module")
def loaded():
    """Both embedded models, loaded once (the first Gemma load converts it: ~45 s, once per machine)."""
    from tests.conftest import USER_CACHE

    from llmcli.models import load_model

    with pytest.MonkeyPatch.context() as mp:
        if USER_CACHE:
            mp.setenv("LLMCLI_CACHE_DIR", USER_CACHE)
        else:
            mp.delenv("LLMCLI_CACHE_DIR", raising=False)
        return {name: load_model(name) for name in MODELS}


def reference_greedy(model, ids, n):
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=n)
    return out[0, len(ids) :].tolist()


def run_cli(cli, *args, input=None):
    result = cli("generate", *args, input=input)
    assert result.exit_code == 0, result.stderr
    return result


@pytest.mark.parametrize("name", MODELS)
def test_cli_greedy_raw_is_token_identical_to_model_generate(cli, real_cache, loaded, name):
    model, tokenizer = loaded[name].model, loaded[name].tokenizer
    result = run_cli(cli, "-m", name, "--raw", "--temperature", "0", "--max-new-tokens", "40", "--json", "The capital of France is")
    data = json.loads(result.stdout)
    assert data["prompt_token_ids"] == tokenizer("The capital of France is")["input_ids"]  # BOS as the tokenizer says
    assert data["token_ids"] == reference_greedy(model, data["prompt_token_ids"], 40)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("text", RAW_PROMPTS)
def test_engine_greedy_is_token_identical_and_streams_whole_characters(loaded, name, text):
    model, tokenizer = loaded[name].model, loaded[name].tokenizer
    ids = build_raw_prompt(tokenizer, text).ids
    generation = generate(model, tokenizer, ids, SamplingSettings(temperature=0, max_new_tokens=40))
    pieces = [event.text for event in generation]
    assert generation.token_ids == reference_greedy(model, ids, 40)
    assert not any("\ufffd" in piece for piece in pieces)
    reply = [i for i in generation.token_ids if i not in generation.end_ids]
    whole = tokenizer.decode(ids + reply)
    assert "".join(pieces) == whole[len(tokenizer.decode(ids)) :]


def test_bos_is_added_once_for_gemma_and_never_for_smollm2(loaded):
    gemma, smol = loaded["gemma3-270m"].tokenizer, loaded["smollm2"].tokenizer
    gemma_ids = build_raw_prompt(gemma, "Hello").ids
    assert gemma_ids[0] == gemma.bos_token_id and gemma_ids.count(gemma.bos_token_id) == 1
    assert smol.bos_token_id not in build_raw_prompt(smol, "Hello").ids


def test_echo_question_to_smollm2_answers_paris(cli, real_cache):
    result = run_cli(cli, "-m", "smollm2", "--temperature", "0", input="What is the capital of France?\n")
    assert "Paris" in result.stdout


def test_json_logprobs_are_the_log_softmax_of_the_logits(cli, real_cache, loaded):
    model = loaded["smollm2"].model
    result = run_cli(cli, "-m", "smollm2", "-t", "0", "-n", "8", "--json", "--logprobs", "5", "What is the capital of France?")
    data = json.loads(result.stdout)
    ids, reply = data["prompt_token_ids"], data["token_ids"]
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(torch.tensor([ids + reply])).logits[0].float(), dim=-1)
    for step, entry in enumerate(data["logprobs"]["content"]):
        expected = logprobs[len(ids) - 1 + step]
        assert entry["logprob"] == pytest.approx(float(expected[reply[step]]), abs=1e-3)
        values, top = torch.topk(expected, 5)
        assert [t["logprob"] for t in entry["top_logprobs"]] == pytest.approx(values.tolist(), abs=1e-3)


def test_seed_reproduces_a_sampled_run(cli, real_cache):
    def run(seed):
        return run_cli(cli, "-m", "smollm2", "--seed", seed, "--temperature", "0.8", "-n", "30", "Tell me about the sea.").stdout

    first = run("7")
    assert first == run("7")
    assert first != run("8")


def test_base_model_chats_through_the_template_and_stops_before_the_next_user_turn(cli, real_cache):
    result = run_cli(cli, "-m", "gemma3-270m", "--chat", "-t", "0", "-n", "60", "--json", "What is the capital of France?")
    data = json.loads(result.stdout)
    assert data["mode"] == "template" and data["prompt"].endswith("User: What is the capital of France?\nAssistant:")
    assert "User:" not in data["text"]
    assert "Paris" in data["text"]


def test_head_c1_exits_cleanly():
    """`llmcli generate "x" | head -c1`: a real pipe, closed while the model is still writing."""
    env = os.environ.copy()
    from tests.conftest import USER_CACHE

    if USER_CACHE:
        env["LLMCLI_CACHE_DIR"] = USER_CACHE
    else:
        env.pop("LLMCLI_CACHE_DIR", None)
    command = f'set -o pipefail; "{sys.executable}" -m llmcli generate -m smollm2 -n 200 "Tell me a long story." | head -c1'
    result = subprocess.run(["bash", "-c", command], capture_output=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    assert len(result.stdout) == 1
    assert b"Traceback" not in result.stderr and b"BrokenPipe" not in result.stderr
