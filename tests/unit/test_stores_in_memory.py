"""The sync, a worker's SSM source and the CLI's registry operations on the in-memory stores (no AWS, no
moto): what stores/testing.py is for. tests/integration/test_store_contracts.py proves the fakes faithful."""

from __future__ import annotations

from typing import Any

import pytest

from contract.dynamo import to_typed_item
from runtime.sources import SsmSource
from sagemaker_fastchat.registry_ops import Registry, put_model, remove_model
from stores.registry import ConcurrentChangeError
from stores.ssm import SnapshotReader, SnapshotWriter
from stores.testing import InMemoryParameters, InMemoryRegistry
from sync.handler import SyncHandler
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
