"""One broker link kept up by a task of its own: what the command intake and the event publisher share.

A :class:`BrokerLink` holds one plain connection at a time and the task that keeps it up: connect,
prepare, serve until the link is lost, then again, with the backoff of
:func:`~bridge.amqp.connection.reconnect_attempts`. A component says what its link is for with two hooks:

- ``_prepare(connection)`` sets up a fresh connection (channels, topology, consumers) and returns what
  serving needs. It may raise anything aio-pika raises: the base closes the connection and maps the
  error with :func:`~bridge.amqp.connection.broker_error`.
- ``_serve(prepared)`` serves until the link is lost (it returns) or the component stops (its task is
  cancelled, or it returns once :attr:`_stopping` is set). It calls :meth:`_came_up` when the link is in
  service: a link that then served less than ``broker_reconnect_max_s`` counts as a failed attempt, so
  a flapping broker gets growing waits instead of a hot loop; one that served longer starts a fresh
  backoff (the next attempt is immediate).

Lifetime: :meth:`start` enters a TaskGroup on an ``AsyncExitStack`` and starts the task in it;
:meth:`_close_link` stops reconnecting, cancels the task and closes the stack. The TaskGroup's parent is
the task that called :meth:`start`, so a final broker error (bad credentials, ``PRECONDITION_FAILED``)
ends the link's task, the group cancels that owner, and the error surfaces from ``close()`` or
``__aexit__`` in an exception group. Start and close from the same task.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Generic, Self, TypeVar

import structlog
from aio_pika.abc import AbstractConnection

from bridge.amqp.connection import BrokerLinks, Connect, broker_error, close_quietly, reconnect_attempts
from bridge.config import Settings
from bridge.errors import BrokerError, BrokerUnavailable
from bridge.observability.metrics import Metrics
from bridge.tasks import TaskGroup, stop_if_asked

__all__ = ["BrokerLink"]

log = structlog.get_logger(__name__)

#: What ``_prepare`` hands to ``_serve``: the channels and state of one connection.
Prepared = TypeVar("Prepared")


class BrokerLink(ABC, Generic[Prepared]):
    """A broker connection kept up by its own task, reconnecting with backoff until closed or refused.

    Args:
        settings: the broker URL and the backoff bounds (``reconnect_initial_s``, ``broker_reconnect_max_s``).
        metrics: ``reconnects{target="broker"}``, and ``broker_connected`` through ``links``.
        link: the link's name in logs and in ``links`` (``intake``, ``publisher``).
        links: shared broker-link health (one per process); a private one when ``None``.
        connection_name: shown by the broker (``rabbitmqctl list_connections client_properties``).
        connect: opens the connection; tests put a gate in front of :func:`open_connection`.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        link: str,
        links: BrokerLinks | None,
        connection_name: str,
        connect: Connect,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._link = link
        self._links = links if links is not None else BrokerLinks(metrics)
        self._links.register(link)
        self._connection_name = connection_name
        self._connect_fn = connect
        #: No new link is wanted: the loop ends with the current one (set by a stop, or by close).
        self._stopping = False
        #: ``_serve`` ended the link on purpose and wants a new one at once (a partition handed off): no
        #: backoff, not counted as a reconnect. Reset with each link.
        self._renew = False
        self._stack: AsyncExitStack | None = None
        self._task: asyncio.Task[None] | None = None
        self._up_since: float | None = None

    # --- hooks ----------------------------------------------------------------------------------

    @abstractmethod
    async def _prepare(self, connection: AbstractConnection) -> Prepared:
        """Set up a fresh ``connection`` for serving; raise if it cannot be (the base closes it)."""

    @abstractmethod
    async def _serve(self, prepared: Prepared) -> None:
        """Serve until the link is lost or the component stops; call :meth:`_came_up` once in service."""

    @abstractmethod
    async def _shutdown(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """What ``__aexit__`` does: the component's close, ending with :meth:`_close_link`."""

    # --- lifetime -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the link's task and return at once; close from the same task.

        Raises:
            RuntimeError: already started.
        """
        if self._stack is not None:
            raise RuntimeError(f"{self._link} already started")
        stack = AsyncExitStack()
        tasks = await stack.enter_async_context(TaskGroup())
        self._task = tasks.create_task(self._run(), name=f"amqp-{self._link}")
        self._stack = stack

    @property
    def _started(self) -> bool:
        """True from :meth:`start` until :meth:`_close_link` began."""
        return self._stack is not None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._shutdown(exc_type, exc, tb)

    async def _close_link(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        """Stop reconnecting, cancel the task and wait until it ended. A no-op before start or when closing.

        ``exc_type``/``exc``/``tb`` are the owner's, when it leaves ``async with`` by an exception: the
        TaskGroup treats them as it would in its own ``async with`` block.

        Raises:
            BaseExceptionGroup: the final error that ended the task (a ``BrokerError``).
        """
        stack, self._stack = self._stack, None
        if stack is None:
            return
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
        await stack.__aexit__(exc_type, exc, tb)

    # --- the loop -------------------------------------------------------------------------------

    def _came_up(self) -> None:
        """The link is in service from now on: starts the clock of the "broke soon after" rule."""
        self._up_since = asyncio.get_running_loop().time()

    def _on_retry(self, exc: BaseException) -> None:
        self._metrics.reconnects.labels(target="broker").inc()
        log.warning("broker_connect_failed", link=self._link, error=str(broker_error(exc)))

    async def _run(self) -> None:
        """Serve links one after the other until stopped, cancelled or refused for good.

        Every attempt and every loss counts in ``reconnects``; a final ``BrokerError`` ends the task
        (and, through the TaskGroup, cancels its owner).
        """
        while not self._stopping:
            try:
                async for attempt in reconnect_attempts(self._settings, on_retry=self._on_retry):
                    with attempt:
                        stop_if_asked()  # a stop's cancel that the last attempt took as a broker error
                        await self._serve_once()
            except BrokerError as exc:
                log.error("broker_link_failed", link=self._link, error=str(exc))
                raise
            if not self._stopping and not self._renew:
                self._metrics.reconnects.labels(target="broker").inc()

    async def _serve_once(self) -> None:
        """One link's life: open, serve until lost or stopped, close."""
        opened = await self._open()
        if opened is None:
            return
        connection, prepared = opened
        self._up_since = None
        self._renew = False
        try:
            await self._serve(prepared)
        finally:
            await close_quietly(connection)
        if self._stopping or self._renew:
            return
        served_s = asyncio.get_running_loop().time() - self._up_since if self._up_since is not None else 0.0
        if served_s < self._settings.broker_reconnect_max_s:
            raise BrokerUnavailable("the broker link broke soon after it came up")

    async def _open(self) -> tuple[AbstractConnection, Prepared] | None:
        """Connect and prepare; ``None`` when a stop arrived meanwhile (the connection is closed then)."""
        connection = await self._connect_fn(self._settings, name=self._connection_name)
        try:
            prepared = await self._prepare(connection)
        except BaseException as exc:
            await close_quietly(connection)
            mapped = broker_error(exc)
            if mapped is exc:
                raise  # a bug, or this task's own cancellation
            stop_if_asked()  # a stop's cancel that a channel call turned into an error: not one to retry
            raise mapped from exc
        if self._stopping:
            # The stop came while we connected and its cancellation did not reach us (a library may finish
            # an awaited handshake instead of raising): the link is not wanted, and nothing was served on it.
            await close_quietly(connection)
            log.info("broker_link_stopped_while_connecting", link=self._link)
            return None
        return connection, prepared
