"""One model's turn-taking: requests run one at a time, in arrival order, on the model's own thread.

A CPU box computes one generation at a time best, so each served model has an
`asyncio.Lock` (its waiters are woken first come, first served) and a worker thread of its
own. The event loop stays free while the model computes: it accepts requests, streams
tokens out, and notices a client that has gone.

`events()` is the one loop every generating route uses. It asks the worker thread for one
token at a time and checks after each whether the client is still there; when it is not
(or the task is cancelled, as sse-starlette does when a streaming client disconnects), the
generation stops there: the token being computed is waited for, the generation is closed
(its finish reason becomes "interrupted") and the model is free for the next request. So
a client that goes away costs at most the token in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Awaitable, Callable

import anyio

from llmcli.generation import TokenEvent


class ModelRunner:
    def __init__(self, name: str, model: Any):
        self.name = name
        self.model = model
        self._lock = asyncio.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llmcli-serve-{name}")

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """The model, alone: wait for the requests that came first."""
        async with self._lock:
            yield

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """`function(*args)` on the model's thread (call it during a turn)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    async def events(self, response: Any, gone: Callable[[], Awaitable[bool]]) -> AsyncIterator[TokenEvent]:
        """The response's events as the model computes them; stops after the first token at
        which `gone()` says the client has left. Call it during a turn."""
        iterator = iter(response)
        started = False
        try:
            while True:
                token = self._thread.submit(next, iterator, None)
                started = True
                # Shielded: cancelling this task must not pretend the token is no longer being computed.
                event = await asyncio.shield(asyncio.wrap_future(token))
                if event is None:
                    return
                yield event
                if await gone():
                    return
        finally:
            # The model's thread runs one job at a time, in order: closing the generation is
            # queued after the token in flight, never run while it computes. Shielded, since a
            # cancelled anyio scope (sse-starlette's, when the client leaves or the server
            # stops) would otherwise cancel this wait too, and the route would read the stats early.
            if started:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    # Reading the stats closes an unfinished generation ("interrupted").
                    await asyncio.wrap_future(self._thread.submit(lambda: response.stats))

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)


def never_gone() -> Callable[[], Awaitable[bool]]:
    async def gone() -> bool:
        return False

    return gone
