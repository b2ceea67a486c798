"""Typed Guest API frames (protocol reference §3–§6). Lenient: unknown fields are kept, never fatal."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ChannelInfo", "Participant", "StructuredMessage"]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class Participant(_Lenient):
    nickname: str | None = None
    first_name: str | None = Field(default=None, alias="firstName")
    last_name: str | None = Field(default=None, alias="lastName")
    image: str | None = None


class ChannelInfo(_Lenient):
    time: str | None = None
    message_id: str | None = Field(default=None, alias="messageId")
    type: str | None = None
    from_: Participant | None = Field(default=None, alias="from")
    to: Participant | None = None


class StructuredMessage(_Lenient):
    """Body of a ``StructuredMessage`` frame (§5.2), live or from history (§9)."""

    id: str | None = None
    type: str = "Text"
    text: str | None = None
    direction: str | None = None
    originating_entity: str | None = Field(default=None, alias="originatingEntity")
    channel: ChannelInfo | None = None
    content: list[dict[str, Any]] = Field(default_factory=list)
    events: list[dict[str, Any]] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
