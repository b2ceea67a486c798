"""One confirmed publish: the single way the bridge puts a message on the broker and waits for it to be taken.

Every publish of the daemon goes through :func:`publish_confirmed`: events and dead letters
(:mod:`bridge.amqp.publisher`), journal records (:mod:`bridge.amqp.journal`), the router's copies and probes
(:mod:`bridge.amqp.forwarder`), and the dead-letter replay (:mod:`bridge.amqp.tools`). It writes the frames
with aiormq directly (no per-publish ``aio_pika.Message``), waits until they are written to the socket,
then waits for the broker's confirm. The wait for the write keeps one publish per channel between the
callers and the socket: handing the frames over without it let hundreds of publishes queue on a busy
connection, and with 10,000 sessions opening a publisher connection stalled, its confirms not arriving for
minutes while the broker sat idle, until aiormq gave the connection up as stuck (docs/performance.md).

Outcomes, decided here once::

    basic.ack                     -> True
    basic.return (unroutable)     -> False   (whether the channel raises on returns or not)
    basic.nack                    -> BrokerUnavailable  (retryable: the broker could not take it now)
    no confirm within timeout_s   -> PublishTimeout     (retryable)
    anything else                 -> raised as it is    (the caller maps it with ``broker_error``)
"""

from __future__ import annotations

import asyncio
import weakref
from typing import cast

import aiormq
import aiormq.exceptions
from aio_pika.abc import AbstractChannel
from aiormq import spec

from bridge.amqp.messages import Outbound
from bridge.errors import BrokerUnavailable, PublishTimeout

__all__ = ["publish_confirmed"]

#: Per channel, the publish in flight for each message id. aiormq matches a ``basic.return`` to its publish by
#: the message id, so two publishes with one id outstanding on one channel could swap outcomes: a returned
#: copy would count as routed. A second publish with an id already in flight waits for the first.
_IN_FLIGHT: weakref.WeakKeyDictionary[aiormq.Channel, dict[str, asyncio.Future[None]]] = weakref.WeakKeyDictionary()


async def publish_confirmed(
    channel: AbstractChannel, message: Outbound, *, exchange: str, routing_key: str, timeout_s: float, what: str
) -> bool:
    """Publish ``message`` with ``mandatory`` to ``exchange`` (``""``: the default exchange, by queue name) and
    wait for the broker's confirm. True when it was routed, False when the broker returned it unroutable.

    The caller passes a channel opened with publisher confirms, and ``what`` (the destination, for errors).
    A caller cancelled after the frames were queued does not withdraw them: the broker may still take the
    message. Publishes that carry the same message id go out on one channel one at a time.

    Raises:
        BrokerUnavailable: the broker nacked the message (retryable).
        PublishTimeout: no confirm within ``timeout_s`` (retryable; the message may have been taken).
        Exception: the channel's own errors (closed channel, lost connection), unmapped, for the caller's
            ``broker_error``.
    """
    # aio-pika's channels are aiormq's, whose abstract class does not declare ``wait``.
    underlay = cast(aiormq.Channel, await channel.get_underlay_channel())
    message_id = message.properties.message_id
    if not message_id:  # aiormq gives it a random id of its own
        return await _publish(underlay, message, exchange, routing_key, timeout_s, what)
    in_flight = _IN_FLIGHT.setdefault(underlay, {})
    while (earlier := in_flight.get(message_id)) is not None:
        await asyncio.wait({earlier})
    mine = asyncio.get_running_loop().create_future()
    in_flight[message_id] = mine
    try:
        return await _publish(underlay, message, exchange, routing_key, timeout_s, what)
    finally:
        del in_flight[message_id]
        mine.set_result(None)


async def _publish(
    underlay: aiormq.Channel, message: Outbound, exchange: str, routing_key: str, timeout_s: float, what: str
) -> bool:
    try:
        # Our deadline, not aiormq's ``timeout=`` (``asyncio.wait_for``, which on Python 3.11 can drop a
        # cancellation that arrives with the confirm).
        async with asyncio.timeout(timeout_s):
            result = await underlay.basic_publish(
                message.body,
                exchange=exchange,
                routing_key=routing_key,
                properties=message.properties,
                mandatory=True,
                wait=True,  # written before the confirm is awaited: see the module docstring
            )
    except aiormq.exceptions.PublishError:
        return False  # returned, on a channel that raises on returns
    except aiormq.exceptions.DeliveryError as exc:
        raise BrokerUnavailable(f"{what}: the broker refused the message (nack)") from exc
    except TimeoutError as exc:
        raise PublishTimeout(f"{what}: no confirm within {timeout_s}s") from exc
    if result is None:
        raise RuntimeError(f"{what}: published on a channel without publisher confirms")
    return isinstance(result, spec.Basic.Ack)  # a returned message comes back as the message itself
