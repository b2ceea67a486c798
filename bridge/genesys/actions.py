"""Typed Guest API client actions (protocol reference §3.1, §4). Pure: no I/O.

Frozen pydantic models, one per ``action``, plus the ``onMessage`` message parts. :meth:`ClientAction.to_wire`
gives the exact wire JSON (camelCase keys, ``None`` omitted).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from genesys_bridge_client.contract.commands import JourneyContext

__all__ = [
    "AttachmentRef",
    "AttachmentRefContent",
    "ButtonResponseBody",
    "ButtonResponseContent",
    "ClientAction",
    "CloseSession",
    "ConfigureAuthenticatedSession",
    "ConfigureSession",
    "DeleteAttachment",
    "Echo",
    "GetAttachment",
    "GetConfiguration",
    "GetJwt",
    "OnAttachment",
    "OnMessage",
    "OutgoingChannel",
    "OutgoingChannelMetadata",
    "OutgoingMessage",
    "PresenceBody",
    "PresenceEvent",
    "TypingBody",
    "TypingEvent",
    "journey_context_of",
]


class _Wire(BaseModel):
    """Client-side model: camelCase aliases; serialised with :meth:`to_wire`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_wire(self) -> str:
        """The exact JSON text to send: aliases, ``None`` fields omitted (§3.1)."""
        return self.model_dump_json(by_alias=True, exclude_none=True)

    def to_dict(self) -> dict[str, Any]:
        """The wire object as a dict (for tests and the simulator)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# =====================================================================================================
# Client → server (§4)
# =====================================================================================================


class TypingBody(_Wire):
    """``typing`` of an ``EventTyping`` (§4.3f): only ``On`` exists; ``duration`` in ms is optional."""

    type: Literal["On"] = "On"
    duration: int | None = None


class TypingEvent(_Wire):
    """A guest typing indicator event (§4.3f)."""

    event_type: Literal["Typing"] = Field(default="Typing", alias="eventType")
    typing: TypingBody = Field(default_factory=TypingBody)


class PresenceBody(_Wire):
    """``presence`` of an ``EventPresence`` (§4.3g)."""

    type: Literal["Join", "Clear"]


class PresenceEvent(_Wire):
    """A guest Presence event: ``Join`` (autostart) or ``Clear`` (wipe the conversation), §4.3g."""

    event_type: Literal["Presence"] = Field(default="Presence", alias="eventType")
    presence: PresenceBody


class ButtonResponseBody(_Wire):
    """``buttonResponse`` (§4.3b–d). ``type`` is the Genesys spelling: QuickReply, Button, DatePicker."""

    type: Literal["QuickReply", "Button", "DatePicker", "ListPicker", "Form"]
    text: str
    payload: str
    originating_message_id: str | None = Field(default=None, alias="originatingMessageId")


class ButtonResponseContent(_Wire):
    """A ``ButtonResponse`` content item (§4.3b–d)."""

    content_type: Literal["ButtonResponse"] = Field(default="ButtonResponse", alias="contentType")
    button_response: ButtonResponseBody = Field(alias="buttonResponse")


class AttachmentRef(_Wire):
    """Reference to an uploaded attachment by id (§4.3e)."""

    id: str


class AttachmentRefContent(_Wire):
    """An ``Attachment`` content item referencing an uploaded file (§4.3e)."""

    content_type: Literal["Attachment"] = Field(default="Attachment", alias="contentType")
    attachment: AttachmentRef


class OutgoingChannelMetadata(_Wire):
    """``message.channel.metadata``: custom attributes, string→string (§4.3a)."""

    custom_attributes: dict[str, str] = Field(alias="customAttributes")


class OutgoingChannel(_Wire):
    """``message.channel`` of an ``onMessage``: where custom attributes ride (§4.3a, KMP placement)."""

    metadata: OutgoingChannelMetadata | None = None
    message_id: str | None = Field(default=None, alias="messageId")


class OutgoingMessage(_Wire):
    """``IncomingNormalizedMessage`` of an ``onMessage`` (§4.3). Lists default to ``None`` so they are omitted."""

    type: Literal["Text", "Structured", "Event"]
    text: str | None = None
    content: list[ButtonResponseContent | AttachmentRefContent] | None = None
    events: list[TypingEvent | PresenceEvent] | None = None
    metadata: dict[str, str] | None = None
    channel: OutgoingChannel | None = None


class ClientAction(_Wire):
    """Envelope shared by every request (§3.1): ``action``, ``token``, optional ``tracingId``."""

    action: str
    token: str = Field(repr=False)  # the guest's secret (§11.14): never in reprs or logs
    tracing_id: str | None = Field(default=None, alias="tracingId")


class ConfigureSession(ClientAction):
    """``configureSession`` (§4.1). ``startNew`` true opens a fresh session for the token."""

    action: Literal["configureSession"] = "configureSession"
    deployment_id: str = Field(alias="deploymentId")
    start_new: bool | None = Field(default=None, alias="startNew")
    journey_context: dict[str, Any] | None = Field(default=None, alias="journeyContext")
    resume_token: str | None = Field(default=None, alias="resumeToken")


def journey_context_of(context: JourneyContext) -> dict[str, Any]:
    """``journeyContext`` (§4.1) for the contract's :class:`JourneyContext`: the customer, their web
    session, and the action that offered the chat (Predictive Engagement)."""
    body: dict[str, Any] = {
        "customer": {"id": context.customer_id, "idType": context.customer_id_type},
        "customerSession": {"id": context.customer_session_id, "type": context.customer_session_type},
    }
    if context.triggering_action_id is not None:
        action: dict[str, Any] = {"id": context.triggering_action_id}
        if context.action_map_id is not None:
            action["actionMap"] = {"id": context.action_map_id, "version": context.action_map_version}
        body["triggeringAction"] = action
    return body


class ConfigureAuthenticatedSession(ConfigureSession):
    """``configureAuthenticatedSession`` (§4.2): ``data.code`` is the Genesys-issued JWT."""

    action: Literal["configureAuthenticatedSession"] = "configureAuthenticatedSession"  # type: ignore[assignment]
    data: dict[str, str] = Field(repr=False)


class OnMessage(ClientAction):
    """``onMessage`` (§4.3): text, button responses, attachment references, typing and presence."""

    action: Literal["onMessage"] = "onMessage"
    message: OutgoingMessage


class Echo(ClientAction):
    """``echo`` health check (§4.4): ``message`` is ``{"type":"Text","text":"ping"}``."""

    action: Literal["echo"] = "echo"
    message: OutgoingMessage = Field(default_factory=lambda: OutgoingMessage(type="Text", text="ping"))


class GetJwt(ClientAction):
    """``getJwt`` (§4.5): answered by ``JwtResponse``."""

    action: Literal["getJwt"] = "getJwt"


class OnAttachment(ClientAction):
    """``onAttachment`` (§4.6 step 1). ``fileMd5`` is optional in practice; ``errorsAsJson`` as KMP sends it."""

    action: Literal["onAttachment"] = "onAttachment"
    attachment_id: str | None = Field(default=None, alias="attachmentId")
    file_name: str = Field(alias="fileName")
    file_type: str = Field(alias="fileType")
    file_size: int = Field(alias="fileSize")
    file_md5: str | None = Field(default=None, alias="fileMd5")
    errors_as_json: bool | None = Field(default=True, alias="errorsAsJson")


class GetAttachment(ClientAction):
    """``getAttachment`` (§4.6): a fresh download URL for an expired one (4008)."""

    action: Literal["getAttachment"] = "getAttachment"
    attachment_id: str = Field(alias="attachmentId")


class DeleteAttachment(ClientAction):
    """``deleteAttachment`` (§4.6): only for uploaded, not-yet-sent attachments."""

    action: Literal["deleteAttachment"] = "deleteAttachment"
    attachment_id: str = Field(alias="attachmentId")


class CloseSession(ClientAction):
    """``closeSession`` (§4.7). The schema requires ``closeAllConnections``."""

    action: Literal["closeSession"] = "closeSession"
    close_all_connections: bool = Field(default=True, alias="closeAllConnections")


class GetConfiguration(ClientAction):
    """``getConfiguration`` (§4.8)."""

    action: Literal["getConfiguration"] = "getConfiguration"
    deployment_id: str = Field(alias="deploymentId")
