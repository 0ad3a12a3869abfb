"""`llmcli serve`: an OpenAI-compatible HTTP server over `llmcli.api`.

- `schemas`: the request bodies (OpenAI's fields, vLLM's tokenize, llmcli's sampling extras);
- `app`: the routes, each a thin client of `Model` (a prompt, a Response, prompt logprobs);
- `runner`: one model's turn-taking (one request at a time, in arrival order, on its own
  thread) and the token loop that stops when a client goes;
- `openai_format`: results in OpenAI's (and vLLM's, llama.cpp's) JSON shapes;
- `guards`: the API key, the body size limit, OpenAI-shaped errors, one log line per request.

FastAPI/Starlette, uvicorn and sse-starlette do the HTTP; they are imported only when a
server starts, so `llmcli --help` stays light.
"""

from __future__ import annotations

import socket
from typing import Any, Callable

from llmcli.server.app import create_app

__all__ = ["create_app", "run"]


def run(app: Any, sock: socket.socket, *, announce: Callable[[str], None], verbose: bool = False) -> None:
    """Serve `app` on the bound socket until Ctrl-C (or SIGTERM); `announce(url)` once it accepts connections."""
    import logging

    import uvicorn

    if verbose:
        logging.getLogger("llmcli.server").setLevel(logging.DEBUG)
    config = uvicorn.Config(
        app,
        log_level="info" if verbose else "warning",
        access_log=False,  # the app writes its own line per request
        timeout_graceful_shutdown=5,  # then open streams are cut
        lifespan="off",
    )
    server = uvicorn.Server(config)
    sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
    host, port = sock.getsockname()[:2]
    announce(f"http://{'[' + host + ']' if ':' in host else host}:{port}")
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled, once it has shut down
        pass
