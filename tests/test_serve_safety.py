"""`llmcli serve` under pressure: bad requests, keys, limits, many clients, clients that
leave, Ctrl-C. A real server on the tiny model in a subprocess, plus the turn-taking loop
driven directly with a stand-in response (no clocks: the loop is stepped by hand).
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading

import httpx
import pytest

from tests.serving import ROOT, ServerProcess

MESSAGES = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    with ServerProcess(["-m", str(tiny_model_dir)]) as running:
        yield running


def post(url: str, body, **kwargs) -> httpx.Response:
    return httpx.post(url, json=body, timeout=120, **kwargs)


# ---------------------------------------------------------------- errors: status and shape

BAD_REQUESTS = [
    # (path, body, status, code or param that must be named)
    ("/chat/completions", {"model": "nope", "messages": MESSAGES}, 404, "model_not_found"),
    ("/chat/completions", {"messages": []}, 400, "messages"),
    ("/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, 400, "messages.0.role"),
    ("/chat/completions", {"messages": MESSAGES, "temperature": -1}, 400, "temperature"),
    ("/chat/completions", {"messages": MESSAGES, "top_p": 0}, 400, "top_p"),
    ("/chat/completions", {"messages": MESSAGES, "max_tokens": 0}, 400, "max_tokens"),
    ("/chat/completions", {"messages": MESSAGES, "logprobs": True, "top_logprobs": 21}, 400, "top_logprobs"),
    ("/chat/completions", {"messages": MESSAGES, "top_logprobs": 2}, 400, None),
    ("/chat/completions", {"messages": MESSAGES, "n": 2}, 400, None),
    ("/chat/completions", {"messages": MESSAGES, "tools": [{"type": "function"}]}, 400, None),
    ("/chat/completions", {"messages": MESSAGES, "seed": -1}, 400, "seed"),
    ("/chat/completions", {"messages": [{"role": "user", "content": "word " * 200}]}, 413, "context_length_exceeded"),
    ("/completions", {"prompt": "x", "max_tokens": 0}, 400, None),
    ("/completions", {"prompt": "", "max_tokens": 3}, 400, "prompt"),
    ("/completions", {"prompt": [99999], "max_tokens": 3}, 400, "prompt"),
    ("/completions", {"prompt": "word " * 200, "max_tokens": 0, "echo": True, "logprobs": 1}, 413, "context_length_exceeded"),
    ("/completions", {"max_tokens": 3}, 400, "prompt"),
]


@pytest.mark.parametrize("path,body,status,named", BAD_REQUESTS, ids=[f"{p}-{s}-{n}" for p, _, s, n in BAD_REQUESTS])
def test_bad_requests_get_openai_shaped_errors(server, path, body, status, named):
    r = post(server.url + path, body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert "Traceback" not in r.text
    if named is not None:
        assert named in (error["code"], error["param"]), error


@pytest.mark.parametrize(
    "method,path,body,status",
    [("POST", "/v1/chat/completions", b"{not json", 400), ("GET", "/v1/nowhere", None, 404), ("GET", "/v1/chat/completions", None, 405), ("GET", "/v1/models/nope", None, 404)],
)
def test_malformed_bodies_unknown_routes_and_methods(server, method, path, body, status):
    r = httpx.request(method, server.root + path, content=body, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == status and set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_bodies_over_the_limit_are_refused_before_they_are_read(server):
    big = json.dumps({"prompt": "a" * (2 << 20), "max_tokens": 1}).encode()
    r = httpx.post(server.url + "/completions", content=big, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunks():  # no Content-Length: the limit is counted as the body arrives
        for _ in range(40):
            yield b"a" * 65536

    r = httpx.post(server.url + "/completions", content=chunks(), headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413


def test_an_api_key_is_required_on_every_route_but_health(tiny_model_dir):
    with ServerProcess(["-m", str(tiny_model_dir)], env={"LLMCLI_API_KEY": "s3cret-key"}) as server:
        assert httpx.get(server.root + "/health").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-key"}):
            r = httpx.get(server.url + "/models", headers=headers)
            assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        ok = post(server.url + "/chat/completions", {"messages": MESSAGES, "max_tokens": 2}, headers={"Authorization": "Bearer s3cret-key"})
        assert ok.status_code == 200
        server.stop()
        assert all("s3cret-key" not in line for line in server.log_lines())


def test_a_non_loopback_address_without_a_key_is_refused(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k != "LLMCLI_API_KEY"} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "llmcli", "serve", "--host", "0.0.0.0", "-m", str(tmp_path / "never-loaded")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: refusing to listen on 0.0.0.0 without an API key")
    assert lines[1].startswith("hint:") and "--api-key" in lines[1] and len(lines) == 2


def test_serve_help_imports_no_web_stack_and_no_torch():
    code = (
        "import sys\n"
        "from llmcli.cli import app\n"
        "try:\n"
        "    app(['serve', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('HEAVY', [m for m in ('torch', 'transformers', 'fastapi', 'uvicorn', 'openai') if m in sys.modules], file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert "HEAVY []" in proc.stderr and "--api-key" in proc.stdout, proc.stderr


def test_which_addresses_are_loopback():
    from llmcli.commands.serve import is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.10", "example.org"))


def test_a_busy_port_is_one_line(server):
    port = server.root.rsplit(":", 1)[1]
    proc = subprocess.run([sys.executable, "-m", "llmcli", "serve", "--port", port, "-m", "none"], capture_output=True, text=True, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 1 and proc.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}") and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- many clients


def test_eight_concurrent_streaming_clients_all_get_their_whole_reply(server):
    prompts = [f"Question number {i}: what is {i} + {i}?" for i in range(8)]
    expected = {p: post(server.url + "/chat/completions", {"messages": [{"role": "user", "content": p}], "max_tokens": 24, "temperature": 0}).json()["choices"][0]["message"]["content"] for p in prompts}
    got: dict[str, str] = {}
    done: dict[str, list] = {}

    def client(prompt: str) -> None:
        body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": 24, "temperature": 0, "stream": True}
        with httpx.stream("POST", server.url + "/chat/completions", json=body, timeout=300) as r:
            lines = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
        done[prompt] = lines
        got[prompt] = "".join(json.loads(x)["choices"][0]["delta"].get("content", "") for x in lines[:-1] if json.loads(x)["choices"])

    threads = [threading.Thread(target=client, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert got == expected
    assert all(lines[-1] == "[DONE]" for lines in done.values())


def test_a_client_that_leaves_mid_stream_frees_the_model(server):
    """Read three tokens, hang up: the generation stops (interrupted, far short of its
    max_tokens) and the next request is served."""
    body = {"messages": [{"role": "user", "content": "Leave early"}], "max_tokens": 100, "temperature": 0, "stream": True}
    with httpx.stream("POST", server.url + "/chat/completions", json=body, timeout=120) as r:
        seen = 0
        for line in r.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                seen += 1
            if seen == 3:
                break  # leaving the block closes the connection
    line = server.wait_for_log(r"POST /v1/chat/completions 200 \S+ \d+ in \d+ out interrupted stream")
    generated = int(line.split(" out ")[0].rsplit(" ", 1)[1])
    assert 3 <= generated < 100
    after = post(server.url + "/chat/completions", {"messages": MESSAGES, "max_tokens": 3, "temperature": 0})
    assert after.status_code == 200 and after.json()["usage"]["completion_tokens"] == 3


class StandIn:
    """A response whose tokens are computed only when asked for: counts how many were.
    Reading `stats` closes an unfinished generation, as `Response.stats` does."""

    def __init__(self, n: int):
        self.computed = 0
        self.closed = False
        self._iterator = self._events(n)

    def __iter__(self):
        return self._iterator

    def _events(self, n: int):
        try:
            for i in range(n):
                self.computed += 1
                yield i
        finally:
            self.closed = True

    @property
    def stats(self):
        self._iterator.close()
        return "stats"


def test_the_token_loop_stops_at_the_first_token_after_the_client_left():
    from llmcli.server.runner import ModelRunner

    async def scenario():
        runner = ModelRunner("stand-in", model=None)
        response = StandIn(50)
        seen = []

        async def gone() -> bool:
            return len(seen) >= 4  # the client left while token 4 was on its way

        async with runner.turn():
            async for event in runner.events(response, gone):
                seen.append(event)
        runner.close()
        return seen, response

    seen, response = asyncio.run(scenario())
    assert seen == [0, 1, 2, 3] and response.computed == 4 and response.closed


def test_requests_to_one_model_take_turns_in_arrival_order():
    from llmcli.server.runner import ModelRunner

    async def scenario():
        runner = ModelRunner("stand-in", model=None)
        order, inside = [], []

        async def request(i: int) -> None:
            async with runner.turn():
                inside.append(i)
                assert len(inside) == 1, "two requests on the model at once"
                await runner.run(lambda: None)  # the model thread's work
                order.append(i)
                inside.remove(i)

        tasks = []
        for i in range(6):
            tasks.append(asyncio.create_task(request(i)))
            await asyncio.sleep(0)  # request i arrives before request i + 1
        await asyncio.gather(*tasks)
        runner.close()
        return order

    assert asyncio.run(scenario()) == list(range(6))


# ---------------------------------------------------------------- Ctrl-C


def test_ctrl_c_mid_stream_shuts_down_cleanly(tiny_model_dir):
    """SIGINT while a reply streams: the stream still ends properly (the whole reply, or an
    error event saying the server is shutting down, then [DONE]), the process exits 0
    with no traceback, and the port is closed."""
    server = ServerProcess(["-m", str(tiny_model_dir)])
    server.start()
    body = {"messages": MESSAGES, "max_tokens": 110, "temperature": 0, "stream": True, "logprobs": True, "top_logprobs": 20}
    with httpx.stream("POST", server.url + "/chat/completions", json=body, timeout=120) as r:
        lines = (line[6:] for line in r.iter_lines() if line.startswith("data: "))
        next(line for line in lines if json.loads(line)["choices"] and json.loads(line)["choices"][0]["delta"].get("content"))
        code = server.stop()  # SIGINT while the stream is open
        rest = list(lines)  # read to the end: no "incomplete chunked read"
    assert code == 0
    assert rest[-1] == "[DONE]"
    last = json.loads(rest[-2])
    assert last.get("error", {}).get("code") == "server_shutdown" or last["choices"][0]["finish_reason"] in ("stop", "length")
    stderr = "\n".join(server.log_lines())
    assert "Traceback" not in stderr and "ERROR" not in stderr and stderr.rstrip().endswith("llmcli serve: stopped")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(server.root.rsplit(":", 1)[1])), timeout=2).close()
