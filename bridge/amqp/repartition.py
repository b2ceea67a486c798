"""``genesys-bridge repartition``: change a stopped deployment's partition count (docs/scaling.md).

Run it with every replica stopped; it refuses while anything consumes the intake or a partition queue.
It finds the layout the broker holds, and moves it to ``BRIDGE_PARTITIONS`` partitions in two phases:

1. **Gather.** Every command waiting for a partition goes into one staging queue, ``<intake>.repartition``:
   first the intake queue of a release before partitions (one without ``x-single-active-consumer``, which
   is then deleted, since a queue's arguments cannot change in place), then each old partition queue in
   turn. A session's commands all sit in one source queue and are moved in order, one confirmed publish
   before each ack, so its order holds and nothing is lost (a crash in between leaves a duplicate, which
   the bridge answers from the session's idempotency record). Probes are dropped. Once every source is
   empty, the marker queue ``<intake>.repartition.to<N>`` is declared (N: the new count).
2. **Distribute.** The topology and the new partition queues are declared, and the staging queue is
   emptied into them, each command into its session's partition (a message without a ``session_id`` goes
   to the intake queue, where the router rejects it as it would have). Then, with durable sessions, every
   session's newest journal record is copied to its new partition's stream (:mod:`bridge.partition.rehome`;
   nothing is decrypted), and the queues and streams beyond the new count, the stream of a release before
   partitions and the marker are deleted.

A run that stops anywhere can be run again. The marker tells a rerun that gathering is done, so commands
already distributed are never gathered again behind the ones still staged; a rerun with another count
than the stopped run's is refused, naming the count to finish with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import aiormq
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from bridge.amqp.connection import ReopeningConnection, broker_error, close_channel_quietly, open_channel
from bridge.amqp.forwarder import QueueForwarder
from bridge.amqp.journal import StreamJournal
from bridge.amqp.messages import copy_message
from bridge.amqp.topology import TopologyNames, declare_partition_queue, declare_topology, intake_queue_arguments
from bridge.config import Settings
from bridge.errors import BridgeError, BrokerError, ConfigError
from bridge.partition.layout import (
    MAX_PARTITIONS,
    PROBE_TYPE,
    journal_stream_of,
    partition_of,
    partition_queue,
    presence_queue,
)
from bridge.partition.rehome import Rehomer

__all__ = ["RepartitionReport", "distributing_marker", "repartition", "staging_queue"]

#: Messages taken from a source queue at a time.
_PREFETCH: Final = 10  # small: a failed run returns what it holds, and every return counts toward x-delivery-limit

#: How long a source queue may stay silent while messages it counted are still due.
_IDLE_TIMEOUT_S: Final = 30.0

#: Headers the broker set on the source queue's deliveries, which a copy must not carry into another queue.
_DELIVERY_HEADERS: Final = frozenset({"x-delivery-count"})


def staging_queue(intake_queue: str) -> str:
    """Where a repartition gathers the waiting commands: ``<intake>.repartition``."""
    return f"{intake_queue}.repartition"


def distributing_marker(intake_queue: str, partitions: int) -> str:
    """The queue whose existence says a repartition to ``partitions`` partitions has gathered every command
    and is distributing them: ``<intake>.repartition.to<N>``."""
    return f"{intake_queue}.repartition.to{partitions}"


@dataclass(slots=True)
class _Moved:
    commands: int = 0
    probes: int = 0


@dataclass(slots=True)
class RepartitionReport:
    """What a run found and did."""

    partitions_before: int
    partitions_after: int
    #: The broker held a release's layout from before partitions.
    upgraded_intake: bool = False
    commands_moved: int = 0
    probes_dropped: int = 0
    sessions_live: int = 0
    records_copied: int = 0
    deleted: list[str] = field(default_factory=list)


async def repartition(settings: Settings, *, say: Callable[[str], None] = lambda _: None) -> RepartitionReport:
    """Move the broker's layout to ``settings.partitions`` partitions; ``say`` hears each step.

    The caller must have stopped every replica of the deployment, and should pause publishers while an
    intake queue of a release before partitions is declared again (step 1 of the module's description).

    Raises:
        BrokerError: a replica still consumes (the message names the queue), or the broker refused.
        BrokerUnavailable: the broker cannot be reached.
        StoreError: a journal stream cannot be used.
    """
    connection = ReopeningConnection(settings, name="bridge-cli-repartition")
    forwarder = QueueForwarder(connection, confirm_timeout_s=settings.publish_timeout_s)
    try:
        mover = _Mover(settings, connection, forwarder, say)
        return await mover.run()
    finally:
        await forwarder.close()
        await connection.close()


class _Mover:
    def __init__(
        self,
        settings: Settings,
        connection: ReopeningConnection,
        forwarder: QueueForwarder,
        say: Callable[[str], None],
    ) -> None:
        self._settings = settings
        self._names = TopologyNames.from_settings(settings)
        self._connection = connection
        self._forwarder = forwarder
        self._say = say
        self._intake = settings.intake_queue
        self._staging = staging_queue(settings.intake_queue)
        self._marker = distributing_marker(settings.intake_queue, settings.partitions)

    async def run(self) -> RepartitionReport:
        found = await self._forwarder.count(lambda n: partition_queue(self._intake, n))
        report = RepartitionReport(partitions_before=found, partitions_after=self._settings.partitions)
        sources = [partition_queue(self._intake, n) for n in range(found)]
        await self._refuse_consumers(
            [presence_queue(self._intake), self._intake, self._staging, self._marker, *sources]
        )
        distributing = await self._forwarder.inspect(self._marker) is not None
        if distributing:
            self._say("resuming: every command is gathered; distributing")
        else:
            await self._refuse_other_target()
            self._say(f"found {found} partition queue(s); moving to {self._settings.partitions}")
            distributing = await self._gather(sources, report)
        if distributing:
            await self._declare()
            await self._distribute(report)
        if self._settings.durable_sessions:
            await self._rehome_journal(report)
        now = await self._forwarder.count(lambda n: partition_queue(self._intake, n))
        for n in reversed(range(self._settings.partitions, now)):  # highest first: the count stays readable
            await self._delete(partition_queue(self._intake, n), report)
        await self._delete_any(self._marker, report, quiet=True)
        return report

    async def _gather(self, sources: list[str], report: RepartitionReport) -> bool:
        """Phase 1: move every waiting command into the staging queue; False when nothing needs moving."""
        old_intake = not sources and await self._intake_is_old()
        staged = await self._forwarder.inspect(self._staging) is not None
        if len(sources) == self._settings.partitions and not old_intake and not staged:
            self._say("the partition queues already match; no command to move")
            return False
        await self._declare_queue(self._staging, {"x-queue-type": "quorum"})
        for source in [self._intake] if old_intake else sources:
            report.probes_dropped += (await self._drain(source, lambda _: self._staging)).probes
        if old_intake:
            report.upgraded_intake = True
            await self._delete(self._intake, report)
        await self._declare_queue(self._marker, {"x-queue-type": "classic"})
        return True

    async def _distribute(self, report: RepartitionReport) -> None:
        """Phase 2: move the staged commands into their sessions' partition queues, then drop the staging queue."""
        moved = await self._drain(self._staging, self._destination)
        report.commands_moved += moved.commands
        report.probes_dropped += moved.probes
        await self._delete(self._staging, report)

    # -- layout ----------------------------------------------------------------------------------------

    async def _refuse_other_target(self) -> None:
        """A run to another count stopped while distributing (its staging queue and marker remain): finishing
        it with this count would split sessions between two layouts."""
        if await self._forwarder.inspect(self._staging) is None:
            return
        for partitions in range(1, MAX_PARTITIONS + 1):
            if await self._forwarder.inspect(distributing_marker(self._intake, partitions)) is not None:
                raise ConfigError(
                    f"a repartition to {partitions} partitions stopped while distributing its commands: run it "
                    f"again with BRIDGE_PARTITIONS={partitions} to finish it, then repartition again if need be"
                )

    async def _refuse_consumers(self, queues: list[str]) -> None:
        for queue in queues:
            stats = await self._forwarder.inspect(queue)
            if stats is not None and stats.consumers:
                raise BrokerError(
                    f"{queue!r} has {stats.consumers} consumer(s): stop every replica of the deployment (scale it "
                    "to 0) before repartitioning"
                )

    async def _intake_is_old(self) -> bool:
        """Whether the intake queue exists with the arguments of a release before partitions."""
        if await self._forwarder.inspect(self._intake) is None:
            return False
        async with self._channel() as channel:
            try:
                await channel.declare_queue(self._intake, durable=True, arguments=intake_queue_arguments(self._names))
            except aiormq.exceptions.ChannelPreconditionFailed:
                return True
        return False

    async def _declare(self) -> None:
        async with self._channel() as channel:
            await declare_topology(channel, self._names)
            for n in range(self._settings.partitions):
                await declare_partition_queue(channel, self._names, partition_queue(self._intake, n))

    async def _delete(self, queue: str, report: RepartitionReport) -> None:
        """Delete ``queue`` once it is empty. (Quorum queues refuse ``if-empty`` deletes: the count is read
        first, and nothing else publishes into these queues while every replica is stopped.)"""
        stats = await self._forwarder.inspect(queue)
        if stats is None:
            return
        if stats.messages:
            raise BrokerError(
                f"{queue!r} still holds {stats.messages} message(s), published while it was emptied: pause the "
                "publishers and run the tool again"
            )
        await self._delete_any(queue, report)

    async def _declare_queue(self, queue: str, arguments: dict[str, Any]) -> None:
        async with self._channel() as channel:
            await channel.declare_queue(queue, durable=True, arguments=arguments)

    # -- commands --------------------------------------------------------------------------------------

    def _destination(self, message: AbstractIncomingMessage) -> str:
        try:
            command = json.loads(message.body)
        except ValueError:
            return self._intake
        session_id = command.get("session_id") if isinstance(command, dict) else None
        if not isinstance(session_id, str) or not session_id:
            return self._intake  # the router rejects it, with the reason, as it would have
        return partition_queue(self._intake, partition_of(session_id, self._settings.partitions))

    async def _drain(self, source: str, destination: Callable[[AbstractIncomingMessage], str]) -> _Moved:
        """Move the messages ``source`` holds, in order, each to ``destination(it)``; probes are dropped.
        Nothing else publishes into ``source`` while the tool runs, so the count read first is all of it."""
        stats = await self._forwarder.inspect(source)
        due = stats.messages if stats is not None else 0
        moved = _Moved()
        if not due:
            return moved
        self._say(f"moving {due} message(s) out of {source}")
        # Closing the channel at the end returns what was delivered but not moved, in order.
        async with self._channel() as channel:
            await channel.set_qos(prefetch_count=_PREFETCH)
            queue = await channel.get_queue(source, ensure=False)
            async with queue.iterator() as messages:
                while due:
                    try:
                        async with asyncio.timeout(_IDLE_TIMEOUT_S):
                            message = await anext(messages)
                    except TimeoutError as exc:
                        raise BrokerError(
                            f"{source!r}: {due} message(s) counted but not delivered within {_IDLE_TIMEOUT_S}s"
                        ) from exc
                    due -= 1
                    if message.type == PROBE_TYPE:
                        moved.probes += 1
                    else:
                        headers = {k: v for k, v in (message.headers or {}).items() if k not in _DELIVERY_HEADERS}
                        await self._forwarder.forward(copy_message(message, headers=headers), destination(message))
                        moved.commands += 1
                    await message.ack()
        return moved

    # -- journal ---------------------------------------------------------------------------------------

    async def _rehome_journal(self, report: RepartitionReport) -> None:
        stream = self._settings.journal_stream
        found = await self._forwarder.count(lambda n: journal_stream_of(stream, n))
        old_stream = await self._forwarder.inspect(stream) is not None
        readings: list[int | None] = [*([None] if old_stream else []), *range(found)]
        planner = Rehomer(self._settings.partitions)
        for partition in readings:
            # A replay appends its end marker to the stream it reads.
            async with StreamJournal.from_settings(self._connection, self._settings, partition=partition) as journal:
                await journal.replay(planner.visitor(partition))
        plan = planner.plan()
        report.sessions_live = plan.live
        # Every stream of the new count is declared, copies or not: a later run finds them all by counting
        # up to the first one missing.
        for partition in range(self._settings.partitions):
            bodies = plan.copies.get(partition, [])
            async with StreamJournal.from_settings(self._connection, self._settings, partition=partition) as journal:
                for body in bodies:
                    await journal.append(body)
            if bodies:
                report.records_copied += len(bodies)
                self._say(f"copied {len(bodies)} session record(s) into {journal.stream}")
        # Copied and confirmed: a stream no owner reads any more would only bring old states back later.
        for n in reversed(range(self._settings.partitions, found)):
            await self._delete_any(journal_stream_of(stream, n), report)
        if old_stream:
            await self._delete_any(stream, report)

    async def _delete_any(self, name: str, report: RepartitionReport, *, quiet: bool = False) -> None:
        """Delete queue or stream ``name`` (gone already is fine); ``quiet``: not reported."""
        async with self._channel() as channel:
            try:
                await channel.queue_delete(name)
            except aiormq.exceptions.ChannelNotFoundEntity:
                return
        if not quiet:
            report.deleted.append(name)
            self._say(f"deleted {name}")

    @contextlib.asynccontextmanager
    async def _channel(self) -> AsyncIterator[AbstractChannel]:
        """A channel of its own for each step (a refused declare closes its channel), closed after it;
        broker and network errors come out mapped (:func:`broker_error`)."""
        connection = await self._connection.get()
        channel: AbstractChannel | None = None
        try:
            channel = await open_channel(connection, publisher_confirms=False)
            yield channel
        except BridgeError:
            raise
        except Exception as exc:
            raise broker_error(exc) from exc
        finally:
            await close_channel_quietly(channel)
