"""Bradley-Terry ratings from per-pair outcome counts, with bootstrap confidence intervals (pure, no I/O).

The method of FastChat's `elo_analysis.compute_mle_elo`: a logistic model P(a beats b) =
1 / (1 + BASE ** ((R_b - R_a) / SCALE)) fitted by maximum likelihood, a tie (or both bad) counting as half
a win for each side, ratings anchored so their mean is INIT_RATING; 95% intervals from bootstrap rounds
that resample the votes; rank = 1 + the number of models whose lower bound is above this model's upper
bound. FastChat fits one row per vote with scikit-learn; here the fit works on the outcome counts per
pair (the sufficient statistics), so its cost depends on the number of models, never on the number of
votes, and bootstrap rounds draw new counts (a multinomial over the outcome cells) instead of new rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

SCALE, BASE, INIT_RATING = 400.0, 10.0, 1000.0
DEFAULT_ROUNDS, DEFAULT_MIN_VOTES, DEFAULT_SEED = 100, 300, 0
MAX_ROUNDS = 10_000
# A tiny ridge fixes the ratings' free offset (to mean INIT_RATING, as FastChat's unpenalised fit started
# at zero does) and keeps them finite when a model won (or lost) every vote, where no finite MLE exists.
# At a few votes per pair it moves a rating by far less than 0.01 point.
_RIDGE = 1e-3
_MAX_STEP = 2.0  # natural-log units per Newton step (~350 points): damping far from the optimum
_TOLERANCE = 1e-7
_MAX_ITERATIONS = 200

Array = NDArray[np.float64]


@dataclass(frozen=True)
class PairOutcome:
    """Outcome counts of the votes between model `a` (left) and model `b` (right)."""

    a_wins: int = 0
    b_wins: int = 0
    ties: int = 0  # ties and both-bad alike: half a win each

    @property
    def votes(self) -> int:
        return self.a_wins + self.b_wins + self.ties


Outcomes = Mapping[tuple[str, str], PairOutcome]


@dataclass(frozen=True)
class Rating:
    model: str
    rating: float
    ci_lower: float
    ci_upper: float
    votes: int
    rank: int
    provisional: bool  # fewer votes than the minimum: shown, but not to be trusted yet


@dataclass(frozen=True)
class _Cells:
    """The outcome counts as arrays: ordered pair k is (models[i[k]], models[j[k]])."""

    models: list[str]
    i: NDArray[np.intp]
    j: NDArray[np.intp]
    counts: NDArray[np.int64]  # shape (pairs, 3): a_wins, b_wins, ties

    @classmethod
    def of(cls, outcomes: Outcomes) -> _Cells:
        kept = {(a, b): o for (a, b), o in outcomes.items() if a != b and o.votes > 0}
        models = sorted({m for pair in kept for m in pair})
        index = {m: n for n, m in enumerate(models)}
        pairs = sorted(kept)  # the bootstrap's draws follow the cells' order: make it the input's content
        return cls(
            models,
            np.array([index[a] for a, _ in pairs], dtype=np.intp),
            np.array([index[b] for _, b in pairs], dtype=np.intp),
            np.array([[kept[p].a_wins, kept[p].b_wins, kept[p].ties] for p in pairs], dtype=np.int64).reshape(
                -1, 3
            ),
        )

    def win_matrices(self, counts: NDArray[np.int64]) -> Array:
        """W[r, x, y]: how many times x beat y in round r (ties half each); counts is (rounds, pairs, 3)."""
        p = len(self.models)
        wins = np.zeros((counts.shape[0], p, p))
        half_ties = counts[:, :, 2] / 2.0
        # Each ordered pair occurs once, so fancy-index += never repeats an index within one statement.
        wins[:, self.i, self.j] += counts[:, :, 0] + half_ties
        wins[:, self.j, self.i] += counts[:, :, 1] + half_ties
        return wins


def _fit(wins: Array) -> Array:
    """Maximum-likelihood strengths (natural-log units, mean ~0) for each round's win matrix, by damped
    Newton steps on all rounds at once (the log-likelihood is concave; each step solves a p x p system)."""
    rounds, p, _ = wins.shape
    games = wins + wins.transpose(0, 2, 1)
    strengths = np.zeros((rounds, p))
    ridge = _RIDGE * np.eye(p)
    for _ in range(_MAX_ITERATIONS):
        diff = strengths[:, :, None] - strengths[:, None, :]
        p_win = 1.0 / (1.0 + np.exp(-diff))
        gradient = (wins - games * p_win).sum(axis=2) - _RIDGE * strengths
        weight = games * p_win * (1.0 - p_win)
        hessian = -weight + ridge  # the negative log-likelihood's Hessian: a Laplacian plus the ridge
        hessian[:, np.arange(p), np.arange(p)] += weight.sum(axis=2)
        step = np.linalg.solve(hessian, gradient[:, :, None])[:, :, 0]
        largest = np.abs(step).max(axis=1, keepdims=True)
        step *= np.minimum(1.0, _MAX_STEP / np.maximum(largest, 1e-300))
        strengths += step
        if float(largest.max()) < _TOLERANCE:
            break
    return strengths


def _to_rating(strengths: Array) -> Array:
    return SCALE / math.log(BASE) * strengths + INIT_RATING


def fit(outcomes: Outcomes) -> dict[str, float]:
    """Each model's rating from the outcome counts (no intervals)."""
    cells = _Cells.of(outcomes)
    if not cells.models:
        return {}
    ratings = _to_rating(_fit(cells.win_matrices(cells.counts[None])))[0]
    return dict(zip(cells.models, ratings.tolist(), strict=True))


def votes_per_model(outcomes: Outcomes) -> dict[str, int]:
    totals: dict[str, int] = {}
    for (a, b), o in outcomes.items():
        if a != b:
            totals[a] = totals.get(a, 0) + o.votes
            totals[b] = totals.get(b, 0) + o.votes
    return totals


def leaderboard(
    outcomes: Outcomes,
    rounds: int = DEFAULT_ROUNDS,
    min_votes: int = DEFAULT_MIN_VOTES,
    seed: int = DEFAULT_SEED,
) -> list[Rating]:
    """Ratings with 95% bootstrap intervals, best first, ranked by upper bound (FastChat's rule)."""
    cells = _Cells.of(outcomes)
    if not cells.models:
        return []
    rounds = max(0, min(rounds, MAX_ROUNDS))
    point = _to_rating(_fit(cells.win_matrices(cells.counts[None])))[0]
    lower, upper = point.copy(), point.copy()
    if rounds:
        total = int(cells.counts.sum())
        rng = np.random.default_rng(seed)
        flat = cells.counts.reshape(-1)
        drawn = rng.multinomial(total, flat / total, size=rounds).reshape(rounds, *cells.counts.shape)
        boot_wins = cells.win_matrices(drawn)
        boot = _to_rating(_fit(boot_wins))
        # A model that drew no vote in a round has no rating in it (FastChat's rows-resampling likewise).
        played = boot_wins.sum(axis=2) + boot_wins.sum(axis=1) > 0
        boot = np.where(played, boot, np.nan)
        lower = np.nanquantile(boot, 0.025, axis=0)
        upper = np.nanquantile(boot, 0.975, axis=0)
    votes = votes_per_model(outcomes)
    rows = []
    for n, model in enumerate(cells.models):
        rank = 1 + int(np.sum(lower > upper[n]))
        rows.append(
            Rating(
                model,
                float(point[n]),
                float(lower[n]),
                float(upper[n]),
                votes.get(model, 0),
                rank,
                votes.get(model, 0) < min_votes,
            )
        )
    return sorted(rows, key=lambda r: (r.rank, -r.rating, r.model))


def matrices(outcomes: Outcomes) -> tuple[list[str], Array, NDArray[np.int64]]:
    """Models, the win-rate matrix (row's wins over column, ties half; NaN where they never met) and the
    battle-count matrix (both orders summed), for the leaderboard's plots."""
    cells = _Cells.of(outcomes)
    p = len(cells.models)
    wins = cells.win_matrices(cells.counts[None])[0] if p else np.zeros((0, 0))
    games = wins + wins.T
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(games > 0, wins / games, np.nan)
    return cells.models, rate, games.round().astype(np.int64)
