"""One session's wire: the sans-I/O :class:`GuestProtocol` pumped over the current socket.

The link is only a pump (the protocol itself does no I/O): it opens a socket, sends
``configureSession`` first and nothing else until ``SessionResponse`` (protocol reference §4.1, §11.1),
writes whatever the protocol wants to send, and turns replies into resolved futures keyed by
``tracingId`` (§3.1, §10). Session meaning (events, outcomes, ends) is the actor's business.

Callers: the actor's connection task calls :meth:`open` then :meth:`pump`; its other tasks send requests
with :meth:`request`, the one primitive that registers a waiter, sends, awaits the reply and forgets the
waiter. Only the link touches the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from bridge.errors import GenesysRateLimited, GenesysRejected, GenesysUnavailable, SessionGone
from bridge.genesys.events import (
    Configured,
    ConnectionClosed,
    ErrorReceived,
    PendingRequest,
    ProtocolEvent,
    RateLimited,
    SessionExpired,
)
from bridge.genesys.protocol import GuestProtocol
from bridge.observability.tracing import NO_TRACER, Tracer
from bridge.ports import Connector, GenesysConnection

__all__ = ["Answered", "GenesysLink", "Reply"]

log = structlog.get_logger(__name__)

EventHandler = Callable[[ProtocolEvent], Awaitable[None]]
#: A protocol intent to queue, e.g. ``lambda p: p.echo(tracing_id=key)``; it may raise ``CommandRejected``
#: or ``GenesysProtocolError`` before anything is queued.
Intent = Callable[[GuestProtocol], None]


@dataclass(frozen=True, slots=True)
class Answered:
    """A request the server acknowledged without an event of its own: the Inbound echo of our typing or
    presence event (§5.3), or a bare 200 (e.g. to Presence ``Clear``, §4.3 g)."""

    tracing_id: str


#: An action off the socket whose answer arrives over it (e.g. an upload's PUT, answered by
#: ``UploadSuccessEvent``); it runs after the waiter is registered, so the answer cannot be missed.
Trigger = Callable[[], Awaitable[object]]

#: What a waiter receives.
Reply = ProtocolEvent | Answered


class GenesysLink:
    """The protocol plus at most one open socket, and the futures waiting for replies."""

    __slots__ = (
        "_conn",
        "_connect_timeout_s",
        "_connector",
        "_early",
        "_frames",
        "_origin",
        "_protocol",
        "_silent",
        "_tracer",
        "_url",
        "_waiters",
    )

    def __init__(
        self,
        *,
        protocol: GuestProtocol,
        connector: Connector,
        url: str,
        origin: str | None,
        connect_timeout_s: float,
        tracer: Tracer = NO_TRACER,
    ) -> None:
        self._tracer = tracer
        self._protocol = protocol
        self._connector = connector
        self._url = url
        self._origin = origin
        self._connect_timeout_s = connect_timeout_s
        self._conn: GenesysConnection | None = None
        self._frames: AsyncIterator[str] | None = None
        self._early: list[ProtocolEvent] = []
        self._waiters: dict[str, asyncio.Future[Reply]] = {}
        self._silent: set[str] = set()  # waiters also resolved by a silent acknowledgement

    @property
    def connected(self) -> bool:
        return self._conn is not None

    @property
    def limits(self) -> Configured | None:
        """The last ``SessionResponse`` seen: size limits and allowed media (§4.1, §4.6)."""
        return self._protocol.limits

    async def open(
        self,
        *,
        start_new: bool,
        tracing_id: str,
        jwt: str | None = None,
        journey_context: Mapping[str, Any] | None = None,
    ) -> Configured:
        """Connect, configure, and wait for ``SessionResponse`` (bounded by the connect timeout). With ``jwt``
        the configure is ``configureAuthenticatedSession`` (§4.2); ``journey_context`` rides along (§4.1).

        Raises:
            GenesysUnavailable: connect failed, timed out or the socket closed first (retry).
            GenesysRateLimited: configureSession answered 429 (retry after ``retry_after_s``, §8).
            GenesysRejected: configureSession refused (e.g. 400 "Deployment not found"), or a 403 upgrade.
            SessionGone: the session expired or the server closed the connection while configuring.
        """
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                self._conn = await self._connector.connect(self._url, origin=self._origin)
                self._frames = self._conn.frames()
                self._protocol.connection_made()
                self._protocol.configure(
                    start_new=start_new, tracing_id=tracing_id, jwt=jwt, journey_context=journey_context
                )
                await self.flush()
                return await self._await_configured()
        except TimeoutError:
            await self.close()
            raise GenesysUnavailable("no SessionResponse within the connect timeout") from None
        except BaseException:
            await self.close()
            raise

    async def _await_configured(self) -> Configured:
        self._early.clear()
        while (frame := await self._next_frame()) is not None:
            self._protocol.receive(frame)
            await self.flush()
            for event in self._protocol.events_received():
                match event:
                    case Configured():
                        return event
                    case RateLimited(retry_after_s=after, detail=detail):
                        raise GenesysRateLimited(after, detail)
                    case ErrorReceived(code=4006) | SessionExpired():
                        raise SessionGone("expired", "while configuring")
                    case ErrorReceived(code=4007, detail=detail):
                        # §6: the token's session is gone on Genesys' side (e.g. a resume after it dropped it).
                        raise SessionGone("conversation_lost", f"4007: {detail}")
                    case ErrorReceived(code=code, detail=detail):
                        raise GenesysRejected(code, detail)
                    case ConnectionClosed(reason=reason):
                        raise SessionGone("closed_by_genesys", reason or "")
                    case _:
                        self._early.append(event)
        raise GenesysUnavailable("socket closed before SessionResponse")

    async def pump(self, handler: EventHandler) -> None:
        """Feed received frames to the protocol and its events to ``handler`` until the socket closes.

        Returns normally after our own :meth:`close`; raises ``GenesysUnavailable`` on any other close.
        """
        early, self._early = self._early, []
        await _deliver(early, handler)
        del early
        while (frame := await self._next_frame()) is not None:
            await self._receive(frame, handler)
            # Not kept while the next frame is awaited: an idle session would hold its last frame, and what
            # was parsed from it, for as long as it stays idle (docs/performance.md, memory per session).
            del frame

    async def _receive(self, frame: str, handler: EventHandler) -> None:
        self._protocol.receive(frame)
        await self.flush()
        await _deliver(self._protocol.events_received(), handler)
        self._resolve_silent()

    def _resolve_silent(self) -> None:
        if not self._silent:
            return
        # A typing notice is never pending (§14.6) but stays "recent" until its echo: still outstanding.
        pending = {request.tracing_id for request in self._protocol.pending} | set(self._protocol.recent_typing)
        for key in [k for k in self._silent if k not in pending]:
            self._silent.discard(key)
            self.resolve(key, Answered(key))

    async def _next_frame(self) -> str | None:
        """The next received frame; None once the socket closed cleanly (or was never open)."""
        if self._frames is None:
            return None
        try:
            return await anext(self._frames)
        except StopAsyncIteration:
            return None

    async def flush(self) -> None:
        """Write every frame the protocol has queued. Raises ``GenesysUnavailable`` without a socket."""
        frames = self._protocol.frames_to_send()
        if not frames:
            return
        if self._conn is None:
            raise GenesysUnavailable("no open socket")
        for frame in frames:
            await self._conn.send(frame)

    async def request(
        self,
        name: str,
        key: str,
        intent: Intent | None,
        *,
        timeout_s: float,
        silent_ok: bool = False,
        trigger: Trigger | None = None,
    ) -> Reply:
        """Send one request and wait for its reply: the one way anything waits for Genesys.

        In order: the waiter for ``key`` is registered; ``intent`` (which uses ``key`` as its tracingId, or
        names what ``key`` is about) is queued on the protocol and written; ``trigger`` runs (an action off
        the socket whose answer comes over it, e.g. an upload's PUT, §4.6); the reply is awaited. The waiter
        is forgotten whatever happens, and a request given up on timeout is pending no more (§10), so an
        untraced error that comes later goes to a request someone still waits for.

        ``name`` names the request in traces (``genesys <name>``, a span under the command being handled).
        ``silent_ok``: also resolve with :class:`Answered` once the protocol no longer holds ``key`` as a
        pending request without having produced an event for it (typing and presence echoes, bare 200s).

        Raises:
            TimeoutError: no reply within ``timeout_s``.
            GenesysUnavailable: no socket, or it was lost before the reply (the caller decides on a resend).
            SessionGone: the session ended meanwhile.
            CommandRejected, GenesysProtocolError: ``intent`` was refused; nothing was written.
            Whatever ``trigger`` raises.
        """
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiters[key] = future
        if silent_ok:
            self._silent.add(key)
        try:
            with self._tracer.round_trip(f"genesys {name}") as span:
                if intent is not None:
                    intent(self._protocol)
                    await self.flush()
                if trigger is not None:
                    await trigger()
                reply = await asyncio.wait_for(future, timeout_s)
                span.set_attribute("genesys.reply", type(reply).__name__)
                return reply
        except TimeoutError:
            self._protocol.forget(key)
            raise
        finally:
            self._waiters.pop(key, None)
            self._silent.discard(key)

    def resolve(self, key: str | None, event: Reply) -> bool:
        """Hand ``event`` to the waiter for ``key``; False when nobody waits for it."""
        future = self._waiters.pop(key, None) if key else None
        self._silent.discard(key or "")
        if future is None or future.done():
            return False
        future.set_result(event)
        return True

    def fail_all(self, exc: BaseException) -> None:
        """Fail every waiter (socket lost: ``GenesysUnavailable``; session over: ``SessionGone``)."""
        waiters, self._waiters = self._waiters, {}
        self._silent.clear()
        for future in waiters.values():
            if not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved: a waiter that already gave up must not warn

    def connection_lost(self) -> list[PendingRequest]:
        """Tell the protocol the socket is gone; return its unanswered requests."""
        self._conn = None
        self._frames = None
        return self._protocol.connection_lost()

    async def ping(self, timeout_s: float | None) -> None:
        """A WebSocket ping on the open socket, waiting up to ``timeout_s`` for its pong (§2.4); nothing when
        no socket is open.

        Raises:
            TimeoutError: no pong within ``timeout_s`` (the caller closes the socket).
            GenesysUnavailable: the socket closed meanwhile (the pump sees it too).
        """
        conn = self._conn
        if conn is not None:
            await conn.ping(timeout_s)

    async def close(self) -> None:
        """Close the socket with 1000 and forget it; never ends the Genesys session (§4.9)."""
        conn = self._conn
        self._conn = None
        # The frame iterator ends by itself once the socket is closed; a pump reading it returns.
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


async def _deliver(events: Iterable[ProtocolEvent], handler: EventHandler) -> None:
    """Hand ``events`` to ``handler`` in order. A function of its own, so that no caller's frame keeps the
    last event alive while it awaits the next frame."""
    for event in events:
        await handler(event)
