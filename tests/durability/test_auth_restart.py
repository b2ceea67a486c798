"""An authenticated session survives a restart, and its secrets appear nowhere in clear.

The bridge runs as a real process, logging at DEBUG, against a simulator with authentication on. While it is down the
customer's JWTs expire, so the next bridge must renew the JWT (with the journalled refresh token) before it
configures. The OAuth code, every JWT and every refresh token the simulator issued must be absent from the
daemons' logs, from every event, and from the journal's bytes (they are sealed with the state key).
"""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import AsyncIterator

import pytest

from bridge.amqp.journal import open_stream_journal
from bridge.config import Settings
from bridge.partition.layout import journal_stream_of, partition_of
from bridge.simulator import Simulator, SimulatorConfig
from tests.conftest import BrokerNames
from tests.daemon import Daemon
from tests.durability.conftest import EnvFactory
from tests.e2e.harness import Integrator

pytestmark = pytest.mark.timeout(60)

DEPLOYMENT = "0f4f1d2a-5b1e-4e0e-9f3a-2f5d8c1a7b10"
CODE = "auth-code-that-must-never-be-logged-7d41"
AUTH = {"code": CODE, "redirect_uri": "https://shop.example.com/callback"}


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A deployment with authentication on; the test speaks for the agent."""
    config = dataclasses.replace(SimulatorConfig.everything_on(), agent_script=False, auth_enabled=True)
    async with Simulator(config) as simulator:
        yield simulator


async def _journal_bodies(amqp_url: str, names: BrokerNames) -> list[bytes]:
    bodies: list[bytes] = []
    partition = partition_of("m1", Settings.model_fields["partitions"].default)
    settings = Settings(amqp_url=amqp_url, journal_stream=journal_stream_of(names.journal_stream, partition))
    async with open_stream_journal(settings, connection_name=f"{names.prefix}.reader") as journal:
        await journal.replay(bodies.append)
    return bodies


async def test_an_authenticated_session_resumes_after_a_restart_by_renewing_its_jwt(
    sim: Simulator, client: Integrator, bridge_env: EnvFactory, names: BrokerNames, amqp_url: str
) -> None:
    events = client.events
    async with Daemon(bridge_env(log_level="DEBUG"), name="first") as first:
        await first.started()
        await client.started("m1", deployment_id=DEPLOYMENT, auth=AUTH)
        said = await client.say("m1", "before the restart")
        assert (await events.outcome(said)).status == "delivered"
        assert await first.stop(signal.SIGTERM) == 0, first.tail()

    session = sim.sessions()[0]
    assert session.authenticated
    await sim.expire_jwts(session)  # the journalled JWT is dead: only a renewed one can configure
    await sim.agent_say(session, "while you were away")

    async with Daemon(bridge_env(log_level="DEBUG"), name="second") as second:
        await second.started()
        assert (await second.recovered())["sessions"] == 1
        await events.wait_for(lambda _: bool(events.of("m1", "session.resumed")))
        await events.wait_for(lambda _: any(m.text == "while you were away" for m in events.messages("m1")))
        said = await client.say("m1", "after the restart")
        assert (await events.outcome(said)).status == "delivered"
        refreshed = [n for n, e in enumerate(second.logs) if e.get("event") == "session_jwt_refreshed"]
        active = [
            n
            for n, e in enumerate(second.logs)
            if e.get("event") == "session_state_changed" and e.get("new") == "active"
        ]
        assert refreshed
        assert active
        assert refreshed[0] < active[0], "renewed before the resume's configure"
        assert await second.stop(signal.SIGTERM) == 0, second.tail()

    secrets = [CODE, *sim.engine.auth._jwts, *sim.engine.auth._grants]  # everything the simulator issued
    assert len(secrets) >= 4  # the code, two JWTs (exchange and renewal) and a refresh token at least
    logs = "\n".join(first.lines + second.lines)
    published = b"\n".join(body for _key, _properties, body in events.raw)
    journal = b"".join(await _journal_bodies(amqp_url, names))
    assert journal, "the session was journalled"
    for secret in secrets:
        assert secret not in logs
        assert secret.encode() not in published
        assert secret.encode() not in journal
