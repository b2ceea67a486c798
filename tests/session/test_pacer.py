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


def test_connects_restored_from_the_journal_count_against_the_window() -> None:
    """A restart or a failover within the minute: what the previous owner connected still counts."""
    clock = ManualClock()
    clock.t = 100.0
    window = ConnectWindow(limit=3, clock=clock, window_s=60.0)
    window.restore("dep", [10.0, 20.0, 75.0, -1.0])  # 75 s ago left the window; a future time is ignored
    assert window.reserve("dep") == 0.0  # the third slot
    assert window.reserve("dep") == 40.0  # the 20-s-old connect leaves the window in 40 s
    assert window.reserve("other") == 0.0


def test_a_crash_loop_never_exceeds_the_limit() -> None:
    """Each life connects what its window allows, records it, and dies; the next life restores it."""
    clock = ManualClock()
    limit, sessions = 10, 25
    connects: list[float] = []
    recorded: dict[int, list[float]] = {n: [] for n in range(sessions)}
    for life in range(12):
        clock.t = life * 7.0
        window = ConnectWindow(limit=limit, clock=clock, window_s=60.0)
        for n in range(sessions):
            window.restore("dep", [clock.t - t for t in recorded[n]])
        for n in range(sessions):
            if window.reserve("dep") == 0.0:  # connects now; the rest would wait, and the process dies first
                connects.append(clock.t)
                recorded[n] = [*[t for t in recorded[n] if t > clock.t - 60.0][-7:], clock.t]
    connects.sort()
    for i, start in enumerate(connects):
        assert sum(1 for t in connects[i:] if t < start + 60.0) <= limit


def test_a_sessions_own_connects_are_not_counted_twice() -> None:
    """A partition this process gave up and took back within the minute: the journal lists connects this
    window counted already, which are skipped; a connect another replica made in between still counts."""
    clock = ManualClock()
    window = ConnectWindow(limit=2, clock=clock, window_s=60.0)
    clock.t = 10.0
    assert window.reserve("dep", "s1") == 0.0
    clock.t = 20.0
    window.restore("dep", [10.0], session_id="s1")  # the connect at t=10: ours, already counted
    window.restore("dep", [4.6], session_id="s1")  # t=15.4: another replica's
    assert window.reserve("dep") == 50.0  # two slots taken (t=10, t=15.4): wait for t=10 to leave
    clock.t = 80.0
    window.restore("dep", [70.0], session_id="s1")  # left the window
    assert window.reserve("dep", "s2") == 0.0
