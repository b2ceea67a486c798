"""Sessions that Genesys ended while the bridge was down end with the right reason after a restart.

Contract (``session.ended.reason``): ``expired`` when the session TTL elapsed, ``read_only`` (or
``agent_disconnected``) when the agent's disconnect made the session read-only. An agent's disconnect in
Send mode ends nothing: after the restart it is published as ``presence.received`` and the session goes on.
An ended session is journalled as closed, so a second restart never resumes it.
"""

from __future__ import annotations

import signal

from bridge.simulator import Simulator
from genesys_bridge_client.contract.events import PresenceReceived, SessionEnded
from tests.daemon import Daemon
from tests.durability.conftest import EnvFactory
from tests.durability.helpers import assert_resumed_in_place, open_sessions
from tests.e2e.harness import Integrator


async def _ended_while_down(sim: Simulator, client: Integrator, env: EnvFactory) -> dict[str, SessionEnded]:
    async with Daemon(env(), name="first") as first:
        await first.started()
        convs = await open_sessions(client, sim, ["expired", "read-only", "send-mode", "alive"])
        # SIGTERM: every session.start is acked. After a SIGKILL a redelivered start for a session that then
        # ends at the resume would start a new conversation (see test_redelivery.py).
        assert await first.stop(signal.SIGTERM) == 0
    by_id = {c.session_id: c for c in convs}
    await sim.expire(by_id["expired"].token)
    await sim.disconnect(by_id["read-only"].token, read_only=True)
    await sim.disconnect(by_id["send-mode"].token, read_only=False)

    async with Daemon(env(), name="second") as second:
        finished = await second.recovered()
        assert finished["sessions"] == 4
        ended = {sid: await client.events.ended(sid) for sid in ("expired", "read-only")}
        await client.events.wait_for(lambda _: bool(client.events.of("send-mode", "presence.received")))
        assert_resumed_in_place(sim, by_id["alive"])
        for alive in ("alive", "send-mode"):
            assert not client.events.of(alive, "session.ended")
        await second.stop(signal.SIGTERM)

    async with Daemon(env(), name="third") as third:  # the ended ones were journalled closed
        await third.started()
        assert (await third.recovered())["sessions"] == 2
        await client.events.wait_for(lambda _: len(client.events.of("alive", "session.resumed")) == 2)
    return ended


async def test_sessions_ended_while_down_end_with_their_reason_and_send_mode_goes_on(
    sim: Simulator, client: Integrator, bridge_env: EnvFactory
) -> None:
    ended = await _ended_while_down(sim, client, bridge_env)
    # The resume is answered readOnly:true before any history is read, hence read_only (the contract allows
    # either reason for a disconnect that left the session read-only).
    assert ended["read-only"].reason in ("read_only", "agent_disconnected"), ended["read-only"]
    (presence,) = client.events.of("send-mode", "presence.received")
    assert isinstance(presence, PresenceReceived)
    assert (presence.kind, presence.read_only) == ("disconnect", False)
    # Expired by a control call, no time passed: Genesys' newSession:true looks like a lost conversation
    # (test_expired_by_time.py covers the real TTL). Either way it is never revived as a fresh conversation.
    assert ended["expired"].reason in ("expired", "conversation_lost"), ended["expired"]
