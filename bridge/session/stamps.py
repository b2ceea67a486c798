"""Building events pure-ly: the common stamp of every event, and a command's outcome."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from bridge.contract import Command, CommandOutcome
from bridge.contract.content import AttachmentPart
from bridge.contract.events import OutcomeReason, OutcomeStatus

__all__ = ["event_stamp", "outcome_of"]


def event_stamp(*, session_id: str, seq: int, occurred_at: datetime, cause: Command | None) -> dict[str, Any]:
    """The fields every event shares: a fresh ``event_id``, and the causing command's ids when there is one."""
    return {
        "event_id": uuid.uuid4().hex,
        "session_id": session_id,
        "seq": seq,
        "occurred_at": occurred_at,
        "causation_id": cause.command_id if cause else None,
        "correlation_id": cause.correlation_id if cause else None,
    }


def outcome_of(
    command: Command,
    stamp: dict[str, Any],
    status: OutcomeStatus,
    reason: OutcomeReason,
    detail: str = "",
    *,
    genesys_message_id: str | None = None,
    genesys_code: int | None = None,
    attachment: AttachmentPart | None = None,
) -> CommandOutcome:
    """The ``command.outcome`` of ``command`` under ``stamp`` (from :func:`event_stamp`)."""
    return CommandOutcome(
        **stamp,
        command_id=command.command_id,
        command_type=command.type,
        status=status,
        reason=reason,
        detail=detail,
        genesys_message_id=genesys_message_id,
        genesys_code=genesys_code,
        attachment=attachment,
    )
