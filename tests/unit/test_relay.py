"""The relay from a stream's thread to the event loop: batches of whatever arrived since the last look."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing

from runtime.relay import relay_batches

where: contextvars.ContextVar[str] = contextvars.ContextVar("where", default="unset")


def collect(items: Iterator[int], lag: threading.Event | None = None) -> list[list[int]]:
    async def run() -> list[list[int]]:
        out = []
        with ThreadPoolExecutor(2) as pool:
            async for batch in relay_batches(items, pool):
                out.append(batch)
                if lag is not None:
                    await asyncio.to_thread(lag.wait)  # a reader that lags behind the producer
        return out

    return asyncio.run(run())


def test_a_reader_that_keeps_up_gets_every_item_on_its_own() -> None:
    def paced() -> Iterator[int]:
        for i in range(5):
            yield i
            threading.Event().wait(0.05)

    batches = collect(paced())
    assert [i for batch in batches for i in batch] == [0, 1, 2, 3, 4]
    assert len(batches) >= 4  # one each (a very busy machine may merge two)


def test_a_lagging_reader_gets_everything_in_order_in_few_batches() -> None:
    go = threading.Event()

    def fast() -> Iterator[int]:
        yield from range(1000)
        go.set()  # the reader, paused after its first batch, goes on

    batches = collect(fast(), lag=go)
    assert [i for batch in batches for i in batch] == list(range(1000))
    assert len(batches) <= 3


def test_an_empty_stream_ends() -> None:
    assert collect(iter([])) == []


def test_a_reader_that_goes_away_closes_the_producer_in_the_given_context() -> None:
    closed = threading.Event()
    seen: list[str] = []

    def endless() -> Iterator[int]:
        seen.append(where.get())
        try:
            while True:
                yield 1
                threading.Event().wait(0.001)
        finally:
            closed.set()

    async def read_one() -> None:
        context = contextvars.copy_context()
        context.run(where.set, "request")
        with ThreadPoolExecutor(2) as pool:
            async with aclosing(relay_batches(endless(), pool, context)) as batches:
                async for _ in batches:
                    break
            assert await asyncio.to_thread(closed.wait, 5)

    asyncio.run(read_one())
    assert seen == ["request"]
