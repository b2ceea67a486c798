"""The guest's ``onMessage`` shapes (protocol reference §4.3) and the size limits checked before sending."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from bridge.genesys.actions import (
    AttachmentRef,
    AttachmentRefContent,
    ButtonResponseBody,
    ButtonResponseContent,
    OutgoingChannel,
    OutgoingChannelMetadata,
    OutgoingMessage,
)
from genesys_bridge_client.contract.content import ButtonResponse

__all__ = [
    "DEFAULT_MAX_CUSTOM_DATA_BYTES",
    "MAX_TEXT_BYTES",
    "attributes_channel",
    "build_outgoing_message",
    "custom_attributes_size",
]

#: Guest text limit in UTF-8 bytes (§4.3, §8: error 4011 "Message length N is larger than 4096").
MAX_TEXT_BYTES: Final = 4096
#: Custom attribute budget when no SessionResponse said otherwise (§4.3, §8: error 4013).
DEFAULT_MAX_CUSTOM_DATA_BYTES: Final = 2048

#: Contract ``button_response.type`` → (Genesys ``buttonResponse.type``, ``message.type``), §4.3 b–d.
_BUTTON_TYPES: Final[Mapping[str, tuple[str, str]]] = {
    "quick_reply": ("QuickReply", "Text"),
    "button": ("Button", "Structured"),
    "date_picker": ("DatePicker", "Text"),
}


def attributes_channel(custom_attributes: Mapping[str, str] | None) -> OutgoingChannel | None:
    """``message.channel`` carrying custom attributes (§4.3a, KMP placement); ``None`` when there are none."""
    if not custom_attributes:
        return None
    return OutgoingChannel(metadata=OutgoingChannelMetadata(custom_attributes=dict(custom_attributes)))


def custom_attributes_size(attributes: Mapping[str, str]) -> int:
    """UTF-8 bytes of all keys plus values: how Genesys measures ``maxCustomDataBytes`` (§4.3)."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in attributes.items())


def build_outgoing_message(
    *,
    text: str | None = None,
    button_response: ButtonResponse | None = None,
    attachment_ids: Sequence[str] = (),
    custom_attributes: Mapping[str, str] | None = None,
) -> OutgoingMessage:
    """Build the ``message`` of an ``onMessage`` in the shapes of §4.3 (no size checks here).

    - text: ``{"type":"Text","text":..}``;
    - quick_reply: ``type Text``, ``text ""``, content ``ButtonResponse{type:"QuickReply"}`` (§4.3b);
    - button: ``type Structured``, ``text`` = the button text, ``ButtonResponse{type:"Button"}`` (§4.3c);
    - date_picker: ``type Text``, ``text ""``, ``ButtonResponse{type:"DatePicker", payload: ISO,
      originatingMessageId}`` (§4.3d);
    - attachments: one ``Attachment{id}`` item each, ``text`` as the caption (§4.3e);
    - custom attributes in ``message.channel.metadata.customAttributes`` (§4.3a, KMP placement).
    """
    content: list[ButtonResponseContent | AttachmentRefContent] = []
    message_type = "Text"
    if button_response is not None:
        genesys_type, message_type = _BUTTON_TYPES[button_response.type]
        content.append(
            ButtonResponseContent(
                button_response=ButtonResponseBody(
                    type=genesys_type,
                    text=button_response.text,
                    payload=button_response.payload,
                    originating_message_id=button_response.originating_message_id,
                )
            )
        )
        if text is None:
            text = button_response.text if button_response.type == "button" else ""
    content.extend(AttachmentRefContent(attachment=AttachmentRef(id=aid)) for aid in attachment_ids)
    return OutgoingMessage(
        type=message_type,
        text="" if text is None else text,
        content=content or None,
        channel=attributes_channel(custom_attributes),
    )
