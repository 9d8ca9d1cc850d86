"""The rollout step runner: every minute (EventBridge -> this Lambda on AWS; `sagemaker-fastchat rollout
run` on a timer in the local stack), each listed model with a running rollout gets one decision
(rollout/decide.py) from its outcome counts since the step started (stores/rollout_metrics.py).

The registry stays the source of truth: a step is an UpdateItem of the model's item (the candidate's
weight in `variants`, or the promotion, plus `rollout`), on condition that `rollout` is still what was
read (`stores.registry.RegistryStore.update_if`). Two runners (an overlapping schedule, a CLI pause at the
same second) therefore never both apply a step: the second one's condition fails and it does nothing
until its next tick. The write then goes the normal way, stream -> sync -> SSM, so every step is a
published, versioned, rollback-able model set.

A step moves on only once it is live: the runner reads the candidate's weight in the published model set
(`published_candidate`, SSM) and holds while the sync has not published the step (or refused it, or the
set cannot be read), rollbacks excepted. A hold writes nothing, but for the tick that first sees the step
live: it records that time in `rollout` (the step's bake time starts there). `rollout status` recomputes
what the next tick would do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import boto3
import structlog
from botocore.exceptions import BotoCoreError, ClientError

from contract.dynamo import to_typed_value, untype_item
from contract.errors import SpecError
from contract.registry import ActiveListError, parse_active_list
from contract.snapshot import SnapshotError
from contract.spec import ALL_MODELS_KEY, parse_model_item
from rollout.decide import (
    HOLD,
    NOTHING,
    Decision,
    ItemMismatch,
    Published,
    VariantStats,
    counts_minute,
    decide,
    item_changes,
    stopped,
)
from rollout.state import RolloutState, parse_state
from stores.registry import ConcurrentChangeError, DynamoRegistry, RegistryStore
from stores.rollout_metrics import (
    DynamoOutcomeStore,
    OutcomeStore,
    OutcomesUnavailable,
    merge,
)
from stores.ssm import SnapshotReader, SsmParameters, ssm_client
from sync.settings import SyncSettings
from telemetry.settings import TelemetrySettings

log = structlog.get_logger("rollout")
Clock = Callable[[], float]


# --- The registry (stores/registry.py's port) --------------------------------------------------------------
def listed(registry: RegistryStore) -> list[str]:
    """The names `all-models` lists (none when it is missing or unreadable: nothing to step)."""
    try:
        return list(parse_active_list(registry.get(ALL_MODELS_KEY)).names)
    except ActiveListError:
        return []


def update_item(registry: RegistryStore, name: str, expected_rollout: Any, changes: dict[str, Any]) -> None:
    """Set (a plain value) or remove (None) attributes of `name`'s item, on condition that its `rollout`
    is still `expected_rollout` (the typed value read; None: no rollout yet). Raises
    ConcurrentChangeError."""
    typed = {key: None if value is None else to_typed_value(value) for key, value in changes.items()}
    registry.update_if(name, typed, "rollout", expected_rollout)


# --- The published model set (stores/ssm.py's reader) ---------------------------------------------------
UNREADABLE = (BotoCoreError, ClientError, SnapshotError)  # what published_candidate raises


def published_candidate(reader: SnapshotReader, model: str, candidate: str) -> Published:
    """The candidate's weight in `model`'s published spec (None when the model or the candidate is not
    in the set), and why the model's current item is not published (the manifest's rejection of it, or
    its `not_published`; "" when it says nothing: the sync has not got to it yet). Raises one of
    UNREADABLE when the set cannot be read."""
    found = reader.load_manifest()
    if found is None:
        return Published(None)
    manifest = found.manifest
    why = manifest.rejected.get(model) or manifest.not_published
    entry = manifest.entry(model)
    if entry is None:
        return Published(None, why)
    spec = reader.load_spec(entry.parameter, entry.version, entry.hash, model)
    weight = next((v.weight for v in spec.variants() if v.endpoint_name == candidate), None)
    return Published(weight, why)


def read_published(reader: SnapshotReader, model: str, candidate: str) -> Published:
    """published_candidate, with a set that cannot be read as the reason (never a verdict: the step holds)."""
    try:
        return published_candidate(reader, model, candidate)
    except UNREADABLE as exc:
        log.warning("rollout_published_set_unreadable", model=model, error=str(exc))
        return Published(None, f"the published model set cannot be read: {exc}")


# --- The step ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepResult:
    model: str
    action: str  # hold, advance, promote, rollback, nothing, stopped, invalid, unavailable, conflict, failed
    reason: str
    weight: float | None = None  # the candidate's weight after the step


def variant_stats(outcomes: OutcomeStore, model: str, state: RolloutState) -> dict[str, VariantStats]:
    """Each variant's counts from the whole minute its step started in (raises OutcomesUnavailable)."""
    totals = merge(outcomes.read(model, counts_minute(state)))
    return {v: VariantStats(c.requests, c.errors, c.ttft_hist) for v, c in totals.items()}


def write_state(
    registry: RegistryStore, name: str, typed: dict[str, Any], state: RolloutState, now: float
) -> RolloutState:
    """Write `state` and what it means for the item (checked by the spec validator first). An item that
    no longer fits its rollout (the candidate left `variants`, the result would not validate) stops the
    rollout instead, with the reason. Raises ConcurrentChangeError."""
    plain = untype_item(typed)
    try:
        changes = item_changes(plain, state)
        after = {k: v for k, v in {**plain, **changes}.items() if v is not None}
        parse_model_item(after)
    except (ItemMismatch, SpecError) as exc:
        state = stopped(state, now, f"the model's item no longer fits the rollout: {exc}")
        try:
            changes = item_changes(plain, state)  # the candidate's weight to 0, when it is still there
        except ItemMismatch:
            changes = {"rollout": state.dumps()}
    update_item(registry, name, typed.get("rollout"), changes)
    return state


class RolloutRunner:
    def __init__(
        self,
        registry: RegistryStore,
        outcomes: OutcomeStore,
        published: SnapshotReader,
        clock: Clock = time.time,
    ) -> None:
        self.registry = registry
        self.outcomes = outcomes
        self.published = published  # what workers serve: a step moves on only once it is there
        self.clock = clock

    def tick(self) -> list[StepResult]:
        """One decision for every listed model with a rollout (a failure in one never stops the others)."""
        results = []
        for name in listed(self.registry):
            try:
                result = self.step(name)
            except Exception as exc:  # one model's trouble (AWS, a bug) must not stall the others' rollouts
                log.exception("rollout_step_failed", model=name)
                result = StepResult(name, "failed", f"{type(exc).__name__}: {exc}")
            if result is not None:
                results.append(result)
        return results

    def step(self, name: str) -> StepResult | None:
        typed = self.registry.get(name)
        if typed is None or "rollout" not in typed:
            return None
        state = parse_state(untype_item({"rollout": typed["rollout"]})["rollout"])
        if not isinstance(state, RolloutState):
            log.warning("rollout_unreadable", model=name, problems=state)
            return StepResult(name, "invalid", "; ".join(state))
        now = self.clock()
        if state.status != "running":
            return StepResult(name, NOTHING, f"the rollout is {state.status}", state.weight)
        try:
            stats = variant_stats(self.outcomes, name, state)
        except OutcomesUnavailable as exc:
            log.warning("rollout_outcomes_unavailable", model=name, error=str(exc))
            return StepResult(name, "unavailable", f"outcome counts cannot be read: {exc}", state.weight)
        try:
            item_changes(untype_item(typed), state)
        except ItemMismatch as exc:  # the candidate left `variants` by hand: it will never be published
            why = f"the model's item no longer fits the rollout: {exc}"
            return self._apply(name, typed, Decision("stopped", stopped(state, now, why), why), now)
        decision = decide(state, now, stats, read_published(self.published, name, state.candidate))
        if decision.action == NOTHING or (decision.action == HOLD and decision.state == state):
            return StepResult(name, decision.action, decision.reason, state.weight)
        return self._apply(name, typed, decision, now)  # a hold that first saw the step live records it

    def _apply(self, name: str, typed: dict[str, Any], decision: Decision, now: float) -> StepResult:
        try:
            written = write_state(self.registry, name, typed, decision.state, now)
        except ConcurrentChangeError as exc:
            log.info("rollout_step_skipped", model=name, reason=str(exc))
            return StepResult(name, "conflict", str(exc))
        action = decision.action if written.status == decision.state.status else "stopped"
        reason = decision.reason if action == decision.action else written.reason
        event = {"rollback": log.warning, "stopped": log.warning}.get(action, log.info)
        event(
            f"rollout_{action}",
            model=name,
            candidate=written.candidate,
            weight=written.weight,
            reason=reason,
        )
        return StepResult(name, action, reason, written.weight)


# --- Entry points ------------------------------------------------------------------------------------------
def runner_from_env() -> RolloutRunner:
    dynamodb = boto3.client("dynamodb")
    settings = SyncSettings()  # the Lambda has no shell: its settings come from its environment
    return RolloutRunner(
        DynamoRegistry(dynamodb, settings.table_name),
        DynamoOutcomeStore(settings.rollout_metrics_table, dynamodb),
        SnapshotReader(SsmParameters(ssm_client()), settings.ssm_prefix),
    )


_runner: RolloutRunner | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point (an EventBridge schedule, every minute)."""
    global _runner  # noqa: PLW0603 - one runner per Lambda process, reused across invocations
    if _runner is None:
        TelemetrySettings().configure_logging()  # the Lambda has no shell: from its environment, here
        _runner = runner_from_env()
    return {"results": [asdict(r) for r in _runner.tick()]}


def run_every(runner: RolloutRunner, interval: float, stop: threading.Event) -> Iterator[list[StepResult]]:
    """Tick until `stop` is set (the local stack's timer); yields each tick's results."""
    while not stop.is_set():
        try:
            yield runner.tick()
        except Exception:  # the registry unreachable for a moment: the next tick tries again
            log.exception("rollout_tick_failed")
        stop.wait(interval)
