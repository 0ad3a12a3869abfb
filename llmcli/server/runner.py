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
        step: asyncio.Future | None = None
        try:
            while True:
                step = asyncio.ensure_future(self.run(next, iterator, None))
                event = await step
                step = None
                if event is None:
                    return
                yield event
                if await gone():
                    return
        finally:
            if step is not None:  # cancelled while the model computed: let that token finish
                with contextlib.suppress(BaseException):
                    await asyncio.shield(step)
            # Reading the stats closes an unfinished generation ("interrupted") and frees its cache.
            await asyncio.shield(self.run(lambda: response.stats))

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)


def never_gone() -> Callable[[], Awaitable[bool]]:
    async def gone() -> bool:
        return False

    return gone
