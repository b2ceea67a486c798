"""The one place a session's durable facts live. The session actor keeps it current; a store persists it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, SerializationInfo, field_serializer, field_validator

from bridge.genesys.translate import session_lifetime_s
from bridge.recent_ids import RecentIds
from bridge.recent_outcomes import RECENT_OUTCOMES_KEPT, RecentOutcomes

__all__ = ["RECENT_CONNECTS_KEPT", "SessionRecord"]

#: How many recent connect times a record keeps: more connects of one session in one minute than this
#: would already have spent most of its reconnect budget.
RECENT_CONNECTS_KEPT: Final = 8

#: ``SessionRecord.model_dump_json(context=REVEAL_SECRETS)`` writes the secrets in clear. Only for the copy the
#: journal seals (``bridge.store.codec``); every other dump masks them.
REVEAL_SECRETS: Final = {"reveal_secrets": True}


class SessionRecord(BaseModel):
    """Everything needed to resume a session after a restart (docs/durability.md).

    Immutable: the actor replaces its record with ``record.replaced(...)`` on every change, so a
    store can persist a consistent snapshot without locks. ``token`` is the Genesys session secret: it is
    never logged (``SecretStr``) and is encrypted at rest by the store, like the JWT and refresh token of an
    authenticated session.
    """

    # Unknown fields are ignored, not refused: a record written by a newer release must still load after a
    # rollback (the journal outlives any one version of the code).
    model_config = ConfigDict(frozen=True, extra="ignore")

    session_id: str
    token: SecretStr
    deployment_id: str
    region: str
    origin: str | None = None
    route: str | None = Field(
        default=None, description="The owner token from session.start: the last part of every event routing key."
    )
    traceparent: str | None = Field(
        default=None, description="W3C trace context of the newest command: carried onto the session's later events."
    )
    tracestate: str | None = None
    custom_attributes: dict[str, str] = Field(default_factory=dict)
    state: str = "starting"
    closed: bool = False
    last_message_id: str | None = Field(default=None, description="Newest Genesys message id published (confirmed).")
    last_message_time: datetime | None = None
    recent_message_ids: RecentIds = Field(
        default=RecentIds(),
        description="Bounded tail of published Genesys ids, for dedupe across reconnects/restarts (a JSON list).",
    )
    genesys_ttl_s: int | None = Field(
        default=None, description="Genesys' inactivity TTL (SessionResponse durationSeconds, §5.1)."
    )
    expires_at: datetime | None = Field(
        default=None,
        description="When Genesys expires the session if nothing happens: expirationDate, moved on by activity (§7).",
    )
    seq: int = Field(default=0, description="Last event seq number used for this session.")
    pending_sends: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "tracingId -> text of message sends not yet echoed. Saved before the send, so after a crash "
            "the backfill can recognise a message that reached Genesys and it is not sent twice."
        ),
    )
    recent_outcomes: RecentOutcomes = Field(
        default=RecentOutcomes(),
        description=(
            f"Bounded tail (at most {RECENT_OUTCOMES_KEPT}, oldest first) of settled command outcomes, saved "
            "before the command is acked: a command redelivered to the next process is answered, not re-run."
        ),
    )
    start_command_id: str | None = Field(
        default=None,
        description="command_id of the session.start that created it: a redelivery is answered, not refused.",
    )
    recent_connects: tuple[float, ...] = Field(
        default=(),
        description=(
            "Epoch seconds of this session's Genesys connects in the last minute, oldest first (at most "
            "RECENT_CONNECTS_KEPT): a next owner counts them against the deployment's connect window, so a "
            "crash loop cannot exceed Genesys' limit either."
        ),
    )
    unannounced_start: Literal["new", "adopted"] | None = Field(
        default=None,
        description=(
            "Set from session.start until session.started is published: whether the start makes a Genesys "
            "session or adopts one (resume_token). A next owner that resumes the session publishes the "
            "session.started its previous owner never did."
        ),
    )
    authenticated: bool = Field(
        default=False, description="Started with auth: every configure is configureAuthenticatedSession (§4.2)."
    )
    auth_jwt: SecretStr | None = Field(default=None, description="The Genesys JWT of an authenticated session.")
    auth_jwt_expires_at: datetime | None = None
    auth_refresh_token: SecretStr | None = Field(default=None, description="Renews auth_jwt; a secret.")
    journey_context: dict[str, Any] | None = Field(
        default=None, description="configureSession.journeyContext (Predictive Engagement), as Genesys takes it."
    )
    created_at: datetime
    updated_at: datetime

    @field_validator("genesys_ttl_s")
    @classmethod
    def _sane_lifetime(cls, value: int | None) -> int | None:
        # An earlier release journalled any durationSeconds Genesys sent. A garbled one (10^12, or below
        # zero) would overflow every expiry computed from it after a restart, and end the session: it
        # loads as not given, as a garbled one from Genesys is taken now (protocol reference §5.1).
        return session_lifetime_s(value)

    def replaced(self, changes: Mapping[str, Any]) -> SessionRecord:
        """This record with ``changes``, as ``model_copy(update=changes)`` makes it: not validated (the
        keeper's typed methods pass valid values), the unchanged values shared.

        Unlike ``model_copy`` it does not copy the set of fields that were set: every copy shares one (of all
        fields), which nothing here reads. That set is about 2 KiB per record, and every live session holds
        one record (docs/performance.md, memory per session).

        Raises:
            ValueError: ``changes`` names a field the record does not have (a bug in the caller).
        """
        unknown = changes.keys() - _FIELDS_SET
        if unknown:
            raise ValueError(f"SessionRecord has no field {sorted(unknown)}")
        values = dict(self.__dict__)
        values.update(changes)
        record = SessionRecord.__new__(SessionRecord)
        object.__setattr__(record, "__dict__", values)
        object.__setattr__(record, "__pydantic_fields_set__", _FIELDS_SET)
        object.__setattr__(record, "__pydantic_extra__", None)
        object.__setattr__(record, "__pydantic_private__", None)
        return record

    def sealed_json(self) -> bytes:
        """The JSON the journal seals (``bridge.store.codec``): what ``model_dump_json(context=REVEAL_SECRETS)``
        writes, the secrets in clear, as UTF-8. Only for that copy: the caller encrypts it before it leaves.

        The recent ids and outcomes are written from their packed form rather than encoded anew item by item:
        a busy session's 200 ids and 32 outcomes are most of its record, and a record is saved for every
        command.
        """
        body = self.model_dump_json(context=REVEAL_SECRETS, exclude=_PACKED)
        packed = "".join(f',"{name}":[{getattr(self, name).json_items()}]' for name in sorted(_PACKED))
        return f"{body[:-1]}{packed}}}".encode()

    @field_serializer("token", "auth_jwt", "auth_refresh_token", when_used="json")
    def _secret(self, value: SecretStr | None, info: SerializationInfo) -> str | None:
        """Masked, as pydantic masks a ``SecretStr``, unless the dump asked for :data:`REVEAL_SECRETS`."""
        if value is None:
            return None
        return value.get_secret_value() if info.context and info.context.get("reveal_secrets") else str(value)


#: Every field of a record: the one "fields set" that :meth:`SessionRecord.replaced` copies share. A ``set``,
#: as pydantic expects (``model_copy`` copies it before adding to it); never changed in place: the record is
#: frozen, so pydantic never adds to it.
_FIELDS_SET: Final[set[str]] = set(SessionRecord.model_fields)

#: The fields :meth:`SessionRecord.sealed_json` writes itself, from their packed form. Never changed.
_PACKED: Final[set[str]] = {"recent_message_ids", "recent_outcomes"}
