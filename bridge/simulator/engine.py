"""The simulated Genesys side: session registry, request dispatch and server-initiated actions.

Everything here is synchronous and O(1) per frame (lookups are dict-indexed): the WebSocket handler
calls :meth:`Engine.handle_text` for each text frame and the engine queues replies on connections
(:mod:`bridge.simulator.connection`). Timers (expiry, delayed agent replies) are loop ``call_later``
handles owned by their session, so there is no per-connection loop and nothing to poll.

Per-action behaviour lives in :mod:`bridge.simulator.actions` (the table of session actions, handed to
the engine by whoever builds it), :mod:`bridge.simulator.messaging` (``onMessage``) and
:mod:`bridge.simulator.attachments`, what the agent side sends in :mod:`bridge.simulator.outbound`, and
identities, JWTs and refresh tokens of authenticated sessions in :mod:`bridge.simulator.auth`; this module
holds what they share (including which connection was configured with which JWT).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias, TypeVar

from bridge.simulator.auth import AuthRegistry, Identity, IssuedJwt, JwtState
from bridge.simulator.config import SimulatorConfig
from bridge.simulator.connection import Connection, FaultPlan
from bridge.simulator.jwt import JwtSigner
from bridge.simulator.limits import Clock, TokenBucket, per_minute, per_second
from bridge.simulator.session import Attachment, GenesysSessionState, Session
from bridge.simulator.sessions import GenesysSessions
from bridge.simulator.waiters import Waiters
from bridge.simulator.wire import (
    Frame,
    connection_closed,
    dumps,
    envelope,
    error,
    logout_event,
    too_many_requests,
)

__all__ = ["Engine", "SessionAction"]

T = TypeVar("T")

_REQUEST_FAILED = "Request failed."
_UNAUTHORIZED = "User is unauthorized"  # §4.2, §6: 401, refresh the JWT and configure again
_AUTH_FAILED = "Session authentication failed"  # §4.2, §6: 403, the user has to log in again
_FEATURE_OFF = "Turn on the Feature Toggle or fix the configuration."

#: Handles one request on a configured, active session (``echo``, ``onMessage`` ...): the engine, the
#: connection it came on, its session, the decoded request and its ``tracingId``. Replies go through the
#: engine; it never raises.
SessionAction: TypeAlias = Callable[["Engine", Connection, Session, dict[str, Any], str | None], None]


class Engine:
    """Owns every session and connection of one simulator instance. Not thread-safe (one event loop).

    ``actions`` maps a wire action to its handler (:data:`bridge.simulator.actions.SESSION_ACTIONS`); it is
    read at each request, not copied, so a test may wrap one handler in place.
    """

    def __init__(
        self,
        config: SimulatorConfig,
        *,
        clock: Clock,
        base_url: Callable[[], str],
        actions: Mapping[str, SessionAction],
    ) -> None:
        self.config = config
        self.clock = clock
        self.base_url = base_url
        self._actions = actions
        self.rng = random.Random(config.random_seed)
        self.default_faults = FaultPlan(delay_s=config.delay_s, reorder_window=config.reorder_window)
        self.jwt = JwtSigner()
        self.auth = AuthRegistry(lambda: self.config, clock=clock, signer=self.jwt)
        self.blobs: dict[str, tuple[bytes, str, str]] = {}  # download id → (data, mime, file name)
        self.uploads: dict[str, tuple[Session, Attachment]] = {}  # attachment id → where the PUT belongs
        self.registry = GenesysSessions(retain_ended=config.retain_ended_sessions)
        self._configure_buckets: dict[tuple[str, str], TokenBucket] = {}
        self._connection_buckets: dict[str, TokenBucket] = {}
        self.waiters = Waiters()
        self._conn_ids = 0
        self._session_of: dict[Connection, Session] = {}  # a configured connection → its session
        self._jwt_of: dict[Connection, IssuedJwt] = {}  # an authenticated connection → the JWT it configured with
        self._authenticated_tokens: set[tuple[str, str]] = set()  # (deploymentId, token) ever authenticated (4017)
        self._hosts_source: frozenset[str] | None = None
        self._allowed_hosts: frozenset[str] = frozenset()

    # --- upgrade-time checks (§2.3, §12) --------------------------------------------------------------
    def deployment_known(self, deployment_id: str) -> bool:
        allowed = self.config.allowed_deployments
        return bool(deployment_id) and (allowed is None or deployment_id in allowed)

    def origin_allowed(self, origin: str | None) -> bool:
        allowed = self.config.allowed_origins
        if allowed is None:
            return True
        if not origin:
            return False
        if self.config.origin_match == "exact":
            return origin in allowed
        if self._hosts_source is not allowed:  # tests may swap engine.config at run time
            self._hosts_source, self._allowed_hosts = allowed, frozenset(_host(o) for o in allowed)
        return _host(origin) in self._allowed_hosts

    def take_connection_slot(self, deployment_id: str) -> bool:
        """Count one new connection against the per-deployment rate (§8). False = refuse it."""
        if self.config.connections_per_min is None:
            return True
        bucket = self._connection_buckets.get(deployment_id)
        if bucket is None:
            bucket = TokenBucket(float(self.config.connections_per_min), 60.0, self.clock)
            self._connection_buckets[deployment_id] = bucket
        return bucket.try_take()

    def next_connection_id(self) -> int:
        self._conn_ids += 1
        return self._conn_ids

    def connection_faults(self, conn: Connection) -> FaultPlan:
        session = self._session_of.get(conn)
        return session.faults if session is not None and session.faults is not None else self.default_faults

    def connection_gone(self, conn: Connection) -> None:
        """The socket closed (either side): forget it. The session lives on (§4.9)."""
        conn.closed = True
        self.detach(conn)
        self.changed()

    # --- sending --------------------------------------------------------------------------------------
    def reply(self, conn: Connection, frame: Frame) -> None:
        conn.send(frame)

    def error_tracing(self, tracing_id: str | None) -> str | None:
        """The ``tracingId`` an error frame carries: the request's, or none (knob ``error_tracing_id``)."""
        return tracing_id if self.config.error_tracing_id == "always" else None

    def refuse(self, conn: Connection, code: int, text: str, tracing_id: str | None) -> None:
        """Answer a request with an error string frame (§6)."""
        self.reply(conn, error(code, text, tracing_id=self.error_tracing(tracing_id)))

    def throttle(self, conn: Connection, error_code: int, text: str, tracing_id: str | None) -> None:
        """Answer a request with 429 ``TooManyRequestsErrorMessage`` (§5.4, §8)."""
        frame = too_many_requests(
            error_code, text, self.config.retry_after_s, tracing_id=self.error_tracing(tracing_id)
        )
        self.reply(conn, frame)

    def broadcast(self, session: Session, frame: Frame) -> None:
        """Send one logical frame to every connection of the session (duplicated if a fault says so)."""
        copies = 1
        plan = session.faults or self.default_faults
        if plan.duplicate_next > 0:
            plan.duplicate_next -= 1
            copies = 2
        text = dumps(frame)  # serialised once for every connection
        for conn in list(session.connections):
            for _ in range(copies):
                conn.send_text(text, frame["class"])

    def drop_connection(self, conn: Connection, *, event: bool = True) -> None:
        """ConnectionClosedEvent (optionally), then a clean close, then forget the connection."""
        if event:
            conn.send(connection_closed())
        conn.close(self.config.server_close_code, "Connection closed")
        self.detach(conn)

    # --- request dispatch -----------------------------------------------------------------------------
    def handle_text(self, conn: Connection, text: str) -> None:
        """Handle one client text frame (§4). Replies are queued on ``conn``; nothing raises."""
        try:
            request = json.loads(text)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            self.refuse(conn, 400, _REQUEST_FAILED, None)
            return
        tracing_id = request.get("tracingId") if isinstance(request.get("tracingId"), str) else None
        action = request.get("action")
        if conn.request_bucket is not None and not conn.request_bucket.try_take():
            self.throttle(conn, 4029, "Request rate too high for this connection", tracing_id)
            return
        if self._inject_failure(conn, str(action)):
            self.refuse(conn, 5000, _REQUEST_FAILED, tracing_id)
            return
        if action == "configureSession":
            self._configure(conn, request, tracing_id, authenticated=False)
        elif action == "configureAuthenticatedSession":
            self._configure(conn, request, tracing_id, authenticated=True)
        elif action in ("resumeToken", "disconnectCustomer"):
            # §4.10 schema-only actions fail as Genesys may.
            self.refuse(conn, 400, _REQUEST_FAILED, tracing_id)
        elif isinstance(action, str) and action in self._actions:
            session = self._session_for(conn, request, tracing_id)
            if session is not None and self._authorized(conn, action, tracing_id):
                self._actions[action](self, conn, session, request, tracing_id)
        else:
            self.refuse(conn, 400, _REQUEST_FAILED, tracing_id)
        self.changed()

    def _inject_failure(self, conn: Connection, action: str) -> bool:
        plan = self.connection_faults(conn)
        if plan.fail_next <= 0 or (plan.fail_actions is not None and action not in plan.fail_actions):
            return False
        plan.fail_next -= 1
        return True

    def _session_for(self, conn: Connection, request: dict[str, Any], tracing_id: str | None) -> Session | None:
        """The connection's configured session, or an error reply (§4.1: nothing before configure)."""
        session = self._session_of.get(conn)
        token = request.get("token")
        if session is None or (token is not None and token != session.token):
            self.refuse(conn, self.config.unconfigured_code, "Session not found", tracing_id)
            return None
        if session.state is GenesysSessionState.EXPIRED:
            self.refuse(conn, 4006, "Session has expired", tracing_id)
            return None
        if not session.active:
            self.refuse(conn, 4007, "Session not found", tracing_id)
            return None
        return session

    def _authorized(self, conn: Connection, action: str, tracing_id: str | None) -> bool:
        """§4.2, §6: a request on a connection whose JWT expired (401) or was revoked (403) is refused and not
        executed. Anonymous connections, and ``echo`` unless ``echo_needs_auth``, always pass."""
        issued = self._jwt_of.get(conn)
        if issued is None or (action == "echo" and not self.config.echo_needs_auth):
            return True
        state = self.auth.state(issued)
        if state is JwtState.VALID:
            return True
        if state is JwtState.EXPIRED:
            self.refuse(conn, 401, _UNAUTHORIZED, tracing_id)
        else:
            self.refuse(conn, 403, _AUTH_FAILED, tracing_id)
        return False

    # --- configureSession (§4.1) and configureAuthenticatedSession (§4.2) ------------------------------
    def _configure(
        self, conn: Connection, request: dict[str, Any], tracing_id: str | None, *, authenticated: bool
    ) -> None:
        token = request.get("token")
        deployment_id = request.get("deploymentId") or conn.deployment_id
        if not isinstance(token, str) or not token or not isinstance(deployment_id, str):
            self.refuse(conn, 4020, "Missing parameter: token and deploymentId are required", tracing_id)
            return
        if len(token) > self.config.max_token_chars:
            self.refuse(conn, 400, _REQUEST_FAILED, tracing_id)
            return
        if not self.deployment_known(deployment_id) or deployment_id != conn.deployment_id:
            self.refuse(conn, 400, "Deployment not found", tracing_id)
            return
        if self.config.origin_check == "configure" and not self.origin_allowed(conn.origin):
            self.refuse(conn, 403, "HTTP authorization error", tracing_id)
            return
        key = (deployment_id, token)
        issued: IssuedJwt | None = None
        if authenticated:
            issued = self._check_jwt(conn, request, deployment_id, tracing_id)
            if issued is None:
                return
        elif key in self._authenticated_tokens:
            self.refuse(conn, 4017, "Cannot downgrade an authenticated session to unauthenticated", tracing_id)
            return
        elif self.config.auth_required:
            self.refuse(conn, 403, "Authentication is required for this deployment", tracing_id)
            return
        bucket = self._configure_buckets.get(key)
        if bucket is None and self.config.configure_per_min is not None:
            bucket = self._configure_buckets[key] = TokenBucket(float(self.config.configure_per_min), 60.0, self.clock)
        if bucket is not None and not bucket.try_take():
            # The real log shows errorCode 429 for this one (§5.4 disagreement 2).
            self.throttle(conn, 429, "ConfigureSession rate too high for this session", tracing_id)
            return
        self.detach(conn)
        existing = self.registry.current(deployment_id, token)
        start_new = request.get("startNew") is True
        identity = issued.identity if issued is not None else None
        if existing is not None and existing.active and not start_new and self._resumable(existing, identity):
            session, new = existing, False
        else:
            if existing is not None and existing.active:
                self._end(existing, GenesysSessionState.REPLACED)
            session, new = self._create(deployment_id, token), True
        if issued is not None:
            session.identity = issued.identity
            self._authenticated_tokens.add(key)
        journey = request.get("journeyContext")
        if isinstance(journey, dict):
            session.journey_context = journey
        self._attach(conn, session)
        if issued is not None:
            self._jwt_of[conn] = issued
        self.touch(session)
        body = self.session_body(session, new_session=new)
        if issued is not None:
            body["authenticated"] = True
        self.reply(conn, envelope("SessionResponse", body, tracing_id=tracing_id))

    def _check_jwt(
        self, conn: Connection, request: dict[str, Any], deployment_id: str, tracing_id: str | None
    ) -> IssuedJwt | None:
        """The JWT in ``data.code`` of a configureAuthenticatedSession, or an error reply (§4.2)."""
        data = request.get("data")
        code = data.get("code") if isinstance(data, dict) else None
        if not isinstance(code, str) or not code:
            self.refuse(conn, 4020, "Missing parameter: data.code is required", tracing_id)
            return None
        if not self.config.auth_enabled:
            self.refuse(conn, 403, _FEATURE_OFF, tracing_id)
            return None
        if conn in self._session_of and not self.config.reconfigure_allowed:
            self.refuse(conn, 400, _REQUEST_FAILED, tracing_id)
            return None
        issued = self.auth.lookup(code)
        state = self.auth.state(issued)
        if issued is not None and issued.identity.deployment_id != deployment_id:
            state = JwtState.UNKNOWN  # a JWT of another deployment is not one this deployment issued
        if state is JwtState.EXPIRED:
            self.refuse(conn, 401, _UNAUTHORIZED, tracing_id)
            return None
        if state is not JwtState.VALID:
            self.refuse(conn, 403, _AUTH_FAILED, tracing_id)
            return None
        return issued

    def _resumable(self, existing: Session, identity: Identity | None) -> bool:
        """Whether a configure (anonymous: ``identity`` None) may resume the token's active session.

        Another customer's session is never resumed (a new session replaces it); an anonymous one is
        upgraded in place only with ``allow_session_upgrade`` (§4.2 step-up; uncertain).
        """
        if identity is None or existing.identity is identity:
            return True
        return existing.identity is None and self.config.allow_session_upgrade

    def session_body(self, session: Session, *, new_session: bool, connected: bool = True) -> dict[str, Any]:
        """The §5.1 SessionResponse body."""
        cfg = self.config
        return {
            "connected": connected,
            "newSession": new_session,
            "readOnly": session.read_only,
            "clearedExistingSession": False,
            "maxCustomDataBytes": cfg.max_custom_data_bytes,
            "allowedMedia": {
                "inbound": {
                    "fileTypes": [{"type": t} for t in cfg.allowed_media],
                    "maxFileSizeKB": cfg.max_file_size_kb,
                }
            },
            "blockedExtensions": list(cfg.blocked_extensions),
            "durationSeconds": int(cfg.session_duration_s),
            "expirationDate": self.expiration_epoch(session),
        }

    def expiration_epoch(self, session: Session) -> int:
        """Wall-clock epoch seconds of ``session.expires_at`` (which is on the loop clock)."""
        return int(time.time() + max(0.0, session.expires_at - self.clock()))

    def _create(self, deployment_id: str, token: str) -> Session:
        return self.registry.add(
            deployment_id,
            token,
            message_bucket=per_second(
                self.config.message_rate_per_s, self.clock, window=self.config.message_rate_counting == "window"
            ),
            history_bucket=per_minute(self.config.history_per_min, self.clock),
        )

    def _attach(self, conn: Connection, session: Session) -> None:
        # §1: at most N connections per session; the oldest gets ConnectionClosedEvent.
        while len(session.connections) >= self.config.max_connections_per_session:
            self.drop_connection(session.connections[0])
        session.connections.append(conn)
        self._session_of[conn] = session

    def detach(self, conn: Connection) -> None:
        """Forget which session (and which JWT) the connection served."""
        self._jwt_of.pop(conn, None)
        session = self._session_of.pop(conn, None)
        if session is not None and conn in session.connections:
            session.connections.remove(conn)

    # --- session lifecycle ----------------------------------------------------------------------------
    def touch(self, session: Session) -> None:
        """Activity extends the inactivity TTL (§7)."""
        duration = self.config.session_duration_s
        session.expires_at = self.clock() + duration
        if session.expiry_timer is None and session.active:
            session.expiry_timer = asyncio.get_running_loop().call_later(duration, self._check_expiry, session)

    def _check_expiry(self, session: Session) -> None:
        session.expiry_timer = None
        if not session.active:
            return
        remaining = session.expires_at - self.clock()
        if remaining > 1e-3:
            session.expiry_timer = asyncio.get_running_loop().call_later(remaining, self._check_expiry, session)
            return
        self.expire(session)

    def expire(self, session: Session) -> None:
        """§7: push SessionExpiredEvent; later requests get 4006, a resume makes a new session."""
        if not session.active:
            return
        # The fixture carries type "response" for this unsolicited event (§5.4); clients dispatch on class.
        self.broadcast(session, envelope("SessionExpiredEvent", {}))
        self._end(session, GenesysSessionState.EXPIRED, keep_key=True)
        self.changed()

    def clear(self, session: Session) -> None:
        """§4.3g: SessionClearedEvent and ConnectionClosedEvent to all, then delete the session."""
        self.broadcast(session, envelope("SessionClearedEvent", {}, kind="message"))
        for conn in list(session.connections):
            self.drop_connection(conn)
        self._end(session, GenesysSessionState.CLEARED)
        self.changed()

    def _end(self, session: Session, state: GenesysSessionState, *, keep_key: bool = False) -> None:
        session.state = state
        session.conversation_id = None
        session.cancel_timers()
        self.registry.ended(session, keep_current=keep_key)

    # --- authentication (§4.2) -------------------------------------------------------------------------
    def logout(self, identity: Identity) -> int:
        """Revoke the identity (its JWTs and refresh tokens stop working) and send ``LogoutEvent`` to every
        connection of its sessions, closing them when ``close_on_logout``. Returns how many connections."""
        self.auth.revoke(identity)
        conns = [c for c, s in self._session_of.items() if s.identity is identity]
        conns += [c for c, i in self._jwt_of.items() if i.identity is identity and c not in conns]
        frame = logout_event()
        for conn in conns:
            conn.send(frame)
            if self.config.close_on_logout:
                conn.close(self.config.server_close_code, "Logged out")
                self.detach(conn)
        self.changed()
        return len(conns)

    def later(self, session: Session, delay_s: float, action: Callable[[], object]) -> None:
        """Run ``action`` after ``delay_s`` unless the session ends first (the session owns the timer)."""
        holder: list[asyncio.TimerHandle] = []

        def fire() -> None:
            session.timers.discard(holder[0])
            if session.active:
                action()
                self.changed()

        holder.append(asyncio.get_running_loop().call_later(delay_s, fire))
        session.timers.add(holder[0])

    # --- lookups and waiting --------------------------------------------------------------------------
    def sessions(self) -> list[Session]:
        return self.registry.all()

    def find(self, **criteria: Any) -> Session | None:
        """See :meth:`GenesysSessions.find`."""
        return self.registry.find(**criteria)

    def changed(self) -> None:
        """Something happened: let waiters re-check their predicates."""
        self.waiters.notify()

    async def wait_for(self, predicate: Callable[[], T | None], timeout_s: float | None) -> T:
        return await self.waiters.wait_for(predicate, timeout_s)

    def close_all(self) -> None:
        """Stop: cancel every timer and fail every waiter."""
        for session in self.registry.all():
            session.cancel_timers()
        self.waiters.cancel_all()


def _host(origin: str) -> str:
    """Host part of an origin or bare host (``https://a.b:443`` → ``a.b``; §2.3 host-only match)."""
    host_port = origin.split("://", 1)[-1].split("/", 1)[0]
    return (host_port.rsplit(":", 1)[0] if ":" in host_port else host_port).lower()
