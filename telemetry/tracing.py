"""Spans over the AWS X-Ray SDK (aws-xray-sdk), with explicit propagation.

FastChat's servers stream through sync generators running in threadpool threads, and a segment opened
in a middleware would close before a StreamingResponse finishes, so spans here are explicit objects
(not the SDK's thread-local context): whoever begins a span ends it, in whatever thread the work ends.
The current span is also kept in a context variable, so outgoing HTTP calls can carry its trace header
(`telemetry.propagation`) and log lines its trace id (`telemetry.logs`).

Configuration is given, never read here: `Tracer(enabled=, rate=)` and `UdpEmitter(address)` take the
values of XRAY_ENABLED (default true; false makes every call a cheap no-op), XRAY_SAMPLING_RATE (share of
new traces recorded, default 0.05; the local stack uses 1) and AWS_XRAY_DAEMON_ADDRESS (default
127.0.0.1:2000), which `telemetry.settings.TelemetrySettings` reads (its `tracer(service)` builds one).
An upstream `Sampled=0/1` decision is honoured. Our spans never hold prompt or completion text.

Size: the daemon takes one UDP datagram per document (64 KB) and the SDK drops a bigger one silently.
A segment that would not fit (a 300-model sync writes 300 subsegments) is sent as several documents
(`documents`): as many subsegments as fit stay inline, the others are sent in "<name> (continued)"
subsegments of their own (X-Ray joins documents by `parent_id`), and an entity still too big alone has
its metadata, then its annotations, replaced by a note saying what was trimmed. Totals live in the
root's annotations.

Where ended segments go is the tracer's `Emitter`, given at construction (docs/design.md "Observability"):
`UdpEmitter` (the X-Ray daemon) by default, `telemetry.testing.ListEmitter` in tests.
"""

from __future__ import annotations

import atexit
import json
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

TRACE_HEADER = "X-Amzn-Trace-Id"
MAX_DOCUMENT_BYTES = 60_000  # under the daemon's 64 KB datagram, leaving room for the protocol header
DEFAULT_SAMPLING_RATE = 0.05
DEFAULT_DAEMON_ADDRESS = "127.0.0.1:2000"
_NAMESPACE = "sagemaker-fastchat"

current_span: ContextVar[Span | None] = ContextVar("current_span", default=None)


def parse_header(header: str | None) -> tuple[str | None, str | None, bool | None]:
    """(root trace id, parent id, sampled) from an X-Amzn-Trace-Id header."""
    if not header:
        return None, None, None
    parts = dict(p.split("=", 1) for p in header.replace(" ", "").split(";") if "=" in p)
    sampled = {"1": True, "0": False}.get(parts.get("Sampled", "?"))
    return parts.get("Root"), parts.get("Parent"), sampled


class Emitter(Protocol):
    """Where a tracer's ended segments go, as daemon documents (JSON text, each within
    MAX_DOCUMENT_BYTES). Must never raise: tracing must never break serving."""

    def send(self, documents: list[str]) -> None: ...

    def close(self) -> None: ...


class UdpEmitter:
    """The X-Ray daemon at `address` (host:port): one UDP datagram per document. The SDK's emitter and
    its socket are made on the first send."""

    def __init__(self, address: str = DEFAULT_DAEMON_ADDRESS) -> None:
        self.address = address
        self._udp: Any = None
        self._prefix = ""

    def send(self, documents: list[str]) -> None:
        if self._udp is None:
            from aws_xray_sdk.core.emitters.udp_emitter import (
                PROTOCOL_DELIMITER,
                PROTOCOL_HEADER,
                UDPEmitter,
            )

            self._udp = UDPEmitter(self.address)
            self._prefix = PROTOCOL_HEADER + PROTOCOL_DELIMITER
            atexit.register(self.close)
        for doc in documents:
            with suppress(OSError):  # tracing must never break serving
                self._udp._send_data(self._prefix + doc)  # send_entity would serialize whole again

    def close(self) -> None:
        if self._udp is not None:
            self._udp._socket.close()
            self._udp = None


@dataclass
class Span:
    """One X-Ray segment or subsegment. `root` is the segment that is emitted when it ends."""

    entity: Any
    root: Any
    tracer: Tracer
    children: list[Span] = field(default_factory=list)

    @property
    def trace_id(self) -> str:
        return str(self.root.trace_id)

    @property
    def header(self) -> str:
        """The header an outgoing call carries so the callee's segment becomes our child."""
        return f"Root={self.root.trace_id};Parent={self.entity.id};Sampled=1"

    def annotate(self, key: str, value: str | int | float | bool | None) -> None:
        if value is not None:
            self.entity.put_annotation(key, value)

    def meta(self, key: str, value: Any) -> None:
        self.entity.put_metadata(key, value, _NAMESPACE)

    def error(self, message: str) -> None:
        self.entity.add_fault_flag()
        self.entity.put_metadata("error", message, _NAMESPACE)

    def child(self, name: str, namespace: str = "remote") -> Span:
        from aws_xray_sdk.core.models.subsegment import Subsegment

        sub = Subsegment(name, namespace, self.root)
        self.entity.add_subsegment(sub)
        return Span(sub, self.root, self.tracer)

    def end(self) -> None:
        self.entity.close()
        if self.entity is self.root:
            self.tracer.emit(self.root)


class Tracer:
    """Begins spans for `service` and hands each ended segment to `emitter` (default: the daemon over
    UDP at its default address). `enabled` and `rate` are the settings' values (the variables'
    defaults when not given: processes build theirs with `TelemetrySettings.tracer`)."""

    def __init__(
        self,
        service: str,
        emitter: Emitter | None = None,
        *,
        enabled: bool = True,
        rate: float = DEFAULT_SAMPLING_RATE,
    ) -> None:
        self.service = service
        self.enabled = enabled
        self.rate = rate
        self.emitter: Emitter = emitter if emitter is not None else UdpEmitter()

    def begin(self, name: str | None = None, header: str | None = None) -> Span | None:
        """A new segment, child of `header`'s parent when given (in Lambda: the invocation's own header,
        `telemetry.settings.LambdaInvocation`); None when off or not sampled."""
        if not self.enabled:
            return None
        root, parent, sampled = parse_header(header)
        if sampled is None:
            sampled = random.random() < self.rate
        if not sampled:
            return None
        from aws_xray_sdk.core.models.segment import Segment
        from aws_xray_sdk.core.models.traceid import TraceId

        segment = Segment(
            name or self.service, traceid=root or TraceId().to_id(), parent_id=parent, sampled=True
        )
        segment.set_service({"runtime": "python", "name": self.service})
        return Span(segment, segment, self)

    @contextmanager
    def span(self, name: str | None = None, header: str | None = None) -> Iterator[Span | None]:
        """A segment for the duration of a block, current for its log lines and outgoing calls."""
        span = self.begin(name, header)
        token = current_span.set(span)
        try:
            yield span
        except Exception as exc:
            if span is not None:
                span.error(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            current_span.reset(token)
            if span is not None:
                span.end()

    def prepare(self) -> None:
        """Import aws-xray-sdk now (~0.2 s, holding the GIL) when tracing is on, rather than inside the
        first sampled request of a serving process, where it would stall every stream."""
        if self.enabled and self.rate > 0:
            import aws_xray_sdk.core.emitters.udp_emitter
            import aws_xray_sdk.core.models.segment
            import aws_xray_sdk.core.models.subsegment  # noqa: F401

    def emit(self, segment: Any) -> None:
        self.emitter.send(documents(segment))

    def close(self) -> None:
        self.emitter.close()


def _dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, default=str)  # as the SDK serializes


def _size(doc: dict[str, Any]) -> int:
    return len(_dumps(doc).encode())


def _trim(doc: dict[str, Any]) -> None:
    """Replace a document's own metadata, then annotations, by a note, until it fits (children apart)."""
    for key in ("metadata", "annotations"):
        if _size(doc) <= MAX_DOCUMENT_BYTES - 64 or not doc.get(key):
            continue
        note = {f"trimmed_{key}": f"{_size(doc[key])} bytes dropped to fit one X-Ray document"}
        doc[key] = {}
        doc.setdefault("metadata", {}).setdefault(_NAMESPACE, {}).update(note)


def _split(doc: dict[str, Any], trace_id: str) -> list[dict[str, Any]]:
    """`doc` (a segment or subsegment as a dict) as documents that each fit: children too big alone are
    split themselves and sent on their own; the others stay inline while they fit, and the rest go in as
    few "<name> (continued)" container subsegments as hold them (few datagrams: a burst of hundreds
    would overflow the receiving socket's buffer)."""
    children = doc.pop("subsegments", [])
    _trim(doc)
    out: list[dict[str, Any]] = []
    small: list[dict[str, Any]] = []
    for child in children:
        if _size(child) > MAX_DOCUMENT_BYTES - 512:  # leave room for a container around it
            child.update(type="subsegment", parent_id=doc["id"], trace_id=trace_id)
            out.extend(_split(child, trace_id))
        else:
            small.append(child)
    holder, budget = doc, MAX_DOCUMENT_BYTES - _size(doc) - 32  # - the "subsegments" key itself
    for child in small:
        size = _size(child) + 2  # + the separator
        if size > budget:
            holder = {
                "id": os.urandom(8).hex(),
                "name": f"{doc.get('name', '')} (continued)",
                "type": "subsegment",
                "namespace": "local",
                "parent_id": doc["id"],
                "trace_id": trace_id,
                "start_time": child.get("start_time", doc.get("start_time")),
                "end_time": doc.get("end_time", child.get("end_time")),
            }
            out.append(holder)
            budget = MAX_DOCUMENT_BYTES - _size(holder) - 32
        holder.setdefault("subsegments", []).append(child)
        child["parent_id"] = holder["id"]
        budget -= size
    return [doc, *out]  # the parent first: should a datagram be lost, the totals are least likely to be


def documents(entity: Any) -> list[str]:
    """An ended segment as daemon documents, each at most MAX_DOCUMENT_BYTES (one when it fits)."""
    text = entity.serialize()
    if len(text.encode()) <= MAX_DOCUMENT_BYTES:
        return [text]
    return [_dumps(d) for d in _split(json.loads(text), str(entity.trace_id))]


@contextmanager
def child_span(name: str, namespace: str = "remote") -> Iterator[Span | None]:
    """A subsegment of the current span for a block (nothing when there is no current span)."""
    parent = current_span.get()
    if parent is None:
        yield None
        return
    span = parent.child(name, namespace)
    token = current_span.set(span)
    try:
        yield span
    except Exception as exc:
        span.error(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        current_span.reset(token)
        span.end()


def current_trace_id() -> str | None:
    """The current span's trace id (what log lines carry), None outside a span."""
    span = current_span.get()
    return span.trace_id if span is not None else None
