"""Small per-session actions: ``echo`` (§4.4), ``getJwt`` (§4.5), ``closeSession`` (§4.7),
``getConfiguration`` (§4.8), and the dispatch table the engine uses for every session action.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bridge.simulator import attachments, messaging
from bridge.simulator.wire import envelope, iso_now, new_message_id

if TYPE_CHECKING:
    from bridge.simulator.connection import Connection
    from bridge.simulator.engine import Engine
    from bridge.simulator.session import Session

__all__ = ["SESSION_ACTIONS"]


def _echo(engine: Engine, conn: Connection, session: Session, request: dict[str, Any], tracing_id: str | None) -> None:
    """§4.4: a ping answered on this connection only, with the session timing as strings."""
    if conn.echo_bucket is not None and not conn.echo_bucket.try_take():
        engine.throttle(conn, 4029, "Echo rate too high for this connection", tracing_id)
        return
    message = request.get("message") if isinstance(request.get("message"), dict) else {}
    body: dict[str, Any] = {
        "type": "Text",
        "direction": "Inbound",
        "id": new_message_id(),
        "text": message.get("text", "ping") if isinstance(message, dict) else "ping",
        "channel": {"time": iso_now()},
        "metadata": {
            **(message.get("metadata") or {} if isinstance(message, dict) else {}),
            "durationSeconds": str(int(engine.config.session_duration_s)),
            "expirationDate": str(engine.expiration_epoch(session)),
        },
    }
    engine.reply(conn, envelope("StructuredMessage", body, tracing_id=tracing_id))


def _get_jwt(
    engine: Engine, conn: Connection, session: Session, request: dict[str, Any], tracing_id: str | None
) -> None:
    """§4.5: a bearer token for the REST history of this session."""
    now = int(time.time())
    exp = now + engine.config.jwt_ttl_s
    jwt = engine.jwt.issue({"sid": session.session_id, "deploymentId": session.deployment_id, "iat": now, "exp": exp})
    engine.reply(conn, envelope("JwtResponse", {"jwt": jwt, "exp": exp}, tracing_id=tracing_id))


def _close_session(
    engine: Engine, conn: Connection, session: Session, request: dict[str, Any], tracing_id: str | None
) -> None:
    """§4.7: ConnectionClosedEvent to the others, SessionResponse{connected:false} to the requester."""
    for other in [c for c in session.connections if c is not conn]:
        engine.drop_connection(other)
    engine.detach(conn)  # the requester stays open and may configure again
    engine.reply(
        conn,
        envelope(
            "SessionResponse", engine.session_body(session, new_session=False, connected=False), tracing_id=tracing_id
        ),
    )


def _get_configuration(
    engine: Engine, conn: Connection, session: Session, request: dict[str, Any], tracing_id: str | None
) -> None:
    """§4.8: the supported-content configuration."""
    full = engine.session_body(session, new_session=False)
    body = {
        "allowedMedia": full["allowedMedia"],
        "blockedExtensions": full["blockedExtensions"],
        "maxCustomDataBytes": full["maxCustomDataBytes"],
        "messageRoutingEnabled": True,
        "sessionDurationSeconds": full["durationSeconds"],
    }
    engine.reply(conn, envelope("GetConfigurationResponse", body, tracing_id=tracing_id))


Handler = Callable[["Engine", "Connection", "Session", dict[str, Any], str | None], None]
SESSION_ACTIONS: dict[str, Handler] = {
    "onMessage": messaging.on_message,
    "echo": _echo,
    "getJwt": _get_jwt,
    "closeSession": _close_session,
    "getConfiguration": _get_configuration,
    "onAttachment": attachments.on_attachment,
    "getAttachment": attachments.get_attachment,
    "deleteAttachment": attachments.delete_attachment,
}
