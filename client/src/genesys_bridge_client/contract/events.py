"""Events: what the bridge publishes. Discriminated by ``type``.

Every event has a unique ``event_id``, the ``session_id``, a per-session ``seq`` (monotonic from 1, so
consumers can order and detect gaps; 0 for outcomes of commands that name no live session), the time
it occurred and the ``causation_id`` of the command it answers, when there is one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from genesys_bridge_client.contract.common import SCHEMA_VERSION, EventModel
from genesys_bridge_client.contract.content import AttachmentPart, ContentPart, Sender

__all__ = [
    "END_REASONS",
    "EVENT_TYPES",
    "OUTCOME_REASONS",
    "CommandOutcome",
    "EndReason",
    "Event",
    "FieldError",
    "MessageReceived",
    "MessengerFeatures",
    "OutcomeReason",
    "OutcomeStatus",
    "PresenceReceived",
    "SessionEnded",
    "SessionResumed",
    "SessionStarted",
    "SessionStateChanged",
    "TypingReceived",
]


class _EventBase(EventModel):
    schema_version: Literal[1] = Field(default=SCHEMA_VERSION, description="Contract version of this event.")
    event_id: str = Field(description="Unique id of this event; also the AMQP message_id.")
    session_id: str = Field(description="The integrator's session key.")
    seq: int = Field(ge=0, description="Per-session sequence number, monotonic from 1; 0 = outside a session.")
    occurred_at: datetime = Field(description="When it happened (UTC).")
    causation_id: str | None = Field(default=None, description="The command_id this event answers, if any.")
    correlation_id: str | None = Field(default=None, description="The correlation_id of that command, if any.")


class MessengerFeatures(EventModel):
    """What the deployment's Messenger configuration allows, as the bridge read it (null: unknown).

    Read from the deployment's public ``config.json`` before the first session; unknown when it could not be
    fetched, in which case the bridge tries and reads Genesys' answer instead.
    """

    clear: bool | None = Field(default=None, description="session.end can clear the conversation (Clear).")
    disconnect: Literal["off", "read_only", "send"] | None = Field(
        default=None,
        description=(
            "What an agent disconnect does: off (never announced), read_only (the session ends "
            "agent_disconnected), send (presence.received; the guest may write on and starts a new conversation)."
        ),
    )
    user_typing: bool | None = Field(default=None, description="typing.send is shown to the agent.")
    autostart: bool | None = Field(default=None, description="The deployment expects a Join when a session starts.")
    upload_types: list[str] | None = Field(default=None, description="MIME types attachments may have.")
    max_upload_bytes: int | None = Field(default=None, description="The largest attachment allowed.")


class SessionStarted(_EventBase):
    """The Genesys session is configured and ready for messages."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "session.started",
                    "schema_version": 1,
                    "event_id": "3f1c2b4a-9d8e-4f7a-b6c5-d4e3f2a1b0c9",
                    "session_id": "order-4711",
                    "seq": 1,
                    "occurred_at": "2026-11-26T13:40:00.512000Z",
                    "causation_id": "5b0c7f0e-6a47-4a59-9a3e-0c8f1d2e3a41",
                    "correlation_id": "req-981",
                    "deployment_id": "0f4f1d2a-5b1e-4e0e-9f3a-2f5d8c1a7b10",
                    "region": "mypurecloud.ie",
                    "new_session": True,
                    "read_only": False,
                    "expires_at": "2026-11-29T13:40:00Z",
                }
            ]
        }
    )

    type: Literal["session.started"] = "session.started"
    deployment_id: str
    region: str
    new_session: bool = Field(description="False when an existing Genesys session was adopted (resume_token).")
    read_only: bool = False
    expires_at: datetime | None = Field(default=None, description="When Genesys expires it if nothing happens.")
    features: MessengerFeatures = Field(
        default_factory=MessengerFeatures, description="What the deployment allows, so integrators can adapt."
    )


class SessionResumed(_EventBase):
    """The session's socket came back (after a drop or a bridge restart) on the same Genesys session."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "session.resumed",
                    "schema_version": 1,
                    "event_id": "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d",
                    "session_id": "order-4711",
                    "seq": 9,
                    "occurred_at": "2026-11-26T13:52:10.004000Z",
                    "cause": "reconnect",
                    "missed_messages": 2,
                }
            ]
        }
    )

    type: Literal["session.resumed"] = "session.resumed"
    cause: Literal["reconnect", "restart"]
    missed_messages: int = Field(ge=0, description="Messages fetched from history and published after this.")


EndReason = Literal[
    "guest_ended",
    "guest_left",
    "agent_disconnected",
    "read_only",
    "expired",
    "cleared",
    "closed_by_genesys",
    "conversation_lost",
    "rejected_by_genesys",
    "idle",
    "auth_failed",
    "logged_out",
    "failed",
]
END_REASONS: tuple[str, ...] = EndReason.__args__  # type: ignore[attr-defined]


class SessionEnded(_EventBase):
    """The session is over and forgotten by the bridge. Commands for it are rejected as unknown_session."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "session.ended",
                    "schema_version": 1,
                    "event_id": "c0ffee00-1234-4abc-9def-0123456789ab",
                    "session_id": "order-4711",
                    "seq": 14,
                    "occurred_at": "2026-11-26T14:05:31.250000Z",
                    "reason": "agent_disconnected",
                    "detail": "The agent ended the conversation.",
                }
            ]
        }
    )

    type: Literal["session.ended"] = "session.ended"
    reason: EndReason = Field(
        description=(
            "guest_ended: a session.end command, and Genesys cleared the conversation; guest_left: a session.end "
            "command where the deployment does not allow Clear: the socket is closed and the token forgotten, "
            "but the conversation stays open for the agent; agent_disconnected: the agent or bot disconnected "
            "the conversation and the deployment made it read-only; read_only: Genesys made the session "
            "read-only; expired: the session TTL elapsed (4006 or SessionExpiredEvent); cleared: the "
            "conversation was cleared from another connection; closed_by_genesys: Genesys closed the connection "
            "(another connection took over); conversation_lost: Genesys no longer knows the session (4007, or a "
            "resume came back as a new session); rejected_by_genesys: configureSession was refused; idle: no "
            "agent activity for BRIDGE_SESSION_IDLE_TIMEOUT_S (the socket is closed, the conversation is left "
            "to the agent); auth_failed: an authenticated session could not be (re)authenticated (the code "
            "exchange, the token refresh or Genesys refused it); logged_out: a session.logout, or the customer "
            "logged out on another device; failed: the bridge gave up (see detail)."
        )
    )
    detail: str | None = None


class MessageReceived(_EventBase):
    """A message in the conversation: from an agent, a bot or the system (or the guest's own from elsewhere)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "message.received",
                    "schema_version": 1,
                    "event_id": "e4d3c2b1-a098-4765-8432-10fedcba9876",
                    "session_id": "order-4711",
                    "seq": 4,
                    "occurred_at": "2026-11-26T13:41:02.120000Z",
                    "genesys_message_id": "a8d6c6b2e9f04c6f8d1e2b3a4c5d6e7f",
                    "direction": "outbound",
                    "sender": {"kind": "agent", "nickname": "Ann", "image": "https://cdn.example.com/ann.png"},
                    "text": "Sorry to hear that. Shall I refund you?",
                    "parts": [
                        {"kind": "quick_reply", "text": "Yes, refund me", "payload": "refund_yes", "action": "Message"},
                        {
                            "kind": "quick_reply",
                            "text": "No, send a new one",
                            "payload": "refund_no",
                            "action": "Message",
                        },
                    ],
                    "genesys_time": "2026-11-26T13:41:02.087Z",
                    "backfilled": False,
                    "raw": {
                        "id": "a8d6c6b2e9f04c6f8d1e2b3a4c5d6e7f",
                        "type": "Structured",
                        "direction": "Outbound",
                        "text": "Sorry to hear that. Shall I refund you?",
                    },
                }
            ]
        }
    )

    type: Literal["message.received"] = "message.received"
    genesys_message_id: str = Field(description="Genesys message id: the dedupe key across redeliveries.")
    direction: Literal["inbound", "outbound"] = Field(
        description="From Genesys' point of view: outbound = to the guest; inbound = the guest's own."
    )
    sender: Sender | None = None
    text: str | None = None
    parts: list[ContentPart] = Field(default_factory=list, description="Rich content, normalised.")
    genesys_time: datetime | None = Field(default=None, description="channel.time, Genesys' ordering key.")
    backfilled: bool = Field(default=False, description="True when fetched from history after a gap.")
    raw: dict[str, Any] = Field(description="The Genesys message body as received, for anything not modelled.")


class TypingReceived(_EventBase):
    """The agent or bot is typing. Hide after ``duration_ms`` or when a message arrives."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "typing.received",
                    "schema_version": 1,
                    "event_id": "b1a2c3d4-e5f6-4789-8abc-def012345678",
                    "session_id": "order-4711",
                    "seq": 3,
                    "occurred_at": "2026-11-26T13:41:00.020000Z",
                    "sender": {"kind": "agent", "nickname": "Ann"},
                    "duration_ms": 5000,
                }
            ]
        }
    )

    type: Literal["typing.received"] = "typing.received"
    sender: Sender | None = None
    duration_ms: int = 5000


class PresenceReceived(_EventBase):
    """The agent side joined, or disconnected while the session stays writable (Disconnect in Send mode).

    A disconnect in Send mode does not end the session: the guest may write on, and the next message starts
    a new conversation. A disconnect in ReadOnly mode ends the session (``session.ended agent_disconnected``)
    and is not published as presence.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "presence.received",
                    "schema_version": 1,
                    "event_id": "5d4c3b2a-1f0e-4d9c-8b7a-695847362514",
                    "session_id": "order-4711",
                    "seq": 11,
                    "occurred_at": "2026-11-26T14:02:10.100000Z",
                    "kind": "disconnect",
                    "read_only": False,
                    "sender": {"kind": "agent", "nickname": "Ann"},
                }
            ]
        }
    )

    type: Literal["presence.received"] = "presence.received"
    kind: Literal["join", "disconnect"]
    read_only: bool = Field(default=False, description="Whether Genesys made the session read-only.")
    sender: Sender | None = None


OutcomeStatus = Literal["delivered", "will_retry", "failed", "rejected"]
OutcomeReason = Literal[
    "ok",
    "not_json",
    "unknown_type",
    "schema_invalid",
    "too_large",
    "unsupported_version",
    "unknown_session",
    "session_exists",
    "deployment_not_allowed",
    "unknown_region",
    "too_many_sessions",
    "overflow",
    "rate_limited",
    "typing_coalesced",
    "typing_disabled",
    "read_only",
    "message_too_long",
    "attributes_too_large",
    "session_ended",
    "genesys_error",
    "genesys_unavailable",
    "timeout",
    "attachment_failed",
    "shutting_down",
    "internal_error",
    "auth_failed",
    "not_authenticated",
]
OUTCOME_REASONS: tuple[str, ...] = OutcomeReason.__args__  # type: ignore[attr-defined]


class FieldError(EventModel):
    """One schema violation: where (``loc``, a JSON path) and what."""

    loc: str
    message: str


class CommandOutcome(_EventBase):
    """The settled result of one command. Every command gets exactly one (repeated for duplicates)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "command.outcome",
                    "schema_version": 1,
                    "event_id": "0a1b2c3d-4e5f-4061-8273-8495a6b7c8d9",
                    "session_id": "order-4711",
                    "seq": 5,
                    "occurred_at": "2026-11-26T13:41:30.700000Z",
                    "causation_id": "9e2d6c1b-0f35-4c8e-8a7d-3b1c2d4e5f60",
                    "command_id": "9e2d6c1b-0f35-4c8e-8a7d-3b1c2d4e5f60",
                    "command_type": "message.send",
                    "status": "delivered",
                    "reason": "ok",
                    "detail": "",
                    "genesys_message_id": "5e4d3c2b1a0f4e9d8c7b6a5f4e3d2c1b",
                },
                {
                    "type": "command.outcome",
                    "schema_version": 1,
                    "event_id": "1b2c3d4e-5f60-4172-8394-a5b6c7d8e9f0",
                    "session_id": "order-4711",
                    "seq": 0,
                    "occurred_at": "2026-11-26T13:41:31.010000Z",
                    "causation_id": "2c3d4e5f-6071-4283-94a5-b6c7d8e9f0a1",
                    "command_id": "2c3d4e5f-6071-4283-94a5-b6c7d8e9f0a1",
                    "command_type": "message.send",
                    "status": "rejected",
                    "reason": "schema_invalid",
                    "detail": "$.attachments[0].mime_type: Field required",
                    "errors": [{"loc": "$.attachments[0].mime_type", "message": "Field required"}],
                },
            ]
        }
    )

    type: Literal["command.outcome"] = "command.outcome"
    session_id: str = Field(default="", description="The command's session_id; empty when it could not be read.")
    command_id: str | None = Field(default=None, description="The command's id; null when it could not be read.")
    command_type: str | None = None
    status: OutcomeStatus = Field(
        description=(
            "delivered: done (for message.send: echoed by Genesys); will_retry: transient trouble, the bridge "
            "keeps trying; failed: tried and gave up; rejected: refused without trying (bad input)."
        )
    )
    reason: OutcomeReason = Field(description="Machine-readable reason code; `ok` when delivered.")
    detail: str = Field(default="", description="Human-readable explanation.")
    errors: list[FieldError] = Field(default_factory=list, description="Field errors for schema_invalid.")
    genesys_message_id: str | None = Field(default=None, description="Genesys id of the delivered message.")
    genesys_code: int | None = Field(default=None, description="Genesys error code, when Genesys refused.")
    attachment: AttachmentPart | None = Field(
        default=None, description="For attachment.refresh: the attachment with a fresh download URL."
    )


class SessionStateChanged(_EventBase):
    """The bridge's view of the session moved (connecting, active, reconnecting, ...)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "session.state_changed",
                    "schema_version": 1,
                    "event_id": "5d6e7f80-91a2-4b3c-8d4e-5f60718293a4",
                    "session_id": "order-4711",
                    "seq": 8,
                    "occurred_at": "2026-11-26T13:52:08.900000Z",
                    "old": "active",
                    "new": "reconnecting",
                    "detail": "socket closed (1006)",
                }
            ]
        }
    )

    type: Literal["session.state_changed"] = "session.state_changed"
    old: str
    new: str
    detail: str | None = None


Event = Annotated[
    SessionStarted
    | SessionResumed
    | SessionEnded
    | MessageReceived
    | TypingReceived
    | PresenceReceived
    | CommandOutcome
    | SessionStateChanged,
    Field(discriminator="type"),
]
EVENT_TYPES: tuple[str, ...] = (
    "session.started",
    "session.resumed",
    "session.ended",
    "message.received",
    "typing.received",
    "presence.received",
    "command.outcome",
    "session.state_changed",
)
