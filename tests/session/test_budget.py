"""The send budget: at most ``burst`` sends in any ``burst / rate_per_s`` window (§8), on virtual time."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.ports import LoopClock
from bridge.session.flow import SendBudget
from bridge.simulator import SimulatorConfig
from genesys_bridge_client.contract import MessageSend
from tests.session.fakes import ManualClock
from tests.session.test_simulator import live


def most_in_any_window(times: list[float], window_s: float) -> int:
    """The largest number of ``times`` inside one half-open window ``[a, a + window_s)``.

    A fullest window can always start at one of the times, so checking those starts is exhaustive.
    """
    ordered = sorted(times)
    return max((sum(1 for t in ordered if start <= t < start + window_s) for start in ordered), default=0)


def wait_for_a_slot(budget: SendBudget, clock: ManualClock) -> None:
    """Move the clock on until the budget has a slot, as :meth:`SendBudget.acquire` sleeps (in steps:
    ``a + (b - a)`` can round to just below ``b``)."""
    while (delay := budget.delay()) > 0.0:
        clock.t += delay


@pytest.mark.looptime
async def test_a_burst_of_six_goes_out_two_per_second() -> None:
    loop = asyncio.get_running_loop()
    budget = SendBudget(rate_per_s=2.0, burst=2, clock=LoopClock())
    start = loop.time()
    sent = []
    for _ in range(6):
        await budget.acquire()
        sent.append(loop.time() - start)
    assert sent == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
    assert most_in_any_window(sent, 1.0) == 2


@pytest.mark.looptime
async def test_acquire_reports_the_time_it_waited() -> None:
    budget = SendBudget(rate_per_s=2.0, burst=2, clock=LoopClock())
    assert [await budget.acquire() for _ in range(4)] == [0.0, 0.0, 1.0, 0.0]
    await asyncio.sleep(0.25)
    assert budget.delay() == 0.75  # the window of the 3rd send (at 1.0) ends at 2.0
    assert await budget.acquire() == 0.75


@pytest.mark.looptime
async def test_a_margin_lengthens_the_window() -> None:
    loop = asyncio.get_running_loop()
    budget = SendBudget(rate_per_s=2.0, burst=2, clock=LoopClock(), margin_s=0.1)
    start = loop.time()
    sent = []
    for _ in range(6):
        await budget.acquire()
        sent.append(loop.time() - start)
    assert sent == pytest.approx([0.0, 0.0, 1.1, 1.1, 2.2, 2.2])


def test_the_token_bucket_edge_is_gone() -> None:
    """A full bucket of 2 refilling at 2/s allowed a 3rd send at 0.5 s: three in the first second."""
    clock = ManualClock()
    budget = SendBudget(rate_per_s=2.0, burst=2, clock=clock)
    assert budget.try_acquire()
    assert budget.try_acquire()
    clock.t = 0.5
    assert not budget.try_acquire()
    assert budget.delay() == 0.5
    clock.t = 0.999
    assert not budget.try_acquire()
    clock.t = 1.0
    assert budget.try_acquire()


def test_try_acquire_takes_nothing_when_refused() -> None:
    clock = ManualClock()
    budget = SendBudget(rate_per_s=1.0, burst=1, clock=clock)
    assert budget.try_acquire()
    clock.t = 0.4
    assert not budget.try_acquire()
    assert not budget.try_acquire()
    clock.t = 1.0  # a refused attempt at 0.4 did not push the slot back
    assert budget.try_acquire()


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 2), (2.0, 0)])
def test_nonsense_limits_are_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        SendBudget(rate_per_s=rate, burst=burst, clock=ManualClock())


@given(
    rate=st.sampled_from([0.5, 1.0, 2.0, 3.0, 5.0, 20.0]),
    burst=st.integers(min_value=1, max_value=6),
    gaps=st.lists(st.floats(min_value=0.0, max_value=2.0), min_size=1, max_size=40),
)
def test_no_window_ever_holds_more_than_the_burst(rate: float, burst: int, gaps: list[float]) -> None:
    """Sends wanted at arbitrary times (bursts included) go out with at most ``burst`` in any window,
    each as early as that allows, and never before it was wanted."""
    clock = ManualClock()
    budget = SendBudget(rate_per_s=rate, burst=burst, clock=clock)
    wanted = 0.0
    sent: list[float] = []
    for gap in gaps:
        wanted += gap
        clock.t = max(clock.t, wanted)
        wait_for_a_slot(budget, clock)
        assert budget.try_acquire()
        sent.append(clock.t)
    window_s = burst / rate
    for i in range(burst, len(sent)):
        assert sent[i] - sent[i - burst] >= window_s - 1e-9
    assert most_in_any_window(sent, window_s * (1 - 1e-9)) <= burst


@given(
    burst_size=st.integers(min_value=1, max_value=30), start=st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
)
def test_with_the_defaults_any_burst_keeps_two_per_second(burst_size: int, start: float) -> None:
    """The defaults (2/s, burst 2): however many sends arrive at once, no 1 s window holds more than 2."""
    clock = ManualClock()
    clock.t = start
    budget = SendBudget(rate_per_s=2.0, burst=2, clock=clock)
    sent = []
    for _ in range(burst_size):
        wait_for_a_slot(budget, clock)
        assert budget.try_acquire()
        sent.append(clock.t - start)
    assert sent == pytest.approx([float(i // 2) for i in range(burst_size)])
    assert most_in_any_window([s + start for s in sent], 1.0 - 1e-6) <= 2


@pytest.mark.timeout(30)
async def test_six_sends_draw_no_429_from_the_simulator() -> None:
    """The simulator's default limit (2 messages/s per session) against the bridge's default budget:
    six messages sent in a burst are all delivered on the first try (real time: about 2 s)."""
    async with live(SimulatorConfig(agent_script=False)) as h:
        await h.start()
        ids = [f"b{i}" for i in range(6)]
        for command_id in ids:
            await h.submit(MessageSend(command_id=command_id, session_id="s1", text=command_id))
        assert [(await h.sink.wait_outcome(c)).status for c in ids] == ["delivered"] * 6
        assert all(o.status != "will_retry" for c in ids for o in h.sink.outcomes(c))
        assert h.sample("genesys_bridge_rate_limit_delay_seconds_count", kind="genesys") == 0
        assert [r.text for r in h.sim.received(h.token())] == ids
