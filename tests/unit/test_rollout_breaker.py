"""The per-endpoint circuit breaker (rollout/breaker.py) on an injected clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rollout.breaker import CLOSED, HALF_OPEN, OPEN, Breaker, BreakerPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


POLICY = BreakerPolicy(consecutive=3, window=10.0, min_requests=10, max_error_rate=0.5, cooldown=5.0)


def breaker() -> tuple[Breaker, Clock]:
    clock = Clock()
    return Breaker(POLICY, clock), clock


def test_consecutive_failures_open_it() -> None:
    b, _ = breaker()
    for _ in range(2):
        b.record(False)
    assert b.state == CLOSED
    assert b.allow()
    b.record(False)
    assert b.state == OPEN
    assert not b.allow()
    assert "3 failures in a row" in (b.reason or "")


def test_a_success_resets_the_run() -> None:
    b, _ = breaker()
    for _ in range(10):
        b.record(False)
        b.record(False)
        b.record(True)
    assert b.state == OPEN  # 20 errors in 30 over the window: the error rate opens it instead
    assert "errors in" in (b.reason or "")


def test_below_the_minimum_sample_the_error_rate_never_opens_it() -> None:
    b, clock = breaker()
    for _ in range(4):
        b.record(False)
        b.record(True)
        clock.now += 0.1
    assert b.state == CLOSED  # 50% errors but only 8 requests


def test_old_outcomes_leave_the_window() -> None:
    b, clock = breaker()
    for _ in range(9):
        b.record(True)
    clock.now += 20
    for _ in range(2):
        b.record(False)
    assert b.window_counts() == (2, 2)
    assert b.state == CLOSED


def test_open_half_open_closed() -> None:
    b, clock = breaker()
    for _ in range(3):
        b.record(False)
    clock.now += 4.9
    assert not b.allow()
    clock.now += 0.1
    assert b.allow()  # the probe
    assert b.state == HALF_OPEN
    assert not b.allow()  # only one probe at a time
    b.record(True)
    assert b.state == CLOSED
    assert b.allow()


def test_a_failed_probe_opens_it_again_for_a_full_cool_down() -> None:
    b, clock = breaker()
    for _ in range(3):
        b.record(False)
    clock.now += 5
    assert b.allow()
    b.record(False)
    assert b.state == OPEN
    clock.now += 4
    assert not b.allow()
    clock.now += 1
    assert b.allow()


def test_a_lost_probe_is_replaced_after_a_cool_down() -> None:
    b, clock = breaker()
    for _ in range(3):
        b.record(False)
    clock.now += 5
    assert b.allow()
    clock.now += 5
    assert b.allow()


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 3)), max_size=200))
def test_any_sequence_keeps_a_valid_state_and_a_bounded_window(steps: list[tuple[bool, float]]) -> None:
    b, clock = breaker()
    for ok, dt in steps:
        clock.now += dt
        if b.allow():
            b.record(ok)
        assert b.state in (CLOSED, OPEN, HALF_OPEN)
        assert len(b._buckets) <= POLICY.window + 2
        d = b.describe()
        assert d["window_errors"] <= d["window_requests"]
