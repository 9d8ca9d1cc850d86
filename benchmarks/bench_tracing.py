"""Per-request overhead of tracing on versus off, side by side in one run.

One worker request = `runtime.tracing.traced_stream` over a 50-chunk stream (a segment, a SageMaker
subsegment, annotations, metadata, the UDP send, and the log line). Tracing off must cost nearly nothing.
"""

from __future__ import annotations

import logging
import sys
import timeit
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime import tracing
from telemetry.tracing import Tracer

CHUNKS = [
    {"text": "x" * i, "error_code": 0, "usage": {"completion_tokens": i}, "finish_reason": None}
    for i in range(50)
]


def one_request() -> None:
    for _ in tracing.traced_stream(iter(CHUNKS), None, "m", "e", 1):
        pass


def bare() -> None:
    for _ in iter(CHUNKS):
        pass


def main() -> None:
    # Measure tracing, not log rendering: the per-request log line is filtered out here.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    n = 2000
    results: dict[str, float] = {}
    for label, tracer in (
        ("off", Tracer("b", enabled=False)),
        ("on", Tracer("b", rate=1.0, address="127.0.0.1:9")),
    ):
        tracing.tracer = tracer
        results[label] = min(timeit.repeat(one_request, number=n, repeat=5)) / n * 1e6
        tracer.close()
    base = min(timeit.repeat(bare, number=n, repeat=5)) / n * 1e6
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
