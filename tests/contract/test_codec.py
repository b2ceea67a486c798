"""decode_command: every reason, field paths, identifying fields; encode/decode of events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from genesys_bridge_client.contract import (
    MAX_ATTRIBUTE_BYTES,
    MAX_TEXT_BYTES,
    MessageSend,
    SessionEnd,
    SessionStart,
    TypingSend,
)
from genesys_bridge_client.contract.codec import (
    MAX_FIELD_ERRORS,
    Rejection,
    decode_command,
    decode_event,
    encode_event,
    json_path,
)
from genesys_bridge_client.contract.content import Sender
from genesys_bridge_client.contract.events import OUTCOME_REASONS, CommandOutcome, FieldError, MessageReceived

LIMIT = 64 * 1024


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def send(**extra: Any) -> bytes:
    return body(type="message.send", command_id="c-1", session_id="s-1", **extra)


def rejected(raw: bytes, *, max_bytes: int = LIMIT) -> Rejection:
    result = decode_command(raw, max_bytes=max_bytes)
    assert isinstance(result, Rejection), result
    assert result.reason in OUTCOME_REASONS
    return result


# --- valid commands ---------------------------------------------------------------------------------


def test_decodes_each_command_type() -> None:
    start = decode_command(
        body(type="session.start", command_id="c", session_id="s", deployment_id="abc-123", region="mypurecloud.ie"),
        max_bytes=LIMIT,
    )
    assert isinstance(start, SessionStart)
    assert start.region == "mypurecloud.ie"
    assert isinstance(decode_command(send(text="hello"), max_bytes=LIMIT), MessageSend)
    assert isinstance(
        decode_command(body(type="typing.send", command_id="c", session_id="s"), max_bytes=LIMIT), TypingSend
    )
    assert isinstance(
        decode_command(body(type="session.end", command_id="c", session_id="s"), max_bytes=LIMIT), SessionEnd
    )


def test_explicit_schema_version_1_is_accepted() -> None:
    assert isinstance(decode_command(send(text="hi", schema_version=1), max_bytes=LIMIT), MessageSend)


def test_text_at_exactly_the_byte_limit_is_accepted() -> None:
    text = "é" * (MAX_TEXT_BYTES // 2)  # two UTF-8 bytes each: exactly the limit
    result = decode_command(send(text=text), max_bytes=LIMIT)
    assert isinstance(result, MessageSend)
    assert result.text == text


# --- too_large ----------------------------------------------------------------------------------------


def test_too_large_is_checked_before_parsing() -> None:
    raw = b"\xff" * 11  # not even UTF-8: size wins because it is checked first
    result = rejected(raw, max_bytes=10)
    assert result.reason == "too_large"
    assert "11 bytes" in result.detail
    assert "10" in result.detail


def test_body_of_exactly_max_bytes_is_parsed() -> None:
    raw = send(text="x")
    assert isinstance(decode_command(raw, max_bytes=len(raw)), MessageSend)


# --- not_json -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe{}",  # not UTF-8
        b'{"type": "typing.send"',  # truncated
        b'{"a": NaN}',  # not strict JSON
        b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark is not JSON
        b"[" * 10_000,  # deep nesting must not blow the stack
        b'"\xed\xa0\x80"',  # a UTF-8-encoded surrogate is not UTF-8
    ],
)
def test_not_json(raw: bytes) -> None:
    result = rejected(raw)
    assert result.reason == "not_json"
    assert result.command_id is None


@pytest.mark.parametrize(
    ("raw", "kind"), [(b"[]", "an array"), (b'"x"', "a string"), (b"1", "a number"), (b"null", "null")]
)
def test_json_that_is_not_an_object_is_not_json(raw: bytes, kind: str) -> None:
    result = rejected(raw)
    assert result.reason == "not_json"
    assert kind in result.detail


# --- unknown_type -------------------------------------------------------------------------------------


def test_missing_type_is_unknown_type_and_keeps_ids() -> None:
    result = rejected(body(command_id="c-9", session_id="s-9", correlation_id="k-9"))
    assert result.reason == "unknown_type"
    assert "missing" in result.detail
    assert (result.command_id, result.session_id, result.correlation_id) == ("c-9", "s-9", "k-9")


@pytest.mark.parametrize("type_", ["session.stop", "", "MESSAGE.SEND", 7, None, ["message.send"], {"a": 1}])
def test_unknown_type(type_: object) -> None:
    result = rejected(body(type=type_, command_id="c", session_id="s"))
    assert result.reason == "unknown_type"
    assert result.command_type == (type_ if isinstance(type_, str) else None)
    assert result.command_id == "c"


# --- unsupported_version ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 2, 1.5, -1])
def test_unsupported_version(version: float) -> None:
    result = rejected(send(text="hi", schema_version=version))
    assert result.reason == "unsupported_version"
    assert result.command_type == "message.send"
    assert result.command_id == "c-1"


@pytest.mark.parametrize("version", ["1", True, None, [1]])
def test_non_numeric_version_is_schema_invalid(version: object) -> None:
    result = rejected(send(text="hi", schema_version=version))
    assert result.reason == "schema_invalid"
    assert [e.loc for e in result.errors] == ["$.schema_version"]


# --- schema_invalid and field paths -------------------------------------------------------------------


def test_schema_invalid_lists_field_paths() -> None:
    raw = send(
        text=5,
        attachments=[{"file_name": "a.png", "mime_type": "image/png", "url": "https://x/a.png"}, {"file_name": "b"}],
        surprise=True,
    )
    result = rejected(raw)
    assert result.reason == "schema_invalid"
    locs = {e.loc for e in result.errors}
    assert locs == {"$.text", "$.attachments[1].mime_type", "$.surprise"}
    assert all(e.message for e in result.errors)
    assert result.detail.startswith("$.")
    assert "more" in result.detail


def test_model_level_error_is_at_the_root() -> None:
    result = rejected(send())  # neither text nor button_response nor attachments
    assert result.reason == "schema_invalid"
    assert result.errors == (FieldError(loc="$", message="give text, a button_response or attachments"),)


def test_session_id_too_long_keeps_the_ids_for_correlation() -> None:
    long_id = "s" * 129
    result = rejected(body(type="typing.send", command_id="c", session_id=long_id, correlation_id="k"))
    assert result.reason == "schema_invalid"
    assert result.errors[0].loc == "$.session_id"
    assert (result.command_id, result.session_id, result.command_type, result.correlation_id) == (
        "c",
        long_id,
        "typing.send",
        "k",
    )


def test_non_string_ids_are_not_copied() -> None:
    result = rejected(body(type="typing.send", command_id=12, session_id=["s"], correlation_id=None))
    assert result.reason == "schema_invalid"
    assert (result.command_id, result.session_id, result.correlation_id) == (None, None, None)


def test_field_errors_are_capped() -> None:
    result = rejected(send(**{f"extra{i}": i for i in range(50)}))
    assert len(result.errors) == MAX_FIELD_ERRORS


def test_error_messages_do_not_echo_the_input() -> None:
    secret = "very-secret-token-value"
    result = rejected(body(type="session.start", command_id="c", session_id="s", region="x", resume_token=secret))
    assert secret not in result.detail
    assert all(secret not in e.message for e in result.errors)


# --- byte limits get their own reason when they are the only fault -------------------------------------


def test_text_over_the_byte_limit_is_message_too_long() -> None:
    text = "€" * (MAX_TEXT_BYTES // 3 + 1)  # fewer than 4096 characters, more than 4096 bytes
    assert len(text) < MAX_TEXT_BYTES
    result = rejected(send(text=text))
    assert result.reason == "message_too_long"
    assert result.errors[0].loc == "$.text"
    assert f"limit is {MAX_TEXT_BYTES}" in result.errors[0].message


def test_initial_message_over_the_limit_is_message_too_long() -> None:
    raw = body(
        type="session.start",
        command_id="c",
        session_id="s",
        deployment_id="d",
        region="mypurecloud.com",
        initial_message="x" * (MAX_TEXT_BYTES + 1),
    )
    result = rejected(raw)
    assert result.reason == "message_too_long"
    assert result.errors[0].loc == "$.initial_message"


def test_attributes_over_the_byte_limit_are_attributes_too_large() -> None:
    result = rejected(send(text="hi", custom_attributes={"k": "v" * MAX_ATTRIBUTE_BYTES}))
    assert result.reason == "attributes_too_large"
    assert result.errors[0].loc == "$.custom_attributes"
    assert f"limit is {MAX_ATTRIBUTE_BYTES}" in result.errors[0].message


def test_a_size_error_with_another_error_is_schema_invalid() -> None:
    result = rejected(send(text="x" * (MAX_TEXT_BYTES + 1), custom_attributes={"k": "v" * MAX_ATTRIBUTE_BYTES}))
    assert result.reason == "schema_invalid"
    assert {e.loc for e in result.errors} == {"$.text", "$.custom_attributes"}


# --- json_path ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        ((), "$"),
        (("text",), "$.text"),
        (("attachments", 0, "url"), "$.attachments[0].url"),
        (("custom_attributes", "a key"), "$.custom_attributes['a key']"),
        (("custom_attributes", "it's"), "$.custom_attributes['it\\'s']"),
        (("custom_attributes", "1abc"), "$.custom_attributes['1abc']"),
    ],
)
def test_json_path(loc: tuple[int | str, ...], path: str) -> None:
    assert json_path(loc) == path


# --- events -------------------------------------------------------------------------------------------


def test_event_round_trip_keeps_nulls() -> None:
    event = MessageReceived(
        event_id="e-1",
        session_id="s-1",
        seq=3,
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        genesys_message_id="m-1",
        direction="outbound",
        sender=Sender(kind="agent", nickname="Ann"),
        text="Hello",
        raw={"id": "m-1"},
    )
    raw = encode_event(event)
    assert b" " not in raw.replace(b"Hello", b"")  # compact
    assert json.loads(raw)["causation_id"] is None  # None fields are present as null
    assert decode_event(raw) == event


def test_outcome_round_trip() -> None:
    outcome = CommandOutcome(
        event_id="e-2",
        session_id="s",
        seq=0,
        occurred_at=datetime(2026, 1, 2, tzinfo=UTC),
        command_id="c",
        status="rejected",
        reason="schema_invalid",
        errors=[FieldError(loc="$.text", message="bad")],
    )
    assert decode_event(encode_event(outcome)) == outcome


def test_decode_event_raises_on_garbage() -> None:
    with pytest.raises(ValidationError):
        decode_event(b'{"type": "nope"}')


def test_unknown_type_detail_is_clipped() -> None:
    result = rejected(body(type="x" * 10_000, command_id="c", session_id="s"))
    assert result.reason == "unknown_type"
    assert len(result.detail) < 200
    assert result.command_type == "x" * 10_000
