"""The reorder buffer on its own: Genesys' ``channel.time`` order within the window, bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.genesys.frames import StructuredMessage
from bridge.session.inbound import ReorderBuffer

T0 = datetime(2026, 11, 26, 13, 40, tzinfo=UTC)


def message(text: str, at_s: float | None) -> StructuredMessage:
    channel = {"time": (T0 + timedelta(seconds=at_s)).isoformat()} if at_s is not None else {}
    return StructuredMessage.model_validate(
        {"id": text, "type": "Text", "direction": "Outbound", "text": text, "channel": channel}
    )


def texts(messages: list[StructuredMessage]) -> list[str | None]:
    return [m.text for m in messages]


def test_a_swapped_pair_within_the_window_comes_out_in_order() -> None:
    buffer = ReorderBuffer(0.5)
    assert buffer.add(message("b", 2), now=10.0) == 10.5
    buffer.add(message("a", 1), now=10.1)
    assert buffer.due(10.4) == []
    assert texts(buffer.due(10.5)) == ["a", "b"]
    assert len(buffer) == 0


def test_a_newer_message_waits_for_its_own_hold() -> None:
    buffer = ReorderBuffer(0.5)
    buffer.add(message("a", 1), now=10.0)
    buffer.add(message("c", 3), now=10.3)
    assert texts(buffer.due(10.5)) == ["a"]
    assert texts(buffer.due(10.8)) == ["c"]


def test_a_message_later_than_the_window_is_still_published() -> None:
    buffer = ReorderBuffer(0.5)
    buffer.add(message("b", 2), now=10.0)
    assert texts(buffer.due(10.5)) == ["b"]
    buffer.add(message("a", 1), now=11.0)
    assert texts(buffer.due(11.5)) == ["a"]


def test_messages_without_a_time_come_first_in_arrival_order() -> None:
    buffer = ReorderBuffer(0.5)
    buffer.add(message("b", 2), now=0.0)
    buffer.add(message("x", None), now=0.1)
    buffer.add(message("y", None), now=0.2)
    assert texts(buffer.drain()) == ["x", "y", "b"]


def test_past_the_limit_everything_is_released_in_order() -> None:
    buffer = ReorderBuffer(0.5, limit=2)
    for i, at in enumerate((3, 1, 2)):
        buffer.add(message(str(at), at), now=float(i) * 0.01)
    assert texts(buffer.due(0.02)) == ["1", "2", "3"]
