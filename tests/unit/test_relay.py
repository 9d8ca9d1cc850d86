"""The relay from a stream's thread to the event loop: newest chunk wins, the last one always arrives."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from runtime.relay import relay_chunks


class Chunk(dict[str, Any]):
    """A dict that can be weakly referenced (to see superseded chunks being freed)."""


def collect(chunks: Iterator[dict[str, Any]], pause: threading.Event | None = None) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        out = []
        with ThreadPoolExecutor(2) as pool:
            async for chunk in relay_chunks(chunks, pool):
                out.append(chunk)
                if pause is not None:
                    await asyncio.to_thread(pause.wait)  # a reader that lags behind the producer
        return out

    return asyncio.run(run())


def test_a_reader_that_keeps_up_gets_every_chunk() -> None:
    def paced() -> Iterator[dict[str, Any]]:
        for i in range(5):
            yield {"text": "x" * i}
            threading.Event().wait(0.02)

    assert [c["text"] for c in collect(paced())] == ["", "x", "xx", "xxx", "xxxx"]


def test_a_lagging_reader_gets_the_newest_chunk_and_superseded_ones_are_freed() -> None:
    refs: list[weakref.ref[Chunk]] = []
    go = threading.Event()
    alive: list[int] = []

    def fast() -> Iterator[dict[str, Any]]:
        for i in range(1000):
            chunk = Chunk(text="x" * i, n=i)
            refs.append(weakref.ref(chunk))
            yield chunk
        gc.collect()
        alive.append(sum(r() is not None for r in refs[:-1]))
        go.set()  # the reader, paused after its first chunk, goes on

    got = collect(fast(), pause=go)
    assert alive[0] <= 1  # at most the chunk the reader holds; the pending one is the last
    assert got[-1]["n"] == 999
    assert len(got) <= 2


def test_the_last_chunk_always_arrives_and_an_empty_stream_ends() -> None:
    assert collect(iter([{"n": 1}, {"n": 2}, {"n": 3}]))[-1] == {"n": 3}
    assert collect(iter([])) == []


def test_a_reader_that_goes_away_closes_the_stream() -> None:
    closed = threading.Event()

    def endless() -> Iterator[dict[str, Any]]:
        try:
            while True:
                yield {"text": "x"}
                threading.Event().wait(0.001)
        finally:
            closed.set()

    async def read_one() -> None:
        with ThreadPoolExecutor(2) as pool:
            async for _ in relay_chunks(endless(), pool):
                break
            assert await asyncio.to_thread(closed.wait, 5)

    asyncio.run(read_one())
