"""Bradley-Terry ratings from pair counts: FastChat's own fit as the reference, known strengths, CIs, ranks."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arena.ratings import Outcomes, PairOutcome, fit, leaderboard, matrices


def battles(
    strengths: dict[str, float], n: int, seed: int, tie_rate: float = 0.15
) -> list[tuple[str, str, str]]:
    """n synthetic battles (model_a, model_b, winner) from known ratings (scale 400, base 10)."""
    rng = random.Random(seed)
    names = sorted(strengths)
    out = []
    for _ in range(n):
        a, b = rng.sample(names, 2)
        p_a = 1 / (1 + 10 ** ((strengths[b] - strengths[a]) / 400))
        r = rng.random()
        if r < tie_rate:
            out.append((a, b, rng.choice(["tie", "tie (bothbad)"])))
        elif rng.random() < p_a:
            out.append((a, b, "model_a"))
        else:
            out.append((a, b, "model_b"))
    return out


def counts_of(rows: list[tuple[str, str, str]]) -> Outcomes:
    cells: dict[tuple[str, str], list[int]] = {}
    for a, b, winner in rows:
        cell = cells.setdefault((a, b), [0, 0, 0])
        cell[{"model_a": 0, "model_b": 1}.get(winner, 2)] += 1
    return {pair: PairOutcome(*c) for pair, c in cells.items()}


TRUE = {"alpha": 1200.0, "bravo": 1120.0, "charlie": 1050.0, "delta": 1000.0, "echo": 900.0, "foxtrot": 780.0}


def fastchat_mle(rows: list[tuple[str, str, str]]) -> dict[str, float]:
    """FastChat 0.2.36's own `compute_elo_mle_with_tie` (scikit-learn, one row per vote)."""
    import pandas as pd

    from runtime.fastchat_compat import import_torch_free

    elo = import_torch_free("fastchat.serve.monitor.elo_analysis")
    df = pd.DataFrame(rows, columns=["model_a", "model_b", "winner"])
    return {str(k): float(v) for k, v in elo.compute_elo_mle_with_tie(df).items()}


def test_ratings_match_fastchats_own_fit() -> None:
    """On a fixture of 3,000 battles with ties, the count-based fit is FastChat's fit within 1 point."""
    rows = battles(TRUE, 3000, seed=7)
    ours = fit(counts_of(rows))
    reference = fastchat_mle(rows)
    assert set(ours) == set(reference)
    for model, rating in reference.items():
        assert ours[model] == pytest.approx(rating, abs=1.0), model


def test_known_strengths_are_recovered_in_order() -> None:
    """20,000 votes drawn from known ratings: the fitted order is the true order, each true rating
    (shifted to the fit's mean) inside its 95% interval. (No ties here: ties drawn at a fixed rate
    regardless of strength would pull the ratings together.)"""
    board = leaderboard(counts_of(battles(TRUE, 20_000, seed=1, tie_rate=0)), min_votes=0)
    assert [r.model for r in board] == sorted(TRUE, key=lambda m: -TRUE[m])
    shift = 1000 - sum(TRUE.values()) / len(TRUE)
    for r in board:
        assert r.ci_lower <= TRUE[r.model] + shift <= r.ci_upper, r
        assert r.ci_lower <= r.rating <= r.ci_upper


def test_ratings_have_mean_1000_and_scale_400() -> None:
    """Two models, 3:1 wins: a 10**(d/400) = 3 rating gap, centred on 1000."""
    ratings = fit({("a", "b"): PairOutcome(a_wins=300, b_wins=100)})
    assert ratings["a"] - ratings["b"] == pytest.approx(400 * math.log10(3), abs=0.01)
    assert (ratings["a"] + ratings["b"]) / 2 == pytest.approx(1000, abs=1e-3)


def test_ties_count_half_a_win_each_and_order_does_not_matter() -> None:
    """A tie is half a win each (both bad too: the caller counts them as ties); (a, b) and (b, a) add up."""
    one = fit({("a", "b"): PairOutcome(a_wins=10, b_wins=0, ties=20)})
    two = fit({("a", "b"): PairOutcome(a_wins=10), ("b", "a"): PairOutcome(ties=20)})
    assert one["a"] - one["b"] == pytest.approx(400 * math.log10(20 / 10), abs=0.01)
    assert two == pytest.approx(one)


def test_rank_by_upper_bound() -> None:
    """Rank is 1 + the number of models whose lower bound is above this model's upper bound."""
    board = leaderboard(counts_of(battles(TRUE, 20_000, seed=2)), min_votes=0)
    for r in board:
        assert r.rank == 1 + sum(o.ci_lower > r.ci_upper for o in board)
    assert board[0].rank == 1
    assert board[-1].rank > 1


def test_provisional_below_the_minimum_vote_count() -> None:
    """A model with fewer votes than the minimum is marked provisional."""
    outcomes = {("a", "b"): PairOutcome(200, 150, 10), ("a", "c"): PairOutcome(3, 2, 0)}
    board = {r.model: r for r in leaderboard(outcomes, min_votes=300)}
    assert board["a"].votes == 365
    assert not board["a"].provisional
    assert board["b"].votes == 360
    assert not board["b"].provisional
    assert board["c"].votes == 5
    assert board["c"].provisional


def test_bootstrap_is_seeded_and_narrows_with_more_votes() -> None:
    """The same seed gives the same intervals; ten times the votes gives narrower ones."""
    few = counts_of(battles(TRUE, 2_000, seed=3))
    assert leaderboard(few, seed=5) == leaderboard(few, seed=5)
    assert leaderboard(dict(reversed(few.items())), seed=5) == leaderboard(few, seed=5)  # order-free
    many = {pair: PairOutcome(o.a_wins * 10, o.b_wins * 10, o.ties * 10) for pair, o in few.items()}
    width = {r.model: r.ci_upper - r.ci_lower for r in leaderboard(few)}
    for r in leaderboard(many):
        assert r.ci_upper - r.ci_lower < width[r.model]


def test_a_model_that_always_wins_gets_a_finite_top_rating() -> None:
    """No finite MLE exists when a model never lost; the fit stays finite and ranks it first."""
    board = leaderboard({("a", "b"): PairOutcome(a_wins=50), ("b", "c"): PairOutcome(10, 10, 5)})
    assert board[0].model == "a"
    assert all(math.isfinite(v) for r in board for v in (r.rating, r.ci_lower, r.ci_upper))


def test_empty_and_self_pairs() -> None:
    """No votes, or a model against itself only: no rows."""
    assert leaderboard({}) == []
    assert fit({("a", "a"): PairOutcome(5, 5, 5)}) == {}


def test_matrices() -> None:
    """Win rate: row's wins over column with ties half; battle counts symmetric; NaN where never met."""
    models, rate, games = matrices({("a", "b"): PairOutcome(3, 1, 2), ("c", "b"): PairOutcome(0, 1, 0)})
    assert models == ["a", "b", "c"]
    assert rate[0, 1] == pytest.approx(4 / 6)
    assert rate[1, 0] == pytest.approx(2 / 6)
    assert games[0, 1] == games[1, 0] == 6
    assert np.isnan(rate[0, 2])
    assert games[0, 2] == 0


cell = st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50))


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.tuples(st.sampled_from("abcd"), st.sampled_from("abcd")), cell, max_size=8))
def test_any_counts_give_finite_ordered_intervals(raw: dict[tuple[str, str], tuple[int, int, int]]) -> None:
    """Whatever the counts (sparse, one-sided, disconnected), every row is finite with lower <= upper."""
    board = leaderboard({pair: PairOutcome(*c) for pair, c in raw.items()}, rounds=20)
    for r in board:
        assert math.isfinite(r.rating)
        assert math.isfinite(r.ci_lower)
        assert math.isfinite(r.ci_upper)
        assert r.ci_lower <= r.ci_upper
        assert 1 <= r.rank <= len(board)
