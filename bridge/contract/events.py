"""Events: what the bridge publishes. Discriminated by ``type``.

Every event has a unique ``event_id``, the ``session_id``, a per-session ``seq`` (monotonic from 1, so
consumers can order and detect gaps; 0 for outcomes of commands that name no live session), the time
it occurred and the ``causation_id`` of the command it answers, when there is one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from bridge.contract.common import SCHEMA_VERSION, ContractModel
from bridge.contract.content import ContentPart, Sender

__all__ = [
    "END_REASONS",
    "EVENT_TYPES",
    "OUTCOME_REASONS",
    "CommandOutcome",
    "EndReason",
    "Event",
    "FieldError",
    "MessageReceived",
    "OutcomeReason",
    "OutcomeStatus",
    "SessionEnded",
    "SessionResumed",
    "SessionStarted",
    "SessionStateChanged",
    "TypingReceived",
]


class _EventBase(ContractModel):
    schema_version: Literal[1] = Field(default=SCHEMA_VERSION, description="Contract version of this event.")
    event_id: str = Field(description="Unique id of this event; also the AMQP message_id.")
    session_id: str = Field(description="The integrator's session key.")
    seq: int = Field(ge=0, description="Per-session sequence number, monotonic from 1; 0 = outside a session.")
    occurred_at: datetime = Field(description="When it happened (UTC).")
    causation_id: str | None = Field(default=None, description="The command_id this event answers, if any.")
    correlation_id: str | None = Field(default=None, description="The correlation_id of that command, if any.")


class SessionStarted(_EventBase):
    """The Genesys session is configured and ready for messages."""

    type: Literal["session.started"] = "session.started"
    deployment_id: str
    region: str
    new_session: bool = Field(description="False when an existing Genesys session was adopted (resume_token).")
    read_only: bool = False
    expires_at: datetime | None = Field(default=None, description="When Genesys expires it if nothing happens.")


class SessionResumed(_EventBase):
    """The session's socket came back (after a drop or a bridge restart) on the same Genesys session."""

    type: Literal["session.resumed"] = "session.resumed"
    cause: Literal["reconnect", "restart"]
    missed_messages: int = Field(ge=0, description="Messages fetched from history and published after this.")


EndReason = Literal[
    "guest_ended",
    "agent_disconnected",
    "read_only",
    "expired",
    "cleared",
    "closed_by_genesys",
    "conversation_lost",
    "rejected_by_genesys",
    "failed",
]
END_REASONS: tuple[str, ...] = EndReason.__args__  # type: ignore[attr-defined]


class SessionEnded(_EventBase):
    """The session is over and forgotten by the bridge. Commands for it are rejected as unknown_session."""

    type: Literal["session.ended"] = "session.ended"
    reason: EndReason = Field(
        description=(
            "guest_ended: a session.end command; agent_disconnected: agent/bot disconnected the conversation; "
            "read_only: Genesys made the session read-only; expired: the session TTL elapsed; cleared: the "
            "conversation was cleared; closed_by_genesys: Genesys closed the connection (another connection "
            "took over); conversation_lost: a resume came back as a new session; rejected_by_genesys: "
            "configureSession was refused; failed: the bridge gave up (see detail)."
        )
    )
    detail: str | None = None


class MessageReceived(_EventBase):
    """A message in the conversation: from an agent, a bot or the system (or the guest's own from elsewhere)."""

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

    type: Literal["typing.received"] = "typing.received"
    sender: Sender | None = None
    duration_ms: int = 5000


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
]
OUTCOME_REASONS: tuple[str, ...] = OutcomeReason.__args__  # type: ignore[attr-defined]


class FieldError(ContractModel):
    """One schema violation: where (``loc``, a JSON path) and what."""

    loc: str
    message: str


class CommandOutcome(_EventBase):
    """The settled result of one command. Every command gets exactly one (repeated for duplicates)."""

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


class SessionStateChanged(_EventBase):
    """The bridge's view of the session moved (connecting, active, reconnecting, ...)."""

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
    "command.outcome",
    "session.state_changed",
)
