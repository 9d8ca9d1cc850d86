"""A fault proxy in front of moto (the worker's SSM endpoint): moto keeps its state while SSM, as the
worker sees it, is down.

Modes: `pass` forwards; `503` answers 503 Service Unavailable; `throttle` answers SSM's 400
ThrottlingException; `blackhole` accepts the request and never answers while the mode lasts (when the
mode changes, a held request is handled by the new mode, as TCP retransmission would deliver it).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Literal

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Mode = Literal["pass", "503", "throttle", "blackhole"]
MODES: tuple[Mode, ...] = ("pass", "503", "throttle", "blackhole")
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}
THROTTLE_BODY = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'


class FaultProxy:
    def __init__(self, upstream: str, port: int) -> None:
        self.upstream = upstream
        self.port = port
        self.mode: Mode = "pass"
        self.counts: dict[str, int] = dict.fromkeys(MODES, 0)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        held = False
        while self.mode == "blackhole":
            if not held:
                self.counts["blackhole"] += 1
                held = True
            await asyncio.sleep(0.05)
        mode = self.mode
        self.counts[mode] += 1
        if mode == "503":
            return Response(b"Service Unavailable", status_code=503, media_type="text/plain")
        if mode == "throttle":
            return Response(
                THROTTLE_BODY,
                status_code=400,
                media_type="application/x-amz-json-1.1",
                headers={"x-amzn-ErrorType": "ThrottlingException"},
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with httpx.AsyncClient(timeout=30) as client:
            upstream = await client.request(
                request.method,
                self.upstream + request.url.path,
                params=request.query_params,
                headers=headers,
                content=body,
            )
        out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
        return Response(upstream.content, status_code=upstream.status_code, headers=out)

    def start(self) -> None:
        app = Starlette(
            routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT", "DELETE"])]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fault proxy did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.mode = "pass"
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
