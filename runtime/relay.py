"""Moving a blocking iterator (boto3 runs in a thread) onto the event loop, in batches.

Each stream's producer runs in its own pool thread and appends items to a relay; the event loop is woken
only when it is actually waiting, and takes everything that arrived since it last looked as one batch.
A reader that keeps up gets one item per batch (no added latency); under load the loop handles fewer,
larger batches instead of falling behind, and no item-by-item thread hop blocks it.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import Executor
from typing import Generic, TypeVar

T = TypeVar("T")


class Relay(Generic[T]):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: list[T] = []
        self._ended = False
        self._lock = threading.Lock()
        self._event = asyncio.Event()
        self._waiting = False
        self.cancelled = False

    def put(self, item: T) -> None:
        """Called from the producer thread."""
        with self._lock:
            self._items.append(item)
            wake, self._waiting = self._waiting, False
        if wake:
            self._loop.call_soon_threadsafe(self._event.set)

    def end(self) -> None:
        with self._lock:
            self._ended = True
            wake, self._waiting = self._waiting, False
        if wake:
            self._loop.call_soon_threadsafe(self._event.set)

    async def take(self) -> tuple[list[T], bool]:
        """Everything put since the last take, and whether the producer has ended."""
        while True:
            with self._lock:
                if self._items or self._ended:
                    items, self._items = self._items, []
                    return items, self._ended
                self._waiting = True
                self._event.clear()
            await self._event.wait()


def _produce(items: Iterator[T], relay: Relay[T]) -> None:
    try:
        for item in items:
            relay.put(item)
            if relay.cancelled:
                break
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()  # ends the SageMaker stream early when the reader went away
        relay.end()


async def relay_batches(
    items: Iterator[T], executor: Executor, context: contextvars.Context | None = None
) -> AsyncGenerator[list[T], None]:
    """Batches of `items`, produced in `executor` (in `context`, default: a copy of the caller's, so the
    producer sees the request's trace span). Close this generator (aclosing) to stop the producer."""
    loop = asyncio.get_running_loop()
    relay: Relay[T] = Relay(loop)
    run = (context or contextvars.copy_context()).run
    loop.run_in_executor(executor, run, _produce, items, relay)
    try:
        while True:
            batch, ended = await relay.take()
            if batch:
                yield batch
            if ended:
                return
    finally:
        relay.cancelled = True
