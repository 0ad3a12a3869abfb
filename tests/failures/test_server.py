"""Failure matrix, server: what a client can send `llmcli serve`, and what many clients do to it.

A real server on the tiny model in a subprocess (tests/serving.py). The status-and-shape rows
for out-of-range values, unknown models, keys on loopback, oversized bodies, eight streaming
clients and a client that leaves are in tests/test_serve_safety.py; these are the rest of the
matrix: wrong JSON types, unknown fields, negative and zero max_tokens, a slow client, a key on
a non-loopback bind, and 500 requests in a row with the server's memory read before and after.
Every error is OpenAI's shape, `{"error": {message, type, param, code}}`, never a traceback.
"""

from __future__ import annotations

import json
import socket
import threading

import httpx
import pytest

from tests.serving import ServerProcess

MESSAGES = [{"role": "user", "content": "Hello"}]
SEQUENTIAL = 500
RSS_GROWTH_LIMIT = 24 << 20  # a leak of one token's tensors per request would pass this by far: 500 × ~0.5 MB


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    with ServerProcess(["-m", str(tiny_model_dir)]) as running:
        yield running


def at(server, path: str) -> str:
    """/tokenize and /detokenize are at the root, as vLLM has them; the rest under /v1."""
    return (server.root if path.endswith("tokenize") else server.url) + path


def assert_openai_error(r: httpx.Response, status: int, named: str | None = None) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"], error
    assert "Traceback" not in r.text and 'File "' not in r.text
    if named is not None:
        assert named in (error["code"], error["param"]) or named in error["message"], error
    return error


WRONG = [
    # (path, body, the field the error names)
    ("/chat/completions", {"messages": "Hello"}, "messages"),
    ("/chat/completions", {"messages": [{"role": "user", "content": 5}]}, "messages.0"),
    ("/chat/completions", {"messages": [{"content": "no role"}]}, "messages.0.role"),
    ("/chat/completions", {"messages": MESSAGES, "max_tokens": "ten"}, "max_tokens"),
    ("/chat/completions", {"messages": MESSAGES, "max_tokens": 2.5}, "max_tokens"),
    ("/chat/completions", {"messages": MESSAGES, "max_tokens": -1}, "max_tokens"),
    ("/chat/completions", {"messages": MESSAGES, "temperature": "hot"}, "temperature"),
    ("/chat/completions", {"messages": MESSAGES, "temperature": "NaN"}, "temperature"),
    ("/chat/completions", {"messages": MESSAGES, "stream": "yes please"}, "stream"),
    ("/chat/completions", {"messages": MESSAGES, "stop": 7}, "stop"),
    ("/chat/completions", {"messages": MESSAGES, "seed": 2**64}, "seed"),
    ("/chat/completions", {"messages": MESSAGES, "logprobs": True, "top_logprobs": -1}, "top_logprobs"),
    ("/chat/completions", {"messages": MESSAGES, "model": 3}, "model"),
    ("/completions", {"prompt": 42, "max_tokens": 1}, "prompt"),
    ("/completions", {"prompt": "x", "max_tokens": -5}, "max_tokens"),
    ("/completions", {"prompt": [1.5, 2], "max_tokens": 1}, "prompt"),
    ("/completions", {"prompt": ["a", "b"], "max_tokens": 1}, "prompt"),
    ("/completions", {"prompt": "x", "logprobs": 21}, "logprobs"),
    ("/tokenize", {"prompt": ["not", "text"]}, "prompt"),
    ("/detokenize", {"tokens": "1 2 3"}, "tokens"),
    ("/detokenize", {"tokens": [-1]}, "tokens"),
]


@pytest.mark.parametrize("path,body,named", WRONG, ids=[f"{p.strip('/')}-{n}-{i}" for i, (p, _, n) in enumerate(WRONG)])
def test_wrong_types_and_values_are_400s_that_name_the_field(server, path, body, named):
    assert_openai_error(httpx.post(at(server, path), json=body, timeout=60), 400, named)


@pytest.mark.parametrize("body", [b"", b"[]", b"null", b'"a string"', b"{'single': 'quotes'}", b'{"messages": [', "{\"messages\": \"caf\xe9\"}".encode("latin-1")])
def test_bodies_that_are_not_a_json_object_are_400s(server, body):
    r = httpx.post(server.url + "/chat/completions", content=body, headers={"content-type": "application/json"}, timeout=60)
    assert_openai_error(r, 400)


def test_unknown_fields_are_ignored_as_openai_clients_expect(server):
    """The SDKs send fields a server may not know (user, metadata, store...): the request is
    served as if they were absent, with the same greedy reply."""
    plain = {"messages": MESSAGES, "max_tokens": 4, "temperature": 0}
    extra = {**plain, "user": "someone", "metadata": {"k": "v"}, "store": False, "x_unknown": [1, 2]}
    a = httpx.post(server.url + "/chat/completions", json=plain, timeout=60)
    b = httpx.post(server.url + "/chat/completions", json=extra, timeout=60)
    assert a.status_code == b.status_code == 200
    assert a.json()["choices"][0]["message"] == b.json()["choices"][0]["message"]


def test_max_tokens_zero_is_refused_for_chat_and_means_echo_only_for_completions(server):
    assert_openai_error(httpx.post(server.url + "/chat/completions", json={"messages": MESSAGES, "max_tokens": 0}, timeout=60), 400, "max_tokens")
    r = httpx.post(server.url + "/completions", json={"prompt": "the cat", "max_tokens": 0, "echo": True, "logprobs": 1}, timeout=60)
    assert r.status_code == 200
    choice = r.json()["choices"][0]
    assert choice["text"] == "the cat" and r.json()["usage"]["completion_tokens"] == 0


def test_a_slow_client_does_not_hold_up_the_others(server):
    """A client sends its headers and then its body a few bytes at a time; meanwhile another
    client's whole request is served, and then the slow one's is too."""
    body = json.dumps({"messages": MESSAGES, "max_tokens": 2, "temperature": 0}).encode()
    host, port = server.root.removeprefix("http://").rsplit(":", 1)
    slow = socket.create_connection((host, int(port)), timeout=60)
    slow.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body[:5]
    )
    fast = httpx.post(server.url + "/chat/completions", json={"messages": MESSAGES, "max_tokens": 2, "temperature": 0}, timeout=60)
    assert fast.status_code == 200  # served while the slow body is still coming
    for i in range(5, len(body), 7):
        slow.sendall(body[i : i + 7])
    reply = b""
    while chunk := slow.recv(65536):
        reply += chunk
    slow.close()
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(payload)["choices"][0]["message"] == fast.json()["choices"][0]["message"]


def test_a_client_that_stops_reading_a_stream_does_not_stop_the_server(server):
    """Opens a stream, reads nothing, hangs up; eight more requests after it are all served."""
    body = {"messages": [{"role": "user", "content": "Never read"}], "max_tokens": 60, "stream": True}
    with httpx.stream("POST", server.url + "/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
    results = []

    def ask(i: int) -> None:
        results.append(httpx.post(server.url + "/chat/completions", json={"messages": [{"role": "user", "content": f"n {i}"}], "max_tokens": 3}, timeout=120).status_code)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert results == [200] * 8


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


REQUESTS = [
    ("/chat/completions", {"messages": MESSAGES, "max_tokens": 3}),
    ("/chat/completions", {"messages": MESSAGES, "max_tokens": 3, "stream": True, "logprobs": True, "top_logprobs": 5}),
    ("/completions", {"prompt": "the cat sat", "max_tokens": 3, "logprobs": 2}),
    ("/completions", {"prompt": "the cat sat", "max_tokens": 0, "echo": True, "logprobs": 1}),
    ("/tokenize", {"prompt": "the cat sat"}),
    ("/chat/completions", {"messages": MESSAGES, "max_tokens": 0}),  # an error, 400, among them
]


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/status"), reason="reads the server's RSS from /proc")
def test_500_requests_in_a_row_no_errors_and_flat_memory(server):
    """Every kind of request in turn, streamed and not, with an error among them: each gets its
    expected status, and the server's resident memory after 500 is within a few MB of before.
    The figures go in the README's reliability section (run with -s to see them)."""
    with httpx.Client(timeout=120) as client:

        def one(i: int) -> int:
            path, body = REQUESTS[i % len(REQUESTS)]
            if body.get("stream"):
                with client.stream("POST", at(server, path), json=body) as r:
                    lines = [line for line in r.iter_lines() if line.startswith("data: ")]
                    assert lines[-1] == "data: [DONE]"
                    return r.status_code
            return client.post(at(server, path), json=body).status_code

        expected = [400 if body.get("max_tokens") == 0 and path == "/chat/completions" else 200 for path, body in REQUESTS]
        for i in range(60):  # warm: every code path has run and allocated what it keeps
            assert one(i) == expected[i % len(REQUESTS)]
        before = _rss(server.proc.pid)
        statuses = [one(i) for i in range(SEQUENTIAL)]
        after = _rss(server.proc.pid)
    wrong = [(i, s) for i, s in enumerate(statuses) if s != expected[i % len(REQUESTS)]]
    assert wrong == []
    print(f"\n{SEQUENTIAL} requests: 0 unexpected statuses; server RSS {before / 2**20:.1f} MiB before, {after / 2**20:.1f} MiB after")
    assert after - before < RSS_GROWTH_LIMIT, (before, after)
    assert all("Traceback" not in line for line in server.log_lines())


def test_a_non_loopback_bind_requires_its_key_on_every_request(tiny_model_dir):
    key = "matrix-key-0123456789"
    with ServerProcess(["--host", "0.0.0.0", "-m", str(tiny_model_dir)], env={"LLMCLI_API_KEY": key}) as server:
        url = server.url.replace("0.0.0.0", "127.0.0.1")
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {key}x"}, {"Authorization": f"Basic {key}"}):
            for path, body in (("/chat/completions", {"messages": MESSAGES, "max_tokens": 1}), ("/completions", {"prompt": "x", "max_tokens": 1}), ("/tokenize", {"prompt": "x"})):
                error = assert_openai_error(httpx.post(at(server, path).replace("0.0.0.0", "127.0.0.1"), json=body, headers=headers, timeout=60), 401)
                assert error["type"] == "authentication_error" and key not in json.dumps(error)
        ok = httpx.post(url + "/chat/completions", json={"messages": MESSAGES, "max_tokens": 1}, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        assert ok.status_code == 200
        server.stop()
        assert all(key not in line for line in server.log_lines())
