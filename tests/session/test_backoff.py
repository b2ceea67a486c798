"""The default reconnect backoff: grows, is capped, jitters, and uses its library without deprecations."""

from __future__ import annotations

import itertools

from bridge.session.ports import jittered_backoff


def test_delays_grow_to_the_cap_with_bounded_jitter() -> None:
    delays = list(itertools.islice(jittered_backoff(0.5, 8.0)(), 10))
    assert all(0.5 <= d <= 8.0 for d in delays)
    assert delays[0] <= 1.0  # first wait: initial plus at most one initial of jitter
    assert delays[-1] == 8.0  # capped
    assert delays[3] > delays[0]


def test_each_call_starts_a_fresh_sequence() -> None:
    backoff = jittered_backoff(1.0, 30.0)
    first, second = next(backoff()), next(backoff())
    assert first <= 2.0
    assert second <= 2.0
