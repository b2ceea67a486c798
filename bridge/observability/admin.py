"""The read-only admin endpoint (aiohttp): ``GET /sessions/{id}`` answers what the bridge knows of a session.

Off unless ``BRIDGE_ADMIN_PORT`` is set, and on its own port, apart from ``/metrics`` and the probes: the
metrics port is opened to the cluster's scrapers, this one is bound to loopback by default
(``BRIDGE_ADMIN_HOST``) and reached with a port-forward. With ``BRIDGE_ADMIN_TOKEN`` set, every request
needs ``Authorization: Bearer <token>``.

Answers (all JSON):

- 200 ``{"session_id", "state", "seq", "deployment_id", "connected_since", "partition", "owner"}``;
  ``connected_since`` is ISO 8601 UTC or null, ``partition`` is the session's partition and ``owner``
  the replica answering (docs/scaling.md).
- 404 ``{"error": "unknown_session", "session_id": ...}`` for a session that is not live in this process.
- 401 ``{"error": "unauthorized"}`` without the right token (with a ``WWW-Authenticate: Bearer`` header).

Nothing secret is ever answered: the view it serialises (:class:`bridge.session.view.SessionView`) holds no
token, and the admin token itself is only ever compared, in constant time.

Caller's duties: ``await start()`` once, ``await stop()`` at shutdown (or use ``async with``).
"""

from __future__ import annotations

import hmac
from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import SecretStr

from bridge.serving import AppServer
from bridge.session.view import SessionView

__all__ = ["AdminServer", "SessionDirectory", "session_json"]


class SessionDirectory(Protocol):
    """Where the admin endpoint looks sessions up (``SessionRegistry`` in the daemon)."""

    def describe(self, session_id: str) -> SessionView | None: ...


def session_json(view: SessionView) -> dict[str, object]:
    """The JSON body of ``GET /sessions/{id}`` for ``view``."""
    return {
        "session_id": view.session_id,
        "state": view.state,
        "seq": view.seq,
        "deployment_id": view.deployment_id,
        "connected_since": view.connected_since.isoformat() if view.connected_since is not None else None,
        "partition": view.partition,
        "owner": view.owner,
    }


class AdminServer(AppServer):
    """Serves ``GET /sessions/{id}`` on ``host:port`` (``port=0`` picks a free port).

    Args:
        host: bind address; keep it on loopback unless a token is set and the network is trusted.
        port: bind port; 0 for any free port (read :attr:`port` after :meth:`start`).
        sessions: answers ``describe(session_id)``; called on the loop for every request, must not block.
        token: when set, requests need ``Authorization: Bearer <token>``; None serves without a check.
    """

    def __init__(self, host: str, port: int, sessions: SessionDirectory, *, token: SecretStr | None = None) -> None:
        super().__init__(host, port)
        self._sessions = sessions
        self._expected = f"Bearer {token.get_secret_value()}".encode() if token is not None else None

    def _build(self) -> web.Application:
        app = web.Application(middlewares=[self._authorize])
        app.router.add_get("/sessions/{session_id}", self._handle_session)
        return app

    @web.middleware
    async def _authorize(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # Before routing: an unauthenticated caller learns nothing, not even which paths exist.
        if self._expected is not None:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, self._expected):
                return web.json_response({"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    async def _handle_session(self, request: web.Request) -> web.Response:
        session_id = request.match_info["session_id"]
        view = self._sessions.describe(session_id)
        if view is None:
            return web.json_response({"error": "unknown_session", "session_id": session_id}, status=404)
        return web.json_response(session_json(view))
