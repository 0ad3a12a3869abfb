"""`llmcli compare` on the embedded models: gemma3-270m (base) against smollm2 (instruct).

Every number is checked against the command that computes it alone (`generate`, `probs`)
or a plain forward pass; the one fact taken as given is the one the design names: SmolLM2
answers "What is the capital of France?" with Paris. The last test runs the default
comparison in a real 80-column terminal (tmux) and reads the screen.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.integration

PROMPT = "What is the capital of France?"
TOKENS = "24"  # enough to see one answer and one continuation, quick on a busy CPU
_LOADED: dict[str, object] = {}


def loaded(alias: str):
    from llmcli.models import load_model

    if alias not in _LOADED:
        _LOADED[alias] = load_model(alias)
    return _LOADED[alias]


def run_json(cli, *args) -> dict:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def logits_for(alias: str, ids: list[int]) -> torch.Tensor:
    model = loaded(alias).model
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].double()


def test_the_defaults_base_continues_and_instruct_answers(cli, real_cache):
    data = run_json(cli, "compare", PROMPT, "--temperature", "0", "-n", TOKENS)
    base, instruct = data["models"]
    assert (base["side"], base["model"], base["role"], base["mode"]) == ("A", "gemma3-270m", "base", "raw")
    assert (instruct["side"], instruct["model"], instruct["role"], instruct["mode"]) == ("B", "smollm2", "instruct", "chat")
    assert base["generation"]["prompt"] == PROMPT  # the base model gets the text itself
    assert "<|im_start|>user\n" + PROMPT + "<|im_end|>" in instruct["generation"]["prompt"]
    assert "Paris" in instruct["generation"]["text"] and instruct["generation"]["finish_reason"] == "stop"
    # Each side is exactly what `generate` gives that model with that prompt mode.
    alone_base = run_json(cli, "generate", "-m", "gemma3-270m", "--raw", PROMPT, "-t", "0", "-n", TOKENS)
    alone_instruct = run_json(cli, "generate", "-m", "smollm2", "--chat", PROMPT, "-t", "0", "-n", TOKENS)
    assert base["generation"]["token_ids"] == alone_base["token_ids"]
    assert instruct["generation"]["token_ids"] == alone_instruct["token_ids"]
    assert base["generation"]["text"] == alone_base["text"]


def test_probs_numbers_are_what_probs_gives_for_each_model_and_prompt(cli, real_cache):
    data = run_json(cli, "compare", PROMPT, "--probs")
    base, instruct = data["models"]
    alone = {
        "gemma3-270m": run_json(cli, "probs", "-m", "gemma3-270m", PROMPT),
        "smollm2": run_json(cli, "probs", "-m", "smollm2", "--chat", PROMPT),
    }
    for side in (base, instruct):
        ours, theirs = side["probs"], alone[side["model"]]
        assert ours["prompt"] == theirs["prompt"] and ours["prompt_tokens"] == theirs["prompt_tokens"]
        assert [(r["rank"], r["id"], r["text"]) for r in ours["table"]["rows"]] == [(r["rank"], r["id"], r["text"]) for r in theirs["table"]["rows"]]
        for a, b in zip(ours["table"]["rows"], theirs["table"]["rows"]):
            assert a["prob"] == pytest.approx(b["prob"], abs=1e-9) and a["logit"] == pytest.approx(b["logit"], abs=1e-6)
        assert ours["table"]["entropy"] == pytest.approx(theirs["table"]["entropy"], abs=1e-9)
        # And against a plain forward pass.
        logits = logits_for(side["model"], [t["id"] for t in ours["prompt_tokens"]])
        probs = torch.softmax(logits, -1)
        assert [r["id"] for r in ours["table"]["rows"]] == torch.topk(logits, 10).indices.tolist()
        # (a forward pass over every position rounds Gemma's float32 logits a little differently
        # from probs' last-position-only pass: about 1e-6 in probability)
        assert max(abs(r["prob"] - float(probs[r["id"]])) for r in ours["table"]["rows"]) < 1e-5

    (pair,) = data["agreement"]
    texts = [[r["text"] for r in side["probs"]["table"]["rows"]] for side in (base, instruct)]
    assert pair["top1"] == [texts[0][0], texts[1][0]]
    assert pair["top1_agree"] == (texts[0][0] == texts[1][0])
    assert [s["text"] for s in pair["shared"]] == [t for t in dict.fromkeys(texts[0]) if t in texts[1]]
    assert pair["same_vocabulary"] is False and pair["kl"] is None  # 262,144 and 49,152 tokens
    assert "262,144" in pair["kl_note"] and "49,152" in pair["kl_note"]


def test_one_model_with_and_without_its_template_has_a_kl(cli, real_cache):
    data = run_json(cli, "compare", "--template-vs-raw", "-m", "smollm2", PROMPT, "--probs")
    raw, chat = data["models"]
    assert (raw["mode"], chat["mode"]) == ("raw", "chat")
    p = logits_for("smollm2", [t["id"] for t in raw["probs"]["prompt_tokens"]])
    q = logits_for("smollm2", [t["id"] for t in chat["probs"]["prompt_tokens"]])
    log_p, log_q = torch.log_softmax(p, -1), torch.log_softmax(q, -1)
    (pair,) = data["agreement"]
    assert pair["same_vocabulary"] is True
    assert pair["kl"] == pytest.approx(float(torch.nn.functional.kl_div(log_q, log_p, log_target=True, reduction="sum")), rel=1e-4)
    assert pair["kl_reverse"] == pytest.approx(float(torch.nn.functional.kl_div(log_p, log_q, log_target=True, reduction="sum")), rel=1e-4)


# ---------------------------------------------------------------------------- a real terminal


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_the_default_comparison_in_an_80_column_terminal(real_cache):
    socket = f"llmcli-compare-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    command = " ".join(shlex.quote(p) for p in [sys.executable, "-m", "llmcli", "compare", PROMPT, "--temperature", "0", "-n", TOKENS])
    shell = f"cd {shlex.quote(str(Path.cwd()))} && {command}; echo \"[exit status $?]\"; sleep 600"

    def tmux(*args: str) -> str:
        return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True, check=True, env=env).stdout

    tmux("new-session", "-d", "-s", "compare", "-x", "80", "-y", "30", shell)
    try:
        deadline = time.monotonic() + 300
        while "[exit status" not in (screen := tmux("capture-pane", "-p", "-S", "-", "-t", "compare")):
            if time.monotonic() > deadline:
                pytest.fail(f"compare did not finish; the screen:\n{screen}")
            time.sleep(0.5)
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)

    assert "[exit status 0]" in screen and "Traceback" not in screen
    lines = screen.rstrip("\n").splitlines()
    assert max(len(line) for line in lines) <= 80
    header = next(line for line in lines if "gemma3-270m" in line)
    assert re.search(r"A\s+gemma3-270m\s+base\s+│\s+B\s+smollm2\s+instruct", header)
    right = " ".join(line.split("│", 1)[1] for line in lines if "│" in line)
    left = " ".join(line.split("│", 1)[0] for line in lines if "│" in line)
    assert "Paris" in right  # the instruct column answers
    assert "chat template" in right and "raw text" in left
    assert len(re.findall(r"tokens, (stopped|hit the limit)", screen)) == 2  # a stats line under each column
    assert screen.count("gemma3-270m") == 1  # drawn once: the live view left nothing behind
