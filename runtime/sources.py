"""Where a worker gets its model set: SSM (production) or a local JSON file (development).

Both produce the same thing, a `Snapshot` (version, specs in display order, rejections, warnings, and
why the registry's latest state was not published), and feed the same swap path. The SSM source reads
only the manifest's version on most polls (one GetParameter), fetches only model parameters whose hash
changed, and verifies every hash. Its boto3 client (`stores.ssm.ssm_client`) has bounded timeouts, so an SSM
that accepts connections and never answers is a recorded poll error within seconds, not a poll hung for
minutes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from contract.errors import SpecError
from contract.items import InputError, load_items
from contract.registry import ActiveListError, evaluate_registry
from contract.spec import ModelSpec
from stores.ssm import SnapshotReader


@dataclass(frozen=True)
class Snapshot:
    version: int | None
    specs: list[ModelSpec]
    rejected: Mapping[str, str] = field(default_factory=dict)
    order: tuple[str, ...] = ()  # display order, rejected names included (they may keep a live spec)
    warnings: tuple[str, ...] = ()
    not_published: str = ""  # why the registry's latest state is not what is served ("" when it is)


class SnapshotUnavailable(RuntimeError):
    """The source has nothing usable (yet): keep the live set."""


class SsmSource:
    """Polls `<prefix>/model-set`; caches specs by (parameter, version) so unchanged models cost nothing."""

    def __init__(self, reader: SnapshotReader) -> None:
        self.reader = reader
        self._specs: dict[tuple[str, int], ModelSpec] = {}

    @property
    def description(self) -> str:
        return f"ssm:{self.reader.prefix}"

    def current_version(self) -> int | None:
        return self.reader.manifest_version()

    def load(self) -> Snapshot:
        published = self.reader.load_manifest()
        if published is None:
            raise SnapshotUnavailable(f"nothing is published under {self.reader.prefix} yet")
        specs = []
        for entry in published.manifest.models:
            key = (entry.parameter, entry.version)
            spec = self._specs.get(key)
            if spec is None or spec.hash != entry.hash:
                spec = self.reader.load_spec(entry.parameter, entry.version, entry.hash, entry.name)
            specs.append(spec)
        self._specs = {
            (e.parameter, e.version): s for e, s in zip(published.manifest.models, specs, strict=True)
        }
        manifest = published.manifest
        return Snapshot(
            published.version,
            specs,
            manifest.rejected,
            manifest.names,
            manifest.warnings,
            manifest.not_published,
        )


class FileSource:
    """A registry file (an item list or scan dump with an `all-models` item, or just model items)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def description(self) -> str:
        return f"file:{self.path}"

    def load(self) -> Snapshot:
        try:
            items = load_items(self.path.read_text(encoding="utf-8"), str(self.path))
        except OSError as exc:
            raise SnapshotUnavailable(f"{self.path}: cannot read ({exc.strerror})") from None
        except InputError as exc:
            raise SnapshotUnavailable(str(exc)) from None
        if not any(i.get("model_name") == "all-models" for i in items):
            names = ",".join(str(i.get("model_name")) for i in items)
            items = [*items, {"model_name": "all-models", "model_names": names}]
        try:
            state = evaluate_registry(items)
        except (ActiveListError, SpecError) as exc:
            raise SnapshotUnavailable(str(exc)) from None
        specs = [state.specs[n] for n in state.active if n in state.specs]
        return Snapshot(None, specs, state.rejected, state.active, state.warnings)
