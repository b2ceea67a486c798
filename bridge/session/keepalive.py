"""One session's keepalives: a WebSocket ping every ``ws_ping_interval_s`` (protocol reference §2.4) and a
Genesys ``echo`` every ``echo_interval_s`` (§4.4).

Both wait on the process's :class:`bridge.session.heartbeat.Heartbeat`, not in a task of their own: a
session only holds a task while a round trip is in flight, a few milliseconds per interval. Each round
trip runs in the session's TaskGroup, so the session owns it and its failure stays the session's.

An unanswered ping or echo closes the socket; the connection loop then reconnects and configures again.
The close is the ordinary one, which waits up to the connector's close timeout (5 s) for a closing
handshake the silent peer will not send: a dead socket is found ``ws_ping_timeout_s`` plus that after
the ping (websockets' own keepalive, when it pinged, dropped the socket at once).
The first of each waits a random part of its interval (``SessionDeps.keepalive_phase``): sessions opened
or resumed together would otherwise all ping and echo in the same second, for as long as they live.
"""

from __future__ import annotations

import asyncio
from functools import partial

import structlog

from bridge.errors import GenesysUnavailable
from bridge.genesys.events import EchoReplied
from bridge.genesys.protocol import GuestProtocol
from bridge.session.heartbeat import Beat
from bridge.session.session import Session
from bridge.tasks import TaskGroup

__all__ = ["Keepalive"]

log = structlog.get_logger(__name__)


class Keepalive:
    """A session's pings and echoes. :meth:`start` once the session's TaskGroup is entered, :meth:`stop`
    before it exits."""

    __slots__ = ("_beats", "_core", "_echo_task", "_echoes", "_ping_task", "_tg")

    def __init__(self, core: Session) -> None:
        self._core = core
        self._beats: tuple[Beat, ...] = ()
        self._tg: TaskGroup | None = None
        self._ping_task: asyncio.Task[None] | None = None
        self._echo_task: asyncio.Task[None] | None = None
        self._echoes = 0

    def start(self, tg: TaskGroup) -> None:
        """Begin beating; each round trip runs as a task in ``tg``. Caller's duties: :meth:`stop` before ``tg``
        exits (a beat due later would start a task in a closed group)."""
        deps = self._core.deps
        s = self._core.settings
        self._tg = tg
        phase = deps.keepalive_phase
        beats = [deps.heartbeat.every(s.echo_interval_s, self._echo_due, first_s=phase(s.echo_interval_s))]
        if s.ws_ping_interval_s is not None:
            beats.append(
                deps.heartbeat.every(s.ws_ping_interval_s, self._ping_due, first_s=phase(s.ws_ping_interval_s))
            )
        self._beats = tuple(beats)

    def stop(self) -> None:
        """No more pings or echoes; one in flight is cancelled. Idempotent."""
        for beat in self._beats:
            beat.cancel()
        self._beats = ()
        self._tg = None
        for task in (self._ping_task, self._echo_task):
            if task is not None:
                task.cancel()

    def _ping_due(self) -> None:
        # One ping at a time; a task cancelled before its first step never ran its ``finally``: done() says so.
        if self._tg is not None and _idle(self._ping_task) and self._core.link.connected:
            self._ping_task = self._tg.create_task(self._ping())

    def _echo_due(self) -> None:
        # Never more often than Genesys' 2/min (§4.4): the setting is >= 30 s, and one echo at a time.
        if self._tg is not None and _idle(self._echo_task) and self._core.gate.ready:
            self._echo_task = self._tg.create_task(self._echo())

    async def _ping(self) -> None:
        link = self._core.link
        try:
            await link.ping(self._core.settings.ws_ping_timeout_s)
        except TimeoutError:
            log.warning("genesys_ping_unanswered")
            await link.close()
        except GenesysUnavailable:
            pass  # the socket closed: the connection loop sees it and reconnects
        finally:
            self._ping_task = None

    async def _echo(self) -> None:
        core = self._core
        self._echoes += 1
        key = f"echo-{self._echoes}"
        interval = core.settings.echo_interval_s
        try:
            reply = await core.link.request(
                "echo", key, partial(GuestProtocol.echo, tracing_id=key), timeout_s=min(30.0, interval)
            )
        except TimeoutError:
            log.warning("genesys_echo_unanswered")
            await core.link.close()
            return
        except Exception:
            return  # the socket closed or Genesys refused: the connection loop and the next echo deal with it
        finally:
            self._echo_task = None
        if isinstance(reply, EchoReplied) and reply.expires_at is not None:
            log.debug("genesys_session_expiry", expires_at=reply.expires_at.isoformat())
            core.keeper.note_configured(ttl_s=reply.duration_s, expires_at=reply.expires_at)


def _idle(task: asyncio.Task[None] | None) -> bool:
    return task is None or task.done()
