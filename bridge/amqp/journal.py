"""The session journal's storage on a RabbitMQ stream: a :class:`bridge.store.journal.JournalLog` (docs/durability.md).

The stream is a durable queue with ``x-queue-type: stream`` and retention by age (``x-max-age``), read over
AMQP 0.9.1 (no stream plugin needed). Appends go to the default exchange with publisher confirms and
``mandatory``, on a channel of their own. A replay publishes a unique *marker* (confirmed), then consumes
from ``x-stream-offset: first`` on a fresh channel until that marker comes back: everything appended before
the replay is then seen, and nothing waits on a timer. Stream consumers in AMQP 0.9.1 must ack manually and
set a prefetch (the broker hands out credit as acks arrive); the replay acks in batches and closes its
channel when done, which cancels the consumer.

Errors are mapped here, once: an unusable stream (a queue of the same name with other arguments, access
refused, deleted under us) is :class:`StoreError`; a lost connection is :class:`BrokerUnavailable`; a
missing confirm is :class:`PublishTimeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Final

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from aio_pika.robust_queue import RobustQueue

from bridge.config import Settings
from bridge.errors import BrokerUnavailable, ConfigError, PublishTimeout, StoreError
from bridge.store.codec import encode_marker

__all__ = ["StreamJournal", "open_stream_journal"]

#: AMQP ``type`` property of the two kinds of journal message (the body says it too; this avoids parsing).
TYPE_SESSION: Final = "session"
TYPE_MARKER: Final = "marker"

#: Stream segment size. RabbitMQ applies retention by deleting whole segments, and its default segment is
#: 500 MB: a journal of small records would then never reach the age limit. 8 MiB (about ten thousand
#: records) lets ``x-max-age`` take effect at a useful granularity. Fixed at declaration (docs/durability.md).
SEGMENT_BYTES: Final = 8 * 1024 * 1024

# RabbitMQ's x-max-age syntax: a positive integer and one unit (Years, Months, Days, hours, minutes, seconds).
_MAX_AGE = re.compile(r"^[1-9][0-9]*[YMDhms]$")


class StreamJournal:
    """Append to and replay a RabbitMQ stream. Implements :class:`bridge.store.journal.JournalLog`.

    The caller owns ``connection`` (robust or not) and must :meth:`open` before use and :meth:`close` after
    (or use ``async with``). :func:`open_stream_journal` does both and can own a connection itself.
    """

    def __init__(
        self,
        connection: AbstractConnection,
        *,
        stream: str,
        max_age: str,
        confirm_timeout_s: float,
        replay_idle_timeout_s: float = 30.0,
        replay_prefetch: int = 1000,
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
        self._channel: AbstractChannel | None = None

    @classmethod
    def from_settings(cls, connection: AbstractConnection, settings: Settings) -> StreamJournal:
        """A journal named and sized by ``BRIDGE_JOURNAL_STREAM``, ``_MAX_AGE`` and ``_PUBLISH_TIMEOUT_S``."""
        return cls(
            connection,
            stream=settings.journal_stream,
            max_age=settings.journal_max_age,
            confirm_timeout_s=settings.publish_timeout_s,
        )

    @property
    def stream(self) -> str:
        """The stream's queue name."""
        return self._stream

    async def open(self) -> None:
        """Declare the stream and open the append channel. Calling it again re-declares the stream (after
        it was deleted under us: then call ``JournalStore.rejournal()`` to write every live session again).

        Raises:
            StoreError: the stream cannot be declared (names the stream and the likely cause).
            BrokerUnavailable: the broker could not be reached.
        """
        await self._declare()
        if self._channel is not None and not self._channel.is_closed:
            return
        try:
            self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        except (aiormq.exceptions.AMQPError, ConnectionError, OSError) as exc:
            raise BrokerUnavailable(f"journal stream {self._stream!r}: cannot open a channel: {exc}") from exc

    async def close(self) -> None:
        """Close the append channel (awaiting nothing else: call ``JournalStore.flush`` first)."""
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            await channel.close()

    async def __aenter__(self) -> StreamJournal:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _declare(self) -> None:
        # A channel of its own: a failed declare closes the channel (PRECONDITION_FAILED), and a robust
        # channel would otherwise be reopened and the failure replayed.
        try:
            channel = await self._connection.channel(publisher_confirms=False)
        except (aiormq.exceptions.AMQPError, ConnectionError, OSError) as exc:
            raise BrokerUnavailable(f"journal stream {self._stream!r}: cannot open a channel: {exc}") from exc
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
        except (aiormq.exceptions.AMQPError, ConnectionError, OSError) as exc:
            raise BrokerUnavailable(f"journal stream {self._stream!r}: broker unavailable: {exc}") from exc
        finally:
            if not channel.is_closed:
                await channel.close()

    # -- JournalLog ----------------------------------------------------------------------------------

    async def append(self, body: bytes) -> None:
        """Append one session record; return once the broker confirmed it."""
        await self._publish(body, kind=TYPE_SESSION, message_id=uuid.uuid4().hex)

    async def _publish(self, body: bytes, *, kind: str, message_id: str) -> None:
        channel = self._channel
        if channel is None:
            raise StoreError(f"journal stream {self._stream!r} is not open")
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            type=kind,
            message_id=message_id,
            timestamp=datetime.now(UTC),
        )
        try:
            await channel.default_exchange.publish(
                message, routing_key=self._stream, mandatory=True, timeout=self._confirm_timeout_s
            )
        except aiormq.exceptions.PublishError as exc:
            # Returned as unroutable: the stream was deleted while we run. Not retryable.
            raise StoreError(f"journal stream {self._stream!r} is gone (publish returned unroutable)") from exc
        except aiormq.exceptions.DeliveryError as exc:
            raise BrokerUnavailable(f"journal stream {self._stream!r}: broker refused the record (nack)") from exc
        except TimeoutError as exc:
            raise PublishTimeout(
                f"journal stream {self._stream!r}: no confirm within {self._confirm_timeout_s}s"
            ) from exc
        except (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError, ConnectionError) as exc:
            raise BrokerUnavailable(f"journal stream {self._stream!r}: {exc}") from exc

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
                    visit(message.body)
                except Exception as exc:  # a bug in the visitor: end the replay with it, never hang
                    done.set_exception(exc)
                    return
            if is_ours or unacked >= ack_every:
                unacked = 0
                # One ack for the batch: stream credit is granted per ack; acking each record costs a frame.
                with contextlib.suppress(aiormq.exceptions.AMQPError, ConnectionError):
                    await message.ack(multiple=True)

        try:
            channel = await self._connection.channel(publisher_confirms=False)
        except (aiormq.exceptions.AMQPError, ConnectionError, OSError) as exc:
            raise BrokerUnavailable(f"journal stream {self._stream!r}: cannot open a channel: {exc}") from exc
        try:
            await channel.set_qos(prefetch_count=self._prefetch)
            queue = await channel.get_queue(self._stream, ensure=False)
            consume_args: dict[str, Any] = {"arguments": {"x-stream-offset": "first"}}
            if isinstance(queue, RobustQueue):
                consume_args["robust"] = False  # a restored consumer would restart from first; we fail instead
            await queue.consume(on_message, **consume_args)
            closing = (await channel.get_underlay_channel()).closing
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
        except aiormq.exceptions.ChannelClosed as exc:
            raise StoreError(f"journal stream {self._stream!r} cannot be read. Broker said: {exc}") from exc
        except (aiormq.exceptions.AMQPError, ConnectionError, OSError) as exc:
            raise BrokerUnavailable(f"journal stream {self._stream!r}: {exc}") from exc
        finally:
            # Closing the channel cancels the consumer; unacked stream deliveries need no settling.
            if not channel.is_closed:
                with contextlib.suppress(aiormq.exceptions.AMQPError, ConnectionError):
                    await channel.close()


@contextlib.asynccontextmanager
async def open_stream_journal(
    settings: Settings, *, connection: AbstractConnection | None = None
) -> AsyncIterator[StreamJournal]:
    """An open :class:`StreamJournal` for ``settings``; connects (robustly) and owns the connection if none is given.

    Raises what :meth:`StreamJournal.open` raises, and :class:`BrokerUnavailable` if the broker is unreachable.
    """
    owned: AbstractConnection | None = None
    if connection is None:
        try:
            owned = connection = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
        except (aiormq.exceptions.AMQPError, ConnectionError, OSError) as exc:
            raise BrokerUnavailable(f"journal: cannot connect to the broker: {type(exc).__name__}") from exc
    try:
        async with StreamJournal.from_settings(connection, settings) as journal:
            yield journal
    finally:
        if owned is not None:
            await owned.close()
