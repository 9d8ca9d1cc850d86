"""In-memory fakes of the stores, for unit tests (ours and yours): same semantics, no AWS."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

from arena.votes import Vote, counters, over_cap, voter_counter
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
