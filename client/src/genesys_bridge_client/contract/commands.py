"""Commands: what backend services publish to the bridge. Discriminated by ``type``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from genesys_bridge_client.contract.common import (
    MAX_TOKEN_CHARS,
    SCHEMA_VERSION,
    CommandId,
    ContractModel,
    CustomAttributes,
    GuestText,
    SessionId,
)
from genesys_bridge_client.contract.content import AttachmentUpload, ButtonResponse

__all__ = [
    "COMMAND_TYPES",
    "AttachmentRefresh",
    "AuthCodeGrant",
    "AuthImplicitGrant",
    "Command",
    "JourneyContext",
    "MessageSend",
    "SessionAuth",
    "SessionEnd",
    "SessionLogout",
    "SessionStart",
    "TypingSend",
]


class _CommandBase(ContractModel):
    schema_version: Literal[1] = Field(default=SCHEMA_VERSION, description="Contract version of this command.")
    command_id: CommandId
    session_id: SessionId
    correlation_id: str | None = Field(
        default=None, max_length=256, description="Copied onto every event this command causes."
    )
    reply_notices: bool = Field(
        default=False,
        description=(
            "Also send non-final `will_retry` notices to the `reply_to` queue. By default only the settled "
            "outcome goes there (a request/reply client takes the first reply as the answer); notices always go "
            "to the event exchange."
        ),
    )


class AuthCodeGrant(ContractModel):
    """An OAuth authorization code from the deployment's identity provider (authorization-code flow, PKCE
    optional). The bridge exchanges it for a Genesys JWT; the code is a secret and is never stored or logged."""

    code: str = Field(min_length=1, max_length=4096, repr=False, description="The authorization code.")
    redirect_uri: str = Field(min_length=1, max_length=2048, description="The redirect URI the code was issued for.")
    code_verifier: str | None = Field(
        default=None, min_length=43, max_length=128, repr=False, description="The PKCE code verifier, if PKCE was used."
    )


class AuthImplicitGrant(ContractModel):
    """An ID token from the identity provider's implicit flow, with the nonce it was requested with."""

    id_token: str = Field(min_length=1, max_length=8192, repr=False, description="The IdP's ID token (a secret).")
    nonce: str = Field(min_length=1, max_length=512, description="The nonce of the authorization request.")


SessionAuth = AuthCodeGrant | AuthImplicitGrant


class JourneyContext(ContractModel):
    """Links the session to Predictive Engagement (``configureSession.journeyContext``)."""

    customer_id: str = Field(min_length=1, max_length=256, description="The customer's id in Predictive Engagement.")
    customer_id_type: str = Field(default="cookie", min_length=1, max_length=64, description="Its kind, e.g. cookie.")
    customer_session_id: str = Field(default="", max_length=256, description="The customer's web session id.")
    customer_session_type: str = Field(default="web", min_length=1, max_length=64)
    triggering_action_id: str | None = Field(default=None, max_length=256, description="The action that offered chat.")
    action_map_id: str | None = Field(default=None, max_length=256)
    action_map_version: int | None = Field(default=None, ge=0)


class SessionStart(_CommandBase):
    """Start (or adopt) a Genesys web-messaging session for ``session_id``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "session.start",
                    "command_id": "5b0c7f0e-6a47-4a59-9a3e-0c8f1d2e3a41",
                    "session_id": "order-4711",
                    "correlation_id": "req-981",
                    "deployment_id": "0f4f1d2a-5b1e-4e0e-9f3a-2f5d8c1a7b10",
                    "region": "mypurecloud.ie",
                    "origin": "https://shop.example.com",
                    "custom_attributes": {"customer_id": "C-1029", "tier": "gold"},
                    "initial_message": "Hello, I have a question about order 4711.",
                }
            ]
        }
    )

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
    route: str | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description=(
            "The owning service's routing token. Every event of this session is then routed as "
            "`<type>.<deployment_id>.<route>`, so a service binds only its own conversations (`#.<route>`)."
        ),
        examples=["billing"],
    )
    custom_attributes: CustomAttributes | None = None
    initial_message: GuestText | None = Field(default=None, description="Sent right after the session starts.")
    auth: SessionAuth | None = Field(
        default=None,
        description=(
            "Start an authenticated session: the customer is known to Genesys and the agent. An authorization "
            "code (`code`, `redirect_uri`, optional `code_verifier`) or an implicit-flow `id_token` with its "
            "`nonce`. The bridge exchanges it for a Genesys JWT, keeps the session's tokens encrypted, and "
            "refreshes them. Needs a deployment with authentication on."
        ),
    )
    autostart: bool = Field(
        default=False,
        description=(
            "Start the conversation at once (Presence Join), so a bot can greet first. Only where the "
            "deployment allows autostart; otherwise the outcome's detail says it was skipped and why."
        ),
    )
    journey_context: JourneyContext | None = Field(
        default=None, description="Predictive Engagement context, passed to Genesys with the configure."
    )
    resume_token: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_TOKEN_CHARS,
        description="Adopt an existing Genesys session with this token instead of starting a new one. A secret.",
    )


class MessageSend(_CommandBase):
    """Send a guest message: text and/or one button response, optionally with attachments."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "message.send",
                    "command_id": "9e2d6c1b-0f35-4c8e-8a7d-3b1c2d4e5f60",
                    "session_id": "order-4711",
                    "text": "The parcel arrived damaged.",
                },
                {
                    "type": "message.send",
                    "command_id": "a1f3e5d7-2b4c-4d6e-8f01-23456789abcd",
                    "session_id": "order-4711",
                    "button_response": {
                        "type": "quick_reply",
                        "text": "Yes, refund me",
                        "payload": "refund_yes",
                        "originating_message_id": "a8d6c6b2e9f04c6f8d1e2b3a4c5d6e7f",
                    },
                },
                {
                    "type": "message.send",
                    "command_id": "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f",
                    "session_id": "order-4711",
                    "text": "Here is a photo.",
                    "attachments": [
                        {
                            "file_name": "parcel.jpg",
                            "mime_type": "image/jpeg",
                            "url": "https://files.example.com/uploads/parcel.jpg",
                        }
                    ],
                },
            ]
        }
    )

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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "typing.send",
                    "command_id": "0d9c8b7a-6f5e-4d3c-8b2a-190817263544",
                    "session_id": "order-4711",
                }
            ]
        }
    )

    type: Literal["typing.send"] = "typing.send"


class SessionEnd(_CommandBase):
    """End the conversation as a guest can, and forget the session."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "session.end",
                    "command_id": "f0e1d2c3-b4a5-4968-8776-655443322110",
                    "session_id": "order-4711",
                }
            ]
        }
    )

    type: Literal["session.end"] = "session.end"


class AttachmentRefresh(_CommandBase):
    """Ask Genesys for a fresh download URL of an agent's attachment (its URLs expire, error 4008).

    The outcome carries the attachment with the new URL in ``attachment``.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "attachment.refresh",
                    "command_id": "6e5d4c3b-2a19-4f08-97e6-d5c4b3a29180",
                    "session_id": "order-4711",
                    "attachment_id": "3c8e6f7a-1b2d-4e5f-8a9b-0c1d2e3f4a5b",
                }
            ]
        }
    )

    type: Literal["attachment.refresh"] = "attachment.refresh"
    attachment_id: str = Field(
        min_length=1, max_length=128, description="The attachment's id, as in a message.received attachment part."
    )


class SessionLogout(_CommandBase):
    """Log an authenticated session out: its tokens are revoked, every device of the customer gets logged
    out, and the session ends with reason ``logged_out``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "session.logout",
                    "command_id": "7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2910",
                    "session_id": "order-4711",
                }
            ]
        }
    )

    type: Literal["session.logout"] = "session.logout"


Command = Annotated[
    SessionStart | MessageSend | TypingSend | SessionEnd | AttachmentRefresh | SessionLogout,
    Field(discriminator="type"),
]
COMMAND_TYPES: tuple[str, ...] = (
    "session.start",
    "message.send",
    "typing.send",
    "session.end",
    "attachment.refresh",
    "session.logout",
)
