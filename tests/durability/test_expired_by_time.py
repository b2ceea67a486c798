"""A session whose Genesys TTL runs out while the bridge is down ends as ``expired`` after the restart.

Genesys answers a resume of an expired token with a brand-new session (``newSession:true``, protocol
reference §4.1), exactly as it answers a token it lost. Only the expiry the bridge kept in the session
record (``durationSeconds``/``expirationDate``, moved on by activity, §7) tells the two apart, so here the
simulator expires the session by its own inactivity timer, not by a control call.
"""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import AsyncIterator

import pytest

from bridge.simulator import Simulator, SimulatorConfig
from bridge.simulator.session import SessionState
from tests.durability.conftest import EnvFactory
from tests.durability.daemon import Daemon
from tests.durability.helpers import open_sessions
from tests.e2e.harness import Integrator

#: Long enough to open the session and stop the bridge before it runs out; short enough for a test.
TTL_S = 4.0


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """Genesys with a short inactivity TTL (overrides the folder's fixture for this module)."""
    config = dataclasses.replace(SimulatorConfig.everything_on(), agent_script=False, session_duration_s=TTL_S)
    async with Simulator(config) as simulator:
        yield simulator


async def test_session_expired_by_its_ttl_while_down_ends_as_expired(
    sim: Simulator, client: Integrator, bridge_env: EnvFactory
) -> None:
    async with Daemon(bridge_env(), name="first") as first:
        await first.started()
        (conv,) = await open_sessions(client, sim, ["ttl"])
        assert await first.stop(signal.SIGTERM) == 0
    session = sim.session(conv.token)
    assert session.state == SessionState.ACTIVE, "the TTL ran out before the bridge stopped: raise TTL_S"

    # Await the simulator's own expiry timer (an event, not a sleep).
    await sim.wait_for(lambda: True if sim.session(conv.token).state == SessionState.EXPIRED else None)

    async with Daemon(bridge_env(), name="second") as second:
        await second.recovered()
        ended = await client.events.ended("ttl")
        await second.stop(signal.SIGTERM)
    assert ended.reason == "expired", ended
