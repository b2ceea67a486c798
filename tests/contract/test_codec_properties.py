"""Property tests: whatever arrives, decode_command returns a command or a rejection with a known reason."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from genesys_bridge_client.contract import COMMAND_TYPES
from genesys_bridge_client.contract.codec import Rejection, decode_command
from genesys_bridge_client.contract.commands import (
    AttachmentRefresh,
    MessageSend,
    SessionEnd,
    SessionLogout,
    SessionStart,
    TypingSend,
)
from genesys_bridge_client.contract.events import OUTCOME_REASONS

LIMIT = 64 * 1024
#: The machine is shared: a slow example is not a failure. Example counts stay at hypothesis' default.
relaxed = settings(deadline=None)
COMMAND_CLASSES = (SessionStart, MessageSend, TypingSend, SessionEnd, AttachmentRefresh, SessionLogout)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)

VALID: dict[str, dict[str, Any]] = {
    "session.start": {
        "type": "session.start",
        "command_id": "c-1",
        "session_id": "s-1",
        "deployment_id": "0f4f1d2a-5b1e-4e0e-9f3a-2f5d8c1a7b10",
        "region": "mypurecloud.com",
        "origin": "https://shop.example.com",
        "custom_attributes": {"customer": "42"},
        "initial_message": "Hi",
    },
    "message.send": {
        "type": "message.send",
        "command_id": "c-2",
        "session_id": "s-1",
        "text": "Hello",
        "button_response": {"type": "quick_reply", "text": "Yes", "payload": "yes"},
        "attachments": [{"file_name": "a.png", "mime_type": "image/png", "url": "https://example.com/a.png"}],
    },
    "typing.send": {"type": "typing.send", "command_id": "c-3", "session_id": "s-1"},
    "session.end": {"type": "session.end", "command_id": "c-4", "session_id": "s-1", "correlation_id": "k"},
    "session.logout": {"type": "session.logout", "command_id": "c-6", "session_id": "s-1"},
    "attachment.refresh": {
        "type": "attachment.refresh",
        "command_id": "c-5",
        "session_id": "s-1",
        "attachment_id": "a",
    },
}


def check(raw: bytes) -> None:
    result = decode_command(raw, max_bytes=LIMIT)
    if isinstance(result, Rejection):
        assert result.reason in OUTCOME_REASONS
        assert result.reason != "internal_error", result  # the failsafe must never be what answers
        assert result.detail
        assert all(e.loc.startswith("$") for e in result.errors)
    else:
        assert isinstance(result, COMMAND_CLASSES)


def test_the_valid_seeds_are_valid() -> None:
    for data in VALID.values():
        assert not isinstance(decode_command(json.dumps(data).encode(), max_bytes=LIMIT), Rejection)


@relaxed
@given(st.binary(max_size=512))
def test_arbitrary_bytes(raw: bytes) -> None:
    check(raw)


@relaxed
@given(json_values)
def test_arbitrary_json(value: object) -> None:
    check(json.dumps(value).encode())


@relaxed
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6), st.sampled_from((*COMMAND_TYPES, "x.y")))
def test_arbitrary_objects_with_a_type(fields: dict[str, Any], command_type: str) -> None:
    check(json.dumps({**fields, "type": command_type}).encode())


@st.composite
def mutated_commands(draw: st.DrawFn) -> dict[str, Any]:
    """A valid command with a few fields replaced by arbitrary JSON, deleted, or added."""
    data = dict(VALID[draw(st.sampled_from(COMMAND_TYPES))])
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        key = draw(st.sampled_from(sorted(data)) | st.text(max_size=8))
        if draw(st.booleans()) and key in data:
            del data[key]
        else:
            data[key] = draw(json_values)
    return data


@relaxed
@given(mutated_commands())
def test_mutated_commands(data: dict[str, Any]) -> None:
    raw = json.dumps(data).encode()
    check(raw)
    result = decode_command(raw, max_bytes=LIMIT)
    if isinstance(result, Rejection) and isinstance(data.get("command_id"), str):
        assert result.command_id == data["command_id"]


@relaxed
@given(mutated_commands(), st.integers(min_value=0, max_value=400))
def test_truncated_bodies(data: dict[str, Any], cut: int) -> None:
    raw = json.dumps(data).encode()
    check(raw[:cut])


@relaxed
@given(st.text(max_size=5000))
def test_arbitrary_text(text: str) -> None:
    check(json.dumps({**VALID["message.send"], "text": text}, ensure_ascii=bool(len(text) % 2)).encode())
