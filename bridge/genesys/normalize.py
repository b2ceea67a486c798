"""Genesys message content → the contract's typed parts (protocol reference §5.2, §5.3, §9).

One entry point, :func:`normalize_message`, used for live messages and history alike. It never raises
on odd content: an item it cannot read, or of a ``contentType`` the contract does not model yet,
becomes an :class:`~genesys_bridge_client.contract.content.UnknownPart` carrying the raw item, so nothing is lost.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import ValidationError

from bridge.genesys.frames import StructuredMessage, lenient_int
from genesys_bridge_client.contract.content import (
    AttachmentPart,
    ButtonAction,
    ButtonResponsePart,
    CardPart,
    CarouselPart,
    ContentPart,
    DatePickerPart,
    QuickReplyPart,
    Sender,
    TimeSlot,
    UnknownPart,
)

__all__ = ["NormalizedMessage", "normalize_content", "normalize_message", "parse_genesys_time", "sender_of"]


@dataclass(frozen=True, slots=True)
class NormalizedMessage:
    """A StructuredMessage in contract terms. ``sender`` is ``None`` for the guest's own (Inbound) messages."""

    sender: Sender | None
    text: str | None
    parts: list[ContentPart] = field(default_factory=list)
    direction: Literal["inbound", "outbound"] = "outbound"
    genesys_message_id: str | None = None
    genesys_time: datetime | None = None


def parse_genesys_time(value: str | None) -> datetime | None:
    """``channel.time`` (ISO-8601 UTC with ms, §10) → aware datetime; ``None`` when absent or unreadable.

    A time without offset is taken as UTC.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


_SENDER_KINDS: Final[Mapping[str, Literal["agent", "bot"]]] = {"human": "agent", "bot": "bot"}


def sender_of(msg: StructuredMessage) -> Sender:
    """Who sent ``msg``: ``originatingEntity`` Human → agent, Bot → bot, anything else → system (§5.2)."""
    kind = _SENDER_KINDS.get((msg.originating_entity or "").strip().lower(), "system")
    who = msg.channel.from_ if msg.channel is not None else None
    nickname = who.nickname if who is not None else None
    image = who.image if who is not None else None
    if who is not None and nickname is None and (who.first_name or who.last_name):
        # Presence SignIn and some agents carry first/last name only (§4.2, §5.3).
        nickname = " ".join(n for n in (who.first_name, who.last_name) if n)
    return Sender(kind=kind, nickname=_str(nickname), image=_str(image))


def normalize_message(msg: StructuredMessage) -> NormalizedMessage:
    """Normalise one StructuredMessage body (live frame or history entity). Never raises on content."""
    inbound = msg.direction == "Inbound"
    parts = normalize_content(msg.content)
    # Events are handled by the protocol (typing, disconnect); any left on a message are kept raw (§5.3).
    parts.extend(_unknown(f"Event:{_str(e.get('eventType')) or '?'}", e) for e in msg.events if isinstance(e, dict))
    return NormalizedMessage(
        sender=None if inbound else sender_of(msg),
        text=msg.text,
        parts=parts,
        direction="inbound" if inbound else "outbound",
        genesys_message_id=msg.id,
        genesys_time=parse_genesys_time(msg.channel.time if msg.channel is not None else None),
    )


def normalize_content(items: list[Any]) -> list[ContentPart]:
    """Content items → parts, one item at a time; an item that fails becomes an ``UnknownPart``."""
    parts: list[ContentPart] = []
    for item in items:
        if not isinstance(item, dict):
            parts.append(_unknown("", {"value": item}))
            continue
        content_type = _str(item.get("contentType")) or ""
        convert = _CONVERTERS.get(content_type)
        if convert is None:
            parts.append(_unknown(content_type, item))
            continue
        try:
            converted = convert(item)
        except (ValidationError, ValueError, TypeError, AttributeError, KeyError):
            converted = []
        parts.extend(converted if converted else [_unknown(content_type, item)])
    return parts


# --- helpers: read loosely typed JSON without trusting it -----------------------------------------------


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _url(value: object) -> str | None:
    """A media reference: a URL string, or an object with ``url`` (SWAG's ``video``/``image`` objects)."""
    if isinstance(value, dict):
        return _str(value.get("url"))
    return _str(value)


def _unknown(content_type: str, raw: dict[str, Any]) -> UnknownPart:
    return UnknownPart(content_type=content_type, raw=raw)


# --- per contentType (§5.2 table) ------------------------------------------------------------------


def _quick_reply(body: dict[str, Any]) -> QuickReplyPart | None:
    text = _str(body.get("text"))
    if text is None:
        return None
    payload = _str(body.get("payload"))
    return QuickReplyPart(
        text=text,
        payload=payload if payload is not None else text,  # a bare option answers with its text (§4.3b)
        image=_url(body.get("image")),
        action=_str(body.get("action")),
    )


def _from_quick_reply(item: dict[str, Any]) -> list[ContentPart]:
    part = _quick_reply(_dict(item.get("quickReply")))
    return [part] if part is not None else []


def _from_quick_reply_v2(item: dict[str, Any]) -> list[ContentPart]:
    body = _dict(item.get("quickReplyV2"))
    return [p for a in _list(body.get("actions")) if (p := _quick_reply(_dict(a))) is not None]


_ACTION_TYPES: Final[Mapping[str, Literal["link", "postback"]]] = {"link": "link", "postback": "postback"}


def _button(action: object) -> ButtonAction | None:
    body = _dict(action)
    kind = _ACTION_TYPES.get((_str(body.get("type")) or "").lower())
    if kind is None:
        return None
    return ButtonAction(
        type=kind, text=_str(body.get("text")) or "", url=_str(body.get("url")), payload=_str(body.get("payload"))
    )


def _card(body: dict[str, Any]) -> CardPart | None:
    if not body:
        return None
    actions = [b for a in _list(body.get("actions")) if (b := _button(a)) is not None]
    return CardPart(
        title=_str(body.get("title")) or "",
        description=_str(body.get("description")),
        image=_url(body.get("image")),
        video=_url(body.get("video")),
        default_action=_button(body.get("defaultAction")),
        actions=actions,
    )


def _from_card(item: dict[str, Any]) -> list[ContentPart]:
    card = _card(_dict(item.get("card")))
    return [card] if card is not None else []


def _from_carousel(item: dict[str, Any]) -> list[ContentPart]:
    cards = [c for raw in _list(_dict(item.get("carousel")).get("cards")) if (c := _card(_dict(raw))) is not None]
    return [CarouselPart(cards=cards)] if cards else []


def _from_attachment(item: dict[str, Any]) -> list[ContentPart]:
    body = _dict(item.get("attachment"))
    if not body:
        return []
    size = lenient_int(body.get("fileSize"))
    if size is None:
        size = lenient_int(body.get("contentSizeBytes"))
    return [
        AttachmentPart(
            id=_str(body.get("id")),
            url=_str(body.get("url")),
            file_name=_str(body.get("filename")) or _str(body.get("fileName")),
            mime_type=_str(body.get("mime")),
            size_bytes=size if size is not None and size >= 0 else None,
            media_type=_str(body.get("mediaType")),
            text=_str(body.get("text")),
        )
    ]


def _from_date_picker(item: dict[str, Any]) -> list[ContentPart]:
    body = _dict(item.get("datePicker"))
    if not body:
        return []
    slots = [
        TimeSlot(date_time=dt, duration_s=lenient_int(slot.get("duration")))
        for slot in map(_dict, _list(body.get("availableTimes")))
        if (dt := _str(slot.get("dateTime"))) is not None
    ]
    return [
        DatePickerPart(
            title=_str(body.get("title")),
            subtitle=_str(body.get("subtitle")),
            image_url=_str(body.get("imageUrl")),
            date_minimum=_str(body.get("dateMinimum")),
            date_maximum=_str(body.get("dateMaximum")),
            available_times=slots,
        )
    ]


def _from_button_response(item: dict[str, Any]) -> list[ContentPart]:
    body = _dict(item.get("buttonResponse"))
    kind, text, payload = _str(body.get("type")), _str(body.get("text")), _str(body.get("payload"))
    if kind is None or text is None or payload is None:
        return []
    return [
        ButtonResponsePart(
            type=kind, text=text, payload=payload, originating_message_id=_str(body.get("originatingMessageId"))
        )
    ]


#: ``contentType`` → converter. Each returns ``[]`` when the item is unreadable (→ ``UnknownPart``).
_CONVERTERS: Final[Mapping[str, Callable[[dict[str, Any]], list[ContentPart]]]] = {
    "QuickReply": _from_quick_reply,
    "QuickReplyV2": _from_quick_reply_v2,
    "Card": _from_card,
    "Carousel": _from_carousel,
    "Attachment": _from_attachment,
    "DatePicker": _from_date_picker,
    "ButtonResponse": _from_button_response,
}
