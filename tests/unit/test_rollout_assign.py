"""Variant choice (rollout/assign.py): weighted, sticky, minimal movement, weight 0 never chosen."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from rollout.assign import rank_variants


@dataclass(frozen=True)
class V:
    endpoint_name: str
    weight: float


def first(variants: list[V], key: str) -> str:
    return rank_variants(variants, key)[0].endpoint_name


def test_the_split_over_10000_keys_is_within_2_points_of_each_weight() -> None:
    variants = [V("live", 70), V("candidate", 25), V("other", 5)]
    counts = Counter(first(variants, f"conversation-{i}") for i in range(10_000))
    for v in variants:
        assert abs(counts[v.endpoint_name] / 100 - v.weight) <= 2, counts


@given(st.text(max_size=40), st.lists(st.integers(1, 100), min_size=1, max_size=5))
def test_the_same_key_always_ranks_the_same_way(key: str, weights: list[int]) -> None:
    variants = [V(f"e{i}", w) for i, w in enumerate(weights)]
    assert rank_variants(variants, key) == rank_variants(list(reversed(variants)), key)
    assert sorted(v.endpoint_name for v in rank_variants(variants, key)) == sorted(
        v.endpoint_name for v in variants
    )


@given(st.text(max_size=40), st.lists(st.integers(0, 100), min_size=1, max_size=5))
def test_weight_zero_is_never_ranked(key: str, weights: list[int]) -> None:
    variants = [V(f"e{i}", w) for i, w in enumerate(weights)]
    ranked = rank_variants(variants, key)
    assert all(v.weight > 0 for v in ranked)
    assert len(ranked) == sum(w > 0 for w in weights)


def test_raising_a_weight_moves_only_keys_to_that_variant() -> None:
    before = [V("live", 95), V("candidate", 5)]
    after = [V("live", 75), V("candidate", 25)]
    keys = [f"k{i}" for i in range(5000)]
    moved = [(first(before, k), first(after, k)) for k in keys if first(before, k) != first(after, k)]
    assert all(new == "candidate" for _, new in moved)
    assert 0.15 < len(moved) / len(keys) < 0.25  # ~20%: the minimum any split change needs


def test_raising_one_weight_only_moves_keys_to_it_and_lowering_one_only_moves_keys_away() -> None:
    before = [V("a", 50), V("b", 30), V("c", 20)]
    raised = [V("a", 50), V("b", 30), V("c", 40)]
    lowered = [V("a", 50), V("b", 10), V("c", 20)]
    for i in range(3000):
        was = first(before, f"k{i}")
        assert first(raised, f"k{i}") in (was, "c")
        assert first(lowered, f"k{i}") == was or was == "b"
