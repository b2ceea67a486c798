"""The event publisher against the real broker: confirms, properties, reply_to, returns, pipelining,
the outage buffer with back-pressure, and recovery from a killed connection without losing events."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aio_pika
import pytest

from bridge.amqp.connection import BrokerLinks
from bridge.amqp.publisher import AmqpEventPublisher
from bridge.amqp.unroutable import HOLD_S
from bridge.config import Settings
from bridge.errors import BrokerUnavailable, PublishTimeout
from bridge.observability.metrics import Metrics
from bridge.ports import TraceContext
from genesys_bridge_client.contract.codec import decode_event
from genesys_bridge_client.contract.events import SessionStateChanged
from tests.amqp.conftest import (
    WAIT_S,
    Broker,
    GatedConnect,
    HandshakeThatIgnoresCancel,
    kill_connection,
    make_settings,
    outcome,
    sample,
)
from tests.conftest import BrokerNames
from tests.session.fakes import ManualClock


@contextlib.asynccontextmanager
async def connected(
    settings: Settings, metrics: Metrics, *, clock: ManualClock | None = None
) -> AsyncIterator[AmqpEventPublisher]:
    """A publisher named after the test's queues, once it is connected."""
    name = f"{settings.intake_queue}.pub"
    async with AmqpEventPublisher(settings, metrics, connection_name=name, clock=clock) as publisher:
        async with asyncio.timeout(WAIT_S):
            await publisher.wait_connected()
        yield publisher


@pytest.fixture
async def publisher(settings: Settings, metrics: Metrics, broker: Broker) -> AsyncIterator[AmqpEventPublisher]:
    async with connected(settings, metrics) as publisher:
        yield publisher


async def test_publish_is_confirmed_with_the_expected_properties(
    publisher: AmqpEventPublisher, broker: Broker, metrics: Metrics
) -> None:
    tap = await broker.tap("command.outcome.#")
    event = outcome(correlation_id="corr-7")

    await publisher.publish(event, deployment_id="dep-1")

    [message] = await tap.take(1)
    assert message.routing_key == "command.outcome.dep-1"
    assert message.message_id == event.event_id
    assert message.correlation_id == "corr-7"
    assert message.type == "command.outcome"
    assert message.content_type == "application/json"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.app_id == "genesys-bridge"
    assert message.timestamp is not None
    assert int(message.timestamp.timestamp()) == int(event.occurred_at.timestamp())
    assert decode_event(message.body) == event
    assert sample(metrics, "genesys_bridge_events_published_total", {"type": "command.outcome"}) == 1
    assert sample(metrics, "genesys_bridge_publish_confirm_seconds_count") == 1
    assert sample(metrics, "genesys_bridge_broker_connected") == 1


async def test_correlation_id_falls_back_to_the_causing_command(publisher: AmqpEventPublisher, broker: Broker) -> None:
    tap = await broker.tap()
    await publisher.publish(outcome(command_id="cmd-9"), deployment_id=None)
    [message] = await tap.take(1)
    assert message.correlation_id == "cmd-9"
    assert message.routing_key == "command.outcome.unknown"


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ({"correlation_id": "é" * 127 + "x"}, "é" * 127 + "x"),  # 255 bytes: an AMQP property holds it
        ({"correlation_id": "é" * 128}, None),  # 256 characters, 256 bytes: the contract allows it
        ({"correlation_id": "x" * 256}, None),
        ({"command_id": "é" * 128}, None),  # 128 characters of a command id, 256 bytes
    ],
)
async def test_an_id_longer_than_an_amqp_property_is_left_out_of_it_and_kept_in_the_body(
    publisher: AmqpEventPublisher, broker: Broker, ids: dict[str, str], expected: str | None
) -> None:
    tap = await broker.tap()
    event = outcome(**ids)
    await publisher.publish(event, deployment_id=None)
    [message] = await tap.take(1)
    assert message.correlation_id == expected
    assert decode_event(message.body) == event


async def test_the_requesters_correlation_id_and_trace_go_on_every_copy(
    publisher: AmqpEventPublisher, broker: Broker
) -> None:
    tap = await broker.tap()
    reply_to, replies = await broker.reply_queue()
    trace = TraceContext("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "vendor=x")

    await publisher.publish(
        outcome(correlation_id="body-id"),
        deployment_id="dep-1",
        reply_to=reply_to,
        correlation_id="rpc-7",
        trace=trace,
    )

    for message in [*await tap.take(1), *await replies.take(1)]:
        assert message.correlation_id == "rpc-7"  # the AMQP property wins over the body's id
        assert message.headers == trace.headers()


async def test_a_route_is_the_last_part_of_the_routing_key(publisher: AmqpEventPublisher, broker: Broker) -> None:
    owned = await broker.tap("#.billing")
    await publisher.publish(outcome(), deployment_id="dep-1", route="billing")
    [message] = await owned.take(1)
    assert message.routing_key == "command.outcome.dep-1.billing"


async def test_reply_to_gets_a_copy(publisher: AmqpEventPublisher, broker: Broker) -> None:
    tap = await broker.tap()
    reply_to, replies = await broker.reply_queue()
    event = outcome()

    await publisher.publish(event, deployment_id="dep-1", reply_to=reply_to)

    [on_exchange] = await tap.take(1)
    [reply] = await replies.take(1)
    assert on_exchange.message_id == reply.message_id == event.event_id
    assert reply.routing_key == reply_to


async def test_unroutable_events_resolve_and_are_counted(publisher: AmqpEventPublisher, metrics: Metrics) -> None:
    # No queue is bound to the event exchange, and the reply queue does not exist: both come back.
    await publisher.publish(outcome(), deployment_id="dep-1", reply_to="no-such-queue-anywhere")

    assert sample(metrics, "genesys_bridge_events_returned_total", {"destination": "events"}) == 1
    assert sample(metrics, "genesys_bridge_events_returned_total", {"destination": "reply_to"}) == 1
    assert sample(metrics, "genesys_bridge_events_published_total", {"type": "command.outcome"}) == 1


def state_changed(seq: int) -> SessionStateChanged:
    return SessionStateChanged(
        event_id=uuid.uuid4().hex,
        session_id="s-1",
        seq=seq,
        occurred_at=datetime.now(UTC),
        old="connecting",
        new="active",
    )


async def test_a_state_change_nobody_binds_is_left_out_after_its_first_return(
    settings: Settings, metrics: Metrics, broker: Broker
) -> None:
    clock = ManualClock()
    async with connected(settings, metrics, clock=clock) as publisher:
        await publisher.publish(state_changed(1), deployment_id="dep-1")  # returned: nobody binds
        await publisher.publish(state_changed(2), deployment_id="dep-1")  # left out
        await publisher.publish(outcome(), deployment_id="dep-1")  # never left out, returned again
        await publisher.publish(outcome(), deployment_id="dep-1")
        assert sample(metrics, "genesys_bridge_events_skipped_total", {"type": "session.state_changed"}) == 1
        assert sample(metrics, "genesys_bridge_events_returned_total", {"destination": "events"}) == 3

        tap = await broker.tap("session.state_changed.#")  # a consumer binds: within the hold it still misses
        await publisher.publish(state_changed(3), deployment_id="dep-1")
        clock.t += HOLD_S
        await publisher.publish(state_changed(4), deployment_id="dep-1")
        [received] = await tap.take(1)
    assert decode_event(received.body).seq == 4
    assert sample(metrics, "genesys_bridge_events_skipped_total", {"type": "session.state_changed"}) == 2


async def test_a_thousand_concurrent_publishes_are_all_confirmed(publisher: AmqpEventPublisher, broker: Broker) -> None:
    tap = await broker.tap()
    events = [outcome(session_id=f"s-{i % 50}") for i in range(1000)]

    async with asyncio.timeout(WAIT_S):
        await asyncio.gather(*(publisher.publish(e, deployment_id="dep") for e in events))

    received = await tap.take(1000)
    # Concurrent calls share one channel; the broker sees them in call order.
    assert [m.message_id for m in received] == [e.event_id for e in events]


async def test_no_confirm_in_time_raises_publish_timeout(
    broker_names: BrokerNames, amqp_url: str, broker: Broker
) -> None:
    settings = make_settings(broker_names, amqp_url, publish_timeout_s=1e-6)
    async with AmqpEventPublisher(settings, Metrics(process_metrics=False)) as publisher:
        async with asyncio.timeout(WAIT_S):
            await publisher.wait_connected()
        with pytest.raises(PublishTimeout):
            await publisher.publish(outcome(), deployment_id="dep")


async def test_outage_buffers_applies_back_pressure_and_publishes_in_order(
    broker_names: BrokerNames, amqp_url: str, broker: Broker, metrics: Metrics
) -> None:
    settings = make_settings(broker_names, amqp_url, publish_buffer_size=10)
    name = f"{settings.intake_queue}.pub"
    connect = GatedConnect()
    tap = await broker.tap()
    async with AmqpEventPublisher(settings, metrics, connection_name=name, connect=connect) as publisher:
        await _broker_away(publisher, connect, name)
        assert not publisher.connected
        assert sample(metrics, "genesys_bridge_broker_connected") == 0

        events = [outcome(session_id="s-1", seq=i + 1) for i in range(30)]
        tasks = [asyncio.create_task(publisher.publish(e, deployment_id="dep")) for e in events]
        await _let_tasks_block()
        assert sample(metrics, "genesys_bridge_publish_buffer_events") == 10
        assert not any(t.done() for t in tasks)  # 10 buffered waiting for confirms, 20 waiting for room

        connect.gate.set()
        async with asyncio.timeout(WAIT_S):
            await asyncio.gather(*tasks)
        received = await tap.take(30)
    assert [m.message_id for m in received] == [e.event_id for e in events]
    assert sample(metrics, "genesys_bridge_publish_buffer_events") == 0
    assert sample(metrics, "genesys_bridge_reconnects_total", {"target": "broker"}) >= 1


async def test_killed_connection_mid_stream_loses_nothing(settings: Settings, broker: Broker, metrics: Metrics) -> None:
    name = f"{settings.intake_queue}.pub"
    tap = await broker.tap()
    events = [outcome(session_id=f"s-{i % 7}") for i in range(400)]
    async with AmqpEventPublisher(settings, metrics, connection_name=name) as publisher:
        async with asyncio.timeout(WAIT_S):
            await publisher.wait_connected()
            first = asyncio.gather(*(publisher.publish(e, deployment_id="dep") for e in events[:200]))
            killer = asyncio.create_task(kill_connection(name))
            await first
            await killer
            await asyncio.gather(*(publisher.publish(e, deployment_id="dep") for e in events[200:]))

    ids: set[str] = set()
    async with asyncio.timeout(WAIT_S):
        while len(ids) < len(events):  # at least once: a confirm lost with the link may mean a duplicate
            [message] = await tap.take(1)
            assert message.message_id is not None
            ids.add(message.message_id)
    assert ids == {e.event_id for e in events}


async def test_dead_letter_copy_is_confirmed_with_headers(
    publisher: AmqpEventPublisher, broker: Broker, settings: Settings
) -> None:
    await broker.send_command(b"{broken", reply_to="somewhere")
    [original] = await broker.take(settings.intake_queue)
    dead = await broker.consume(settings.dead_letter_queue)

    await publisher.dead_letter(original, reason="not_json", detail="body is not UTF-8 JSON")
    await original.ack()

    [copy] = await dead.take(1)
    assert copy.body == b"{broken"
    assert copy.headers["x-bridge-reject-reason"] == "not_json"
    assert copy.headers["x-bridge-reject-detail"] == "body is not UTF-8 JSON"
    assert copy.headers["x-bridge-original-exchange"] == settings.command_exchange
    assert copy.headers["x-test"] == "yes"
    assert copy.reply_to == "somewhere"


async def test_publish_after_close_is_refused(settings: Settings, metrics: Metrics, broker: Broker) -> None:
    publisher = AmqpEventPublisher(settings, metrics, links=BrokerLinks(metrics))
    await publisher.start()
    async with asyncio.timeout(WAIT_S):
        await publisher.wait_connected()
    await publisher.close()
    with pytest.raises(BrokerUnavailable):
        await publisher.publish(outcome(), deployment_id="dep")
    assert sample(metrics, "genesys_bridge_broker_connected") == 0


async def _broker_away(publisher: AmqpEventPublisher, connect: GatedConnect, name: str) -> None:
    """Once ``publisher`` is connected, the broker goes away (its connection ``name`` is killed), and
    stays away until ``connect.gate`` is set again; returns when the publisher's first attempt waits."""
    async with asyncio.timeout(WAIT_S):
        await publisher.wait_connected()
        connect.gate.clear()
        await kill_connection(name)
        await connect.waiting.wait()


async def _let_tasks_block() -> None:
    """Let freshly created tasks run up to their first real wait (no I/O happens in between)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_close_fails_events_still_buffered_after_the_timeout(
    settings: Settings, broker: Broker, metrics: Metrics
) -> None:
    name = f"{settings.intake_queue}.pub"
    connect = GatedConnect()
    publisher = AmqpEventPublisher(settings, metrics, connection_name=name, connect=connect)
    await publisher.start()
    await _broker_away(publisher, connect, name)
    waiting = asyncio.create_task(publisher.publish(outcome(), deployment_id="dep"))
    await _let_tasks_block()

    await publisher.close(timeout_s=0.01)  # the broker never comes back within the flush timeout

    with pytest.raises(BrokerUnavailable):
        await waiting
    assert sample(metrics, "genesys_bridge_publish_buffer_events") == 0


async def test_a_deleted_event_exchange_is_declared_again(
    publisher: AmqpEventPublisher, broker: Broker, settings: Settings, metrics: Metrics
) -> None:
    await broker.channel.exchange_delete(settings.event_exchange)

    # The publish closes the channel (NOT_FOUND); the event is buffered, the link rebuilt, the
    # topology declared again, and the event published: nobody is bound yet, so it comes back.
    async with asyncio.timeout(WAIT_S):
        await publisher.publish(outcome(), deployment_id="dep")

    assert publisher.connected
    assert sample(metrics, "genesys_bridge_reconnects_total", {"target": "broker"}) >= 1
    assert sample(metrics, "genesys_bridge_events_returned_total", {"destination": "events"}) == 1


async def test_a_close_that_races_the_publisher_start_up_ends_it(settings: Settings, broker: Broker) -> None:
    """Closed just after start: close() must return, and the link that came up anyway is closed."""
    handshake = HandshakeThatIgnoresCancel()
    publisher = AmqpEventPublisher(settings, Metrics(process_metrics=False), connect=handshake)
    await publisher.start()
    async with asyncio.timeout(WAIT_S):
        await handshake.connected.wait()
        closing = asyncio.create_task(publisher.close())
        await handshake.cancel_ignored.wait()
        handshake.release.set()
        await closing
    assert not publisher.connected
    assert [c.is_closed for c in handshake.connections] == [True]


async def test_an_event_that_cannot_be_published_fails_alone_after_an_outage(
    settings: Settings, broker: Broker, metrics: Metrics
) -> None:
    """An event the broker link cannot carry (here a header no AMQP encoder can write, as a bug of ours
    would make) fails its own publisher when the outage buffer is flushed; the events around it go out in
    order and the link stays up. It used to end the link's task, and with it the process."""
    name = f"{settings.intake_queue}.pub"
    connect = GatedConnect()
    tap = await broker.tap()
    unwritable = TraceContext("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "vendor=\ud800")
    async with AmqpEventPublisher(settings, metrics, connection_name=name, connect=connect) as publisher:
        await _broker_away(publisher, connect, name)
        events = [outcome(session_id="s-1", seq=i + 1) for i in range(5)]
        traces = [unwritable if i == 2 else None for i in range(5)]
        tasks = [
            asyncio.create_task(publisher.publish(e, deployment_id="dep", trace=t))
            for e, t in zip(events, traces, strict=True)
        ]
        await _let_tasks_block()
        assert sample(metrics, "genesys_bridge_publish_buffer_events") == 5

        connect.gate.set()
        async with asyncio.timeout(WAIT_S):
            results = await asyncio.gather(*tasks, return_exceptions=True)
            received = await tap.take(4)
            await publisher.wait_connected()
        assert publisher.connected
        # The link still serves: a later event goes out on it.
        async with asyncio.timeout(WAIT_S):
            await publisher.publish(later := outcome(session_id="s-1", seq=6), deployment_id="dep")
            [after] = await tap.take(1)

    assert [type(r) for r in results] == [type(None)] * 2 + [UnicodeEncodeError] + [type(None)] * 2
    assert [m.message_id for m in received] == [e.event_id for i, e in enumerate(events) if i != 2]
    assert after.message_id == later.event_id
    assert sample(metrics, "genesys_bridge_publish_buffer_events") == 0


async def test_an_event_that_cannot_be_published_fails_its_publisher_on_the_direct_path(
    publisher: AmqpEventPublisher, broker: Broker
) -> None:
    tap = await broker.tap()
    unwritable = TraceContext("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "vendor=\ud800")
    async with asyncio.timeout(WAIT_S):
        with pytest.raises(UnicodeEncodeError):
            await publisher.publish(outcome(session_id="s-1", seq=1), deployment_id="dep", trace=unwritable)
        await publisher.publish(later := outcome(session_id="s-1", seq=2), deployment_id="dep")
        [after] = await tap.take(1)
    assert after.message_id == later.event_id
    assert publisher.connected
