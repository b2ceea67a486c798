"""Settling a command delivery: the one path every command takes out of the bridge.

Whoever answers a command (the intake for a body it cannot read, the registry for a command it refuses or
has answered before, a session for a command it ran) settles it here, always in this order (the ack
discipline of docs/durability.md): publish the ``command.outcome`` and wait for the broker's confirm, then
settle the delivery. A ``rejected`` command (bad input, refused without trying) goes to the dead-letter
queue with its reason, wherever it was refused: the contract promises the original of every rejection
there. Anything else, and a ``duplicate`` answered from an earlier settlement, is acked.
"""

from __future__ import annotations

import structlog

from bridge.errors import BrokerError, is_retryable
from bridge.ports import Delivery, EventSink, TraceContext
from genesys_bridge_client.contract import CommandOutcome

__all__ = ["settle"]

log = structlog.get_logger(__name__)


async def settle(
    sink: EventSink,
    delivery: Delivery,
    outcome: CommandOutcome,
    *,
    deployment_id: str | None,
    route: str | None = None,
    reply_to: str | None,
    correlation_id: str | None = None,
    trace: TraceContext | None = None,
    duplicate: bool = False,
) -> bool:
    """Publish ``outcome`` (confirmed), then ack or dead-letter ``delivery``; True once it is settled.

    ``reply_to``, ``correlation_id`` and ``trace`` are the requester's (AMQP request/reply and W3C trace
    context); ``deployment_id`` and ``route`` route the event. The caller owns ``delivery`` and must not touch
    it afterwards. Never raises a broker error: an outcome the
    broker did not confirm (a retryable error) hands the delivery back (requeued; ``x-delivery-limit`` bounds
    the loop, and the caller's idempotency answers the redelivery) and returns False. An outcome that can
    never be published (a final error) still settles the delivery, or it would come back for ever.
    """
    try:
        await sink.publish(
            outcome,
            deployment_id=deployment_id,
            route=route,
            reply_to=reply_to,
            correlation_id=correlation_id,
            trace=trace,
        )
    except BrokerError as exc:
        log.error("command_outcome_publish_failed", command_id=outcome.command_id, error=str(exc))
        if is_retryable(exc):
            try:
                await delivery.requeue()
            except BrokerError:
                log.warning("command_requeue_failed", command_id=outcome.command_id)
            return False
    try:
        if outcome.status == "rejected" and not duplicate:
            await delivery.dead_letter(outcome.reason, outcome.detail)
        else:
            await delivery.ack()
    except BrokerError as exc:
        log.warning("command_settle_failed", command_id=outcome.command_id, error=str(exc))
    return True
