"""The API's HTTP edge (runtime.openai_api.AiohttpClient) against sockets that fail in each way: every
failure before an answer is WorkerUnreachable (the request is retried elsewhere), never a 500."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator

import pytest

from runtime.openai_api import AiohttpClient, WorkerSilent, WorkerUnreachable


async def _stream_to(port: int, read_timeout: float = 5, pause: float = 0) -> list[bytes]:
    client = AiohttpClient(read_timeout=read_timeout)
    got: list[bytes] = []
    try:
        async for data in client.stream(f"http://127.0.0.1:{port}/worker_generate_stream", {"model": "m"}):
            got.append(data)
            await asyncio.sleep(pause)  # a slow client of the API
    finally:
        await client.close()
    return got


@pytest.mark.parametrize("how", ["refused", "reset", "closed"])
def test_connection_failures_are_worker_unreachable(how: str) -> None:
    """Refused, reset (RST) and closed-without-answer connections all become WorkerUnreachable."""

    async def run() -> None:
        if how == "refused":
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]  # nothing listens there once closed
            with pytest.raises(WorkerUnreachable):
                await _stream_to(port)
            return

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(100)
            sock = writer.get_extra_info("socket")
            if how == "reset":  # linger 0: close sends RST
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            with pytest.raises(WorkerUnreachable):
                await _stream_to(port)

    asyncio.run(run())


@contextlib.asynccontextmanager
async def _serve_chunks(
    parts: list[bytes], gap: float, head_delay: float = 0, hang: bool = False
) -> AsyncIterator[int]:
    """A worker stand-in on the port it yields: a chunked 200 after `head_delay`, `parts` each after
    `gap`, then the end (or silence, with `hang`); its connections end with the block."""
    handlers: list[asyncio.Task[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(head_delay)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for part in parts:
                await asyncio.sleep(gap)
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                await writer.drain()
            if hang:
                await asyncio.sleep(60)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)


@pytest.mark.parametrize("where", ["before the answer", "after a frame"])
def test_a_silent_worker_is_worker_silent(where: str) -> None:
    """Nothing from the worker for the read timeout, before its answer or between frames: WorkerSilent."""

    async def run() -> None:
        before = where == "before the answer"
        async with _serve_chunks(
            [] if before else [b"a"], 0, head_delay=60 if before else 0, hang=True
        ) as port:
            with pytest.raises(WorkerSilent):
                await _stream_to(port, read_timeout=0.3)

    asyncio.run(run())


@pytest.mark.parametrize(("gap", "pause", "timeout"), [(0.03, 0, 0.6), (0, 0.4, 0.2)])
def test_the_read_timeout_counts_only_the_wait_for_the_worker(
    gap: float, pause: float, timeout: float
) -> None:
    """A stream lasting over twice the read timeout is not cut while its frames keep coming (gap well
    under the timeout), nor while its client reads slowly (a pause per frame over the timeout: the
    frames wait in the buffer, the worker owes nothing)."""

    async def run() -> None:
        parts = [b"%d," % i for i in range(45 if gap else 4)]
        async with _serve_chunks(parts, gap) as port:
            got = await _stream_to(port, read_timeout=timeout, pause=pause)
        assert b"".join(got) == b"".join(parts)

    asyncio.run(run())
