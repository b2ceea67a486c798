"""The command intake against the real broker: in-order handoff, rejections (outcome + DLQ), recovery
from a killed connection, acks on a dead channel, and the SIGTERM drain."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from bridge.amqp.connection import BrokerLinks
from bridge.amqp.consumer import CommandIntake
from bridge.amqp.delivery import AmqpDelivery
from bridge.amqp.publisher import AmqpEventPublisher
from bridge.config import Settings
from bridge.observability.metrics import Metrics
from bridge.ports import Envelope, TraceContext
from genesys_bridge_client.contract import CommandOutcome
from genesys_bridge_client.contract.codec import decode_event
from tests.amqp.conftest import (
    WAIT_S,
    Broker,
    HandshakeThatIgnoresCancel,
    RecordingHandler,
    command,
    kill_connection,
    make_settings,
    sample,
)
from tests.conftest import BrokerNames


@dataclass
class Bridge:
    """A publisher and an intake wired as the daemon wires them, around a recording handler."""

    intake: CommandIntake
    publisher: AmqpEventPublisher
    handler: RecordingHandler
    intake_name: str


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
def settings(broker_names: BrokerNames, amqp_url: str, settings_overrides: dict[str, Any]) -> Settings:
    return make_settings(broker_names, amqp_url, **{"max_command_bytes": 4096, **settings_overrides})


@pytest.fixture
def auto_ack() -> bool:
    return True


@pytest.fixture
async def bridge(settings: Settings, metrics: Metrics, broker: Broker, auto_ack: bool) -> AsyncIterator[Bridge]:
    links = BrokerLinks(metrics)
    handler = RecordingHandler(auto_ack=auto_ack)
    intake_name = f"{settings.intake_queue}.intake"
    async with (
        AmqpEventPublisher(settings, metrics, links=links, connection_name=f"{settings.intake_queue}.pub") as publisher,
        CommandIntake(
            settings,
            metrics,
            handler=handler,
            sink=publisher,
            dead_letters=publisher,
            links=links,
            connection_name=intake_name,
        ) as intake,
    ):
        async with asyncio.timeout(WAIT_S):
            await publisher.wait_connected()
            await intake.wait_consuming()
        yield Bridge(intake, publisher, handler, intake_name)


async def test_commands_are_handed_over_in_delivery_order(bridge: Bridge, broker: Broker, metrics: Metrics) -> None:
    commands = [command(session_id=f"s-{i % 10}") for i in range(200)]
    for data in commands:
        await broker.send_command(data)

    envelopes = await bridge.handler.take(200)

    assert [e.command.command_id for e in envelopes] == [c["command_id"] for c in commands]
    assert not any(e.redelivered for e in envelopes)
    assert envelopes[0].reply_to is None
    assert sample(metrics, "genesys_bridge_intake_consuming") == 1
    assert sample(metrics, "genesys_bridge_broker_connected") == 1


async def test_envelope_carries_reply_to_and_received_at(bridge: Bridge, broker: Broker) -> None:
    await broker.send_command(command(), reply_to="replies-here")
    [envelope] = await bridge.handler.take(1)
    assert envelope.reply_to == "replies-here"
    assert envelope.received_at > 0


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_envelope_carries_the_request_reply_and_trace_properties(bridge: Bridge, broker: Broker) -> None:
    await broker.send_command(
        command(),
        reply_to="replies-here",
        correlation_id="rpc-41",
        headers={"traceparent": TRACEPARENT, "tracestate": "vendor=x"},
    )
    [envelope] = await bridge.handler.take(1)
    assert envelope.correlation_id == "rpc-41"
    assert envelope.trace == TraceContext(TRACEPARENT, "vendor=x")


async def test_a_malformed_traceparent_is_dropped_not_refused(bridge: Bridge, broker: Broker) -> None:
    await broker.send_command(command(), headers={"traceparent": "not-a-trace"})
    [envelope] = await bridge.handler.take(1)
    assert envelope.trace is None


async def test_a_rejection_answers_with_the_requesters_correlation_id_and_trace(bridge: Bridge, broker: Broker) -> None:
    reply_to, replies = await broker.reply_queue()
    await broker.send_command(
        b"{broken", reply_to=reply_to, correlation_id="rpc-42", headers={"traceparent": TRACEPARENT}
    )
    [reply] = await replies.take(1)
    assert reply.correlation_id == "rpc-42"
    assert reply.headers["traceparent"] == TRACEPARENT


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not_json"),
        (json.dumps({"type": "message.send", "command_id": "c-1", "session_id": "s-1"}).encode(), "schema_invalid"),
        (json.dumps({"type": "launch.rocket", "command_id": "c-2", "session_id": "s-2"}).encode(), "unknown_type"),
        (json.dumps(command(command_id="c-3", text="x" * 4000, session_id="s-3")).encode() * 2, "too_large"),
    ],
)
async def test_bad_input_gets_an_outcome_and_a_dead_letter_and_intake_goes_on(
    bridge: Bridge, broker: Broker, settings: Settings, metrics: Metrics, body: bytes, reason: str
) -> None:
    outcomes = await broker.tap("command.outcome.#")
    reply_to, replies = await broker.reply_queue()
    dead = await broker.consume(settings.dead_letter_queue)

    await broker.send_command(body, reply_to=reply_to)
    good = command()
    await broker.send_command(good)

    [message] = await outcomes.take(1)
    event = decode_event(message.body)
    assert isinstance(event, CommandOutcome)
    assert (event.status, event.reason, event.seq) == ("rejected", reason, 0)
    assert message.routing_key == "command.outcome.unknown"
    [reply] = await replies.take(1)
    assert reply.message_id == event.event_id
    [copy] = await dead.take(1)
    assert copy.body == body
    assert copy.headers["x-bridge-reject-reason"] == reason
    assert copy.headers["x-bridge-reject-detail"] == event.detail
    assert copy.headers["x-test"] == "yes"
    # The consumer keeps running: the next command is handed over.
    [envelope] = await bridge.handler.take(1)
    assert envelope.command.command_id == good["command_id"]
    assert sample(metrics, "genesys_bridge_dead_lettered_total", {"reason": reason}) == 1


async def test_rejection_copies_the_readable_ids(bridge: Bridge, broker: Broker) -> None:
    outcomes = await broker.tap("command.outcome.#")
    await broker.send_command(
        {"type": "message.send", "command_id": "c-9", "session_id": "s-9", "correlation_id": "k-9"}
    )
    [message] = await outcomes.take(1)
    event = decode_event(message.body)
    assert isinstance(event, CommandOutcome)
    assert (event.command_id, event.session_id, event.command_type) == ("c-9", "s-9", "message.send")
    assert (event.causation_id, event.correlation_id) == ("c-9", "k-9")
    assert message.correlation_id == "k-9"
    assert event.errors


async def test_handler_can_dead_letter_a_delivery(bridge: Bridge, broker: Broker, settings: Settings) -> None:
    bridge.handler.auto_ack = False
    dead = await broker.consume(settings.dead_letter_queue)
    await broker.send_command(command(command_id="c-unknown"))
    [envelope] = await bridge.handler.take(1)

    await envelope.delivery.dead_letter("unknown_session", "no live session s-1")

    [copy] = await dead.take(1)
    assert copy.headers["x-bridge-reject-reason"] == "unknown_session"
    assert b"c-unknown" in copy.body


async def test_intake_recovers_after_its_connection_is_killed(
    bridge: Bridge, broker: Broker, settings: Settings, metrics: Metrics
) -> None:
    generation = bridge.intake.generation
    old_tag = bridge.intake.consumer_tag

    await kill_connection(bridge.intake_name)
    async with asyncio.timeout(WAIT_S):
        assert await bridge.intake.wait_consuming(after_generation=generation) == generation + 1

    assert bridge.intake.consuming
    assert bridge.intake.consumer_tag not in (None, old_tag)
    assert await broker.consumer_count(settings.intake_queue) == 1  # verified with the broker, too
    await broker.send_command(data := command())
    [envelope] = await bridge.handler.take(1)
    assert envelope.command.command_id == data["command_id"]
    assert sample(metrics, "genesys_bridge_reconnects_total", {"target": "broker"}) >= 1


@pytest.mark.parametrize("auto_ack", [False])
async def test_ack_after_channel_loss_does_not_crash_and_the_broker_redelivers(
    bridge: Bridge, broker: Broker, metrics: Metrics
) -> None:
    await broker.send_command(data := command())
    [first] = await bridge.handler.take(1)
    generation = bridge.intake.generation

    await kill_connection(bridge.intake_name)
    async with asyncio.timeout(WAIT_S):
        await bridge.intake.wait_consuming(after_generation=generation)
    [again] = await bridge.handler.take(1)

    await first.delivery.ack()  # the old tag is dead: logged and counted, not raised
    await again.delivery.ack()

    assert again.command.command_id == data["command_id"]
    assert again.redelivered
    assert sample(metrics, "genesys_bridge_delivery_settle_failures_total", {"action": "ack"}) == 1
    assert bridge.intake.consuming  # the bad ack did not touch the new channel


@pytest.mark.parametrize("auto_ack", [False])
async def test_stop_intake_stops_deliveries_but_keeps_acks_working(
    bridge: Bridge, broker: Broker, settings: Settings, metrics: Metrics
) -> None:
    await broker.send_command(command())
    [held] = await bridge.handler.take(1)

    await bridge.intake.stop_intake()
    await bridge.intake.stop_intake()  # idempotent

    assert not bridge.intake.consuming
    assert sample(metrics, "genesys_bridge_intake_consuming") == 0
    await broker.send_command(late := command())
    await held.delivery.ack()  # still possible after stop_intake
    assert sample(metrics, "genesys_bridge_delivery_settle_failures_total", {"action": "ack"}) == 0
    # The late command stays in the queue for the next replica; nobody here took it.
    [message] = await broker.take(settings.intake_queue)
    assert json.loads(message.body)["command_id"] == late["command_id"]
    assert len(bridge.handler.seen) == 1


@pytest.mark.parametrize("settings_overrides", [{"delivery_limit": 1}])
async def test_a_handler_bug_requeues_and_intake_goes_on(settings: Settings, broker: Broker, metrics: Metrics) -> None:

    class Flaky(RecordingHandler):
        async def submit(self, envelope: Envelope) -> None:
            await super().submit(envelope)
            if envelope.command.command_id == "boom":
                raise RuntimeError("handler bug")

    handler = Flaky(auto_ack=False)
    async with (
        AmqpEventPublisher(settings, metrics) as publisher,
        CommandIntake(settings, metrics, handler=handler, sink=publisher, dead_letters=publisher) as intake,
    ):
        async with asyncio.timeout(WAIT_S):
            await intake.wait_consuming()
        await broker.send_command(command(command_id="boom"))
        first, second = await handler.take(2)  # requeued once, then the delivery limit (1) applies
        assert (first.redelivered, second.redelivered) == (False, True)
        assert isinstance(first.delivery, AmqpDelivery)
        assert first.delivery.settled
        await broker.send_command(command(command_id="fine"))
        [third] = await handler.take(1)
        assert third.command.command_id == "fine"


async def test_a_consumer_cancelled_by_the_broker_is_noticed_and_restored(
    bridge: Bridge, broker: Broker, settings: Settings
) -> None:
    generation = bridge.intake.generation

    # Deleting the queue cancels our consumer but leaves the channel open: a silent failure for a
    # client that trusts its channel. The intake rebuilds the link and declares the queue again.
    await broker.channel.queue_delete(settings.intake_queue)
    async with asyncio.timeout(WAIT_S):
        await bridge.intake.wait_consuming(after_generation=generation)

    await broker.send_command(data := command())
    [envelope] = await bridge.handler.take(1)
    assert envelope.command.command_id == data["command_id"]


async def test_a_stop_that_races_the_intake_start_up_ends_it_and_loses_nothing(
    settings: Settings, broker: Broker, metrics: Metrics
) -> None:
    """SIGTERM just after start: the drain must not wait for ever on an intake that came up after it."""
    await broker.send_command(waiting := command())
    handshake = HandshakeThatIgnoresCancel()
    handler = RecordingHandler()
    async with AmqpEventPublisher(settings, metrics) as publisher:
        intake = CommandIntake(
            settings, metrics, handler=handler, sink=publisher, dead_letters=publisher, connect=handshake
        )
        await intake.start()
        async with asyncio.timeout(WAIT_S):
            await handshake.connected.wait()
            stopping = asyncio.create_task(intake.stop_intake())
            await handshake.cancel_ignored.wait()
            handshake.release.set()
            await stopping
            await intake.close()

    assert not intake.consuming
    assert handler.seen == []
    # Closed by us: the broker drops the consumer with it (its count lags the close, so it is not read here).
    assert [c.is_closed for c in handshake.connections] == [True]
    # The command published before the start is still queued for the next process.
    [message] = await broker.take(settings.intake_queue)
    assert json.loads(message.body)["command_id"] == waiting["command_id"]


async def test_a_dead_lettered_start_keeps_no_auth_secret(bridge: Bridge, broker: Broker, settings: Settings) -> None:
    """The dead-letter queue is not encrypted: an authorization code or ID token never lands there in clear."""
    dead = await broker.consume(settings.dead_letter_queue)
    start = {
        "type": "session.start",
        "command_id": "c-auth",
        "session_id": "s-auth",
        "deployment_id": "dep",
        "region": "mypurecloud.com",
        "auth": {"code": "secret-code-4711", "redirect_uri": "https://x.example/cb", "code_verifier": "v" * 43},
        "unexpected": True,  # schema_invalid: rejected and dead-lettered
    }
    await broker.send_command(start)
    [copy] = await dead.take(1)
    assert b"secret-code-4711" not in copy.body
    assert b"v" * 43 not in copy.body
    assert json.loads(copy.body)["auth"] == {
        "code": "[redacted]",
        "redirect_uri": "https://x.example/cb",
        "code_verifier": "[redacted]",
    }
    assert copy.headers["x-bridge-redacted"] == "auth"


async def test_a_dead_lettered_start_with_half_a_surrogate_pair_is_redacted_and_intake_goes_on(
    bridge: Bridge, broker: Broker, settings: Settings
) -> None:
    """JSON may escape an unpaired surrogate, which UTF-8 cannot hold: the redacted copy keeps it escaped."""
    dead = await broker.consume(settings.dead_letter_queue)
    start = {
        "type": "session.start",
        "command_id": "c-half",
        "session_id": "s-half",
        "deployment_id": "dep",
        "region": "mypurecloud.com",
        "auth": {"code": "secret-code-4712", "redirect_uri": "https://x.example/cb"},
        "custom_attributes": {"note": "cut \ud83d"},  # json.dumps writes it as an escape: rejected as not_json
    }
    await broker.send_command(start)
    [copy] = await dead.take(1)
    assert b"secret-code-4712" not in copy.body
    assert copy.body.isascii()
    assert json.loads(copy.body)["custom_attributes"] == {"note": "cut \ud83d"}
    assert copy.headers["x-bridge-redacted"] == "auth"
    await broker.send_command(data := command())
    [envelope] = await bridge.handler.take(1)
    assert envelope.command.command_id == data["command_id"]


class _Buggy:
    """A port of ours with a bug: every call raises, and never a broker error."""

    def __init__(self) -> None:
        self.calls = 0

    async def publish(self, event: Any, **kwargs: Any) -> None:
        self.calls += 1
        raise RuntimeError("encoding bug")

    async def dead_letter(self, original: Any, *, reason: str, detail: str) -> None:
        self.calls += 1
        raise RuntimeError("copy bug")


@pytest.mark.parametrize("settings_overrides", [{"delivery_limit": 1}])
@pytest.mark.parametrize("buggy", ["outcome sink", "dead-letter sink"])
async def test_a_rejection_that_cannot_be_published_or_copied_requeues_and_intake_goes_on(
    settings: Settings, broker: Broker, metrics: Metrics, buggy: str
) -> None:
    """A bug publishing the rejected outcome or building the dead-letter copy must neither end the intake nor
    leave the delivery unsettled."""
    bug = _Buggy()
    handler = RecordingHandler()
    dead = await broker.consume(settings.dead_letter_queue)
    async with AmqpEventPublisher(settings, metrics) as publisher:
        sink, dead_letters = (bug, publisher) if buggy == "outcome sink" else (publisher, bug)
        async with CommandIntake(settings, metrics, handler=handler, sink=sink, dead_letters=dead_letters) as intake:
            async with asyncio.timeout(WAIT_S):
                await intake.wait_consuming()
            await broker.send_command({"type": "nope", "command_id": "c-bad"})  # schema_invalid: dead-lettered
            # Requeued once, then the delivery limit (1) has the broker dead-letter the original itself.
            [original] = await dead.take(1)
            assert json.loads(original.body)["command_id"] == "c-bad"
            assert bug.calls == 2
            await broker.send_command(data := command())
            [envelope] = await handler.take(1)
            assert envelope.command.command_id == data["command_id"]
