"""A spool directory shared by several web processes (an EFS volume across tasks): each process spools to
its own file; the votes of a process that is gone (killed, or stopped while the table was unreachable) are
adopted by a live one and stored once; a live process's spool is never touched."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stores.testing import InMemoryVotesStore
from stores.votes import SpoolDirectory, VoteRecorder
from tests.unit.test_vote_recorder import vote

ROOT = Path(__file__).resolve().parents[2]


def recorder(store: InMemoryVotesStore, directory: Path, **kwargs: float) -> VoteRecorder:
    return VoteRecorder(
        store,
        directory / "unused.jsonl",
        retry_initial=0.01,
        retry_max=0.05,
        shared=SpoolDirectory(directory),
        **kwargs,
    ).start()


def test_each_process_has_its_own_spool_and_a_stopped_ones_votes_are_adopted(tmp_path: Path) -> None:
    down = InMemoryVotesStore()
    down.available = False
    first = recorder(down, tmp_path)
    for n in range(3):
        assert first.record(vote(n))
    store = InMemoryVotesStore()
    second = recorder(store, tmp_path)
    assert first.spool != second.spool
    assert first.spool.parent == second.spool.parent == tmp_path
    assert second.adopt() == 0  # the first is alive: its spool is its own
    assert store.items == {}
    first.close(timeout=0.1)  # stopped with its votes unstored: they stay, for a live process
    assert len(first.spool.read_text().splitlines()) == 3
    assert second.adopt() == 3
    assert second.flush(10)
    assert sorted(store.items) == ["v0", "v1", "v2"]
    assert not first.spool.exists()
    assert second.adopt() == 0  # adopted once
    second.close()
    assert list(tmp_path.iterdir()) == []  # a clean stop with nothing waiting leaves nothing behind


def test_the_votes_of_a_killed_process_are_adopted_by_a_live_one(tmp_path: Path) -> None:
    """A web process killed (SIGKILL: no clean stop) while the table was unreachable: a live process
    notices within its adoption interval and stores every vote."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from stores.votes import SpoolDirectory, UnconfiguredVotesStore, VoteRecorder\n"
        "from tests.unit.test_vote_recorder import vote\n"
        "d = Path(sys.argv[1])\n"
        "r = VoteRecorder(UnconfiguredVotesStore('down'), d / 'x', retry_initial=0.01, shared=SpoolDirectory(d))\n"
        "r.start()\n"
        "for n in range(5):\n"
        "    r.record(vote(n))\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    store = InMemoryVotesStore()
    live = recorder(store, tmp_path, adopt_every=0.05)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    doomed = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert doomed.stdout is not None
        for line in doomed.stdout:  # its logs (the table is down) come first
            if line.rstrip().endswith("ready"):
                break
        time.sleep(0.3)
        assert store.items == {}  # alive: left alone
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
        deadline = time.monotonic() + 20
        while len(store.items) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(store.items) == [f"v{n}" for n in range(5)]
    finally:
        doomed.kill()
        doomed.wait(10)
        if doomed.stdout is not None:
            doomed.stdout.close()
        live.close()
    assert list(tmp_path.iterdir()) == []


def test_a_claim_is_never_seen_unlocked_by_an_adopter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process's lock file appears under its adoptable name only once it is locked: an adopter looking
    in between (two EFS round trips) found it unlocked, took it for a dead process's and removed it."""
    import stores.votes

    adopter = SpoolDirectory(tmp_path)
    seen: list[Path] = []
    real_flock = fcntl.flock

    def flock_with_an_adopter_looking(fd: int, op: int) -> None:
        seen.extend(adopter.orphans())  # another process's sweep, between create and lock
        real_flock(fd, op)

    monkeypatch.setattr(stores.votes.fcntl, "flock", flock_with_an_adopter_looking)
    claimer = SpoolDirectory(tmp_path)
    spool = claimer.claim()
    monkeypatch.undo()
    assert seen == []
    assert (tmp_path / f"votes-{claimer.id}.lock").exists()
    assert list(adopter.orphans()) == []  # locked: alive
    assert spool.name == f"votes-{claimer.id}.jsonl"
    claimer.release(spool_empty=True)


def test_orphans_are_adopted_while_the_table_is_down(tmp_path: Path) -> None:
    """During a votes-table outage the writer sits in its retry wait: a spool left meanwhile by a process
    that went is still adopted on schedule (it used to wait until the writer was idle for a whole
    interval, which an outage or a steady stream of votes never allows)."""
    down = InMemoryVotesStore()
    down.available = False
    live = VoteRecorder(
        down,
        tmp_path / "x",
        retry_initial=1.0,
        retry_max=1.0,
        shared=SpoolDirectory(tmp_path),
        adopt_every=0.05,
    ).start()
    live.record(vote(0))  # the writer now retries this one
    (tmp_path / "votes-gone.lock").touch()
    (tmp_path / "votes-gone.jsonl").write_text(json.dumps(vote(7).as_json()) + "\n")
    deadline = time.monotonic() + 10
    while (tmp_path / "votes-gone.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (tmp_path / "votes-gone.jsonl").exists()
    assert [json.loads(line)["vote_id"] for line in live.spool.read_text().splitlines()] == ["v0", "v7"]
    down.available = True
    assert live.flush(10)
    live.close()
    assert sorted(down.items) == ["v0", "v7"]


def test_a_spool_that_cannot_be_adopted_now_is_kept(tmp_path: Path) -> None:
    """When the adopter's own spool is full the orphan stays where it is, whole, for a later look."""
    down = InMemoryVotesStore()
    down.available = False
    gone = recorder(down, tmp_path)
    for n in range(3):
        gone.record(vote(n))
    gone.close(timeout=0.1)
    kept = gone.spool.read_text()
    store = InMemoryVotesStore()
    store.available = False
    full = VoteRecorder(store, tmp_path / "x", max_spool_bytes=10, shared=SpoolDirectory(tmp_path)).start()
    assert full.adopt() == 0
    assert gone.spool.read_text() == kept
    full.close(timeout=0.1)


def test_an_orphan_already_stored_counts_once(tmp_path: Path) -> None:
    """An adopter that crashed after copying an orphan's votes, before removing it, leaves them in two
    spools: both are replayed, each vote is stored once."""
    store = InMemoryVotesStore()
    for name in ("a", "b"):
        (tmp_path / f"votes-{name}.lock").touch()
        (tmp_path / f"votes-{name}.jsonl").write_text(
            "".join(json.dumps(vote(n).as_json()) + "\n" for n in range(4))
        )
    live = recorder(store, tmp_path)
    assert live.flush(10)
    live.close()
    assert sorted(store.items) == [f"v{n}" for n in range(4)]
    assert list(tmp_path.iterdir()) == []
