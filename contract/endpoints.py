"""Is a model's SageMaker endpoint there and serving? DescribeEndpoint, read into a verdict.

Shared by the worker (before a new or changed spec takes traffic) and the sync (optionally, before it
publishes). The reading is pure (`verdict_from_description`, `verdict_from_error`); the call sits behind
a small Protocol, `EndpointChecker`, with an in-memory fake here and its boto3 adapter in
`stores/endpoints.py`.

Rules:
- InService passes; so do Updating, SystemUpdating and RollingBack, which AWS documents as still serving
  requests with their previous configuration while they change. Every other status (Creating,
  OutOfService, Deleting, Failed, UpdateRollbackFailed, ...) is refused, with the status (and
  FailureReason) in the reason.
- An endpoint that does not exist (ValidationException "Could not find endpoint") is refused.
- AccessDenied means "cannot check", not "not ready": the model is let through, with a warning, so a role
  without `sagemaker:DescribeEndpoint` degrades to the behaviour without the check.
- Anything else (throttling, a timeout, the control plane unreachable) refuses for now: the last good
  spec keeps serving and the candidate is checked again later.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

SERVING_STATUSES = frozenset({"InService", "Updating", "SystemUpdating", "RollingBack"})
ACCESS_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})


@dataclass(frozen=True)
class EndpointVerdict:
    """`ok`: the endpoint may take traffic. `reason`: why not, or (when ok) a warning such as
    "cannot check"; `status`: the EndpointStatus when SageMaker told us; `transient`: refused only for
    now (the check itself failed: throttled, timed out, unreachable), not a verdict on the endpoint."""

    ok: bool
    reason: str | None = None
    status: str | None = None
    transient: bool = False

    @property
    def warning(self) -> str | None:
        return self.reason if self.ok else None


def verdict_from_description(endpoint: str, response: Mapping[str, Any]) -> EndpointVerdict:
    status = str(response.get("EndpointStatus", "unknown"))
    if status in SERVING_STATUSES:
        return EndpointVerdict(True, status=status)
    failure = response.get("FailureReason")
    because = f" ({failure})" if failure else ""
    return EndpointVerdict(False, f"endpoint {endpoint} is {status}, not InService{because}", status)


def verdict_from_error(endpoint: str, code: str, message: str) -> EndpointVerdict:
    if code in ACCESS_DENIED_CODES:
        return EndpointVerdict(
            True, f"cannot check endpoint {endpoint}: DescribeEndpoint is not allowed ({code}); let through"
        )
    if code == "ValidationException" and "could not find" in message.lower():
        return EndpointVerdict(False, f"endpoint {endpoint} does not exist ({message})")
    return EndpointVerdict(
        False,
        f"cannot check endpoint {endpoint}: DescribeEndpoint failed ({code}: {message})",
        transient=True,
    )


class EndpointChecker(Protocol):
    """One DescribeEndpoint, as a verdict. Implementations never raise."""

    def check(self, endpoint: str) -> EndpointVerdict: ...


@dataclass
class FakeEndpointChecker:
    """In memory: `statuses` maps an endpoint to its EndpointStatus, or to an error code (`!Code`, e.g.
    `!AccessDeniedException`); endpoints not in it do not exist. `calls` records every check."""

    statuses: dict[str, str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def check(self, endpoint: str) -> EndpointVerdict:
        self.calls.append(endpoint)
        status = self.statuses.get(endpoint)
        if status is None:
            return verdict_from_error(
                endpoint, "ValidationException", f'Could not find endpoint "{endpoint}".'
            )
        if status.startswith("!"):
            return verdict_from_error(endpoint, status[1:], "fake error")
        return verdict_from_description(endpoint, {"EndpointStatus": status})


class CachedChecker:
    """Remembers each endpoint's verdict for `ttl` seconds: models sharing an endpoint, or a burst of
    changes, cost one DescribeEndpoint."""

    def __init__(
        self, inner: EndpointChecker, ttl: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.inner = inner
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, EndpointVerdict]] = {}
        self._lock = threading.Lock()

    def check(self, endpoint: str) -> EndpointVerdict:
        now = self.clock()
        with self._lock:
            hit = self._cache.get(endpoint)
            if hit is not None and now - hit[0] < self.ttl:
                return hit[1]
        verdict = self.inner.check(endpoint)
        with self._lock:
            self._cache[endpoint] = (now, verdict)
            if len(self._cache) > 1024:  # bounded: drop expired entries
                self._cache = {k: v for k, v in self._cache.items() if now - v[0] < self.ttl}
        return verdict
