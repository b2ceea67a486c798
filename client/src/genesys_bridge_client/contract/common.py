"""Shared building blocks of the message contract: base model, limits, constrained types."""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

__all__ = [
    "MAX_ATTRIBUTE_BYTES",
    "MAX_COMMAND_ID_CHARS",
    "MAX_SESSION_ID_CHARS",
    "MAX_TEXT_BYTES",
    "MAX_TOKEN_CHARS",
    "SCHEMA_VERSION",
    "SIZE_ERROR_TYPES",
    "CommandId",
    "ContractModel",
    "CustomAttributes",
    "EventModel",
    "GuestText",
    "SessionId",
    "attribute_bytes",
]

SCHEMA_VERSION: Final = 1
MAX_SESSION_ID_CHARS = 128
MAX_COMMAND_ID_CHARS = 128
#: Guest text limit, UTF-8 bytes (protocol reference §4.3, §8: 4011 above it).
MAX_TEXT_BYTES = 4096
#: Custom attributes, UTF-8 bytes of keys plus values (protocol reference §4.3, §8: 4013 above it).
MAX_ATTRIBUTE_BYTES = 2048
#: Session token length (protocol reference §1).
MAX_TOKEN_CHARS = 2048
#: pydantic error types raised by the byte-limit validators below. Each equals the OutcomeReason the
#: codec reports when a command breaks only that limit, so integrators get a specific reason code.
SIZE_ERROR_TYPES: Final = ("message_too_long", "attributes_too_large")


class ContractModel(BaseModel):
    """Base of every contract model: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class EventModel(ContractModel):
    """Base of everything the bridge publishes: unknown fields are ignored when decoding, so a consumer
    built against v1 keeps working when a later v1 release adds a field (additive changes only)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


def _text_within_limit(value: str) -> str:
    size = len(value.encode("utf-8"))
    if size > MAX_TEXT_BYTES:
        raise PydanticCustomError(
            "message_too_long",
            "text is {size} UTF-8 bytes; the limit is {limit}",
            {"size": size, "limit": MAX_TEXT_BYTES},
        )
    return value


def attribute_bytes(attributes: dict[str, str]) -> int:
    """UTF-8 size of all keys plus values, as Genesys counts it (protocol reference §4.3)."""
    return sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in attributes.items())


def _attributes_within_limit(value: dict[str, str]) -> dict[str, str]:
    size = attribute_bytes(value)
    if size > MAX_ATTRIBUTE_BYTES:
        raise PydanticCustomError(
            "attributes_too_large",
            "custom attributes are {size} UTF-8 bytes; the limit is {limit}",
            {"size": size, "limit": MAX_ATTRIBUTE_BYTES},
        )
    return value


SessionId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_SESSION_ID_CHARS,
        description="The integrator's key for the conversation. Opaque to the bridge.",
        examples=["order-4711"],
    ),
]
CommandId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_COMMAND_ID_CHARS,
        description="Unique per command; the idempotency key. A repeat gets the original outcome again.",
        examples=["7d1f5c7e-4b1a-4c5e-9d55-1f0e3c2b9a10"],
    ),
]
GuestText = Annotated[
    str,
    AfterValidator(_text_within_limit),
    Field(description=f"Guest text, at most {MAX_TEXT_BYTES} UTF-8 bytes."),
]
CustomAttributes = Annotated[
    dict[str, str],
    AfterValidator(_attributes_within_limit),
    Field(description=f"String to string map, at most {MAX_ATTRIBUTE_BYTES} UTF-8 bytes of keys plus values."),
]
