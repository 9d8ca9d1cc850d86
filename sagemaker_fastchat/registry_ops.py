"""Registry operations behind `sagemaker-fastchat models ...`: the same boto3 code against the local
stack or AWS (only boto3 configuration differs). Operators write the table; only the Lambda writes SSM.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from contract.dynamo import to_typed_item, untype_item
from contract.errors import SpecError
from contract.items import InputError
from contract.registry import ActiveListError, format_active_list, parse_active_list
from contract.spec import ALL_MODELS_KEY, ModelSpec, parse_model_item
from rollout.state import RolloutState, parse_state, summary
from stores.registry import ConcurrentChangeError, RegistryStore
from stores.ssm import PublishedSet, SnapshotReader
from sync.publisher import specs_at

ITEM_CONFIG = "endpoint_req_config"


@dataclass
class Registry:
    """The registry's rules for operators (the active list, read-modify-write) over a RegistryStore."""

    store: RegistryStore

    def get(self, name: str) -> dict[str, Any] | None:
        item = self.store.get(name)
        return untype_item(item) if item is not None else None

    def scan(self) -> list[dict[str, Any]]:
        return [untype_item(i) for i in self.store.scan()]

    def active(self) -> tuple[list[str], str | None]:
        """The listed names and the raw value (for a conditional update); empty if the item is missing."""
        item = self.get(ALL_MODELS_KEY)
        if item is None:
            return [], None
        try:
            return list(parse_active_list(item).names), item.get("model_names")
        except ActiveListError:
            return [], item.get("model_names") if isinstance(item.get("model_names"), str) else None

    def set_active(self, names: list[str], expected_raw: str | None) -> None:
        """Write all-models only if nobody changed it since we read it (raises ConcurrentChangeError)."""
        item = {"model_name": {"S": ALL_MODELS_KEY}, "model_names": {"S": format_active_list(names)}}
        try:
            self.store.put_if(item, "model_names", expected_raw)
        except ConcurrentChangeError:
            raise ConcurrentChangeError(
                "all-models changed while we updated it; run the command again"
            ) from None

    def update_active(self, change: Any, attempts: int = 5, *, force: bool = False) -> list[str]:
        """Read-modify-write of all-models with optimistic locking (retried on a concurrent change).
        Refuses (EmptySetError) to empty a non-empty list unless `force`: that removes every model."""
        for attempt in range(attempts):
            names, raw = self.active()
            new = change(list(names))
            if new == names and raw is not None:
                return names
            if names and not new and not force:
                raise EmptySetError.about(names)
            try:
                self.set_active(new, raw)
                return list(new)
            except ConcurrentChangeError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        return []


class EmptySetError(InputError):
    """A change that would empty the active set, asked for without --force (exit 1, nothing written)."""

    @classmethod
    def about(cls, names: list[str]) -> EmptySetError:
        return cls(
            f"this would leave {ALL_MODELS_KEY} empty and remove every live model "
            f"({', '.join(names)}); pass --force to do that on purpose"
        )


def build_item(
    name: str, endpoint: str, config: dict[str, Any], extras: dict[str, Any]
) -> tuple[dict[str, Any], ModelSpec]:
    """The item to write, validated first (raises SpecError with every problem)."""
    cfg: dict[str, Any] | str = config
    if isinstance(config.get(ITEM_CONFIG), dict | str):  # a whole item was given: take its config and extras
        extras = {
            k: v for k, v in config.items() if k not in ("model_name", "endpoint_name", ITEM_CONFIG)
        } | extras
        cfg = config[ITEM_CONFIG]  # a JSON string (the seed's form) is parsed by the validator
    item = {"model_name": name, "endpoint_name": endpoint, ITEM_CONFIG: cfg, **extras}
    return item, parse_model_item(item)


def put_model(registry: Registry, item: dict[str, Any], active: bool) -> list[str]:
    registry.store.put(to_typed_item(item))
    name = item["model_name"]
    if active:
        return registry.update_active(lambda names: names if name in names else [*names, name])
    return registry.active()[0]


def remove_model(registry: Registry, name: str, *, force: bool = False) -> bool:
    """Unlist, then delete the item. False when the model was neither listed nor stored. Refuses
    (EmptySetError, nothing changed) to unlist the last listed model unless `force`."""
    names, _ = registry.active()
    existed = registry.get(name) is not None or name in names
    registry.update_active(lambda current: [n for n in current if n != name], force=force)
    registry.store.delete(name)
    return existed


def rollback(
    registry: Registry, reader: SnapshotReader, version: int, *, force: bool = False
) -> tuple[PublishedSet, list[ModelSpec]]:
    """Write manifest version N's exact specs back into the table and list exactly its models, in its
    order; the normal stream -> Lambda -> SSM path then publishes them as a new version. Rolling back to
    an empty version empties the set, so it needs `force` like any other emptying."""
    published, specs = specs_at(reader, version)
    listed = registry.active()[0]
    if not specs and listed and not force:
        raise EmptySetError.about(listed)
    for spec in specs:
        registry.store.put(to_typed_item(dict(spec.document)))
    registry.update_active(lambda _: [s.name for s in specs], force=force)
    return published, specs


def status_rows(registry: Registry, published: PublishedSet | None) -> list[dict[str, Any]]:
    """Registry and live set side by side: one row per model either side knows."""
    items = {i["model_name"]: i for i in registry.scan() if isinstance(i.get("model_name"), str)}
    names, _ = registry.active()
    manifest = published.manifest if published else None
    rows = []
    for name in dict.fromkeys([*names, *(manifest.names if manifest else ()), *items]):
        if name == ALL_MODELS_KEY:
            continue
        item = items.get(name)
        entry = manifest.entry(name) if manifest else None
        spec, problem = None, None
        if item is not None:
            try:
                spec = parse_model_item(item)
            except SpecError as exc:
                problem = str(exc)
        blocked = bool(manifest and manifest.not_published)  # the registry's state is not being served
        if name not in names:
            status = (
                "inactive" if entry is None else ("live, removal not published" if blocked else "removing")
            )
        elif manifest and name in manifest.rejected:
            status = "rejected (last good spec live)" if entry else "rejected"
        elif problem:
            status = "invalid"
        elif entry is not None and spec is not None and entry.hash == spec.hash:
            status = "live"
        else:
            status = "not published" if blocked else "pending"
        rows.append(
            {
                "model": name,
                "listed": name in names,
                "status": status,
                "endpoint": (spec.endpoint_name if spec else (item or {}).get("endpoint_name")),
                "live_hash": entry.hash if entry else None,
                "reason": (manifest.rejected.get(name) if manifest else None) or problem,
                **rollout_columns(item, spec),  # issue 17: variants and rollout
                # prompt-style config without conv_template: FastChat picks a template by name (API issue)
                "template_by_name": bool(
                    spec and not spec.conv_template and "prompt" in spec.request_mapping
                ),
            }
        )
    return rows


def rollout_columns(item: dict[str, Any] | None, spec: ModelSpec | None) -> dict[str, Any]:
    """`models list`'s weights per endpoint (when there are several) and rollout state (when there is one)."""
    variants = spec.variants() if spec else ()
    raw = (item or {}).get("rollout")
    state = parse_state(raw) if raw is not None else None
    return {
        # `weights`: the published split; a reachable worker adds its own view as `variants`
        "weights": [{"endpoint": v.endpoint_name, "weight": v.weight} for v in variants]
        if len(variants) > 1
        else None,
        "rollout": (summary(state) if isinstance(state, RolloutState) else "unreadable: " + "; ".join(state))
        if state is not None
        else None,
    }


def merge_worker_state(rows: list[dict[str, Any]], worker: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Rows with what a worker refused on its side (its endpoint check or probe; runtime.warmup): a model
    published as live but refused by the worker is `refused`, with the worker's reason (pure)."""
    if not worker:
        return rows
    refused = (worker.get("endpoint_check") or {}).get("refused") or {}
    models = [m for m in worker.get("models") or [] if isinstance(m, dict)]
    served = {m.get("name"): m.get("hash") for m in models}
    # each variant the worker serves: weight, warm-up exclusion, circuit breaker state (issue 17)
    variants = {m.get("name"): m.get("variants") for m in models if isinstance(m.get("variants"), list)}
    merged = []
    for row in rows:
        reason = refused.get(row["model"]) if isinstance(refused, dict) else None
        extra = {"variants": variants[row["model"]]} if row["model"] in variants else {}
        if reason and row["status"] in ("live", "pending"):
            live = " (last good spec live)" if row["model"] in served else ""
            merged.append({**row, **extra, "status": f"refused{live}", "reason": f"worker: {reason}"})
        else:
            merged.append({**row, **extra})
    return merged


def variant_lines(variants: object) -> list[str]:
    """`models list` lines for a model's variants as a worker reports them (none for a lone endpoint)."""
    if not isinstance(variants, list) or len(variants) < 2:
        return []
    lines = []
    for v in variants:
        if not isinstance(v, dict):
            continue
        breaker = v.get("breaker")
        breaker = breaker if isinstance(breaker, dict) else {}
        state = f"breaker {breaker.get('state', '?')}"
        if breaker.get("reason"):
            state += f" ({breaker['reason']})"
        role = "primary" if v.get("primary") else "variant"
        weight = v.get("weight")
        shown = f"{weight:g}%" if isinstance(weight, int | float) else str(weight)  # as `weights:` shows it
        line = f"{role} {v.get('endpoint_name')}: weight {shown}, {state}"
        if v.get("excluded"):
            line += f", excluded: {v['excluded']}"
        lines.append(line)
    return lines
