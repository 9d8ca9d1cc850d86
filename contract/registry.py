"""The registry as a whole: the `all-models` list plus model items -> what should be live (pure).

Rules (docs/design.md "Registry"), implemented once for the sync Lambda and the CLI:
- `all-models.model_names` is a comma-separated list in display order; whitespace around names is
  trimmed, empty entries are ignored, and a repeated name counts once (first position) with a warning.
- A missing or unreadable `all-models` item means "no decision": nothing is published.
- An explicitly empty list is a decision: the published set becomes empty.
- A listed name whose item is missing or invalid is rejected with the reason (its last good spec stays).
- Items not listed are inactive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from contract.dynamo import untype_item
from contract.errors import SpecError
from contract.spec import ALL_MODELS_KEY, ModelSpec, parse_model_item


@dataclass(frozen=True)
class ActiveList:
    names: tuple[str, ...]
    warnings: tuple[str, ...] = ()


class ActiveListError(ValueError):
    """The `all-models` item is missing or unreadable: publish nothing."""


def parse_active_list(item: Mapping[str, Any] | None) -> ActiveList:
    """Read the `all-models` item; raises ActiveListError when it gives no usable decision."""
    if item is None:
        raise ActiveListError(f"the {ALL_MODELS_KEY!r} item is missing; nothing is published until it exists")
    raw = untype_item(dict(item)).get("model_names")
    if raw is None:
        raise ActiveListError(f"{ALL_MODELS_KEY}: model_names is missing; nothing is published")
    if not isinstance(raw, str):
        raise ActiveListError(
            f"{ALL_MODELS_KEY}: model_names must be a comma-separated string, not {type(raw).__name__}; "
            "nothing is published"
        )
    names: list[str] = []
    warnings: list[str] = []
    for position, part in enumerate(raw.split(","), start=1):
        name = part.strip()
        if not name:
            if raw.strip():
                warnings.append(f"{ALL_MODELS_KEY}: model_names entry {position} is empty and was ignored")
            continue
        if name in names:
            warnings.append(f"{ALL_MODELS_KEY}: {name!r} is listed more than once; its first position counts")
            continue
        names.append(name)
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
    inactive = tuple(sorted(n for n in by_name if n not in active.names))
    return RegistryState(active.names, specs, rejected, active.warnings, inactive)
