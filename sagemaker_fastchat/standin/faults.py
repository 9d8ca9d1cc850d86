"""Faults on demand for stand-in endpoints (issue 17: failover, breakers and rollback on the local stack).

`POST /_standin/faults/NAME` with a JSON object sets endpoint NAME's fault (any name: demo, forwarded or
one that does not exist yet), replacing the previous one; `DELETE /_standin/faults/NAME` clears it;
`GET /_standin/faults` lists them. Fields (all optional):
- `error_rate` (0..1): that share of invocations is answered with `error` before any token, spread evenly
  (deterministic: 0.25 fails exactly every fourth invocation);
- `error`: `unavailable` (503 ServiceUnavailable, the default), `model` (424 ModelError), `throttle`
  (429 ThrottlingException) or `stream` (a ModelStreamError event before the first token);
- `refuse` (true): the connection is closed without an answer (a refused or dropped connection);
- `drop_after` (N >= 0): the connection is closed after N parts (0: after the headers, before any token);
- `first_token_delay` (seconds, <= 600): wait before the first part;
- `status`: what DescribeEndpoint reports (e.g. `Creating`; invocations are refused as for such demo names).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

ERRORS = ("unavailable", "model", "throttle", "stream")
STATUSES = ("InService", "Creating", "Updating", "Failed", "OutOfService", "Deleting")
MAX_DELAY = 600.0


@dataclass
class Fault:
    error_rate: float = 0.0
    error: str = "unavailable"
    refuse: bool = False
    drop_after: int | None = None
    first_token_delay: float = 0.0
    status: str | None = None
    invocations: int = 0  # counted by the stand-in (GET shows it)
    injected: int = 0

    def take_error(self) -> bool:
        """Whether this invocation gets the error (evenly spread: exactly `error_rate` of them)."""
        n = self.invocations
        self.invocations += 1
        fail = math.floor((n + 1) * self.error_rate) > math.floor(n * self.error_rate)
        self.injected += fail
        return fail

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def parse_fault(doc: object) -> Fault | str:
    """A fault from a JSON document, or why not (total)."""
    if not isinstance(doc, dict):
        return "the body must be a JSON object"
    fault = Fault()
    for key, value in doc.items():
        if key == "error_rate":
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                return "error_rate: must be a number from 0 to 1"
            fault.error_rate = float(value)
        elif key == "error":
            if value not in ERRORS:
                return f"error: must be one of {', '.join(ERRORS)}"
            fault.error = str(value)
        elif key == "refuse":
            if not isinstance(value, bool):
                return "refuse: must be true or false"
            fault.refuse = value
        elif key == "drop_after":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1_000_000:
                return "drop_after: must be a whole number of parts, 0 or more"
            fault.drop_after = value
        elif key == "first_token_delay":
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_DELAY:
                return f"first_token_delay: must be a number of seconds from 0 to {MAX_DELAY:g}"
            fault.first_token_delay = float(value)
        elif key == "status":
            if value not in STATUSES:
                return f"status: must be one of {', '.join(STATUSES)}"
            fault.status = str(value)
        else:
            known = "error_rate, error, refuse, drop_after, first_token_delay, status"
            return f"{str(key)[:64]!r}: unknown field (known: {known})"
    return fault
