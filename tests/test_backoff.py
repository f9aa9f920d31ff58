"""Backoff delays stay within the bounds each jitter kind promises."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actorq import Backoff

bases = st.floats(min_value=0.001, max_value=10, allow_nan=False)
caps = st.floats(min_value=10, max_value=1000, allow_nan=False)
steps = st.integers(min_value=0, max_value=2000)
seeds = st.integers(min_value=0, max_value=2**32)


@given(bases, caps, steps)
def test_exponential_without_jitter_is_capped_geometric(base: float, cap: float, n: int) -> None:
    """No jitter: min(cap, base * factor^n), exactly."""
    b = Backoff.exponential(base, factor=2.0, cap=cap)
    assert b.delay(n, None, random.Random(0)) == pytest.approx(min(cap, base * 2.0 ** min(n, 1000)))


@given(bases, caps, steps, seeds)
def test_full_jitter_is_between_zero_and_the_exponential(
    base: float, cap: float, n: int, seed: int
) -> None:
    """Full jitter: uniform in [0, d]."""
    b = Backoff.exponential(base, cap=cap, jitter="full")
    d = min(cap, base * 2.0 ** min(n, 1000))
    assert 0.0 <= b.delay(n, None, random.Random(seed)) <= d


@given(bases, caps, steps, seeds)
def test_equal_jitter_keeps_half_the_delay(base: float, cap: float, n: int, seed: int) -> None:
    """Equal jitter: in [d/2, d]."""
    b = Backoff.exponential(base, cap=cap, jitter="equal")
    d = min(cap, base * 2.0 ** min(n, 1000))
    assert d / 2 <= b.delay(n, None, random.Random(seed)) <= d + 1e-9


@given(bases, caps, st.floats(min_value=0, max_value=2000, allow_nan=False), seeds)
def test_decorrelated_jitter_between_base_and_three_times_previous(
    base: float, cap: float, previous: float, seed: int
) -> None:
    """Decorrelated jitter: in [base, min(cap, 3 * previous)], never above the cap."""
    b = Backoff.exponential(base, cap=cap, jitter="decorrelated")
    delay = b.delay(3, previous, random.Random(seed))
    assert min(base, cap) <= delay <= cap
    assert delay <= max(base, previous * 3) + 1e-9


def test_constant_and_none() -> None:
    """Constant waits the same each time; none never waits."""
    assert [Backoff.constant(0.5).delay(n, None, random.Random(0)) for n in range(3)] == [
        0.5,
        0.5,
        0.5,
    ]
    assert Backoff.none().delay(7, None, random.Random(0)) == 0.0


@pytest.mark.parametrize(
    "make",
    [
        lambda: Backoff.exponential(1.0, cap=0.5),
        lambda: Backoff.exponential(1.0, factor=0.5),
        lambda: Backoff.exponential(1.0, jitter="sometimes"),  # type: ignore[arg-type]
        lambda: Backoff.constant(-1),
    ],
)
def test_bad_declarations_fail_at_once(make: object) -> None:
    """A malformed backoff is refused when declared, not at the first failure."""
    with pytest.raises(ValueError, match=r"backoff|jitter"):
        make()  # type: ignore[operator]
