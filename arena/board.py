"""The leaderboard document (pure): ratings from battle counters, plus side-by-side and direct-chat tallies.

Shared by `sagemaker-fastchat leaderboard --json` and the web UI's Leaderboard tab, so both show the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from arena.ratings import DEFAULT_MIN_VOTES, DEFAULT_ROUNDS, leaderboard, matrices
from arena.votes import PAIR_TYPES, SINGLE_TYPES, outcomes

Totals = Mapping[tuple[str, ...], Mapping[str, int]]


def _split(key: str, by: str) -> dict[str, str]:
    """A counter key as the row's name (and version: the spec hash, when viewing by version)."""
    if by != "version":
        return {"model": key}
    name, _, spec_hash = key.rpartition("@")
    return {"model": name, "version": spec_hash}


def board(
    battle: Totals,
    side_by_side: Totals,
    direct: Totals,
    *,
    by: str = "name",
    min_votes: int = DEFAULT_MIN_VOTES,
    rounds: int = DEFAULT_ROUNDS,
) -> dict[str, Any]:
    """`{"models": [{"model", "rating", "ci_lower", "ci_upper", "votes", "rank", ...}], ...}`."""
    fitted = outcomes(battle)
    rows = [
        {
            **_split(r.model, by),
            "rating": round(r.rating, 1),
            "ci_lower": round(r.ci_lower, 1),
            "ci_upper": round(r.ci_upper, 1),
            "votes": r.votes,
            "rank": r.rank,
            "provisional": r.provisional,
        }
        for r in leaderboard(fitted, rounds=rounds, min_votes=min_votes)
    ]
    return {
        "by": by,
        "min_votes": min_votes,
        "battle_votes": sum(o.votes for o in fitted.values()),
        "models": rows,
        "side_by_side": [
            {"model_a": pair[0], "model_b": pair[1], **{t: counts.get(t, 0) for t in PAIR_TYPES}}
            for pair, counts in sorted(side_by_side.items())
            if len(pair) == 2
        ],
        "direct": [
            {"model": pair[0], **{t: counts.get(t, 0) for t in SINGLE_TYPES}}
            for pair, counts in sorted(direct.items())
            if len(pair) == 1
        ],
    }


def battle_matrices(battle: Totals, order: list[str]) -> dict[str, Any]:
    """Win-rate and battle-count matrices in the leaderboard's order (for the UI's plots)."""
    models, rate, games = matrices(outcomes(battle))
    index = [models.index(m) for m in order if m in models]
    names = [models[i] for i in index]
    return {
        "models": names,
        "win_rate": [[None if rate[i, j] != rate[i, j] else float(rate[i, j]) for j in index] for i in index],
        "battles": [[int(games[i, j]) for j in index] for i in index],
    }
