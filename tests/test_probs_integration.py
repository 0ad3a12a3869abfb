"""`llmcli probs` on the embedded models, checked against torch on the same models' logits.

Every expected number is recomputed here from a plain forward pass; nothing is hard-coded
except the one fact the issue names: SmolLM2 puts " Paris" first after "The capital of France is".
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.integration

MODELS = ("smollm2", "gemma3-270m")
PROMPT = "The capital of France is"
_LOADED: dict[str, object] = {}


@pytest.fixture
def model(real_cache, request):
    """An embedded model as `llmcli probs` loads it (the engine, by default), kept for the
    whole module. The expected numbers below are computed here from its own logits; that
    those logits are transformers' (within 1e-4) is tests/test_engine_integration.py's."""
    import llmcli

    alias = request.param
    if alias not in _LOADED:
        _LOADED[alias] = llmcli.load(alias)
    return _LOADED[alias]


def probs_json(cli, alias: str, *args: str) -> dict:
    result = cli("probs", "-m", alias, *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def logits_after(model, text: str) -> tuple[list[int], torch.Tensor]:
    ids = list(model.prompt(text, mode="raw").ids)
    with torch.no_grad():
        logits = model.logits(ids)[-1].float()
    return ids, logits


def renormalised(dist: torch.Tensor, kept: set[int]) -> torch.Tensor:
    mask = torch.zeros_like(dist, dtype=torch.bool)
    mask[list(kept)] = True
    out = torch.where(mask, dist, torch.zeros_like(dist))
    return out / out.sum()


@pytest.mark.parametrize("model", ["smollm2"], indirect=True)
def test_smollm2_puts_paris_first_and_target_agrees(cli, model):
    data = probs_json(cli, "smollm2", PROMPT, "--target", " Paris")
    first = data["table"]["rows"][0]
    assert first["text"] == " Paris" and first["rank"] == 1
    (target,) = data["targets"]
    (token,) = target["tokens"]
    assert token["id"] == first["id"] and token["rank"] == 1
    assert abs(token["prob"] - first["prob"]) < 1e-6
    assert abs(token["logit"] - first["logit"]) < 1e-4
    _, logits = logits_after(model, PROMPT)
    # float64: a float32 softmax over 49,152 logits is itself off by several 1e-6
    assert abs(first["prob"] - float(torch.softmax(logits.double(), -1)[first["id"]])) < 1e-6
    shown = cli("probs", "-m", "smollm2", PROMPT)
    first_row = next(line for line in shown.stdout.splitlines() if line.split()[:1] == ["1"])
    assert first_row.split()[:2] == ["1", "·Paris"]


@pytest.mark.parametrize("model", MODELS, indirect=True)
def test_every_probability_is_softmax_of_the_logits(cli, model):
    alias = model.label
    data = probs_json(cli, alias, PROMPT, "--num", "20", "--temperature", "0,0.5,1,1.5")
    ids, logits = logits_after(model, PROMPT)
    assert [t["id"] for t in data["prompt_tokens"]] == ids
    rows = data["table"]["rows"]
    top = [r["id"] for r in rows]
    assert top == torch.topk(logits, 20).indices.tolist()
    for column in data["table"]["columns"]:
        t = column["temperature"]
        if t == 0:
            expected = torch.zeros(20)
            expected[0] = 1
        else:
            full = torch.softmax(logits.double() / t, -1)
            expected = full[top]
            entropy = float(torch.special.entr(full).sum())
            assert abs(column["entropy"] - entropy) < 1e-4
        assert max(abs(a - float(b)) for a, b in zip(column["probs"], expected)) < 1e-6
        assert max(abs(a - float(b)) for a, b in zip(column["cumulative"], torch.cumsum(expected, 0))) < 1e-6
        assert abs(column["coverage"] - float(expected.sum())) < 1e-6


@pytest.mark.parametrize("model", MODELS, indirect=True)
def test_top_p_and_min_p_survivors_are_the_definitions(cli, model):
    alias = model.label
    data = probs_json(cli, alias, PROMPT, "--temperature", "1.3", "--top-p", "0.8", "--min-p", "0.02")
    _, logits = logits_after(model, PROMPT)
    dist = torch.softmax(logits.double() / 1.3, -1)
    stages = {s["name"]: s for s in data["sampler"]["stages"]}
    order = torch.argsort(dist, descending=True)
    before = torch.cumsum(dist[order], 0) - dist[order]
    nucleus = set(order[before < 0.8].tolist())  # the smallest prefix holding at least 0.8
    assert set(stages["top-p"]["survivor_ids"]) == nucleus
    dist = renormalised(dist, nucleus)
    close = set(torch.nonzero(dist >= 0.02 * dist.max()).flatten().tolist())
    assert set(stages["min-p"]["survivor_ids"]) == close
    dist = renormalised(dist, close)
    for stage in (stages["top-p"], stages["min-p"]):
        assert abs(sum(stage["survivor_probs"]) - 1) < 1e-6
    for i, p in zip(stages["min-p"]["survivor_ids"], stages["min-p"]["survivor_probs"]):
        assert abs(p - float(dist[i])) < 1e-6


@pytest.mark.parametrize("alias", MODELS)
def test_greedy_steps_are_what_generate_produces(cli, real_cache, alias):
    steps = probs_json(cli, alias, PROMPT, "--steps", "10", "--temperature", "0")
    result = cli("generate", "-m", alias, "--raw", "--temperature", "0", "--max-new-tokens", "10", "--json", PROMPT)
    assert result.exit_code == 0, result.stderr
    generated = json.loads(result.stdout)
    assert [s["id"] for s in steps["steps"]["steps"]] == generated["token_ids"]
    assert steps["steps"]["text"] == generated["text"]


def test_prompts_at_the_edges(cli, real_cache):
    for prompt in (" ", "\n\n"):
        result = cli("probs", "-m", "smollm2", prompt)
        assert result.exit_code == 0, result.stderr
    empty = cli("probs", "-m", "smollm2", "")
    assert empty.exit_code == 1 and "empty" in empty.stderr and "Traceback" not in empty.stderr
    gemma = probs_json(cli, "gemma3-270m", "")  # Gemma adds <bos>: an empty text still has a token
    assert [t["text"] for t in gemma["prompt_tokens"]] == ["<bos>"]


def test_chat_table_is_the_assistants_first_token(cli, real_cache):
    data = probs_json(cli, "smollm2", "What is the capital of France?", "--chat")
    assert data["mode"] == "chat"
    assert data["prompt"].endswith("<|im_start|>assistant\n")
    assert data["table"]["rows"][0]["text"].strip() in {"The", "Paris"}


def test_warm_probs_reads_the_cache_and_converts_nothing(real_cache):
    """A whole process on a warm cache (the earlier tests converted the model): the cache
    entries are the same before and after, so nothing was converted again. How long it
    takes is measured in benchmarks/bench_process.py, not asserted here."""
    from llmcli.models import cache_entries

    before = {str(path): (path / "llmcli.json").stat().st_mtime_ns for path, _ in cache_entries()}
    proc = subprocess.run(
        [sys.executable, "-m", "llmcli", "probs", "-m", "smollm2", PROMPT, "--json"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["table"]["rows"][0]["text"] == " Paris"
    after = {str(path): (path / "llmcli.json").stat().st_mtime_ns for path, _ in cache_entries()}
    assert after == before and any("SmolLM2" in path for path in after)
