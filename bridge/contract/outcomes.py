"""Building ``command.outcome`` events: the one place every outcome is made, whoever settles the command.

Pure. The intake builds the outcome of a body the codec rejected (:func:`rejection_outcome`); the registry
and the sessions build the outcome of a decoded command (:func:`outcome_of`, under :func:`event_stamp`).
``seq`` 0 means "outside any session" (the contract's number for outcomes no session settled).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from bridge.contract.codec import Rejection
from bridge.contract.commands import COMMAND_TYPES, Command
from bridge.contract.content import AttachmentPart
from bridge.contract.events import OUTCOME_REASONS, CommandOutcome, OutcomeReason, OutcomeStatus

__all__ = ["command_type_label", "event_stamp", "outcome_of", "rejection_outcome"]


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
    command_id: str,
    command_type: str,
    stamp: dict[str, Any],
    status: OutcomeStatus,
    reason: OutcomeReason,
    detail: str = "",
    *,
    genesys_message_id: str | None = None,
    genesys_code: int | None = None,
    attachment: AttachmentPart | None = None,
) -> CommandOutcome:
    """The ``command.outcome`` of the command ``command_id`` under ``stamp`` (from :func:`event_stamp`)."""
    return CommandOutcome(
        **stamp,
        command_id=command_id,
        command_type=command_type,
        status=status,
        reason=reason,
        detail=detail,
        genesys_message_id=genesys_message_id,
        genesys_code=genesys_code,
        attachment=attachment,
    )


def rejection_outcome(rejection: Rejection, *, occurred_at: datetime) -> CommandOutcome:
    """Outcome ``rejected`` with the rejection's reason, detail, field errors and whatever ids it read.

    ``seq`` is 0: the command never reached a session (contract: 0 = outside a session).
    """
    # The codec only produces vocabulary reasons; a new one we do not know yet still gets an outcome.
    reason = rejection.reason if rejection.reason in OUTCOME_REASONS else "internal_error"
    return CommandOutcome(
        event_id=uuid.uuid4().hex,
        session_id=rejection.session_id or "",
        seq=0,
        occurred_at=occurred_at,
        causation_id=rejection.command_id,
        correlation_id=rejection.correlation_id,
        command_id=rejection.command_id,
        command_type=rejection.command_type,
        status="rejected",
        reason=cast(OutcomeReason, reason),
        detail=rejection.detail,
        errors=list(rejection.errors),
    )


def command_type_label(command_type: str | None) -> str:
    """A metric label for a command type: the type if it is in the contract, else ``unknown``.

    Rejected bodies can carry any string in ``type``; labels must stay a closed vocabulary.
    """
    return command_type if command_type in COMMAND_TYPES else "unknown"
