"""Replicas as real processes sharing one deployment's partitions (docs/scaling.md).

Each test runs several ``genesys-bridge run`` daemons on the same queues, with fast probes and balance,
against the simulator, and checks what the users of a scaled-out bridge rely on: a dead replica's sessions
are resumed by the others, missed agent messages are backfilled, commands are delivered once and in order
per session, and no two replicas ever serve one session at a time.
"""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from bridge.simulator import Simulator
from genesys_bridge_client.contract.events import CommandOutcome
from tests.conftest import BrokerNames
from tests.durability.conftest import EnvFactory
from tests.durability.helpers import (
    Conversation,
    agent_ids_published,
    assert_resumed_in_place,
    open_sessions,
    queue_commands,
    wait_all_published,
    wait_received_texts,
)
from tests.durability.replicas import Replicas, owned_partitions
from tests.e2e.harness import Integrator, kill_connection, ready_count

pytestmark = pytest.mark.timeout(240)

#: The bound the failover of a replica's sessions must keep (probe, fence grace, replay and paced resume).
FAILOVER_S = 15.0


def _check_delivered_once_in_order(sim: Simulator, client: Integrator, conversations: list[Conversation]) -> None:
    """Every queued command reached Genesys once, in publish order, and was answered once."""
    for conv in conversations:
        texts = [text for _, text in conv.commands]
        received = [r.text for r in sim.received(conv.token) if r.text in texts]
        assert received == texts, f"{conv.session_id}: Genesys got {received}, expected {texts}"
        for command_id, _ in conv.commands:
            settled = client.events.settled(command_id)
            assert len(settled) == 1, settled
            assert isinstance(settled[0], CommandOutcome)
            assert settled[0].status == "delivered", settled[0]


async def _wait_delivered(sim: Simulator, client: Integrator, conversations: list[Conversation]) -> None:
    for conv in conversations:
        await client.events.all_settled([command_id for command_id, _ in conv.commands])
        await wait_received_texts(sim, conv, [text for _, text in conv.commands])


async def test_sigkill_of_the_largest_owner_moves_its_sessions_to_the_others(
    sim: Simulator, client: Integrator, bridge_env: EnvFactory, names: BrokerNames, amqp_url: str
) -> None:
    """3 replicas, 300 sessions: the others resume every session of the killed one within the bound,
    backfill what the agent said meanwhile, and deliver the commands queued meanwhile once, in order.
    Nothing reaches the dead-letter queue (a probe left by the dead replica included)."""
    async with Replicas(bridge_env, partitions=6) as fleet:
        for name in ("r0", "r1", "r2"):
            await fleet.add(name)
        await fleet.wait_balanced()
        conversations = await open_sessions(client, sim, [f"s{i}" for i in range(300)])
        victim = max(fleet.alive, key=lambda d: len(fleet.sessions_of(d, [c.session_id for c in conversations])))
        moved_ids = set(fleet.sessions_of(victim, [c.session_id for c in conversations]))
        moved = [c for c in conversations if c.session_id in moved_ids]
        assert moved
        for conv in moved:
            await conv.say(sim, f"agent {conv.session_id} before")
        await wait_all_published(client.events, moved)

        assert await victim.stop(signal.SIGKILL) == -signal.SIGKILL
        for conv in moved:
            await conv.say(sim, f"agent {conv.session_id} while moving")
        await queue_commands(client, moved, 3)

        await client.events.wait_every_session([c.session_id for c in moved], "session.resumed", timeout_s=FAILOVER_S)
        await wait_all_published(client.events, moved)
        await _wait_delivered(sim, client, moved)
        _check_delivered_once_in_order(sim, client, moved)
        for conv in moved:
            assert_resumed_in_place(sim, conv)
            assert fleet.owner(conv.session_id) not in (None, victim)
        published = agent_ids_published(client.events)
        assert all(published[mid] >= 1 for conv in moved for mid in conv.agent_ids)
        # Balancing may move the survivors' sessions too (a replica that took more than its share hands
        # some back): each is resumed in place, and none ends.
        await fleet.wait_balanced()
        for conv in conversations:
            assert_resumed_in_place(sim, conv)
            assert not client.events.of(conv.session_id, "session.ended"), conv.session_id
        assert await ready_count(amqp_url, names.dead_letter_queue) == 0


async def test_a_rolling_restart_settles_every_command_once(
    sim: Simulator, client: Integrator, bridge_env: EnvFactory
) -> None:
    """Each of 3 replicas is replaced in turn (SIGTERM, then a new one) while commands keep coming: every
    command gets exactly one settled outcome and reaches Genesys once, in order per session."""
    async with Replicas(bridge_env, partitions=6) as fleet:
        for name in ("a0", "a1", "a2"):
            await fleet.add(name)
        await fleet.wait_balanced()
        conversations = await open_sessions(client, sim, [f"r{i}" for i in range(30)])
        for step, old in enumerate(list(fleet.daemons)):
            await queue_commands(client, conversations, 1)
            stopping = old.stop(signal.SIGTERM)
            await queue_commands(client, conversations, 1)  # published while the replica drains
            assert await stopping == 0, old.tail()
            await fleet.add(f"b{step}")
            await queue_commands(client, conversations, 1)
            await fleet.wait_balanced()
        await _wait_delivered(sim, client, conversations)
        _check_delivered_once_in_order(sim, client, conversations)
        for conv in conversations:
            assert_resumed_in_place(sim, conv)
            assert not client.events.of(conv.session_id, "session.ended")


async def test_scale_out_takes_a_share_and_scale_in_moves_sessions(
    sim: Simulator, client: Integrator, bridge_env: EnvFactory
) -> None:
    """A 4th replica owns its share of the partitions and serves their sessions; a replica that leaves
    hands its sessions to the others, which serve them."""
    async with Replicas(bridge_env, partitions=8) as fleet:
        for name in ("o0", "o1", "o2"):
            await fleet.add(name)
        await fleet.wait_balanced()
        conversations = await open_sessions(client, sim, [f"o{i}" for i in range(40)])
        newcomer = await fleet.add("o3")
        await fleet.wait_balanced(timeout_s=30)
        assert len(owned_partitions(newcomer)) == 2
        served = [c for c in conversations if fleet.owner(c.session_id) is newcomer]
        assert served
        await queue_commands(client, served, 1)
        await _wait_delivered(sim, client, served)

        leaving = fleet.daemons[0]
        leaving_ids = set(fleet.sessions_of(leaving, [c.session_id for c in conversations]))
        assert await leaving.stop(signal.SIGTERM) == 0, leaving.tail()
        await fleet.wait_balanced(timeout_s=30)
        moved = [c for c in conversations if c.session_id in leaving_ids]
        await queue_commands(client, moved, 1)
        await _wait_delivered(sim, client, moved)
        _check_delivered_once_in_order(sim, client, served + [c for c in moved if c not in served])
        for conv in conversations:
            assert_resumed_in_place(sim, conv)
            assert not client.events.of(conv.session_id, "session.ended")


async def test_a_replica_cut_off_from_the_broker_fences_its_sessions(
    sim: Simulator, client: Integrator, bridge_env: EnvFactory
) -> None:
    """Its broker connections force-closed, a replica closes its sockets without ending the sessions, and
    exactly one other replica serves them: one socket per session, every command delivered once."""
    async with Replicas(bridge_env, partitions=4) as fleet:
        cut = await fleet.add("f0")
        await fleet.wait_balanced()  # f0 alone owns every partition
        conversations = await open_sessions(client, sim, [f"f{i}" for i in range(20)])
        other = await fleet.add("f1")
        await fleet.wait_balanced()
        for conv in conversations:
            await queue_commands(client, [conv], 1)
        await _wait_delivered(sim, client, conversations)
        held = [c for c in conversations if fleet.owner(c.session_id) is cut]
        assert held

        closed = await kill_connection("genesys-bridge.f0.", prefix=True)
        assert closed >= 4
        await cut.wait_for(
            lambda: len(cut.events("partition_lost")) >= 2, what="f0 fences its partitions", timeout_s=FAILOVER_S
        )
        await client.events.wait_every_session([c.session_id for c in held], "session.resumed", timeout_s=FAILOVER_S)
        await queue_commands(client, held, 1)
        await _wait_delivered(sim, client, held)
        _check_delivered_once_in_order(sim, client, conversations)
        for conv in held:
            session = assert_resumed_in_place(sim, conv)
            assert len(session.connections) == 1, session
            assert not client.events.of(conv.session_id, "session.ended")
        assert other.alive
        assert cut.alive


async def test_one_partition_is_active_and_standby(sim: Simulator, client: Integrator, bridge_env: EnvFactory) -> None:
    """With one partition, one replica serves every session and the other is a ready standby that takes
    over when the first is killed."""
    async with Replicas(bridge_env, partitions=1) as fleet:
        active = await fleet.add("p0")
        await fleet.wait_balanced()
        standby = await fleet.add("p1")
        status, body = await standby.get("/readyz")
        assert status == 200, body  # a replica that owns nothing is a ready standby
        conversations = await open_sessions(client, sim, [f"a{i}" for i in range(5)])
        assert owned_partitions(active) == {0}
        assert not owned_partitions(standby)

        assert await active.stop(signal.SIGKILL) == -signal.SIGKILL
        await queue_commands(client, conversations, 2)
        await client.events.wait_every_session(
            [c.session_id for c in conversations], "session.resumed", timeout_s=FAILOVER_S
        )
        assert owned_partitions(standby) == {0}
        await _wait_delivered(sim, client, conversations)
        _check_delivered_once_in_order(sim, client, conversations)
        assert Counter(type(e).__name__ for e in client.events.events)["SessionEnded"] == 0
