"""Test your own service against genesys-bridge without a Genesys org: a simulator, a bridge, a client.

Add ``pytest_plugins = ["bridge.testing"]`` to your ``conftest.py`` and take the ``genesys_bridge`` fixture:
it starts the Genesys simulator and a bridge (in the test's event loop, on exchanges and queues of the
test's own) against the RabbitMQ at ``GENESYS_BRIDGE_TEST_AMQP_URL`` (default
``amqp://guest:guest@127.0.0.1:5672/``), and hands you a :class:`Sandbox` with a connected
:class:`~genesys_bridge_client.BridgeClient` and the simulator's agent side::

    async def test_my_service_answers_the_agent(genesys_bridge: Sandbox) -> None:
        async with genesys_bridge.client.events() as events:
            await my_service.start(genesys_bridge.client, "order-1", genesys_bridge.deployment_id)
            await genesys_bridge.agent_say("order-1", "How can I help?")
            ...

The simulator behaves like a real Genesys deployment with default settings (Messenger features off);
mark a test ``@pytest.mark.genesys_simulator(profile="everything-on")`` or with any
:class:`~bridge.simulator.SimulatorConfig` field (``@pytest.mark.genesys_simulator(clear_enabled=True)``)
to change it. Needs pytest-asyncio (the ``testing`` extra). Outside pytest, :func:`sandbox` is the same
thing as an async context manager.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import pytest
import pytest_asyncio

from bridge.amqp.tools import DeploymentNames, delete_deployment
from bridge.app import Bridge, running_bridge
from bridge.config import Settings
from bridge.errors import BrokerError
from bridge.observability.metrics import Metrics
from bridge.simulator import Received, Session, Simulator, SimulatorConfig
from genesys_bridge_client import BridgeClient

__all__ = ["DEFAULT_AMQP_URL", "Sandbox", "genesys_bridge", "genesys_bridge_amqp_url", "sandbox"]

DEFAULT_AMQP_URL: Final = "amqp://guest:guest@127.0.0.1:5672/"
#: A deployment id the simulator accepts (it accepts any unless configured otherwise).
SANDBOX_DEPLOYMENT: Final = "00000000-0000-4000-8000-000000000001"
SANDBOX_REGION: Final = "mypurecloud.com"


@dataclass(frozen=True)
class Sandbox:
    """A running simulator and bridge, and a client connected to the bridge.

    ``client`` is yours to use; ``amqp_url``, ``command_exchange`` and ``event_exchange`` are for a service
    that talks AMQP itself. The agent side is driven through the methods below (or ``simulator``'s full
    control API), by the bridge's ``session_id``.
    """

    client: BridgeClient
    simulator: Simulator
    bridge: Bridge
    amqp_url: str
    command_exchange: str
    event_exchange: str
    deployment_id: str = SANDBOX_DEPLOYMENT
    region: str = SANDBOX_REGION

    def genesys_session(self, session_id: str) -> Session:
        """The simulator's session behind the live bridge session ``session_id``.

        Raises:
            KeyError: no live bridge session of that id (start it and await its outcome first).
        """
        actor = self.bridge.sessions.get(session_id)
        if actor is None:
            raise KeyError(f"no live bridge session {session_id!r}")
        return self.simulator.session(actor.record.token.get_secret_value())

    async def agent_say(self, session_id: str, text: str, *, nickname: str | None = "Agent") -> str:
        """The agent writes ``text`` into the conversation; returns the Genesys message id."""
        return await self.simulator.agent_say(self.genesys_session(session_id), text, nickname=nickname)

    async def bot_say(self, session_id: str, text: str, *, quick_replies: tuple[str, ...] = ()) -> str:
        """A bot writes ``text``, with quick-reply buttons when given; returns the Genesys message id."""
        content = [
            {"contentType": "QuickReply", "quickReply": {"text": reply, "payload": reply, "action": "Message"}}
            for reply in quick_replies
        ]
        return await self.simulator.agent_say(
            self.genesys_session(session_id), text, content=content or None, originating_entity="Bot"
        )

    async def agent_disconnect(self, session_id: str) -> None:
        """The agent ends the conversation (the session becomes read-only; the bridge ends it)."""
        await self.simulator.disconnect(self.genesys_session(session_id), read_only=True)

    async def guest_messages(self, session_id: str, count: int = 1) -> list[str]:
        """Wait until Genesys received at least ``count`` guest texts in the session; return them all."""

        def texts() -> list[str] | None:
            try:
                received = self.genesys_session(session_id).received
            except KeyError:
                return None
            got = [text for text in map(_text, received) if text is not None]
            return got if len(got) >= count else None

        return await self.simulator.wait_for(texts)


def _text(received: Received) -> str | None:
    if received.type != "Text":
        return None
    text = received.body.get("text")
    return text if isinstance(text, str) else None


@contextlib.asynccontextmanager
async def sandbox(
    *,
    amqp_url: str | None = None,
    simulator: SimulatorConfig | None = None,
    route: str | None = None,
    prefix: str | None = None,
) -> AsyncIterator[Sandbox]:
    """Start a simulator, a bridge and a client on exchanges and queues of their own; take them down after.

    ``prefix`` names the exchanges and queues (a random one by default, so parallel runs never meet); they
    are deleted on exit. ``route`` is the client's owner route.

    Raises:
        bridge.errors.BridgeError: RabbitMQ cannot be reached at ``amqp_url``.
    """
    url = amqp_url or os.environ.get("GENESYS_BRIDGE_TEST_AMQP_URL", DEFAULT_AMQP_URL)
    prefix = prefix or f"sandbox.{uuid.uuid4().hex[:12]}"
    names = DeploymentNames(prefix)
    settings: Settings | None = None
    try:
        async with Simulator(simulator or SimulatorConfig(agent_script=False, agent_greeting=None)) as sim:
            settings = Settings.load(
                amqp_url=url,
                genesys_base_url=sim.base_url,
                durable_sessions=False,
                http_host="127.0.0.1",
                http_port=0,
                drain_timeout_s=5.0,
                command_exchange=names.command_exchange,
                intake_queue=names.intake_queue,
                event_exchange=names.event_exchange,
                dead_letter_queue=names.dead_letter_queue,
            )
            async with (
                running_bridge(settings, metrics=Metrics(process_metrics=False), connection_name=prefix) as bridge,
                BridgeClient(
                    url,
                    route=route,
                    command_exchange=names.command_exchange,
                    event_exchange=names.event_exchange,
                    connection_name=f"{prefix}.client",
                ) as client,
            ):
                yield Sandbox(client, sim, bridge, url, names.command_exchange, names.event_exchange)
    finally:
        # A broker that is away must not replace the error that says so with a second one from the clean-up.
        with contextlib.suppress(BrokerError):
            if settings is not None:  # the partition, presence and hunger queues too
                await delete_deployment(url, settings)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "genesys_simulator(profile=None, **fields): the Genesys simulator the genesys_bridge fixture starts "
        "(a profile such as 'everything-on', and SimulatorConfig fields)",
    )


@pytest.fixture(scope="session")
def genesys_bridge_amqp_url() -> str:
    """The RabbitMQ the ``genesys_bridge`` fixture uses: ``GENESYS_BRIDGE_TEST_AMQP_URL``, else the local
    default. Override this fixture in your ``conftest.py`` to take it from elsewhere."""
    return os.environ.get("GENESYS_BRIDGE_TEST_AMQP_URL", DEFAULT_AMQP_URL)


@pytest_asyncio.fixture
async def genesys_bridge(request: pytest.FixtureRequest, genesys_bridge_amqp_url: str) -> AsyncIterator[Sandbox]:
    """A running simulator and bridge and a connected client, for one test (see the module docstring)."""
    marker = request.node.get_closest_marker("genesys_simulator")
    # The agent is yours to drive: the simulator's scripted bot stays quiet unless the marker asks for it.
    fields: dict[str, Any] = {"agent_script": False, "agent_greeting": None}
    fields |= marker.kwargs if marker is not None else {}
    profile = fields.pop("profile", None)
    base = SimulatorConfig.profile(profile) if profile else SimulatorConfig()
    config = dataclasses.replace(base, port=0, **fields)
    async with sandbox(amqp_url=genesys_bridge_amqp_url, simulator=config) as running:
        yield running
