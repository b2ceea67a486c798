"""The reconnect schedule: doubles from the first wait, jitters within bounds, caps, starts afresh per outage."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.backoff import exponential_jitter, jittered_backoff


def _no_jitter(low: float, high: float) -> float:
    return low


def _full_jitter(low: float, high: float) -> float:
    return high


def test_without_jitter_the_delays_double_up_to_the_cap() -> None:
    delays = list(itertools.islice(exponential_jitter(0.5, 8.0, uniform=_no_jitter), 8))
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]


def test_the_jitter_is_at_most_the_first_wait_by_default() -> None:
    delays = list(itertools.islice(exponential_jitter(0.5, 8.0, uniform=_full_jitter), 6))
    assert delays == [1.0, 1.5, 2.5, 4.5, 8.0, 8.0]


def test_the_jitter_can_be_set_apart_from_the_first_wait() -> None:
    assert next(exponential_jitter(1.0, 30.0, jitter_s=0.25, uniform=_full_jitter)) == 1.25
    assert next(exponential_jitter(1.0, 30.0, jitter_s=0.0)) == 1.0


def test_a_seeded_draw_gives_a_reproducible_schedule() -> None:
    first = list(itertools.islice(exponential_jitter(0.1, 5.0, uniform=random.Random(7).uniform), 20))
    again = list(itertools.islice(exponential_jitter(0.1, 5.0, uniform=random.Random(7).uniform), 20))
    assert first == again


def test_the_schedule_never_overflows() -> None:
    # Thousands of attempts: the base stops doubling at the cap, so no float overflows to inf.
    assert list(itertools.islice(exponential_jitter(1.0, 2.0, uniform=_no_jitter), 5000))[-1] == 2.0


@given(
    initial=st.floats(min_value=1e-3, max_value=10.0),
    factor=st.floats(min_value=1.0, max_value=100.0),
    attempts=st.integers(min_value=1, max_value=60),
)
def test_every_delay_lies_between_the_first_wait_and_the_cap(initial: float, factor: float, attempts: int) -> None:
    cap = initial * factor
    delays = list(itertools.islice(exponential_jitter(initial, cap), attempts))
    assert all(initial <= d <= cap for d in delays)


def test_each_call_of_the_backoff_starts_a_fresh_schedule() -> None:
    backoff = jittered_backoff(1.0, 30.0)
    for _ in range(3):
        assert next(backoff()) <= 2.0


@pytest.mark.parametrize(
    ("initial", "cap", "jitter"),
    [(0.0, 1.0, None), (1.0, 0.0, None), (-1.0, 1.0, None), (2.0, 1.0, None), (1.0, 2.0, -0.1)],
)
def test_bad_arguments_are_refused_at_the_call(initial: float, cap: float, jitter: float | None) -> None:
    with pytest.raises(ValueError):
        exponential_jitter(initial, cap, jitter_s=jitter)
    if jitter is None:
        with pytest.raises(ValueError):
            jittered_backoff(initial, cap)
