"""The outcome-counts store (stores/rollout_metrics.py): one contract, run against the in-memory fake and
the DynamoDB adapter on moto, so the fake the step-runner tests use behaves as the table does."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from stores.rollout_metrics import (
    TTL_SECONDS,
    DynamoOutcomeStore,
    OutcomeCounts,
    OutcomeStore,
    OutcomesUnavailable,
    create_table,
    merge,
)
from stores.testing import MemoryOutcomeStore

M0 = 29_430_000  # an epoch minute (2025-12-16)


@pytest.fixture(params=["memory", "dynamodb"])
def store(request: pytest.FixtureRequest) -> Iterator[OutcomeStore]:
    if request.param == "memory":
        yield MemoryOutcomeStore()
        return
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "metrics")
        create_table(client, "metrics")  # idempotent
        yield DynamoOutcomeStore("metrics", client)


def test_adds_accumulate_per_model_variant_and_minute(store: OutcomeStore) -> None:
    """Two workers adding to the same (model, variant, minute) sum up; other keys stay apart."""
    store.add([OutcomeCounts("m", "ep-a", M0, 10, 1, {3: 9}), OutcomeCounts("m", "ep-b", M0, 2, 0, {5: 2})])
    store.add([OutcomeCounts("m", "ep-a", M0, 5, 2, {3: 1, 4: 2})])
    store.add([OutcomeCounts("m", "ep-a", M0 + 1, 1, 0, {}), OutcomeCounts("other", "ep-a", M0, 7, 7, {})])
    got = store.read("m", M0)
    assert got == [
        OutcomeCounts("m", "ep-a", M0, 15, 3, {3: 10, 4: 2}),
        OutcomeCounts("m", "ep-b", M0, 2, 0, {5: 2}),
        OutcomeCounts("m", "ep-a", M0 + 1, 1, 0, {}),
    ]
    assert store.read("m", M0 + 1) == [OutcomeCounts("m", "ep-a", M0 + 1, 1, 0, {})]
    assert store.read("m", M0 + 2) == []
    assert store.read("nobody", 0) == []
    totals = merge(got)
    assert (totals["ep-a"].requests, totals["ep-a"].errors, dict(totals["ep-a"].ttft_hist)) == (
        16,
        3,
        {3: 10, 4: 2},
    )


def test_junk_counts_are_not_stored(store: OutcomeStore) -> None:
    """Empty counts write nothing; negative counters and out-of-range buckets never move a total down."""
    store.add([OutcomeCounts("m", "ep-a", M0, 0, 0, {})])
    assert store.read("m", 0) == []
    store.add([OutcomeCounts("m", "ep-a", M0, 3, -4, {-1: 5, 10_000: 1, 2: 3})])
    assert store.read("m", 0) == [OutcomeCounts("m", "ep-a", M0, 3, 0, {2: 3})]


def test_items_carry_a_ttl() -> None:
    """Each item expires TTL_SECONDS after its minute (the table's TTL attribute is `expires`)."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "metrics")
        DynamoOutcomeStore("metrics", client).add([OutcomeCounts("m", "ep-a", M0, 1, 0, {})])
        (item,) = client.scan(TableName="metrics")["Items"]
        assert int(item["expires"]["N"]) == (M0 + 1) * 60 + TTL_SECONDS
        ttl = client.describe_time_to_live(TableName="metrics")["TimeToLiveDescription"]
        assert ttl["AttributeName"] == "expires"


def test_an_unreachable_store_says_how_much_was_applied() -> None:
    """A failure mid-batch reports how many leading counts were added, so a retry adds only the rest."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "metrics")
        store = DynamoOutcomeStore("metrics", client)
        store.add([OutcomeCounts("m", "ep-a", M0, 1, 0, {})])
        client.delete_table(TableName="metrics")
        with pytest.raises(OutcomesUnavailable) as caught:
            store.add([OutcomeCounts("m", "ep-a", M0, 0, 0, {}), OutcomeCounts("m", "ep-a", M0, 1, 0, {})])
        assert caught.value.applied == 1
        with pytest.raises(OutcomesUnavailable):
            store.read("m", 0)
    memory = MemoryOutcomeStore()
    memory.available = False
    with pytest.raises(OutcomesUnavailable):
        memory.read("m", 0)


def test_any_failure_mid_batch_says_how_much_was_applied() -> None:
    """Not only botocore's errors: whatever fails an update (here a hook raising on the second call) is
    reported with the count applied before it."""
    calls: list[int] = []

    def second_call_fails(**_: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("connection reset in a proxy")

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "metrics")
        client.meta.events.register("before-call.dynamodb.UpdateItem", second_call_fails)
        store = DynamoOutcomeStore("metrics", client)
        batch = [OutcomeCounts("m", v, M0, 1, 0, {}) for v in ("ep-a", "ep-b", "ep-c")]
        with pytest.raises(OutcomesUnavailable) as caught:
            store.add(batch)
        assert caught.value.applied == 1
        store.add(batch[caught.value.applied :])
        assert {c.variant: c.requests for c in store.read("m", 0)} == {"ep-a": 1, "ep-b": 1, "ep-c": 1}
