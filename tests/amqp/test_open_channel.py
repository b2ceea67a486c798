"""A channel asked of a connection the broker just dropped: a retryable ``BrokerUnavailable``, never an
exception that ends the task that asked (and with it the process). Against the real broker.

aio-pika and aiormq raise a bare ``RuntimeError`` for it. The window is one loop turn between the broker's
close and the owner's close callback; a replica cut off from the broker while busy hits it.
"""

from __future__ import annotations

import asyncio

import pytest

from bridge.amqp.connection import ReopeningConnection, open_channel, open_connection
from bridge.amqp.consumer import CommandIntake
from bridge.amqp.forwarder import QueueForwarder
from bridge.amqp.publisher import AmqpEventPublisher
from bridge.config import Settings
from bridge.errors import BrokerUnavailable, is_retryable
from bridge.observability.metrics import Metrics
from tests.amqp.conftest import WAIT_S, Broker, CutOffConnect, RecordingHandler, cut_off


@pytest.mark.parametrize("publisher_confirms", [False, True])
async def test_a_channel_on_a_connection_cut_off_under_it_is_broker_unavailable(
    settings: Settings, publisher_confirms: bool
) -> None:
    connection = await open_connection(settings, name=f"{settings.intake_queue}.cut")
    try:
        await cut_off(connection)
        with pytest.raises(BrokerUnavailable, match="closed while a channel opened") as raised:
            await open_channel(connection, publisher_confirms=publisher_confirms)
        assert is_retryable(raised.value)
    finally:
        await connection.close()


async def test_a_channel_on_a_connection_we_closed_is_broker_unavailable(settings: Settings) -> None:
    connection = await open_connection(settings, name=f"{settings.intake_queue}.closed")
    await connection.close()
    with pytest.raises(BrokerUnavailable):
        await open_channel(connection, publisher_confirms=False)


async def test_holding_presence_on_a_connection_cut_off_under_it_is_retryable(settings: Settings) -> None:
    """The fleet holds its presence queue at every probe; this failure is logged and tried again."""
    async with ReopeningConnection(settings, name=f"{settings.intake_queue}.fleet", connect=CutOffConnect()) as conn:
        forwarder = QueueForwarder(conn, confirm_timeout_s=settings.publish_timeout_s)
        try:
            with pytest.raises(BrokerUnavailable):
                async with asyncio.timeout(WAIT_S):
                    await forwarder.hold(f"{settings.intake_queue}.presence")
        finally:
            await forwarder.close()


async def test_the_publisher_link_comes_up_on_the_next_connection(
    settings: Settings, metrics: Metrics, broker: Broker
) -> None:
    connect = CutOffConnect()
    async with AmqpEventPublisher(settings, metrics, connect=connect) as publisher:
        async with asyncio.timeout(WAIT_S):
            await publisher.wait_connected()
    assert connect.attempts == 2


async def test_the_intake_link_comes_up_on_the_next_connection(
    settings: Settings, metrics: Metrics, broker: Broker
) -> None:
    connect = CutOffConnect()
    async with (
        AmqpEventPublisher(settings, metrics) as publisher,
        CommandIntake(
            settings, metrics, handler=RecordingHandler(), sink=publisher, dead_letters=publisher, connect=connect
        ) as intake,
    ):
        async with asyncio.timeout(WAIT_S):
            await intake.wait_consuming()
    assert connect.attempts == 2


async def test_a_misuse_of_the_library_on_an_open_connection_keeps_its_type(settings: Settings) -> None:
    """Only a closed connection makes aio-pika's ``RuntimeError`` a lost link; otherwise it is a bug."""
    connection = await open_connection(settings, name=f"{settings.intake_queue}.misuse")
    try:
        with pytest.raises(RuntimeError, match="on_return_raises"):
            await open_channel(connection, publisher_confirms=False, on_return_raises=True)
    finally:
        await connection.close()
