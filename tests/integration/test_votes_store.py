"""The DynamoDB votes store against moto: the contract (shared with the in-memory fake), and an outage
(moto's server stopped) losing nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws
from moto.server import ThreadedMotoServer

from arena.votes import ModelRef, Vote
from stores.testing import InMemoryVotesStore
from stores.votes import DynamoVotesStore, VoteRecorder, VotesStore, create_tables, read_totals
from tests.helpers import free_port
from tests.unit.test_vote_recorder import check_voter_cap

A = ModelRef("alpha", 2, "ep-alpha", "h-a", "raw")
B = ModelRef("bravo", 2, "ep-bravo", "h-b", "raw")
DAY = 86_400.0
T0 = 1_764_460_800.0  # 2025-11-30 00:00 UTC


def vote(n: int, vote_type: str = "leftvote", day: int = 0, **extra: Any) -> Vote:
    return Vote(f"v{n}", vote_type, "battle", (A, B), T0 + day * DAY + n, **extra)


@pytest.fixture(params=["moto", "fake"])
def store(request: pytest.FixtureRequest) -> Iterator[VotesStore]:
    """The contract's two sides: the DynamoDB adapter on moto and the in-memory fake (same assertions)."""
    if request.param == "fake":
        yield InMemoryVotesStore()
        return
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client, "votes", "counts")
        yield DynamoVotesStore(client, "votes", "counts")


def test_put_is_idempotent_and_moves_the_counters(store: VotesStore) -> None:
    """A vote is stored once per id (a repeat returns False) and its counters move once."""
    assert store.put(vote(1))
    assert not store.put(vote(1))
    assert store.put(vote(2, "tievote"))
    assert store.put(vote(3, "rightvote", revealed=True))  # stored, not counted
    assert read_totals(store, "battle", "name") == {("alpha", "bravo"): {"leftvote": 1, "tievote": 1}}
    assert read_totals(store, "battle", "version") == {
        ("alpha@h-a", "bravo@h-b"): {"leftvote": 1, "tievote": 1}
    }
    assert [v.vote_id for v in store.votes()] == ["v1", "v2", "v3"]
    assert next(store.votes()) == vote(1)


def test_time_window_reads_day_buckets(store: VotesStore) -> None:
    """--since sums the day buckets from that day on; votes() filters by cast time."""
    store.put(vote(1, day=0))
    store.put(vote(2, "rightvote", day=2))
    since = date(2025, 12, 2)
    assert read_totals(store, "battle", "name", since, today=date(2025, 12, 3)) == {
        ("alpha", "bravo"): {"rightvote": 1}
    }
    assert [v.vote_id for v in store.votes(since)] == ["v2"]


def test_a_moto_outage_loses_nothing(tmp_path: Path) -> None:
    """Votes recorded while DynamoDB is unreachable wait in the spool and land, once each, when it is back;
    a vote retried during the outage counts once."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{port}",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=2),
    )
    create_tables(client, "votes-outage", "counts-outage")
    store = DynamoVotesStore(client, "votes-outage", "counts-outage")
    recorder = VoteRecorder(store, tmp_path / "spool.jsonl", retry_initial=0.05, retry_max=0.2).start()
    try:
        recorder.record(vote(1))
        assert recorder.flush(30)
        server.stop()
        for n in (2, 3, 3, 4):
            recorder.record(vote(n))
        assert not recorder.flush(0.5)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        assert recorder.flush(60)
        # moto keeps its state in this process across the server's restart, like a table across an outage.
        assert [v.vote_id for v in store.votes()] == ["v1", "v2", "v3", "v4"]
        assert read_totals(store, "battle", "name") == {("alpha", "bravo"): {"leftvote": 4}}
    finally:
        recorder.close()
        server.stop()


RECORDING_PROCESS = """
import sys, boto3
from botocore.config import Config
from arena.votes import ModelRef, Vote
from stores.votes import DynamoVotesStore, VoteRecorder
client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=sys.argv[1],
                      config=Config(retries={"max_attempts": 1}))
recorder = VoteRecorder(DynamoVotesStore(client, "votes-kill", "counts-kill"), __import__("pathlib").Path(sys.argv[2])).start()
a, b = ModelRef("alpha", 1, "ep-a", "h-a"), ModelRef("bravo", 1, "ep-b", "h-b")
for n in range(400):
    recorder.record(Vote(f"k{n:03d}", "leftvote", "battle", (a, b), 1_764_460_800.0 + n))
    sys.stderr.write(f"{n}\\n"); sys.stderr.flush()  # stdout carries the recorder's log lines
import time; time.sleep(60)
"""


def test_a_web_process_killed_mid_write_loses_nothing(tmp_path: Path) -> None:
    """A process recording votes is killed (SIGKILL) while its writer is storing them: the next process
    replays its spool, and every vote it had recorded is stored exactly once."""
    import os
    import signal
    import subprocess
    import sys

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=url)
    create_tables(client, "votes-kill", "counts-kill")
    store = DynamoVotesStore(client, "votes-kill", "counts-kill")
    spool = tmp_path / "spool.jsonl"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
    child = subprocess.Popen(
        [sys.executable, "-c", RECORDING_PROCESS, url, str(spool)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stderr is not None
        recorded = -1
        for line in child.stderr:
            recorded = int(line)
            if recorded >= 300 and next(store.votes(), None) is not None:
                break  # some votes stored, others still only in the spool
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        stored_before = len(list(store.votes()))
        assert 0 < stored_before < 400
        recorder = VoteRecorder(store, spool).start()
        assert recorder.flush(120)
        recorder.close()
        ids = [v.vote_id for v in store.votes()]
        assert len(ids) == len(set(ids))
        assert set(ids) >= {f"k{n:03d}" for n in range(recorded + 1)}
        assert read_totals(store, "battle", "name") == {("alpha", "bravo"): {"leftvote": len(ids)}}
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        if child.stderr is not None:
            child.stderr.close()
        server.stop()


def test_counters_unreadable_is_unavailable() -> None:
    """A counts table that cannot be read (here: missing) is StoreUnavailable, which the tab reports."""
    from stores.votes import StoreUnavailable

    with mock_aws():
        store = DynamoVotesStore(boto3.client("dynamodb", region_name="us-east-1"), "none", "none")
        with pytest.raises(StoreUnavailable):
            read_totals(store, "battle", "name")


def test_a_counts_table_created_before_the_ttl_gets_it() -> None:
    """A local stack's counts table from an older version (no TTL) gets it when the tables are ensured."""
    from stores.tables import ensure_table

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        ensure_table(client, "counts", "bucket", "pair")
        before = client.describe_time_to_live(TableName="counts")["TimeToLiveDescription"]
        assert before["TimeToLiveStatus"] == "DISABLED"
        create_tables(client, "votes", "counts")
        create_tables(client, "votes", "counts")  # again: nothing to do
        ttl = client.describe_time_to_live(TableName="counts")["TimeToLiveDescription"]
        assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires")


def test_the_voter_cap_on_dynamodb() -> None:
    """The cap's contract holds on DynamoDB: the voter's counter moves in the vote's transaction, and a
    vote over the cap is written again, flagged, without counters."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client, "votes", "counts")
        store = DynamoVotesStore(client, "votes", "counts", max_per_voter=2)
        check_voter_cap(store)
        voters = dict(store.counter_rows("voters|day|2025-11-30"))
        assert voters == {"k1": {"votes": 2}, "k2": {"votes": 2}}
        # A voter's day counter expires by the table's TTL three days after its day began; the
        # leaderboard's pair counters never expire.
        ttl = client.describe_time_to_live(TableName="counts")["TimeToLiveDescription"]
        assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires")
        items = client.scan(TableName="counts")["Items"]
        expiring = [i for i in items if "expires" in i]
        assert {(i["bucket"]["S"], i["pair"]["S"]) for i in expiring} == {
            (i["bucket"]["S"], i["pair"]["S"]) for i in items if i["bucket"]["S"].startswith("voters|")
        }
        for i in expiring:
            day = datetime.fromisoformat(i["bucket"]["S"].rsplit("|", 1)[1]).replace(tzinfo=UTC)
            assert int(i["expires"]["N"]) == day.timestamp() + 3 * 86_400
