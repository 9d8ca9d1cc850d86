"""Outgoing HTTP calls carry the current span's X-Amzn-Trace-Id, so one trace spans UI/API -> controller
-> worker -> SageMaker. FastChat's API server calls out with httpx and aiohttp, its web UI with requests:
each client is patched once, from our launcher (installed packages are never edited)."""

from __future__ import annotations

from typing import Any

from telemetry.tracing import TRACE_HEADER, current_span


def _header() -> str | None:
    span = current_span.get()
    return span.header if span is not None else None


def patch_httpx() -> None:
    import httpx

    for cls in (httpx.Client, httpx.AsyncClient):
        original = cls.send
        if getattr(original, "_traced", False):
            continue

        def send(
            self: Any, request: httpx.Request, *args: Any, _original: Any = original, **kwargs: Any
        ) -> Any:
            header = _header()
            if header and TRACE_HEADER not in request.headers:
                request.headers[TRACE_HEADER] = header
            return _original(self, request, *args, **kwargs)

        send._traced = True  # type: ignore[attr-defined]
        setattr(cls, "send", send)  # noqa: B010 - monkeypatch, typed loosely on purpose


def _patch_headers_kwarg(cls: Any, method: str) -> None:
    """Wrap `cls.method(self, method, url, ..., headers=...)` so calls carry the current trace header."""
    original = getattr(cls, method)
    if getattr(original, "_traced", False):
        return

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:  # requests passes method/url by keyword
        header = _header()
        if header:
            kwargs["headers"] = {TRACE_HEADER: header, **(kwargs.get("headers") or {})}
        return original(self, *args, **kwargs)

    call._traced = True  # type: ignore[attr-defined]
    setattr(cls, method, call)


def patch_requests() -> None:
    import requests

    _patch_headers_kwarg(requests.Session, "request")  # FastChat's web UI


def patch_aiohttp() -> None:
    import aiohttp

    _patch_headers_kwarg(aiohttp.ClientSession, "_request")  # FastChat's API server (fetch_remote)


def patch_all() -> None:
    patch_httpx()
    patch_requests()
    patch_aiohttp()


class TraceMiddleware:
    """Pure ASGI middleware: a segment per HTTP request, ended when the response body is complete
    (streaming responses included), honouring an incoming X-Amzn-Trace-Id."""

    def __init__(self, app: Any, tracer: Any, name: str, only: tuple[str, ...] | None = None) -> None:
        self.app = app
        self.tracer = tracer
        self.name = name
        self.only = only  # paths to trace (None: all but health checks)

    def _traced(self, path: str) -> bool:
        if self.only is not None:
            return path in self.only
        return path not in ("/health", "/ready")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self._traced(scope.get("path", "")) or not self.tracer.enabled:
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        span = self.tracer.begin(self.name, headers.get(TRACE_HEADER.lower()))
        if span is None:
            await self.app(scope, receive, send)
            return
        span.entity.put_http_meta("method", scope.get("method"))
        span.entity.put_http_meta("url", scope.get("path"))
        token = current_span.set(span)
        ended = False

        async def traced_send(message: dict[str, Any]) -> None:
            nonlocal ended
            if message["type"] == "http.response.start":
                span.entity.put_http_meta("status", message.get("status"))
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body") and not ended:
                ended = True
                span.end()

        try:
            await self.app(scope, receive, traced_send)
        except Exception as exc:
            span.error(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            current_span.reset(token)
            if not ended:
                span.end()
