"""Each partition's journal: a stream of its own, on one connection the process shares (docs/scaling.md).

A new owner of partition ``p`` replays only ``<journal stream>.p<p>``, so taking a partition over costs
what its sessions wrote, not what every session of the deployment wrote.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from bridge.amqp.connection import Connect, ReopeningConnection, open_connection
from bridge.amqp.journal import StreamJournal
from bridge.config import Settings
from bridge.observability.metrics import Metrics
from bridge.partition.layout import partition_of
from bridge.ports import Clock
from bridge.store import JournalStore, KeyRing

__all__ = ["StreamJournals"]


class StreamJournals:
    """Opens a partition's :class:`~bridge.store.JournalStore` on its stream. Implements
    :class:`bridge.partition.owner.PartitionJournals`.

    The caller owns the shared connection: it must :meth:`close` this after every partition's journal is
    closed (or use ``async with``).
    """

    def __init__(
        self,
        settings: Settings,
        keys: KeyRing,
        *,
        metrics: Metrics,
        clock: Clock,
        connection_name: str,
        connect: Connect = open_connection,
    ) -> None:
        self._settings = settings
        self._keys = keys
        self._metrics = metrics
        self._clock = clock
        self._connection = ReopeningConnection(settings, name=connection_name, connect=connect, clock=clock)

    async def __aenter__(self) -> StreamJournals:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the shared connection."""
        await self._connection.close()

    @contextlib.asynccontextmanager
    async def open(self, partition: int) -> AsyncIterator[JournalStore]:
        """The journal of ``partition``, declared if new; flushed and closed on exit.

        Raises:
            StoreError: the stream cannot be declared; BrokerUnavailable: the broker cannot be reached.
        """
        log = StreamJournal.from_settings(self._connection, self._settings, partition=partition)
        async with log:
            store = JournalStore(
                log,
                self._keys,
                metrics=self._metrics,
                clock=self._clock,
                record_format=self._settings.journal_format,
                # Records of sessions a repartition moved elsewhere may remain in this stream.
                belongs=lambda session_id: partition_of(session_id, self._settings.partitions) == partition,
            )
            try:
                yield store
            finally:
                await store.flush()
