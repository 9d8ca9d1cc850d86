"""In-memory fakes of the stores, for unit tests (ours and yours): same semantics, no AWS."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from botocore.exceptions import ClientError

from arena.votes import Vote, counters, over_cap, voter_counter
from rollout.histogram import BUCKETS
from stores.registry import KEY, ConcurrentChangeError, Item
from stores.rollout_metrics import OutcomeCounts, OutcomesUnavailable, merge, slot
from stores.ssm import MAX_VERSIONS
from stores.votes import CountRows, StoreUnavailable


class InMemoryVotesStore:
    """A VotesStore in dicts. Set `available = False` to make every call raise StoreUnavailable."""

    def __init__(self, max_per_voter: int = 0) -> None:
        self.max_per_voter = max_per_voter  # rated votes per voter key per UTC day; 0: no cap
        self.items: dict[str, Vote] = {}
        self.counts: dict[str, dict[str, dict[str, int]]] = {}  # bucket -> pair -> type -> count
        self.available = True
        self.puts = 0

    def _check(self) -> None:
        if not self.available:
            raise StoreUnavailable("the in-memory store is switched off")

    def put(self, vote: Vote) -> bool:
        self._check()
        self.puts += 1
        if vote.vote_id in self.items:
            return False
        cap = voter_counter(vote) if self.max_per_voter > 0 else None
        if cap is not None:
            cell = self.counts.setdefault(cap.bucket, {}).setdefault(cap.pair, {})
            if cell.get(cap.type, 0) >= self.max_per_voter:
                vote = over_cap(vote)
            else:
                cell[cap.type] = cell.get(cap.type, 0) + 1
        self.items[vote.vote_id] = vote
        for c in counters(vote):
            cell = self.counts.setdefault(c.bucket, {}).setdefault(c.pair, {})
            cell[c.type] = cell.get(c.type, 0) + 1
        return True

    def votes(self, since: date | None = None) -> Iterator[Vote]:
        self._check()
        start = datetime(since.year, since.month, since.day, tzinfo=UTC).timestamp() if since else None
        found = [v for v in self.items.values() if start is None or v.tstamp >= start]
        yield from sorted(found, key=lambda v: (v.tstamp, v.vote_id))

    def counter_rows(self, bucket: str) -> CountRows:
        self._check()
        for pair, cell in self.counts.get(bucket, {}).items():
            yield pair, dict(cell)


# --- The SSM parameters and the registry table (stores.ssm, stores.registry) -----------------------------
class Faults:
    """Fault injection for the fakes below: `fail("put", nth=2)` makes the second put from now raise,
    `fail("put")` every put, until `heal()`. The default error is what boto3 raises for a server fault
    (a ClientError with code InternalServerError), so callers' retry paths see what they would on AWS.
    `calls` counts every call by kind, failed ones included."""

    CALLS: tuple[str, ...] = ()  # the kinds of call a fake has (its port's methods)

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._faults: dict[str, tuple[int | None, Exception | None]] = {}

    def fail(self, call: str, *, nth: int | None = None, error: Exception | None = None) -> None:
        if call not in self.CALLS:  # a typo would otherwise inject nothing and the test pass for nothing
            raise ValueError(f"{type(self).__name__} has no call {call!r}; it has {', '.join(self.CALLS)}")
        self._faults[call] = (None if nth is None else self.calls[call] + nth, error)

    def heal(self) -> None:
        self._faults.clear()

    def _enter(self, call: str) -> None:
        self.calls[call] += 1
        if call not in self._faults:
            return
        nth, error = self._faults[call]
        if nth is None or nth == self.calls[call]:
            raise error or _client_error("InternalServerError", call, "injected")


def _client_error(code: str, operation: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


class InMemoryParameters(Faults):
    """A ParameterStore in a dict, with SSM's versioning: versions count up from 1 per name, a deleted
    name starts again at 1, and only the newest 100 versions are kept."""

    CALLS = ("get", "put", "delete", "names_under")

    def __init__(self) -> None:
        super().__init__()
        self.versions: dict[str, dict[int, str]] = {}

    def get(self, name: str, version: int | None = None) -> tuple[str, int] | None:
        self._enter("get")
        held = self.versions.get(name)
        if not held:
            return None
        found = max(held) if version is None else version
        return (held[found], found) if found in held else None

    def put(self, name: str, value: str) -> int:
        self._enter("put")
        held = self.versions.setdefault(name, {})
        version = max(held, default=0) + 1
        held[version] = value
        for old in sorted(held)[:-MAX_VERSIONS]:
            del held[old]
        return version

    def delete(self, name: str) -> None:
        self._enter("delete")
        if self.versions.pop(name, None) is None:
            raise _client_error("ParameterNotFound", "DeleteParameter", f"{name} not found")

    def names_under(self, path: str) -> list[str]:
        self._enter("names_under")
        return [n for n in self.versions if n.startswith(path.rstrip("/") + "/")]


class InMemoryRegistry(Faults):
    """A RegistryStore in a dict of typed items keyed by `model_name`, handed out as copies (as boto3's)."""

    CALLS = ("scan", "get", "put", "put_if", "update_if", "delete")

    def __init__(self, items: Iterable[Item] = ()) -> None:
        super().__init__()
        self.items: dict[str, Item] = {}
        for item in items:
            self.put(item)
        self.calls.clear()

    def scan(self) -> list[Item]:
        self._enter("scan")
        return copy.deepcopy(list(self.items.values()))

    def get(self, name: str) -> Item | None:
        self._enter("get")
        return copy.deepcopy(self.items.get(name))

    def put(self, item: Item) -> None:
        self._enter("put")
        self.items[_key(item)] = copy.deepcopy(item)

    def put_if(self, item: Item, attribute: str, expected: str | None) -> None:
        self._enter("put_if")
        stored = (self.items.get(_key(item)) or {}).get(attribute)
        if stored != (None if expected is None else {"S": expected}):
            raise ConcurrentChangeError(f"{attribute} changed since it was read")
        self.items[_key(item)] = copy.deepcopy(item)

    def update_if(self, name: str, changes: Mapping[str, Any], attribute: str, expected: Any | None) -> None:
        self._enter("update_if")
        stored = self.items.get(name)
        if stored is None or stored.get(attribute) != expected:
            raise ConcurrentChangeError(f"{name}: the item or its {attribute} changed meanwhile")
        for key, value in changes.items():
            if value is None:
                stored.pop(key, None)
            else:
                stored[key] = copy.deepcopy(value)

    def delete(self, name: str) -> None:
        self._enter("delete")
        self.items.pop(name, None)


def _key(item: Item) -> str:
    key = item.get(KEY)
    if not (isinstance(key, dict) and isinstance(key.get("S"), str)):
        raise _client_error("ValidationException", "PutItem", f"the item has no string key {KEY}")
    return str(key["S"])


# --- Issue 17: outcome counts (stores/rollout_metrics.py) ---------------------------------------------------
class MemoryOutcomeStore:
    """An OutcomeStore in a dict. Set `available = False` to make every call raise OutcomesUnavailable;
    set `fail_after = N` to make the next `add` fail after applying N counts (mid-batch), raising
    `failure` (default: OutcomesUnavailable with applied=N; any exception, to play a store that breaks
    the port's contract)."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], OutcomeCounts] = {}  # (model, slot) -> totals
        self.available = True
        self.adds = 0
        self.fail_after: int | None = None
        self.failure: Exception | None = None

    def _check(self, applied: int = 0) -> None:
        if not self.available:
            raise OutcomesUnavailable("the in-memory outcome store is switched off", applied)
        if self.fail_after is not None and applied >= self.fail_after:
            self.fail_after, failure = None, self.failure
            raise failure or OutcomesUnavailable("the in-memory outcome store failed mid-batch", applied)

    def add(self, counts: Sequence[OutcomeCounts]) -> None:
        for applied, c in enumerate(counts):
            self._check(applied)
            if c.requests <= 0 and c.errors <= 0 and not c.ttft_hist:
                continue
            self.adds += 1
            key = (c.model, slot(c.minute, c.variant))
            clean = OutcomeCounts(
                c.model,
                c.variant,
                c.minute,
                max(0, c.requests),
                max(0, c.errors),
                {b: n for b, n in c.ttft_hist.items() if 0 <= b < BUCKETS and n > 0},
            )
            prev = self.items.get(key)
            self.items[key] = clean if prev is None else merge([prev, clean])[c.variant]

    def read(self, model: str, since_minute: int) -> list[OutcomeCounts]:
        self._check()
        since = slot(max(0, since_minute), "")
        return [self.items[k] for k in sorted(self.items) if k[0] == model and k[1] >= since]
