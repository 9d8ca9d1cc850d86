"""Leaderboard cost: Bradley-Terry fit plus 100 bootstrap rounds, from pair counts, at 10k / 100k / 1M votes.

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


if __name__ == "__main__":
    main()
