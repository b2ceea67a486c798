"""Which partitions a replica takes and which it hands off (the fleet's rules, without a broker)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from structlog.testing import capture_logs

from bridge.amqp.forwarder import QueueStats
from bridge.config import Settings
from bridge.errors import BrokerUnavailable
from bridge.observability.metrics import Metrics
from bridge.partition.fleet import Fleet, Partition
from bridge.session.flow import ConnectWindow
from tests.cancel_aside import turn_the_cancel_aside
from tests.session.fakes import ManualClock


@dataclass
class FakeOwner:
    index: int
    owned: bool = False

    def __len__(self) -> int:
        return 0


@dataclass
class FakeIntake:
    queue: str
    handed_off: int = 0
    owned: bool = False

    async def hand_off(self) -> None:
        self.handed_off += 1


class FakeForwarder:
    """The broker as the fleet sees it: consumer counts of the presence and hunger queues."""

    def __init__(self, *, replicas: int, hungry: int) -> None:
        self.counts = {"q.replicas": replicas, "q.hungry": hungry}
        self.held: set[str] = set()
        self.probe_answers: dict[str, ProbeAnswer] = {}
        self.probing = 0
        self.probing_at_hold: list[int] = []
        self.held_twice = asyncio.Event()

    async def probe(self, queue: str, *, replica: str) -> None:
        answer = self.probe_answers.get(queue)
        self.probing += 1
        try:
            if answer is not None:
                await answer.give()
        finally:
            self.probing -= 1

    async def inspect(self, queue: str) -> QueueStats | None:
        count = self.counts.get(queue)
        return QueueStats(messages=0, consumers=count) if count is not None else None

    async def hold(self, queue: str) -> None:
        self.held.add(queue)
        self.probing_at_hold.append(self.probing)
        if len(self.probing_at_hold) == 2:
            self.held_twice.set()

    async def let_go(self, queue: str) -> None:
        self.held.discard(queue)


@dataclass
class ProbeAnswer:
    """A probe that fails at once, or one whose confirm takes ``takes_s`` (virtual time)."""

    fails: bool = False
    takes_s: float = 0.0

    async def give(self) -> None:
        if self.fails:
            raise BrokerUnavailable("the probe's publish was not confirmed")
        await asyncio.sleep(self.takes_s)


def _fleet(partitions: int, *, owned: int, replicas: int, hungry: int = 0) -> tuple[Fleet, ManualClock]:
    settings = Settings.load(partitions=partitions, balance_interval_s=5.0, durable_sessions=False)
    clock = ManualClock()
    fleet = Fleet(
        FakeForwarder(replicas=replicas, hungry=hungry),  # type: ignore[arg-type]
        settings=settings,
        intake_queue="q",
        router=FakeIntake("q"),  # type: ignore[arg-type]
        window=ConnectWindow(limit=1000, clock=clock),
        metrics=Metrics(process_metrics=False),
        replica="r",
        clock=clock,
    )
    for n in range(partitions):
        owner: Any = FakeOwner(n, owned=n < owned)
        fleet.add(Partition(owner, FakeIntake(f"q.p{n}")))  # type: ignore[arg-type]
    fleet.replicas, fleet.hungry = replicas, hungry
    return fleet, clock


@pytest.mark.parametrize(
    ("owned", "replicas", "hungry", "takes"),
    [
        (0, 1, 0, True),  # alone: everything
        (4, 3, 0, True),  # 16 over 3: below the floor (5)
        (5, 3, 0, True),  # at the floor, below the ceiling (6), nobody hungry
        (5, 3, 1, False),  # at the floor while another replica is below it: leave it to that one
        (6, 3, 0, False),  # at the ceiling
    ],
)
def test_a_replica_takes_a_partition_below_its_share(owned: int, replicas: int, hungry: int, takes: bool) -> None:
    fleet, _ = _fleet(16, owned=owned, replicas=replicas, hungry=hungry)
    offered: Any = FakeOwner(15)
    assert fleet.accept(offered) is takes


def test_a_partition_declined_once_is_taken_when_it_comes_back_soon() -> None:
    """Nobody else took it (every other replica is at its share too, or the count is stale): take it."""
    fleet, clock = _fleet(16, owned=6, replicas=3)
    offered: Any = FakeOwner(15)
    assert not fleet.accept(offered)
    clock.t += 1.0
    assert fleet.accept(offered)
    clock.t += 60.0
    assert not fleet.accept(offered)  # long after: declined again


def _handed_off(fleet: Fleet) -> int:
    return sum(p.intake.handed_off for p in fleet.partitions)  # type: ignore[attr-defined]


async def test_balance_hands_off_the_surplus_above_the_ceiling() -> None:
    fleet, _ = _fleet(16, owned=16, replicas=3)
    await fleet.balance()
    assert _handed_off(fleet) == 10


async def test_balance_makes_room_for_a_hungry_replica_one_partition_at_a_time() -> None:
    """16 over 5 replicas as 4, 4, 4, 4, 0: each at the ceiling hands one off while someone is hungry."""
    fleet, _ = _fleet(16, owned=4, replicas=5, hungry=1)
    await fleet.balance()
    assert _handed_off(fleet) == 1
    fleet._forwarder.counts["q.hungry"] = 0  # type: ignore[attr-defined]
    await fleet.balance()
    assert _handed_off(fleet) == 1


@pytest.mark.looptime
async def test_a_failed_probe_ends_its_round_only_when_the_others_have_ended() -> None:
    """A probe that fails ends its round once every other probe of the round has ended, so none is left
    running with nobody to await it; the loop logs the failure and probes again on its next round."""
    fleet, _ = _fleet(2, owned=2, replicas=1)
    forwarder: Any = fleet._forwarder
    slow = 3 * fleet._settings.probe_interval_s
    forwarder.probe_answers = {"q": ProbeAnswer(takes_s=slow), "q.p1": ProbeAnswer(fails=True)}
    with capture_logs() as logs:
        probing = asyncio.create_task(fleet._probe_forever())
        try:
            await forwarder.held_twice.wait()  # the presence is held at the start of every round
        finally:
            probing.cancel()
            with pytest.raises(asyncio.CancelledError):
                await probing
    assert forwarder.probing_at_hold == [0, 0]
    failures = [entry for entry in logs if entry["event"] == "fleet_probe_failed"]
    assert [entry["error_type"] for entry in failures] == ["BrokerUnavailable"]


class CancelTurnedAside(FakeForwarder):
    """A forwarder whose broker call ends a cancellation of its caller with an error or a result of its own,
    as aiormq's channel calls (the close reason) and Python 3.11's ``wait_for`` (a result that came with
    the cancel) can."""

    def __init__(self, *, ends_with: str, in_queue: str) -> None:
        super().__init__(replicas=1, hungry=0)
        self.ends_with = ends_with
        self.in_queue = in_queue
        self.waiting = asyncio.Event()

    async def inspect(self, queue: str) -> QueueStats | None:
        if queue == self.in_queue and not self.waiting.is_set():  # this one call waits for the broker
            error = BrokerUnavailable("the channel closed") if self.ends_with == "error" else None
            await turn_the_cancel_aside(self.waiting, raising=error)
        return QueueStats(messages=0, consumers=1)


@pytest.mark.looptime
@pytest.mark.parametrize("ends_with", ["error", "result"])
@pytest.mark.parametrize(
    "in_queue",
    [
        "q.hungry",  # counted by every probe round
        "q",  # the intake's backlog, read only by a balance round
    ],
)
async def test_a_cancelled_fleet_ends_even_when_a_broker_call_turns_the_cancel_aside(
    ends_with: str, in_queue: str
) -> None:
    """The drain cancels the fleet while a probe or balance round waits on the broker. A call that ends with
    a broker error or a result instead of the cancellation must not make the loops go round again: the
    fleet's task ends, and the drain with it."""
    fleet, _ = _fleet(2, owned=2, replicas=1)
    forwarder = CancelTurnedAside(ends_with=ends_with, in_queue=in_queue)
    fleet._forwarder = forwarder  # type: ignore[assignment]
    running = asyncio.create_task(fleet.run())
    await forwarder.waiting.wait()
    running.cancel()
    async with asyncio.timeout(10 * fleet._settings.probe_interval_s):
        with pytest.raises(asyncio.CancelledError):
            await running
