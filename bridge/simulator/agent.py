"""The scripted agent/bot: what it answers to a guest message (pure; the engine sends it).

Keywords in the guest's text pick the reply (§12): ``quick`` → a quick-reply set, ``card`` → a card,
``carousel`` → a carousel, ``attachment`` → a file, ``date`` → a date picker, ``bye`` → a goodbye then a
Presence Disconnect (if the deployment sends one, §5.3). A button response is acknowledged; anything else
is echoed back as "You said: …". Content shapes follow §5.2.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "KEYWORDS",
    "PNG_1X1",
    "Disconnect",
    "Say",
    "Step",
    "attachment_content",
    "card",
    "reply_for",
    "text_body",
]

KEYWORDS = ("quick", "carousel", "card", "attachment", "date", "bye")
_WORDS = re.compile(r"[a-z]+")

#: A valid 1×1 transparent PNG: the file the agent "sends" for the ``attachment`` keyword.
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@dataclass(frozen=True, slots=True)
class Say:
    """An Outbound StructuredMessage body without id/channel (the engine stamps those)."""

    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Say ``last_message``, then end the conversation with a Presence Disconnect (per the deployment's
    disconnect settings; the Disconnect may overtake the message, see ``disconnect_overtakes_last_message``).
    """

    last_message: dict[str, Any]


Step = Say | Disconnect


def text_body(text: str, content: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A Text message (or Structured, when it carries rich content)."""
    body: dict[str, Any] = {"type": "Structured" if content else "Text", "text": text}
    if content:
        body["content"] = content
    return body


def card(title: str, description: str, payload: str) -> dict[str, Any]:
    """One §5.2 card with a postback and a link action."""
    return {
        "title": title,
        "description": description,
        "image": f"https://example.invalid/{payload}.png",
        "defaultAction": {"type": "Link", "url": f"https://example.invalid/{payload}"},
        "actions": [
            {"type": "Postback", "text": f"Choose {title}", "payload": payload},
            {"type": "Link", "text": "Details", "url": f"https://example.invalid/{payload}"},
        ],
    }


def attachment_content(attachment_id: str, url: str, size: int) -> dict[str, Any]:
    """An Outbound ``Attachment`` item pointing at a file this server serves."""
    return {
        "contentType": "Attachment",
        "attachment": {
            "id": attachment_id,
            "url": url,
            "filename": "simulator.png",
            "fileSize": size,
            "mediaType": "Image",
            "mime": "image/png",
        },
    }


def _quick_replies() -> Say:
    options = [("Yes", "yes"), ("No", "no"), ("Talk to a human", "human")]
    content = [
        {"contentType": "QuickReply", "quickReply": {"text": text, "payload": payload, "action": "Message"}}
        for text, payload in options
    ]
    return Say(text_body("Pick one:", content))


def _date_picker() -> Say:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    times = [
        {"dateTime": (start + timedelta(hours=h)).isoformat().replace("+00:00", "Z"), "duration": 1800}
        for h in (0, 1, 2)
    ]
    picker = {
        "title": "Pick a time",
        "subtitle": "30 minute slots",
        "dateMinimum": times[0]["dateTime"],
        "dateMaximum": times[-1]["dateTime"],
        "availableTimes": times,
    }
    return Say(text_body("When suits you?", [{"contentType": "DatePicker", "datePicker": picker}]))


def reply_for(text: str, button: dict[str, Any] | None, attachment: Callable[[], dict[str, Any]]) -> list[Step]:
    """The script's answer to one guest message.

    Args:
        text: the guest's text ("" when the message had none).
        button: the ``buttonResponse`` of the first ButtonResponse item, if any.
        attachment: makes the content item to send for the ``attachment`` keyword (called only then).
    """
    if button is not None:
        return [Say(text_body(f"You chose: {button.get('text', '')} ({button.get('payload', '')})"))]
    words = set(_WORDS.findall(text.lower()))
    keyword = next((k for k in KEYWORDS if k in words), None)
    match keyword:
        case "quick":
            return [_quick_replies()]
        case "card":
            return [
                Say(text_body("Here is a card:", [{"contentType": "Card", "card": card("Plan A", "10 GB", "plan_a")}]))
            ]
        case "carousel":
            cards = [card("Plan A", "10 GB", "plan_a"), card("Plan B", "50 GB", "plan_b")]
            return [Say(text_body("Here are our plans:", [{"contentType": "Carousel", "carousel": {"cards": cards}}]))]
        case "attachment":
            return [Say({"type": "Text", "text": "Here is your file.", "content": [attachment()]})]
        case "date":
            return [_date_picker()]
        case "bye":
            return [Disconnect(text_body("Goodbye!"))]
        case _:
            return [Say(text_body(f"You said: {text}" if text else "I got your message."))]
