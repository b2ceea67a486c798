"""``genesys-bridge dlq list`` and ``dlq replay``: real CLI processes against the real DLQ of this test.

The DLQ is filled the way the intake fills it: commands published to the command exchange are taken from
the intake queue and dead-lettered with the bridge's own :func:`dead_letter_message` (reason headers and
all), then the originals are acked.
"""

from __future__ import annotations

import json

from bridge.amqp.confirm import publish_confirmed
from bridge.amqp.messages import REJECT_REASON_HEADER, dead_letter_message
from bridge.config import Settings
from tests.amqp.conftest import Broker, command
from tests.cli.helpers import cli, cli_env


async def _dead_letter(broker: Broker, rejections: list[tuple[bytes | dict[str, object], str, str]]) -> None:
    """Publish each command, then move it from the intake queue to the DLQ as the intake does."""
    for body, _reason, _detail in rejections:
        await broker.send_command(body)
    originals = await broker.take(broker.settings.intake_queue, len(rejections))  # confirmed: each is there
    for original, (_body, reason, detail) in zip(originals, rejections, strict=True):
        copy = dead_letter_message(original, reason=reason, detail=detail)
        dlq = broker.settings.dead_letter_queue
        assert await publish_confirmed(broker.channel, copy, exchange="", routing_key=dlq, timeout_s=10, what=dlq)
        await original.ack()


async def _listed(env: dict[str, str], *args: str) -> list[dict[str, str | None]]:
    done = await cli("dlq", "list", "--json", *args, env=env)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


async def test_list_leaves_everything_and_replay_moves_only_what_matches(broker: Broker, settings: Settings) -> None:
    env = cli_env(settings)
    await _dead_letter(
        broker,
        [
            (command(command_id="bad-1", text=5), "schema_invalid", "text: Input should be a valid string"),
            (command(command_id="bad-2", text=6), "schema_invalid", "text: Input should be a valid string"),
            (command(session_id="gone", command_id="lost-1"), "unknown_session", "no session 'gone'"),
            (b"not json at all\n", "not_json", "Expecting value: line 1 column 1"),
        ],
    )

    listed = await _listed(env)
    assert [(e["reason"], e["command_id"]) for e in listed] == [  # never listed before: still in publish order
        ("schema_invalid", "bad-1"),
        ("schema_invalid", "bad-2"),
        ("unknown_session", "lost-1"),
        ("not_json", None),
    ]
    assert listed[2] | {"body_preview": None, "message_id": None} == {
        "reason": "unknown_session",
        "detail": "no session 'gone'",
        "original_exchange": settings.command_exchange,
        "original_routing_key": "message.send",
        "command_id": "lost-1",
        "session_id": "gone",
        "type": "message.send",
        "message_id": None,
        "body_preview": None,
    }
    assert listed[3]["body_preview"] == "not json at all\\n"
    readable = await cli("dlq", "list", env=env)
    assert readable.returncode == 0, readable.stderr
    assert (
        "schema_invalid  command_id=bad-1 session_id=s-1 type=message.send  routing_key=message.send" in readable.stdout
    )
    assert "detail: text: Input should be a valid string" in readable.stdout
    assert "not_json  (no ids readable)  routing_key=unknown" in readable.stdout
    assert "4 dead-lettered command(s)" in readable.stdout
    assert len(await _listed(env, "--limit", "2")) == 2
    assert len(await _listed(env)) == 4, "listing removes nothing"

    tap = await broker.tap(exchange=settings.command_exchange)

    # One of the two schema_invalid ones: it leaves the DLQ and is on the command exchange again, as first sent.
    first = await cli("dlq", "replay", "--reason", "schema_invalid", "--limit", "1", env=env)
    assert first.returncode == 0, first.stderr
    assert "replayed bad-1 (schema_invalid) -> message.send" in first.stdout
    assert "1 replayed, 3 kept" in first.stdout
    (again,) = await tap.take(1)
    assert again.routing_key == "message.send"
    assert json.loads(again.body)["command_id"] == "bad-1"
    headers = dict(again.headers or {})
    assert REJECT_REASON_HEADER not in headers
    assert headers["x-test"] == "yes", "the command's own headers travel on"
    # Listing and replaying return messages to the queue, which may reorder them: compare as sets.
    assert {e["command_id"] for e in await _listed(env)} == {"bad-2", "lost-1", None}

    # After the fix (the session exists now, say): replay that one command by its id.
    fixed = await cli("dlq", "replay", "--command-id", "lost-1", env=env)
    assert fixed.returncode == 0, fixed.stderr
    assert "1 replayed, 2 kept" in fixed.stdout
    (lost,) = await tap.take(1)
    assert json.loads(lost.body)["command_id"] == "lost-1"
    assert {e["command_id"] for e in await _listed(env)} == {"bad-2", None}

    # A filter nothing matches moves nothing.
    none = await cli("dlq", "replay", "--reason", "too_large", env=env)
    assert none.returncode == 0, none.stderr
    assert "0 replayed, 2 kept" in none.stdout

    # No filter: the rest, the body that is not JSON under its original routing key.
    rest = await cli("dlq", "replay", env=env)
    assert rest.returncode == 0, rest.stderr
    assert "2 replayed, 0 kept" in rest.stdout
    replayed = await tap.take(2)
    assert sorted(m.routing_key or "" for m in replayed) == ["message.send", "unknown"]
    assert await _listed(env) == []
    assert tap.messages.empty()


async def test_a_replay_nothing_would_receive_stays_in_the_queue(broker: Broker, settings: Settings) -> None:
    # The intake queue unbound: the command exchange routes nothing, so the broker returns the replayed copy.
    env = cli_env(settings)
    await _dead_letter(broker, [(command(command_id="bad-1", text=5), "schema_invalid", "text: not a string")])
    intake = await broker.channel.get_queue(settings.intake_queue)
    await intake.unbind(settings.command_exchange, routing_key="#")

    done = await cli("dlq", "replay", env=env)

    assert done.returncode == 1
    assert "bad-1 returned unroutable, kept" in done.stderr
    assert "0 replayed, 1 kept" in done.stdout
    assert [e["command_id"] for e in await _listed(env)] == ["bad-1"]


async def test_dlq_without_its_queue_fails_clearly(settings: Settings) -> None:
    # Nothing is declared for this test's names: the DLQ does not exist.
    done = await cli("dlq", "list", env=cli_env(settings))
    assert done.returncode == 1
    assert "NOT_FOUND" in done.stderr
    assert settings.dead_letter_queue in done.stderr
