"""The journal on a real RabbitMQ stream: append with confirms, replay to a marker, restarts, failures,
and a connection lost between two uses (reopened by the next one, with the reconnect backoff)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractConnection
from pydantic import SecretStr

from bridge.amqp.connection import ReopeningConnection, open_connection
from bridge.amqp.journal import StreamJournal, open_stream_journal
from bridge.config import Settings
from bridge.errors import BrokerUnavailable, ConfigError, StateKeyError, StoreError
from bridge.store.codec import RecordFormat, encode_record, frame_batch, unframe_batch
from bridge.store.crypto import KeyRing, generate_key
from bridge.store.journal import JournalStore
from tests.amqp.conftest import WAIT_S, kill_connection
from tests.conftest import BrokerNames
from tests.store.helpers import FixedClock, corrupt_count, make_record, new_metrics

KEY = generate_key()


@pytest.fixture
def settings(amqp_url: str, broker_names: BrokerNames) -> Settings:
    return Settings(
        amqp_url=SecretStr(amqp_url),
        journal_stream=broker_names.journal_stream,
        journal_max_age="1D",
        reconnect_initial_s=1.0,
        broker_reconnect_max_s=30.0,
    )


def reopening(settings: Settings, *, clock: FixedClock | None = None) -> ReopeningConnection:
    """A journal connection named after the test's stream (so ``kill_connection`` finds it)."""
    return ReopeningConnection(settings, name=f"{settings.journal_stream}.conn", clock=clock or FixedClock())


@pytest.fixture
async def connection(settings: Settings) -> AsyncIterator[ReopeningConnection]:
    async with reopening(settings) as conn:
        yield conn


@pytest.fixture
async def stream(broker_names: BrokerNames, amqp_url: str) -> AsyncIterator[str]:
    """The test's stream name; the stream (or whatever queue the test made) is deleted afterwards."""
    yield broker_names.journal_stream
    conn = await aio_pika.connect(amqp_url)
    async with conn:
        channel = await conn.channel()
        await channel.queue_delete(broker_names.journal_stream)


def journal(connection: ReopeningConnection, stream: str) -> StreamJournal:
    return StreamJournal(connection, stream=stream, max_age="1D", confirm_timeout_s=10, replay_idle_timeout_s=10)


def journal_store(log: StreamJournal, *keys: str, record_format: RecordFormat = 1) -> JournalStore:
    return JournalStore(
        log, KeyRing.of(*(keys or (KEY,))), metrics=new_metrics(), clock=FixedClock(), record_format=record_format
    )


@pytest.mark.parametrize("record_format", [1, 2])
async def test_a_new_process_reads_back_every_live_session(
    settings: Settings, stream: str, record_format: RecordFormat
) -> None:
    # "Process" one writes, closes its connection; "process" two, on its own connection, reads back.
    async with reopening(settings) as first, journal(first, stream) as log:
        writer = journal_store(log, record_format=record_format)
        for i in range(40):
            await writer.save(make_record(f"s-{i}", n=1))
        await writer.save(make_record("s-0", n=2))  # newest wins
        await writer.save(make_record("s-1", n=2, closed=True))  # closed: never resumed
        await writer.flush()

    async with reopening(settings) as second, journal(second, stream) as log:
        live = await journal_store(log).load_live()
    by_id = {r.session_id: r for r in live}
    assert len(by_id) == 39
    assert "s-1" not in by_id
    assert by_id["s-0"].seq == 2
    assert by_id["s-7"].token.get_secret_value() == "tok-s-7"


async def test_replay_skips_other_readers_markers(connection: ReopeningConnection, stream: str) -> None:
    async with journal(connection, stream) as log:
        await log.append(b"one")
        seen: list[bytes] = []
        await log.replay(seen.append)  # leaves a marker in the stream
        await log.append(b"two")
        seen_again: list[bytes] = []
        await log.replay(seen_again.append)
    assert seen == [b"one"]
    assert seen_again == [b"one", b"two"]


async def test_replay_of_a_stream_longer_than_the_prefetch(connection: ReopeningConnection, stream: str) -> None:
    # Stream consumers get credit only as they ack: a replay past the prefetch proves the batched acks work.
    log = StreamJournal(connection, stream=stream, max_age="1D", confirm_timeout_s=10, replay_prefetch=10)
    async with log:
        bodies = [f"r{i}".encode() for i in range(35)]
        for body in bodies:
            await log.append(body)
        seen: list[bytes] = []
        await log.replay(seen.append)
    assert seen == bodies


async def test_rejournal_appends_every_live_session_again(connection: ReopeningConnection, stream: str) -> None:
    async with journal(connection, stream) as log:
        writer = journal_store(log)
        for sid in ("a", "b", "c"):
            await writer.save(make_record(sid))
        await writer.save(make_record("c", n=1, closed=True))
        before: list[bytes] = []
        await log.replay(before.append)
        assert await writer.rejournal() == 2
        after: list[bytes] = []
        await log.replay(after.append)
        assert len(after) == len(before) + 2
        live = await journal_store(log).load_live()
    assert sorted(r.session_id for r in live) == ["a", "b"]


async def test_corrupt_record_in_the_stream_is_skipped(connection: ReopeningConnection, stream: str) -> None:
    async with journal(connection, stream) as log:
        await journal_store(log).save(make_record("a"))
        await log.append(b"{half a rec")
        reader = journal_store(log)
        live = await reader.load_live()
    assert [r.session_id for r in live] == ["a"]
    assert corrupt_count(reader._metrics) == 1


async def stream_messages(amqp_url: str, stream: str, records: int) -> list[tuple[str | None, str | None, int]]:
    """The stream's messages from the first, as (AMQP type, content type, records in it), until ``records``
    were seen (markers left out)."""
    found: list[tuple[str | None, str | None, int]] = []
    enough = asyncio.Event()
    conn = await aio_pika.connect(amqp_url)
    async with conn:
        channel = await conn.channel()
        await channel.set_qos(prefetch_count=100)
        queue = await channel.get_queue(stream, ensure=False)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await message.ack()
            if message.type == "marker":
                return
            count = len(list(unframe_batch(message.body))) if message.type == "sessions" else 1
            found.append((message.type, message.content_type, count))
            if sum(n for _, _, n in found) >= records:
                enough.set()

        await queue.consume(on_message, arguments={"x-stream-offset": "first"})
        async with asyncio.timeout(WAIT_S):
            await enough.wait()
    return found


async def test_appends_made_together_share_stream_messages_and_replay_in_order(
    connection: ReopeningConnection, stream: str, amqp_url: str
) -> None:
    bodies = [f"r{i}".encode() for i in range(50)]
    async with journal(connection, stream) as log:
        await asyncio.gather(*(log.append(body) for body in bodies))
        seen: list[bytes] = []
        await log.replay(seen.append)
    assert seen == bodies
    messages = await stream_messages(amqp_url, stream, len(bodies))
    assert sum(n for _, _, n in messages) == len(bodies)
    assert len(messages) < len(bodies)
    assert {kind for kind, _, n in messages if n > 1} == {"sessions"}


async def test_each_record_on_the_stream_names_its_format_in_its_content_type(
    connection: ReopeningConnection, stream: str, amqp_url: str
) -> None:
    keys = KeyRing.of(KEY)
    when = FixedClock().now()
    async with journal(connection, stream) as log:
        await log.append(encode_record(make_record("a"), keys, written_at=when, record_format=1))
        await log.append(encode_record(make_record("b"), keys, written_at=when, record_format=2))
    messages = await stream_messages(amqp_url, stream, 2)
    assert messages == [("session", "application/json", 1), ("session", "application/octet-stream", 1)]


async def test_a_corrupt_record_in_a_batch_costs_that_record_only(
    connection: ReopeningConnection, stream: str, amqp_url: str
) -> None:
    keys = KeyRing.of(KEY)
    when = FixedClock().now()
    batch = frame_batch(
        [
            encode_record(make_record("a"), keys, written_at=when),
            b"{half a rec",
            encode_record(make_record("b"), keys, written_at=when),
        ]
    )
    async with journal(connection, stream) as log:
        conn = await aio_pika.connect(amqp_url)
        async with conn:
            channel = await conn.channel()
            await channel.default_exchange.publish(aio_pika.Message(batch, type="sessions"), routing_key=stream)
        reader = journal_store(log)
        live = await reader.load_live()
    assert sorted(r.session_id for r in live) == ["a", "b"]
    assert corrupt_count(reader._metrics) == 1


async def test_wrong_key_across_restarts_is_a_startup_error(settings: Settings, stream: str) -> None:
    async with reopening(settings) as first, journal(first, stream) as log:
        await journal_store(log, KEY).save(make_record("a"))
    async with reopening(settings) as second, journal(second, stream) as log:
        with pytest.raises(StateKeyError, match="BRIDGE_STATE_KEY is wrong"):
            await journal_store(log, generate_key()).load_live()
        # With the old key kept for reading, the same restart succeeds.
        assert len(await journal_store(log, generate_key(), KEY).load_live()) == 1


async def test_a_classic_queue_of_the_same_name_is_a_clear_store_error(
    connection: ReopeningConnection, stream: str
) -> None:
    channel = await (await connection.get()).channel()
    await channel.declare_queue(stream, durable=True)  # classic
    await channel.close()
    with pytest.raises(StoreError, match=r"cannot be declared: a queue of that name already exists") as info:
        await journal(connection, stream).open()
    assert stream in str(info.value)
    assert "BRIDGE_JOURNAL_STREAM" in str(info.value)
    # The shared connection is still usable afterwards.
    check = await (await connection.get()).channel()
    await check.close()


async def test_a_deleted_stream_makes_appends_fail_clearly(connection: ReopeningConnection, stream: str) -> None:
    async with journal(connection, stream) as log:
        channel = await (await connection.get()).channel()
        await channel.queue_delete(stream)
        await channel.close()
        with pytest.raises(StoreError, match="is gone"):
            await log.append(b"x")


async def test_bad_max_age_is_a_config_error(connection: ReopeningConnection, stream: str) -> None:
    with pytest.raises(ConfigError, match="BRIDGE_JOURNAL_MAX_AGE"):
        StreamJournal(connection, stream=stream, max_age="7 days", confirm_timeout_s=1)


async def test_open_stream_journal_owns_its_connection(amqp_url: str, stream: str) -> None:
    settings = Settings(amqp_url=SecretStr(amqp_url), journal_stream=stream, journal_max_age="2h")
    async with open_stream_journal(settings) as log:
        assert log.stream == stream
        await log.append(b"x")
        seen: list[bytes] = []
        await log.replay(seen.append)
    assert seen == [b"x"]


async def test_a_deleted_stream_is_rebuilt_from_memory_by_reopen_and_rejournal(
    connection: ReopeningConnection, stream: str
) -> None:
    async with journal(connection, stream) as log:
        writer = journal_store(log)
        await writer.save(make_record("a"))
        await writer.save(make_record("b"))
        channel = await (await connection.get()).channel()
        await channel.queue_delete(stream)
        await channel.close()
        with pytest.raises(StoreError, match="is gone"):
            await writer.save(make_record("a", n=1))
        await log.open()
        assert await writer.rejournal() == 2
        live = await journal_store(log).load_live()
    assert sorted((r.session_id, r.seq) for r in live) == [("a", 1), ("b", 0)]


async def test_losing_the_connection_during_a_replay_is_broker_unavailable(
    connection: ReopeningConnection, stream: str
) -> None:
    log = StreamJournal(connection, stream=stream, max_age="1D", confirm_timeout_s=10, replay_prefetch=4)
    await log.open()
    for i in range(20):
        await log.append(f"r{i}".encode())
    lose = asyncio.Event()

    def visit(body: bytes) -> None:
        if body == b"r5":
            lose.set()

    async def close_connection() -> None:
        await lose.wait()
        await (await connection.get()).close()

    async def replay_while_losing_it() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(close_connection())
            await log.replay(visit)

    with pytest.RaisesGroup(BrokerUnavailable):
        await replay_while_losing_it()


class CountingConnect:
    """Our ``Connect`` seam, counting the attempts to open a connection."""

    def __init__(self) -> None:
        self.attempts = 0

    async def __call__(self, settings: Settings, *, name: str) -> AbstractConnection:
        self.attempts += 1
        return await open_connection(settings, name=name)


async def _lost(connection: ReopeningConnection) -> asyncio.Event:
    """An event set once the broker closed ``connection``'s current connection."""
    lost = asyncio.Event()
    (await connection.get()).close_callbacks.add(lambda *_: lost.set())
    return lost


async def test_a_connection_the_broker_closed_is_reopened_by_the_next_append(settings: Settings, stream: str) -> None:
    clock = FixedClock()
    connect = CountingConnect()
    conn = ReopeningConnection(settings, name=f"{stream}.conn", connect=connect, clock=clock)
    async with conn, journal(conn, stream) as log:
        await log.append(b"before")
        lost = await _lost(conn)
        clock.advance(settings.broker_reconnect_max_s)  # it served long enough: the reconnect is immediate
        await kill_connection(conn.name)
        async with asyncio.timeout(WAIT_S):
            await lost.wait()

        await log.append(b"after")

        seen: list[bytes] = []
        await log.replay(seen.append)
    assert seen == [b"before", b"after"]
    assert connect.attempts == 2


async def test_a_connection_lost_soon_after_it_came_up_is_reopened_only_after_the_backoff(
    settings: Settings, stream: str
) -> None:
    clock = FixedClock()
    connect = CountingConnect()
    conn = ReopeningConnection(settings, name=f"{stream}.conn", connect=connect, clock=clock)
    async with conn, journal(conn, stream) as log:
        await log.append(b"one")
        lost = await _lost(conn)
        await kill_connection(conn.name)  # after less than broker_reconnect_max_s: a failed attempt
        async with asyncio.timeout(WAIT_S):
            await lost.wait()

        # Before the backoff wait is over, an append fails at once (retryable) without trying the broker.
        with pytest.raises(BrokerUnavailable, match=rf"journal stream '{re.escape(stream)}': .*next attempt is due"):
            await log.append(b"too early")
        assert connect.attempts == 1
        # The first wait is reconnect_initial_s plus a jitter of at most as much.
        clock.advance(2 * settings.reconnect_initial_s)
        await log.append(b"two")
        assert connect.attempts == 2

        seen: list[bytes] = []
        await log.replay(seen.append)
    assert seen == [b"one", b"two"]
