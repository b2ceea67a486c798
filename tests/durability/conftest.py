"""Fixtures for the durable-session tests: the simulator in-process, the bridge as a real subprocess.

Each test gets its own exchanges, intake queue, dead-letter queue and journal stream (``broker_names``),
deleted afterwards, and a fresh state key. ``bridge_env()`` builds the daemon's environment; every call
picks a new HTTP port, so a restarted daemon never races its killed predecessor for the port.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Callable

import pytest

from bridge.amqp.tools import delete_names
from bridge.simulator import Simulator, SimulatorConfig
from bridge.store import generate_key
from tests.conftest import BrokerNames
from tests.daemon import free_port
from tests.e2e.harness import Integrator, integrator

EnvFactory = Callable[..., dict[str, str]]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """Genesys, played in this process (every optional feature on); no scripted agent (the test speaks
    for the agent)."""
    config = dataclasses.replace(SimulatorConfig.everything_on(), agent_script=False)
    async with Simulator(config) as simulator:
        yield simulator


@pytest.fixture
def state_key() -> str:
    return generate_key()


@pytest.fixture
async def names(broker_names: BrokerNames, amqp_url: str) -> AsyncIterator[BrokerNames]:
    """``broker_names``, and everything named after them deleted when the test ends."""
    yield broker_names
    await delete_names(
        amqp_url,
        exchanges=(broker_names.command_exchange, broker_names.event_exchange),
        queues=broker_names.queues(),
    )


@pytest.fixture
def bridge_env(names: BrokerNames, amqp_url: str, sim: Simulator, state_key: str) -> EnvFactory:
    """``bridge_env(**overrides)``: the daemon's environment (``BRIDGE_*`` names; overrides by short name)."""

    def build(**overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        env.update(
            names.environment(),
            BRIDGE_AMQP_URL=amqp_url,
            BRIDGE_STATE_KEY=state_key,
            BRIDGE_GENESYS_BASE_URL=sim.base_url,
            BRIDGE_HTTP_HOST="127.0.0.1",
            BRIDGE_HTTP_PORT=str(free_port()),
            BRIDGE_RESUME_RATE_PER_S="1000",
            BRIDGE_DRAIN_TIMEOUT_S="10",
            BRIDGE_STARTUP_TIMEOUT_S="20",
            BRIDGE_LOG_FORMAT="json",
            BRIDGE_LOG_LEVEL="INFO",
        )
        env.update({f"BRIDGE_{key.upper()}": value for key, value in overrides.items()})
        return env

    return build


@pytest.fixture
async def client(names: BrokerNames, amqp_url: str) -> AsyncIterator[Integrator]:
    """A backend service: publishes commands, collects every event (bound before the first daemon starts)."""
    async with integrator(amqp_url, command_exchange=names.command_exchange, event_exchange=names.event_exchange) as it:
        yield it
