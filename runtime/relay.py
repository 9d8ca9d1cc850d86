"""Moving a blocking stream (boto3 runs in a thread) onto the event loop, coalescing under load.

Each stream's generator runs in its own pool thread and appends chunks to a relay; the event loop is
woken only when it is actually waiting, and takes everything queued at once. FastChat chunks carry the
cumulative text, so when several are queued only the newest needs sending: under load a slow reader
gets fewer, larger updates instead of falling behind, and no token-by-token thread hop blocks the loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor
from typing import Any

_END = object()


class Relay:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._event = asyncio.Event()
        self._waiting = False
        self.cancelled = False

    def put(self, item: Any) -> None:
        """Called from the producer thread."""
        with self._lock:
            self._items.append(item)
            wake, self._waiting = self._waiting, False
        if wake:
            self._loop.call_soon_threadsafe(self._event.set)

    async def take_all(self) -> list[Any]:
        while True:
            with self._lock:
                if self._items:
                    items = list(self._items)
                    self._items.clear()
                    return items
                self._waiting = True
                self._event.clear()
            await self._event.wait()


def _produce(chunks: Iterator[dict[str, Any]], relay: Relay) -> None:
    try:
        for chunk in chunks:
            relay.put(chunk)
            if relay.cancelled:
                break
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # ends the SageMaker stream early when the client went away
        relay.put(_END)


async def relay_chunks(chunks: Iterator[dict[str, Any]], executor: Executor) -> AsyncIterator[dict[str, Any]]:
    """Yield the newest chunk each time the loop gets to run; every chunk when the reader keeps up."""
    loop = asyncio.get_running_loop()
    relay = Relay(loop)
    # The producer runs in the request's context (current trace span, for log lines and outgoing calls).
    loop.run_in_executor(executor, contextvars.copy_context().run, _produce, chunks, relay)
    try:
        while True:
            items = await relay.take_all()
            ended = items[-1] is _END
            if ended:
                items.pop()
            if items:
                yield items[-1]
            if ended:
                return
    finally:
        relay.cancelled = True
