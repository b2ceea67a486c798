"""Bad input never blocks or kills the consumer: a rejected outcome, a dead-letter with the reason, and on.

One bridge serves every kind (a bridge start costs about a second on this machine); each command is
matched to its outcome and its dead-letter copy by ``command_id`` (or by body, when it has none).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from bridge.amqp.messages import (
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    REJECT_DETAIL_HEADER,
    REJECT_REASON_HEADER,
)
from genesys_bridge_client.contract.events import CommandOutcome
from tests.conftest import BrokerNames
from tests.e2e.harness import DeadLetter
from tests.e2e.stack import e2e_stack

pytestmark = pytest.mark.timeout(30)

MAX_COMMAND_BYTES = 16_384


def _start(session_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "session.start",
        "command_id": uuid.uuid4().hex,
        "session_id": session_id,
        "deployment_id": "dep-1",
        "region": "mypurecloud.com",
        **extra,
    }


def _say(session_id: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "message.send", "command_id": uuid.uuid4().hex, "session_id": session_id, "text": text, **extra}


async def test_every_bad_input_is_rejected_dead_lettered_and_the_daemon_keeps_going(
    broker_names: BrokerNames, amqp_url: str
) -> None:
    async with e2e_stack(broker_names, amqp_url, max_command_bytes=MAX_COMMAND_BYTES) as stack:
        client, events = stack.client, stack.client.events
        await client.started("live")

        attachment_without_type = _say("live", "see file")
        attachment_without_type["attachments"] = [{"file_name": "a.png", "url": "https://files.example.com/a.png"}]
        cases: list[tuple[str, dict[str, Any] | bytes]] = [
            ("not_json", b'{"type": "message.send", "command_id": '),
            ("schema_invalid", attachment_without_type),
            ("unknown_type", {"type": "session.pause", "command_id": uuid.uuid4().hex, "session_id": "live"}),
            ("unknown_session", _say("nobody-home", "hello?")),
            ("message_too_long", _say("live", "x" * 4097)),
            ("attributes_too_large", _start("big-attrs", custom_attributes={"blob": "y" * 2045})),
            ("too_large", _say("live", "z" * 4000, padding="p" * MAX_COMMAND_BYTES)),
        ]
        sent: list[tuple[str, str, bytes]] = []  # expected reason, command id ("" if none), body
        for reason, command in cases:
            body = command if isinstance(command, bytes) else json.dumps(command).encode()
            command_id = "" if isinstance(command, bytes) else str(command["command_id"])
            await client.publisher.send(body, reply_to=client.reply_to)
            sent.append((reason, command_id, body))

        # The daemon keeps running: a valid command after all of them is delivered.
        ok = await client.say("live", "still there?")
        assert (await events.outcome(ok)).status == "delivered"

        def rejected(_: object) -> list[CommandOutcome]:
            return [e for e in events.events if isinstance(e, CommandOutcome) and e.status == "rejected"]

        await events.wait_for(lambda got: len(rejected(got)) >= len(cases))
        dead = await stack.dlq.wait(len(cases))
        await client.replies.wait_for(lambda got: len(got) >= len(cases))

        by_body = {d.body: d for d in dead}
        for reason, command_id, body in sent:
            if command_id and reason != "too_large":  # an oversized body is not parsed for its ids
                (outcome,) = events.outcomes(command_id)
                (reply,) = [
                    r for r in client.replies.events if isinstance(r, CommandOutcome) and r.command_id == command_id
                ]
                assert reply.event_id == outcome.event_id
            else:
                (outcome,) = [o for o in rejected(None) if o.reason == reason]
            assert (outcome.status, outcome.reason) == ("rejected", reason), outcome
            assert outcome.detail
            (routing_key,) = [raw[0] for raw, e in zip(events.raw, events.events, strict=True) if e is outcome]
            assert routing_key == "command.outcome.unknown", "no deployment is known for bad input"
            letter: DeadLetter = by_body[body]
            assert letter.headers[REJECT_REASON_HEADER] == reason
            assert letter.headers[REJECT_DETAIL_HEADER]
            assert letter.headers[ORIGINAL_EXCHANGE_HEADER] == stack.settings.command_exchange
            assert ORIGINAL_ROUTING_KEY_HEADER in letter.headers
            assert letter.reply_to == client.reply_to
        assert len(dead) == len(cases), "each bad command is dead-lettered exactly once"

        # Schema errors name the field by its JSON path.
        (schema,) = events.outcomes(str(attachment_without_type["command_id"]))
        assert any(err.loc == "$.attachments[0].mime_type" for err in schema.errors), schema.errors
        # Nothing reached Genesys but the valid messages.
        assert [r.text for r in stack.sim.received(stack.sim_session("live"))] == ["still there?"]


async def test_duplicate_session_start_is_rejected_and_dead_lettered(broker_names: BrokerNames, amqp_url: str) -> None:
    async with e2e_stack(broker_names, amqp_url) as stack:
        client, events = stack.client, stack.client.events
        await client.started("twice")
        again = await client.start("twice")
        outcome = await events.outcome(again)
        assert (outcome.status, outcome.reason) == ("rejected", "session_exists")
        ok = await client.say("twice", "the first session is untouched")
        assert (await events.outcome(ok)).status == "delivered"
        assert len(stack.sim.sessions()) == 1
        # The copy is confirmed before the next command is handed over, so it is due by now: wait briefly.
        (letter,) = await stack.dlq.wait(1, timeout_s=3.0)
        assert letter.headers[REJECT_REASON_HEADER] == "session_exists"


async def test_the_longest_ids_the_contract_allows_are_served(broker_names: BrokerNames, amqp_url: str) -> None:
    # 256 characters of correlation id and 128 of command id: more than an AMQP property's 255 bytes.
    long_correlation, long_command = "é" * 256, "é" * 128
    async with e2e_stack(broker_names, amqp_url) as stack:
        client, events = stack.client, stack.client.events
        start = await client.start("long-ids", correlation_id=long_correlation)
        started = await events.outcome(start)
        assert (started.status, started.correlation_id) == ("delivered", long_correlation)
        await client.send({"type": "message.send", "session_id": "long-ids", "text": "hi", "command_id": long_command})
        said = await events.outcome(long_command)
        assert (said.status, said.command_id) == ("delivered", long_command)
        assert not events.of("long-ids", "session.ended")
