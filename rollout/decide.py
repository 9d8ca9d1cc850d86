"""One rollout step, decided from the state, the clock and the outcome counts since the step started (pure).

Rules (README "Rollout"):
- Only a running rollout moves; paused, aborted, rolled back and done ones are left alone.
- The window: counts are per minute, so a step reads every whole minute from the one it started in
  (`counts_minute`), for both variants alike; the seconds of that minute before the step started count
  too (the candidate's own behaviour at its previous weight, or after a resume at the same weight).
  Every reason names the window ("since 14:02 UTC").
- A verdict needs at least `min_requests` candidate requests in the window: below that nothing is
  judged (one error in 10 requests never rolls back).
- At or above it, a breach rolls back at once, without waiting for the bake time: the candidate's error
  rate above `max_error_rate`, or its TTFT p95 both above `max_ttft_p95_ratio` times the baseline's and
  at least `min_ttft_p95_delta_ms` above it (a ratio of small times is noise: 6 ms vs 4 ms is 1.5x);
  compared only when the baseline has `min_requests` first tokens of its own in the same window.
- A step advances or promotes only once it is live: the candidate's weight in the published model set
  (what workers serve) is the step's weight. The sync may refuse the item (its endpoint check, an
  invalid item) or not have published it yet; meanwhile the step holds with the reason, and counts read
  at the older weight never move it on. A breach still rolls back (safety first). The tick that first
  sees the step live records the time (`step_live_at`): its bake time and counting window start there.
- Otherwise the step holds until its bake time is over, then advances to the next weight; reaching the
  last step (100) promotes the candidate: it becomes the model's endpoint (and config) and the variants
  go away.

`item_changes` turns a new state into the registry attributes to write (the candidate's weight inside
`variants`, or the promotion), so the CLI and the step runner write the same shapes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from rollout.histogram import quantile
from rollout.state import ABORTED, ACTIVE, DONE, MAX_REASON, PAUSED, ROLLED_BACK, RUNNING, RolloutState

HOLD, ADVANCE, PROMOTE, ROLLBACK, NOTHING = "hold", "advance", "promote", "rollback", "nothing"
TTFT_QUANTILE = 0.95
LIVE_TOLERANCE = 0.01  # weights are 0..100 percent; the published one is the number the runner wrote


@dataclass(frozen=True)
class VariantStats:
    """One variant's outcome counts over a window (stores/rollout_metrics.merge gives them per variant)."""

    requests: int = 0
    errors: int = 0
    ttft_hist: Mapping[int, int] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests > 0 else 0.0

    @property
    def first_tokens(self) -> int:
        return sum(n for n in self.ttft_hist.values() if n > 0)

    def ttft_p95(self) -> float:
        return quantile(self.ttft_hist, TTFT_QUANTILE)


@dataclass(frozen=True)
class Published:
    """What the published model set says of the candidate (sync/rollout_step.published_candidate)."""

    weight: float | None  # its weight in the model's published spec; None: not there, or not readable
    why: str = ""  # why the model's current item is not what is published (a rejection), if known


@dataclass(frozen=True)
class Decision:
    action: str  # hold, advance, promote, rollback or nothing
    # after the decision: the same state for nothing, and for hold but for the time the step was first
    # seen live (`step_live_at`, which the runner then writes)
    state: RolloutState
    reason: str  # why, in words (shown by `rollout status`, logged by the runner)


def percent(fraction: float) -> str:
    return f"{fraction * 100:.3g}%"


def step_clock(state: RolloutState) -> float:
    """Where the step's bake time and counts start: when it was first seen live, else its registry write."""
    return state.step_live_at if state.step_live_at is not None else state.step_started_at


def is_live(state: RolloutState, published: Published) -> bool:
    """The step's weight is what workers serve."""
    return published.weight is not None and abs(published.weight - state.weight) <= LIVE_TOLERANCE


def counts_minute(state: RolloutState) -> int:
    """The first epoch minute whose outcome counts the step reads: the whole minute it started in (went
    live in, once seen live)."""
    return int(step_clock(state) // 60)


def window_start(state: RolloutState) -> float:
    """The start of the counting window in epoch seconds (the start of the step's first minute)."""
    return counts_minute(state) * 60.0


def since(state: RolloutState) -> str:
    """The counting window in words, for every reason: `since 14:02 UTC`."""
    return f"since {datetime.fromtimestamp(window_start(state), UTC):%H:%M} UTC"


def breach(state: RolloutState, candidate: VariantStats, baseline: VariantStats) -> str | None:
    """Why the candidate fails its thresholds, or None (also None below min-requests: no verdict yet)."""
    if candidate.requests < state.min_requests:
        return None
    if candidate.error_rate > state.max_error_rate:
        return (
            f"error rate {percent(candidate.error_rate)} over {candidate.requests} requests {since(state)} "
            f"> {percent(state.max_error_rate)}"
        )
    if baseline.first_tokens >= state.min_requests and candidate.first_tokens > 0:
        mine, theirs = candidate.ttft_p95(), baseline.ttft_p95()
        if math.isfinite(mine) and math.isfinite(theirs) and theirs > 0:
            ratio, slower = mine / theirs, mine - theirs
            if ratio > state.max_ttft_p95_ratio and slower >= state.min_ttft_p95_delta_ms:
                return (
                    f"TTFT p95 {mine:.0f} ms {since(state)} is {ratio:.2f}x the baseline's {theirs:.0f} ms "
                    f"(> {state.max_ttft_p95_ratio:g}x) and {slower:.0f} ms slower "
                    f"(>= {state.min_ttft_p95_delta_ms:g} ms)"
                )
    return None


def decide(
    state: RolloutState, now: float, stats: Mapping[str, VariantStats], published: Published
) -> Decision:
    """What one tick of the step runner does with this rollout now (`published`: the candidate in the
    published model set)."""
    if state.status != RUNNING:
        return Decision(NOTHING, state, f"the rollout is {state.status.replace('_', ' ')}")
    candidate = stats.get(state.candidate, VariantStats())
    baseline = stats.get(state.baseline, VariantStats())
    why = breach(state, candidate, baseline)
    if why is not None:
        return Decision(
            ROLLBACK, state.with_event(now, "rolled_back", why, status=ROLLED_BACK, reason=why), why
        )
    window = since(state)  # the one the counts were read for
    progress = f"{candidate.requests} of {state.min_requests} candidate requests {window}"
    if not is_live(state, published):
        waiting = published.why or "waiting for the sync"
        where = f"step {state.step + 1} ({state.weight:g}%)"
        return Decision(HOLD, state, f"{where} is not published yet: {waiting}; {progress}")
    if state.step_live_at is None:
        state = replace(state, step_live_at=now)  # first seen live: bake and counts start now
    baked = now - step_clock(state)
    if baked < state.bake_seconds:
        left = state.bake_seconds - baked
        return Decision(HOLD, state, f"baking at {state.weight:g}%: {left:.0f} s left; {progress}")
    if candidate.requests < state.min_requests:
        return Decision(HOLD, state, f"bake time over at {state.weight:g}%; waiting for {progress}")
    summary = f"{candidate.requests} requests {window}, error rate {percent(candidate.error_rate)}"
    following = state.step + 1
    if following >= len(state.steps) - 1:
        last = len(state.steps) - 1
        reason = f"promoted after {summary} at {state.weight:g}%"
        done = state.with_event(
            now, "promoted", reason, status=DONE, step=last, step_started_at=now, reason=""
        )
        return Decision(PROMOTE, done, reason)
    reason = f"{state.weight:g}% -> {state.steps[following]:g}% after {summary}"
    moved = state.with_event(now, "advanced", reason, step=following, step_started_at=now, reason="")
    return Decision(ADVANCE, moved, reason)


# --- Operator actions (`rollout pause|resume|abort`) -------------------------------------------------------
def pause(state: RolloutState, now: float) -> RolloutState | str:
    if state.status != RUNNING:
        return f"only a running rollout can be paused; this one is {state.status.replace('_', ' ')}"
    return state.with_event(now, "paused", status=PAUSED)


def resume(state: RolloutState, now: float) -> RolloutState | str:
    """Running again; the step's bake time and outcome counts start afresh."""
    if state.status != PAUSED:
        return f"only a paused rollout can be resumed; this one is {state.status.replace('_', ' ')}"
    return state.with_event(now, "resumed", status=RUNNING, step_started_at=now)


def abort(state: RolloutState, now: float, reason: str = "aborted by an operator") -> RolloutState | str:
    if state.status not in ACTIVE:
        return (
            f"only a running or paused rollout can be aborted; this one is {state.status.replace('_', ' ')}"
        )
    return state.with_event(now, "aborted", reason, status=ABORTED, reason=reason[:MAX_REASON])


# --- The registry attributes a state means ----------------------------------------------------------
class ItemMismatch(ValueError):
    """The item no longer matches its rollout (the candidate left `variants`, say): the rollout is stopped."""


def _variant_list(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    raw = item.get("variants")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError):
            raw = None
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(v, dict) for v in raw):
        raise ItemMismatch("the model's `variants` is not a list of objects")
    return [dict(v) for v in raw]


def item_changes(item: Mapping[str, Any], state: RolloutState) -> dict[str, Any]:
    """The attributes to write for `state` (a value of None removes the attribute): `rollout` always;
    the candidate's weight in `variants`; on promotion the candidate's endpoint and config as the item's
    own, and no `variants`. Raises ItemMismatch when the candidate is not among the item's variants."""
    variants = _variant_list(item)
    entry = next((v for v in variants if v.get("endpoint_name") == state.candidate), None)
    changes: dict[str, Any] = {"rollout": state.dumps()}
    if state.status == DONE:
        if entry is None and item.get("endpoint_name") != state.candidate:
            raise ItemMismatch(f"the candidate {state.candidate} is not among the model's variants")
        changes["endpoint_name"] = state.candidate
        if entry is not None and entry.get("endpoint_req_config") is not None:
            changes["endpoint_req_config"] = entry["endpoint_req_config"]
        changes["variants"] = None
        return changes
    if entry is None:
        if state.status in (ROLLED_BACK, ABORTED):
            return changes  # already out of the variants: nothing takes traffic from it
        raise ItemMismatch(f"the candidate {state.candidate} is not among the model's variants")
    entry["weight"] = int(state.weight) if float(state.weight).is_integer() else state.weight
    changes["variants"] = json.dumps(variants, ensure_ascii=False)
    return changes


def stopped(state: RolloutState, now: float, why: str) -> RolloutState:
    """The rollout stopped by the runner (its item no longer fits it): weight 0, the reason kept."""
    return state.with_event(now, "aborted", why, status=ABORTED, reason=why[:MAX_REASON])
