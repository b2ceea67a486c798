"""Rich content: what a guest can send (button responses, attachments) and the typed parts that
agent and bot messages are normalised into (protocol reference §5.2)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from genesys_bridge_client.contract.common import ContractModel, EventModel

__all__ = [
    "AttachmentPart",
    "AttachmentUpload",
    "ButtonAction",
    "ButtonResponse",
    "ButtonResponsePart",
    "CardPart",
    "CarouselPart",
    "ContentPart",
    "DatePickerPart",
    "QuickReplyPart",
    "Sender",
    "TimeSlot",
    "UnknownPart",
]


# --- what the guest sends ---------------------------------------------------------------------------


class ButtonResponse(ContractModel):
    """The guest's choice of a quick reply, a card button or a date picker slot (protocol reference §4.3 b–d)."""

    type: Literal["quick_reply", "button", "date_picker"] = Field(
        description="quick_reply: a QuickReply option; button: a card/carousel Postback; date_picker: a time slot."
    )
    text: str = Field(max_length=4096, description="The option's text as shown to the guest.")
    payload: str = Field(max_length=4096, description="The option's payload (an ISO date-time for date_picker).")
    originating_message_id: str | None = Field(
        default=None, description="Genesys id of the message that offered the choice (required by date pickers)."
    )


class AttachmentUpload(ContractModel):
    """A file the guest sends. Give exactly one of ``url`` (fetched by the bridge) or ``content_base64``."""

    file_name: str = Field(min_length=1, max_length=255, description="File name with extension (Genesys needs one).")
    mime_type: str = Field(min_length=3, max_length=255, description="MIME type, checked against the deployment.")
    url: str | None = Field(default=None, description="http(s) URL the bridge downloads the file from.")
    content_base64: str | None = Field(default=None, description="The file's bytes, base64-encoded.")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> AttachmentUpload:
        if (self.url is None) == (self.content_base64 is None):
            raise ValueError("give exactly one of url or content_base64")
        return self


# --- what agents and bots send ----------------------------------------------------------------------


class Sender(EventModel):
    """Who sent a message, as far as Genesys tells the guest."""

    kind: Literal["agent", "bot", "system"] = Field(
        description="agent: a human (originatingEntity Human); bot: a bot flow; system: anything else."
    )
    nickname: str | None = Field(default=None, description="Display name, when Genesys sends one.")
    image: str | None = Field(default=None, description="Avatar URL, when Genesys sends one.")


class QuickReplyPart(EventModel):
    """One quick-reply option. Answer it with a ``button_response`` of type ``quick_reply``."""

    kind: Literal["quick_reply"] = "quick_reply"
    text: str
    payload: str
    image: str | None = None
    action: str | None = None


class ButtonAction(EventModel):
    """A card button: ``link`` opens ``url``; ``postback`` is answered with a ``button`` response."""

    type: Literal["link", "postback"]
    text: str
    url: str | None = None
    payload: str | None = None


class CardPart(EventModel):
    """A card with title, optional media and buttons."""

    kind: Literal["card"] = "card"
    title: str
    description: str | None = None
    image: str | None = None
    video: str | None = None
    default_action: ButtonAction | None = None
    actions: list[ButtonAction] = Field(default_factory=list)


class CarouselPart(EventModel):
    """A horizontal list of cards."""

    kind: Literal["carousel"] = "carousel"
    cards: list[CardPart]


class AttachmentPart(EventModel):
    """A file sent by the agent or bot. Genesys download URLs expire (error 4008)."""

    kind: Literal["attachment"] = "attachment"
    id: str | None = None
    url: str | None = None
    file_name: str | None = None
    mime_type: str | None = None
    size_bytes: int | None = None
    media_type: str | None = Field(default=None, description="Genesys mediaType: Image, Video, Audio, File, Link.")
    text: str | None = None


class TimeSlot(EventModel):
    """A bookable slot of a date picker."""

    date_time: str = Field(description="ISO-8601 date-time; send it back as the button_response payload.")
    duration_s: int | None = None


class DatePickerPart(EventModel):
    """A date/time picker. Answer with a ``button_response`` of type ``date_picker``."""

    kind: Literal["date_picker"] = "date_picker"
    title: str | None = None
    subtitle: str | None = None
    image_url: str | None = None
    date_minimum: str | None = None
    date_maximum: str | None = None
    available_times: list[TimeSlot] = Field(default_factory=list)


class ButtonResponsePart(EventModel):
    """A guest's choice, as seen in echoes and history."""

    kind: Literal["button_response"] = "button_response"
    type: str
    text: str
    payload: str
    originating_message_id: str | None = None


class UnknownPart(EventModel):
    """A content item the contract does not model yet. ``raw`` is the Genesys item, untouched."""

    kind: Literal["unknown"] = "unknown"
    content_type: str
    raw: dict[str, Any]


ContentPart = Annotated[
    QuickReplyPart | CardPart | CarouselPart | AttachmentPart | DatePickerPart | ButtonResponsePart | UnknownPart,
    Field(discriminator="kind"),
]
