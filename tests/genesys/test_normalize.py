"""Content normalisation with items written from the reference (§5.2, §5.3, §9)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.genesys.frames import StructuredMessage
from bridge.genesys.normalize import NormalizedMessage, normalize_message, parse_genesys_time
from genesys_bridge_client.contract.content import (
    AttachmentPart,
    ButtonAction,
    ButtonResponsePart,
    CardPart,
    CarouselPart,
    DatePickerPart,
    QuickReplyPart,
    Sender,
    TimeSlot,
    UnknownPart,
)

CARD_A = {
    "contentType": "Card",
    "card": {
        "title": "Plan A",
        "description": "10 GB",
        "image": "https://example.invalid/a.png",
        "actions": [
            {"type": "Postback", "text": "Choose plan A", "payload": "plan_a"},
            {"type": "Link", "text": "Details", "url": "https://example.invalid/a"},
        ],
    },
}
CARD_A_PART = CardPart(
    title="Plan A",
    description="10 GB",
    image="https://example.invalid/a.png",
    actions=[
        ButtonAction(type="postback", text="Choose plan A", payload="plan_a"),
        ButtonAction(type="link", text="Details", url="https://example.invalid/a"),
    ],
)


def outbound(content: list[Any], **extra: Any) -> StructuredMessage:
    body = {
        "type": "Structured",
        "direction": "Outbound",
        "id": "7a0c3e9d5b2f4a1c8e6d9b0a1f2e3d4c",
        "text": "Pick one",
        "originatingEntity": "Bot",
        "channel": {"time": "2025-05-01T09:15:02.481Z", "from": {"nickname": "Order Bot", "image": "https://x/b.png"}},
        "content": content,
        **extra,
    }
    return StructuredMessage.model_validate(body)


def test_bot_text_message() -> None:
    assert normalize_message(outbound([])) == NormalizedMessage(
        sender=Sender(kind="bot", nickname="Order Bot", image="https://x/b.png"),
        text="Pick one",
        parts=[],
        direction="outbound",
        genesys_message_id="7a0c3e9d5b2f4a1c8e6d9b0a1f2e3d4c",
        genesys_time=datetime(2025, 5, 1, 9, 15, 2, 481000, tzinfo=UTC),
    )


@pytest.mark.parametrize(("entity", "kind"), [("Human", "agent"), ("Bot", "bot"), ("", "system"), (None, "system")])
def test_sender_kind(entity: str | None, kind: str) -> None:
    msg = outbound([], originatingEntity=entity)
    result = normalize_message(msg)
    assert result.sender is not None
    assert result.sender.kind == kind


def test_inbound_has_no_sender() -> None:
    msg = StructuredMessage.model_validate({"type": "Text", "direction": "Inbound", "id": "1", "text": "hi"})
    result = normalize_message(msg)
    assert (result.direction, result.sender, result.genesys_time) == ("inbound", None, None)


def test_quick_replies_one_part_per_option() -> None:
    content = [
        {
            "contentType": "QuickReply",
            "quickReply": {"text": "Track my order", "payload": "track_order", "action": "Message"},
        },
        {
            "contentType": "QuickReply",
            "quickReply": {"text": "Talk to a human", "payload": "agent", "image": "https://i"},
        },
    ]
    assert normalize_message(outbound(content)).parts == [
        QuickReplyPart(text="Track my order", payload="track_order", action="Message"),
        QuickReplyPart(text="Talk to a human", payload="agent", image="https://i"),
    ]


def test_quick_reply_v2() -> None:
    content = [
        {
            "contentType": "QuickReplyV2",
            "quickReplyV2": {
                "title": "Pick",
                "actions": [{"text": "A", "payload": "a"}, {"text": "B", "payload": "b"}],
            },
        }
    ]
    assert normalize_message(outbound(content)).parts == [
        QuickReplyPart(text="A", payload="a"),
        QuickReplyPart(text="B", payload="b"),
    ]


def test_card() -> None:
    assert normalize_message(outbound([CARD_A])).parts == [CARD_A_PART]


def test_card_default_action_and_video_object() -> None:
    card = {
        "contentType": "Card",
        "card": {
            "title": "T",
            "video": {"url": "https://v"},
            "defaultAction": {"type": "Link", "text": "open", "url": "https://d"},
            "actions": [{"type": "Unknown", "text": "?"}],
        },
    }
    assert normalize_message(outbound([card])).parts == [
        CardPart(title="T", video="https://v", default_action=ButtonAction(type="link", text="open", url="https://d"))
    ]


def test_carousel() -> None:
    card_b = {"title": "Plan B", "actions": [{"type": "Postback", "text": "Choose plan B", "payload": "plan_b"}]}
    content = [{"contentType": "Carousel", "carousel": {"cards": [CARD_A["card"], card_b]}}]
    assert normalize_message(outbound(content)).parts == [
        CarouselPart(
            cards=[
                CARD_A_PART,
                CardPart(
                    title="Plan B", actions=[ButtonAction(type="postback", text="Choose plan B", payload="plan_b")]
                ),
            ]
        )
    ]


@pytest.mark.parametrize("size_key", ["fileSize", "contentSizeBytes"])
def test_attachment(size_key: str) -> None:
    content = [
        {
            "contentType": "Attachment",
            "attachment": {
                "id": "att-1",
                "url": "https://files.example.invalid/a.pdf",
                "filename": "invoice.pdf",
                size_key: 48213,
                "mediaType": "File",
                "mime": "application/pdf",
                "sha256": "abc",
            },
        }
    ]
    assert normalize_message(outbound(content)).parts == [
        AttachmentPart(
            id="att-1",
            url="https://files.example.invalid/a.pdf",
            file_name="invoice.pdf",
            mime_type="application/pdf",
            size_bytes=48213,
            media_type="File",
        )
    ]


def test_date_picker() -> None:
    content = [
        {
            "contentType": "DatePicker",
            "datePicker": {
                "title": "Book a call",
                "subtitle": "30 minutes",
                "imageUrl": "https://i",
                "dateMinimum": "2026-12-01",
                "dateMaximum": "2026-12-31",
                "availableTimes": [
                    {"dateTime": "2026-12-01T10:00:00.000Z", "duration": 1800},
                    {"dateTime": "2026-12-01T11:00:00.000Z"},
                    {"duration": 60},
                ],
            },
        }
    ]
    assert normalize_message(outbound(content)).parts == [
        DatePickerPart(
            title="Book a call",
            subtitle="30 minutes",
            image_url="https://i",
            date_minimum="2026-12-01",
            date_maximum="2026-12-31",
            available_times=[
                TimeSlot(date_time="2026-12-01T10:00:00.000Z", duration_s=1800),
                TimeSlot(date_time="2026-12-01T11:00:00.000Z"),
            ],
        )
    ]


def test_button_response_in_an_inbound_echo() -> None:
    msg = StructuredMessage.model_validate(
        {
            "type": "Text",
            "direction": "Inbound",
            "id": "e",
            "text": "",
            "content": [
                {
                    "contentType": "ButtonResponse",
                    "buttonResponse": {
                        "type": "QuickReply",
                        "text": "Track",
                        "payload": "track",
                        "originatingMessageId": "q",
                    },
                }
            ],
        }
    )
    assert normalize_message(msg).parts == [
        ButtonResponsePart(type="QuickReply", text="Track", payload="track", originating_message_id="q")
    ]


@pytest.mark.parametrize(
    "item",
    [
        {"contentType": "ListPicker", "listPicker": {"sections": []}},
        {"contentType": "Notification", "template": {"body": {"text": "hi"}}},
        {"contentType": "Card", "card": "not an object"},
        {"contentType": "QuickReply", "quickReply": {"payload": "no text"}},
        {"contentType": "Carousel", "carousel": {"cards": []}},
        {"contentType": "ButtonResponse", "buttonResponse": {"type": "Button"}},
        {"contentType": "Attachment"},
        {"no": "contentType"},
    ],
)
def test_unknown_or_malformed_content_is_kept_raw(item: dict[str, Any]) -> None:
    [part] = normalize_message(outbound([item, CARD_A])).parts[:1]
    assert isinstance(part, UnknownPart)
    assert part.raw == item
    assert part.content_type == item.get("contentType", "")


def test_leftover_events_are_kept_raw() -> None:
    msg = StructuredMessage.model_validate(
        {"type": "Event", "direction": "Outbound", "events": [{"eventType": "CoBrowse", "coBrowse": {}}, "junk"]}
    )
    assert normalize_message(msg).parts == [
        UnknownPart(content_type="Event:CoBrowse", raw={"eventType": "CoBrowse", "coBrowse": {}}),
        UnknownPart(content_type="Event:?", raw={"value": "junk"}),
    ]


def test_history_entity_with_null_time_and_first_last_name() -> None:
    msg = StructuredMessage.model_validate(
        {
            "id": "h1",
            "type": "Text",
            "text": "hello",
            "direction": "Outbound",
            "originatingEntity": "Human",
            "channel": {"time": None, "from": {"firstName": "Ada", "lastName": "L"}},
        }
    )
    result = normalize_message(msg)
    assert result.genesys_time is None
    assert result.sender == Sender(kind="agent", nickname="Ada L")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-05-01T09:15:02.481Z", datetime(2025, 5, 1, 9, 15, 2, 481000, tzinfo=UTC)),
        ("2024-02-09T22:39:50.526+00:00", datetime(2024, 2, 9, 22, 39, 50, 526000, tzinfo=UTC)),
        ("2024-02-09T22:39:50", datetime(2024, 2, 9, 22, 39, 50, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_genesys_time(value: str | None, expected: datetime | None) -> None:
    assert parse_genesys_time(value) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=15,
)
content_types = st.sampled_from(
    ["QuickReply", "QuickReplyV2", "Card", "Carousel", "Attachment", "DatePicker", "ButtonResponse", "Other"]
)
payload_keys = st.sampled_from(
    ["quickReply", "quickReplyV2", "card", "carousel", "attachment", "datePicker", "buttonResponse"]
)
items = st.builds(
    lambda ct, key, body: {"contentType": ct, key: body},
    content_types,
    payload_keys,
    st.dictionaries(
        st.sampled_from(["text", "payload", "title", "actions", "cards", "availableTimes", "fileSize", "type", "url"]),
        json_values,
        max_size=5,
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(items | json_values, max_size=5))
def test_normalisation_never_raises(content: list[Any]) -> None:
    msg = StructuredMessage.model_construct(content=content, events=[], metadata={}, type="Structured")
    result = normalize_message(msg)
    assert all(p.kind in {"quick_reply", "card", "carousel", "attachment", "date_picker", "button_response", "unknown"}
               for p in result.parts)  # fmt: skip
    # Every item yields at least one part, except QuickReplyV2 with several or zero actions.
    if not any(isinstance(i, dict) and i.get("contentType") == "QuickReplyV2" for i in content):
        assert len(result.parts) == len(content)
