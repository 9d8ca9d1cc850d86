"""TTFT histograms with fixed bounds (rollout/histogram.py)."""

from __future__ import annotations

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from rollout.histogram import BOUNDS, BUCKETS, bucket_of, quantile


def test_bounds_grow_geometrically_from_one_ms_to_two_minutes() -> None:
    assert BOUNDS[0] == 1.0
    assert all(b > a for a, b in itertools.pairwise(BOUNDS))
    assert 100_000 < BOUNDS[-1] < 150_000
    assert len(BOUNDS) + 1 == BUCKETS


def test_bucket_edges() -> None:
    """A bound belongs to its own bucket; past the last bound is the overflow bucket; odd input is 0."""
    assert bucket_of(0) == bucket_of(-5) == bucket_of(math.nan) == bucket_of(1.0) == 0
    assert bucket_of(1.0001) == 1
    assert bucket_of(BOUNDS[10]) == 10
    assert bucket_of(1e9) == bucket_of(math.inf) == BUCKETS - 1


@given(st.floats(min_value=0, max_value=2e5), st.floats(min_value=0, max_value=2e5))
def test_buckets_are_monotonic(a: float, b: float) -> None:
    if a <= b:
        assert bucket_of(a) <= bucket_of(b)


@given(st.lists(st.floats(min_value=1.5, max_value=100_000), min_size=1, max_size=200))
def test_quantiles_are_within_one_bucket_of_the_truth(values: list[float]) -> None:
    """p95 read from the histogram is within a bucket's 20% of the exact p95 of the values."""
    hist: dict[int, int] = {}
    for v in values:
        hist[bucket_of(v)] = hist.get(bucket_of(v), 0) + 1
    exact = sorted(values)[max(0, math.ceil(0.95 * len(values)) - 1)]
    assert exact / 1.2 - 1e-9 <= quantile(hist, 0.95) <= exact * 1.2 + 1e-9


def test_quantile_of_nothing_or_junk_is_nan() -> None:
    assert math.isnan(quantile({}, 0.95))
    assert math.isnan(quantile({-1: 5, BUCKETS: 3, 4: 0, 5: -2}, 0.5))
    assert math.isnan(quantile({3: 1}, 1.5))
    assert quantile({3: 1, 99: 4}, 1.0) == BOUNDS[3]
