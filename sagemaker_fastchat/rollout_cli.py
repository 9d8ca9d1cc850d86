"""`sagemaker-fastchat models rollout NAME --endpoint NEW ...` and `sagemaker-fastchat rollout
status|pause|resume|abort|step|run`: staged rollouts with automatic rollback (README "Rollout").

Every command reads and writes the registry item (the source of truth); a write is conditional on the
item's `rollout` being what was read, so a command racing the step runner fails cleanly ("run it again")
instead of overwriting a step. Exit codes as every command's (sagemaker_fastchat/cli.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import boto3
import structlog

from contract.dynamo import untype_item
from contract.endpoints import EndpointChecker
from contract.errors import Problem, SpecError
from contract.items import InputError, read_json
from contract.json_shape import short_repr
from contract.snapshot import validate_prefix
from contract.spec import model_name_problem
from rollout import decide as decisions
from rollout.start import Plan, parse_duration, parse_steps, start_changes, steps_sequence
from rollout.state import (
    DEFAULT_BAKE_SECONDS,
    DEFAULT_MAX_ERROR_RATE,
    DEFAULT_MAX_TTFT_P95_RATIO,
    DEFAULT_MIN_REQUESTS,
    DEFAULT_MIN_TTFT_P95_DELTA_MS,
    DEFAULT_STEPS,
    RolloutState,
    parse_state,
)
from sagemaker_fastchat.config_tools import MAX_CONFIG_FILE_BYTES, read_text_file
from sagemaker_fastchat.settings import ModelsSettings, add_flags, number_in
from stores.endpoints import Boto3EndpointChecker
from stores.registry import ConcurrentChangeError, DynamoRegistry, RegistryStore
from stores.rollout_metrics import DynamoOutcomeStore, OutcomesUnavailable
from stores.ssm import SnapshotReader, SsmParameters
from sync import rollout_step
from sync.rollout_step import (
    RolloutRunner,
    listed,
    published_candidate,
    update_item,
    variant_stats,
    write_state,
)
from telemetry.settings import TelemetrySettings

log = structlog.get_logger("rollout")
CONCURRENT = "changed while this command ran (the step runner or another operator); run it again"


def _tables(parser: argparse.ArgumentParser, registry: bool = True) -> None:
    # `models rollout` takes `models --table` (a second one would override it)
    add_flags(parser, ModelsSettings, only=("table", "metrics_table") if registry else ("metrics_table",))


def add_models_parser(msub: Any) -> None:
    """`models rollout` (registered by models_cli)."""
    p = msub.add_parser(
        "rollout", help="move a model's traffic to a new endpoint step by step, rolling back on errors"
    )
    p.add_argument("name")
    p.add_argument("--endpoint", required=True, help="the candidate SageMaker endpoint")
    p.add_argument(
        "--config", help="the candidate's endpoint_req_config JSON file (default: the model's own)"
    )
    p.add_argument(
        "--steps", default=steps_sequence(DEFAULT_STEPS), help="candidate weights in %% (last 100)"
    )
    p.add_argument(
        "--bake", default=f"{DEFAULT_BAKE_SECONDS / 60:g}m", help="time at each step (10m, 90s, 1h)"
    )
    p.add_argument("--max-error-rate", type=float, default=DEFAULT_MAX_ERROR_RATE, help="0.02 is 2%%")
    p.add_argument("--max-ttft-p95-ratio", type=float, default=DEFAULT_MAX_TTFT_P95_RATIO)
    p.add_argument("--min-requests", type=int, default=DEFAULT_MIN_REQUESTS)
    p.add_argument(
        "--min-ttft-p95-delta-ms",
        type=float,
        default=DEFAULT_MIN_TTFT_P95_DELTA_MS,
        help="a TTFT rollback also needs the candidate's p95 this many ms above the live one's (0 to 120000)",
    )
    _tables(p, registry=False)
    add_flags(p, ModelsSettings, only=("endpoint_check",))  # --no-endpoint-check
    p.set_defaults(handler=cmd_start)


def register(sub: Any) -> None:
    rollout = sub.add_parser("rollout", help="follow, pause, resume or abort a model's staged rollout")
    rsub = rollout.add_subparsers(dest="rollout_command", required=True)
    status = rsub.add_parser("status", help="the rollout's state, its outcome counts and what happens next")
    status.add_argument("name")
    status.add_argument("--json", action="store_true")
    _tables(status)
    add_flags(status, ModelsSettings, only=("ssm_prefix",))  # what the sync published (or rejected)
    status.set_defaults(handler=cmd_status)
    for action, what in (
        ("pause", "hold the candidate at its weight until resumed"),
        ("resume", "resume a paused rollout (its step's bake time starts afresh)"),
        ("abort", "set the candidate's weight to 0 and stop the rollout"),
    ):
        p = rsub.add_parser(action, help=what)
        p.add_argument("name")
        _tables(p)
        p.set_defaults(handler=cmd_operate, action=action)
    step = rsub.add_parser("step", help="run the step runner once now (what the schedule runs every minute)")
    step.add_argument("--json", action="store_true")
    _tables(step)
    step.set_defaults(handler=cmd_step)
    run = rsub.add_parser(
        "run", help="run the step runner every --interval seconds (the local stack's timer)"
    )
    run.add_argument("--interval", type=_interval, default=60.0, help="seconds, 1 to 3600")
    _tables(run)
    run.set_defaults(handler=cmd_run)
    for runs in (step, run):  # a step moves on only once the sync has published it
        add_flags(runs, ModelsSettings, only=("ssm_prefix",))


# `rollout run --interval`: 0 or a negative one would query the tables in a busy loop; NaN never waits.
_interval = number_in(float, 1, 3600, "seconds")


def cmd_run(args: argparse.Namespace) -> int:
    """`sagemaker-fastchat rollout run`: the step runner on a timer (what the local stack starts)."""
    TelemetrySettings().configure_logging()
    runner = _runner(args)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log.info("rollout_runner_started", interval=args.interval)
    with contextlib.suppress(KeyboardInterrupt):
        for _ in rollout_step.run_every(runner, args.interval, stop):
            pass
    return 0


def _runner(args: argparse.Namespace) -> RolloutRunner:
    return RolloutRunner(_registry(args), _outcomes(args), _snapshot(args))


def _snapshot(args: argparse.Namespace) -> SnapshotReader:
    return SnapshotReader(SsmParameters(boto3.client("ssm")), validate_prefix(args.ssm_prefix))


def _registry(args: argparse.Namespace) -> RegistryStore:
    return DynamoRegistry(boto3.client("dynamodb"), args.table)


def _outcomes(args: argparse.Namespace) -> DynamoOutcomeStore:
    return DynamoOutcomeStore(args.metrics_table, boto3.client("dynamodb"))


def _item(registry: RegistryStore, name: str) -> dict[str, Any]:
    if (why := model_name_problem(name)) is not None:  # before the registry sees it (empty, huge, NUL)
        raise InputError(f"{short_repr(name, 80)}: not a model name: {why}")
    typed = registry.get(name)
    if typed is None:
        raise InputError(f"{name}: no such model in the registry")
    return typed


def _state(name: str, typed: dict[str, Any]) -> RolloutState:
    raw = untype_item(typed).get("rollout")
    if raw is None:
        raise InputError(f"{name}: has no rollout (start one with `sagemaker-fastchat models rollout`)")
    state = parse_state(raw)
    if not isinstance(state, RolloutState):
        raise SpecError([Problem(name, p.partition(": ")[0], p.partition(": ")[2]) for p in state])
    return state


def _config(path: str | None) -> Any:
    if path is None:
        return None
    config = read_json(read_text_file(path, MAX_CONFIG_FILE_BYTES), path)
    if isinstance(config, dict) and isinstance(config.get("endpoint_req_config"), dict | str):
        config = config["endpoint_req_config"]  # a whole item was given: take its config
    return config


def _plan(args: argparse.Namespace) -> Plan:
    steps, bake = parse_steps(args.steps), parse_duration(args.bake)
    if isinstance(steps, str):
        raise InputError(f"--steps: {steps}")
    if isinstance(bake, str):
        raise InputError(f"--bake: {bake}")
    return Plan(
        steps,
        bake,
        args.max_error_rate,
        args.max_ttft_p95_ratio,
        args.min_requests,
        args.min_ttft_p95_delta_ms,
    )


def cmd_start(args: argparse.Namespace) -> int:
    plan, config = _plan(args), _config(args.config)
    registry = _registry(args)
    typed = _item(registry, args.name)
    changes, state = start_changes(untype_item(typed), args.endpoint, config, plan, time.time())
    if args.endpoint_check:
        _check_candidate(args.name, args.endpoint, endpoint_checker())
    try:
        update_item(registry, args.name, typed.get("rollout"), changes)
    except ConcurrentChangeError:
        raise InputError(f"{args.name}: {CONCURRENT}") from None
    print(
        f"{args.name}: rollout to {state.candidate} started at {state.weight:g}% "
        f"(steps {steps_sequence(state.steps)}, bake {state.bake_seconds:g} s, "
        f"max error rate {decisions.percent(state.max_error_rate)}, "
        f"{_ttft_rule(state)}, min requests {state.min_requests})"
    )
    print(f"follow it with `sagemaker-fastchat rollout status {args.name}`")
    if args.name not in listed(registry):
        print(
            f"warning: {args.name} is not listed in all-models: the step runner moves listed models only",
            file=sys.stderr,
        )
    return 0


def endpoint_checker() -> EndpointChecker:
    """DescribeEndpoint through boto3 (the local stack's stand-in with AWS_ENDPOINT_URL_SAGEMAKER)."""
    return Boto3EndpointChecker()


def _check_candidate(name: str, endpoint: str, checker: EndpointChecker) -> None:
    """Refuse (nothing written) a candidate that does not exist or is not serving: as a variant it would
    be rejected by the sync's check, or left out by every worker, and the rollout would wait for requests
    it can never get. A check that itself fails (AccessDenied, throttled, unreachable) is no verdict:
    a warning, and the workers check before the candidate takes traffic."""
    verdict = checker.check(endpoint)
    if not verdict.ok and not verdict.transient:
        raise InputError(
            f"{name}: {verdict.reason}; nothing written (start the rollout once it is InService, "
            "or skip this check with --no-endpoint-check)"
        )
    if verdict.reason:
        print(f"warning: {name}: {verdict.reason}", file=sys.stderr)


def cmd_operate(args: argparse.Namespace) -> int:
    registry = _registry(args)
    typed = _item(registry, args.name)
    state = _state(args.name, typed)
    now = time.time()
    changed = {"pause": decisions.pause, "resume": decisions.resume, "abort": decisions.abort}[args.action](
        state, now
    )
    if isinstance(changed, str):
        raise InputError(f"{args.name}: {changed}")
    try:
        written = write_state(registry, args.name, typed, changed, now)
    except ConcurrentChangeError:
        raise InputError(f"{args.name}: {CONCURRENT}") from None
    print(
        f"{args.name}: rollout {written.status.replace('_', ' ')}; {written.candidate} at {written.weight:g}%"
    )
    return 0


def _ttft_rule(state: RolloutState) -> str:
    return (
        f"max TTFT p95 ratio {state.max_ttft_p95_ratio:g}x "
        f"when at least {state.min_ttft_p95_delta_ms:g} ms slower"
    )


def _ago(now: float, then: float) -> str:
    when = datetime.fromtimestamp(then, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{when} ({max(0.0, now - then):.0f} s ago)"


def _stats_line(name: str, stats: decisions.VariantStats) -> str:
    p95 = stats.ttft_p95()
    latency = f"TTFT p95 {p95:.0f} ms" if not math.isnan(p95) else "no first tokens"
    return (
        f"{name}: {stats.requests} requests, {stats.errors} errors "
        f"({decisions.percent(stats.error_rate)}), {latency}"
    )


def status_document(
    state: RolloutState,
    now: float,
    stats: dict[str, decisions.VariantStats] | str,
    published: decisions.Published | None,
) -> dict[str, Any]:
    """What `rollout status` shows: the state, the counts since the step started, the next tick's decision,
    the candidate's published weight (what workers serve; None when not published or, with `published`
    None, the set cannot be read) and why the sync did not publish the model's current item (its last
    good spec serves instead)."""
    doc: dict[str, Any] = {"rollout": state.to_json(), "weight": state.weight}
    doc["published_weight"] = published.weight if published is not None else None
    if published is not None and published.why:
        doc["not_published"] = published.why
    if isinstance(stats, str):
        doc["counts_unavailable"] = stats
        return doc
    start = decisions.window_start(state)
    doc["counts_since"] = {  # the window the counts and the decision use (README "Rollout")
        "epoch": start,
        "utc": datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    doc["since_step_started"] = {
        name: {
            "requests": s.requests,
            "errors": s.errors,
            "ttft_p95_ms": s.ttft_p95() if s.first_tokens else None,
        }
        for name, s in stats.items()
    }
    unreadable = decisions.Published(None, "the published model set cannot be read")
    decision = decisions.decide(state, now, stats, published or unreadable)
    doc["next_tick"] = {"action": decision.action, "reason": decision.reason}
    return doc


def cmd_status(args: argparse.Namespace) -> int:
    registry = _registry(args)
    state = _state(args.name, _item(registry, args.name))
    now = time.time()
    stats: dict[str, decisions.VariantStats] | str
    try:
        stats = variant_stats(_outcomes(args), args.name, state)
    except OutcomesUnavailable as exc:
        stats = f"outcome counts cannot be read: {exc}"
    doc = status_document(state, now, stats, _published(args, state))
    if args.json:
        print(json.dumps(doc, ensure_ascii=False))
        return 0
    step = f"step {state.step + 1} of {len(state.steps)}"
    print(
        f"{args.name}: rollout to {state.candidate} (baseline {state.baseline}): "
        f"{state.status.replace('_', ' ')}, {step}, candidate weight {state.weight:g}%"
    )
    print(
        f"  plan: steps {steps_sequence(state.steps)}; bake {state.bake_seconds:g} s; "
        f"max error rate {decisions.percent(state.max_error_rate)}; "
        f"{_ttft_rule(state)}; min requests {state.min_requests}"
    )
    print(f"  started {_ago(now, state.started_at)}; this step started {_ago(now, state.step_started_at)}")
    if state.step_live_at is not None:
        print(f"  this step was first seen published {_ago(now, state.step_live_at)}; its bake started then")
    if doc["published_weight"] is not None:
        print(f"  published: candidate weight {doc['published_weight']:g}% (what workers serve)")
    if state.reason:
        print(f"  reason: {state.reason}")
    if doc.get("not_published"):
        print(
            f"  not published: {doc['not_published']} (the sync kept the model's last good spec, with "
            "the candidate's weight before this change; `rollout abort` ends it, or once the endpoint "
            "is InService, `rollout pause` and `resume` write the item again for the sync to publish)"
        )
    if isinstance(stats, str):
        print(f"  counts: {stats}")
    else:
        start = decisions.window_start(state)
        print(
            f"  counts {decisions.since(state)}: every whole minute from "
            f"{_ago(now, start)}, the minute this step started in"
        )
        for name in (state.candidate, state.baseline):
            print(f"    {_stats_line(name, stats.get(name, decisions.VariantStats()))}")
        print(f"  next tick: {doc['next_tick']['action']}: {doc['next_tick']['reason']}")
    print("  history:")
    for event in state.history:
        when = datetime.fromtimestamp(event.at, UTC).strftime("%H:%M:%S")
        note = f": {event.reason}" if event.reason else ""
        print(f"    {when} {event.event} ({event.weight:g}%){note}")
    return 0


def _published(args: argparse.Namespace, state: RolloutState) -> decisions.Published | None:
    """The candidate in the published model set, with why the sync rejected the model's current item (its
    endpoint check refuses a candidate that does not exist or is not serving); None when the set cannot be
    read, with a warning (the rest of the status comes from the registry and the counts)."""
    try:
        return published_candidate(_snapshot(args), args.name, state.candidate)
    except rollout_step.UNREADABLE as exc:
        print(f"warning: the published model set cannot be read: {exc}", file=sys.stderr)
        return None


def cmd_step(args: argparse.Namespace) -> int:
    results = _runner(args).tick()
    if args.json:
        print(json.dumps([r.__dict__ for r in results], ensure_ascii=False))
        return 0
    for r in results:
        weight = f" ({r.weight:g}%)" if r.weight is not None else ""
        print(f"{r.model}: {r.action}{weight}: {r.reason}")
    if not results:
        print("no listed model has a rollout")
    return 0
