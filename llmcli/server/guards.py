"""What stands between a request and a model: the API key, the body size limit, the errors,
and the one log line per request.

Pure ASGI middleware (no per-request thread, no buffering of streamed responses):
- `Guard` checks `Authorization: Bearer KEY` (constant-time compare) when a key is set,
  except on `/health`, and reads at most `max_body` bytes of a request body (a declared
  `Content-Length` over the limit is refused before anything is read). Failures are
  OpenAI-shaped JSON: 401, 413.
- `RequestLog` writes one line per request when its response has been sent, streamed ones
  included: method, path, status, model, tokens in and out, finish reason, seconds. Routes
  put what only they know into `scope["state"]["log"]`. An API key never appears in it.

`ApiError` is what a route raises for a client's mistake; `install_handlers` turns it, a
validation error, an unknown route or method, an llmcli error and any bug into the JSON
shape OpenAI clients parse, never a traceback (a bug's traceback goes to the log with
--verbose).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from typing import Any, Callable

from llmcli.errors import LlmcliError
from llmcli.server.openai_format import error

DEFAULT_MAX_BODY = 1 << 20  # 1 MiB: far more than any context window's worth of text
PUBLIC_PATHS = frozenset({"/health"})
log = logging.getLogger("llmcli.server")


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = status, message, kind, code, param

    def body(self) -> dict[str, Any]:
        return error(self.message, self.kind, self.code, self.param)


async def _send_json(send: Callable, status: int, body: dict[str, Any], headers: list | None = None) -> None:
    data = json.dumps(body).encode()
    start = {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *(headers or [])]}
    await send(start)
    await send({"type": "http.response.body", "body": data})


class Guard:
    def __init__(self, app: Any, *, api_key: str | None, max_body: int = DEFAULT_MAX_BODY):
        self.app, self.api_key, self.max_body = app, api_key, max_body

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.api_key and scope["path"] not in PUBLIC_PATHS and not self._authorized(headers.get("authorization", "")):
            return await _send_json(
                send, 401, error("missing or wrong API key: send `Authorization: Bearer KEY`", "authentication_error", "invalid_api_key"), [(b"www-authenticate", b"Bearer")]
            )
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            return await _send_json(send, 413, self._too_large())
        body, more = [], True
        size = 0
        while more and scope["method"] in ("POST", "PUT", "PATCH"):
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size > self.max_body:
                return await _send_json(send, 413, self._too_large())
            body.append(message.get("body", b""))
            more = message.get("more_body", False)
        replay = [{"type": "http.request", "body": b"".join(body), "more_body": False}] if body else []

        async def receive_again() -> dict:
            return replay.pop() if replay else await receive()

        await self.app(scope, receive_again, send)

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key.encode())

    def _too_large(self) -> dict[str, Any]:
        return error(f"the request body is over the server's limit of {self.max_body:,} bytes", "invalid_request_error", "request_too_large")


class RequestLog:
    def __init__(self, app: Any, write: Callable[[str], None], *, verbose: bool = False):
        self.app, self.write, self.verbose = app, write, verbose

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 0
        scope.setdefault("state", {})["log"] = {}

        async def record(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        except Exception as e:  # noqa: BLE001 - Starlette re-raises a bug after its 500 has been sent
            scope["state"]["log"]["finish"] = f"error: {type(e).__name__}"
            log.debug("the request failed", exc_info=True)  # the traceback, with --verbose
            if not status:
                status = 500
                await _send_json(send, 500, error(f"internal error ({type(e).__name__})", "server_error"))
        finally:
            self.write(self.line(scope, status, time.perf_counter() - start))

    def line(self, scope: dict, status: int, seconds: float) -> str:
        info = scope["state"]["log"]
        parts = [scope["method"], scope["path"], str(status or "-")]
        if "model" in info:
            parts.append(info["model"])
        if "tokens_in" in info:
            parts.append(f"{info['tokens_in']} in")
        if "tokens_out" in info:
            parts.append(f"{info['tokens_out']} out")
        if info.get("finish"):
            parts.append(info["finish"])
        if info.get("stream"):
            parts.append("stream")
        parts.append(f"{seconds:.2f}s")
        if self.verbose:
            client = scope.get("client")
            parts.append(f"client={client[0]}:{client[1]}" if client else "client=?")
            if info.get("settings"):
                parts.append(f"settings={info['settings']}")
        return " ".join(parts)


def install_handlers(app: Any) -> None:
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    @app.exception_handler(ApiError)
    async def api_error(request: Any, e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Any, e: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_error(e.errors()), status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Any, e: HTTPException) -> JSONResponse:
        if e.status_code == 404:
            body = error(f"no route {request.method} {request.url.path}", "invalid_request_error", "not_found")
        elif e.status_code == 405:
            body = error(f"{request.method} is not allowed on {request.url.path}", "invalid_request_error", "method_not_allowed")
        else:
            body = error(str(e.detail), "invalid_request_error")
        return JSONResponse(body, status_code=e.status_code)

    @app.exception_handler(LlmcliError)
    async def llmcli_error(request: Any, e: LlmcliError) -> JSONResponse:
        return JSONResponse(error(e.message + (f" ({e.hint})" if e.hint else "")), status_code=400)

    @app.exception_handler(Exception)
    async def bug(request: Any, e: Exception) -> JSONResponse:
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(e).__name__, e, exc_info=log.isEnabledFor(logging.DEBUG))
        return JSONResponse(error(f"internal error ({type(e).__name__}); the server log has the details", "server_error"), status_code=500)


def validation_error(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """pydantic's first complaint, as one sentence naming the field."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body",))
    message = first.get("msg", "invalid value").removeprefix("Value error, ")
    if first.get("type") == "json_invalid":
        return error("the request body is not valid JSON", param=None)
    return error(f"{where}: {message}" if where else message, param=where or None)
