"""This replica among the others: presence, probes and balance (docs/scaling.md).

- **Presence.** Every replica keeps one consumer on ``<intake>.replicas``; its consumer count is K, the
  number of replicas. (A single-active-consumer queue reports only its active consumer on RabbitMQ 3.x, so
  the partition queues cannot tell K.) A replica joins only once it consumes every partition queue, so the
  others release partitions only when it stands in line for them, and it leaves first when it drains.
- **Probes.** Every ``probe_interval_s`` each replica publishes a small probe into the intake queue and
  every partition queue. The active consumer of a queue gets it and so learns it
  owns that queue even when no command comes: a partition's sessions are resumed by a new owner within
  about one interval of the old owner's loss, commands or not.
- **Balance.** A replica's share lies between ``floor(P / K)`` and ``ceil(P / K)``. Every
  ``balance_interval_s`` a replica above ``ceil`` hands off its surplus (the partitions with the fewest
  sessions first): it fences them and subscribes again at the back of the line. A replica below ``floor``
  says so by holding a consumer on ``<intake>.hungry``; while anyone is hungry, a replica at ``ceil`` hands
  off one partition per interval (when ``P`` is not a multiple of ``K``, ``ceil`` alone would leave a
  newcomer with nothing: 16 partitions on 5 replicas as 4, 4, 4, 4, 0). Offered a partition, a replica
  takes it below ``floor``, or below ``ceil`` when nobody is hungry; otherwise it declines, once per two
  intervals, so the partition goes on to a replica that needs it; offered the same one again, it takes it
  (nobody else would). Its share of the deployment's connect window is the window divided by K.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from bridge.amqp.consumer import CommandIntake
from bridge.amqp.forwarder import QueueForwarder
from bridge.config import Settings
from bridge.errors import BridgeError, ConfigError
from bridge.observability.metrics import Metrics
from bridge.partition.layout import (
    fair_share,
    floor_share,
    hunger_queue,
    partition_queue,
    presence_queue,
    surplus,
)
from bridge.partition.owner import PartitionOwner
from bridge.ports import Clock
from bridge.session.flow import ConnectWindow
from bridge.tasks import TaskGroup, each_to_its_end, stop_if_asked

__all__ = ["Fleet", "Partition", "check_layout"]

log = structlog.get_logger(__name__)


async def check_layout(forwarder: QueueForwarder, *, intake_queue: str, partitions: int) -> None:
    """Refuse to start with a partition count other than the one the broker's queues were made with.

    Raises:
        ConfigError: ``<intake>.p<P>`` exists (the queues were made with more partitions), or ``p0`` exists
            and ``p<P-1>`` does not (fewer). Sessions would be looked for in the wrong partitions.
        BrokerError: the broker could not be asked.
    """
    if await forwarder.inspect(partition_queue(intake_queue, partitions)) is not None:
        found = await forwarder.count(lambda n: partition_queue(intake_queue, n), start=partitions + 1)
        raise _changed(partitions, f"at least {found}")
    first = await forwarder.inspect(partition_queue(intake_queue, 0)) if partitions > 1 else None
    if first is not None and await forwarder.inspect(partition_queue(intake_queue, partitions - 1)) is None:
        raise _changed(partitions, "fewer")


def _changed(partitions: int, found: str) -> ConfigError:
    return ConfigError(
        f"BRIDGE_PARTITIONS={partitions}, but the broker holds partition queues of {found} partitions: the "
        "partition count cannot change on a running deployment. Set it back, or repartition (drain every "
        "replica, run `genesys-bridge repartition`, start again): docs/scaling.md, 'Changing the partition count'"
    )


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition as this replica holds it: its owner (sessions) and its queue's consumer."""

    owner: PartitionOwner
    intake: CommandIntake


class Fleet:
    """Presence, probes and balance of this replica. Run :meth:`run` in a task for the replica's life;
    call :meth:`leave` first when draining.

    Args:
        forwarder: publishes probes, inspects queues, holds presence.
        settings: ``partitions``, ``probe_interval_s``, ``balance_interval_s``, ``genesys_connects_per_min``.
        intake_queue: the intake queue's name (the router's queue; partition queues are named after it).
        router: the intake queue's consumer, for the ``router_active`` gauge.
        window: this replica's connect window, resized to its share.
        replica: this replica's name, carried by its probes.
        clock: ``monotonic`` times the declines.
    """

    def __init__(
        self,
        forwarder: QueueForwarder,
        *,
        settings: Settings,
        intake_queue: str,
        router: CommandIntake,
        window: ConnectWindow,
        metrics: Metrics,
        replica: str,
        clock: Clock,
    ) -> None:
        self._forwarder = forwarder
        self._settings = settings
        self._intake_queue = intake_queue
        self._presence = presence_queue(intake_queue)
        self._hunger = hunger_queue(intake_queue)
        self._router = router
        self._window = window
        self._metrics = metrics
        self._replica = replica
        self._clock = clock
        self._partitions: list[Partition] = []
        self._declined: dict[int, float] = {}
        self._present = False
        self._hungry = False
        self.replicas = 1
        #: Replicas below their share's floor, as last counted (this one included).
        self.hungry = 0

    def add(self, partition: Partition) -> None:
        """Take ``partition`` into the balance (all of them, before :meth:`run`)."""
        self._partitions.append(partition)

    @property
    def partitions(self) -> Sequence[Partition]:
        """Every partition, owned or not."""
        return self._partitions

    def owned(self) -> list[Partition]:
        """The partitions this replica owns now."""
        return [p for p in self._partitions if p.owner.owned]

    # --- the owners' Accept ---------------------------------------------------------------------

    def accept(self, owner: PartitionOwner) -> bool:
        """Take ``owner``'s partition, just offered by the broker? Below the fair share, yes; at it, decline
        once per balance interval (the others below theirs get it), and take it when offered again."""
        owned, partitions = len(self.owned()), self._settings.partitions
        if owned < floor_share(partitions, self.replicas):
            return True
        if owned < fair_share(partitions, self.replicas) and not self.hungry:
            return True
        now = self._clock.monotonic()
        declined = self._declined.get(owner.index)
        if declined is not None and now - declined < self._settings.balance_interval_s * 2:
            return True
        self._declined[owner.index] = now
        return False

    # --- running --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Join (hold presence), probe and balance until cancelled. Broker trouble is logged and retried
        at the next interval; it never ends the loop."""
        async with TaskGroup() as tasks:
            tasks.create_task(self._probe_forever(), name="fleet-probes")
            tasks.create_task(self._balance_forever(), name="fleet-balance")

    async def leave(self) -> None:
        """Drop presence (draining): the others count one replica fewer and take up what this one leaves."""
        self._present = False
        await self._forwarder.let_go(self._hunger)
        await self._forwarder.let_go(self._presence)

    async def _probe_forever(self) -> None:
        self._present = True
        interval = self._settings.probe_interval_s
        queues = [self._intake_queue] + [p.intake.queue for p in self._partitions]
        while True:
            try:
                if self._present:
                    await self._forwarder.hold(self._presence)
                # Every probe of a round ends (on its confirm or its own deadline) before the round reports a
                # failure: a failed probe must not leave the others running with nobody to await them.
                await each_to_its_end(*(self._forwarder.probe(queue, replica=self._replica) for queue in queues))
                await self._count_replicas()
            except BridgeError as exc:
                log.warning("fleet_probe_failed", error=str(exc), error_type=type(exc).__name__)
            self._metrics.router_active.set(1 if self._router.owned else 0)
            stop_if_asked()  # the drain's cancel, which a broker call may have turned into a result or an error
            await asyncio.sleep(interval)

    async def _count_replicas(self) -> None:
        stats = await self._forwarder.inspect(self._presence)
        replicas = max(1, stats.consumers if stats is not None else 0)
        if replicas != self.replicas:
            log.info("replicas_changed", replicas=replicas, was=self.replicas)
        self.replicas = replicas
        hungry = self._present and len(self.owned()) < floor_share(self._settings.partitions, replicas)
        if hungry:
            await self._forwarder.hold(self._hunger)  # a no-op while held; again after a broker loss
        elif self._hungry:
            await self._forwarder.let_go(self._hunger)
        self._hungry = hungry
        stats = await self._forwarder.inspect(self._hunger)
        self.hungry = stats.consumers if stats is not None else 0
        self._metrics.replicas.set(replicas)
        self._window.set_limit(self._settings.genesys_connects_per_min // replicas)

    async def _balance_forever(self) -> None:
        while True:
            stop_if_asked()  # the drain's cancel, which a broker call may have turned into a result or an error
            await asyncio.sleep(self._settings.balance_interval_s)
            try:
                await self.balance()
            except BridgeError as exc:
                log.warning("fleet_balance_failed", error=str(exc), error_type=type(exc).__name__)

    async def balance(self) -> None:
        """Hand off the partitions above this replica's fair share, those with the fewest sessions first."""
        await self._count_replicas()  # fresh: a share computed from a stale count would move sessions twice
        backlog = await self._forwarder.inspect(self._intake_queue)
        if backlog is not None:
            self._metrics.router_backlog.set(backlog.messages)
        owned = self.owned()
        partitions = self._settings.partitions
        extra = surplus(len(owned), partitions, self.replicas)
        if not extra and self.hungry and not self._hungry and len(owned) > floor_share(partitions, self.replicas):
            extra = 1  # someone is below the floor and nobody is above the ceiling: make room, one at a time
        for partition in sorted(owned, key=lambda p: len(p.owner))[:extra]:
            log.info("partition_handing_off", partition=partition.owner.index, replicas=self.replicas)
            await partition.intake.hand_off()
