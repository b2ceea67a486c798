"""One confirmed publish: the single way the bridge puts a message on the broker and waits for it to be taken.

Every publish of the daemon goes through :func:`publish_confirmed`: events and dead letters
(:mod:`bridge.amqp.publisher`), journal records (:mod:`bridge.amqp.journal`), the router's copies and probes
(:mod:`bridge.amqp.forwarder`), and the dead-letter replay (:mod:`bridge.amqp.tools`). It writes the frames
with aiormq directly (no per-publish ``aio_pika.Message``), waits until they are written to the socket,
then waits for the broker's confirm. The publish itself runs in a task of its own, so a caller that gives
up never cancels aiormq's confirm (:class:`_Unanswered` says why that matters, and what becomes of a
publish given up).

The wait for the write keeps one publish per channel between the callers and the socket. Handing the
frames over without it let hundreds of publishes queue on a busy connection: with 10,000 sessions opening,
many timed out after their frames had gone out, and (before the task above) the broker's returns for them
met cancelled confirms and stalled the publisher connection for minutes (docs/performance.md).

Outcomes, decided here once::

    basic.ack                     -> True
    basic.return (unroutable)     -> False   (whether the channel raises on returns or not)
    basic.nack                    -> BrokerUnavailable  (retryable: the broker could not take it now)
    publish cancelled (shutdown)  -> BrokerUnavailable
    no confirm within timeout_s   -> PublishTimeout     (retryable)
    anything else                 -> raised as it is    (the caller maps it with ``broker_error``)
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import weakref
from collections.abc import Coroutine
from typing import Any, Final, cast

import aiormq
import aiormq.exceptions
from aio_pika.abc import AbstractChannel
from aiormq import spec
from aiormq.abc import ConfirmationFrameType

from bridge.amqp.messages import Outbound
from bridge.errors import BrokerUnavailable, PublishTimeout

__all__ = ["ABANDONED_MAX", "publish_confirmed"]

#: What aiormq answers a confirmed publish with (a returned message comes back as the message itself, which
#: aiormq's annotation leaves out).
_Answer = ConfirmationFrameType | None

#: Publishes on one channel whose callers gave up and that the broker has not answered, at most: a channel
#: with that many is stalled, and more would only hold their messages in memory (:class:`_Unanswered`).
ABANDONED_MAX: Final = 1024

#: Per channel, its publishes not answered yet (see :class:`_Unanswered`).
_UNANSWERED: weakref.WeakKeyDictionary[aiormq.Channel, _Unanswered] = weakref.WeakKeyDictionary()


async def publish_confirmed(
    channel: AbstractChannel, message: Outbound, *, exchange: str, routing_key: str, timeout_s: float, what: str
) -> bool:
    """Publish ``message`` with ``mandatory`` to ``exchange`` (``""``: the default exchange, by queue name) and
    wait for the broker's confirm. True when it was routed, False when the broker returned it unroutable.

    The caller passes a channel opened with publisher confirms, and ``what`` (the destination, for errors).
    A caller cancelled, or past ``timeout_s``, stops waiting; its publish is withdrawn if its frames are not
    queued for the socket yet, and otherwise goes on until the broker answers it or the channel closes (the
    broker may still take it).
    Publishes that carry the same message id go out on one channel one at a time, in call order.

    Raises:
        BrokerUnavailable: the broker nacked the message (retryable).
        PublishTimeout: no confirm within ``timeout_s`` (retryable; the message may have been taken).
        BrokerUnavailable: also when ``ABANDONED_MAX`` publishes on the channel are unanswered past their
            callers' deadlines (retryable: the channel is stalled; see :class:`_Unanswered`).
        Exception: the channel's own errors (closed channel, lost connection), unmapped, for the caller's
            ``broker_error``.
    """
    # aio-pika's channels are aiormq's, whose abstract class does not declare ``wait``.
    underlay = cast(aiormq.Channel, await channel.get_underlay_channel())
    unanswered = _UNANSWERED.get(underlay)
    if unanswered is None:
        unanswered = _UNANSWERED[underlay] = _Unanswered()
    publish = unanswered.start(underlay, message, exchange, routing_key, what)
    if not await unanswered.answered_within(publish, timeout_s):
        raise PublishTimeout(f"{what}: no confirm within {timeout_s}s")
    if publish.cancelled():  # the loop's shutdown, or the channel's close passing a cancel as its reason
        raise BrokerUnavailable(f"{what}: the publish was cancelled before the broker answered")
    try:
        result = publish.result()
    except aiormq.exceptions.PublishError:
        return False  # returned, on a channel that raises on returns
    except aiormq.exceptions.DeliveryError as exc:
        raise BrokerUnavailable(f"{what}: the broker refused the message (nack)") from exc
    if result is None:
        raise RuntimeError(f"{what}: published on a channel without publisher confirms")
    return isinstance(result, spec.Basic.Ack)  # a returned message comes back as the message itself


class _Unanswered:
    """One channel's publishes that the broker has not answered yet, each in a task of its own.

    Why a task per publish: aiormq resolves a publish's confirm future when the broker answers, and resolving
    one that was cancelled raises inside the channel's frame reader (a ``basic.return`` for it does so
    unguarded), which kills the reader: the channel's frames then pile up until the connection reader
    blocks and aiormq gives the whole connection up as stuck, minutes later. A caller's deadline or cancel
    would cancel that future if the caller awaited the publish itself; awaited in a task of its own, the
    future is only ever resolved by the broker's answer or by the channel's close, which also ends the
    task. A task therefore lives no longer than its channel. Its caller holds it while waiting, and this
    object once the caller gave up; this object holds no reference to the channel, so a closed channel and
    its entry go once its tasks are done.

    A publish given up before its frames are queued is withdrawn (:meth:`_give_up`); one given up after
    goes on, held here. On a channel that stopped answering, every retry could add one more of those, so at
    most ``ABANDONED_MAX`` given-up publishes wait per channel, and past that new ones are refused at once.

    aiormq matches a ``basic.return`` to its publish by the message id, so two publishes with one id
    answered together could swap outcomes (a returned copy would count as routed). A publish waits for
    every one before it with its id, until the broker has answered them, not just until their callers left
    (one of them withdrawn does not free the ones behind it).
    """

    __slots__ = ("_abandoned", "_by_id")

    def __init__(self) -> None:
        #: Given up by their callers, not answered yet: held here, as nothing else holds them.
        self._abandoned: set[asyncio.Task[_Answer]] = set()
        #: Per message id, its publishes not finished yet, oldest first.
        self._by_id: dict[str, list[asyncio.Task[_Answer]]] = {}

    def start(
        self, channel: aiormq.Channel, message: Outbound, exchange: str, routing_key: str, what: str
    ) -> asyncio.Task[_Answer]:
        """Start publishing ``message`` on ``channel`` (the one this object belongs to); the returned task ends
        with the broker's answer or the channel's close. The caller holds the task until it ends or
        :meth:`answered_within` gave it up.

        Raises:
            BrokerUnavailable: ``ABANDONED_MAX`` publishes on the channel were given up and are unanswered.
        """
        if len(self._abandoned) >= ABANDONED_MAX:
            raise BrokerUnavailable(
                f"{what}: {len(self._abandoned)} earlier publishes on this channel are unanswered past their "
                "deadlines; the channel is stalled"
            )
        message_id = message.properties.message_id
        same_id = self._by_id.get(message_id) if message_id else None
        # Most publishes have no earlier one with their id: their task runs aiormq's coroutine itself, with
        # no frame of ours around it (thousands are in flight while sessions open).
        task = asyncio.get_running_loop().create_task(
            _after(tuple(same_id), channel, message, exchange, routing_key)
            if same_id
            else _publish(channel, message, exchange, routing_key)
        )
        if message_id:  # without one, aiormq gives the publish a random id of its own
            self._by_id.setdefault(message_id, []).append(task)
            task.add_done_callback(functools.partial(self._forget, message_id))
        return task

    async def answered_within(self, publish: asyncio.Task[_Answer], timeout_s: float) -> bool:
        """Wait for ``publish`` to end, at most ``timeout_s``; False past it. Past it, or when the caller is
        cancelled, the publish is given up (:meth:`_give_up`). (The same as ``asyncio.wait``, at about half
        its cost per publish.)"""
        loop = asyncio.get_running_loop()
        woken = loop.create_future()

        def wake(_: object) -> None:
            if not woken.done():
                woken.set_result(None)

        publish.add_done_callback(wake)
        deadline = loop.call_later(timeout_s, wake, None)
        try:
            await woken  # a cancel of the caller cancels this future, never the publish
        finally:
            deadline.cancel()
            publish.remove_done_callback(wake)
            if not publish.done():
                self._give_up(publish)
        return publish.done()

    def _give_up(self, publish: asyncio.Task[_Answer]) -> None:
        """Withdraw ``publish`` if its frames are not on their way yet; otherwise leave it to finish, held here.

        aiormq's publish suspends on a future only once its frames are queued for the socket (the write's
        drain, then the confirm); before that it waits for the channel's lock, for room in the connection's
        write queue, or (ours) for an earlier publish with its id. Cancelled there, aiormq rolls it back
        cleanly and the broker never sees it, so an overloaded channel sheds the publishes nobody waits for.
        Cancelled on a future, it could cancel the confirm (see the class docstring), so it is left alone.
        """
        if not _frames_queued(publish):
            publish.cancel()
            return
        self._abandoned.add(publish)
        publish.add_done_callback(self._answered_late)

    def _answered_late(self, publish: asyncio.Task[_Answer]) -> None:
        """A held publish finished: let it go, and read its outcome (no caller will; asyncio would log an
        error nobody retrieved)."""
        self._abandoned.discard(publish)
        if not publish.cancelled():
            publish.exception()

    def _forget(self, message_id: str, task: asyncio.Task[_Answer]) -> None:
        same_id = self._by_id[message_id]
        same_id.remove(task)
        if not same_id:
            del self._by_id[message_id]


def _publish(
    channel: aiormq.Channel, message: Outbound, exchange: str, routing_key: str
) -> Coroutine[Any, Any, _Answer]:
    return channel.basic_publish(
        message.body,
        exchange=exchange,
        routing_key=routing_key,
        properties=message.properties,
        mandatory=True,
        wait=True,  # written before the confirm is awaited: see the module docstring
    )


async def _after(
    earlier: tuple[asyncio.Task[_Answer], ...],
    channel: aiormq.Channel,
    message: Outbound,
    exchange: str,
    routing_key: str,
) -> _Answer:
    """Publish once the broker answered every one of ``earlier`` (the publishes with the same message id)."""
    await asyncio.wait(earlier)
    return await _publish(channel, message, exchange, routing_key)


#: aiormq's publish and ours waiting for earlier ones, to find them among a publish task's coroutines.
_BASIC_PUBLISH = aiormq.Channel.basic_publish.__code__
_AFTER = _after.__code__


def _frames_queued(publish: asyncio.Task[_Answer]) -> bool:
    """Whether ``publish``'s frames may be queued for the socket (True unless they certainly are not).

    aiormq's publish awaits a future in its own frame only once they are (its write's drain, then its
    confirm); before, it is inside a coroutine (the lock's, the write queue's ``put``) or not started, and
    ours may still wait in :func:`_after`. Read from inspect's ``cr_await`` chain, from the task's coroutine
    down to aiormq's: a coroutine awaiting a future holds the future's iterator there, one awaiting a
    coroutine holds that coroutine. A chain of another shape (another aiormq) counts as queued: holding a
    publish is safe, cancelling one that awaits its confirm is not.
    """
    top: Any = publish.get_coro()
    coroutine = top
    while coroutine is not None and getattr(coroutine, "cr_code", None) is not _BASIC_PUBLISH:
        coroutine = getattr(coroutine, "cr_await", None)
    if coroutine is None:  # not inside aiormq's publish: queued unless still waiting in _after
        return getattr(top, "cr_code", None) is not _AFTER
    awaiting = coroutine.cr_await
    return awaiting is not None and not inspect.iscoroutine(awaiting)
