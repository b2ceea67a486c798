"""Building ``command.outcome`` events: the one place every outcome is made, whoever settles the command.

Pure. The intake builds the outcome of a body the codec rejected (:func:`rejection_outcome`); the registry
and the sessions build the outcome of a decoded command from what it came to (:class:`SettledOutcome`,
under :func:`event_stamp`).
``seq`` 0 means "outside any session" (the contract's number for outcomes no session settled).

Events are built validated, on purpose. ``model_construct`` (no validation) looks cheaper but is not with
pydantic 2: it runs in Python where validation runs in Rust, and a field with a ``default_factory`` (such as
``CommandOutcome.errors``) costs an ``inspect.signature`` call per event. Measured with
``python -m bench.micro_events``: 2–3 µs per event validated, 4–7 µs constructed, 90–150 µs for an outcome
that leaves ``errors`` to its factory.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from pydantic import BaseModel, ConfigDict

from genesys_bridge_client.contract.codec import Rejection
from genesys_bridge_client.contract.commands import COMMAND_TYPES, Command
from genesys_bridge_client.contract.content import AttachmentPart
from genesys_bridge_client.contract.events import OUTCOME_REASONS, CommandOutcome, OutcomeReason, OutcomeStatus

__all__ = ["SettledOutcome", "command_type_label", "event_stamp", "rejection_outcome"]


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


class SettledOutcome(BaseModel):
    """What one command came to: the one result type of command handling.

    A session's command code returns it, the settling code publishes it as a ``command.outcome`` event
    (:meth:`event`), and the session record (``bridge.record``) keeps it, so a redelivery after a
    restart is answered with it instead of being executed again (idempotency by ``command_id``).
    """

    # Unknown fields are ignored, not refused: a record written by a newer release must still load after a
    # rollback (the journal outlives any one version of the code).
    model_config = ConfigDict(frozen=True, extra="ignore")

    command_id: str
    command_type: str
    status: OutcomeStatus
    reason: OutcomeReason
    detail: str = ""
    genesys_message_id: str | None = None
    genesys_code: int | None = None
    attachment: AttachmentPart | None = None

    @classmethod
    def of(
        cls,
        command: Command,
        status: OutcomeStatus,
        reason: OutcomeReason,
        detail: str = "",
        *,
        genesys_message_id: str | None = None,
        genesys_code: int | None = None,
        attachment: AttachmentPart | None = None,
    ) -> SettledOutcome:
        """The result of ``command``."""
        return cls(
            command_id=command.command_id,
            command_type=command.type,
            status=status,
            reason=reason,
            detail=detail,
            genesys_message_id=genesys_message_id,
            genesys_code=genesys_code,
            attachment=attachment,
        )

    def event(self, stamp: dict[str, Any]) -> CommandOutcome:
        """This result as the ``command.outcome`` event under ``stamp`` (from ``event_stamp``)."""
        return CommandOutcome(
            **stamp,
            command_id=self.command_id,
            command_type=self.command_type,
            status=self.status,
            reason=self.reason,
            detail=self.detail,
            genesys_message_id=self.genesys_message_id,
            genesys_code=self.genesys_code,
            attachment=self.attachment,
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
