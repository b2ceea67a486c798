"""A simulated guest session: the state §12 keys by ``(deploymentId, token)``.

Tests read these objects (through :class:`~bridge.simulator.Simulator`); only the engine mutates them.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bridge.simulator.limits import Limiter, TokenBucket

if TYPE_CHECKING:
    from bridge.simulator.auth import Identity
    from bridge.simulator.connection import Connection, FaultPlan

__all__ = ["Attachment", "AttachmentStatus", "GenesysSessionState", "Received", "Session"]


class GenesysSessionState(enum.StrEnum):
    """Where a session is in §7's lifecycle (the conversation is tracked separately)."""

    ACTIVE = "active"
    EXPIRED = "expired"  # inactivity TTL elapsed: requests get 4006
    CLEARED = "cleared"  # Presence Clear: deleted
    REPLACED = "replaced"  # configureSession startNew:true made a new session for the token


class AttachmentStatus(enum.StrEnum):
    """An inbound attachment's upload state (§4.6)."""

    PENDING = "pending"
    UPLOADED = "uploaded"
    FAILED = "failed"
    SENT = "sent"
    DELETED = "deleted"


@dataclass(kw_only=True)
class Attachment:
    """One guest upload, from ``onAttachment`` to being referenced by ``onMessage``."""

    attachment_id: str
    file_name: str
    file_type: str
    file_size: int
    upload_tag: str  # the value the presign header must carry on the PUT
    status: AttachmentStatus = AttachmentStatus.PENDING
    data: bytes = b""

    def content_item(self, download_url: str) -> dict[str, Any]:
        """The ``Attachment`` content item the echo and history carry (§5.2)."""
        media = self.file_type.split("/", 1)[0]
        media_type = {"image": "Image", "video": "Video", "audio": "Audio"}.get(media, "File")
        return {
            "contentType": "Attachment",
            "attachment": {
                "id": self.attachment_id,
                "url": download_url,
                "filename": self.file_name,
                "fileSize": len(self.data),
                "mediaType": media_type,
                "mime": self.file_type,
            },
        }


@dataclass(frozen=True, kw_only=True)
class Received:
    """One guest ``onMessage`` the session accepted: the Inbound body as echoed, plus its tracingId."""

    body: dict[str, Any]
    tracing_id: str | None
    connection_id: int

    @property
    def id(self) -> str:
        return str(self.body["id"])

    @property
    def type(self) -> str:
        return str(self.body.get("type", ""))

    @property
    def text(self) -> str | None:
        text = self.body.get("text")
        return text if isinstance(text, str) else None

    @property
    def content(self) -> list[dict[str, Any]]:
        return list(self.body.get("content") or [])

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(self.body.get("events") or [])

    @property
    def custom_attributes(self) -> dict[str, str]:
        channel = self.body.get("channel") or {}
        return dict((channel.get("metadata") or {}).get("customAttributes") or {})

    def as_json(self) -> dict[str, Any]:
        """JSON form for the HTTP control API."""
        return {"tracingId": self.tracing_id, "connectionId": self.connection_id, "body": self.body}


@dataclass(kw_only=True, eq=False)
class Session:
    """Simulator state of one guest session. Read-only for callers; see the attributes below."""

    session_id: str  # the simulator's own id (a new one after startNew)
    index: int  # creation order, 0-based
    deployment_id: str
    token: str
    state: GenesysSessionState = GenesysSessionState.ACTIVE
    read_only: bool = False
    conversation_id: str | None = None  # a conversation starts with the first message or Join (§7)
    custom_attributes: dict[str, str] = field(default_factory=dict)
    first_text: str | None = None
    connections: list[Connection] = field(default_factory=list)  # oldest first
    history: list[dict[str, Any]] = field(default_factory=list)  # oldest first; no typing (§9)
    received: list[Received] = field(default_factory=list)
    attachments: dict[str, Attachment] = field(default_factory=dict)
    expires_at: float = 0.0  # clock time of expiry if nothing else happens
    message_bucket: Limiter | None = None
    history_bucket: TokenBucket | None = None
    faults: FaultPlan | None = None  # None = use the simulator-wide plan
    timers: set[asyncio.TimerHandle] = field(default_factory=set)
    expiry_timer: asyncio.TimerHandle | None = None
    #: The customer of an authenticated session (§4.2): set by configureAuthenticatedSession, never unset.
    identity: Identity | None = None
    #: The ``journeyContext`` of the latest configure that carried one (§4.1), as the guest sent it.
    journey_context: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"<Session {self.session_id} #{self.index} {self.state.value} conns={len(self.connections)}>"

    @property
    def active(self) -> bool:
        return self.state is GenesysSessionState.ACTIVE

    @property
    def authenticated(self) -> bool:
        """Whether the session was configured with ``configureAuthenticatedSession`` (§4.2)."""
        return self.identity is not None

    def cancel_timers(self) -> None:
        """Cancel scheduled agent replies and the expiry timer (the session is over)."""
        for handle in self.timers:
            handle.cancel()
        self.timers.clear()
        if self.expiry_timer is not None:
            self.expiry_timer.cancel()
            self.expiry_timer = None

    def info(self) -> dict[str, Any]:
        """A JSON summary for listings (the token is included: this is a test tool, not the bridge)."""
        return {
            "sessionId": self.session_id,
            "index": self.index,
            "deploymentId": self.deployment_id,
            "token": self.token,
            "state": self.state.value,
            "readOnly": self.read_only,
            "conversationId": self.conversation_id,
            "customAttributes": dict(self.custom_attributes),
            "firstText": self.first_text,
            "connections": len(self.connections),
            "received": len(self.received),
            "history": len(self.history),
            "authenticated": self.authenticated,
            "identityId": self.identity.identity_id if self.identity is not None else None,
            "journeyContext": self.journey_context,
        }
