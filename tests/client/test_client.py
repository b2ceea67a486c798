"""BridgeClient against a real bridge, the simulator and the real broker, through the genesys_bridge fixture."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest

from bridge.amqp.tools import delete_names
from bridge.amqp.topology import declare_topology
from bridge.config import Settings
from bridge.testing import Sandbox
from genesys_bridge_client import (
    AttachmentUpload,
    AuthCodeGrant,
    BridgeClient,
    BridgeNotDeclared,
    CommandOutcome,
    MessageReceived,
    MessageSend,
    OutcomeTimeout,
    SessionEnded,
    SessionStarted,
)
from tests.conftest import BrokerNames


async def test_a_conversation_through_the_client(genesys_bridge: Sandbox) -> None:
    bridge = genesys_bridge
    async with bridge.client.events("#") as events:
        started = await bridge.client.start_session("order-1", deployment_id=bridge.deployment_id, region=bridge.region)
        assert (started.status, started.reason) == ("delivered", "ok")
        sent = await bridge.client.send_message("order-1", "Where is my parcel?")
        assert sent.status == "delivered"
        assert sent.genesys_message_id
        assert await bridge.guest_messages("order-1") == ["Where is my parcel?"]
        await bridge.agent_say("order-1", "Let me check.")
        ended = await bridge.client.end_session("order-1")
        assert ended.status == "delivered"

        seen: list[str] = []
        async for event in events:
            seen.append(event.type)
            if isinstance(event, MessageReceived):
                assert (event.text, event.sender.kind) == ("Let me check.", "agent")
            if isinstance(event, SessionEnded):
                break
        assert seen.count("session.started") == 1
        assert "message.received" in seen


async def test_a_route_gives_a_service_its_own_conversations_only(genesys_bridge: Sandbox) -> None:
    bridge = genesys_bridge
    async with (
        BridgeClient(
            bridge.amqp_url,
            route="billing",
            command_exchange=bridge.command_exchange,
            event_exchange=bridge.event_exchange,
        ) as billing,
        billing.events() as billing_events,
        bridge.client.events("session.started.#") as everyone,
    ):
        other = await bridge.client.start_session("other-1", deployment_id=bridge.deployment_id, region=bridge.region)
        mine = await billing.start_session("billing-1", deployment_id=bridge.deployment_id, region=bridge.region)
        assert other.status == mine.status == "delivered"
        seen_by_all = [await anext(aiter(everyone)) for _ in range(2)]
        assert {e.session_id for e in seen_by_all} == {"other-1", "billing-1"}
        # billing binds #.billing: other-1's events never reach it, though other-1 started first.
        async for event in billing_events:
            assert event.session_id == "billing-1"
            if isinstance(event, CommandOutcome):
                break


async def test_bad_input_is_answered_not_raised(genesys_bridge: Sandbox) -> None:
    client = genesys_bridge.client
    unknown = await client.send_message("never-started", "hello?")
    assert (unknown.status, unknown.reason) == ("rejected", "unknown_session")
    await client.start_session("dup-1", deployment_id=genesys_bridge.deployment_id, region=genesys_bridge.region)
    again = await client.start_session(
        "dup-1", deployment_id=genesys_bridge.deployment_id, region=genesys_bridge.region
    )
    assert (again.status, again.reason) == ("rejected", "session_exists")


async def test_the_longest_ids_the_contract_allows_get_their_outcomes(genesys_bridge: Sandbox) -> None:
    # 128 characters of command id and 256 of correlation id: more than an AMQP property's 255 bytes.
    client = genesys_bridge.client
    started = await client.start_session(
        "long-ids",
        deployment_id=genesys_bridge.deployment_id,
        region=genesys_bridge.region,
        command_id="é" * 128,
        correlation_id="ü" * 256,
    )
    assert (started.status, started.command_id, started.correlation_id) == ("delivered", "é" * 128, "ü" * 256)
    said = await client.send(MessageSend(command_id="ö" * 128, session_id="long-ids", text="hi"))
    assert (said.status, said.command_id) == ("delivered", "ö" * 128)


async def test_a_command_too_large_to_read_is_answered_even_with_a_long_id(genesys_bridge: Sandbox) -> None:
    # The bridge cannot read the id of a body over its size limit: the reply is matched by correlation_id.
    upload = AttachmentUpload(file_name="big.txt", mime_type="text/plain", content_base64="QUFB" * 300_000)
    command = MessageSend(command_id="é" * 128, session_id="nobody", attachments=[upload])
    outcome = await genesys_bridge.client.send(command)
    assert (outcome.status, outcome.reason) == ("rejected", "too_large")


async def test_concurrent_commands_each_get_their_own_outcome(genesys_bridge: Sandbox) -> None:
    client = genesys_bridge.client
    for n in range(3):
        await client.start_session(f"c-{n}", deployment_id=genesys_bridge.deployment_id, region=genesys_bridge.region)
    outcomes = await asyncio.gather(*(client.send_message(f"c-{n % 3}", f"text {n}") for n in range(9)))
    assert [o.status for o in outcomes] == ["delivered"] * 9
    assert len({o.command_id for o in outcomes}) == 9


async def test_the_same_command_twice_is_answered_with_the_original_outcome(genesys_bridge: Sandbox) -> None:
    client = genesys_bridge.client
    await client.start_session("idem-1", deployment_id=genesys_bridge.deployment_id, region=genesys_bridge.region)
    command = MessageSend(command_id=uuid.uuid4().hex, session_id="idem-1", text="once")
    first = await client.send(command)
    second = await client.send(command)
    assert first.genesys_message_id == second.genesys_message_id
    assert await genesys_bridge.guest_messages("idem-1") == ["once"]


async def test_a_durable_event_queue_keeps_events_while_the_service_is_away(genesys_bridge: Sandbox) -> None:
    client = genesys_bridge.client
    queue = f"{genesys_bridge.command_exchange}.my-service.events"
    try:
        async with client.events("session.started.#", queue=queue):
            pass  # declared and bound; the service goes away
        await client.start_session("away-1", deployment_id=genesys_bridge.deployment_id, region=genesys_bridge.region)
        async with client.events("session.started.#", queue=queue) as events:
            event = await anext(aiter(events))
            assert isinstance(event, SessionStarted)
            assert event.session_id == "away-1"
    finally:
        await delete_names(genesys_bridge.amqp_url, queues=(queue,))


async def test_no_topology_is_a_clear_error(amqp_url: str, broker_names: BrokerNames) -> None:
    client = BridgeClient(amqp_url, command_exchange=broker_names.command_exchange)
    with pytest.raises(BridgeNotDeclared, match="genesys-bridge declare"):
        await client.connect()


async def test_no_outcome_in_time_raises_outcome_timeout(amqp_url: str, broker_names: BrokerNames) -> None:
    """A topology with no bridge consuming it: the command waits in the intake queue, the client gives up."""
    settings = Settings(
        amqp_url=amqp_url,
        command_exchange=broker_names.command_exchange,
        intake_queue=broker_names.intake_queue,
        event_exchange=broker_names.event_exchange,
        dead_letter_queue=broker_names.dead_letter_queue,
    )
    connection = await aio_pika.connect(amqp_url)
    try:
        await declare_topology(await connection.channel(), settings)
        async with BridgeClient(
            amqp_url, command_exchange=settings.command_exchange, event_exchange=settings.event_exchange
        ) as client:
            with pytest.raises(OutcomeTimeout) as raised:
                await client.end_session("s-1", timeout=0.2)
            assert raised.value.command.session_id == "s-1"
    finally:
        await connection.close()
        await delete_names(
            amqp_url,
            exchanges=(settings.command_exchange, settings.event_exchange),
            queues=(settings.intake_queue, settings.dead_letter_queue),
        )


@pytest.mark.genesys_simulator(auth_enabled=True)
async def test_an_authenticated_session_and_its_logout(genesys_bridge: Sandbox) -> None:
    client = genesys_bridge.client
    started = await client.start_session(
        "member-1",
        deployment_id=genesys_bridge.deployment_id,
        region=genesys_bridge.region,
        auth=AuthCodeGrant(code="c0de-from-the-idp", redirect_uri="https://shop.example/cb"),
    )
    assert started.status == "delivered", started.detail
    assert genesys_bridge.genesys_session("member-1").authenticated
    logged_out = await client.logout("member-1")
    assert (logged_out.status, logged_out.reason) == ("delivered", "ok")
