"""Worker-side tracing and the per-generation log line.

A segment per generate request (child of the caller's trace header) with one SageMaker subsegment:
annotations model_name, endpoint_name, model_set_version; metadata time_to_first_token_ms, tokens,
finish_reason, error. One `generation_finished` log line per request with the same facts and the trace
id. Never any prompt or completion text.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import structlog

from telemetry.tracing import Tracer, current_span

tracer = Tracer("sagemaker-fastchat-worker")
log = structlog.get_logger("worker")


def traced_stream(
    chunks: Iterator[dict[str, Any]], header: str | None, model: str, endpoint: str, version: int | None
) -> Iterator[dict[str, Any]]:
    """Pass chunks through, timing the SageMaker call; spans end and the log line is written when the
    stream does (in whatever thread consumed it)."""
    span = tracer.begin("sagemaker-fastchat-worker", header)
    call = span.child(f"SageMaker {endpoint}", "aws") if span is not None else None
    for s in (span, call):
        if s is not None:
            s.annotate("model_name", model)
            s.annotate("endpoint_name", endpoint)
            s.annotate("model_set_version", version)
    token = current_span.set(call)
    start, ttft, last = time.monotonic(), None, None
    try:
        for chunk in chunks:
            if ttft is None:
                ttft = round((time.monotonic() - start) * 1000, 2)
            last = chunk
            yield chunk
    finally:
        facts: dict[str, Any] = {"time_to_first_token_ms": ttft}
        if last is not None and last.get("error_code"):
            facts["error"] = str(last.get("text", ""))[-300:]
        elif last is not None:
            facts["tokens"] = (last.get("usage") or {}).get("completion_tokens")
            facts["finish_reason"] = last.get("finish_reason")
        log.info(
            "generation_finished",
            model=model,
            endpoint=endpoint,
            version=version,
            duration_ms=round((time.monotonic() - start) * 1000, 2),
            **facts,
        )
        current_span.reset(token)
        if call is not None and span is not None:
            for key, value in facts.items():
                if key == "error":
                    call.error(value)
                elif value is not None:
                    call.meta(key, value)
            call.end()
            span.end()
