"""Starting a rollout: what `sagemaker-fastchat models rollout` writes into a model's item (pure).

The candidate becomes the model's only other variant, at the first step's weight; `rollout` holds the
plan. Refused, with one line per problem: a model whose item does not validate, a rollout already running
or paused, a candidate that is the live endpoint, other variants that still take traffic (a rollout
moves traffic between exactly two endpoints), and a plan or candidate config out of bounds. The whole
new item is validated by the spec validator before anything is written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contract.errors import Problem, SpecError
from contract.spec import endpoint_name_problem, parse_model_item
from rollout.state import (
    ACTIVE,
    DEFAULT_MIN_TTFT_P95_DELTA_MS,
    RolloutState,
    new_state,
    parse_state,
    plan_problems,
)

_OPTIONS = {  # the plan's settings as `models rollout` spells them
    "steps": "--steps",
    "bake_seconds": "--bake",
    "max_error_rate": "--max-error-rate",
    "max_ttft_p95_ratio": "--max-ttft-p95-ratio",
    "min_requests": "--min-requests",
    "min_ttft_p95_delta_ms": "--min-ttft-p95-delta-ms",
}


@dataclass(frozen=True)
class Plan:
    steps: tuple[float, ...]
    bake_seconds: float
    max_error_rate: float
    max_ttft_p95_ratio: float
    min_requests: int
    min_ttft_p95_delta_ms: float = DEFAULT_MIN_TTFT_P95_DELTA_MS

    def problems(self) -> list[tuple[str, str]]:
        return plan_problems(
            list(self.steps),
            self.bake_seconds,
            self.max_error_rate,
            self.max_ttft_p95_ratio,
            self.min_requests,
            min_ttft_p95_delta_ms=self.min_ttft_p95_delta_ms,
        )


def start_changes(
    item: Mapping[str, Any], candidate: str, config: Any, plan: Plan, now: float
) -> tuple[dict[str, Any], RolloutState]:
    """The attributes to write to start the rollout, and its state. Raises SpecError (model: field: why)."""
    spec = parse_model_item(item)  # the live item must be valid: its endpoint is the baseline
    name = spec.name
    problems = [Problem(name, _OPTIONS.get(key, key), why) for key, why in plan.problems()]
    raw = item.get("rollout")
    current = parse_state(raw) if raw is not None else None
    running = isinstance(current, RolloutState) and current.status in ACTIVE
    if isinstance(current, RolloutState) and running:
        problems.append(
            Problem(
                name,
                "rollout",
                f"a rollout to {current.candidate} is {current.status}; "
                f"`sagemaker-fastchat rollout abort {name}` first",
            )
        )
    if (bad_name := endpoint_name_problem(candidate)) is not None:
        problems.append(Problem(name, "--endpoint", bad_name))
    elif candidate == spec.endpoint_name:
        problems.append(Problem(name, "--endpoint", f"{candidate} is already the model's live endpoint"))
    busy = [v.endpoint_name for v in spec.variants()[1:] if v.weight > 0 and v.endpoint_name != candidate]
    if busy and not running:  # a running rollout's own candidate is reported above
        problems.append(
            Problem(
                name,
                "variants",
                f"other variants still take traffic ({', '.join(busy)}); a rollout moves traffic between the "
                "live endpoint and one candidate: set their weights to 0 or remove them first",
            )
        )
    if problems:
        raise SpecError(problems)
    state = new_state(
        candidate,
        spec.endpoint_name,
        now,
        steps=plan.steps,
        bake_seconds=plan.bake_seconds,
        max_error_rate=plan.max_error_rate,
        max_ttft_p95_ratio=plan.max_ttft_p95_ratio,
        min_requests=plan.min_requests,
        min_ttft_p95_delta_ms=plan.min_ttft_p95_delta_ms,
    )
    entry: dict[str, Any] = {"endpoint_name": candidate, "weight": _whole(state.weight)}
    if config is not None:
        entry["endpoint_req_config"] = config
    changes = {"variants": json.dumps([entry], ensure_ascii=False), "rollout": state.dumps()}
    parse_model_item({**item, **changes})  # the candidate's name and config, checked like any variant
    return changes, state


def _whole(weight: float) -> int | float:
    return int(weight) if float(weight).is_integer() else weight


def parse_steps(text: str) -> tuple[float, ...] | str:
    """`5,25,50,100` as weights, or why not (the bounds are checked with the rest of the plan)."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        return f"{text[:60]!r} is not a comma-separated list of weights such as 5,25,50,100"


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(text: str) -> float | str:
    """`10m`, `90s`, `1h`, `1d` or plain seconds, or why not."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:])
    number = value[:-1] if unit else value
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        return f"{text[:60]!r} is not a duration such as 10m, 90s or 1h"
    if math.isnan(seconds):
        return f"{text[:60]!r} is not a duration such as 10m, 90s or 1h"
    return seconds


def steps_sequence(steps: Sequence[float]) -> str:
    return ",".join(f"{s:g}" for s in steps)
