"""The registry as a whole: the `all-models` list plus model items -> what should be live (pure).

Rules (docs/design.md "Registry"), implemented once for the sync Lambda and the CLI:
- `all-models.model_names` is a comma-separated list in display order; whitespace around names is
  trimmed, empty entries are ignored, and a repeated name counts once (first position) with a warning.
- A missing or unreadable `all-models` item means "no decision": nothing new is published (the sync
  reports why in the manifest's `not_published`). So does a list of more than MAX_ACTIVE_MODELS names.
- A listed name longer than a model name can be is ignored with a warning (no item can have it), so one
  huge name cannot make the manifest too big to publish; at most MAX_WARNINGS warnings are kept.
- An explicitly empty list is a decision: the published set becomes empty. A list that is not blank
  but names no usable model (only over-long names, only commas) gives no decision.
- A listed name whose item is missing or invalid is rejected with the reason (its last good spec stays).
- Items not listed are inactive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from contract.dynamo import untype_item
from contract.errors import SpecError
from contract.spec import ALL_MODELS_KEY, MAX_MODEL_NAME, ModelSpec, parse_model_item

MAX_ACTIVE_MODELS = 1000  # what the manifest's 32 pages of 8 KB hold with 64-character names
MAX_WARNINGS = 20


@dataclass(frozen=True)
class ActiveList:
    names: tuple[str, ...]
    warnings: tuple[str, ...] = ()


class ActiveListError(ValueError):
    """The `all-models` item is missing or unreadable: publish nothing."""


def parse_active_list(item: Mapping[str, Any] | None) -> ActiveList:
    """Read the `all-models` item; raises ActiveListError when it gives no usable decision."""
    if item is None:
        raise ActiveListError(
            f"the {ALL_MODELS_KEY!r} item is missing; nothing new is published until it exists"
        )
    raw = untype_item(dict(item)).get("model_names")
    if raw is None:
        raise ActiveListError(f"{ALL_MODELS_KEY}: model_names is missing; nothing new is published")
    if not isinstance(raw, str):
        raise ActiveListError(
            f"{ALL_MODELS_KEY}: model_names must be a comma-separated string, not {type(raw).__name__}; "
            "nothing new is published"
        )
    names: dict[str, None] = {}  # ordered, with O(1) membership (lists may be long)
    warnings: list[str] = []
    for position, part in enumerate(raw.split(","), start=1):
        name = part.strip()
        if not name:
            if raw.strip():
                warnings.append(f"{ALL_MODELS_KEY}: model_names entry {position} is empty and was ignored")
            continue
        if len(name) > MAX_MODEL_NAME:
            warnings.append(
                f"{ALL_MODELS_KEY}: model_names entry {position} ({name[:20]!r}...) is {len(name)} "
                f"characters long; model names hold at most {MAX_MODEL_NAME}, so it was ignored"
            )
            continue
        if name in names:
            warnings.append(f"{ALL_MODELS_KEY}: {name!r} is listed more than once; its first position counts")
            continue
        names[name] = None
    if not names and raw.strip():  # e.g. one 300 KB name: a mistake, not "remove every model"
        raise ActiveListError(
            f"{ALL_MODELS_KEY}: model_names names no usable model ({warnings[0]}); nothing new is published "
            "(an empty model_names removes every model)"
        )
    if len(names) > MAX_ACTIVE_MODELS:
        raise ActiveListError(
            f"{ALL_MODELS_KEY}: model_names lists {len(names)} models; the limit is {MAX_ACTIVE_MODELS}; "
            "nothing new is published"
        )
    if len(warnings) > MAX_WARNINGS:
        warnings[MAX_WARNINGS - 1 :] = [f"... and {len(warnings) - MAX_WARNINGS + 1} more warnings"]
    return ActiveList(tuple(names), tuple(warnings))


def format_active_list(names: Iterable[str]) -> str:
    """The `model_names` value for a list of names."""
    return ",".join(names)


@dataclass(frozen=True)
class RegistryState:
    """What the registry asks for: the active names in order, their specs, and what was rejected."""

    active: tuple[str, ...]
    specs: Mapping[str, ModelSpec]
    rejected: Mapping[str, str]
    warnings: tuple[str, ...] = ()
    inactive: tuple[str, ...] = field(default=())


def evaluate_registry(items: Iterable[Mapping[str, Any]]) -> RegistryState:
    """Evaluate a whole registry scan. Raises ActiveListError when `all-models` gives no decision."""
    by_name: dict[str, Mapping[str, Any]] = {}
    all_models: Mapping[str, Any] | None = None
    for item in items:
        plain = untype_item(dict(item))
        key = plain.get("model_name")
        if key == ALL_MODELS_KEY:
            all_models = plain
        elif isinstance(key, str):
            by_name[key] = plain
    active = parse_active_list(all_models)
    specs: dict[str, ModelSpec] = {}
    rejected: dict[str, str] = {}
    for name in active.names:
        found = by_name.get(name)
        if found is None:
            rejected[name] = f"{name}: listed in {ALL_MODELS_KEY} but there is no item with this model_name"
            continue
        try:
            specs[name] = parse_model_item(found)
        except SpecError as exc:
            rejected[name] = str(exc)
    listed = set(active.names)
    inactive = tuple(sorted(n for n in by_name if n not in listed))
    return RegistryState(active.names, specs, rejected, active.warnings, inactive)
