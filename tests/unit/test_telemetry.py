"""Tracing internals without a network: header parsing, spans, the ASGI middleware on a streaming
response, header propagation, the collector's datagram parsing and tree rendering."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route

from telemetry import logs, testing
from telemetry.collector import Collector, build_tree, parse_datagram, render
from telemetry.propagation import TraceMiddleware, patch_httpx
from telemetry.testing import recording_tracer
from telemetry.tracing import (
    MAX_DOCUMENT_BYTES,
    TRACE_HEADER,
    Tracer,
    UdpEmitter,
    child_span,
    current_span,
    current_trace_id,
    parse_header,
)
from tests.helpers import free_port


def test_parse_header() -> None:
    """Root, Parent and the Sampled decision are read from X-Amzn-Trace-Id."""
    assert parse_header("Root=1-abc-def;Parent=53995c3f42cd8ad8;Sampled=1") == (
        "1-abc-def",
        "53995c3f42cd8ad8",
        True,
    )
    assert parse_header("Root=1-abc-def;Sampled=0") == ("1-abc-def", None, False)
    assert parse_header("Root=1-abc-def") == ("1-abc-def", None, None)
    assert parse_header(None) == (None, None, None)


def test_disabled_or_unsampled_costs_nothing() -> None:
    """Off, or an upstream Sampled=0: no span, nothing sent."""
    assert Tracer("t", enabled=False).begin() is None
    tracer = recording_tracer(rate=1.0)
    assert tracer.begin(header="Root=1-5f84c7a1-aaaaaaaaaaaaaaaaaaaaaaaa;Sampled=0") is None
    assert testing.sent(tracer) == []


def test_span_tree_and_trace_ids_in_logs() -> None:
    """A span continues the caller's trace; children nest; the current trace id reaches log lines."""
    tracer = recording_tracer(rate=1.0)
    header = "Root=1-5f84c7a1-aaaaaaaaaaaaaaaaaaaaaaaa;Parent=1111111111111111;Sampled=1"
    with tracer.span("outer", header) as span:
        assert span is not None
        assert current_trace_id() == "1-5f84c7a1-aaaaaaaaaaaaaaaaaaaaaaaa"
        assert logs.add_trace_id(None, "info", {})["trace_id"] == current_trace_id()
        with child_span("inner", "aws") as inner:
            assert inner is not None
            inner.annotate("model_name", "m")
    assert current_trace_id() is None
    assert "trace_id" not in logs.add_trace_id(None, "info", {})
    (sent,) = testing.sent(tracer)
    assert sent["trace_id"] == "1-5f84c7a1-aaaaaaaaaaaaaaaaaaaaaaaa"
    assert sent["parent_id"] == "1111111111111111"
    assert sent["subsegments"][0]["annotations"] == {"model_name": "m"}


def test_middleware_ends_segment_after_the_stream() -> None:
    """The segment of a streaming response ends after its last byte, not when the handler returns."""
    tracer = recording_tracer(rate=1.0)
    seen: list[str | None] = []

    async def stream(_: Any) -> StreamingResponse:
        async def body() -> Any:
            for i in range(3):
                span = current_span.get()
                seen.append(span.header if span else None)
                yield f"{i}\n"

        return StreamingResponse(body())

    app = TraceMiddleware(Starlette(routes=[Route("/s", stream)]), tracer, "api")

    async def call() -> str:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            r = await c.get("/s")
            return r.text

    assert asyncio.run(call()) == "0\n1\n2\n"
    (sent,) = testing.sent(tracer)
    assert sent["name"] == "api"
    assert sent["http"]["response"]["status"] == 200
    assert all(h and sent["id"] in h for h in seen)  # the span was current while the body streamed


def test_httpx_calls_carry_the_current_header() -> None:
    """Outgoing httpx requests get X-Amzn-Trace-Id from the current span."""
    patch_httpx()
    tracer = recording_tracer(rate=1.0)
    got: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        got.append(request.headers.get(TRACE_HEADER))
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        client.get("http://x/")
        with tracer.span("s") as span:
            client.get("http://x/")
    assert got[0] is None
    assert span is not None
    assert got[1] == span.header


def over_udp(tmp_path: Path, send: Callable[[Tracer], object], count: int) -> list[dict[str, Any]]:
    """What the collector writes when `send` traces through a real UDP socket to it, once the file
    holds `count` documents."""
    port = free_port()
    path = tmp_path / "t.jsonl"
    collector = Collector(path, port=port)
    stop = threading.Event()
    thread = threading.Thread(target=collector.serve, args=(stop,))
    thread.start()
    tracer = Tracer("t", UdpEmitter(f"127.0.0.1:{port}"), rate=1.0)
    send(tracer)
    tracer.close()
    for _ in range(100):
        if path.exists() and len(path.read_text().splitlines()) >= count:
            break
        threading.Event().wait(0.05)
    stop.set()
    thread.join()
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_collector_receives_daemon_protocol(tmp_path: Path) -> None:
    """Segments sent over UDP as the SDK sends them to the daemon land in the file."""

    def send(tracer: Tracer) -> None:
        with tracer.span("over-udp"):
            pass

    (doc,) = over_udp(tmp_path, send, 1)
    assert doc["name"] == "over-udp"


@pytest.mark.parametrize("data", [b"", b"garbage", b'{"format": "xml"}\n{}', b'{"format": "json"}\nnot json'])
def test_bad_datagrams_are_ignored(data: bytes) -> None:
    """Anything that is not a daemon-protocol JSON segment is dropped."""
    assert parse_datagram(data) is None


def test_tree_and_render() -> None:
    """Segments nest under the subsegment that called them; the tree prints with durations."""
    api = {"name": "api", "id": "a", "trace_id": "T", "start_time": 1.0, "end_time": 1.5}
    worker = {
        "name": "worker",
        "id": "w",
        "trace_id": "T",
        "parent_id": "a",
        "start_time": 1.1,
        "end_time": 1.4,
        "subsegments": [
            {
                "name": "SageMaker e",
                "id": "s",
                "start_time": 1.1,
                "end_time": 1.3,
                "annotations": {"model_name": "m"},
            }
        ],
    }
    (root,) = build_tree([worker, api])
    lines = render(root)
    assert lines[0] == "api  500.0 ms"
    assert lines[1].startswith("  worker  300.0 ms")
    assert lines[2] == "    SageMaker e  200.0 ms  model_name=m"


def test_requests_and_aiohttp_calls_carry_the_current_header() -> None:
    """FastChat's web UI (requests) and API server (aiohttp) calls carry the header too."""
    import aiohttp
    import requests
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse

    from telemetry.propagation import patch_aiohttp, patch_requests
    from tests.helpers import serve_in_thread

    patch_requests()
    patch_aiohttp()

    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.headers.get(TRACE_HEADER, ""))

    tracer = recording_tracer(rate=1.0)
    with serve_in_thread(Starlette(routes=[Route("/", echo, methods=["POST"])])) as url:
        assert requests.post(url, timeout=5).text == ""
        with tracer.span("s") as span:
            assert span is not None
            assert requests.post(url, timeout=5).text == span.header

            async def via_aiohttp() -> str:
                async with aiohttp.ClientSession() as session, session.post(url) as r:
                    return await r.text()

            assert asyncio.run(via_aiohttp()) == span.header


@pytest.mark.parametrize(("enabled", "loaded"), [("true", True), ("false", False)])
def test_prepare_loads_the_sdk_before_serving_only_when_tracing_is_on(enabled: str, loaded: bool) -> None:
    """The SDK's import (~0.2 s under the GIL) must not happen inside the first sampled request."""
    code = (
        "import sys; from telemetry.settings import TelemetrySettings; "
        "TelemetrySettings().tracer('t').prepare(); "
        "print('aws_xray_sdk.core.models.segment' in sys.modules)"
    )
    env = {**os.environ, "XRAY_ENABLED": enabled}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(loaded)


def _many_children(tracer: Tracer, count: int, meta_bytes: int) -> str:
    """A root span with `count` children each holding `meta_bytes` of metadata; returns the root id."""
    with tracer.span("big") as root:
        assert root is not None
        root.annotate("models_added", count)
        for i in range(count):
            with child_span(f"SSM PutParameter {i}", "aws") as child:
                assert child is not None
                child.meta("parameter", "p" * meta_bytes)
        return str(root.entity.id)


def descendants(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for child in node.get("children", []) for d in (child, *descendants(child))]


def test_a_segment_too_big_for_udp_is_split_not_dropped() -> None:
    """300 subsegments (~180 KB together): a few documents, each fitting a datagram, every subsegment
    sent once (inline or in a "(continued)" subsegment of the root), the root's totals intact."""
    tracer = recording_tracer(rate=1.0)
    root_id = _many_children(tracer, 300, 400)
    sizes = [len(json.dumps(doc).encode()) for doc in testing.sent(tracer)]
    assert 1 < len(sizes) <= 5
    assert max(sizes) <= MAX_DOCUMENT_BYTES
    (root,) = build_tree(testing.sent(tracer))
    assert root["id"] == root_id
    assert root["annotations"] == {"models_added": 300}
    names = sorted(d["name"] for d in descendants(root) if "continued" not in d["name"])
    assert names == sorted(f"SSM PutParameter {i}" for i in range(300))
    parts = [d for d in testing.sent(tracer) if d.get("type") == "subsegment"]
    assert parts
    assert all(d["parent_id"] == root_id and d["trace_id"] == root["trace_id"] for d in parts)


def test_one_entity_too_big_alone_is_trimmed_with_a_note() -> None:
    """A single subsegment with 100 KB of metadata is sent with a note instead of its metadata."""
    tracer = recording_tracer(rate=1.0)
    _many_children(tracer, 1, 100_000)
    assert all(len(json.dumps(doc).encode()) <= MAX_DOCUMENT_BYTES for doc in testing.sent(tracer))
    (child,) = [d for d in testing.sent(tracer) if d.get("type") == "subsegment"]
    assert child["name"] == "SSM PutParameter 0"
    note = child["metadata"]["sagemaker-fastchat"]["trimmed_metadata"]
    assert note.endswith("bytes dropped to fit one X-Ray document")


def test_split_segments_arrive_over_udp(tmp_path: Path) -> None:
    """The split documents go out as daemon-protocol datagrams the collector reassembles into one tree.
    (120 children: two documents, well within a loopback socket's buffer however slow the reader.)"""
    docs = over_udp(tmp_path, lambda tracer: _many_children(tracer, 120, 400), 2)
    assert len(docs) == 2
    (root,) = build_tree(docs)
    assert len([d for d in descendants(root) if "continued" not in d["name"]]) == 120
