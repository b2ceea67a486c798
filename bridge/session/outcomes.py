"""Command outcomes: correlation ids, Genesys-code mapping, and settling with ack discipline.

Settling a command (the ack discipline of docs/durability.md) is always, in this order:

1. remember the outcome by ``command_id`` (so a redelivery is answered, never executed again, even if
   step 2 or 3 fails and the broker redelivers);
2. publish the ``command.outcome`` event and wait for the broker's confirm (with the envelope's ``reply_to``);
3. only then ack the delivery (or dead-letter it, for bad input).

:class:`OutcomeBook` is the idempotency cache (a bounded LRU of settled outcomes) plus the set of
``command_id``s in flight; a duplicate of an in-flight command is held and answered with the original's
outcome once it settles. It is shared by the registry and every actor, all on one event loop.

The cache lives in memory; across a restart the session record's ``recent_outcomes`` answers a
redelivered command instead (the registry hands it to :meth:`OutcomeBook.answer_duplicate`).
"""

from __future__ import annotations

import uuid
from typing import Literal

import structlog

from bridge.errors import BrokerError
from bridge.observability.metrics import Metrics
from bridge.ports import Clock, Envelope, EventSink
from bridge.session.settled import SettledCache
from bridge.settle import settle
from genesys_bridge_client.contract.events import CommandOutcome, OutcomeReason

__all__ = [
    "END_KEY",
    "JWT_KEY",
    "REAUTH_KEY",
    "Admission",
    "OutcomeBook",
    "attachment_key",
    "reason_for_code",
    "rejected_reason",
    "tracing_id_for",
]

log = structlog.get_logger(__name__)

#: Namespace for tracingIds: uuid5(namespace, command_id) is the same in every process, so a command
#: redelivered after a crash is sent with the same tracingId (§3.1, §10).
_TRACING_NAMESPACE = uuid.UUID("5f0c3c8e-6d0e-4b2a-9d57-0b3d7a8f4c21")

#: Waiter keys (and tracingIds) of requests whose success reply may carry no tracingId: ``getJwt`` and
#: the ``Clear`` of ``session.end``. One of each is in flight per session at most.
JWT_KEY = "getjwt"
END_KEY = "clear"
#: The key (and tracingId) of configuring an open socket again with a renewed JWT (§4.2).
REAUTH_KEY = "reauth"

Admission = Literal["new", "replayed", "held"]


def tracing_id_for(command_id: str, part: str = "") -> str:
    """The ``tracingId`` of a command's request, derived deterministically from ``command_id``."""
    return str(uuid.uuid5(_TRACING_NAMESPACE, f"{command_id}/{part}" if part else command_id))


def attachment_key(attachment_id: str) -> str:
    """The waiter key the actor resolves for presign, upload success and upload failure frames."""
    return f"attachment:{attachment_id}"


#: ``CommandRejected`` reasons the contract has a word for; any other is ``schema_invalid``.
_REJECTED_REASONS: dict[str, OutcomeReason] = {
    "message_too_long": "message_too_long",
    "attributes_too_large": "attributes_too_large",
    "too_large": "too_large",
    "unknown_region": "unknown_region",
}


def rejected_reason(reason: str) -> OutcomeReason:
    """A ``CommandRejected`` reason (from the protocol or an endpoint resolver), narrowed to the contract's
    vocabulary; anything else is ``schema_invalid``."""
    return _REJECTED_REASONS.get(reason, "schema_invalid")


def reason_for_code(code: int, *, typing: bool = False) -> OutcomeReason:
    """Map a Genesys error code (§6) to an outcome reason."""
    if code == 409:
        return "read_only"
    if code == 4011:
        return "message_too_long"
    if code == 4013:
        return "attributes_too_large"
    if code == 403 and typing:
        return "typing_disabled"
    if code in (429, 4029):
        return "rate_limited"
    if code in (4006, 4007):
        return "session_ended"
    return "genesys_error"


class OutcomeBook:
    """Idempotency cache and settlement of command deliveries."""

    def __init__(self, *, sink: EventSink, metrics: Metrics, clock: Clock, cache_size: int) -> None:
        self._sink = sink
        self._metrics = metrics
        self._clock = clock
        self._settled = SettledCache(cache_size)
        self._inflight: dict[str, list[Envelope]] = {}

    def admit(self, envelope: Envelope) -> Admission:
        """Classify a delivery: ``new`` (run it), ``replayed`` (call :meth:`replay`), ``held`` (a duplicate
        of an in-flight command; it is answered when the original settles)."""
        command_id = envelope.command.command_id
        if self._settled.touch(command_id):
            return "replayed"
        if command_id in self._inflight:
            self._inflight[command_id].append(envelope)
            return "held"
        self._inflight[command_id] = []
        return "new"

    async def replay(self, envelope: Envelope) -> None:
        """Publish the original outcome of ``envelope``'s command again (to its ``reply_to``) and ack."""
        kept = self._settled.get(envelope.command.command_id)
        if kept is None:  # admitted as replayed just before, on the same loop, with no await in between
            raise RuntimeError("replay() of a command that is not settled")
        outcome, deployment_id, route = kept
        self._metrics.commands.settled(envelope.command.type, "duplicate", outcome.reason)
        await self._publish_and(envelope, outcome, deployment_id, route, duplicate=True)

    async def settle(
        self,
        envelope: Envelope,
        outcome: CommandOutcome,
        *,
        deployment_id: str | None,
        route: str | None = None,
    ) -> None:
        """Remember, publish (confirmed) and then ack ``envelope``.

        A ``rejected`` command (bad input, refused without trying) is dead-lettered with its reason instead of
        acked, wherever it was refused: the contract promises the original of every rejection in the DLQ.
        """
        command = envelope.command
        self._remember(command.command_id, outcome, deployment_id, route)
        self._metrics.commands.settled(command.type, outcome.status, outcome.reason)
        if envelope.received_at:
            elapsed = max(0.0, self._clock.monotonic() - envelope.received_at)
            self._metrics.command_latency.labels(type=command.type).observe(elapsed)
        await self._publish_and(envelope, outcome, deployment_id, route, duplicate=False)
        await self._answer_held(command.command_id, outcome, deployment_id, route)

    async def answer_duplicate(
        self, envelope: Envelope, outcome: CommandOutcome, *, deployment_id: str | None, route: str | None = None
    ) -> None:
        """Answer a command settled before (e.g. by a previous process, from the session record) with
        ``outcome`` without running it: remembered, published, acked; counted as a ``duplicate``."""
        command = envelope.command
        self._remember(command.command_id, outcome, deployment_id, route)
        self._metrics.commands.settled(command.type, "duplicate", outcome.reason)
        await self._publish_and(envelope, outcome, deployment_id, route, duplicate=True)
        await self._answer_held(command.command_id, outcome, deployment_id, route)

    async def _answer_held(
        self, command_id: str, outcome: CommandOutcome, deployment_id: str | None, route: str | None
    ) -> None:
        """Answer the duplicates held while ``command_id`` ran, each counted as a ``duplicate``."""
        for duplicate in self._inflight.pop(command_id, []):
            self._metrics.commands.settled(duplicate.command.type, "duplicate", outcome.reason)
            await self._publish_and(duplicate, outcome, deployment_id, route, duplicate=True)

    async def publish_only(
        self, envelope: Envelope, outcome: CommandOutcome, *, deployment_id: str | None, route: str | None = None
    ) -> None:
        """Publish a non-settling outcome (``will_retry``); the delivery stays unacked.

        It goes to the event exchange, and to ``reply_to`` only when the command asked for notices
        (``reply_notices``): a standard request/reply client takes the first reply as the answer, and that must
        be the settled outcome. Advisory: the settled outcome follows anyway, so a broker error here is logged,
        not raised and not retried (a broker blip must neither end the session nor hold up the resend).
        """
        try:
            await self._sink.publish(
                outcome,
                deployment_id=deployment_id,
                route=route,
                reply_to=envelope.reply_to if envelope.command.reply_notices else None,
                correlation_id=envelope.correlation_id,
                trace=envelope.trace,
            )
        except BrokerError as exc:
            log.warning(
                "command_notice_publish_failed",
                command_id=envelope.command.command_id,
                status=outcome.status,
                error=str(exc),
            )

    async def requeue(self, envelope: Envelope) -> None:
        """Give ``envelope`` (and duplicates held behind it) back to the broker: it was never started."""
        for item in [envelope, *self._inflight.pop(envelope.command.command_id, [])]:
            try:
                await item.delivery.requeue()
            except BrokerError as exc:  # the broker redelivers unacked messages anyway
                log.warning("command_requeue_failed", command_id=item.command.command_id, error=str(exc))

    def _remember(self, command_id: str, outcome: CommandOutcome, deployment_id: str | None, route: str | None) -> None:
        self._settled.put(command_id, outcome, deployment_id, route)

    async def _publish_and(
        self,
        envelope: Envelope,
        outcome: CommandOutcome,
        deployment_id: str | None,
        route: str | None,
        *,
        duplicate: bool,
    ) -> None:
        await settle(
            self._sink,
            envelope.delivery,
            outcome,
            deployment_id=deployment_id,
            route=route,
            reply_to=envelope.reply_to,
            correlation_id=envelope.correlation_id,
            trace=envelope.trace,
            duplicate=duplicate,
        )
