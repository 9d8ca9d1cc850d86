"""The local stack's saved state (sagemaker_fastchat/local_state.py) against moto: what is dumped comes
back identical in a fresh moto, SSM version numbers included, and the folder is guarded."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws

from sagemaker_fastchat import local_state
from sagemaker_fastchat.cli import main
from sagemaker_fastchat.local_state import SsmHistories, StateError, StateKeeper
from tests.helpers import free_port

REGION = "us-east-1"


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def make_tables(ddb: Any) -> None:
    ddb.create_table(
        TableName="registry",
        KeySchema=[{"AttributeName": "model_name", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "model_name", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    # A votes-like table: composite key, an index, TTL, binary and number attributes.
    ddb.create_table(
        TableName="votes",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "ts", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "ts", "AttributeType": "N"},
            {"AttributeName": "model", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-model",
                "KeySchema": [{"AttributeName": "model", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    ddb.update_time_to_live(
        TableName="votes", TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"}
    )
    ddb.put_item(
        TableName="registry",
        Item={"model_name": {"S": "Llama 2 (70B)"}, "endpoint_req_config": {"M": {"a": {"L": [{"N": "1"}]}}}},
    )
    for i in range(30):  # more than one BatchWriteItem
        ddb.put_item(
            TableName="votes",
            Item={
                "pk": {"S": f"vote-{i}"},
                "ts": {"N": str(i)},
                "model": {"S": "m"},
                "blob": {"B": bytes([i, 255])},
                "tags": {"BS": [b"\x00", b"\x01"]},
            },
        )


def make_parameters(ssm: Any) -> None:
    for i in range(3):
        ssm.put_parameter(Name="/p/model-set", Value=f"manifest {i}", Type="String", Overwrite=True)
    ssm.put_parameter(
        Name="/p/models/a", Value="small", Type="String", Tier="Standard", Description="model a"
    )
    ssm.put_parameter(Name="/p/models/a", Value="x" * 5000, Type="String", Tier="Advanced", Overwrite=True)


def table_state(ddb: Any) -> dict[str, Any]:
    state = {}
    for name in ddb.list_tables()["TableNames"]:
        described = ddb.describe_table(TableName=name)["Table"]
        items = ddb.scan(TableName=name)["Items"]
        state[name] = {
            "definition": local_state.table_definition(described),
            "ttl": ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"],
            "items": sorted(items, key=repr),
        }
    return state


def history(ssm: Any, name: str) -> list[tuple[int, str, str]]:
    pages = ssm.get_paginator("get_parameter_history").paginate(Name=name)
    return [(p["Version"], p["Value"], p["Tier"]) for page in pages for p in page["Parameters"]]


def test_dynamodb_and_ssm_come_back_identical(tmp_path: Path) -> None:
    """Tables (keys, indexes, stream, TTL, every item, binary values) and every parameter version come
    back the same in a fresh moto, with the same version numbers."""
    with mock_aws():
        make_tables(client("dynamodb"))
        make_parameters(client("ssm"))
        before = table_state(client("dynamodb"))
        before_ssm = {n: history(client("ssm"), n) for n in ("/p/model-set", "/p/models/a")}
        keeper = StateKeeper(tmp_path, client)
        assert keeper.save(["dynamodb", "ssm"]) == ["dynamodb", "ssm"]
    with mock_aws():
        counts = StateKeeper(tmp_path, client).restore()
        assert counts == {"items": 31, "parameters": 2}
        assert table_state(client("dynamodb")) == before
        assert client("dynamodb").describe_table(TableName="registry")["Table"]["LatestStreamArn"]
        assert {n: history(client("ssm"), n) for n in before_ssm} == before_ssm
        assert client("ssm").get_parameter(Name="/p/model-set:2")["Parameter"]["Value"] == "manifest 1"


def test_ssm_version_numbers_survive_past_the_100_version_limit(tmp_path: Path) -> None:
    """SSM keeps the last 100 versions; restored, the kept ones have their numbers and the next write
    continues the count."""
    with mock_aws():
        ssm = client("ssm")
        for i in range(1, 106):
            ssm.put_parameter(Name="/p/model-set", Value=f"v{i}", Type="String", Overwrite=True)
        local_state.write_atomic(tmp_path / local_state.SSM_FILE, SsmHistories().dump(ssm))
    with mock_aws():
        ssm = client("ssm")
        StateKeeper(tmp_path, client).restore()
        kept = history(ssm, "/p/model-set")
        assert [v for v, _, _ in kept] == list(range(6, 106))
        assert all(value == f"v{v}" for v, value, _ in kept)
        assert ssm.put_parameter(Name="/p/model-set", Value="next", Overwrite=True)["Version"] == 106


def test_only_writes_mark_a_service_changed() -> None:
    """Reads (Get/Describe/List/Scan/Query/BatchGet) and DynamoDB Streams never trigger a save."""
    assert local_state.changed_service("DynamoDB_20120810.PutItem") == "dynamodb"
    assert local_state.changed_service("DynamoDB_20120810.TransactWriteItems") == "dynamodb"
    assert local_state.changed_service("AmazonSSM.PutParameter") == "ssm"
    assert local_state.changed_service("AmazonSSM.DeleteParameter") == "ssm"
    for read in ("DynamoDB_20120810.Scan", "DynamoDB_20120810.BatchGetItem", "AmazonSSM.GetParameterHistory"):
        assert local_state.changed_service(read) is None
    assert local_state.changed_service("DynamoDBStreams_20120810.GetRecords") is None
    assert local_state.changed_service(None) is None
    assert local_state.changed_service("garbage") is None


def test_keeper_saves_what_changed_and_reports_readiness(tmp_path: Path) -> None:
    """Through the WSGI wrapper: not ready until restored; a write marks its service, a read does not;
    a save writes that service's file only."""
    keeper = StateKeeper(tmp_path, client)
    calls: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        calls.append(environ["HTTP_X_AMZ_TARGET"])
        start_response("200 OK", [])
        return [b"{}"]

    wrapped = keeper.wsgi(app)
    statuses: list[str] = []
    ready = {"PATH_INFO": local_state.READY_PATH}
    wrapped(ready, lambda status, headers: statuses.append(status))
    with mock_aws():
        keeper.restore()  # nothing saved yet
        wrapped(ready, lambda status, headers: statuses.append(status))
        wrapped({"HTTP_X_AMZ_TARGET": "AmazonSSM.GetParameter"}, lambda *a: None)
        assert keeper.save() == []
        client("ssm").put_parameter(Name="/x", Value="1", Type="String")
        wrapped({"HTTP_X_AMZ_TARGET": "AmazonSSM.PutParameter"}, lambda *a: None)
        assert keeper.save() == ["ssm"]
    assert statuses == ["503 Service Unavailable", "200 OK"]
    assert calls == ["AmazonSSM.GetParameter", "AmazonSSM.PutParameter"]
    assert not (tmp_path / local_state.DYNAMODB_FILE).exists()
    saved = json.loads((tmp_path / local_state.SSM_FILE).read_text())
    assert saved["parameters"][0]["name"] == "/x"
    assert list(tmp_path.glob(".*.tmp")) == []


def test_keeper_run_saves_once_more_when_stopped(tmp_path: Path) -> None:
    """The shutdown save: what changed since the last round is written before the server stops."""
    with mock_aws():
        keeper = StateKeeper(tmp_path, client, interval=3600)
        keeper.restore()
        client("ssm").put_parameter(Name="/y", Value="1", Type="String")
        keeper.mark("ssm")
        stop = threading.Event()
        stop.set()
        keeper.run(stop)
    assert (tmp_path / local_state.SSM_FILE).exists()


def test_one_stack_per_folder_and_unreadable_snapshots(tmp_path: Path) -> None:
    """A second stack on the same folder is refused; an unreadable snapshot names the way out; --fresh
    removes only the snapshots."""
    with (
        local_state.locked(tmp_path),
        pytest.raises(StateError, match="another running local stack"),
        local_state.locked(tmp_path),
    ):
        pass
    with local_state.locked(tmp_path):  # released again
        pass
    (tmp_path / local_state.SSM_FILE).write_text("{half")
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(StateError, match="--fresh"):
        StateKeeper(tmp_path, client).restore()
    assert local_state.discard(tmp_path) == [local_state.SSM_FILE]
    assert (tmp_path / "mine.txt").exists()


def test_moto_refuses_a_folder_another_stack_uses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`sagemaker-fastchat moto --state-dir` on a locked folder: one clear line, exit 2, nothing served."""
    with local_state.locked(tmp_path):
        code = main(["moto", "--port", str(free_port()), "--state-dir", str(tmp_path)])
    assert code == 2
    assert "is used by another running local stack" in capsys.readouterr().err


def test_default_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """$XDG_STATE_HOME/sagemaker-fastchat, else ~/.local/state/sagemaker-fastchat (--state-dir and
    $SFC_STATE_DIR come first: tests/unit/test_options.py)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert local_state.default_state_dir(None) == tmp_path / ".local" / "state" / "sagemaker-fastchat"
    assert local_state.default_state_dir(str(tmp_path / "xdg")) == tmp_path / "xdg" / "sagemaker-fastchat"


def start_moto(port: int, state: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sagemaker_fastchat.cli",
            "moto",
            "--port",
            str(port),
            "--state-dir",
            str(state),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{local_state.READY_PATH}", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        assert process.poll() is None, "moto exited"
        assert time.monotonic() < deadline, "moto did not come up"
        time.sleep(0.1)


def test_a_killed_moto_loses_nothing_already_saved(tmp_path: Path) -> None:
    """Saved without waiting for a shutdown: after SIGKILL, a new `moto` on the folder has the write."""
    port = free_port()
    remote = {
        "endpoint_url": f"http://127.0.0.1:{port}",
        "region_name": REGION,
        "aws_access_key_id": "local",
        "aws_secret_access_key": "local",
    }
    process = start_moto(port, tmp_path)
    try:
        boto3.client("ssm", **remote).put_parameter(Name="/kept", Value="1", Type="String")
        boto3.client("ssm", **remote).put_parameter(Name="/kept", Value="2", Overwrite=True)
        saved = tmp_path / local_state.SSM_FILE
        deadline = time.monotonic() + 30
        while not (saved.exists() and '"Value": "2"' in saved.read_text()):
            assert time.monotonic() < deadline, "the write was never saved"
            time.sleep(0.1)
    finally:
        process.kill()
        process.wait(10)
    process = start_moto(port, tmp_path)
    try:
        kept = boto3.client("ssm", **remote).get_parameter(Name="/kept")["Parameter"]
        assert (kept["Value"], kept["Version"]) == ("2", 2)
    finally:
        process.terminate()
        process.wait(10)
