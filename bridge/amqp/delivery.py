"""Settling one command delivery: ack, dead-letter with reasons in headers, or requeue.

:class:`AmqpDelivery` implements :class:`bridge.ports.Delivery`. Its methods never raise broker
errors: settling is best effort by nature. If the channel the command came on is gone (the broker
connection dropped), the delivery tag is dead and the broker will redeliver the command by itself
(with ``redelivered`` set); acking on a *new* channel would be wrong (an unknown tag closes that
channel). Such failures are logged (``delivery_settle_failed``) and counted in
``delivery_settle_failures{action}``; the session layer's idempotency by ``command_id`` absorbs the
redelivery.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

import aiormq.exceptions
import structlog
from aio_pika.abc import AbstractIncomingMessage

from bridge.amqp.connection import broker_error
from bridge.errors import BrokerError
from bridge.observability.metrics import Metrics

__all__ = ["AmqpDelivery", "DeadLetterSink"]

log = structlog.get_logger(__name__)

_ACK: Final = "ack"
_NACK: Final = "requeue"
_DEAD_LETTER: Final = "dead_letter"


class DeadLetterSink(Protocol):
    """Publishes a copy of a delivery to the dead-letter queue, confirmed. ``AmqpEventPublisher`` is one."""

    async def dead_letter(self, original: AbstractIncomingMessage, *, reason: str, detail: str) -> None:
        """Raises ``BrokerError`` when the copy could not be confirmed."""
        ...


class AmqpDelivery:
    """One command delivery. Call exactly one of :meth:`ack`, :meth:`dead_letter`, :meth:`requeue`, once.

    A second call is ignored and logged (``delivery_already_settled``): it is a bug in the caller, but
    one that must not kill the intake.
    """

    __slots__ = ("_dead_letters", "_hold", "_lost", "_message", "_metrics", "_settled")

    def __init__(
        self,
        message: AbstractIncomingMessage,
        *,
        dead_letters: DeadLetterSink,
        metrics: Metrics,
        hold: Callable[[AmqpDelivery], bool] | None = None,
        lost: Callable[[], None] | None = None,
    ) -> None:
        self._message = message
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._settled = False
        self._hold = hold  # returns True when it took the requeue over (drain: requeue in order later)
        self._lost = lost  # breaks the link this delivery came on

    @property
    def settled(self) -> bool:
        """True once a settle method was called."""
        return self._settled

    @property
    def message(self) -> AbstractIncomingMessage:
        """The delivered message, as it arrived (the router forwards it)."""
        return self._message

    @property
    def void(self) -> bool:
        """True once the channel it came on is closed: its tag is dead, and the broker redelivers it."""
        try:
            return bool(self._message.channel.is_closed)
        except aiormq.exceptions.ChannelInvalidStateError:
            return True  # aio-pika's way of saying the channel is closed

    @property
    def consumer_tag(self) -> str | None:
        """The tag of the consumer it came to: one per subscription, so it also tells links apart."""
        return self._message.consumer_tag

    @property
    def delivery_tag(self) -> int | None:
        """The broker's tag for this delivery (valid only on the channel it arrived on)."""
        return self._message.delivery_tag

    async def ack(self) -> None:
        """Remove the command from the queue: its outcome is published and confirmed."""
        if self._claim(_ACK):
            await self._settle(_ACK)

    async def requeue(self) -> None:
        """Give the command back to the broker (it counts towards ``x-delivery-limit``).

        While the intake drains, the requeue is held and done by :meth:`release` in delivery order.
        """
        if self._claim(_NACK) and not (self._hold is not None and self._hold(self)):
            await self._settle(_NACK)

    async def release(self) -> None:
        """Carry out a requeue that was held during a drain (the intake calls this, in delivery-tag order)."""
        await self._settle(_NACK)

    async def dead_letter(self, reason: str, detail: str) -> None:
        """Copy the command to the DLQ with ``x-bridge-reject-reason``/``-detail`` headers, then ack it.

        If the copy cannot be confirmed, the original is requeued instead: the broker redelivers it,
        and ``x-delivery-limit`` bounds how often that can happen. So is it when building the copy fails (a
        bug): left unsettled, it would hold its place in the prefetch window until the link closes, and the
        error would end the intake; requeued, the delivery limit has the broker dead-letter it in the end.
        """
        if not self._claim(_DEAD_LETTER):
            return
        try:
            await self._dead_letters.dead_letter(self._message, reason=reason, detail=detail)
        except Exception as exc:
            if isinstance(exc, BrokerError):
                log.warning("dead_letter_failed", reason=reason, error=str(exc), delivery_tag=self.delivery_tag)
            else:  # a bug: its traceback
                log.exception("dead_letter_failed", reason=reason, delivery_tag=self.delivery_tag)
            await self._settle(_NACK)
            return
        self._metrics.dead_lettered.labels(reason=reason).inc()
        await self._settle(_ACK)

    def break_link(self) -> None:
        """Give back every unsettled delivery of this one's link, in delivery order, this one included.

        For a handler that could not pass the command on and must not let a later one overtake it: a requeue
        of this delivery alone would put it behind the deliveries already in the window. Returns at once;
        the intake closes the link and consumes again. It leaves this delivery unsettled.
        """
        if self._lost is not None:
            self._lost()

    def _claim(self, action: str) -> bool:
        if self._settled:
            log.warning("delivery_already_settled", action=action, delivery_tag=self.delivery_tag)
            return False
        self._settled = True
        return True

    async def _settle(self, action: str) -> None:
        tag = self._message.delivery_tag
        if tag is None:
            return  # consumed without acks: nothing to settle (the intake never consumes so)
        try:
            # Handed to the connection's writer, not waited for on the socket: frames keep their order, and an
            # ack lost with its connection is a redelivery, which the sessions' idempotency absorbs anyway.
            channel = self._message.channel
            if action == _ACK:
                await channel.basic_ack(tag, wait=False)
            else:
                await channel.basic_nack(tag, requeue=True, wait=False)
        except Exception as exc:
            mapped = broker_error(exc)
            if mapped is exc:
                raise  # not a broker/channel error: a bug
            self._metrics.settle_failures.labels(action=action).inc()
            log.warning("delivery_settle_failed", action=action, error=str(mapped), delivery_tag=self.delivery_tag)
