"""What can go wrong talking to a server, each as one line and a hint (`ServerError`).

The openai SDK's and httpx's exceptions are mapped here, once, for every remote call:
refused or unreachable (is it running? which URL?), timed out, 401 (the key), 404 (no such
model: the ones it serves are listed; or no such endpoint), a server that rejects or
ignores `logprobs`, any other status with the server's own message. Unknown exceptions
are not caught: they are bugs. The API key never appears in a message.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from llmcli.errors import LlmcliError

LOGPROBS_SERVERS = "llmcli serve, vLLM and llama.cpp's server return them"


class ServerError(LlmcliError):
    def __init__(self, message: str, hint: str | None = None, status: int | None = None):
        super().__init__(message, hint)
        self.status = status


def _message(body: Any, fallback: str) -> str:
    """The server's own words from an error body ({"error": {"message"}}, {"detail"}, {"error": "..."})."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message") or error.get("detail") or fallback)
        return str(error or body.get("detail") or fallback)
    return str(body or fallback)


class Errors:
    def __init__(self, model: str, base_url: str, list_models: Callable[[], list[dict]]):
        self.model, self.url, self._list_models = model, base_url, list_models

    def unreachable(self, reason: str = "") -> ServerError:
        return ServerError(f"cannot connect to the server at {self.url}{reason}", "is it running? check --base-url (or $LLMCLI_BASE_URL)")

    def timed_out(self) -> ServerError:
        return ServerError(f"the server at {self.url} did not answer in time", "is it busy? wait longer with LLMCLI_TIMEOUT=SECONDS (default 600)")

    def bad_key(self) -> ServerError:
        return ServerError(f"the server at {self.url} refused the API key (401)", "put the key in an environment variable and pass its name with --api-key-env NAME", 401)

    def no_logprobs(self, what: str = "log-probabilities") -> ServerError:
        return ServerError(f"the server at {self.url} gives no {what} for {self.model}", f"this needs a server that returns them: {LOGPROBS_SERVERS}")

    def not_found(self, path: str, message: str) -> ServerError:
        try:
            served = [str(m.get("id")) for m in self._list_models()]
        except LlmcliError:
            served = []
        if served and self.model not in served:
            return ServerError(f"the server at {self.url} has no model '{self.model}'", f"it serves: {', '.join(served)}", 404)
        return ServerError(f"the server at {self.url} has no {path} endpoint (404: {message})", "this server does not offer it", 404)

    def status(self, status: int, message: str, path: str, logprobs: bool) -> ServerError:
        if status == 401:
            return self.bad_key()
        if status == 404:
            return self.not_found(path, message)
        if logprobs and status in (400, 422, 501) and "logprob" in message.lower():
            return self.no_logprobs()
        if status == 413:
            return ServerError(f"the server refused the request: {message}", "shorten the prompt", 413)
        return ServerError(f"the server at {self.url} answered {status}: {message}", None, status)

    @contextlib.contextmanager
    def openai(self, what: str, *, logprobs: bool = False) -> Iterator[None]:
        import openai

        path = {"chat": "/chat/completions", "completion": "/completions"}.get(what, what)
        try:
            yield
        except openai.APITimeoutError:
            raise self.timed_out() from None
        except openai.APIConnectionError as e:
            cause = e.__cause__
            raise self.unreachable(f" ({type(cause).__name__}: {cause})" if cause and "refused" not in str(cause).lower() else ": connection refused") from None
        except openai.APIStatusError as e:
            raise self.status(e.status_code, _message(e.body, e.message), path, logprobs) from None
        except openai.APIError as e:  # an error event in the middle of a stream
            raise ServerError(f"the server at {self.url} ended the reply with an error: {_message(e.body, e.message)}") from None

    @contextlib.contextmanager
    def http(self, path: str) -> Iterator[None]:
        import httpx

        try:
            yield
        except httpx.TimeoutException:
            raise self.timed_out() from None
        except httpx.ConnectError:
            raise self.unreachable(": connection refused") from None
        except httpx.TransportError as e:
            raise self.unreachable(f" ({type(e).__name__})") from None
        except httpx.HTTPStatusError as e:
            try:
                body = e.response.json()
            except ValueError:
                body = e.response.text[:200]
            status = e.response.status_code
            if status in (404, 405, 501):  # the endpoint is missing: the caller words it
                raise ServerError(f"{path}: {_message(body, str(status))}", None, status) from None
            raise self.status(status, _message(body, str(status)), path, False) from None
        except ValueError:  # not JSON
            raise ServerError(f"the server at {self.url} did not answer {path} with JSON") from None
