"""Server frames as JSON text, written from the protocol reference (§3.2, §5, §6)."""

from __future__ import annotations

import json
from typing import Any


def frame(
    cls: str,
    body: Any,
    *,
    code: int = 200,
    type_: str = "response",
    tracing_id: str | None = None,
) -> str:
    """One server envelope: ``{"type","class","code","body","tracingId"?}``."""
    obj: dict[str, Any] = {"type": type_, "class": cls, "code": code, "body": body}
    if tracing_id is not None:
        obj["tracingId"] = tracing_id
    return json.dumps(obj)


def session_response(tracing_id: str | None = None, **body: Any) -> str:
    """SessionResponse; defaults to the minimal real frame ``{"connected":true,"newSession":true}`` (§5.1)."""
    payload = {"connected": True, "newSession": True, **body}
    return frame("SessionResponse", payload, tracing_id=tracing_id)


def string_error(code: int, text: str, tracing_id: str | None = None) -> str:
    """A ``class:"string"`` error frame (§6)."""
    return frame("string", text, code=code, tracing_id=tracing_id)


def inbound_echo(tracing_id: str | None, text: str = "hello", msg_id: str = "5befde6373a23f32f20b59b4e1cba0e6") -> str:
    """The echo of the guest's own onMessage (§4.3 acknowledgement): Inbound, same tracingId."""
    body = {
        "type": "Text",
        "direction": "Inbound",
        "id": msg_id,
        "text": text,
        "channel": {"time": "2025-05-01T09:15:01.100Z", "messageId": msg_id},
    }
    return frame("StructuredMessage", body, type_="message", tracing_id=tracing_id)


def outbound_text(text: str = "Hi! I'm the order assistant.", entity: str = "Bot") -> str:
    """Outbound bot text, as in §5.2."""
    body = {
        "type": "Text",
        "direction": "Outbound",
        "id": "7a0c3e9d5b2f4a1c8e6d9b0a1f2e3d4c",
        "text": text,
        "channel": {
            "time": "2025-05-01T09:15:02.481Z",
            "type": "Private",
            "from": {"nickname": "Order Bot", "image": "https://example.invalid/bot.png"},
        },
        "originatingEntity": entity,
        "metadata": {"correlationId": "0e6e8f6a-3f0b-4c8a-9a8d-2b6c0f4d1e7a"},
    }
    return frame("StructuredMessage", body, type_="message")


def disconnect_read_only(read_only: Any = "true") -> str:
    """The Disconnect captured from a real tenant (§5.3, OVO #165)."""
    body: dict[str, Any] = {
        "type": "Event",
        "direction": "Outbound",
        "id": "d1",
        "originatingEntity": "Bot",
        "channel": {
            "time": "2024-02-09T22:39:50.526Z",
            "type": "Private",
            "from": {"nickname": "Robot Friend"},
            "to": {},
        },
        "events": [{"eventType": "Presence", "presence": {"type": "Disconnect"}}],
    }
    if read_only is not None:
        body["metadata"] = {"readOnly": read_only}
    return frame("StructuredMessage", body, type_="message")


def typing_on(duration: int | None = 5000, direction: str = "Outbound", tracing_id: str | None = None) -> str:
    """A Typing event (§5.3)."""
    typing: dict[str, Any] = {"type": "On"}
    if duration is not None:
        typing["duration"] = duration
    body = {
        "type": "Event",
        "direction": direction,
        "id": "ty1",
        "channel": {"time": "2025-05-01T09:15:02.000Z"},
        "events": [{"eventType": "Typing", "typing": typing}],
    }
    return frame("StructuredMessage", body, type_="message", tracing_id=tracing_id)
