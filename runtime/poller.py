"""Keeps the live model set in step with its source, and never lets a bad update take it down.

SSM: every `interval` seconds (with jitter, so a fleet does not poll in lockstep) read the manifest's
version; only when it moved, read the manifest and the changed model parameters, build the new set and
swap it in. Errors (SSM outage, throttling, a damaged parameter) keep the last good set, are recorded for
`/model-set`, and back off exponentially up to `max_backoff`.
File: watchfiles reports changes to the registry file; each change reloads it through the same swap path.
The poller knows neither: each source implements `runtime.sources.ModelSetSource` (docs/design.md "Workers").
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import structlog

from contract.spec import ModelSpec
from runtime.adapter import SageMakerAdapter
from runtime.model_set import LiveModelSet, build_model_set
from runtime.sources import ModelSetSource, SnapshotUnavailable
from runtime.warmup import Warmup
from telemetry.tracing import Tracer

log = structlog.get_logger("poller")
POLLER_SERVICE = "sagemaker-fastchat-poller"


class Poller:
    def __init__(
        self,
        source: ModelSetSource,
        live: LiveModelSet,
        make_adapter: Callable[[ModelSpec], SageMakerAdapter],
        *,
        interval: float = 5.0,
        jitter: float = 0.1,
        max_backoff: float = 60.0,
        warmup: Warmup | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.source = source
        self.live = live
        self.make_adapter = make_adapter
        self.interval = interval
        self.jitter = jitter
        self.max_backoff = max_backoff
        self.failures = 0
        self.warmup = warmup  # checks new or changed specs before they take traffic (runtime.warmup)
        self.tracer = tracer if tracer is not None else Tracer(POLLER_SERVICE)

    def poll_once(self) -> bool:
        """Check the source once; True when a new set was swapped in. Raises on source errors."""
        current = self.live.current
        recheck = self.recheck_due()
        if self.live.loaded and not recheck and self.source.unchanged_since(current.version):
            return False
        with self.tracer.span(POLLER_SERVICE) as span:
            snapshot = self.source.load()
            admit = self.warmup.admit if self.warmup is not None else None
            new = build_model_set(snapshot, current, self.make_adapter, self.source.description, admit)
            stale = new.version is not None and current.version is not None and new.version <= current.version
            if recheck and new.version == current.version:  # swap only if a refused candidate's fate changed
                stale = (new.adapters, new.rejected) == (current.adapters, current.rejected)
            if stale:
                return False
            swapped = self.live.swap(new)
            if span is not None:
                span.annotate("model_set_version", new.version)
                span.annotate("models", len(new.names))
                span.annotate("models_rejected", len(new.rejected))
        if swapped:
            log.info(
                "model_set_swapped",
                version=new.version,
                models=new.names,
                rejected=sorted(new.rejected),
                source=self.source.description,
            )
        return swapped

    def _try(self) -> None:
        try:
            self.poll_once()
            self.failures = 0
        except Exception as exc:  # keep the last good set whatever went wrong
            self.failures += 1
            message = str(exc) if isinstance(exc, SnapshotUnavailable) else f"{type(exc).__name__}: {exc}"
            self.live.record_error(message)
            if isinstance(exc, SnapshotUnavailable) and not self.live.loaded:
                log.info("waiting_for_model_set", reason=message)  # normal at first start: not a failure
            else:
                log.warning("model_set_poll_failed", error=message, failures=self.failures)

    def recheck_due(self) -> bool:
        return self.warmup is not None and self.warmup.recheck_due()

    def next_delay(self) -> float:
        base = self.interval * (2 ** min(self.failures, 10)) if self.failures else self.interval
        base = min(base, self.max_backoff) if self.failures else base
        return base * (1 + random.uniform(-self.jitter, self.jitter))

    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set, whenever the source says it may have changed."""
        for _ in self.source.changes(stop, self):
            self._try()
