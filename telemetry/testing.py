"""In-memory test doubles for telemetry (shipped like structlog's `testing.py`).

`ListEmitter` is the `telemetry.tracing.Emitter` port's fake: it keeps every document a tracer emits,
parsed, instead of sending it to the X-Ray daemon. `recording_tracer` builds a tracer over one.
Log lines are checked with structlog's own `structlog.testing.capture_logs`.
See docs/design.md "Observability".
"""

from __future__ import annotations

import json
from typing import Any

from telemetry.tracing import Tracer


class ListEmitter:
    """Keeps the documents (segments as dicts) instead of sending them."""

    def __init__(self) -> None:
        self.documents: list[dict[str, Any]] = []
        self.closed = False

    def send(self, documents: list[str]) -> None:
        self.documents.extend(json.loads(d) for d in documents)

    def close(self) -> None:
        self.closed = True


def recording_tracer(service: str = "test", *, rate: float = 1.0, enabled: bool = True) -> Tracer:
    """A tracer (every trace sampled by default) whose documents land in `tracer.emitter.documents`."""
    return Tracer(service, ListEmitter(), enabled=enabled, rate=rate)


def sent(tracer: Tracer) -> list[dict[str, Any]]:
    """The documents a `recording_tracer` emitted so far."""
    emitter = tracer.emitter
    assert isinstance(emitter, ListEmitter), "sent() needs a tracer built by recording_tracer()"
    return emitter.documents
