"""Moving a blocking stream (boto3 runs in a thread) onto the event loop, coalescing under load.

Each stream's generator runs in its own pool thread and puts chunks into a one-chunk relay; the event
loop is woken only when it is actually waiting. FastChat chunks carry the cumulative text, so only the
newest one ever needs sending: under load a slow reader gets fewer, larger updates instead of falling
behind, no token-by-token thread hop blocks the loop, and no superseded chunk is kept alive.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor
from typing import Any

_END = object()
_EMPTY = object()


class Relay:
    """A single slot: each put replaces the pending chunk, so superseded chunks (each holding its own copy
    of the text so far) are freed at once instead of piling up while the loop is busy elsewhere."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._latest: Any = _EMPTY
        self._ended = False
        self._lock = threading.Lock()
        self._event = asyncio.Event()
        self._waiting = False
        self.cancelled = False

    def put(self, item: Any) -> None:
        """Called from the producer thread."""
        with self._lock:
            if item is _END:
                self._ended = True
            else:
                self._latest = item
            wake, self._waiting = self._waiting, False
        if wake:
            self._loop.call_soon_threadsafe(self._event.set)

    async def take(self) -> tuple[Any, bool]:
        """The newest chunk (or _EMPTY) and whether the stream has ended."""
        while True:
            with self._lock:
                if self._latest is not _EMPTY or self._ended:
                    latest, self._latest = self._latest, _EMPTY
                    return latest, self._ended
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
            latest, ended = await relay.take()
            if latest is not _EMPTY:
                yield latest
            if ended:
                return
    finally:
        relay.cancelled = True
