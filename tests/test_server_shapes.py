"""Reading what other servers answer: vLLM, llama.cpp's server and Ollama, replayed from
their documented shapes by a fixture server (tests/server_replays.py), and `transformers
serve` itself when its extra is installed.

The numbers a correct parse gives are the replays' own: these tests check that every
variant lands in the same llmcli shape, that ids are real where the server gives them and
stand-ins ("?") where it does not, that a token which is half a character keeps its bytes,
and that what a server lacks is one line.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from llmcli.backends import openai_shapes as shapes
from tests import server_replays as replays
from tests.fixture_server import FixtureServer

SERVERS = {
    "vllm": (replays.vllm, replays.VLLM_MODEL),
    "llamacpp": (replays.llamacpp, replays.LLAMACPP_MODEL),
    "ollama": (replays.ollama, replays.OLLAMA_MODEL),
}
TOP_TEXTS = [" Paris", " a", " the", " located", " <0xE2><0x80>"]


@pytest.fixture(params=list(SERVERS))
def replay(request):
    handler, model = SERVERS[request.param]
    with FixtureServer(handler) as server:
        yield request.param, server, ["-m", f"openai:{model}", "--base-url", server.url]


# ---------------------------------------------------------------- the parsers, on each documented variant


def test_chat_logprobs_with_and_without_ids():
    with_ids = shapes.chat_logprobs(replays.chat_completion("m", with_ids=True)["choices"][0]["logprobs"])
    without = shapes.chat_logprobs(replays.chat_completion("m", with_ids=False)["choices"][0]["logprobs"])
    assert [t.id for t in with_ids[0].top] == [i for *_, i in replays.TOP]
    assert [t.id for t in without[0].top] == [None] * 5
    assert without[0].top[4].bytes == bytes([32, 226, 128]) and without[0].text == " Paris"
    as_ids = shapes.chat_logprobs({"content": [{"token": "token_id:12366", "logprob": -0.03, "bytes": replays.PARIS, "top_logprobs": []}]})
    assert (as_ids[0].id, as_ids[0].text) == (12366, " Paris")


def test_legacy_and_llamacpp_completion_logprobs():
    legacy = shapes.completion_logprobs({"tokens": [" Paris"], "token_logprobs": [-0.0312], "top_logprobs": [{" a": -4.21, " Paris": -0.0312}], "text_offset": [0]})
    assert legacy[0].logprob == -0.0312 and [t.text for t in legacy[0].top] == [" Paris", " a"]
    chat_shaped = shapes.completion_logprobs({"content": [replays.entry(" Paris", -0.0312, replays.PARIS, 12366) | {"top_logprobs": replays.top(True)}]})
    assert chat_shaped[0].id == 12366 and len(chat_shaped[0].top) == 5


def test_vllm_prompt_logprobs():
    entries = [None, {"791": {"logprob": -9.5, "rank": 3, "decoded_token": "The"}, "128006": {"logprob": -1.0, "rank": 1, "decoded_token": "<|start_header_id|>"}}]
    [first, second] = shapes.vllm_prompt_logprobs(entries, [128000, 791])
    assert first.logprob is None and (second.id, second.text, second.logprob) == (791, "The", -9.5)
    assert [t.id for t in second.top] == [128006]


@pytest.mark.parametrize("body", [replays.LLAMACPP_COMPLETION, replays.LLAMACPP_OLD_COMPLETION], ids=["probs", "completion_probabilities"])
def test_llamacpp_native_completion_probabilities(body):
    [token] = shapes.llamacpp_probabilities(body)
    assert (token.id, token.text, token.bytes) == (12366, " Paris", bytes(replays.PARIS)) and len(token.top) == 5


def test_ollama_native_top_level_logprobs():
    [token] = shapes.chat_logprobs(replays.OLLAMA_GENERATE["logprobs"])
    assert token.text == " Paris" and [t.logprob for t in token.top] == [lp for _t, lp, *_ in replays.TOP]


def test_tokenize_detokenize_and_context_length_shapes():
    assert shapes.tokens({"tokens": [1, 2], "token_strs": ["a", "Ġb"]}) == ([1, 2], ["a", "Ġb"], ["a", "Ġb"])
    assert shapes.tokens({"tokens": replays.LLAMACPP_PIECES}) == ([504, 3575, 216, 198, 164], [b"The", b" capital", b" ", b"\xc3", b"\xa1"], [None] * 5)
    assert shapes.detokenized({"prompt": "x"}) == shapes.detokenized({"content": "x"}) == "x"
    assert shapes.context_length({"max_model_len": 131072}) == 131072
    assert shapes.context_length({"meta": {"n_ctx_train": 8192}}) == 8192
    assert shapes.context_length({"id": "llama3.2"}) is None


# ---------------------------------------------------------------- served, through the commands


def test_probs_chat_reads_each_servers_top_logprobs(cli, replay):
    name, server, model = replay
    result = cli("probs", "--chat", "The capital of France is", *model, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    rows = data["table"]["rows"]
    assert [r["text"] for r in rows] == TOP_TEXTS
    assert max(abs(r["prob"] - math.exp(lp)) for r, (_t, lp, *_) in zip(rows, replays.TOP)) < 1e-12
    ids = [r["id"] for r in rows]
    assert ids == [i for *_, i in replays.TOP] if name == "llamacpp" else all(i < 0 for i in ids) and len(set(ids)) == 5
    assert data["approximate"].startswith("from the server's top 5")
    [request] = server.bodies("/v1/chat/completions")
    assert request["logprobs"] is True and request["top_logprobs"] == 20 and request["max_tokens"] == 1
    assert not {"top_k", "min_p", "repetition_penalty"} & set(request)  # extras only when set: OpenAI would refuse them


def test_probs_raw_reads_completions_or_says_there_are_none(cli, replay):
    name, _server, model = replay
    result = cli("probs", "The capital of France is", *model, "--json")
    if name == "ollama":
        assert result.exit_code == 1
        assert result.stderr.splitlines()[0] == f"error: the server at {_server.url} gives no log-probabilities for {replays.OLLAMA_MODEL}"
        return
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["table"]["rows"]
    assert [r["text"] for r in rows][:4] == TOP_TEXTS[:4]
    assert rows[0]["id"] == (12366 if name == "llamacpp" else -1)


def test_tokenize_reads_each_servers_tokens(cli, replay):
    name, _server, model = replay
    result = cli("tokenize", "The capital of France is", *model, "--json")
    if name == "ollama":
        assert result.exit_code == 1 and "Traceback" not in result.stderr
        assert result.stderr.splitlines() == [f"error: the server at {_server.url.removesuffix('/v1')} has no /tokenize endpoint (404)", "hint: vLLM, llama.cpp's server and llmcli serve have one; Ollama and OpenAI do not"]
        return
    assert result.exit_code == 0, result.stderr
    [doc] = json.loads(result.stdout)
    tokens = [(t["id"], t["text"], t["bytes"]) for t in doc["tokens"]]
    if name == "vllm":  # vocabulary strings, byte-level BPE: "Ġcapital" is " capital"
        assert tokens == [(128000, "<|begin_of_text|>", b"<|begin_of_text|>".hex()), (791, "The", b"The".hex()), (6864, " capital", b" capital".hex()),
                          (315, " of", b" of".hex()), (9822, " France", b" France".hex()), (374, " is", b" is".hex())]
    else:  # llama.cpp's pieces: "á" is two tokens of one byte each
        assert tokens == [(504, "The", "546865"), (3575, " capital", b" capital".hex()), (216, " ", "20"), (198, "<0xC3>", "c3"), (164, "<0xA1>", "a1")]


def test_generate_streams_from_each_server(cli, replay):
    _name, _server, model = replay
    result = cli("generate", "The capital of France is", *model, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["text"] == "Paris." and data["finish_reason"] == "stop"
    assert data["usage"] == {"prompt_tokens": 14, "completion_tokens": 3, "total_tokens": 17}


def test_context_lengths_and_a_vllm_prompts_own_logprobs():
    import llmcli

    for handler, model, length in ((replays.vllm, replays.VLLM_MODEL, 131072), (replays.llamacpp, replays.LLAMACPP_MODEL, 8192), (replays.ollama, replays.OLLAMA_MODEL, None)):
        with FixtureServer(handler) as server:
            assert llmcli.load(f"openai:{model}", base_url=server.url).context_length == length
    with FixtureServer(replays.vllm) as server:
        scored = llmcli.load(f"openai:{replays.VLLM_MODEL}", base_url=server.url).prompt_logprobs("The capital of France is", top=1)
    assert [t.id for t in scored.tokens] == replays.VLLM_PROMPT_IDS and scored.tokens[0].logprob is None
    assert [t.logprob for t in scored.tokens[1:]] == [-9.5, -7.25, -0.5, -2.0, -1.5]


# ---------------------------------------------------------------- transformers serve, the real thing


TRANSFORMERS = Path(sys.executable).with_name("transformers")  # the venv's console script


def _transformers_serve_available() -> str | None:
    try:
        from transformers.utils.import_utils import is_serve_available
    except ImportError:
        return "transformers is too old to have `transformers serve`"
    if not is_serve_available():
        return "transformers' serving extra is not installed (pip install 'transformers[serving]')"
    if not TRANSFORMERS.exists():
        return f"no `transformers` command next to {sys.executable}"
    return None


@pytest.mark.skipif(_transformers_serve_available() is not None, reason=_transformers_serve_available() or "")
def test_transformers_serve_chats_but_gives_no_logprobs(cli, tiny_model_dir):
    with socket.socket() as s:  # a free port (transformers serve cannot be told to pick one and say which)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([str(TRANSFORMERS), "serve", str(tiny_model_dir), "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(url + "/models", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "transformers serve did not start"
            time.sleep(0.1)
        model = ["-m", f"openai:{tiny_model_dir}", "--base-url", url]
        there = cli("generate", "Hello", "-t", "0", "-n", "8", *model)
        here = cli("generate", "Hello", "-t", "0", "-n", "8", "-m", str(tiny_model_dir))
        assert there.exit_code == 0 and there.stdout == here.stdout
        chat = cli("chat", "-t", "0", "-n", "8", *model, input="Hello\n")
        assert chat.exit_code == 0 and chat.stdout == cli("chat", "-t", "0", "-n", "8", "-m", str(tiny_model_dir), input="Hello\n").stdout
        probs = cli("probs", "--chat", "Hello", *model)
        assert probs.exit_code == 1 and probs.stderr.splitlines()[0] == f"error: the server at {url} gives no log-probabilities for {tiny_model_dir}"
        tokens = cli("tokenize", "Hello", *model)
        assert tokens.exit_code == 1 and "has no /tokenize endpoint" in tokens.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- llama-cpp-python's server, when the bench extra is installed


@pytest.mark.integration
def test_llama_cpp_python_server(cli, real_cache):
    """llama-cpp-python's own OpenAI-compatible server on the smollm2 GGUF file. Its numbers
    are llama.cpp's (its own dequantization), so only what llmcli reads is checked: a reply
    streams, probs reads its top logprobs or says it gives none, tokenize says what it lacks
    (its tokenizer lives under /extras/tokenize)."""
    # The server's own dependencies (starlette-context, ...) come with llama-cpp-python[server] only.
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python's server (llama-cpp-python[server]) is not installed")
    from llmcli.models import resolve

    gguf = resolve("smollm2").path
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(url + "/models", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "llama_cpp.server did not start"
            time.sleep(0.1)
        model = ["-m", "openai:smollm2", "--base-url", url]
        reply = cli("generate", "What is the capital of France?", "-t", "0", "-n", "16", *model)
        assert reply.exit_code == 0 and reply.stdout.strip()
        probs = cli("probs", "--chat", "What is the capital of France?", *model, "--json")
        if probs.exit_code == 0:
            assert 1 <= len(json.loads(probs.stdout)["table"]["rows"]) <= 20
        else:
            assert "gives no log-probabilities" in probs.stderr
        tokens = cli("tokenize", "Hello", *model)
        assert tokens.exit_code == 1 and "has no /tokenize endpoint" in tokens.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
