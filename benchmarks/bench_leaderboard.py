"""Leaderboard cost: Bradley-Terry fit plus 100 bootstrap rounds, from pair counts, at 10k / 100k / 1M votes;
and the web UI's Leaderboard tab on page load at 1M votes (counters read from the store's fake, the
document, tables and both plotly figures; uncached).

Votes are drawn among 30 models with known ratings (counts drawn with numpy, as the counts table would
hold them); the fit reads only the counts, so its cost should not grow with the number of votes.
Target: <= 1 s at 1M votes. Run: ./dev bench (or python benchmarks/bench_leaderboard.py).
"""

from __future__ import annotations

import time

import numpy as np

from arena.ratings import Outcomes, PairOutcome, leaderboard

TARGET_SECONDS = 1.0
MODELS = 30
TIE_RATE = 0.15


def synthetic_counts(votes: int, seed: int = 0) -> Outcomes:
    rng = np.random.default_rng(seed)
    names = [f"model-{n:02d}" for n in range(MODELS)]
    strengths = rng.normal(1000, 120, MODELS)
    pairs = [(a, b) for a in range(MODELS) for b in range(MODELS) if a != b]
    per_pair = rng.multinomial(votes, np.full(len(pairs), 1 / len(pairs)))
    out: dict[tuple[str, str], PairOutcome] = {}
    for (a, b), n in zip(pairs, per_pair, strict=True):
        ties = int(rng.binomial(n, TIE_RATE))
        p_a = 1 / (1 + 10 ** ((strengths[b] - strengths[a]) / 400))
        a_wins = int(rng.binomial(n - ties, p_a))
        out[(names[a], names[b])] = PairOutcome(a_wins, int(n) - ties - a_wins, ties)
    return out


def main() -> None:
    leaderboard(synthetic_counts(1000), rounds=2)  # warm-up: numpy's lazy imports
    print(f"votes      models  pairs  fit+100 rounds s (best of 3; target <= {TARGET_SECONDS} s at 1M)")
    worst = 0.0
    for votes in (10_000, 100_000, 1_000_000):
        counts = synthetic_counts(votes)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            board = leaderboard(counts, rounds=100)
            best = min(best, time.perf_counter() - start)
        worst = max(worst, best)
        print(f"{votes:>9,}  {len(board):6}  {len(counts):5}  {best:8.3f}")
    print(f"slowest {worst:.3f} s: {'OK' if worst <= TARGET_SECONDS else 'ABOVE TARGET'}")
    page_load(synthetic_counts(1_000_000))


def page_load(counts: Outcomes) -> None:
    """The Leaderboard tab's refresh on page load, counters of 1M votes in the (in-memory) counts store."""
    import json

    from arena.votes import bucket
    from runtime.arena_ui import ArenaPage, LeaderboardView, PageTexts
    from stores.testing import InMemoryVotesStore

    store = InMemoryVotesStore()
    cells = store.counts.setdefault(bucket("battle", "name"), {})
    for (a, b), o in counts.items():
        cells[json.dumps([a, b])] = {"leftvote": o.a_wins, "rightvote": o.b_wins, "tievote": o.ties}
    page = ArenaPage(LeaderboardView(store, ttl=0), PageTexts(), dict)
    page.refresh()  # warm-up: plotly's lazy imports
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        page.refresh()
        best = min(best, time.perf_counter() - start)
    print(f"Leaderboard tab refresh on page load at 1M votes: {best:.3f} s (best of 3)")


if __name__ == "__main__":
    main()
