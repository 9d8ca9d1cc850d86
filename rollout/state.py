"""A staged rollout's state: the registry item's `rollout` attribute, parsed and written back (pure).

Written only by `sagemaker-fastchat models rollout` / `rollout pause|resume|abort` and the step runner
(sync/rollout_step.py); the spec parser ignores it (docs/design.md "Registry", its `rollout` attribute).
The candidate's weight and config live in the item's `variants` (which is in the spec and published);
this is the bookkeeping around them: the plan (steps, bake time, thresholds), where the rollout is, and
what happened so far.

`parse_state` is total: any value gives a RolloutState or a `rollout.field: why` problem line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from contract.json_shape import short_repr
from contract.spec import endpoint_name_problem

RUNNING, PAUSED, ABORTED, ROLLED_BACK, DONE = "running", "paused", "aborted", "rolled_back", "done"
STATUSES = (RUNNING, PAUSED, ABORTED, ROLLED_BACK, DONE)
ACTIVE = frozenset({RUNNING, PAUSED})  # a rollout in these owns the model's variants

DEFAULT_STEPS = (5.0, 25.0, 50.0, 100.0)
DEFAULT_BAKE_SECONDS = 600.0
DEFAULT_MAX_ERROR_RATE = 0.02
DEFAULT_MAX_TTFT_P95_RATIO = 1.5
DEFAULT_MIN_REQUESTS = 50
DEFAULT_MIN_TTFT_P95_DELTA_MS = 50.0

MAX_STEPS = 10
MAX_BAKE_SECONDS = 7 * 86_400.0  # outcome counts are kept 7 days (stores/rollout_metrics.py)
MAX_TTFT_RATIO = 100.0
MAX_MIN_REQUESTS = 1_000_000
MAX_TTFT_P95_DELTA_MS = 120_000.0  # 2 minutes: about where the TTFT histogram ends (rollout/histogram.py)
MAX_HISTORY = 32  # the newest events are kept
MAX_REASON = 300
MAX_STATE_CHARS = 64_000  # what MAX_HISTORY events of MAX_REASON characters take, with room


@dataclass(frozen=True)
class Event:
    """One thing that happened to the rollout: started, advanced, promoted, rolled_back, paused, ..."""

    at: float  # epoch seconds
    event: str
    weight: float  # the candidate's weight after the event
    reason: str = ""


@dataclass(frozen=True)
class RolloutState:
    candidate: str  # the candidate variant's endpoint name
    baseline: str  # the endpoint live when the rollout started: the candidate is compared with it
    steps: tuple[float, ...]  # candidate weights, increasing, the last 100 (reaching it promotes)
    step: int  # index into steps: the candidate's current weight
    bake_seconds: float
    max_error_rate: float  # 0..1
    max_ttft_p95_ratio: float  # candidate TTFT p95 / baseline TTFT p95
    min_requests: int  # no verdict on fewer candidate requests than this since the step started
    status: str
    step_started_at: float  # epoch seconds: bake time and outcome counts start here
    started_at: float
    reason: str = ""  # why it stopped (rolled back, aborted) or is waiting
    history: tuple[Event, ...] = field(default=())
    # A TTFT breach also needs the candidate's p95 this many ms above the baseline's: with both at a few
    # ms (served from cache, the local stand-in) a ratio alone is noise (6 ms vs 4 ms is 1.5x).
    # Last, with a default: states written before it existed read as DEFAULT_MIN_TTFT_P95_DELTA_MS.
    min_ttft_p95_delta_ms: float = DEFAULT_MIN_TTFT_P95_DELTA_MS
    # When the step runner first saw this step in the published model set (the sync may refuse or delay
    # the item: workers keep the older weight meanwhile); bake time and outcome counts start here once
    # set. None until then. Optional, last: states written before it existed read as None.
    step_live_at: float | None = None

    @property
    def weight(self) -> float:
        """The candidate's weight while the rollout holds the model (0 once rolled back or aborted)."""
        if self.status in (ROLLED_BACK, ABORTED):
            return 0.0
        return self.steps[self.step]

    def with_event(self, at: float, event: str, note: str = "", **changes: Any) -> RolloutState:
        """The state with `changes` applied and the event (with `note`) appended to its history."""
        if "step_started_at" in changes:
            changes.setdefault("step_live_at", None)  # a new (or resumed) step is live once seen published
        new = replace(self, **changes)
        entry = Event(at, event, new.weight, note[:MAX_REASON])
        return replace(new, history=(*new.history, entry)[-MAX_HISTORY:])

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["steps"] = list(self.steps)
        doc["history"] = [asdict(e) for e in self.history]
        if self.step_live_at is None:
            del doc["step_live_at"]  # as states were written before the field existed
        return doc

    def dumps(self) -> str:
        """The registry form: compact JSON (stored as a string attribute)."""
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False)


def steps_problem(steps: Sequence[object]) -> str | None:
    """Why these step weights cannot be a plan, or None."""
    if not 1 <= len(steps) <= MAX_STEPS:
        return f"needs 1 to {MAX_STEPS} steps, not {len(steps)}"
    previous = 0.0
    for value in steps:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 100:
            return f"each step is a weight above 0 and at most 100, not {short_repr(value)}"
        if value <= previous:
            return "steps must increase"
        previous = float(value)
    if previous != 100:
        return "the last step must be 100 (reaching it makes the candidate the model's endpoint)"
    return None


def plan_problems(
    steps: Sequence[object],
    bake_seconds: object,
    max_error_rate: object,
    max_ttft_p95_ratio: object,
    min_requests: object,
    *,
    min_ttft_p95_delta_ms: object,
) -> list[tuple[str, str]]:
    """(field, why) for each plan setting out of bounds: the CLI's and the parser's one rule set."""
    problems: list[tuple[str, str]] = []
    problem = steps_problem(steps)
    if problem:
        problems.append(("steps", problem))
    if not _number_in(bake_seconds, 0, MAX_BAKE_SECONDS):
        problems.append(("bake_seconds", f"must be 0 to {MAX_BAKE_SECONDS:.0f} seconds (7 days)"))
    if not _number_in(max_error_rate, 0, 1):
        problems.append(("max_error_rate", "must be a fraction from 0 to 1 (0.02 is 2%)"))
    if not _number_in(max_ttft_p95_ratio, 1, MAX_TTFT_RATIO):
        problems.append(("max_ttft_p95_ratio", f"must be a number from 1 to {MAX_TTFT_RATIO:g}"))
    if (
        isinstance(min_requests, bool)
        or not isinstance(min_requests, int)
        or not 1 <= min_requests <= MAX_MIN_REQUESTS
    ):
        problems.append(("min_requests", f"must be a whole number from 1 to {MAX_MIN_REQUESTS:,}"))
    if not _number_in(min_ttft_p95_delta_ms, 0, MAX_TTFT_P95_DELTA_MS):
        problems.append(("min_ttft_p95_delta_ms", f"must be 0 to {MAX_TTFT_P95_DELTA_MS:.0f} milliseconds"))
    return problems


def _number_in(value: object, low: float, high: float) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and low <= value <= high


def _time(value: object) -> bool:
    return _number_in(value, 0, 1e11) and math.isfinite(float(value))  # type: ignore[arg-type]


def _history(raw: object) -> tuple[Event, ...] | str:
    if not isinstance(raw, list):
        return "must be an array"
    events: list[Event] = []
    for entry in raw[-MAX_HISTORY:]:
        if (
            not isinstance(entry, dict)
            or not _time(entry.get("at"))
            or not isinstance(entry.get("event"), str)
            or not _number_in(entry.get("weight"), 0, 100)
            or not isinstance(entry.get("reason", ""), str)
        ):
            return f"holds an entry that is not an event: {short_repr(entry, 80)}"
        events.append(
            Event(
                float(entry["at"]),
                entry["event"][:40],
                float(entry["weight"]),
                entry.get("reason", "")[:MAX_REASON],
            )
        )
    return tuple(events)


def parse_state(raw: object) -> RolloutState | list[str]:
    """The `rollout` attribute (a JSON string or a map) as a RolloutState, or its problems as
    `rollout.field: why` texts (the caller adds the model name)."""
    if isinstance(raw, str):
        if len(raw) > MAX_STATE_CHARS:
            return [f"rollout: is longer than {MAX_STATE_CHARS} characters"]
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            return [f"rollout: is not valid JSON ({short_repr(str(exc), 120)})"]
    if not isinstance(raw, Mapping):
        return [f"rollout: must be an object, not {type(raw).__name__}"]
    doc = dict(raw)
    problems: list[str] = []

    def want(key: str, ok: bool, why: str) -> None:
        if not ok:
            problems.append(f"rollout.{key}: {why}, not {short_repr(doc.get(key))}")

    for key in ("candidate", "baseline"):
        want(key, endpoint_name_problem(doc.get(key)) is None, "must be an endpoint name")
    steps = doc.get("steps")
    steps_list = list(steps) if isinstance(steps, list) else []
    for key, why in plan_problems(
        steps_list,
        doc.get("bake_seconds"),
        doc.get("max_error_rate"),
        doc.get("max_ttft_p95_ratio"),
        doc.get("min_requests"),
        min_ttft_p95_delta_ms=doc.get("min_ttft_p95_delta_ms", DEFAULT_MIN_TTFT_P95_DELTA_MS),
    ):
        problems.append(f"rollout.{key}: {why}, not {short_repr(doc.get(key))}")
    step = doc.get("step")
    want(
        "step",
        not isinstance(step, bool) and isinstance(step, int) and 0 <= step < max(1, len(steps_list)),
        "must index the steps",
    )
    want("status", doc.get("status") in STATUSES, f"must be one of {', '.join(STATUSES)}")
    for key in ("step_started_at", "started_at"):
        want(key, _time(doc.get(key)), "must be a time in epoch seconds")
    want("reason", isinstance(doc.get("reason", ""), str), "must be a string")
    live_at = doc.get("step_live_at")
    want("step_live_at", live_at is None or _time(live_at), "must be a time in epoch seconds or null")
    history = _history(doc.get("history", []))
    if isinstance(history, str):
        problems.append(f"rollout.history: {history}")
    if problems:
        return problems
    assert not isinstance(history, str)
    return RolloutState(
        candidate=doc["candidate"],
        baseline=doc["baseline"],
        steps=tuple(float(s) for s in steps_list),
        step=doc["step"],
        bake_seconds=float(doc["bake_seconds"]),
        max_error_rate=float(doc["max_error_rate"]),
        max_ttft_p95_ratio=float(doc["max_ttft_p95_ratio"]),
        min_requests=doc["min_requests"],
        status=doc["status"],
        step_started_at=float(doc["step_started_at"]),
        started_at=float(doc["started_at"]),
        reason=doc.get("reason", "")[:MAX_REASON],
        history=history,
        min_ttft_p95_delta_ms=float(doc.get("min_ttft_p95_delta_ms", DEFAULT_MIN_TTFT_P95_DELTA_MS)),
        step_live_at=None if live_at is None else float(live_at),
    )


def new_state(
    candidate: str,
    baseline: str,
    now: float,
    *,
    steps: Sequence[float] = DEFAULT_STEPS,
    bake_seconds: float = DEFAULT_BAKE_SECONDS,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    max_ttft_p95_ratio: float = DEFAULT_MAX_TTFT_P95_RATIO,
    min_requests: int = DEFAULT_MIN_REQUESTS,
    min_ttft_p95_delta_ms: float = DEFAULT_MIN_TTFT_P95_DELTA_MS,
) -> RolloutState:
    """A rollout at its first step (the plan must pass plan_problems)."""
    state = RolloutState(
        candidate=candidate,
        baseline=baseline,
        steps=tuple(float(s) for s in steps),
        step=0,
        bake_seconds=float(bake_seconds),
        max_error_rate=float(max_error_rate),
        max_ttft_p95_ratio=float(max_ttft_p95_ratio),
        min_requests=min_requests,
        status=RUNNING,
        step_started_at=now,
        started_at=now,
        min_ttft_p95_delta_ms=float(min_ttft_p95_delta_ms),
    )
    return state.with_event(now, "started")


def summary(state: RolloutState) -> str:
    """One line for `models list`: where the rollout is, and why it stopped."""
    where = f"{state.candidate} at {state.weight:g}%"
    if state.status in ACTIVE:
        where += f" (step {state.step + 1} of {len(state.steps)})"
    line = f"{state.status.replace('_', ' ')}: {where}"
    return f"{line}: {state.reason}" if state.reason else line
