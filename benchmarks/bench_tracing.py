"""Per-request overhead of tracing on versus off, side by side in one run.

One worker request = `runtime.tracing.traced_stream` over a 50-chunk stream (a segment, a SageMaker
subsegment, annotations, metadata, the UDP send, and the log line). Tracing off must cost nearly nothing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import cast

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contract.chunk import WorkerChunk
from runtime import tracing
from telemetry.tracing import Tracer, UdpEmitter

CHUNKS = [
    {"text": "x" * i, "error_code": 0, "usage": {"completion_tokens": i}, "finish_reason": None}
    for i in range(50)
]


async def chunks() -> AsyncIterator[WorkerChunk]:
    for chunk in CHUNKS:
        yield cast(WorkerChunk, chunk)


async def one_request(tracer: Tracer) -> None:
    trace = tracing.GenerationTrace(tracer, None, "m", "e", 1)
    async for _ in tracing.traced_stream(chunks(), trace):
        pass


async def bare() -> None:
    async for _ in chunks():
        pass


def per_request_us(request: Callable[[], Awaitable[None]], n: int) -> float:
    """Best of 5 runs of n requests on one event loop, in microseconds per request."""

    async def run() -> float:
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(n):
                await request()
            best = min(best, time.perf_counter() - start)
        return best / n * 1e6

    return asyncio.run(run())


def main() -> None:
    # Measure tracing, not log rendering: the per-request log line is filtered out here.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    n = 2000
    results: dict[str, float] = {}
    for label, tracer in (
        ("off", Tracer("b", enabled=False)),
        ("on", Tracer("b", UdpEmitter("127.0.0.1:9"), rate=1.0)),
    ):
        results[label] = per_request_us(functools.partial(one_request, tracer), n)
        tracer.close()
    base = per_request_us(bare, n)
    print(
        f"per request (50 chunks): untraced loop {base:.1f} us, tracing off {results['off']:.1f} us, "
        f"tracing on {results['on']:.1f} us"
    )
    print(
        f"tracing on costs {results['on'] - results['off']:.1f} us per request "
        f"({results['on'] / results['off']:.2f}x the off path); off costs {results['off'] - base:.1f} us"
    )


if __name__ == "__main__":
    main()
