"""In-memory fakes of the stores, for unit tests (ours and yours): same semantics, no AWS."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime

from arena.votes import Vote, counters, over_cap, voter_counter
from rollout.histogram import BUCKETS
from stores.rollout_metrics import OutcomeCounts, OutcomesUnavailable, merge, slot
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


# --- Issue 17: outcome counts (stores/rollout_metrics.py) ---------------------------------------------------
class MemoryOutcomeStore:
    """An OutcomeStore in a dict. Set `available = False` to make every call raise OutcomesUnavailable."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], OutcomeCounts] = {}  # (model, slot) -> totals
        self.available = True
        self.adds = 0

    def _check(self, applied: int = 0) -> None:
        if not self.available:
            raise OutcomesUnavailable("the in-memory outcome store is switched off", applied)

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
