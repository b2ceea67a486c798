"""Commands: what backend services publish to the bridge. Discriminated by ``type``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from bridge.contract.common import (
    MAX_TOKEN_CHARS,
    SCHEMA_VERSION,
    CommandId,
    ContractModel,
    CustomAttributes,
    GuestText,
    SessionId,
)
from bridge.contract.content import AttachmentUpload, ButtonResponse

__all__ = ["COMMAND_TYPES", "Command", "MessageSend", "SessionEnd", "SessionStart", "TypingSend"]


class _CommandBase(ContractModel):
    schema_version: Literal[1] = Field(default=SCHEMA_VERSION, description="Contract version of this command.")
    command_id: CommandId
    session_id: SessionId
    correlation_id: str | None = Field(
        default=None, max_length=256, description="Copied onto every event this command causes."
    )


class SessionStart(_CommandBase):
    """Start (or adopt) a Genesys web-messaging session for ``session_id``."""

    type: Literal["session.start"] = "session.start"
    deployment_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9-]+$",
        description="Messenger deployment id (a UUID).",
        examples=["0f4f1d2a-5b1e-4e0e-9f3a-2f5d8c1a7b10"],
    )
    region: str = Field(
        min_length=3,
        max_length=64,
        pattern=r"^[a-z0-9.-]+$",
        description="Genesys region domain, e.g. mypurecloud.com or mypurecloud.ie.",
        examples=["mypurecloud.com"],
    )
    origin: str | None = Field(
        default=None, max_length=512, description="Origin header for the upgrade; an allowed domain of the deployment."
    )
    custom_attributes: CustomAttributes | None = None
    initial_message: GuestText | None = Field(default=None, description="Sent right after the session starts.")
    resume_token: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_TOKEN_CHARS,
        description="Adopt an existing Genesys session with this token instead of starting a new one. A secret.",
    )


class MessageSend(_CommandBase):
    """Send a guest message: text and/or one button response, optionally with attachments."""

    type: Literal["message.send"] = "message.send"
    text: GuestText | None = None
    button_response: ButtonResponse | None = None
    attachments: list[AttachmentUpload] = Field(default_factory=list, max_length=10)
    custom_attributes: CustomAttributes | None = None

    @model_validator(mode="after")
    def _has_content(self) -> MessageSend:
        if not self.text and self.button_response is None and not self.attachments:
            raise ValueError("give text, a button_response or attachments")
        return self


class TypingSend(_CommandBase):
    """Show the guest as typing. Coalesced to one per typing interval; dropped, not queued, when over budget."""

    type: Literal["typing.send"] = "typing.send"


class SessionEnd(_CommandBase):
    """End the conversation as a guest can, and forget the session."""

    type: Literal["session.end"] = "session.end"


Command = Annotated[SessionStart | MessageSend | TypingSend | SessionEnd, Field(discriminator="type")]
COMMAND_TYPES: tuple[str, ...] = ("session.start", "message.send", "typing.send", "session.end")
