"""The simulator's Python control API: look sessions up, await states, speak for the agent, inject faults.

:class:`SimulatorControl` works on a running :class:`~bridge.simulator.engine.Engine`.
:class:`~bridge.simulator.server.Simulator` adds the server around it, and
:mod:`bridge.simulator.control_http` serves the same operations over HTTP.

Session references (``ref``) are a :class:`~bridge.simulator.session.Session`, a guest token, or a
simulator session id (``sim-…``). Mutating control calls are coroutines; lookups are plain methods.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from bridge.simulator import outbound
from bridge.simulator.auth import Identity
from bridge.simulator.config import DisconnectOvertake, SimulatorConfig
from bridge.simulator.connection import FaultPlan
from bridge.simulator.engine import Engine
from bridge.simulator.session import Received, Session

__all__ = ["SessionRef", "SimulatorControl"]

T = TypeVar("T")
SessionRef = Session | str

_UNSET: Any = object()


class SimulatorControl:
    """The control API of one simulator. Its engine and port are set once the server is up
    (:meth:`bridge.simulator.server.Simulator.start`); until then every call raises ``RuntimeError``."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._engine: Engine | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        if self._port is None:
            raise RuntimeError("simulator not started")
        return self._port

    @property
    def engine(self) -> Engine:
        """The simulated Genesys side itself (tests may read its state; only the simulator mutates it)."""
        if self._engine is None:
            raise RuntimeError("simulator not started")
        return self._engine

    # --- lookups (sync) -------------------------------------------------------------------------------
    def sessions(self) -> list[Session]:
        """Every retained session, in creation order (ended ones included, see ``retain_ended_sessions``)."""
        return self.engine.sessions()

    def session(self, ref: SessionRef) -> Session:
        """The session for a token (its current one, else its newest retained one, e.g. after a clear),
        a simulator session id, or a Session. KeyError if none."""
        if isinstance(ref, Session):
            return ref
        engine = self.engine
        found = engine.find(token=ref) or engine.find(session_id=ref) or engine.registry.latest_for_token(ref)
        if found is None:
            raise KeyError(f"no simulator session for {ref!r}")
        return found

    def find_session(
        self,
        *,
        token: str | None = None,
        session_id: str | None = None,
        attribute: tuple[str, str] | None = None,
        first_text: str | None = None,
        index: int | None = None,
        deployment_id: str | None = None,
    ) -> Session | None:
        """The latest session matching one criterion; ``index`` is creation order (0-based, -1 = newest)."""
        return self.engine.find(
            token=token,
            session_id=session_id,
            attribute=attribute,
            first_text=first_text,
            index=index,
            deployment_id=deployment_id,
        )

    def session_by_attribute(self, key: str, value: str) -> Session | None:
        """The latest session whose guest sent custom attribute ``key=value``."""
        return self.engine.find(attribute=(key, value))

    def session_by_first_text(self, text: str) -> Session | None:
        """The first session whose first guest text was ``text``."""
        return self.engine.find(first_text=text)

    def nth_session(self, n: int) -> Session | None:
        """The ``n``-th session created (0-based; -1 = the newest)."""
        return self.engine.find(index=n)

    def received(self, ref: SessionRef) -> list[Received]:
        """What the session accepted from the guest (every onMessage, typing and presence included)."""
        return list(self.session(ref).received)

    def history(self, ref: SessionRef) -> list[dict[str, Any]]:
        """The session's transcript, oldest first, as REST history serves it (no typing, §9)."""
        return list(self.session(ref).history)

    # --- waiting --------------------------------------------------------------------------------------
    async def wait_for(self, predicate: Callable[[], T | None], *, timeout_s: float | None = None) -> T:
        """Wait until ``predicate()`` is truthy (re-checked after every frame and control call); return it."""
        return await self.engine.wait_for(predicate, timeout_s)

    async def wait_session(
        self,
        *,
        token: str | None = None,
        attribute: tuple[str, str] | None = None,
        first_text: str | None = None,
        index: int | None = None,
        timeout_s: float | None = None,
    ) -> Session:
        """Wait until a session matching the criterion exists."""
        return await self.wait_for(
            lambda: self.find_session(token=token, attribute=attribute, first_text=first_text, index=index),
            timeout_s=timeout_s,
        )

    async def wait_received(self, ref: SessionRef, count: int = 1, *, timeout_s: float | None = None) -> list[Received]:
        """Wait until the session has received at least ``count`` guest messages; return them all."""

        def ready() -> list[Received] | None:
            try:
                got = self.session(ref).received
            except KeyError:
                return None
            return list(got) if len(got) >= count else None

        return await self.wait_for(ready, timeout_s=timeout_s)

    async def wait_connections(self, ref: SessionRef, count: int, *, timeout_s: float | None = None) -> Session:
        """Wait until the session has exactly ``count`` open connections."""

        def ready() -> Session | None:
            try:
                session = self.session(ref)
            except KeyError:
                return None
            return session if len(session.connections) == count else None

        return await self.wait_for(ready, timeout_s=timeout_s)

    # --- control (async; each returns once the frames are queued) ------------------------------------
    async def agent_say(
        self,
        ref: SessionRef,
        text: str | None = None,
        *,
        content: list[dict[str, Any]] | None = None,
        originating_entity: str = "Human",
        nickname: str | None = None,
        image: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> str:
        """Send an Outbound message (Text, or Structured with ``content``). Returns its message id."""
        body = _agent_body(text, content, metadata)
        return self._act(
            ref,
            lambda s: outbound.say(
                self.engine, s, body, nickname=nickname, originating_entity=originating_entity, image=image
            ),
        )

    async def agent_typing(self, ref: SessionRef, *, duration_ms: int = 5000, nickname: str | None = None) -> str:
        """Send an Outbound Typing On event (§5.3)."""
        body = {"type": "Event", "events": [{"eventType": "Typing", "typing": {"type": "On", "duration": duration_ms}}]}
        return self._act(ref, lambda s: outbound.say(self.engine, s, body, nickname=nickname))

    async def disconnect(self, ref: SessionRef, *, read_only: bool | None = None) -> str | None:
        """The agent/bot leaves the conversation (§5.3). Returns the Presence Disconnect's id.

        With ``disconnect_enabled`` off (the real default) the guest gets no frame and None is returned;
        the conversation still ends. ``read_only`` overrides the ``disconnect_mode`` knob for this call.
        """
        flag = self.config.disconnect_mode == "read_only" if read_only is None else read_only
        return self._act(ref, lambda s: outbound.disconnect(self.engine, s, read_only=flag))

    async def agent_say_and_disconnect(
        self,
        ref: SessionRef,
        text: str | None = None,
        *,
        content: list[dict[str, Any]] | None = None,
        originating_entity: str = "Human",
        nickname: str | None = None,
        read_only: bool | None = None,
        overtake: DisconnectOvertake | None = None,
    ) -> tuple[str, str | None]:
        """The agent's last message, then a Disconnect that may overtake it (§3.2, §10).

        The message is always kept in history. ``overtake`` ("off", "late", "lost") overrides the
        ``disconnect_overtakes_last_message`` knob for this call, ``read_only`` the ``disconnect_mode``.
        Returns the message id and the Disconnect's id (None when ``disconnect_enabled`` is off, in which
        case the message is delivered normally and the conversation ends silently).
        """
        body = _agent_body(text, content, None)
        flag = self.config.disconnect_mode == "read_only" if read_only is None else read_only
        how = self.config.disconnect_overtakes_last_message if overtake is None else overtake
        return self._act(
            ref,
            lambda s: outbound.say_and_disconnect(
                self.engine,
                s,
                body,
                read_only=flag,
                overtake=how,
                nickname=nickname,
                originating_entity=originating_entity,
            ),
        )

    async def expire(self, ref: SessionRef) -> None:
        """Expire the session now: SessionExpiredEvent, then 4006 for its requests."""
        self._act(ref, self.engine.expire)

    async def clear(self, ref: SessionRef) -> None:
        """Clear the session as Presence Clear would (SessionClearedEvent, ConnectionClosedEvent, deleted)."""
        self._act(ref, self.engine.clear)

    async def drop_connections(self, ref: SessionRef, *, code: int = 1006) -> int:
        """Close the session's sockets: 1006 = abrupt (no close frame), else a close frame with ``code``."""

        def drop(session: Session) -> int:
            conns = list(session.connections)
            for conn in conns:
                if code == 1006:
                    conn.abort()
                else:
                    conn.close(code, "Simulated close")
                self.engine.detach(conn)
            return len(conns)

        return self._act(ref, drop)

    async def add_history(
        self,
        ref: SessionRef,
        text: str | None = None,
        *,
        content: list[dict[str, Any]] | None = None,
        originating_entity: str = "Human",
        nickname: str | None = None,
    ) -> str:
        """Add an Outbound message to history only (sent "while the guest was away"). Returns its id."""
        body: dict[str, Any] = {"type": "Structured" if content else "Text", "text": text or ""}
        if content:
            body["content"] = content
        return self._act(
            ref,
            lambda s: outbound.say(
                self.engine, s, body, nickname=nickname, originating_entity=originating_entity, deliver=False
            ),
        )

    async def set_faults(
        self,
        ref: SessionRef | None = None,
        *,
        delay_s: float = _UNSET,
        reorder_window: int = _UNSET,
        duplicate_next: int = _UNSET,
        fail_next: int = _UNSET,
        fail_actions: Iterable[str] | None = _UNSET,
        classes: Iterable[str] | None = _UNSET,
    ) -> FaultPlan:
        """Change the fault plan of one session, or the simulator-wide default when ``ref`` is None."""
        raw: dict[str, Any] = {
            "delay_s": delay_s,
            "reorder_window": reorder_window,
            "duplicate_next": duplicate_next,
            "fail_next": fail_next,
            "fail_actions": fail_actions,
            "classes": classes,
        }
        given: dict[str, Any] = {}
        for key, value in raw.items():
            if value is _UNSET:
                continue
            if key in ("fail_actions", "classes"):
                value = None if value is None else frozenset(value)
            given[key] = value
        engine = self.engine
        if ref is None:
            for key, value in given.items():
                setattr(engine.default_faults, key, value)
            return engine.default_faults
        session = self.session(ref)
        session.faults = dataclasses.replace(session.faults or engine.default_faults, **given)
        engine.changed()
        return session.faults

    async def set_delay(self, ref: SessionRef | None, delay_s: float, *, classes: Iterable[str] | None = None) -> None:
        """Delay every frame (or frames of ``classes``) by ``delay_s``; order is kept."""
        await self.set_faults(ref, delay_s=delay_s, classes=classes)

    async def set_reorder(self, ref: SessionRef | None, window: int) -> None:
        """Shuffle frames within windows of ``window`` frames (1 = in order); channel.time stays true."""
        await self.set_faults(ref, reorder_window=window)

    async def duplicate_next(self, ref: SessionRef | None, count: int = 1) -> None:
        """Send each of the next ``count`` fanned-out frames twice."""
        await self.set_faults(ref, duplicate_next=count)

    async def fail_next(self, ref: SessionRef | None, count: int = 1, *, actions: Iterable[str] | None = None) -> None:
        """Answer the next ``count`` requests (of ``actions``, or any) with ``5000 "Request failed."``."""
        await self.set_faults(ref, fail_next=count, fail_actions=actions)

    # --- authentication (§4.2) -------------------------------------------------------------------------
    async def logout(self, ref: SessionRef) -> int:
        """Log the session's customer out "from another device", as the revoke endpoint does: the identity's
        JWTs and refresh tokens stop working and every connection of its sessions gets ``LogoutEvent`` (then
        is closed, with ``close_on_logout``). Returns how many connections. ValueError for an anonymous
        session."""
        return self._act(ref, lambda s: self.engine.logout(_identity(s)))

    async def refuse_auth_code(self, code: str) -> None:
        """From now on the code exchange refuses this authorization code (or idToken) with 401."""
        self.engine.auth.refuse_code(code)

    async def fail_next_refresh(self, count: int = 1) -> None:
        """The next ``count`` token refreshes answer 401, whatever their refresh token."""
        self.engine.auth.fail_next_refresh(count)

    async def expire_jwts(self, ref: SessionRef) -> None:
        """Expire now every JWT issued so far to the session's customer (its refresh tokens stay good), for
        tests without virtual time. ValueError for an anonymous session."""
        self._act(ref, lambda s: self.engine.auth.expire_jwts(_identity(s)))

    def _act(self, ref: SessionRef, action: Callable[[Session], T]) -> T:
        result = action(self.session(ref))
        self.engine.changed()
        return result


def _identity(session: Session) -> Identity:
    if session.identity is None:
        raise ValueError(f"session {session.session_id} is not authenticated")
    return session.identity


def _agent_body(
    text: str | None, content: list[dict[str, Any]] | None, metadata: dict[str, str] | None
) -> dict[str, Any]:
    """An agent message body: Text, or Structured when it has ``content`` (§5.2)."""
    body: dict[str, Any] = {"type": "Structured" if content else "Text"}
    if text is not None:
        body["text"] = text
    if content:
        body["content"] = content
    if metadata:
        body["metadata"] = metadata
    return body
