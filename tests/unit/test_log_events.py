"""The documented log events (README "Observability", docs/design.md "Observability"), checked in process
with structlog's `capture_logs`: the worker's `generation_finished`, the warm-up's `model_refused` /
`model_admitted`, the poller's `model_set_swapped` / `waiting_for_model_set` / `model_set_poll_failed`.
The sync's events are checked against moto in tests/integration/test_sync.py."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import structlog
from structlog.testing import capture_logs

from contract.endpoints import FakeEndpointChecker
from contract.spec import ModelSpec, parse_model_item
from runtime.adapter import SageMakerAdapter
from runtime.model_set import LiveModelSet
from runtime.poller import Poller
from runtime.sources import PollSchedule, Snapshot, SnapshotUnavailable
from runtime.tracing import GenerationTrace, traced_stream
from runtime.warmup import Warmup
from telemetry import testing
from telemetry.logs import configure_logging
from tests.helpers import example_item

HEADER = "Root=1-5f84c7a1-bbbbbbbbbbbbbbbbbbbbbbbb;Parent=2222222222222222;Sampled=1"


def spec(name: str, endpoint: str = "demo-tgi") -> ModelSpec:
    return parse_model_item({**example_item("tgi"), "model_name": name, "endpoint_name": endpoint})


def stream(chunks: list[dict[str, Any]], trace: GenerationTrace) -> list[dict[str, Any]]:
    async def source() -> AsyncIterator[dict[str, Any]]:
        for chunk in chunks:
            yield chunk

    async def read() -> list[dict[str, Any]]:
        return [c async for c in traced_stream(source(), trace)]

    return asyncio.run(read())


def test_generation_finished_carries_the_facts_and_the_trace_id() -> None:
    """One line per request: model, endpoint, version, time to first token, tokens, finish reason and
    the trace id of the worker's segment; never the text."""
    tracer = testing.recording_tracer("sagemaker-fastchat-worker")
    last = {
        "text": "secret answer",
        "error_code": 0,
        "usage": {"completion_tokens": 7},
        "finish_reason": "stop",
    }
    with capture_logs() as logs:
        stream([{"text": "secret", "error_code": 0}, last], GenerationTrace(tracer, HEADER, "m", "e", 3))
    (line,) = [e for e in logs if e["event"] == "generation_finished"]
    assert line["log_level"] == "info"
    assert (line["model"], line["endpoint"], line["version"]) == ("m", "e", 3)
    assert (line["tokens"], line["finish_reason"]) == (7, "stop")
    assert line["time_to_first_token_ms"] >= 0
    assert line["duration_ms"] >= line["time_to_first_token_ms"]
    assert line["trace_id"] == "1-5f84c7a1-bbbbbbbbbbbbbbbbbbbbbbbb"
    assert "secret" not in repr(line)
    (segment,) = testing.sent(tracer)
    assert segment["subsegments"][0]["metadata"]["sagemaker-fastchat"]["tokens"] == 7


def test_generation_finished_on_error_and_untraced() -> None:
    """A failed stream logs its error (the tail of the message) instead of tokens; an unsampled request
    has no trace id."""
    tracer = testing.recording_tracer(rate=0.0)
    with capture_logs() as logs:
        stream(
            [{"text": "x" * 400 + "boom", "error_code": 50001}], GenerationTrace(tracer, None, "m", "e", None)
        )
    (line,) = logs
    assert line["event"] == "generation_finished"
    assert line["error"].endswith("boom")
    assert len(line["error"]) == 300
    assert "tokens" not in line
    assert "trace_id" not in line
    assert testing.sent(tracer) == []


def test_warmup_logs_refused_and_admitted_models() -> None:
    """`model_refused` (warning, with the reason) for each refused candidate, `model_admitted` for the rest."""
    warmup = Warmup(FakeEndpointChecker({"ok": "InService", "new": "Creating"}))
    with capture_logs() as logs:
        warmup.admit([spec("a", "ok"), spec("b", "new")])
    assert {(e["event"], e["model"], e["log_level"]) for e in logs} == {
        ("model_admitted", "a", "info"),
        ("model_refused", "b", "warning"),
    }
    (refused,) = [e for e in logs if e["event"] == "model_refused"]
    assert refused["endpoint"] == "new"
    assert refused["reason"] == "endpoint new is Creating, not InService"


class ListSource:
    """An in-memory `ModelSetSource`: each step loads the next of `results` (a snapshot or an error)."""

    description = "memory:test"

    def __init__(self, results: list[Snapshot | Exception]) -> None:
        self.results = results

    def load(self) -> Snapshot:
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    def unchanged_since(self, version: int | None) -> bool:
        return False

    def changes(self, stop: threading.Event, schedule: PollSchedule) -> Iterator[None]:
        while self.results and not stop.is_set():
            yield


def test_poller_logs_waiting_swapped_and_failed() -> None:
    """Through the source protocol: nothing published yet is `waiting_for_model_set` (info), a swap is
    `model_set_swapped` with the version, names and source, a later failure `model_set_poll_failed`."""
    source = ListSource(
        [
            SnapshotUnavailable("nothing is published under /p yet"),
            Snapshot(1, [spec("a")]),
            RuntimeError("SSM is down"),
        ]
    )
    live = LiveModelSet()
    poller = Poller(
        source, live, lambda s: SageMakerAdapter(s, client=None), tracer=testing.recording_tracer()
    )
    with capture_logs() as logs:
        poller.run(threading.Event())
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("waiting_for_model_set", "info"),
        ("model_set_swapped", "info"),
        ("model_set_poll_failed", "warning"),
    ]
    assert logs[0]["reason"] == "nothing is published under /p yet"
    assert (logs[1]["version"], logs[1]["models"], logs[1]["source"]) == (1, ["a"], "memory:test")
    assert (logs[2]["error"], logs[2]["failures"]) == ("RuntimeError: SSM is down", 1)
    assert live.current.names == ["a"]


def test_capture_reaches_loggers_cached_before_a_reconfigure() -> None:
    """configure_logging keeps structlog's processor list, so a logger cached on first use still reaches
    capture_logs (and the current processors) after the logging is configured again."""
    configure_logging(log_format="json")
    log = structlog.get_logger("cached")
    log.debug("first_use")  # caches the bound logger with the current processor list
    configure_logging(log_format="json")
    with capture_logs() as logs:
        log.info("after_reconfigure", n=1)
    assert logs == [{"event": "after_reconfigure", "n": 1, "log_level": "info"}]
