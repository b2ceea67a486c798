"""Decode raw AMQP bodies into commands; encode and decode events.

:func:`decode_command` is the bridge's one door for untrusted input. It never raises: a body is either
a :data:`~genesys_bridge_client.contract.commands.Command` or a :class:`Rejection` whose ``reason`` is a code from
:data:`~genesys_bridge_client.contract.events.OUTCOME_REASONS`. Checks run cheapest first and stop at the first
failure, so the reason names the most basic thing wrong:

1. ``too_large``: the body is longer than ``max_bytes`` (nothing is parsed);
2. ``not_json``: not UTF-8, not strict JSON (no ``NaN``), or JSON that is not an object;
3. ``unknown_type``: ``type`` is missing or not one of :data:`~genesys_bridge_client.contract.commands.COMMAND_TYPES`;
4. ``unsupported_version``: ``schema_version`` is a number other than 1;
5. ``message_too_long`` / ``attributes_too_large``: the only faults are the byte limits on text
   (4096 UTF-8 bytes) or custom attributes (2048 bytes), protocol reference §4.3 and §8;
6. ``schema_invalid``: anything else pydantic refuses, with one :class:`FieldError` per fault
   (at most :data:`MAX_FIELD_ERRORS`). Messages never echo the input: it may hold secrets.

Whatever identifying fields are readable strings (``command_id``, ``session_id``, ``type``,
``correlation_id``) are copied onto the rejection even when the command is bad, so the outcome event
can still be correlated by the integrator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails, from_json

from genesys_bridge_client.contract.commands import (
    COMMAND_TYPES,
    AttachmentRefresh,
    Command,
    MessageSend,
    SessionEnd,
    SessionLogout,
    SessionStart,
    TypingSend,
)
from genesys_bridge_client.contract.common import SCHEMA_VERSION, SIZE_ERROR_TYPES
from genesys_bridge_client.contract.events import Event, FieldError

__all__ = ["MAX_FIELD_ERRORS", "Rejection", "decode_command", "decode_event", "encode_event", "json_path"]

#: At most this many field errors are reported, so one hostile body cannot inflate its outcome event.
MAX_FIELD_ERRORS: Final = 20

_COMMAND_MODELS: Final[
    dict[str, type[SessionStart | MessageSend | TypingSend | SessionEnd | AttachmentRefresh | SessionLogout]]
] = {
    "session.start": SessionStart,
    "message.send": MessageSend,
    "typing.send": TypingSend,
    "session.end": SessionEnd,
    "attachment.refresh": AttachmentRefresh,
    "session.logout": SessionLogout,
}
assert tuple(_COMMAND_MODELS) == COMMAND_TYPES, "codec and commands disagree on the command types"

_EVENT_ADAPTER: Final[TypeAdapter[Event]] = TypeAdapter(Event)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a body is not a valid command, with whatever identifying fields could be read from it."""

    reason: str  # an OutcomeReason: too_large, not_json, unknown_type, unsupported_version, message_too_long,
    #              attributes_too_large, schema_invalid (or internal_error, for a bug in the codec itself)
    detail: str
    errors: tuple[FieldError, ...] = ()
    command_id: str | None = None
    session_id: str | None = None
    command_type: str | None = None
    correlation_id: str | None = None


def decode_command(body: bytes, *, max_bytes: int) -> Command | Rejection:
    """Turn an AMQP body into a :data:`Command`, or a :class:`Rejection` saying why not. Never raises.

    Args:
        body: the raw message body, untrusted.
        max_bytes: the largest body accepted (``Settings``' command size limit); larger bodies are
            rejected as ``too_large`` without being parsed.

    The caller publishes a ``command.outcome`` with status ``rejected`` and the rejection's fields,
    then dead-letters the delivery with ``reason``/``detail`` in headers.
    """
    try:
        return _decode(body, max_bytes)
    except Exception as exc:
        # The contract is "never raises": a bug in here must dead-letter one command, not kill intake.
        return Rejection(reason="internal_error", detail=f"the command could not be decoded ({type(exc).__name__})")


def _decode(body: bytes, max_bytes: int) -> Command | Rejection:
    if len(body) > max_bytes:
        return Rejection(reason="too_large", detail=f"body is {len(body)} bytes; the limit is {max_bytes}")
    try:
        # pydantic-core's parser: strict UTF-8, strict JSON, bounded nesting depth (no RecursionError).
        data: Any = from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        return Rejection(reason="not_json", detail=f"body is not UTF-8 JSON: {exc}")
    if not isinstance(data, dict):
        return Rejection(reason="not_json", detail=f"body is {_json_kind(data)}, not a JSON object")

    ids = _Ids.read(data)
    command_type = data.get("type")
    if command_type is None:
        return ids.reject("unknown_type", f"'type' is missing; expected one of {', '.join(COMMAND_TYPES)}")
    model = _COMMAND_MODELS.get(command_type) if isinstance(command_type, str) else None
    if model is None:
        shown = _clip(repr(command_type))
        return ids.reject("unknown_type", f"type {shown} is not one of {', '.join(COMMAND_TYPES)}")

    version = data.get("schema_version")
    if isinstance(version, bool):  # pydantic's Literal[1] takes True (True == 1 in Python); JSON does not
        error = FieldError(loc="$.schema_version", message=f"Input should be {SCHEMA_VERSION}")
        return ids.reject("schema_invalid", f"{error.loc}: {error.message}", (error,))
    if isinstance(version, int | float) and version != SCHEMA_VERSION:
        return ids.reject(
            "unsupported_version", f"schema_version {version!r} is not supported; this bridge speaks {SCHEMA_VERSION}"
        )

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return _schema_rejection(ids, exc.errors(include_url=False, include_input=False))


@dataclass(frozen=True, slots=True)
class _Ids:
    """The identifying fields of a (possibly bad) command, where they are strings."""

    command_id: str | None
    session_id: str | None
    command_type: str | None
    correlation_id: str | None

    @classmethod
    def read(cls, data: dict[str, Any]) -> _Ids:
        def text(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) else None

        return cls(text("command_id"), text("session_id"), text("type"), text("correlation_id"))

    def reject(self, reason: str, detail: str, errors: tuple[FieldError, ...] = ()) -> Rejection:
        return Rejection(
            reason=reason,
            detail=detail,
            errors=errors,
            command_id=self.command_id,
            session_id=self.session_id,
            command_type=self.command_type,
            correlation_id=self.correlation_id,
        )


def _schema_rejection(ids: _Ids, details: list[ErrorDetails]) -> Rejection:
    errors = tuple(FieldError(loc=json_path(d["loc"]), message=_message(d)) for d in details[:MAX_FIELD_ERRORS])
    kinds = {d["type"] for d in details}
    # A specific reason only when a byte limit is the sole fault: then the fix is "send less", nothing else.
    reason = kinds.pop() if len(kinds) == 1 and kinds <= set(SIZE_ERROR_TYPES) else "schema_invalid"
    first = errors[0]
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return ids.reject(reason, f"{first.loc}: {first.message}{more}", errors)


def _message(detail: ErrorDetails) -> str:
    # pydantic prefixes messages of plain ValueErrors from validators; the integrator gains nothing from it.
    return detail["msg"].removeprefix("Value error, ")


def json_path(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as a JSON path: ``("attachments", 0, "url")`` → ``$.attachments[0].url``.

    Keys that are not identifiers (custom attribute names, say) use bracket notation: ``$['a key']``.
    """
    parts = ["$"]
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif _IDENTIFIER.match(item):
            parts.append(f".{item}")
        else:
            escaped = item.replace("\\", "\\\\").replace("'", "\\'")
            parts.append(f"['{escaped}']")
    return "".join(parts)


def _clip(text: str, limit: int = 64) -> str:
    # Details end up in outcome events and dead-letter headers: never echo an unbounded input.
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _json_kind(value: object) -> str:
    match value:
        case list():
            return "an array"
        case str():
            return "a string"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case None:
            return "null"
        case _:
            return type(value).__name__


def encode_event(event: Event) -> bytes:
    """Serialise an event to the compact JSON body published on the event exchange.

    ``None`` fields are kept (as ``null``) so every event of a type has the same keys.
    """
    return event.model_dump_json(exclude_none=False).encode("utf-8")


def decode_event(body: bytes) -> Event:
    """Parse an event body (for consumers, tests and ``genesys-bridge tail``).

    Raises:
        pydantic.ValidationError: a ``ValueError``; the body is not a valid v1 event.
    """
    return _EVENT_ADAPTER.validate_json(body)
