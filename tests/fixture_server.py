"""A tiny HTTP server that answers with canned responses, for testing llmcli's remote parsing.

    with FixtureServer(handler) as server:        # handler(method, path, body) -> Reply
        llmcli.load("openai:m", base_url=server.url)

It runs uvicorn in a thread of the test process on 127.0.0.1 and a port the OS picks,
records every request it got (`server.requests`), and is stopped when the block ends.
Readiness is waited for on uvicorn's own `started` flag, with a deadline.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON, or a str sent as text/plain
    events: list[Any] | None = None  # server-sent events: each a JSON value, or "[DONE]"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[str, str, dict], Reply]


class FixtureServer:
    def __init__(self, handler: Handler):
        self.handler = handler
        self.requests: list[tuple[str, str, dict]] = []
        self.url = ""
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FixtureServer:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
        from starlette.routing import Route

        async def answer(request: Any) -> Any:
            raw = await request.body()
            body = json.loads(raw) if raw else {}
            self.requests.append((request.method, request.url.path, body))
            reply = self.handler(request.method, request.url.path, body)
            if reply.events is not None:
                chunks = [f"data: {e if e == '[DONE]' else json.dumps(e)}\n\n" for e in reply.events]
                return StreamingResponse(iter(chunks), media_type="text/event-stream", headers=reply.headers)
            if isinstance(reply.body, str):
                return PlainTextResponse(reply.body, status_code=reply.status, headers=reply.headers)
            return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)

        app = Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fixture server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.should_exit = True
        assert self._thread is not None
        self._thread.join(timeout=10)

    def bodies(self, path: str) -> list[dict]:
        return [body for _method, p, body in self.requests if p == path]
