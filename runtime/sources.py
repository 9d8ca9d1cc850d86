"""Where a worker gets its model set: SSM (production) or a local JSON file (development).

Both implement `ModelSetSource` (docs/design.md "Workers"): they produce the same thing, a `Snapshot`
(version, specs in display order, rejections, warnings, and why the registry's latest state was not
published), feed the same swap path, and each says when to look again (`changes`: SSM on a timer, the
file when watchfiles reports a change), so the poller never asks which kind it holds. The SSM source reads
only the manifest's version on most polls (one GetParameter), fetches only model parameters whose hash
changed, and verifies every hash. Its boto3 client (`stores.ssm.ssm_client`) has bounded timeouts, so an SSM
that accepts connections and never answers is a recorded poll error within seconds, not a poll hung for
minutes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

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


class PollSchedule(Protocol):
    """What a source's `changes` needs from its poller (runtime.poller.Poller is one)."""

    @property
    def interval(self) -> float: ...

    def next_delay(self) -> float:
        """Seconds until the next timed look (jittered; backed off after failures)."""
        ...

    def recheck_due(self) -> bool:
        """Whether a refused candidate is due for another check, changed or not."""
        ...


class ModelSetSource(Protocol):
    """A model-set source (docs/design.md "Workers"): the poller loads it once per step `changes` yields."""

    @property
    def description(self) -> str:
        """Where the set comes from, as `/model-set` and the logs show it (e.g. `ssm:/prefix`)."""
        ...

    def load(self) -> Snapshot:
        """The current snapshot; raises SnapshotUnavailable when there is nothing usable (yet)."""
        ...

    def unchanged_since(self, version: int | None) -> bool:
        """True when a cheap check shows nothing newer than `version` (the live set's) to load."""
        ...

    def changes(self, stop: threading.Event, schedule: PollSchedule) -> Iterator[None]:
        """Yields at once, then each time the source may have changed, until `stop` is set."""
        ...


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

    def unchanged_since(self, version: int | None) -> bool:
        # One GetParameter of the manifest's version instead of reading the whole set.
        current = self.current_version()
        return current is not None and version is not None and current <= version

    def changes(self, stop: threading.Event, schedule: PollSchedule) -> Iterator[None]:
        """Every `schedule.next_delay()` seconds (read after each step, so failures back off)."""
        yield
        while not stop.wait(schedule.next_delay()):
            yield

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

    def unchanged_since(self, version: int | None) -> bool:
        return False  # a file has no version: it is read whenever `changes` says so

    def changes(self, stop: threading.Event, schedule: PollSchedule) -> Iterator[None]:
        """At once, then whenever watchfiles reports a change to the file (or a recheck is due)."""
        from watchfiles import watch

        target = self.path.resolve()
        seen = _stat(target)  # before the first load: no change can slip between
        yield
        # Watch the folder, not the file: editors often save by replacing the file, which ends a file watch.
        # Every `interval` the file's stat is compared too, so a change the watch missed (one made before
        # the watch was established, or on a filesystem without notifications) is still picked up.
        for changed in watch(
            target.parent,
            watch_filter=lambda _change, name: Path(name).resolve() == target,
            stop_event=stop,
            debounce=200,
            rust_timeout=int(schedule.interval * 1000),
            yield_on_timeout=True,
        ):
            current = _stat(target)
            if changed or current != seen or schedule.recheck_due():
                seen = current
                yield

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


if TYPE_CHECKING:  # mypy checks that both implement the protocol the poller takes
    _SOURCES: tuple[type[ModelSetSource], ...] = (SsmSource, FileSource)


def _stat(path: Path) -> tuple[float, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime, st.st_size
