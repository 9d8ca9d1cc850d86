"""The sync's optional endpoint check on moto: a new or changed spec whose endpoint is not ready is
rejected in the manifest (its last good spec stays published), and `models list` shows why."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from contract.endpoints import FakeEndpointChecker
from sagemaker_fastchat import registry_ops
from stores.registry import DynamoRegistry
from sync.settings import SyncSettings
from tests.integration.test_sync import TABLE, Registry


@pytest.fixture
def reg() -> Iterator[tuple[Registry, FakeEndpointChecker]]:
    with mock_aws():
        registry = Registry()
        fake = FakeEndpointChecker({"demo-tgi": "InService", "demo-tgi-2": "Creating"})
        registry.handler.checker = fake
        yield registry, fake


def test_not_ready_change_is_rejected_and_listed(reg: tuple[Registry, FakeEndpointChecker]) -> None:
    """A change to an endpoint still Creating keeps the live spec; a missing endpoint is rejected; the
    reasons reach the manifest and `models list`; published specs are not described again."""
    r, fake = reg
    r.put_model("a")
    r.set_active("a")
    r.deliver()
    live = r.manifest().manifest.entry("a")
    assert fake.calls == ["demo-tgi"]
    r.put_model("a", endpoint_name="demo-tgi-2")
    r.put_model("b", endpoint_name="gone")
    r.set_active("a,b")
    r.deliver()
    published = r.manifest()
    assert published.manifest.entry("a") == live
    assert published.manifest.names == ("a",)
    assert published.manifest.rejected["a"] == "a: endpoint demo-tgi-2 is Creating, not InService"
    assert "endpoint gone does not exist" in published.manifest.rejected["b"]
    assert "demo-tgi" not in fake.calls[1:]  # unchanged specs are not described again
    rows = {
        row["model"]: row
        for row in registry_ops.status_rows(registry_ops.Registry(DynamoRegistry(r.ddb, TABLE)), published)
    }
    assert rows["a"]["status"] == "rejected (last good spec live)"
    assert rows["a"]["reason"] == "a: endpoint demo-tgi-2 is Creating, not InService"
    assert rows["b"]["status"] == "rejected"


@pytest.mark.parametrize("error", ["!AccessDeniedException", "!ThrottlingException"])
def test_a_failed_check_publishes_anyway(reg: tuple[Registry, FakeEndpointChecker], error: str) -> None:
    """A sync role without DescribeEndpoint, or a throttled check, is no verdict on the endpoint: the sync
    publishes as it would without the check (the workers check again)."""
    r, fake = reg
    fake.statuses["demo-tgi"] = error
    r.put_model("a")
    r.set_active("a")
    r.deliver()
    assert r.manifest().manifest.names == ("a",)


def test_check_is_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """SYNC_ENDPOINT_CHECK turns the sync's check on; it is off by default (the Lambda's role lacks it)."""
    monkeypatch.delenv("SYNC_ENDPOINT_CHECK", raising=False)
    assert SyncSettings().endpoint_check is False
    monkeypatch.setenv("SYNC_ENDPOINT_CHECK", "true")
    assert SyncSettings().endpoint_check is True
