"""Every command against `-m openai:MODEL`: a real `llmcli serve` of the tiny model in a
subprocess (with an API key, so every request here also passes the key check), and the
same command on the local model for the expected result. Greedy text must be equal,
log-probabilities within 1e-4; what only the remote path does (the server's top 20, the
temperature columns recomputed over it) is checked against numbers computed from
transformers' logits directly.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys

import pytest
import torch

from tests.serving import ROOT, ServerProcess

KEY = "tiny-secret-key"
TOL = 1e-4


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    with ServerProcess(["-m", str(tiny_model_dir)], env={"LLMCLI_API_KEY": KEY}) as running:
        yield running


@pytest.fixture
def remote(server, tiny_model_dir, monkeypatch) -> list[str]:
    """`-m openai:tiny --base-url URL --api-key-env TINY_KEY`, the key in the environment."""
    monkeypatch.setenv("TINY_KEY", KEY)
    monkeypatch.delenv("LLMCLI_API_KEY", raising=False)
    return ["-m", f"openai:{tiny_model_dir.name}", "--base-url", server.url, "--api-key-env", "TINY_KEY"]


def run_json(cli, *args: str) -> dict:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


# ---------------------------------------------------------------- generate, chat, compare


def test_generate_remote_equals_local(cli, remote, tiny_model_dir):
    args = ("generate", "What is the capital of France?", "-t", "0", "-n", "16", "--logprobs", "3")
    there = run_json(cli, *args, *remote)
    here = run_json(cli, *args, "-m", str(tiny_model_dir))
    assert there["text"] == here["text"] and there["token_ids"] == here["token_ids"]
    assert there["usage"] == here["usage"] and there["finish_reason"] == here["finish_reason"]
    assert there["prompt_token_ids"] == here["prompt_token_ids"]
    for a, b in zip(there["logprobs"]["content"], here["logprobs"]["content"], strict=True):
        assert (a["token"], a["bytes"]) == (b["token"], b["bytes"]) and abs(a["logprob"] - b["logprob"]) < TOL
        assert [t["token"] for t in a["top_logprobs"]] == [t["token"] for t in b["top_logprobs"]]
    streamed = cli("generate", "Tell me a joke.", "-t", "0", "-n", "20", *remote)
    assert streamed.exit_code == 0 and streamed.stdout == cli("generate", "Tell me a joke.", "-t", "0", "-n", "20", "-m", str(tiny_model_dir)).stdout


def test_generate_raw_and_seeded_sampling_remote_equal_local(cli, remote, tiny_model_dir):
    for extra in (("--raw", "-t", "0"), ("-t", "1.0", "--seed", "5", "--top-k", "20")):
        args = ("generate", "Once upon a time", "-n", "12", *extra)
        assert cli(*args, *remote).stdout == cli(*args, "-m", str(tiny_model_dir)).stdout


def test_chat_remote_equals_local(cli, remote, tiny_model_dir, tmp_path):
    turns = "Hello\nWhat is 3 + 4?\n"
    there = cli("chat", "-t", "0", "-n", "10", *remote, input=turns + f"/save {tmp_path / 'chat.json'}\n")
    here = cli("chat", "-t", "0", "-n", "10", "-m", str(tiny_model_dir), input=turns)
    assert there.exit_code == 0 and there.stdout.startswith(here.stdout) and here.stdout.count("\n") == 2
    saved = (tmp_path / "chat.json").read_text()
    assert json.loads(saved)["model"] == f"openai:{tiny_model_dir.name}"
    assert KEY not in there.stdout + there.stderr + saved


def test_a_remote_model_samples_with_the_servers_defaults(cli, remote, server, tiny_model_dir):
    """llmcli serve says what it samples with (`sampling_defaults`): flags left out take those
    values, as they take the local model's recommended ones."""
    import httpx

    card = httpx.get(server.url + "/models", headers={"Authorization": f"Bearer {KEY}"}).json()["data"][0]
    assert card["sampling_defaults"] == {}  # the tiny model recommends nothing: llmcli's own defaults on both sides
    args = ("generate", "Once upon a time", "-n", "12", "--seed", "11")
    assert cli(*args, *remote).stdout == cli(*args, "-m", str(tiny_model_dir)).stdout


def test_compare_puts_a_local_and_a_remote_model_side_by_side(cli, server, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("LLMCLI_API_KEY", KEY)
    url_form = f"openai:{tiny_model_dir.name}@{server.url}"
    data = run_json(cli, "compare", "-m", str(tiny_model_dir), "-m", url_form, "Hello", "-t", "0", "-n", "10")
    local, there = data["models"]
    assert there["model"].startswith(f"openai:{tiny_model_dir.name}@127.0.0.1:")
    assert there["generation"]["text"] == local["generation"]["text"] != ""
    probs = run_json(cli, "compare", "-m", str(tiny_model_dir), "-m", url_form, "Hello", "--probs", "--num", "5")
    [agreement] = probs["agreement"]
    assert agreement["top1_agree"] and agreement["overlap"] == 5 and agreement["kl"] is None and "top 20" in agreement["kl_note"]


# ---------------------------------------------------------------- probs


@pytest.mark.parametrize("mode", [(), ("--chat",)], ids=["raw", "chat"])
def test_probs_remote_equals_local(cli, remote, tiny_model_dir, mode):
    args = ("probs", "The quick brown fox", "--num", "12", *mode)
    there = run_json(cli, *args, *remote)
    here = run_json(cli, *args, "-m", str(tiny_model_dir))
    assert there["approximate"].startswith("from the server's top 20") and here["approximate"] is None
    assert [t["id"] for t in there["prompt_tokens"]] == [t["id"] for t in here["prompt_tokens"]]
    for a, b in zip(there["table"]["rows"], here["table"]["rows"], strict=True):
        assert (a["rank"], a["id"], a["text"]) == (b["rank"], b["id"], b["text"])
        assert abs(a["prob"] - b["prob"]) < TOL and abs(a["logprob"] - b["logprob"]) < TOL


def test_probs_temperatures_are_recomputed_over_the_servers_top_20(cli, remote, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = tokenizer("The quick brown fox", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].double(), dim=-1)
    top = torch.topk(logprobs, 20)
    data = run_json(cli, "probs", "The quick brown fox", "-t", "0.5,1,2", "--num", "30", *remote)
    table = data["table"]
    assert len(table["rows"]) == 20 and [r["id"] for r in table["rows"]] == top.indices.tolist()
    for column in table["columns"]:
        t = column["temperature"]
        expected = top.values.exp() if t == 1 else torch.softmax(top.values / t, dim=-1)
        assert max(abs(p - q) for p, q in zip(column["probs"], expected.tolist())) < TOL
        renormalised = torch.softmax(top.values / t, dim=-1)
        assert abs(column["entropy"] - float(-(renormalised * renormalised.log()).sum())) < TOL


def test_probs_sampler_replay_and_steps_remote(cli, remote, tiny_model_dir):
    replay = run_json(cli, "probs", "Hello there", "--top-k", "5", "--top-p", "0.6", "-t", "0.8", *remote)["sampler"]
    names = [s["name"] for s in replay["stages"]]
    assert names == ["temperature", "top-k", "top-p"] and replay["stages"][1]["survivors"] == 5
    assert abs(sum(replay["stages"][-1]["survivor_probs"]) - 1) < 1e-9
    args = ("probs", "Hello there", "--steps", "5", "--num", "4")
    there, here = run_json(cli, *args, *remote)["steps"], run_json(cli, *args, "-m", str(tiny_model_dir))["steps"]
    assert there["text"] == here["text"]
    for a, b in zip(there["steps"], here["steps"]):
        assert a["id"] == b["id"] and abs(a["prob"] - b["prob"]) < TOL
        assert [c["id"] for c in a["candidates"]] == [c["id"] for c in b["candidates"]]


def test_probs_what_needs_the_whole_distribution_is_one_line(cli, remote):
    for flags, word in ((("--target", " dog"), "--target"), (("--position", "1"), "--position")):
        r = cli("probs", "The quick brown fox", *flags, *remote)
        assert r.exit_code == 1 and r.stderr.startswith(f"error: {word}") and "Traceback" not in r.stderr


# ---------------------------------------------------------------- tokens, and a prompt's own logprobs


def test_tokenize_and_detokenize_remote_equal_local(cli, remote, tiny_model_dir):
    text = "Hello, world! Café 🍕 naïve"
    [there] = run_json(cli, "tokenize", text, *remote)
    [here] = run_json(cli, "tokenize", text, "-m", str(tiny_model_dir))
    assert [(t["id"], t["piece"], t["text"], t["bytes"]) for t in there["tokens"]] == [(t["id"], t["piece"], t["text"], t["bytes"]) for t in here["tokens"]]
    [chat_there] = run_json(cli, "tokenize", "--chat", "Hi", *remote)
    [chat_here] = run_json(cli, "tokenize", "--chat", "Hi", "-m", str(tiny_model_dir))
    assert [t["id"] for t in chat_there["tokens"]] == [t["id"] for t in chat_here["tokens"]]
    ids = [str(t["id"]) for t in here["tokens"]]
    assert run_json(cli, "detokenize", *ids, *remote)["text"] == run_json(cli, "detokenize", *ids, "-m", str(tiny_model_dir))["text"] == text


def test_a_prompts_own_logprobs_through_echo(remote, tiny_model_dir):
    import llmcli

    there = llmcli.load(remote[1], base_url=remote[3], api_key_env="TINY_KEY").prompt_logprobs("The capital of France is Paris.", top=3)
    here = llmcli.load(str(tiny_model_dir)).prompt_logprobs("The capital of France is Paris.", top=3)
    assert [t.id for t in there.tokens] == [t.id for t in here.tokens] and there.tokens[0].logprob is None
    assert max(abs(a.logprob - b.logprob) for a, b in zip(there.tokens[1:], here.tokens[1:])) < TOL
    assert [[t.id for t in a.top] for a in there.tokens[1:]] == [[t.id for t in b.top] for b in here.tokens[1:]]
    assert math.isclose(there.total, here.total, abs_tol=1e-3)


def test_score_remote_equals_local_with_ranks_inside_the_servers_top_20(cli, remote, tiny_model_dir):
    """The server scores the text from its echo logprobs: every token's log-probability is the
    local one; a rank inside the top 20 is the local rank, one past it is shown >20 and put in
    the bucket beyond top-20 (the tiny model's random weights give plenty of both)."""
    text = "the cat sat on the mat and the dog ran off with a blue hat " * 4
    [there] = run_json(cli, "score", text, *remote)
    [here] = run_json(cli, "score", text, "-m", str(tiny_model_dir))
    assert there["first"] == here["first"] and len(there["scores"]["tokens"]) == len(here["scores"]["tokens"])
    pairs = list(zip(there["scores"]["tokens"], here["scores"]["tokens"]))
    assert max(abs(a["logprob"] - b["logprob"]) for a, b in pairs) < TOL
    assert {a["ranked"] for a, _ in pairs} == {20} and all("ranked" not in b for _, b in pairs)
    for a, b in pairs:
        if b["rank"] <= 20:
            assert a["rank"] == b["rank"] and a["bucket"] == ("top-10" if b["rank"] <= 10 else "top-20")
        else:
            assert a["rank"] == 21 and a["bucket"] == "beyond top-20"
    assert {"beyond top-20"} < {a["bucket"] for a, _ in pairs}  # ranks past the top 20 and inside it
    assert math.isclose(there["scores"]["totals"]["perplexity"], here["scores"]["totals"]["perplexity"], rel_tol=1e-4)
    shown = cli("score", text, *remote)
    assert shown.exit_code == 0 and "from the server's top 20" in shown.stdout


def test_score_remote_refuses_what_needs_the_weights_in_one_line(cli, remote):
    for flags in (("--chat",), ("--window", "8")):
        r = cli("score", "the cat sat", *flags, *remote)
        assert r.exit_code == 1 and r.stderr.count("\n") == 2 and "needs the model in this process" in r.stderr


# ---------------------------------------------------------------- the remote path stays light


def test_the_remote_path_imports_neither_torch_nor_transformers(server, tiny_model_dir):
    name = f"openai:{tiny_model_dir.name}@{server.url}"
    code = (
        "import sys\n"
        "from llmcli.cli import app\n"
        f"for args in (['probs', 'Hello', '-m', {name!r}], ['probs', '--chat', 'Hi', '--steps', '2', '-m', {name!r}],\n"
        f"             ['generate', 'Hi', '-n', '3', '--logprobs', '2', '-m', {name!r}], ['tokenize', 'Hi', '-m', {name!r}],\n"
        f"             ['compare', 'Hi', '-n', '2', '-m', {name!r}, '-m', {name!r}]):\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, (args, e.code)\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT), "LLMCLI_API_KEY": KEY}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert "HEAVY []" in proc.stderr, proc.stderr[-3000:]


# ---------------------------------------------------------------- one line for each failure


def test_a_wrong_or_missing_key_is_one_line(cli, remote, monkeypatch):
    monkeypatch.setenv("TINY_KEY", "not-the-key")
    r = cli("probs", "Hi", *remote)
    assert r.exit_code == 1 and r.stderr.startswith("error: the server at") and "(401)" in r.stderr
    assert "--api-key-env" in r.stderr and "not-the-key" not in r.stderr and "Traceback" not in r.stderr
    monkeypatch.delenv("TINY_KEY")
    r = cli("probs", "Hi", *remote)
    assert r.exit_code == 1 and "--api-key-env TINY_KEY: that environment variable is not set" in r.stderr


def test_an_unknown_model_lists_what_the_server_serves(cli, server, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("LLMCLI_API_KEY", KEY)
    r = cli("generate", "Hi", "-m", "openai:no-such-model", "--base-url", server.url)
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert lines == [f"error: the server at {server.url} has no model 'no-such-model'", f"hint: it serves: {tiny_model_dir.name}"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_nothing_listening_is_one_line(cli):
    url = f"http://127.0.0.1:{free_port()}/v1"
    r = cli("probs", "Hi", "-m", f"openai:x@{url}")
    assert r.exit_code == 1 and r.stderr.splitlines() == [f"error: cannot connect to the server at {url}: connection refused", "hint: is it running? check --base-url (or $LLMCLI_BASE_URL)"]


def test_a_server_that_never_answers_times_out_in_one_line(cli, monkeypatch):
    monkeypatch.setenv("LLMCLI_TIMEOUT", "0.5")
    with socket.socket() as listener:  # accepts connections (the kernel's backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        r = cli("generate", "Hi", "-m", f"openai:x@{url}")
    assert r.exit_code == 1 and r.stderr.startswith(f"error: the server at {url} did not answer in time") and "Traceback" not in r.stderr


def test_a_remote_model_needs_a_url(cli, monkeypatch):
    for name in ("LLMCLI_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    r = cli("generate", "Hi", "-m", "openai:smollm2")
    assert r.exit_code == 1 and r.stderr.startswith("error: no server URL for openai:smollm2") and "--base-url" in r.stderr
