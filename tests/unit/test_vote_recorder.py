"""The vote recorder: spooled before stored, replayed in order after an outage or a restart, once per id."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from arena.votes import ModelRef, Vote
from stores.testing import InMemoryVotesStore
from stores.votes import VoteRecorder, VotesStore, read_totals


def vote(n: int, vote_type: str = "leftvote") -> Vote:
    return Vote(
        vote_id=f"v{n}",
        type=vote_type,
        tab="battle",
        models=(ModelRef("a", 3, "ep-a", "h1", "raw"), ModelRef("b", 3, "ep-b", "h2", "raw")),
        tstamp=1_764_500_000.0 + n,
    )


def test_votes_reach_the_store_and_the_spool_empties(tmp_path: Path) -> None:
    """Recorded votes are stored, counted, and the spool is emptied once all are in."""
    store = InMemoryVotesStore()
    recorder = VoteRecorder(store, tmp_path / "spool.jsonl").start()
    for n in range(5):
        assert recorder.record(vote(n))
    assert recorder.flush(10)
    recorder.close()
    assert sorted(store.items) == [f"v{n}" for n in range(5)]
    assert read_totals(store, "battle", "name") == {("a", "b"): {"leftvote": 5}}
    assert (tmp_path / "spool.jsonl").read_text() == ""


def test_an_outage_loses_nothing_and_keeps_the_order(tmp_path: Path) -> None:
    """While the store is down, votes wait in the spool; when it is back, all are stored, in order."""
    store = InMemoryVotesStore()
    store.available = False
    recorder = VoteRecorder(store, tmp_path / "spool.jsonl", retry_initial=0.01, retry_max=0.05).start()
    for n in range(10):
        recorder.record(vote(n))
    assert not recorder.flush(0.3)
    assert store.items == {}
    assert len((tmp_path / "spool.jsonl").read_text().splitlines()) == 10
    store.available = True
    assert recorder.flush(10)
    recorder.close()
    assert list(store.items) == [f"v{n}" for n in range(10)]


def test_a_restart_replays_the_spool_and_duplicates_count_once(tmp_path: Path) -> None:
    """A process that stopped with votes unstored (and a torn last line) leaves them to the next one,
    which stores each once, even those the first process had already stored."""
    spool = tmp_path / "spool.jsonl"
    store = InMemoryVotesStore()
    first = VoteRecorder(store, spool).start()
    first.record(vote(1))
    assert first.flush(10)
    store.available = False
    for n in (2, 3):
        first.record(vote(n))
    first.close(timeout=0.1)  # "killed": votes 2 and 3 only in the spool
    # A line the first process had already stored, replayed (its truncation never happened), then a torn line.
    with spool.open("a") as f:
        f.write(
            '{"vote_id": "v1", "type": "leftvote", "tab": "battle", "models": [{"name": "a"}, {"name": "b"}], "tstamp": 1764500001.0}\n'
        )
        f.write('{"vote_id": "v4", "ty')
    store.available = True
    second = VoteRecorder(store, spool).start()
    assert second.flush(10)
    second.close()
    assert sorted(store.items) == ["v1", "v2", "v3"]
    assert read_totals(store, "battle", "name") == {("a", "b"): {"leftvote": 3}}


def test_a_retried_vote_id_counts_once(tmp_path: Path) -> None:
    """The same vote recorded twice (a client retry) is one vote."""
    store = InMemoryVotesStore()
    recorder = VoteRecorder(store, tmp_path / "spool.jsonl").start()
    recorder.record(vote(7))
    recorder.record(vote(7))
    assert recorder.flush(10)
    recorder.close()
    assert store.puts == 2
    assert read_totals(store, "battle", "name") == {("a", "b"): {"leftvote": 1}}


def test_a_full_spool_refuses_instead_of_filling_the_disk(tmp_path: Path) -> None:
    """Past the size limit, record() refuses (and logs) rather than growing the spool without bound."""
    store = InMemoryVotesStore()
    store.available = False
    recorder = VoteRecorder(store, tmp_path / "spool.jsonl", retry_initial=0.01, max_spool_bytes=600).start()
    results = [recorder.record(vote(n)) for n in range(5)]
    recorder.close(timeout=0.1)
    assert results[0]
    assert not results[-1]


def test_recording_does_not_wait_for_the_store(tmp_path: Path) -> None:
    """record() returns while the store is unreachable (the UI never waits on DynamoDB)."""
    store = InMemoryVotesStore()
    store.available = False
    recorder = VoteRecorder(store, tmp_path / "spool.jsonl", retry_initial=3600).start()
    assert recorder.record(vote(1))  # returns although the store stays unreachable
    assert recorder.record(vote(2))
    recorder.close(timeout=0.1)
    assert recorder.pending == 2


def test_an_unconfigured_store_keeps_votes_in_the_spool(tmp_path: Path) -> None:
    """Without a usable store configuration (e.g. no AWS region) the UI still records: votes wait in the
    spool for a process that can store them."""
    from stores.votes import UnconfiguredVotesStore

    spool = tmp_path / "spool.jsonl"
    first = VoteRecorder(UnconfiguredVotesStore("no region"), spool, retry_initial=0.01).start()
    first.record(vote(1))
    first.close(timeout=0.1)
    store = InMemoryVotesStore()
    second = VoteRecorder(store, spool).start()
    assert second.flush(10)
    second.close()
    assert list(store.items) == ["v1"]


DAY = 86_400.0


def by(voter: str, n: int, vote_type: str = "leftvote", day: int = 0, **extra: bool) -> Vote:
    return replace(vote(n, vote_type), voter=voter, tstamp=vote(n).tstamp + day * DAY, **extra)


def check_voter_cap(store: VotesStore) -> None:
    """The per-voter cap's contract, for any store made with a cap of 2 rated votes per voter per day:
    a vote over it is kept, flagged, and moves no rating; unrated votes, imports (no voter), another
    voter, the next day and a replayed vote id take no place under it."""
    k1 = [by("k1", 1), by("k1", 2), by("k1", 3, "rightvote"), by("k1", 4, "rightvote", revealed=True)]
    for v in k1:
        assert store.put(v)
    assert store.put(by("k1", 5, day=1))  # a new UTC day
    assert store.put(by("", 6))  # an import: no voter, no cap
    assert store.put(by("k2", 7, "tievote"))
    assert not store.put(by("k1", 3, "rightvote"))  # replayed: a duplicate, still over the cap
    assert not store.put(by("k2", 7, "tievote"))  # replayed: takes no second place
    assert store.put(by("k2", 8, "tievote"))
    assert store.put(by("k2", 9, "tievote"))  # k2's third: over
    flagged = {v.vote_id for v in store.votes() if v.over_cap}
    assert flagged == {"v3", "v9"}
    assert read_totals(store, "battle", "name") == {("a", "b"): {"leftvote": 4, "tievote": 2}}


def test_votes_over_a_voters_daily_cap_are_kept_flagged_and_not_rated() -> None:
    check_voter_cap(InMemoryVotesStore(max_per_voter=2))


def test_no_cap_by_default_and_the_recorder_passes_votes_through_the_cap(tmp_path: Path) -> None:
    """Without a cap one voter's votes all count; with one, votes recorded through the spool are capped."""
    free = InMemoryVotesStore()
    for n in range(5):
        free.put(by("k", n))
    assert not any(v.over_cap for v in free.votes())
    capped = InMemoryVotesStore(max_per_voter=3)
    recorder = VoteRecorder(capped, tmp_path / "spool.jsonl").start()
    for n in range(5):
        recorder.record(by("k", n))
    assert recorder.flush(10)
    recorder.close()
    assert [v.over_cap for v in capped.votes()] == [False, False, False, True, True]
    assert read_totals(capped, "battle", "name") == {("a", "b"): {"leftvote": 3}}
