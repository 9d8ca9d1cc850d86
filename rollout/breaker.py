"""A per-endpoint circuit breaker (pure state machine, injected clock).

closed -> open: after `consecutive` failures in a row, or when, over the last `window` seconds with at
least `min_requests` outcomes, the error rate reaches `max_error_rate` (so one stray error on a quiet
endpoint never opens it). open -> half-open: after `cooldown` seconds one request is let through as a
probe (another one each `cooldown` while its outcome is unknown, e.g. the client went away). half-open ->
closed on the probe's success (the window is cleared), -> open again on its failure. Only endpoint-side
failures count (the worker decides which: contract.chunk.ENDPOINT_KINDS).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    consecutive: int = 5
    window: float = 30.0  # seconds
    min_requests: int = 20
    max_error_rate: float = 0.5
    cooldown: float = 10.0  # seconds


class Breaker:
    def __init__(
        self, policy: BreakerPolicy | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self.state = CLOSED
        self.failures_in_row = 0
        self.opened_at: float | None = None
        self.reason: str | None = None
        self._probe_at: float | None = None
        # [second, requests, errors] per second of the window: bounded by the window's length.
        self._buckets: deque[list[int]] = deque()

    def allow(self) -> bool:
        """Whether a request may go to this endpoint now (in half-open, this takes the probe slot)."""
        if self.state == CLOSED:
            return True
        now = self._clock()
        cooldown = self.policy.cooldown
        if self.state == OPEN and self.opened_at is not None and now - self.opened_at >= cooldown:
            self.state, self._probe_at = HALF_OPEN, now
            return True
        if self.state == HALF_OPEN and self._probe_at is not None and now - self._probe_at >= cooldown:
            self._probe_at = now  # the last probe's outcome never came: let another one through
            return True
        return False

    def record(self, ok: bool) -> None:
        """An outcome of a request this breaker allowed."""
        now = self._clock()
        self._count(now, ok)
        if ok:
            self.failures_in_row = 0
            if self.state == HALF_OPEN:  # (a late success of a request sent before it opened: no proof)
                self._close()
            return
        self.failures_in_row += 1
        if self.state == HALF_OPEN:
            self._open(now, "the probe after the cool-down failed")
        elif self.state == CLOSED:
            requests, errors = self.window_counts(now)
            if self.failures_in_row >= self.policy.consecutive:
                self._open(now, f"{self.failures_in_row} failures in a row")
            elif requests >= self.policy.min_requests and errors / requests >= self.policy.max_error_rate:
                self._open(now, f"{errors} errors in {requests} requests over {self.policy.window:g} s")

    def window_counts(self, now: float | None = None) -> tuple[int, int]:
        self._prune(self._clock() if now is None else now)
        return sum(b[1] for b in self._buckets), sum(b[2] for b in self._buckets)

    def describe(self) -> dict[str, Any]:
        requests, errors = self.window_counts()
        return {
            "state": self.state,
            "reason": self.reason,
            "failures_in_row": self.failures_in_row,
            "window_requests": requests,
            "window_errors": errors,
        }

    def _count(self, now: float, ok: bool) -> None:
        second = int(now)
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0])
        self._buckets[-1][1] += 1
        self._buckets[-1][2] += not ok
        self._prune(now)

    def _prune(self, now: float) -> None:
        oldest = now - self.policy.window
        while self._buckets and self._buckets[0][0] < oldest:
            self._buckets.popleft()

    def _open(self, now: float, reason: str) -> None:
        self.state, self.opened_at, self.reason, self._probe_at = OPEN, now, reason, None

    def _close(self) -> None:
        self.state, self.opened_at, self.reason, self._probe_at = CLOSED, None, None, None
        self._buckets.clear()
