"""The live model set: an immutable snapshot of adapters, swapped atomically as a whole.

Readers take `live.current` once per request and keep that object: a swap never changes a snapshot
that a stream already holds, so streams in flight finish on the adapter they started on, even when
their model was removed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from contract.spec import ModelSpec
from runtime.adapter import SageMakerAdapter
from runtime.sources import Snapshot


@dataclass(frozen=True)
class ModelSet:
    version: int | None  # the manifest version (None: a local file source, or nothing loaded)
    adapters: Mapping[str, SageMakerAdapter] = field(default_factory=dict)
    order: tuple[str, ...] = ()
    rejected: Mapping[str, str] = field(default_factory=dict)
    source: str = ""
    loaded_at: float = field(default_factory=time.time)
    warnings: tuple[str, ...] = ()
    not_published: str = ""  # from the manifest: why the registry's latest state is not served

    @property
    def names(self) -> list[str]:
        return list(self.order)

    def get(self, name: str) -> SageMakerAdapter | None:
        return self.adapters.get(name)

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "source": self.source,
            "loaded_at": self.loaded_at,
            "models": [
                {
                    "name": name,
                    "endpoint_name": self.adapters[name].spec.endpoint_name,
                    "hash": self.adapters[name].spec.hash,
                    "conv_template": self.adapters[name].spec.conv_template,
                    "context_length": self.adapters[name].spec.context_length,
                    "description": self.adapters[name].spec.description,
                    "arena_weight": self.adapters[name].spec.arena_weight,
                    # the canonical fields every variant that can answer maps (the API refuses the rest)
                    "request_fields": sorted(self.adapters[name].request_fields),
                    "response_fields": sorted(self.adapters[name].response_fields),
                    # each endpoint serving the name: weight, warm-up exclusion, circuit breaker
                    "variants": self.adapters[name].describe(),
                }
                for name in self.order
            ],
            "rejected": dict(self.rejected),
            "warnings": list(self.warnings),
            "not_published": self.not_published or None,
        }


def build_model_set(
    snapshot: Snapshot,
    previous: ModelSet,
    make_adapter: Callable[[ModelSpec], SageMakerAdapter],
    source: str,
    admit: Callable[[list[ModelSpec]], Mapping[str, str]] | None = None,
) -> ModelSet:
    """A new set from a snapshot. Adapters whose spec hash did not change are reused; a model that fails
    to build, or that the source rejected, keeps its previous adapter when it had one (last good spec).
    `admit` (runtime.warmup) sees only new or changed specs and names those that must stay out."""
    specs = {s.name: s for s in snapshot.specs}
    rejected = dict(snapshot.rejected)
    # New or changed specs, and live ones with variants the warm-up left out (rechecked: runtime.warmup).
    changed = [
        s
        for s in snapshot.specs
        if (old := previous.get(s.name)) is None or old.spec.hash != s.hash or old.excluded()
    ]
    refused = admit(changed) if admit is not None and changed else {}
    adapters: dict[str, SageMakerAdapter] = {}
    for name in snapshot.order or tuple(specs):
        spec, old = specs.get(name), previous.get(name)
        if spec is not None and old is not None and old.spec.hash == spec.hash:
            adapters[name] = old
            if old.excluded() and name not in refused:
                try:
                    fresh = make_adapter(spec)  # the same adapter unless the exclusions changed
                except ValueError:
                    continue
                if fresh.excluded() != old.excluded():
                    adapters[name] = fresh
        elif spec is not None:
            try:
                if name in refused:
                    raise ValueError(refused[name])
                adapters[name] = make_adapter(spec)
            except ValueError as exc:
                rejected[name] = f"{name}: {exc}"
                if old is not None:
                    adapters[name] = old
        elif old is not None:
            adapters[name] = old
    return ModelSet(
        snapshot.version,
        adapters,
        tuple(adapters),
        rejected,
        source,
        warnings=snapshot.warnings,
        not_published=snapshot.not_published,
    )


class LiveModelSet:
    """Holds the current ModelSet; `swap` replaces it in one reference assignment."""

    def __init__(self) -> None:
        self._current = ModelSet(None)
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.swaps = 0
        self._listeners: list[Callable[[ModelSet], object]] = []

    @property
    def current(self) -> ModelSet:
        return self._current

    @property
    def loaded(self) -> bool:
        return self.swaps > 0

    def on_swap(self, listener: Callable[[ModelSet], object]) -> None:
        self._listeners.append(listener)

    def swap(self, new: ModelSet) -> bool:
        """Install `new` unless it is older than the live set (versions only move forward)."""
        with self._lock:
            old = self._current
            if old.version is not None and new.version is not None and new.version < old.version:
                return False
            self._current = new
            self.swaps += 1
            self.last_error = None
        for listener in self._listeners:
            listener(new)
        return True

    def record_error(self, message: str) -> None:
        self.last_error = message
        self.last_error_at = time.time()
