"""Connect pacing: the per-deployment sliding window of Genesys' connection limit (§8)."""

from __future__ import annotations

from bridge.session.flow import ConnectWindow
from tests.session.fakes import ManualClock


def test_up_to_the_limit_connect_at_once_then_the_window_paces() -> None:
    clock = ManualClock()
    window = ConnectWindow(limit=3, clock=clock, window_s=60.0)
    assert [window.reserve("dep") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert window.reserve("dep") == 60.0  # the 4th waits until the 1st leaves the window
    assert window.reserve("dep") == 60.0
    clock.t = 10.0
    assert window.reserve("dep") == 50.0


def test_no_60s_window_ever_holds_more_than_the_limit() -> None:
    clock = ManualClock()
    window = ConnectWindow(limit=5, clock=clock, window_s=60.0)
    slots = []
    for step in range(40):
        clock.t = step * 3.0
        slots.append(clock.t + window.reserve("dep"))
    slots.sort()
    for i, start in enumerate(slots):
        assert sum(1 for s in slots[i:] if s < start + 60.0) <= 5


def test_deployments_have_their_own_budget() -> None:
    clock = ManualClock()
    window = ConnectWindow(limit=1, clock=clock)
    assert window.reserve("a") == 0.0
    assert window.reserve("b") == 0.0
    assert window.reserve("a") == 60.0


def test_memory_is_bounded_by_the_limit() -> None:
    clock = ManualClock()
    window = ConnectWindow(limit=4, clock=clock)
    for _ in range(1000):
        window.reserve("dep")
    assert len(window._slots["dep"]) <= 4
