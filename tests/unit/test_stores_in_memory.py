"""The sync, a worker's SSM source and the CLI's registry operations on the in-memory stores (no AWS, no
moto): what stores/testing.py is for. tests/integration/test_store_contracts.py proves the fakes faithful."""

from __future__ import annotations

from typing import Any

import pytest

from contract.dynamo import to_typed_item, untype_item
from rollout.start import Plan, start_changes
from rollout.state import parse_state
from runtime.sources import SsmSource
from sagemaker_fastchat.registry_ops import Registry, put_model, remove_model
from stores.registry import ConcurrentChangeError
from stores.ssm import SnapshotReader, SnapshotWriter
from stores.testing import InMemoryParameters, InMemoryRegistry, MemoryOutcomeStore
from sync.handler import SyncHandler
from sync.rollout_step import RolloutRunner, listed, update_item, write_state
from sync.settings import SyncSettings
from tests.helpers import example_item

PREFIX = "/p"


def model(name: str) -> dict[str, Any]:
    return to_typed_item({**example_item("tgi"), "model_name": name})


def listing(names: str) -> dict[str, Any]:
    return to_typed_item({"model_name": "all-models", "model_names": names})


def sync_on(registry: InMemoryRegistry, parameters: InMemoryParameters) -> SyncHandler:
    return SyncHandler(
        registry, SnapshotWriter(parameters, PREFIX), SyncSettings(table_name="t", ssm_prefix=PREFIX)
    )


def test_the_sync_scans_once_and_a_worker_reads_what_it_published() -> None:
    registry = InMemoryRegistry([model("a"), model("b"), listing("b,a")])
    parameters = InMemoryParameters()
    result = sync_on(registry, parameters).sync()
    assert result is not None
    assert result.published
    assert registry.calls["scan"] == 1  # one scan per attempt, nothing else read from the table
    assert sum(registry.calls.values()) == 1
    snapshot = SsmSource(SnapshotReader(parameters, PREFIX)).load()
    assert snapshot.version == result.version
    assert [s.name for s in snapshot.specs] == ["b", "a"]


def test_a_failing_scan_fails_the_batch_and_writes_nothing() -> None:
    registry = InMemoryRegistry([model("a"), listing("a")])
    parameters = InMemoryParameters()
    registry.fail("scan")
    record = {"dynamodb": {"SequenceNumber": "7"}}
    assert sync_on(registry, parameters)({"Records": [record]}) == {
        "batchItemFailures": [{"itemIdentifier": "7"}]
    }
    assert parameters.calls["put"] == 0
    registry.heal()
    assert sync_on(registry, parameters)({"Records": [record]}) == {"batchItemFailures": []}


def test_the_active_list_is_retried_on_a_concurrent_change() -> None:
    """all-models is written on condition it did not change since read; a lost race reads and tries again."""
    store = InMemoryRegistry()
    registry = Registry(store)
    store.fail("put_if", nth=1, error=ConcurrentChangeError("model_names changed since it was read"))
    assert put_model(registry, {**example_item("tgi"), "model_name": "a"}, active=True) == ["a"]
    assert store.calls["put_if"] == 2
    assert registry.active()[0] == ["a"]
    store.fail("put_if", error=ConcurrentChangeError("model_names changed since it was read"))
    with pytest.raises(ConcurrentChangeError, match="run the command again"):
        remove_model(registry, "a", force=True)
    assert registry.get("a") is not None  # nothing deleted while the list could not be updated


def test_the_rollout_runner_on_the_fake_registry_applies_a_step_once() -> None:
    """The step runner and the rollout commands take the RegistryStore port: a write made from a stale
    read of `rollout` (another runner got there first) fails and writes nothing."""
    registry = InMemoryRegistry([model("a"), listing("a")])
    typed = registry.get("a")
    assert typed is not None
    changes, state = start_changes(untype_item(typed), "cand", None, Plan((5.0, 100.0), 60, 0.02, 1.5, 1), 0)
    update_item(registry, "a", None, changes)
    assert listed(registry) == ["a"]
    started = registry.get("a")
    assert started is not None
    assert parse_state(untype_item(started)["rollout"]) == state
    write_state(registry, "a", started, state.with_event(1, "paused", status="paused"), 1)
    with pytest.raises(ConcurrentChangeError):  # `started` is stale now
        write_state(registry, "a", started, state.with_event(2, "aborted", status="aborted"), 2)
    published = SnapshotReader(InMemoryParameters(), "/p")
    (result,) = RolloutRunner(registry, MemoryOutcomeStore(), published, clock=lambda: 3).tick()
    assert (result.model, result.action) == ("a", "nothing")  # paused: the runner leaves it
