"""The ``command.outcome`` event for a command the codec rejected. Pure."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import cast

from bridge.contract import COMMAND_TYPES, CommandOutcome
from bridge.contract.codec import Rejection
from bridge.contract.events import OUTCOME_REASONS, OutcomeReason

__all__ = ["command_type_label", "rejection_outcome"]


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
