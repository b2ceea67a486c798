"""Broker connections: opening one, mapping aio-pika's errors once, the reconnect policy, link health.

The publisher and the intake each own one plain (non-robust) ``aio_pika.connect`` connection and run
their own reconnect loop. We do not use ``connect_robust``: its background recovery restores channels
and consumers behind our back, and a consumer it failed to restore looks exactly like an idle one. Our
loops are explicit: connect, declare the topology, (re)consume, *verify*, serve until lost, repeat.

Error mapping (the one boundary where aio-pika/aiormq exceptions become ours)::

    authentication refused, ACCESS_REFUSED, PRECONDITION_FAILED   -> BrokerError        (final)
    connection/channel lost, socket errors, NOT_FOUND, timeouts    -> BrokerUnavailable  (retryable)

``bridge.errors.is_retryable`` then decides; nobody here second-guesses it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable
from contextlib import suppress
from typing import Protocol

import aio_pika
import aiormq.exceptions
import stamina
import structlog
from aio_pika.abc import AbstractConnection

from bridge.config import Settings
from bridge.errors import BridgeError, BrokerError, BrokerUnavailable, is_retryable
from bridge.observability.metrics import Metrics

__all__ = ["BrokerLinks", "Connect", "broker_error", "close_quietly", "open_connection", "reconnect_attempts"]

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
    keep their type and traceback).
    """
    if isinstance(exc, BridgeError):
        return exc
    if isinstance(exc, _FINAL_AMQP_ERRORS):
        return BrokerError(f"broker refused: {type(exc).__name__}: {exc}")
    if isinstance(exc, _TRANSIENT_ERRORS):
        return BrokerUnavailable(f"{type(exc).__name__}: {exc}".rstrip(": "))
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


async def close_quietly(connection: AbstractConnection | None) -> None:
    """Close ``connection`` if it is open; a broker that is already gone is not an error here."""
    if connection is None or connection.is_closed:
        return
    # Closing a dead connection can raise any transport error; we are discarding it either way.
    with suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await connection.close()


def reconnect_attempts(
    settings: Settings, *, on_retry: Callable[[BaseException], None] | None = None
) -> AsyncIterable[stamina.Attempt]:
    """Attempts for (re)connecting: jittered exponential backoff, unlimited, stopping at a final error.

    ``reconnect_initial_s`` is the first wait and the jitter, ``broker_reconnect_max_s`` the cap. The
    first attempt runs at once. The body of each attempt should raise mapped errors
    (:func:`broker_error`); ``is_retryable`` decides whether the next attempt follows. ``on_retry`` is
    called with each retryable failure (for logs and the ``reconnects`` metric).
    """

    def _retry(exc: Exception) -> bool:
        retry = is_retryable(broker_error(exc))
        if retry and on_retry is not None:
            on_retry(exc)
        return retry

    return stamina.retry_context(
        on=_retry,
        attempts=None,
        timeout=None,
        wait_initial=settings.reconnect_initial_s,
        wait_max=settings.broker_reconnect_max_s,
        wait_jitter=settings.reconnect_initial_s,
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
