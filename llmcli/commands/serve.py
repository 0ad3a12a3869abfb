"""`llmcli serve`: the loaded models behind an OpenAI-compatible HTTP API, for any client.

Options -> refuse an unsafe bind -> load every model once -> `llmcli.server.create_app` ->
uvicorn. The address is printed on stderr once the socket is bound (`--port 0` picks a free
port, and the line says which), then one line per request.

Safe by default: it listens on 127.0.0.1. Any other address needs an API key (`--api-key`,
or $LLMCLI_API_KEY, which keeps it out of `ps`); without one it refuses, before loading
anything. With a key set, every request but /health needs `Authorization: Bearer KEY`. The
key is never printed or logged. Ctrl-C stops it: streams in progress are ended, the token
being computed is finished, and the process exits 0.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Annotated, Optional

import typer

from llmcli import options
from llmcli.errors import BadInput, LlmcliError

SERVER = "Server"
API_KEY_ENV = "LLMCLI_API_KEY"


@options.loading
def serve(
    model: Annotated[
        Optional[list[str]],
        typer.Option("-m", "--model", metavar="MODEL", help="A model to serve (repeat for several). Default: $LLMCLI_MODEL or smollm2.", rich_help_panel=options.LOADING, show_default=False),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on. Anything but loopback needs an API key.", rich_help_panel=SERVER)] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0: any free port; the address line says which).", min=0, max=65535, rich_help_panel=SERVER)] = 8000,
    api_key: Annotated[
        Optional[str],
        typer.Option("--api-key", help=f"Require `Authorization: Bearer KEY` on every request. Default: ${API_KEY_ENV}.", rich_help_panel=SERVER, show_default=False),
    ] = None,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", help="Refuse request bodies larger than this (413).", min=1024, rich_help_panel=SERVER)] = 1 << 20,
    *,
    loading,
) -> None:
    """Serve models over an OpenAI-compatible API: chat and completions with log-probabilities, tokenize."""
    from llmcli import state

    key = api_key or os.environ.get(API_KEY_ENV) or None
    check_bind(host, key)
    names = list(dict.fromkeys(model or [None]))
    if any(n and n.startswith("openai:") for n in names):
        raise BadInput("llmcli serve serves local models; an openai: model is already on a server", "point your client at that server instead")
    sock = bind(host, port)  # before loading: a busy port fails in milliseconds
    models = load_all(names, loading)

    from llmcli.server import create_app, run

    app = create_app(models, api_key=key, max_body=max_body_bytes, verbose=state.verbose)
    run(app, sock, announce=lambda url: _say(f"llmcli serve: {', '.join(models)} on {url}/v1 (Ctrl-C to stop)"), verbose=state.verbose)
    _say("llmcli serve: stopped")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, key: str | None) -> None:
    """Refuse to listen beyond this machine without an API key."""
    if not is_loopback(host) and not key:
        raise BadInput(
            f"refusing to listen on {host} without an API key: anyone who can reach this machine could use the models",
            f"give --api-key KEY (or set ${API_KEY_ENV}), or keep the default --host 127.0.0.1",
        )


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        hint = "pick another --port (0 picks a free one)" if e.errno in (98, 48, 10048) else "check --host"
        raise LlmcliError(f"cannot listen on {host}:{port}: {e.strerror or e}", hint) from None
    return sock


def load_all(names: list[str | None], loading: dict) -> dict:
    """Each model loaded once, under the name clients ask for (an alias as typed, a path by its last part)."""
    from llmcli.commands._load import load, progress_label

    models = {}
    for name in names:
        models[progress_label(name)] = load(name, loading)
    return models


def _say(line: str) -> None:
    from llmcli import render

    render.stderr().print(line, markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command()(serve)
