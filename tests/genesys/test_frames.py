"""Frame models: exact wire JSON for client actions (§4), lenient typed parsing of server frames (§3.2, §5)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.genesys import actions as a
from bridge.genesys import frames as f
from tests.genesys import wire

TOKEN = "tok"


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (
            a.ConfigureSession(token=TOKEN, deployment_id="dep", start_new=False, tracing_id="t-001"),
            {
                "action": "configureSession",
                "token": TOKEN,
                "tracingId": "t-001",
                "deploymentId": "dep",
                "startNew": False,
            },
        ),
        (
            a.ConfigureSession(token=TOKEN, deployment_id="dep"),
            {"action": "configureSession", "token": TOKEN, "deploymentId": "dep"},
        ),
        (
            a.ConfigureAuthenticatedSession(token=TOKEN, deployment_id="dep", data={"code": "jwt"}),
            {"action": "configureAuthenticatedSession", "token": TOKEN, "deploymentId": "dep", "data": {"code": "jwt"}},
        ),
        (
            a.OnMessage(
                token=TOKEN,
                message=a.OutgoingMessage(type="Event", events=[a.TypingEvent()]),
            ),
            {
                "action": "onMessage",
                "token": TOKEN,
                "message": {"type": "Event", "events": [{"eventType": "Typing", "typing": {"type": "On"}}]},
            },
        ),
        (
            a.OnMessage(
                token=TOKEN,
                message=a.OutgoingMessage(
                    type="Event", events=[a.PresenceEvent(presence=a.PresenceBody(type="Clear"))]
                ),
            ),
            {
                "action": "onMessage",
                "token": TOKEN,
                "message": {"type": "Event", "events": [{"eventType": "Presence", "presence": {"type": "Clear"}}]},
            },
        ),
        (
            a.Echo(token=TOKEN, tracing_id="hc-7"),
            {"action": "echo", "token": TOKEN, "tracingId": "hc-7", "message": {"type": "Text", "text": "ping"}},
        ),
        (a.GetJwt(token=TOKEN, tracing_id="j-1"), {"action": "getJwt", "token": TOKEN, "tracingId": "j-1"}),
        (
            a.OnAttachment(token=TOKEN, file_name="a.png", file_type="image/png", file_size=3, errors_as_json=None),
            {"action": "onAttachment", "token": TOKEN, "fileName": "a.png", "fileType": "image/png", "fileSize": 3},
        ),
        (
            a.GetAttachment(token=TOKEN, attachment_id="a"),
            {"action": "getAttachment", "token": TOKEN, "attachmentId": "a"},
        ),
        (
            a.DeleteAttachment(token=TOKEN, attachment_id="a"),
            {"action": "deleteAttachment", "token": TOKEN, "attachmentId": "a"},
        ),
        (a.CloseSession(token=TOKEN), {"action": "closeSession", "token": TOKEN, "closeAllConnections": True}),
        (
            a.GetConfiguration(token=TOKEN, deployment_id="dep"),
            {"action": "getConfiguration", "token": TOKEN, "deploymentId": "dep"},
        ),
    ],
)
def test_client_actions_serialise_to_the_wire_shape(action: a.ClientAction, expected: dict[str, Any]) -> None:
    assert json.loads(action.to_wire()) == expected
    assert action.to_dict() == expected


def test_token_is_not_in_the_repr() -> None:
    assert "s3cret" not in repr(a.GetJwt(token="s3cret"))


@pytest.mark.parametrize(
    ("cls", "body", "model"),
    [
        ("SessionResponse", {"connected": True, "newSession": True}, f.SessionResponse),
        ("StructuredMessage", {"type": "Text", "direction": "Outbound", "id": "1"}, f.StructuredMessage),
        ("PresignedUrlResponse", {"attachmentId": "a", "url": "https://x", "headers": {}}, f.PresignedUrlResponse),
        ("AttachmentDeletedResponse", {"attachmentId": "a"}, f.AttachmentDeletedResponse),
        ("UploadFailureEvent", {"attachmentId": "a", "errorCode": 4003, "errorMessage": "x"}, f.UploadFailureEvent),
        ("UploadSuccessEvent", {"attachmentId": "a", "downloadUrl": "https://x"}, f.UploadSuccessEvent),
        ("ConnectionClosedEvent", {}, f.ConnectionClosedEvent),
        ("LogoutEvent", {}, f.LogoutEvent),
        ("SessionExpiredEvent", {}, f.SessionExpiredEvent),
        ("JwtResponse", {"jwt": "j", "exp": 1}, f.JwtResponse),
        ("GetConfigurationResponse", {"maxCustomDataBytes": 2048}, f.GetConfigurationResponse),
        ("GenerateUrlError", {"attachmentId": "a", "errorCode": 4001, "errorMessage": "x"}, f.GenerateUrlError),
        ("TooManyRequestsErrorMessage", {"errorCode": 4029, "retryAfter": 3}, f.TooManyRequestsErrorMessage),
        ("ResumeTokenResponse", {"resumeToken": "r", "exp": 1}, f.ResumeTokenResponse),
        ("SessionClearedEvent", {}, f.SessionClearedEvent),
        ("Error", {"errorCode": 4020}, f.ErrorBody),
    ],
)
def test_every_server_class_parses_to_its_model(cls: str, body: dict[str, Any], model: type[Any]) -> None:
    parsed = f.parse_server_frame(wire.frame(cls, {**body, "futureField": [1]}, tracing_id="t"))
    assert isinstance(parsed, f.ServerFrame)
    assert parsed.frame_class == cls
    assert parsed.tracing_id == "t"
    assert parsed.code == 200
    assert type(parsed.body) is model
    assert parsed.body.model_extra == {"futureField": [1]}  # type: ignore[union-attr]


def test_the_dispatch_table_covers_every_class_of_the_reference() -> None:
    reference = {
        "SessionResponse", "StructuredMessage", "PresignedUrlResponse", "AttachmentDeletedResponse",
        "UploadFailureEvent", "UploadSuccessEvent", "ConnectionClosedEvent", "LogoutEvent", "SessionExpiredEvent",
        "JwtResponse", "GetConfigurationResponse", "GenerateUrlError", "TooManyRequestsErrorMessage",
        "ResumeTokenResponse", "SessionClearedEvent", "Error",
    }  # fmt: skip
    assert set(f.BODY_MODELS) == reference


def test_string_error_frames() -> None:
    parsed = f.parse_server_frame(wire.string_error(409, "Session is read-only, no new messages allowed"))
    assert parsed == f.ServerFrame("string", "Session is read-only, no new messages allowed", 409, None, "response")
    assert isinstance(parsed, f.ServerFrame)
    assert parsed.is_error


def test_connection_closed_reads_both_spellings() -> None:
    assert f.ConnectionClosedEvent.model_validate({"reason": "signedIn"}).effective_reason == "signedIn"
    assert f.ConnectionClosedEvent.model_validate({"reasonCode": "signedIn"}).effective_reason == "signedIn"
    assert f.ConnectionClosedEvent.model_validate({}).effective_reason is None


def test_structured_message_keeps_channel_fields() -> None:
    parsed = f.parse_server_frame(wire.outbound_text())
    assert isinstance(parsed, f.ServerFrame)
    body = parsed.body
    assert isinstance(body, f.StructuredMessage)
    assert body.channel is not None
    assert body.channel.from_ is not None
    assert body.channel.from_.nickname == "Order Bot"
    assert body.channel.type == "Private"
    assert body.metadata["correlationId"].startswith("0e6e")


def test_unpaired_surrogates_in_a_frame_become_replacement_characters() -> None:
    # A message cut inside an emoji, and an error text the same (§3.2): json.dumps writes them as escapes.
    parsed = f.parse_server_frame(wire.outbound_text("Your order ships soon \ud83d"))
    assert isinstance(parsed, f.ServerFrame)
    assert isinstance(parsed.body, f.StructuredMessage)
    assert parsed.body.text == "Your order ships soon \ufffd"
    error = f.parse_server_frame(wire.string_error(4011, "Message too long: \udc00"))
    assert isinstance(error, f.ServerFrame)
    assert error.body == "Message too long: \ufffd"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{", "not_json"),
        (b"\xff\xfe", "not_json"),
        ("[]", "not_object"),
        ("null", "not_object"),
        ('{"class":"Nope"}', "unknown_class"),
        ('{"class":123}', "unknown_class"),
        ('{"class":"SessionResponse","body":{"connected":"maybe"}}', "invalid_body"),
        ('{"class":"StructuredMessage","body":{"id":[1]}}', "invalid_body"),
    ],
)
def test_unparsable_frames(text: str | bytes, reason: str) -> None:
    parsed = f.parse_server_frame(text)
    assert isinstance(parsed, f.UnparsedFrame)
    assert parsed.reason == reason


def test_structured_message_survives_odd_containers() -> None:
    body = {"type": "Text", "content": ["junk", {"contentType": "Card"}], "events": None, "metadata": "x",
            "channel": {"from": "nobody", "time": "2025-05-01T09:15:02.481Z"}}  # fmt: skip
    parsed = f.parse_server_frame(wire.frame("StructuredMessage", body))
    assert isinstance(parsed, f.ServerFrame)
    msg = parsed.body
    assert isinstance(msg, f.StructuredMessage)
    assert msg.content == [{"value": "junk"}, {"contentType": "Card"}]
    assert (msg.events, msg.metadata) == ([], {})
    assert msg.channel is not None
    assert msg.channel.from_ is None
    assert f.StructuredMessage.model_validate({"channel": "x"}).channel is None


def test_odd_codes_are_tolerated() -> None:
    parsed = f.parse_server_frame('{"class":"string","code":"409","body":"x"}')
    assert isinstance(parsed, f.ServerFrame)
    assert parsed.code == 409
    parsed = f.parse_server_frame('{"class":"string","code":true,"body":{"not":"text"}}')
    assert isinstance(parsed, f.ServerFrame)
    assert parsed.code is None
    assert parsed.body == '{"not": "text"}'
