"""Broker connections: opening one, mapping aio-pika's errors once, the reconnect policy, link health.

Every broker connection of the bridge is a plain (non-robust) one opened by :func:`open_connection`.
We do not use ``connect_robust``: its background recovery restores channels and consumers behind our
back, and a consumer it failed to restore looks exactly like an idle one. Reconnects are explicit:

- the publisher and the intake each keep their link up with a task of their own
  (:class:`bridge.amqp.link.BrokerLink`): connect, declare the topology, (re)consume, *verify*, serve
  until lost, repeat;
- the journal, used only when a session saves or the daemon replays, has no task: its
  :class:`ReopeningConnection` reopens the connection on the first use after a loss.

Both follow one backoff policy, :class:`ReconnectBackoff`.

Error mapping (the one boundary where aio-pika/aiormq exceptions become ours)::

    authentication refused, ACCESS_REFUSED, PRECONDITION_FAILED   -> BrokerError        (final)
    connection/channel lost, socket errors, NOT_FOUND, timeouts    -> BrokerUnavailable  (retryable)
    a channel asked of a connection that closed (open_channel)     -> BrokerUnavailable  (retryable)
    aiormq's bare Exception (the socket ended without a close)     -> BrokerUnavailable  (retryable)
    a CancelledError nobody asked for (heartbeat: link stuck)      -> BrokerUnavailable  (retryable)

``bridge.errors.is_retryable`` then decides; nobody here second-guesses it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Protocol, Self

import aio_pika
import aiormq.exceptions
import stamina
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection

from bridge.backoff import backoff_delay
from bridge.config import Settings
from bridge.errors import BridgeError, BrokerError, BrokerUnavailable, is_retryable
from bridge.observability.metrics import Metrics
from bridge.ports import Clock, LoopClock
from bridge.tasks import asked_to_stop

__all__ = [
    "BrokerLinks",
    "Connect",
    "ReconnectBackoff",
    "ReopeningConnection",
    "broker_error",
    "close_channel_quietly",
    "close_quietly",
    "connection_lost",
    "open_channel",
    "open_connection",
    "reconnect_attempts",
]

log = structlog.get_logger(__name__)

#: Seconds to wait for the TCP connect plus the AMQP handshake.
CONNECT_TIMEOUT_S = 10.0
#: Seconds a graceful ``connection.close`` may take before we drop it.
CLOSE_TIMEOUT_S = 5.0

_FINAL_AMQP_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.ProbableAuthenticationError,
    aiormq.exceptions.AuthenticationError,
    aiormq.exceptions.IncompatibleProtocolError,
    aiormq.exceptions.ChannelAccessRefused,
    aiormq.exceptions.ChannelPreconditionFailed,
)
_TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError,  # connection closed, channel closed (NOT_FOUND, ...), nack, frame errors
    aiormq.exceptions.ChannelInvalidStateError,  # the channel object is already closed
    ConnectionError,
    OSError,
    TimeoutError,
)


def broker_error(exc: BaseException) -> BaseException:
    """Map an exception raised by aio-pika/aiormq or the socket layer to the bridge's tree.

    Returns a :class:`BrokerError` (final) or :class:`BrokerUnavailable` (retryable) for anything the
    broker or the network can cause; returns ``exc`` itself when it is ours already or a bug (so bugs
    keep their type and traceback), or a cancellation of the running task. Callers that await a broker
    call in a task that must outlive the connection catch ``asyncio.CancelledError`` too, and pass it here:
    aiormq raises one into every call waiting on a connection it gave up as stuck.
    """
    if isinstance(exc, BridgeError):
        return exc
    if isinstance(exc, _FINAL_AMQP_ERRORS):
        return BrokerError(f"broker refused: {type(exc).__name__}: {exc}")
    if isinstance(exc, _TRANSIENT_ERRORS):
        return BrokerUnavailable(f"{type(exc).__name__}: {exc}".rstrip(": "))
    if type(exc) is Exception:
        # aiormq fails every call waiting on a connection that ended with no reason (its socket closed
        # without an AMQP close: a proxy's or a peer's FIN) with a bare Exception.
        return BrokerUnavailable("the connection ended with no reason given")
    if isinstance(exc, asyncio.CancelledError) and not asked_to_stop():
        # aiormq fails every call waiting on a connection it gave up as stuck (no heartbeat) with its
        # reader's CancelledError: it reaches a task nobody cancelled, which would end quietly.
        return BrokerUnavailable("the connection was given up as stuck (no heartbeat from the broker)")
    return exc


class Connect(Protocol):
    """How a component opens its connection: :func:`open_connection`, or a test's gate in front of it."""

    async def __call__(self, settings: Settings, *, name: str) -> AbstractConnection: ...


async def open_connection(settings: Settings, *, name: str) -> AbstractConnection:
    """Open one plain connection, named ``name`` in the broker's UI and ``rabbitmqctl list_connections``.

    Raises:
        BrokerUnavailable: the broker cannot be reached now (retryable).
        BrokerError: the broker refused us (bad credentials, vhost access): final.
    """
    try:
        # The deadline is ours, not aio-pika's ``timeout=``: aiormq applies that one with
        # ``asyncio.wait_for``, which on Python 3.11 drops a cancellation that arrives as the handshake
        # completes and returns the connection to a task that was told to stop.
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            return await aio_pika.connect(
                settings.amqp_url.get_secret_value(), client_properties={"connection_name": name}
            )
    except Exception as exc:
        raise broker_error(exc) from exc


def connection_lost(connection: AbstractConnection) -> bool:
    """Whether ``connection``'s AMQP link is gone, told or not.

    A plain aio-pika connection that the broker closed still says ``is_closed`` False, and its close
    callbacks run once, when it closes: one added after that never runs. A component that adds its
    callback after an await asks this too, or it could serve a dead link for ever.
    """
    transport = connection.transport
    return connection.is_closed or transport is None or transport.connection.is_closed


async def open_channel(
    connection: AbstractConnection, *, publisher_confirms: bool, on_return_raises: bool = False
) -> AbstractChannel:
    """Open a channel on ``connection``; the caller owns it and closes it.

    Raises:
        BrokerUnavailable: the connection is gone, or was lost while the channel opened (retryable).
        BrokerError: the broker refused the channel (final).
    """
    try:
        # A deadline of ours: the open waits for the connection to be unblocked, which a connection closed
        # while the broker blocked it (a resource alarm) never is again.
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            return await connection.channel(publisher_confirms=publisher_confirms, on_return_raises=on_return_raises)
    except (Exception, asyncio.CancelledError) as exc:
        mapped = broker_error(exc)
        if mapped is exc and isinstance(exc, RuntimeError) and connection_lost(connection):
            # aio-pika and aiormq report a connection that closed before or while the channel opened as a
            # bare RuntimeError ("... closed", "Connection was not opened"): the broker cut us off between
            # our check that the connection was open and this call, before the close callback told its
            # owner. Unmapped, it ended the task that asked, and with it the process. Any other
            # RuntimeError is a misuse of the library, a bug, and keeps its type.
            mapped = BrokerUnavailable(f"the connection closed while a channel opened: {exc}")
        if mapped is exc:
            raise
        raise mapped from exc


async def close_channel_quietly(channel: AbstractChannel | None) -> None:
    """Close ``channel`` if it is open (what it holds unacked goes back to its queue); one on a connection
    that is already gone is not an error here."""
    if channel is None or channel.is_closed:
        return
    with suppress(aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError, ConnectionError):
        await channel.close()


async def close_quietly(connection: AbstractConnection | None) -> None:
    """Close ``connection`` if it is open; a broker that is already gone is not an error here."""
    if connection is None or connection.is_closed:
        return
    # Closing a dead connection can raise any transport error; we are discarding it either way.
    with suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await connection.close()


@dataclass(frozen=True, slots=True)
class ReconnectBackoff:
    """The broker reconnect policy: the first attempt at once, then jittered exponential waits.

    After ``n`` consecutive failures the wait is ``initial_s * 2 ** (n - 1)`` plus a random jitter of up
    to ``initial_s``, capped at ``max_s``. A link that served at least ``max_s`` before it was lost
    starts afresh (its first reconnect is immediate); one lost sooner counts as one more failure, so a
    flapping broker gets growing waits instead of a hot loop.
    """

    initial_s: float
    max_s: float

    @classmethod
    def of(cls, settings: Settings) -> Self:
        """``BRIDGE_RECONNECT_INITIAL_S`` and ``BRIDGE_BROKER_RECONNECT_MAX_S``."""
        return cls(initial_s=settings.reconnect_initial_s, max_s=settings.broker_reconnect_max_s)

    def wait_s(self, failures: int) -> float:
        """The wait before the next attempt after ``failures`` (at least 1) consecutive failures."""
        return backoff_delay(failures, self.initial_s, self.max_s)


def reconnect_attempts(
    settings: Settings, *, on_retry: Callable[[BaseException], None] | None = None
) -> AsyncIterable[stamina.Attempt]:
    """Attempts for (re)connecting with :class:`ReconnectBackoff`: unlimited, stopping at a final error.

    The first attempt runs at once. The body of each attempt should raise mapped errors
    (:func:`broker_error`); ``is_retryable`` decides whether the next attempt follows. ``on_retry`` is
    called with each retryable failure (for logs and the ``reconnects`` metric).
    """
    backoff = ReconnectBackoff.of(settings)

    def _retry(exc: BaseException) -> bool:
        retry = is_retryable(broker_error(exc))
        if retry and on_retry is not None:
            on_retry(exc)
        return retry

    return stamina.retry_context(
        on=_retry,
        attempts=None,
        timeout=None,
        wait_initial=backoff.initial_s,
        wait_max=backoff.max_s,
        wait_jitter=backoff.initial_s,
        wait_exp_base=2.0,
    )


class BrokerLinks:
    """Health of the bridge's broker connections, shared by the publisher and the intake.

    ``broker_connected`` is 1 only while every registered link is up ("both broker connections are
    up"). Build one per process and pass it to both; each component builds a private one otherwise.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._up: dict[str, bool] = {}

    def register(self, name: str) -> None:
        """Add a link, initially down."""
        self._up[name] = False
        self._update()

    def set(self, name: str, up: bool) -> None:
        """Record that link ``name`` went up or down."""
        self._up[name] = up
        self._update()

    @property
    def all_up(self) -> bool:
        """True while every registered link is up."""
        return bool(self._up) and all(self._up.values())

    def _update(self) -> None:
        self._metrics.broker_connected.set(1 if self.all_up else 0)


class ReopeningConnection:
    """One broker connection for a component without a task of its own: opened on first use, and opened
    again on the first use after it was lost.

    The journal uses it. ``connect_robust`` used to reconnect it in the background after a broker blip;
    this keeps that guarantee in the open: the first use after a loss reopens the connection (callers
    then open their channels again). Attempts follow :class:`ReconnectBackoff`: after a failure, a use
    before the next attempt is due fails at once with ``BrokerUnavailable``, so during an outage each
    caller gets one fast, retryable error and the broker sees one attempt per backoff step, not one per
    caller. Concurrent uses share one attempt.

    Args:
        settings: the broker URL and the backoff bounds.
        name: the connection's name at the broker (``rabbitmqctl list_connections client_properties``)
            and the ``link`` in logs.
        connect: opens the connection; tests put a gate in front of :func:`open_connection`.
        clock: ``monotonic`` times the backoff and how long a connection served.

    The owner must :meth:`close` it (or use ``async with``).
    """

    def __init__(
        self, settings: Settings, *, name: str, connect: Connect = open_connection, clock: Clock | None = None
    ) -> None:
        self._settings = settings
        self._name = name
        self._connect = connect
        self._clock: Clock = clock if clock is not None else LoopClock()
        self._backoff = ReconnectBackoff.of(settings)
        self._connection: AbstractConnection | None = None
        self._lock = asyncio.Lock()
        self._failures = 0  # consecutive failed attempts, counting links lost soon after they came up
        self._due = float("-inf")  # no attempt before this clock time
        self._up_since = 0.0
        self._lost_at: float | None = None
        self._closed = False

    @property
    def name(self) -> str:
        """The connection's name at the broker."""
        return self._name

    async def get(self) -> AbstractConnection:
        """The open connection; opens one first when there is none yet or the last one was lost.

        Raises:
            BrokerUnavailable: the broker cannot be reached, now or at the last attempt while the next one
                is not due yet; or this was closed. Retryable.
            BrokerError: the broker refused us (bad credentials, vhost access): final.
        """
        connection = self._usable()
        if connection is not None:
            return connection
        async with self._lock:
            connection = self._usable()
            if connection is not None:
                return connection  # another caller reopened it while we waited
            if self._closed:
                raise BrokerUnavailable(f"broker connection {self._name!r} is closed")
            lost, self._connection = self._connection, None
            if lost is not None:
                self._note_lost()
                await close_quietly(lost)
            now = self._clock.monotonic()
            if now < self._due:
                raise BrokerUnavailable(
                    f"broker connection {self._name!r} is down; the next attempt is due in {self._due - now:.1f}s"
                )
            try:
                connection = await self._connect(self._settings, name=self._name)
            except BrokerError as exc:
                self._failed(exc)
                raise
            return await self._adopt(connection)

    async def close(self) -> None:
        """Close the connection; later uses fail with ``BrokerUnavailable``. Idempotent."""
        self._closed = True
        connection, self._connection = self._connection, None
        await close_quietly(connection)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _usable(self) -> AbstractConnection | None:
        """The current connection unless it was lost: its close callback told us, or the connection closed
        before :meth:`_adopt` added the callback, which then never runs (:func:`connection_lost`)."""
        connection = self._connection
        if connection is None or self._lost_at is not None or connection_lost(connection):
            return None
        return connection

    async def _adopt(self, connection: AbstractConnection) -> AbstractConnection:
        """Take a connection just opened into service (or close it, if this was closed meanwhile)."""
        if self._closed:
            await close_quietly(connection)  # nobody else would close it
            raise BrokerUnavailable(f"broker connection {self._name!r} is closed")
        connection.close_callbacks.add(self._on_close)
        self._connection = connection
        self._up_since = self._clock.monotonic()
        self._lost_at = None
        log.info("broker_link_up", link=self._name)
        return connection

    def _on_close(self, sender: object, *_: object) -> None:
        # aio-pika passes the connection as the sender; a late callback of a connection replaced since is
        # not news.
        if sender is self._connection and self._lost_at is None:
            self._lost_at = self._clock.monotonic()

    def _note_lost(self) -> None:
        """Account for the lost connection: one that served long starts afresh, a brief one is a failure."""
        lost_at = self._lost_at if self._lost_at is not None else self._clock.monotonic()
        log.warning("broker_link_lost", link=self._name)
        if lost_at - self._up_since >= self._backoff.max_s:
            self._failures = 0
            self._due = float("-inf")
        else:
            self._failed(BrokerUnavailable("the broker link broke soon after it came up"))

    def _failed(self, error: BrokerError) -> None:
        self._failures += 1
        wait_s = self._backoff.wait_s(self._failures)
        self._due = self._clock.monotonic() + wait_s
        log.warning("broker_connect_failed", link=self._name, error=str(error), retry_in_s=round(wait_s, 3))
