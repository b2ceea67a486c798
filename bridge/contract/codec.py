"""Decode raw AMQP bodies into commands; encode events. ``decode`` never raises."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.contract.commands import Command
from bridge.contract.events import FieldError

__all__ = ["Rejection", "decode_command"]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a body is not a valid command, with whatever identifying fields could be read from it."""

    reason: str  # an OutcomeReason: not_json, unknown_type, schema_invalid, too_large, unsupported_version
    detail: str
    errors: tuple[FieldError, ...] = ()
    command_id: str | None = None
    session_id: str | None = None
    command_type: str | None = None
    correlation_id: str | None = None


def decode_command(body: bytes, *, max_bytes: int) -> Command | Rejection:
    """Turn an AMQP body into a :data:`Command`, or a :class:`Rejection` saying why not. Never raises."""
    raise NotImplementedError
