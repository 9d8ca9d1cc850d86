"""Publishing a registry state to SSM: model parameters first, the manifest last.

Guarantees (docs/design.md "Model-set snapshot"):
- Never a partial publish: workers only follow the manifest, and it is written after every parameter it
  references, so an SSM failure midway leaves the previous model set live; a retry converges (a parameter
  already holding the wanted spec is reused, not rewritten).
- Idempotent: an unchanged set writes nothing and makes no new version; only changed models are written.
- An invalid model keeps its last published spec live and is listed in `rejected` with the reason.
- One publisher at a time: besides reserved concurrency 1, the manifest version is checked again right
  before writing, and the set is rebuilt if another publisher got there first.
- Never wedged: a registry state that cannot be published (`report_not_published`) republishes the live
  models with the reason in the manifest's `not_published`, once per distinct reason; a damaged live
  manifest is replaced by the next publish rather than read again and again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from contract.registry import RegistryState
from contract.snapshot import (
    Manifest,
    ManifestEntry,
    SnapshotError,
    encode_manifest,
    manifest_name,
    model_parameter,
    page_name,
)
from contract.spec import ModelSpec, canonical_json, spec_parameter_value
from stores.ssm import PublishedSet, SnapshotReader, SnapshotWriter


class StaleManifestError(RuntimeError):
    """Another publisher wrote the manifest after we read it: re-read the table and try again."""


@dataclass
class PublishResult:
    version: int | None  # the live model-set version after this call
    published: bool  # whether this call wrote a new manifest version
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    not_published: str = ""  # why the registry's state could not be published ("" when it was)
    ssm_writes: int = 0
    ssm_reads: int = 0


def _write_spec(store: SnapshotWriter, spec: ModelSpec) -> ManifestEntry:
    """Write one model's parameter unless its latest version already holds this exact spec."""
    relative = model_parameter(spec.name)
    name = f"{store.prefix}/{relative}"
    latest = store.get(name)
    if latest is not None:
        try:
            if json.loads(latest[0]).get("hash") == spec.hash:
                return ManifestEntry(spec.name, relative, latest[1], spec.hash)
        except (ValueError, AttributeError):
            pass  # not ours or damaged: overwrite it
    version = store.put(name, canonical_json(spec_parameter_value(spec.document, spec.hash)))
    return ManifestEntry(spec.name, relative, version, spec.hash)


def plan_manifest(state: RegistryState, current: Manifest, store: SnapshotWriter) -> Manifest:
    """The manifest for `state`, writing the model parameters that changed."""
    entries: list[ManifestEntry] = []
    for name in state.active:
        spec = state.specs.get(name)
        old = current.entry(name)
        if spec is None:
            if old is not None:
                entries.append(old)  # rejected: its last good spec stays live
        elif old is not None and old.hash == spec.hash:
            entries.append(old)
        else:
            entries.append(_write_spec(store, spec))
    return Manifest(tuple(entries), dict(state.rejected), tuple(state.warnings))


def _diff(result: PublishResult, before: Manifest, after: Manifest) -> None:
    old = {e.name: e.hash for e in before.models}
    new = {e.name: e.hash for e in after.models}
    result.added = [n for n in new if n not in old]
    result.changed = [n for n in new if n in old and old[n] != new[n]]
    result.removed = [n for n in old if n not in new]


def publish(state: RegistryState, store: SnapshotWriter) -> PublishResult:
    """Publish `state`; returns what changed. Raises StaleManifestError when another publisher wrote the
    manifest meanwhile (the caller re-reads the table), and SSM errors (the caller retries the batch)."""
    reads0, writes0 = store.reads, store.writes
    live, version = _live(store)
    before = live or Manifest()
    manifest = plan_manifest(state, before, store)
    result = PublishResult(
        version=version,
        published=False,
        rejected=dict(state.rejected),
        warnings=list(state.warnings),
    )
    _diff(result, before, manifest)
    _write_manifest(result, manifest, live, store)
    _count(result, store, reads0, writes0)
    return result


def report_not_published(reason: str, store: SnapshotWriter) -> PublishResult:
    """Republish the live set with `reason` as its `not_published` (nothing when it already says so),
    so `models list` and every worker's `/model-set` show why the registry's state is not served.
    Before any publish, this is an empty set carrying the reason. Raises SnapshotError when even that
    cannot be encoded, and SSM errors (transient: the caller retries the batch)."""
    reads0, writes0 = store.reads, store.writes
    live, version = _live(store)
    before = live or Manifest()
    result = PublishResult(
        version=version,
        published=False,
        rejected=dict(before.rejected),
        warnings=list(before.warnings),
        not_published=reason,
    )
    _write_manifest(result, replace(before, not_published=reason), live, store)
    _count(result, store, reads0, writes0)
    return result


def _live(store: SnapshotWriter) -> tuple[Manifest | None, int | None]:
    """The live manifest and its version (None, None: nothing published). A damaged one (not JSON, a
    page missing or not matching its hash) counts as no manifest at the same version, so the next
    publish replaces it instead of failing on it forever (parameters holding a wanted spec are reused)."""
    try:
        current = store.load_manifest()
    except SnapshotError:
        return None, store.manifest_version()
    return (current.manifest, current.version) if current else (None, None)


def _write_manifest(
    result: PublishResult, manifest: Manifest, live: Manifest | None, store: SnapshotWriter
) -> None:
    """Write `manifest` (pages first) unless the live one (None: nothing published) has the same body."""
    if live is not None and manifest.hash == live.hash:
        return
    encoded = encode_manifest(manifest)
    if store.manifest_version() != result.version:
        raise StaleManifestError(f"the manifest moved past version {result.version} while publishing")
    page_versions = [store.put(page_name(store.prefix, i), page) for i, page in enumerate(encoded.pages)]
    result.version = store.put(
        manifest_name(store.prefix), encoded.manifest_text(store.prefix, page_versions)
    )
    result.published = True


def _count(result: PublishResult, store: SnapshotWriter, reads0: int, writes0: int) -> None:
    result.ssm_reads = store.reads - reads0
    result.ssm_writes = store.writes - writes0


def specs_at(store: SnapshotReader, version: int | None = None) -> tuple[PublishedSet, list[ModelSpec]]:
    """The exact specs a manifest version referenced, in display order (for rollback)."""
    published = store.load_manifest(version)
    if published is None:
        raise LookupError("no model set has been published yet")
    specs = [store.load_spec(e.parameter, e.version, e.hash, e.name) for e in published.manifest.models]
    return published, specs


def prune(store: SnapshotWriter) -> list[str]:
    """Delete model parameters no longer referenced by the live manifest (explicit, never automatic)."""
    published = store.load_manifest()
    keep = {f"{store.prefix}/{e.parameter}" for e in published.manifest.models} if published else set()
    doomed = [n for n in store.names_under(f"{store.prefix}/models") if n not in keep]
    for name in doomed:
        store.delete(name)
    return doomed
