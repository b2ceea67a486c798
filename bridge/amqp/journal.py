"""The session journal's storage on a RabbitMQ stream: a :class:`bridge.store.journal.JournalLog` (docs/durability.md).

The stream is a durable queue with ``x-queue-type: stream`` and retention by age (``x-max-age``), read over
AMQP 0.9.1 (no stream plugin needed). Appends go to the default exchange with publisher confirms and
``mandatory``, on a channel of their own; appends made while others are being written share one message and
one confirm (:mod:`bridge.store.group_commit`). A replay publishes a unique *marker* (confirmed), then consumes
from ``x-stream-offset: first`` on a fresh channel until that marker comes back: everything appended before
the replay is then seen, and nothing waits on a timer. Stream consumers in AMQP 0.9.1 must ack manually and
set a prefetch (the broker hands out credit as acks arrive); the replay acks in batches and closes its
channel when done, which cancels the consumer.

The connection is a plain one, opened like the publisher's and the intake's, and held by a
:class:`~bridge.amqp.connection.ReopeningConnection`: a connection lost between two uses (a broker blip, an
operator closing it) is opened again by the next append or replay, with the reconnect backoff, and the
append channel with it. During an outage appends fail at once with :class:`BrokerUnavailable`; the
journal's callers keep the record and write it again later.

Errors are mapped here, once: an unusable stream (a queue of the same name with other arguments, access
refused, deleted under us) is :class:`StoreError`; a missing confirm is :class:`PublishTimeout`; anything
else the broker or the network causes goes through :func:`~bridge.amqp.connection.broker_error`
(:class:`BrokerUnavailable`, retryable, or :class:`BrokerError`, final), with the stream's name added.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Final, NoReturn

import aiormq
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from bridge.amqp.confirm import publish_confirmed
from bridge.amqp.connection import (
    Connect,
    ReopeningConnection,
    broker_error,
    close_channel_quietly,
    open_channel,
    open_connection,
)
from bridge.amqp.messages import Outbound
from bridge.config import Settings
from bridge.errors import BrokerError, BrokerUnavailable, ConfigError, StoreError
from bridge.partition.layout import journal_stream_of
from bridge.ports import Clock
from bridge.store.codec import encode_marker, frame_batch, media_type, unframe_batch
from bridge.store.group_commit import BATCH_MAX_RECORDS, BATCHES_IN_FLIGHT, GroupCommit

__all__ = ["StreamJournal", "open_stream_journal"]

#: AMQP ``type`` property of the kinds of journal message (the body says it too; this avoids parsing): one
#: record, a batch of records (:func:`~bridge.store.codec.frame_batch`), and a replay's end marker.
TYPE_SESSION: Final = "session"
TYPE_BATCH: Final = "sessions"
TYPE_MARKER: Final = "marker"

#: Stream segment size. RabbitMQ applies retention by deleting whole segments, and its default segment is
#: 500 MB: a journal of small records would then never reach the age limit. 8 MiB (about ten thousand
#: records) lets ``x-max-age`` take effect at a useful granularity. Fixed at declaration (docs/durability.md).
SEGMENT_BYTES: Final = 8 * 1024 * 1024

#: The journal's connection name at the broker, unless the daemon gives another.
CONNECTION_NAME: Final = "genesys-bridge.journal"

# RabbitMQ's x-max-age syntax: a positive integer and one unit (Years, Months, Days, hours, minutes, seconds).
_MAX_AGE = re.compile(r"^[1-9][0-9]*[YMDhms]$")


class StreamJournal:
    """Append to and replay a RabbitMQ stream. Implements :class:`bridge.store.journal.JournalLog`.

    The caller owns ``connection`` (and closes it after the journal), must :meth:`open` the journal before
    use and :meth:`close` it after (or use ``async with``). :func:`open_stream_journal` does all of it.
    """

    def __init__(
        self,
        connection: ReopeningConnection,
        *,
        stream: str,
        max_age: str,
        confirm_timeout_s: float,
        replay_idle_timeout_s: float = 30.0,
        replay_prefetch: int = 1000,
        batch_max_records: int = BATCH_MAX_RECORDS,
        batches_in_flight: int = BATCHES_IN_FLIGHT,
    ) -> None:
        if not _MAX_AGE.match(max_age):
            raise ConfigError(
                f"BRIDGE_JOURNAL_MAX_AGE: {max_age!r} is not a RabbitMQ x-max-age such as 7D, 12h or 90m "
                "(units Y, M, D, h, m, s)"
            )
        self._connection = connection
        self._stream = stream
        self._max_age = max_age
        self._confirm_timeout_s = confirm_timeout_s
        self._idle_timeout_s = replay_idle_timeout_s
        self._prefetch = replay_prefetch
        self._open = False
        self._channel: AbstractChannel | None = None
        self._channel_lock = asyncio.Lock()
        self._commit = GroupCommit(self._write, max_records=batch_max_records, in_flight=batches_in_flight)

    @classmethod
    def from_settings(
        cls, connection: ReopeningConnection, settings: Settings, *, partition: int | None = None
    ) -> StreamJournal:
        """A journal named and sized by ``BRIDGE_JOURNAL_STREAM``, ``_MAX_AGE`` and ``_PUBLISH_TIMEOUT_S``:
        ``partition``'s stream (``<journal stream>.p<N>``, docs/scaling.md), or the stream itself."""
        return cls(
            connection,
            stream=settings.journal_stream
            if partition is None
            else journal_stream_of(settings.journal_stream, partition),
            max_age=settings.journal_max_age,
            confirm_timeout_s=settings.publish_timeout_s,
        )

    @property
    def stream(self) -> str:
        """The stream's queue name."""
        return self._stream

    @property
    def messages_written(self) -> int:
        """Stream messages appended so far (a batch of records is one; markers not counted)."""
        return self._commit.writes

    async def open(self) -> None:
        """Declare the stream and open the append channel. Calling it again re-declares the stream (after
        it was deleted under us: then call ``JournalStore.rejournal()`` to write every live session again).

        Raises:
            StoreError: the stream cannot be declared (names the stream and the likely cause).
            BrokerUnavailable: the broker could not be reached.
        """
        await self._declare()
        self._open = True
        await self._append_channel()

    async def close(self) -> None:
        """Close the append channel (awaiting nothing else: call ``JournalStore.flush`` first)."""
        self._open = False
        channel, self._channel = self._channel, None
        await close_channel_quietly(channel)

    async def __aenter__(self) -> StreamJournal:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _declare(self) -> None:
        # A channel of its own: a failed declare closes its channel (PRECONDITION_FAILED), and the append
        # channel must not go with it.
        channel = await self._new_channel(publisher_confirms=False)
        try:
            await channel.declare_queue(
                self._stream,
                durable=True,
                arguments={
                    "x-queue-type": "stream",
                    "x-max-age": self._max_age,
                    "x-stream-max-segment-size-bytes": SEGMENT_BYTES,
                },
            )
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise StoreError(
                f"journal stream {self._stream!r} cannot be declared: a queue of that name already exists with "
                f"other arguments (a classic or quorum queue, or a stream with another x-max-age than "
                f"{self._max_age!r}). Set BRIDGE_JOURNAL_STREAM to a free name, or delete that queue after "
                f"checking what it holds. Broker said: {exc}"
            ) from exc
        except aiormq.exceptions.ChannelAccessRefused as exc:
            raise StoreError(
                f"journal stream {self._stream!r} cannot be declared: access refused for this user. Broker said: {exc}"
            ) from exc
        except aiormq.exceptions.ChannelClosed as exc:
            raise StoreError(f"journal stream {self._stream!r} cannot be declared. Broker said: {exc}") from exc
        except (Exception, asyncio.CancelledError) as exc:
            self._raise_mapped(exc, "cannot declare it")
        finally:
            await close_channel_quietly(channel)

    async def _append_channel(self) -> AbstractChannel:
        """The append channel; a new one, on a reopened connection if need be, once the last one was lost."""
        channel = self._channel
        if channel is not None and not channel.is_closed:
            return channel
        async with self._channel_lock:  # concurrent appends after a loss open one channel, not one each
            channel = self._channel
            if channel is None or channel.is_closed:
                channel = self._channel = await self._new_channel(publisher_confirms=True, on_return_raises=True)
            return channel

    async def _new_channel(self, *, publisher_confirms: bool, on_return_raises: bool = False) -> AbstractChannel:
        """A channel on the journal's connection, which is opened again first when it was lost.

        Raises:
            BrokerError: the connection or the channel cannot be opened (naming the stream: with one stream
                per partition, the log says which).
        """
        try:
            connection = await self._connection.get()
            return await open_channel(
                connection, publisher_confirms=publisher_confirms, on_return_raises=on_return_raises
            )
        except BrokerError as exc:
            raise self._naming(exc, "cannot open its connection or channel") from exc

    def _raise_mapped(self, exc: BaseException, doing: str) -> NoReturn:
        """Raise ``exc`` mapped by :func:`broker_error`, naming the stream; ``exc`` itself if ours or a bug."""
        mapped = broker_error(exc)
        if mapped is exc:
            raise exc
        raise self._naming(mapped, doing) from exc

    def _naming(self, error: BaseException, doing: str) -> BaseException:
        """``error`` again, its message prefixed with this stream and what it was ``doing``."""
        return type(error)(f"journal stream {self._stream!r}: {doing}: {error}")

    # -- JournalLog ----------------------------------------------------------------------------------

    async def append(self, body: bytes) -> None:
        """Append one session record; return once the broker confirmed it (with the records written beside it:
        :class:`~bridge.store.group_commit.GroupCommit`). A closed journal raises ``StoreError``."""
        await self._commit.append(body)

    async def _write(self, bodies: list[bytes]) -> None:
        if len(bodies) == 1:
            await self._publish(bodies[0], kind=TYPE_SESSION, message_id=uuid.uuid4().hex)
        else:
            await self._publish(frame_batch(bodies), kind=TYPE_BATCH, message_id=uuid.uuid4().hex)

    async def _publish(self, body: bytes, *, kind: str, message_id: str) -> None:
        if not self._open:
            raise StoreError(f"journal stream {self._stream!r} is not open")
        channel = await self._append_channel()
        message = Outbound.of(
            body, content_type=media_type(body), message_type=kind, message_id=message_id, timestamp=datetime.now(UTC)
        )
        try:
            routed = await publish_confirmed(
                channel,
                message,
                exchange="",
                routing_key=self._stream,
                timeout_s=self._confirm_timeout_s,
                what=f"journal stream {self._stream!r}",
            )
        except (Exception, asyncio.CancelledError) as exc:
            self._raise_mapped(exc, "append failed")
        if not routed:
            # Returned as unroutable: the stream was deleted while we run. Not retryable.
            raise StoreError(f"journal stream {self._stream!r} is gone (publish returned unroutable)")

    async def replay(self, visit: Callable[[bytes], None]) -> None:
        """Visit every session record appended before this call, in stream order (other markers skipped).

        Raises:
            BrokerUnavailable: the connection was lost during the replay.
            StoreError: no record arrived for ``replay_idle_timeout_s`` before the marker (a stalled stream).
        """
        marker_id = uuid.uuid4().hex
        await self._publish(
            encode_marker(marker_id, written_at=datetime.now(UTC)), kind=TYPE_MARKER, message_id=marker_id
        )
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        last_offset = -1
        unacked = 0
        last_progress = loop.time()
        ack_every = max(1, self._prefetch // 2)

        async def on_message(message: AbstractIncomingMessage) -> None:
            # Runs in delivery order up to its first await (aiormq starts one task per delivery, in order),
            # and ``visit`` is called before any await, so records are visited in stream order.
            nonlocal last_offset, unacked, last_progress
            if done.done():
                return
            last_progress = loop.time()
            offset = (message.headers or {}).get("x-stream-offset")
            if isinstance(offset, int):
                if offset <= last_offset:
                    return  # already seen (defensive: a re-subscription would restart from first)
                last_offset = offset
            unacked += 1
            is_ours = message.type == TYPE_MARKER and message.message_id == marker_id
            if is_ours:
                done.set_result(None)
            elif message.type != TYPE_MARKER:
                try:
                    if message.type == TYPE_BATCH:
                        for body in unframe_batch(message.body):
                            visit(body)
                    else:
                        visit(message.body)
                except Exception as exc:  # a bug in the visitor: end the replay with it, never hang
                    done.set_exception(exc)
                    return
            if is_ours or unacked >= ack_every:
                unacked = 0
                # One ack for the batch: stream credit is granted per ack; acking each record costs a frame.
                with contextlib.suppress(aiormq.exceptions.AMQPError, ConnectionError):
                    await message.ack(multiple=True)

        async def until_marker(closing: asyncio.Future[object]) -> None:
            while not done.done():
                await asyncio.wait((done, closing), timeout=self._idle_timeout_s, return_when=asyncio.FIRST_COMPLETED)
                if done.done():
                    break
                if closing.done():
                    raise BrokerUnavailable(f"journal stream {self._stream!r}: channel closed during replay")
                if loop.time() - last_progress >= self._idle_timeout_s:
                    raise StoreError(
                        f"journal stream {self._stream!r}: replay stalled, no record for "
                        f"{self._idle_timeout_s}s before the end marker"
                    )
            done.result()

        channel = await self._new_channel(publisher_confirms=False)
        try:
            await channel.set_qos(prefetch_count=self._prefetch)
            queue = await channel.get_queue(self._stream, ensure=False)
            await queue.consume(on_message, arguments={"x-stream-offset": "first"})
            await until_marker((await channel.get_underlay_channel()).closing)
        except aiormq.exceptions.ChannelClosed as exc:
            raise StoreError(f"journal stream {self._stream!r} cannot be read. Broker said: {exc}") from exc
        except (Exception, asyncio.CancelledError) as exc:
            self._raise_mapped(exc, "replay failed")
        finally:
            # Closing the channel cancels the consumer; unacked stream deliveries need no settling.
            await close_channel_quietly(channel)


@contextlib.asynccontextmanager
async def open_stream_journal(
    settings: Settings,
    *,
    connection_name: str = CONNECTION_NAME,
    connect: Connect = open_connection,
    clock: Clock | None = None,
) -> AsyncIterator[StreamJournal]:
    """An open :class:`StreamJournal` for ``settings`` on a connection of its own, closed on exit.

    ``connection_name`` names the connection at the broker; ``connect`` and ``clock`` are the seams of its
    :class:`~bridge.amqp.connection.ReopeningConnection`.

    Raises what :meth:`StreamJournal.open` raises: :class:`StoreError`, and :class:`BrokerUnavailable` (or
    :class:`~bridge.errors.BrokerError` for refused credentials) if the broker cannot be used.
    """
    connection = ReopeningConnection(settings, name=connection_name, connect=connect, clock=clock)
    try:
        async with StreamJournal.from_settings(connection, settings) as journal:
            yield journal
    finally:
        await connection.close()
