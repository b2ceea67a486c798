"""Commands in flight at a SIGKILL are redelivered by RabbitMQ; each still takes effect once (docs/durability.md).

The simulator holds back its echo of the guest's message, so the bridge is killed after Genesys accepted the
message but before the bridge saw the echo, answered and acked the command: the one window a crash leaves.
The in-memory ``command_id`` cache died with the process, so what keeps the effect single is the journal:
the record holds the start's ``command_id`` and the sends not yet echoed (``pending_sends``), and the
restarted session recognises them in the backfill instead of sending again.
"""

from __future__ import annotations

import signal

from bridge.simulator import Simulator
from tests.daemon import Daemon
from tests.durability.conftest import EnvFactory
from tests.durability.helpers import open_sessions
from tests.e2e.harness import Integrator

#: Long enough that the kill always lands inside the window; the restart lifts the delay.
ECHO_HELD_S = 30.0


async def test_message_send_in_flight_at_sigkill_reaches_genesys_once(
    sim: Simulator, client: Integrator, bridge_env: EnvFactory
) -> None:
    async with Daemon(bridge_env(), name="first") as first:
        await first.started()
        (conv,) = await open_sessions(client, sim, ["inflight"])
        await sim.set_delay(conv.token, ECHO_HELD_S, classes=["StructuredMessage"])
        command_id = await client.say(conv.session_id, "only once, please")
        await sim.wait_for(lambda: any(r.text == "only once, please" for r in sim.received(conv.token)) or None)
        assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
    await sim.set_delay(conv.token, 0.0)

    async with Daemon(bridge_env(), name="second") as second:
        await second.recovered()
        await client.events.outcome(command_id)
    assert [r.text for r in sim.received(conv.token)].count("only once, please") == 1
    settled = [o.status for o in client.events.outcomes(command_id) if o.status != "will_retry"]
    assert settled == ["delivered"], client.events.outcomes(command_id)


async def test_session_start_in_flight_at_sigkill_is_answered_once_as_delivered(
    sim: Simulator, client: Integrator, bridge_env: EnvFactory
) -> None:
    async with Daemon(bridge_env(), name="first") as first:
        await first.started()
        await sim.set_delay(None, ECHO_HELD_S, classes=["StructuredMessage"])
        command_id = await client.start("starting", initial_message="hello from starting")
        await client.events.wait_for(lambda _: bool(client.events.of("starting", "session.started")))
        session = await sim.wait_session(first_text="hello from starting", timeout_s=30)
        assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
    await sim.set_delay(None, 0.0)

    async with Daemon(bridge_env(), name="second") as second:
        await second.recovered()
        await client.events.outcome(command_id)
    # Whether or not the first record was confirmed before the kill: one Genesys session, one initial
    # message, and one answer, "delivered".
    assert [s.session_id for s in sim.sessions()] == [session.session_id]
    assert [r.text for r in sim.received(session.token)].count("hello from starting") == 1
    assert [o.status for o in client.events.outcomes(command_id)] == ["delivered"], client.events.outcomes(command_id)
