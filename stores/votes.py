"""The votes store: a port (`VotesStore`), its DynamoDB adapter, and the spooling recorder the web UI uses.

Two tables. The votes table holds one item per vote, keyed by `vote_id`, written with a condition
(`attribute_not_exists`) so a retried or replayed vote is recorded once. The counts table holds the
leaderboard's sufficient statistics: one item per (bucket, pair) with a counter per vote type, moved
with atomic ADDs in the same transaction as the vote's put, so counters and votes never disagree and a
leaderboard reads a few hundred counter items instead of every vote.

Per-voter cap: a rated vote also adds 1 to its voter's counter for the day (an item in the counts
table), in the same transaction, on condition that the counter is below the cap. When it is not, the
vote is written again without any counter, flagged `over_cap`: kept (and exported) but never rated. A
voter's counter is needed only on its day: it carries `expires` (the counts table's TTL attribute, epoch
seconds, VOTER_COUNTER_DAYS after its day began) so DynamoDB drops it; the pair counters never expire.

`VoteRecorder` keeps the web UI off the store's path: a vote is appended to a local spool file (fsync'd)
and handed to a background thread; when the store cannot be reached the thread retries in order, and a
restarted process replays the spool first. The spool is emptied once every vote in it is stored.

`SpoolDirectory` is for a spool shared by several processes (an EFS volume mounted by every task): each
process spools to a file of its own and holds a lock on it while it lives; the votes of a process that is
gone (a replaced task) are adopted by any live one, so no task's end loses the votes it was holding.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from arena.votes import (
    ALL_TIME,
    Counter,
    Vote,
    bucket,
    counters,
    days_since,
    over_cap,
    pair_totals,
    parse_vote,
    voter_counter,
)
from contract.dynamo import untype_item
from stores.tables import ensure_table

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        TransactWriteItemTypeDef,
        UniversalAttributeValueTypeDef,
        UpdateTypeDef,
    )

log = structlog.get_logger("votes")

DEFAULT_VOTES_TABLE = "sagemaker-fastchat-votes"
DEFAULT_COUNTS_TABLE = "sagemaker-fastchat-vote-counts"
MAX_SPOOL_BYTES = 256 * 1024 * 1024
MAX_WINDOW_DAYS = 3660  # a --since window reads one counts partition per day

CountRows = Iterator[tuple[str, dict[str, int]]]


class StoreUnavailable(Exception):
    """The store cannot be reached right now (network, throttling, a missing table): retry later."""


class VotesStore(Protocol):
    def put(self, vote: Vote) -> bool:
        """Record a vote and move its counters, once per vote id; False when the id was already recorded.
        A rated vote whose voter already has the day's cap of rated votes is recorded flagged `over_cap`,
        moving no rating counter. Raises StoreUnavailable when the store cannot be reached."""
        ...

    def votes(self, since: date | None = None) -> Iterator[Vote]:
        """Every vote cast on or after `since` (all when None), oldest first."""
        ...

    def counter_rows(self, bucket: str) -> CountRows:
        """The (pair, {vote type: count}) items of one counts bucket."""
        ...


def read_totals(
    store: VotesStore, tab: str, view: str, since: date | None = None, today: date | None = None
) -> dict[tuple[str, ...], dict[str, int]]:
    """Counters of one tab and view summed per pair: the all-time bucket, or one bucket per day since."""
    if since is None:
        return pair_totals(store.counter_rows(bucket(tab, view, ALL_TIME)))
    today = today or datetime.now(UTC).date()
    if (today - since).days > MAX_WINDOW_DAYS:
        raise ValueError(f"--since: at most {MAX_WINDOW_DAYS} days back")
    rows = (row for day in days_since(since, today) for row in store.counter_rows(bucket(tab, view, day)))
    return pair_totals(rows)


class UnconfiguredVotesStore:
    """Stands in while the store cannot even be set up (e.g. no AWS region): every call is unavailable,
    so votes wait in the recorder's spool until a process with a working configuration replays them."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def put(self, vote: Vote) -> bool:
        raise StoreUnavailable(self.reason)

    def votes(self, since: date | None = None) -> Iterator[Vote]:
        raise StoreUnavailable(self.reason)

    def counter_rows(self, bucket: str) -> CountRows:
        raise StoreUnavailable(self.reason)


# --- DynamoDB -----------------------------------------------------------------------------------------
_serializer = TypeSerializer()
TTL_ATTRIBUTE = "expires"  # the counts table's TTL attribute: only voter counters carry it
VOTER_COUNTER_DAYS = 3  # a voter's day counter outlives its UTC day (and clock skew) before it expires
# Throttling, server faults, a table not created yet, a transaction that collided with another: retry.
_TRANSIENT = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "ResourceNotFoundException",
    "TransactionConflictException",
    "TransactionInProgressException",
}


def _typed(doc: Mapping[str, Any]) -> dict[str, Any]:
    plain = json.loads(json.dumps(doc), parse_float=Decimal)  # DynamoDB numbers are Decimals
    return {k: _serializer.serialize(v) for k, v in plain.items()}


class DynamoVotesStore:
    def __init__(
        self,
        dynamodb: DynamoDBClient,
        votes_table: str = DEFAULT_VOTES_TABLE,
        counts_table: str = DEFAULT_COUNTS_TABLE,
        max_per_voter: int = 0,  # rated votes per voter key per UTC day; 0: no cap
    ) -> None:
        self.dynamodb = dynamodb
        self.votes_table = votes_table
        self.counts_table = counts_table
        self.max_per_voter = max_per_voter

    def put(self, vote: Vote) -> bool:
        cap = voter_counter(vote) if self.max_per_voter > 0 else None
        outcome = self._write(vote, cap)
        if outcome == "over_cap":
            log.info("vote_over_cap", vote_id=vote.vote_id, voter=vote.voter, cap=self.max_per_voter)
            outcome = self._write(over_cap(vote), None)
        return outcome == "stored"

    def _write(self, vote: Vote, cap: Counter | None) -> str:
        """One transaction: the vote, its voter's place under the cap (when capped), its counters.
        Returns "stored", "duplicate" (the id is recorded) or "over_cap" (nothing written)."""
        item = _typed({**vote.as_json(), "day": vote.day(), "recorded": datetime.now(UTC).timestamp()})
        actions: list[TransactWriteItemTypeDef] = [
            {
                "Put": {
                    "TableName": self.votes_table,
                    "Item": item,
                    "ConditionExpression": "attribute_not_exists(vote_id)",
                }
            }
        ]
        if cap is not None:
            actions.append(self._add_one(cap, below=self.max_per_voter, expires=_voter_expiry(vote)))
        actions.extend(self._add_one(counter) for counter in counters(vote))
        try:
            self.dynamodb.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            reasons = [str(r.get("Code")) for r in exc.response.get("CancellationReasons", [])]
            if code == "TransactionCanceledException" and not reasons:
                reasons = _reasons_from_message(error.get("Message", ""))
            if code == "TransactionCanceledException" and reasons[:1] == ["ConditionalCheckFailed"]:
                return "duplicate"  # a replayed vote: its id is recorded already
            if (
                code == "TransactionCanceledException"
                and cap is not None
                and reasons[1:2] == ["ConditionalCheckFailed"]
            ):
                return "over_cap"
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in _TRANSIENT or code == "TransactionCanceledException" or status >= 500:
                raise StoreUnavailable(f"{code}: {error.get('Message', '')}") from exc
            raise
        except BotoCoreError as exc:  # connection refused, timeouts, closed connections
            raise StoreUnavailable(str(exc)) from exc
        return "stored"

    def _add_one(
        self, counter: Counter, below: int | None = None, expires: int | None = None
    ) -> TransactWriteItemTypeDef:
        """A transaction action adding 1 to a counter (on condition it is below `below`, when given; the
        item expiring at `expires`, epoch seconds, when given)."""
        values: dict[str, UniversalAttributeValueTypeDef] = {":one": {"N": "1"}}
        names = {"#t": counter.type}
        update: UpdateTypeDef = {
            "TableName": self.counts_table,
            "Key": {"bucket": {"S": counter.bucket}, "pair": {"S": counter.pair}},
            "UpdateExpression": "ADD #t :one",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if expires is not None:
            update["UpdateExpression"] += " SET #x = :x"
            names["#x"] = TTL_ATTRIBUTE
            values[":x"] = {"N": str(expires)}
        if below is not None:
            update["ConditionExpression"] = "attribute_not_exists(#t) OR #t < :cap"
            values[":cap"] = {"N": str(below)}
        return {"Update": update}

    def votes(self, since: date | None = None) -> Iterator[Vote]:
        kwargs: dict[str, Any] = {"TableName": self.votes_table}
        if since is not None:
            start = datetime(since.year, since.month, since.day, tzinfo=UTC).timestamp()
            kwargs["FilterExpression"] = "tstamp >= :since"
            kwargs["ExpressionAttributeValues"] = {":since": {"N": repr(start)}}
        found: list[Vote] = []
        for page in self.dynamodb.get_paginator("scan").paginate(**kwargs):
            for item in page.get("Items", []):
                vote = parse_vote(untype_item(item))
                if isinstance(vote, Vote):
                    found.append(vote)
                else:
                    log.warning("vote_unreadable", problem=vote)
        yield from sorted(found, key=lambda v: (v.tstamp, v.vote_id))

    def counter_rows(self, bucket: str) -> CountRows:
        paginator = self.dynamodb.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.counts_table,
            KeyConditionExpression="#b = :b",
            ExpressionAttributeNames={"#b": "bucket"},
            ExpressionAttributeValues={":b": {"S": bucket}},
        )
        try:
            items = [item for page in pages for item in page.get("Items", [])]
        except (BotoCoreError, ClientError) as exc:  # the leaderboard says so instead of failing
            raise StoreUnavailable(str(exc)) from exc
        for item in items:
            counts = {k: int(v["N"]) for k, v in item.items() if "N" in v and k != TTL_ATTRIBUTE}
            yield item["pair"]["S"], counts


def _voter_expiry(vote: Vote) -> int:
    day = date.fromisoformat(vote.day())
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) + VOTER_COUNTER_DAYS * 86_400


def _reasons_from_message(message: str) -> list[str]:
    """moto (and older botocore) put the reasons only in the message: "... [ConditionalCheckFailed, None]"."""
    if "[" not in message:
        return []
    inner = message[message.rfind("[") + 1 : message.rfind("]")]
    return [part.strip() for part in inner.split(",")]


def create_tables(dynamodb: DynamoDBClient, votes_table: str, counts_table: str) -> None:
    """Create the two tables when missing (the local stack; CloudFormation creates them on AWS)."""
    ensure_table(dynamodb, votes_table, "vote_id")
    ensure_table(dynamodb, counts_table, "bucket", "pair", ttl_attribute=TTL_ATTRIBUTE)


# --- The recorder: spool, then store, off the caller's path -----------------------------------------------
def read_spool(spool: Path) -> Iterator[Vote]:
    """The votes of a spool file, in order (a torn last line, from a process stopped mid-write, skipped)."""
    try:
        f = spool.open(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    with f:
        for line in f:
            try:
                vote = parse_vote(json.loads(line))
            except ValueError:
                vote = "spool: a torn line (the process stopped mid-write)"
            if isinstance(vote, Vote):
                yield vote
            else:
                log.warning("spool_line_skipped", problem=vote, spool=str(spool))


class SpoolDirectory:
    """A spool directory several processes share (README "Arena": an EFS volume across tasks).

    A process claims `votes-<id>.jsonl` and holds an exclusive flock on `votes-<id>.lock` while it lives
    (the kernel, or EFS's lease, drops it when the process dies, however it dies). A lock file nobody
    holds marks a spool whose process is gone: `orphans` hands each such spool over while holding its lock
    (so one adopter takes it), and removes it once its votes are in the adopter's own spool. A crash in
    between leaves the votes in both spools: they are stored once (votes are put on condition of a new id).
    """

    PREFIX = "votes-"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.id = uuid.uuid4().hex
        self._lock_fd: int | None = None

    @property
    def spool(self) -> Path:
        return self.directory / f"{self.PREFIX}{self.id}.jsonl"

    def _lock_path(self, spool_id: str) -> Path:
        return self.directory / f"{self.PREFIX}{spool_id}.lock"

    def claim(self) -> Path:
        """Lock this process's own spool (held until `release` or the process ends); its path."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._lock_fd is None:
            # Created and locked under a name adopters do not look at, then renamed: an adopter can never
            # see this lock file unlocked (and take it for a dead process's).
            claiming = self.directory / f".claim-{self.id}.lock"
            fd = os.open(claiming, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh random id: never held elsewhere
            os.rename(claiming, self._lock_path(self.id))
            self._lock_fd = fd
        return self.spool

    def orphans(self) -> Iterator[Path]:
        """Each spool whose process is gone, locked while the caller takes its votes; removed after."""
        for lock in sorted(self.directory.glob(f"{self.PREFIX}*.lock")):
            spool_id = lock.name[len(self.PREFIX) : -len(".lock")]
            if spool_id == self.id:
                continue
            try:
                fd = os.open(lock, os.O_RDWR)
            except OSError:
                continue  # adopted and removed by another process just now
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if os.fstat(fd).st_ino != os.stat(lock).st_ino:
                    raise FileNotFoundError(lock)  # adopted and removed (maybe replaced) meanwhile
            except OSError:
                os.close(fd)
                continue  # its process is alive, or another adopter took it
            try:
                spool = self.directory / f"{self.PREFIX}{spool_id}.jsonl"
                yield spool
                spool.unlink(missing_ok=True)
                lock.unlink(missing_ok=True)
            finally:
                os.close(fd)

    def release(self, spool_empty: bool) -> None:
        """On a clean stop: remove this process's files when nothing waits in them, then unlock."""
        if self._lock_fd is None:
            return
        if spool_empty:
            self.spool.unlink(missing_ok=True)
            self._lock_path(self.id).unlink(missing_ok=True)
        os.close(self._lock_fd)
        self._lock_fd = None


class VoteRecorder:
    """Records votes without blocking the caller beyond one fsync'd append, losing none."""

    def __init__(
        self,
        store: VotesStore,
        spool: Path,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        max_spool_bytes: int = MAX_SPOOL_BYTES,
        *,
        shared: SpoolDirectory | None = None,  # spool in a shared directory instead (`spool` unused)
        adopt_every: float = 60.0,  # seconds between looks for spools left by processes that are gone
    ) -> None:
        self.store = store
        self.shared = shared
        self.adopt_every = adopt_every
        self._next_adoption = time.monotonic() + adopt_every
        self._closing = False
        spool = shared.claim() if shared is not None else spool
        self.spool = spool
        self.rejected = spool.with_name(spool.name + ".rejected")
        self.retry_initial, self.retry_max = retry_initial, retry_max
        self.max_spool_bytes = max_spool_bytes
        self._queue: queue.Queue[Vote | None] = queue.Queue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> VoteRecorder:
        """Replay what an earlier process spooled (in order), then start the writer thread. Raises
        OSError when the spool cannot be written: every vote would be lost, so the caller must not run."""
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        with self.spool.open("a", encoding="utf-8"):
            pass  # created (or found) writable now, not at the first vote
        with self._lock:
            for vote in read_spool(self.spool):
                self._pending += 1
                self._queue.put(vote)
        if self._pending:
            log.info("votes_replaying", count=self._pending, spool=str(self.spool))
        self.adopt()
        self._thread = threading.Thread(target=self._run, name="vote-recorder", daemon=True)
        self._thread.start()
        return self

    def record(self, vote: Vote) -> bool:
        """Spool the vote (durable on return) and queue it for the store; False if the spool is full."""
        line = json.dumps(vote.as_json(), ensure_ascii=False) + "\n"
        with self._lock:
            size = self.spool.stat().st_size if self.spool.exists() else 0
            if size + len(line) > self.max_spool_bytes:
                log.error("vote_dropped_spool_full", vote_id=vote.vote_id, spool=str(self.spool))
                return False
            with self.spool.open("a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            self._pending += 1
            self._queue.put(vote)  # under the lock: the queue's order is the spool's order
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every recorded vote is in the store; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    @property
    def pending(self) -> int:
        return self._pending

    def adopt(self) -> int:
        """Take over the votes of shared-directory spools whose processes are gone (into this process's
        own spool, durably, before theirs is removed); how many. Never raises: a spool that cannot be
        read now is left for a later look."""
        if self.shared is None or self._closing:
            return 0
        self._next_adoption = time.monotonic() + self.adopt_every
        adopted = 0
        try:
            for orphan in self.shared.orphans():
                votes = list(read_spool(orphan))
                for vote in votes:
                    if not self.record(vote):
                        raise OSError(f"{self.spool} is full")  # keep the orphan: adopt it later
                adopted += len(votes)
                log.info("votes_adopted", count=len(votes), spool=str(orphan))
        except OSError as exc:
            log.error("votes_adoption_failed", error=str(exc), directory=str(self.shared.directory))
        return adopted

    def close(self, timeout: float = 5.0) -> None:
        """Stop the writer (after a last try within `timeout`); unstored votes stay in the spool (in a
        shared directory, for a live process to adopt)."""
        self.flush(timeout)
        self._closing = True
        self._stop.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
        if self.shared is not None and (self._thread is None or not self._thread.is_alive()):
            # (a writer still busy keeps the files; the lock goes with the process)
            with self._lock:
                self.shared.release(spool_empty=self._pending == 0)

    def _until_adoption(self) -> float | None:
        """Seconds until the next look for orphaned spools (None: no shared directory)."""
        if self.shared is None:
            return None
        return max(0.0, self._next_adoption - time.monotonic())

    def _adopt_when_due(self) -> None:
        due = self._until_adoption()
        if due is not None and due <= 0:
            self.adopt()

    def _wait(self, seconds: float) -> bool:
        """Sleep between retries (True: stopped), still looking for orphans when that falls due: during an
        outage the writer sits here, and the votes of a task that went meanwhile must not wait for it."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            due = self._until_adoption()
            if self._stop.wait(left if due is None else min(left, max(due, 0.01))):
                return True
            self._adopt_when_due()
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                vote = self._queue.get(timeout=self._until_adoption())
            except queue.Empty:
                self._adopt_when_due()
                continue
            if vote is None:
                return
            delay = self.retry_initial
            while True:
                try:
                    new = self.store.put(vote)
                    log.info("vote_stored" if new else "vote_duplicate", vote_id=vote.vote_id, type=vote.type)
                    break
                except StoreUnavailable as exc:
                    log.warning("votes_store_unavailable", error=str(exc), retry_in=delay)
                    if self._wait(delay):
                        return
                    delay = min(delay * 2, self.retry_max)
                except Exception as exc:  # a vote the store refuses for good must not block the rest
                    log.error("vote_rejected", vote_id=vote.vote_id, error=str(exc))
                    with self.rejected.open("a", encoding="utf-8") as f:
                        f.write(json.dumps(vote.as_json(), ensure_ascii=False) + "\n")
                    break
            with self._idle:
                self._pending -= 1
                if self._pending == 0:
                    with self.spool.open("w") as f:  # every spooled vote is stored: start afresh
                        os.fsync(f.fileno())
                    self._idle.notify_all()
            self._adopt_when_due()  # a steady stream of votes must not keep orphans waiting
