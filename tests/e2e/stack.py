"""One end-to-end stack: the simulator, the bridge (in this process) and an integrator, on real sockets.

``e2e_stack`` starts them in that order and takes them down in reverse; every exchange and queue it
names belongs to the test (``broker_names``) and is deleted afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from bridge.amqp.tools import delete_names
from bridge.app import Bridge, running_bridge
from bridge.config import Settings
from bridge.observability.metrics import Metrics
from bridge.simulator import Session, Simulator, SimulatorConfig
from tests.conftest import BrokerNames
from tests.e2e.harness import DeadLetters, Integrator, dead_letters, integrator

__all__ = ["Stack", "cleanup_names", "e2e_settings", "e2e_stack", "quiet_simulator"]


@dataclass
class _Profile:
    """The simulator profile of the running test: every end-to-end test runs against each (see conftest).

    A plain holder, not a context variable: the test's event loop runs in a context copied before the
    fixture that picks the profile.
    """

    name: str = "real"


_profile = _Profile()


@contextlib.contextmanager
def simulator_profile(name: str) -> Iterator[None]:
    """Run the enclosed test against the simulator profile ``name`` ("real" or "everything-on")."""
    previous, _profile.name = _profile.name, name
    try:
        yield
    finally:
        _profile.name = previous


def quiet_simulator(**overrides: Any) -> SimulatorConfig:
    """A simulator of the test's profile whose scripted agent stays silent (tests drive the agent through
    the control API). ``overrides`` name what a test needs whatever the profile, e.g. Disconnect on."""
    values: dict[str, Any] = {"agent_script": False, "agent_greeting": None, **overrides}
    return dataclasses.replace(SimulatorConfig.profile(_profile.name), **values)


def e2e_settings(names: BrokerNames, amqp_url: str, *, genesys_base_url: str, **overrides: Any) -> Settings:
    """Settings for one test: its own names, an ephemeral HTTP port, fast reconnects, no journal."""
    values: dict[str, Any] = {
        "amqp_url": amqp_url,
        "command_exchange": names.command_exchange,
        "intake_queue": names.intake_queue,
        "event_exchange": names.event_exchange,
        "dead_letter_queue": names.dead_letter_queue,
        "journal_stream": names.journal_stream,
        "http_host": "127.0.0.1",
        "http_port": 0,
        "genesys_base_url": genesys_base_url,
        "durable_sessions": False,
        "reconnect_initial_s": 0.05,
        "reconnect_max_s": 0.2,
        "broker_reconnect_max_s": 0.2,
        "drain_timeout_s": 5.0,
    }
    values.update(overrides)
    return Settings.load(**values)


async def cleanup_names(names: BrokerNames, amqp_url: str) -> None:
    await delete_names(
        amqp_url,
        exchanges=(names.command_exchange, names.event_exchange),
        queues=names.queues(),
    )


@dataclass
class Stack:
    """The running parts of one end-to-end test."""

    sim: Simulator
    bridge: Bridge
    client: Integrator
    dlq: DeadLetters
    settings: Settings
    connection_name: str
    tokens: dict[str, str] = field(default_factory=dict)

    def sim_session(self, session_id: str) -> Session:
        """The simulator's session behind the bridge's ``session_id`` (its token is remembered once seen)."""
        token = self.tokens.get(session_id)
        if token is None:
            actor = self.bridge.sessions.get(session_id)
            assert actor is not None, f"no live bridge session {session_id!r}"
            token = self.tokens[session_id] = actor.record.token.get_secret_value()
        return self.sim.session(token)


@contextlib.asynccontextmanager
async def e2e_stack(
    names: BrokerNames, amqp_url: str, *, sim_config: SimulatorConfig | None = None, **overrides: Any
) -> AsyncIterator[Stack]:
    """Simulator, bridge and integrator, all started; ``overrides`` go to :class:`Settings`."""
    connection_name = f"e2e.{names.prefix}"
    try:
        async with Simulator(sim_config or quiet_simulator()) as sim:
            settings = e2e_settings(names, amqp_url, genesys_base_url=sim.base_url, **overrides)
            async with (
                running_bridge(
                    settings, metrics=Metrics(process_metrics=False), connection_name=connection_name
                ) as bridge,
                integrator(
                    amqp_url, command_exchange=settings.command_exchange, event_exchange=settings.event_exchange
                ) as client,
                dead_letters(amqp_url, settings.dead_letter_queue) as dlq,
            ):
                yield Stack(sim, bridge, client, dlq, settings, connection_name)
    finally:
        await cleanup_names(names, amqp_url)
