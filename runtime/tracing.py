"""Worker-side tracing and the per-generation log line.

A segment per generate request (child of the caller's trace header) with one SageMaker subsegment:
annotations model_name, endpoint_name, model_set_version, variant (the endpoint that answered); metadata
time_to_first_token_ms, tokens, finish_reason, error, failovers (variants that failed before their first
token, with why). One `generation_finished` log line per request with the same facts and the trace
id. Never any prompt or completion text. The worker's tracer is built with the worker (`SetWorker`) and
handed to each trace (docs/design.md "Observability").
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import structlog

from contract.chunk import WorkerChunk
from runtime.variants import Attempt
from telemetry.tracing import Tracer

WORKER_SERVICE = "sagemaker-fastchat-worker"
log = structlog.get_logger("worker")


class GenerationTrace:
    """One generate request: its spans (when sampled), time to first token, the last chunk, the log line."""

    def __init__(
        self, tracer: Tracer, header: str | None, model: str, endpoint: str, version: int | None
    ) -> None:
        self.model, self.endpoint, self.version = model, endpoint, version
        self.span = tracer.begin(WORKER_SERVICE, header)
        self.call = self.span.child(f"SageMaker {endpoint}", "aws") if self.span is not None else None
        for s in (self.span, self.call):
            if s is not None:
                s.annotate("model_name", model)
                s.annotate("endpoint_name", endpoint)
                s.annotate("model_set_version", version)
        self.start = time.monotonic()
        self.ttft: float | None = None
        self.last: WorkerChunk | None = None
        self.attempts: list[Attempt] = []  # the variants tried, in order (the adapter appends)

    def saw(self, chunk: WorkerChunk) -> None:
        if self.ttft is None:
            self.ttft = round((time.monotonic() - self.start) * 1000, 2)
        self.last = chunk

    def end(self) -> None:
        """Writes the log line and ends the spans (once the stream has ended, whatever the reason)."""
        last = self.last
        facts: dict[str, Any] = {"time_to_first_token_ms": self.ttft}
        if self.attempts:
            facts["variant"] = self.attempts[-1].endpoint
            failovers = [f"{a.endpoint}: {a.error_kind}" for a in self.attempts if a.failed_over]
            if failovers:
                facts["failovers"] = failovers
        if last is not None and last.get("error_code"):
            facts["error"] = str(last.get("text", ""))[-300:]
        elif last is not None:
            usage = last.get("usage")
            facts["tokens"] = usage.get("completion_tokens") if usage else None
            facts["finish_reason"] = last.get("finish_reason")
        trace_id = {"trace_id": self.span.trace_id} if self.span is not None else {}
        log.info(
            "generation_finished",
            model=self.model,
            endpoint=self.endpoint,
            version=self.version,
            duration_ms=round((time.monotonic() - self.start) * 1000, 2),
            **facts,
            **trace_id,
        )
        if self.call is not None and self.span is not None:
            if "variant" in facts:
                self.span.annotate("variant", facts["variant"])
            for key, value in facts.items():
                if key == "error":
                    self.call.error(value)
                elif value is not None:
                    self.call.meta(key, value)
            self.call.end()
            self.span.end()


async def traced_stream(
    chunks: AsyncIterator[WorkerChunk], trace: GenerationTrace
) -> AsyncIterator[WorkerChunk]:
    """Pass chunks through; the trace ends when the stream does, however it ends (finished, failed,
    or the reader went away)."""
    try:
        async for chunk in chunks:
            trace.saw(chunk)
            yield chunk
    finally:
        trace.end()
