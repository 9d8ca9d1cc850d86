"""The API's HTTP edge (runtime.openai_api.AiohttpClient) against sockets that fail in each way: every
failure before an answer is WorkerUnreachable (the request is retried elsewhere), never a 500."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from runtime.openai_api import AiohttpClient, WorkerUnreachable


async def _stream_to(port: int) -> None:
    client = AiohttpClient(read_timeout=5)
    try:
        async for _ in client.stream(f"http://127.0.0.1:{port}/worker_generate_stream", {"model": "m"}):
            pass
    finally:
        await client.close()


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
