"""One contract per store port: the same assertions against the boto3 adapter on moto and the in-memory
fake in `stores.testing`, so the fakes the other tests use are proven faithful. The endpoint checker's
adapter also runs against the SageMaker stand-in, whose DescribeEndpoint reports any status on demand
(moto creates every endpoint InService). The votes and outcome-count stores have theirs in
test_votes_store.py and test_rollout_metrics.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from contract.endpoints import SERVING_STATUSES, EndpointChecker, EndpointVerdict, FakeEndpointChecker
from contract.snapshot import SnapshotError
from stores.endpoints import Boto3EndpointChecker
from stores.registry import ConcurrentChangeError, DynamoRegistry, RegistryStore, create_table
from stores.ssm import MAX_VERSIONS, ParameterStore, SnapshotWriter, SsmParameters
from stores.testing import InMemoryParameters, InMemoryRegistry

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

TABLE = "contract-registry"


@pytest.fixture(params=["moto", "fake"])
def parameters(request: pytest.FixtureRequest) -> Iterator[ParameterStore]:
    if request.param == "fake":
        yield InMemoryParameters()
        return
    with mock_aws():
        yield SsmParameters(boto3.client("ssm", region_name="us-east-1"))


@pytest.fixture(params=["moto", "fake"])
def registry(request: pytest.FixtureRequest) -> Iterator[RegistryStore]:
    if request.param == "fake":
        yield InMemoryRegistry()
        return
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, TABLE)
        yield DynamoRegistry(client, TABLE)


@dataclass
class Endpoints:
    """An endpoint checker and how to give one of its endpoints a status."""

    checker: EndpointChecker
    add: Callable[[str, str], None]  # (endpoint, EndpointStatus)


def _moto_endpoint(client: SageMakerClient, name: str, status: str) -> None:
    assert status == "InService", "moto creates every endpoint InService"
    role = "arn:aws:iam::123456789012:role/contract"
    client.create_model(ModelName=name, ExecutionRoleArn=role, PrimaryContainer={"Image": "contract"})
    client.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "v",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.g4dn.xlarge",
            }
        ],
    )
    client.create_endpoint(EndpointName=name, EndpointConfigName=name)


@pytest.fixture(params=["fake", "moto", "standin"])
def endpoints(request: pytest.FixtureRequest) -> Iterator[Endpoints]:
    if request.param == "fake":
        fake = FakeEndpointChecker()
        yield Endpoints(fake, fake.statuses.__setitem__)
        return
    if request.param == "moto":
        with mock_aws():
            client = boto3.client("sagemaker", region_name="us-east-1")
            yield Endpoints(Boto3EndpointChecker(client), partial(_moto_endpoint, client))
        return
    url: str = request.getfixturevalue("standin_url")  # the session's stand-in: faults cleared after
    added: list[str] = []

    def add(name: str, status: str) -> None:
        httpx.post(f"{url}/_standin/faults/{name}", json={"status": status}).raise_for_status()
        added.append(name)

    yield Endpoints(
        Boto3EndpointChecker(boto3.client("sagemaker", endpoint_url=url, region_name="us-east-1")), add
    )
    for name in added:
        httpx.delete(f"{url}/_standin/faults/{name}").raise_for_status()


# --- ParameterStore -------------------------------------------------------------------------------------
def test_parameters_count_versions_and_keep_every_one(parameters: ParameterStore) -> None:
    assert parameters.get("/p/a") is None
    assert parameters.put("/p/a", "one") == 1
    assert parameters.put("/p/a", "two") == 2
    assert parameters.get("/p/a") == ("two", 2)
    assert parameters.get("/p/a", 1) == ("one", 1)
    assert parameters.get("/p/a", 3) is None
    assert parameters.get("/p/b", 1) is None


def test_parameters_keep_the_newest_100_versions(parameters: ParameterStore) -> None:
    for i in range(MAX_VERSIONS + 1):
        assert parameters.put("/p/a", str(i)) == i + 1
    assert parameters.get("/p/a", 1) is None
    assert parameters.get("/p/a", 2) == ("1", 2)
    assert parameters.get("/p/a") == (str(MAX_VERSIONS), MAX_VERSIONS + 1)


def test_parameters_list_recursively_under_a_path(parameters: ParameterStore) -> None:
    for name in ("/p/models/a", "/p/models/deep/b", "/p/model-set", "/other/x", "/pp/y"):
        parameters.put(name, "v")
    assert sorted(parameters.names_under("/p/models")) == ["/p/models/a", "/p/models/deep/b"]
    assert sorted(parameters.names_under("/p")) == ["/p/model-set", "/p/models/a", "/p/models/deep/b"]
    assert parameters.names_under("/none") == []


def test_parameters_delete_every_version(parameters: ParameterStore) -> None:
    parameters.put("/p/a", "one")
    parameters.put("/p/a", "two")
    parameters.delete("/p/a")
    assert parameters.get("/p/a") is None
    assert parameters.get("/p/a", 1) is None
    assert parameters.names_under("/p") == []
    with pytest.raises(ClientError) as raised:
        parameters.delete("/p/a")
    assert raised.value.response["Error"]["Code"] == "ParameterNotFound"


def test_the_writer_refuses_values_over_8kb_and_counts(parameters: ParameterStore) -> None:
    """The writer enforces SSM's 8 KB limit that moto does not, whatever the port."""
    writer = SnapshotWriter(parameters, "/p")
    with pytest.raises(SnapshotError, match="8192"):
        writer.put("/p/a", "x" * 9000)
    assert writer.put("/p/a", "x" * 8192) == 1
    assert writer.get("/p/a") == ("x" * 8192, 1)
    assert (writer.reads, writer.writes) == (1, 1)


# --- RegistryStore --------------------------------------------------------------------------------------
def _item(name: str, **attributes: str) -> dict[str, dict[str, str]]:
    return {"model_name": {"S": name}, **{k: {"S": v} for k, v in attributes.items()}}


def test_registry_round_trips_typed_items(registry: RegistryStore) -> None:
    assert registry.scan() == []
    assert registry.get("a") is None
    stored = {**_item("a", endpoint_name="e"), "n": {"N": "3"}, "on": {"BOOL": True}}
    registry.put(stored)
    registry.put(_item("b"))
    assert registry.get("a") == stored
    registry.put(_item("a", endpoint_name="f"))
    assert registry.get("a") == _item("a", endpoint_name="f")
    assert sorted(registry.scan(), key=lambda i: i["model_name"]["S"]) == [
        _item("a", endpoint_name="f"),
        _item("b"),
    ]


def test_registry_returns_copies(registry: RegistryStore) -> None:
    registry.put(_item("a", endpoint_name="e"))
    got = registry.get("a")
    assert got is not None
    got["endpoint_name"]["S"] = "changed"
    registry.scan()[0]["model_name"]["S"] = "changed"
    assert registry.get("a") == _item("a", endpoint_name="e")


def test_registry_deletes(registry: RegistryStore) -> None:
    registry.put(_item("a"))
    registry.delete("a")
    assert registry.get("a") is None
    registry.delete("a")  # nothing there: not an error
    assert registry.scan() == []


def test_registry_refuses_an_item_without_its_key(registry: RegistryStore) -> None:
    with pytest.raises(ClientError) as raised:
        registry.put({"endpoint_name": {"S": "e"}})
    assert raised.value.response["Error"]["Code"] == "ValidationException"


def test_registry_conditional_put(registry: RegistryStore) -> None:
    """put_if writes only while the attribute holds what was read (absent: None), else writes nothing."""
    registry.put_if(_item("all-models", model_names="a"), "model_names", None)
    with pytest.raises(ConcurrentChangeError):
        registry.put_if(_item("all-models", model_names="b"), "model_names", None)
    with pytest.raises(ConcurrentChangeError):
        registry.put_if(_item("all-models", model_names="b"), "model_names", "stale")
    assert registry.get("all-models") == _item("all-models", model_names="a")
    registry.put_if(_item("all-models", model_names="a,b"), "model_names", "a")
    assert registry.get("all-models") == _item("all-models", model_names="a,b")
    registry.put(_item("all-models"))  # the item without the attribute counts as absent
    registry.put_if(_item("all-models", model_names="c"), "model_names", None)
    assert registry.get("all-models") == _item("all-models", model_names="c")


def test_registry_conditional_update(registry: RegistryStore) -> None:
    """update_if sets and removes attributes of an existing item while the attribute holds the typed value
    read (absent: None); otherwise, or with no such item, it writes nothing (a rollout step's write)."""
    with pytest.raises(ConcurrentChangeError):
        registry.update_if("a", {"rollout": {"S": "r1"}}, "rollout", None)  # no item: nothing created
    assert registry.get("a") is None
    registry.put(_item("a", endpoint_name="e", variants="[]"))
    registry.update_if("a", {"rollout": {"S": "r1"}, "weight": {"N": "5"}}, "rollout", None)
    assert registry.get("a") == _item("a", endpoint_name="e", variants="[]", rollout="r1") | {
        "weight": {"N": "5"}
    }
    for stale in (None, {"S": "r0"}):
        with pytest.raises(ConcurrentChangeError):
            registry.update_if("a", {"rollout": {"S": "r2"}}, "rollout", stale)
    registry.update_if(
        "a", {"rollout": {"S": "r2"}, "variants": None, "weight": None}, "rollout", {"S": "r1"}
    )
    assert registry.get("a") == _item("a", endpoint_name="e", rollout="r2")


# --- The fakes' faults ---------------------------------------------------------------------------------
def test_a_fake_fails_the_nth_call_from_now_then_every_call_until_healed() -> None:
    fake = InMemoryParameters()
    fake.put("/p/a", "one")
    fake.fail("put", nth=2)
    assert fake.put("/p/a", "two") == 2
    with pytest.raises(ClientError) as raised:
        fake.put("/p/a", "three")
    assert raised.value.response["Error"]["Code"] == "InternalServerError"
    assert fake.put("/p/a", "three") == 3  # only the second one failed; nothing was written by it
    assert fake.get("/p/a") == ("three", 3)
    fake.fail("get", error=TimeoutError("read timed out"))
    with pytest.raises(TimeoutError):
        fake.get("/p/a")
    with pytest.raises(TimeoutError):
        fake.get("/p/a")
    fake.heal()
    assert fake.get("/p/a") == ("three", 3)
    assert fake.calls["put"] == 4
    assert fake.calls["get"] == 4
    with pytest.raises(ValueError, match="has no call 'put_parameter'"):
        fake.fail("put_parameter")


def test_a_fake_registry_fails_on_demand() -> None:
    fake = InMemoryRegistry([_item("a")])
    fake.fail("scan")
    with pytest.raises(ClientError):
        fake.scan()
    fake.heal()
    assert fake.scan() == [_item("a")]
    assert fake.calls["scan"] == 2


# --- EndpointChecker ------------------------------------------------------------------------------------
# Names the stand-in knows as demo endpoints (neither "creating" nor "failed" in them: the status is set).
SERVING = "demo-tgi-contract-serving"


def test_endpoints_pass_a_serving_endpoint(endpoints: Endpoints) -> None:
    endpoints.add(SERVING, "InService")
    assert endpoints.checker.check(SERVING) == EndpointVerdict(True, status="InService")


def test_endpoints_refuse_a_missing_endpoint_for_good(endpoints: Endpoints) -> None:
    """AWS's ValidationException "Could not find endpoint" is read as a verdict, not a failed check."""
    verdict = endpoints.checker.check("no-such-endpoint")
    assert (verdict.ok, verdict.status, verdict.transient) == (False, None, False)
    assert verdict.reason is not None
    assert verdict.reason.startswith("endpoint no-such-endpoint does not exist (Could not find endpoint ")


@pytest.mark.parametrize("endpoints", ["fake", "standin"], indirect=True)
@pytest.mark.parametrize(
    "status", ["InService", "Updating", "Creating", "Failed", "OutOfService", "Deleting"]
)
def test_endpoints_read_each_status(endpoints: Endpoints, status: str) -> None:
    """The statuses that still serve pass; every other one refuses, naming it."""
    name = f"demo-tgi-contract-{status.lower()}"
    endpoints.add(name, status)
    verdict = endpoints.checker.check(name)
    assert (verdict.ok, verdict.status, verdict.transient) == (status in SERVING_STATUSES, status, False)
    if not verdict.ok:
        assert verdict.reason is not None
        assert verdict.reason.startswith(f"endpoint {name} is {status}, not InService")
