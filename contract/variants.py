"""Variants: one model name served by several endpoints, split by weight (issue 17; pure, no I/O).

Registry attribute `variants` (optional): a list, as a JSON string or a DynamoDB list of maps, of at most
MAX_VARIANTS objects `{"endpoint_name": str, "weight": 0..100, "endpoint_req_config": optional}`. The
item's own `endpoint_name` + `endpoint_req_config` is the PRIMARY variant; its weight is 100 minus the
sum of the others, which must not be negative. Endpoint names are unique within the model; a variant
without `endpoint_req_config` uses the item's.

The structural checks live here; contract/spec.py parses each override with the item's own config
parser and builds one full ModelSpec per variant (`contract.spec.Variant`: a worker treats a variant like
any model).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from contract.json_shape import short_repr

MAX_VARIANTS = 4  # besides the primary
VARIANT_KEYS = ("endpoint_name", "weight", "endpoint_req_config")
FULL_WEIGHT = 100


@dataclass(frozen=True)
class VariantEntry:
    """One checked entry of `variants`, before its config is parsed (`config` is the raw override)."""

    index: int
    endpoint_name: str
    weight: int | float
    config: Any  # None: the item's own config


Report = Callable[[str, str], None]  # (dotted path, why)


def _type_name(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def normal_weight(value: int | float) -> int | float:
    """Whole weights as int, so 5, 5.0 and DynamoDB's Decimal("5") hash alike."""
    return int(value) if float(value).is_integer() else float(value)


def weight_problem(value: object) -> str | None:
    # Compared as they are: float() of a 400-digit int would raise, and NaN compares false.
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= FULL_WEIGHT:
        return f"must be a number from 0 to {FULL_WEIGHT}, not {short_repr(value)}"
    return None


def load_list(raw: object, report: Report) -> list[Any] | None:
    """The `variants` attribute as a list (a JSON string is read first), or None after reporting why."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            report("variants", f"is not valid JSON ({short_repr(str(exc), 120)})")
            return None
    if not isinstance(raw, list):
        report("variants", f"must be an array of objects, not {_type_name(raw)}")
        return None
    if len(raw) > MAX_VARIANTS:
        report("variants", f"holds {len(raw)} variants; the limit is {MAX_VARIANTS} besides the primary")
        return None
    return raw


def check_entries(
    raw: Sequence[Any],
    primary_endpoint: object,
    endpoint_problem: Callable[[object], str | None],
    report: Report,
) -> list[VariantEntry]:
    """Check each entry's keys, endpoint name (unique, not the primary's) and weight, and the weights'
    sum; every problem is reported, and only the entries without one are returned."""
    entries: list[VariantEntry] = []
    seen = {primary_endpoint} if isinstance(primary_endpoint, str) else set()
    total = 0.0
    for index, entry in enumerate(raw):
        where = f"variants[{index}]"
        if not isinstance(entry, dict):
            report(where, f"must be an object, not {_type_name(entry)}")
            continue
        ok = True
        for key in entry:
            if key not in VARIANT_KEYS:
                report(
                    f"{where}.{short_repr(key)}", f"is not a variant attribute ({', '.join(VARIANT_KEYS)})"
                )
                ok = False
        name = entry.get("endpoint_name")
        problem = "is missing" if name is None else endpoint_problem(name)
        if problem is None and name in seen:
            problem = f"{name!r} is already an endpoint of this model; each variant needs its own"
        if problem is not None:
            report(f"{where}.endpoint_name", problem)
            ok = False
        weight = entry.get("weight")
        problem = "is missing" if weight is None else weight_problem(weight)
        if problem is not None:
            report(f"{where}.weight", problem)
            ok = False
        else:
            total += float(weight)  # type: ignore[arg-type]
        if ok:
            assert isinstance(name, str)
            seen.add(name)
            entries.append(
                VariantEntry(index, name, normal_weight(weight), entry.get("endpoint_req_config"))  # type: ignore[arg-type]
            )
    if total > FULL_WEIGHT:
        report(
            "variants",
            f"weights add up to {total:g}; at most {FULL_WEIGHT} (the primary endpoint takes the rest)",
        )
    return entries


def primary_weight(weights: Sequence[float]) -> float:
    return max(0.0, FULL_WEIGHT - float(sum(weights)))
