"""Many sessions at once: 200 concurrent sessions, per-session order under load, and a busy session.

The simulator's scripted agent is off and its rate limit is off where the test is about the bridge's
own scheduling; nothing here measures wall-clock latency (benchmarks live in ``bench/``). The busy-session
test compares orders of arrival instead.
"""

from __future__ import annotations

import pytest

from genesys_bridge_client.contract.events import CommandOutcome, Event
from tests.conftest import BrokerNames
from tests.e2e.stack import e2e_stack, quiet_simulator

pytestmark = pytest.mark.slow


@pytest.mark.timeout(60)
async def test_200_concurrent_sessions_each_deliver_a_message(broker_names: BrokerNames, amqp_url: str) -> None:
    sids = [f"c{i:03d}" for i in range(200)]
    async with e2e_stack(broker_names, amqp_url, sim_config=quiet_simulator()) as stack:
        client, events = stack.client, stack.client.events
        starts = [await client.start(sid) for sid in sids]
        sends = [await client.say(sid, f"hello from {sid}") for sid in sids]  # queued behind each start
        outcomes = await events.all_settled(starts + sends, timeout_s=45)
        assert {(o.status, o.reason) for o in outcomes} == {("delivered", "ok")}
        assert len(stack.bridge.sessions) == 200
        for sid in sids:
            assert [r.text for r in stack.sim.received(stack.sim_session(sid))] == [f"hello from {sid}"]
        assert len(stack.sim.sessions()) == 200


@pytest.mark.timeout(45)
async def test_per_session_order_under_load(broker_names: BrokerNames, amqp_url: str) -> None:
    sids = [f"o{i}" for i in range(10)]
    count = 20
    async with e2e_stack(
        broker_names,
        amqp_url,
        sim_config=quiet_simulator(message_rate_per_s=None),
        send_rate_per_s=100.0,
        send_burst=20,
    ) as stack:
        client, events = stack.client, stack.client.events
        for sid in sids:
            await client.start(sid)
        published: dict[str, list[str]] = {sid: [] for sid in sids}
        for i in range(count):  # interleaved across sessions, as a busy integrator would
            for sid in sids:
                published[sid].append(await client.say(sid, f"{sid}:{i}"))
        await events.all_settled([c for ids in published.values() for c in ids], timeout_s=35)
        for sid in sids:
            got = [r.text for r in stack.sim.received(stack.sim_session(sid))]
            assert got == [f"{sid}:{i}" for i in range(count)], f"{sid} out of order"
            outcomes = [events.settled(c)[0] for c in published[sid]]
            assert all(o.status == "delivered" for o in outcomes)
            seqs = [o.seq for o in outcomes]
            assert seqs == sorted(seqs), "outcomes are published in command order"


@pytest.mark.timeout(60)
async def test_busy_session_does_not_starve_the_others(broker_names: BrokerNames, amqp_url: str) -> None:
    """One session holds a 100-command backlog (its budget drains it at 20/s); 50 others each send one
    message after the whole backlog was published. Their outcomes must all arrive while the busy session's
    backlog is still draining, and the backlog then drains completely and in order."""
    others = [f"n{i:02d}" for i in range(50)]
    async with e2e_stack(
        broker_names,
        amqp_url,
        sim_config=quiet_simulator(message_rate_per_s=None),
        send_rate_per_s=20.0,
        send_burst=1,
        inbox_size=128,  # the backlog fits in the session's inbox: nothing overflows in this test
    ) as stack:
        client, events = stack.client, stack.client.events
        await client.started("busy")
        for sid in others:
            await client.start(sid)
        backlog = [await client.say("busy", f"backlog {i}") for i in range(100)]
        quick = [await client.say(sid, "one message") for sid in others]

        await events.all_settled(quick, timeout_s=30)
        busy_done = sum(1 for c in backlog if events.settled(c))
        assert busy_done < len(backlog), "the other sessions were served while the backlog was still draining"

        def backlog_position(got: list[Event]) -> dict[str, int]:
            return {e.command_id or "": n for n, e in enumerate(got) if isinstance(e, CommandOutcome)}

        await events.all_settled(backlog, timeout_s=30)
        position = backlog_position(events.events)
        last_quick = max(position[c] for c in quick)
        assert last_quick < position[backlog[-1]]
        assert all(events.settled(c)[0].status == "delivered" for c in backlog + quick)
        busy = [r.text for r in stack.sim.received(stack.sim_session("busy"))]
        assert busy == [f"backlog {i}" for i in range(100)]


@pytest.mark.timeout(30)
async def test_a_backlog_beyond_the_inbox_is_rejected_as_overflow(broker_names: BrokerNames, amqp_url: str) -> None:
    """The policy's other half: what does not fit in the session's inbox is answered ``overflow`` at once
    (and acked), so a flooded session never holds the shared prefetch window; the rest runs in order."""
    async with e2e_stack(
        broker_names,
        amqp_url,
        sim_config=quiet_simulator(message_rate_per_s=None),
        send_rate_per_s=5.0,
        send_burst=1,
        inbox_size=5,
    ) as stack:
        client, events = stack.client, stack.client.events
        await client.started("flood")
        await client.started("calm")
        flood = [await client.say("flood", f"flood {i}") for i in range(30)]
        calm = await client.say("calm", "hello")
        outcomes = await events.all_settled([*flood, calm], timeout_s=20)
        assert outcomes[-1].status == "delivered"
        statuses = [(o.status, o.reason) for o in outcomes[:-1]]
        delivered = [i for i, s in enumerate(statuses) if s == ("delivered", "ok")]
        overflowed = [i for i, s in enumerate(statuses) if s == ("rejected", "overflow")]
        assert len(delivered) + len(overflowed) == len(flood), statuses
        assert overflowed, "the inbox bound was hit"
        assert len(delivered) >= 6, "the inbox (5) and the command in hand were all served"
        assert all(len(events.settled(c)) == 1 for c in flood)
        received = [r.text for r in stack.sim.received(stack.sim_session("flood"))]
        assert received == [f"flood {i}" for i in delivered], "what was accepted ran in order"
