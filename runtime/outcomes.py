"""Outcome counts for staged rollouts: per (model, variant, minute) requests, errors and a TTFT histogram.

The request path only adds to a dict in memory (`record`, one short lock); a background thread (`run`)
flushes to the OutcomeStore (stores/rollout_metrics.py, a DynamoDB table with atomic adds) every
`interval` seconds. A store failure never reaches a request: it is logged and the counts not applied are
kept for the next flush, bounded (`max_pending` (model, variant, minute) entries; beyond it the oldest
minutes are dropped and the loss logged). The store says how many counts of a failed batch it applied
(OutcomesUnavailable.applied): only the rest is sent again, so nothing counts twice. Counting
(ROLLOUT-CONTRACT.md): each variant tried is one request; an endpoint-side failure is an error; a first
token's time goes into the histogram; a client gone before the first token and a request the spec
refused are not counted.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from rollout.histogram import bucket_of
from runtime.variants import Attempt
from stores.rollout_metrics import OutcomeCounts, OutcomeStore, OutcomesUnavailable

log = structlog.get_logger("outcomes")

DEFAULT_INTERVAL = 10.0
DEFAULT_MAX_PENDING = 10_000

Key = tuple[str, str, int]  # model, variant (endpoint name), epoch minute


@dataclass
class _Tally:
    requests: int = 0
    errors: int = 0
    ttft: Counter[int] = field(default_factory=Counter)

    def add(self, other: _Tally) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.ttft.update(other.ttft)


class OutcomeRecorder:
    def __init__(
        self,
        store: OutcomeStore,
        *,
        interval: float = DEFAULT_INTERVAL,
        max_pending: int = DEFAULT_MAX_PENDING,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.interval = interval
        self.max_pending = max_pending
        self.clock = clock
        self.dropped = 0  # (model, variant, minute) entries given up on (the store was down too long)
        self.failures = 0  # flushes the store refused
        self._pending: dict[Key, _Tally] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()

    def record(self, attempt: Attempt) -> None:
        """One ended attempt (on the request path: no I/O)."""
        if not attempt.known or (
            attempt.error_kind and not attempt.endpoint_failure and attempt.ttft_ms is None
        ):
            return  # a client gone before the first token, a request refused before the call: not counted
        key = (attempt.model, attempt.endpoint, int(self.clock() // 60))
        with self._lock:
            tally = self._pending.get(key)
            if tally is None:
                if len(self._pending) >= self.max_pending:
                    self._drop_oldest()
                tally = self._pending[key] = _Tally()
            tally.requests += 1
            tally.errors += attempt.endpoint_failure
            if attempt.ttft_ms is not None and not attempt.error_kind:
                tally.ttft[bucket_of(attempt.ttft_ms)] += 1

    def flush(self) -> int:
        """Send what was recorded; returns how many entries the store took. Never raises."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, {}
            if not batch:
                return 0
            keys = sorted(batch, key=lambda k: k[2])
            counts = [
                OutcomeCounts(
                    m,
                    v,
                    minute,
                    batch[m, v, minute].requests,
                    batch[m, v, minute].errors,
                    dict(batch[m, v, minute].ttft),
                )
                for m, v, minute in keys
            ]
            try:
                self.store.add(counts)
                return len(counts)
            except OutcomesUnavailable as exc:
                applied = min(max(0, exc.applied), len(keys))
                self.failures += 1
                log.warning(
                    "outcomes_flush_failed", error=str(exc), applied=applied, kept=len(keys) - applied
                )
                self._keep({k: batch[k] for k in keys[applied:]})
                return applied
            except Exception as exc:
                # A store outside the port's contract: how much it applied is unknown. Sending the batch
                # again could count some of it twice (a doubled error count can roll a healthy candidate
                # back); dropping it only delays a decision. So it is dropped, and the loss logged.
                self.failures += 1
                log.error("outcomes_flush_failed", error=f"{type(exc).__name__}: {exc}", applied="unknown")
                for key in keys:
                    self._dropped(key, batch[key])
                return 0

    def run(self, stop: threading.Event) -> None:
        """Flush every `interval` seconds until `stop`, then once more (a worker draining on SIGTERM)."""
        while not stop.wait(self.interval):
            self.flush()
        self.flush()

    def pending(self) -> int:
        return len(self._pending)

    def _keep(self, unsent: dict[Key, _Tally]) -> None:
        with self._lock:
            for key, tally in unsent.items():
                current = self._pending.get(key)
                if current is None:
                    self._pending[key] = tally
                else:
                    current.add(tally)
            while len(self._pending) > self.max_pending:
                self._drop_oldest()

    def _drop_oldest(self) -> None:
        oldest = min(self._pending, key=lambda k: k[2])
        self._dropped(oldest, self._pending.pop(oldest))

    def _dropped(self, key: Key, tally: _Tally) -> None:
        self.dropped += 1
        log.warning(
            "outcomes_dropped",
            model=key[0],
            variant=key[1],
            minute=key[2],
            requests=tally.requests,
            errors=tally.errors,
        )
