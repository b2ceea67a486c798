"""What the admin endpoint may show of one live session: a frozen snapshot, with no secret in it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["SessionView"]


@dataclass(frozen=True)
class SessionView:
    """A read-only snapshot of one live session, built by ``SessionRegistry.describe``.

    It never holds the Genesys session token or anything else from the record that is secret: it is made
    to be serialised and shown to an operator.
    """

    session_id: str
    state: str
    #: The last event ``seq`` used for this session.
    seq: int
    deployment_id: str
    #: Wall time the session last became ready for sends (configured and caught up); None while it is not.
    connected_since: datetime | None
    #: The session's partition (docs/scaling.md); None where no partition applies (a registry used alone).
    partition: int | None = None
    #: The replica that owns the session (its connection name and host); None where none applies.
    owner: str | None = None
