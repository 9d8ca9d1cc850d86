"""One sync for a registry of 10, 100 and 200 models when one model changes: time and SSM calls.

Runs the real handler against moto in-process, all sizes side by side in one run. SSM writes must
scale with what changed (one model parameter + the manifest, plus its pages once it is paged), not
with the registry size. Times are moto's, so compare them with each other, not with AWS latency.
"""

from __future__ import annotations

import json
import os
import time
from importlib import resources

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"

import boto3
from moto import mock_aws

from sync.handler import SyncHandler
from sync.settings import SyncSettings

ITEM = json.loads(resources.files("sagemaker_fastchat.examples").joinpath("tgi.json").read_text())


def put(ddb: object, name: str, endpoint: str = "demo-tgi") -> None:
    item = {**ITEM, "model_name": name, "endpoint_name": endpoint}
    ddb.put_item(  # type: ignore[attr-defined]
        TableName="t", Item={k: {"S": v if isinstance(v, str) else json.dumps(v)} for k, v in item.items()}
    )


def run(size: int) -> tuple[float, int, int, float]:
    with mock_aws():
        ddb = boto3.client("dynamodb")
        ddb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "model_name", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "model_name", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        names = [f"model-{i:03d}" for i in range(size)]
        for name in names:
            put(ddb, name)
        ddb.put_item(
            TableName="t", Item={"model_name": {"S": "all-models"}, "model_names": {"S": ",".join(names)}}
        )
        handler = SyncHandler.from_clients(
            ddb, boto3.client("ssm"), SyncSettings(table_name="t", ssm_prefix="/bench")
        )
        start = time.perf_counter()
        handler.sync()
        first = time.perf_counter() - start
        put(ddb, names[size // 2], "demo-tgi-changed")
        reads0, writes0 = handler.store.reads, handler.store.writes
        start = time.perf_counter()
        result = handler.sync()
        elapsed = time.perf_counter() - start
        assert result is not None
        assert result.changed == [names[size // 2]]
        return elapsed, handler.store.reads - reads0, handler.store.writes - writes0, first


def main() -> None:
    print("models  first publish ms  one-change sync ms  SSM reads  SSM writes")
    for size in (10, 100, 200):
        elapsed, reads, writes, first = run(size)
        print(f"{size:6}  {first * 1e3:16.1f}  {elapsed * 1e3:18.1f}  {reads:9}  {writes:10}")


if __name__ == "__main__":
    main()
