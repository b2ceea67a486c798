"""A connection from which nothing more arrives: aiormq's heartbeat gives it up as stuck and raises its
reader's ``CancelledError`` into every call waiting on it. That must reach the caller as a retryable
``BrokerUnavailable``; as a cancellation, it ended the fleet's probe task without a word. Against the real
broker, through a relay that holds back its answers (and its heartbeats)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from pydantic import SecretStr

from bridge.amqp.connection import ReopeningConnection
from bridge.amqp.forwarder import QueueForwarder
from bridge.config import Settings
from bridge.errors import BrokerUnavailable
from tests.amqp.conftest import WAIT_S, Broker
from tests.amqp.held_answers import HeldAnswers

#: The shortest heartbeat: aiormq gives a connection up after (1 + 1) x 3 s without a frame.
HEARTBEAT_URL_QUERY = "?heartbeat=1"


@asynccontextmanager
async def relayed_forwarder(settings: Settings) -> AsyncIterator[tuple[QueueForwarder, HeldAnswers]]:
    """A forwarder whose broker connection goes through a relay, with the shortest heartbeat."""
    async with HeldAnswers(settings.amqp_url.get_secret_value()) as relay:
        relayed = settings.model_copy(update={"amqp_url": SecretStr(relay.url + HEARTBEAT_URL_QUERY)})
        async with ReopeningConnection(relayed, name=f"{settings.intake_queue}.stuck") as connection:
            forwarder = QueueForwarder(connection, confirm_timeout_s=settings.publish_timeout_s)
            try:
                yield forwarder, relay
            finally:
                await forwarder.close()


async def test_a_declare_waiting_on_a_connection_given_up_as_stuck_is_broker_unavailable(
    settings: Settings, broker: Broker
) -> None:
    async with relayed_forwarder(settings) as (forwarder, relay), asyncio.timeout(WAIT_S):
        assert await forwarder.inspect(settings.intake_queue) is not None  # the link works; its channel stays
        relay.hold()
        with pytest.raises(BrokerUnavailable, match="stuck"):
            await forwarder.inspect(settings.intake_queue)


async def test_a_channel_opening_on_a_connection_given_up_as_stuck_is_broker_unavailable(
    settings: Settings, broker: Broker
) -> None:
    async with relayed_forwarder(settings) as (forwarder, relay), asyncio.timeout(WAIT_S):
        assert await forwarder.inspect(settings.intake_queue) is not None  # the connection is open
        relay.hold()
        with pytest.raises(BrokerUnavailable, match="stuck"):
            await forwarder.hold(f"{settings.intake_queue}.presence")  # on a channel of its own
