"""GuestProtocol driven frame by frame (protocol reference §3–§7). No sockets, no event loop."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.errors import CommandRejected, GenesysProtocolError
from bridge.genesys.events import (
    AgentMessage,
    AgentTyping,
    AttachmentDeleted,
    ConfigurationReceived,
    Configured,
    ConnectionClosed,
    ConversationDisconnected,
    EchoReplied,
    ErrorReceived,
    JwtIssued,
    LoggedOut,
    MessageEchoed,
    PendingRequest,
    ProtocolEvent,
    ProtocolState,
    RateLimited,
    SessionCleared,
    SessionClosed,
    SessionExpired,
    UnknownFrame,
    UploadFailed,
    UploadSucceeded,
    UploadUrlIssued,
)
from bridge.genesys.protocol import GuestProtocol
from genesys_bridge_client.contract.content import ButtonResponse
from tests.genesys import wire
from tests.genesys.driver import DEPLOYMENT, TOKEN, configured_protocol, feed, new_protocol, sent, text_request


@pytest.fixture
def configured() -> GuestProtocol:
    return configured_protocol()


# --- configure (§4.1, §5.1) ---------------------------------------------------------------------------


def test_configure_is_the_first_frame_and_has_the_reference_shape() -> None:
    p = new_protocol()
    assert p.state is ProtocolState.DISCONNECTED
    p.connection_made()
    assert p.state is ProtocolState.CONNECTED
    p.configure(tracing_id="t-001")
    assert sent(p) == [
        {
            "action": "configureSession",
            "token": TOKEN,
            "tracingId": "t-001",
            "deploymentId": DEPLOYMENT,
            "startNew": False,
        }
    ]
    assert p.state is ProtocolState.CONFIGURING
    assert p.pending == (PendingRequest("t-001", "configureSession"),)


def test_minimal_real_session_response_is_defaulted() -> None:
    p = new_protocol()
    p.connection_made()
    p.configure()
    events = feed(
        p,
        json.dumps(
            {
                "type": "response",
                "class": "SessionResponse",
                "code": 200,
                "body": {"connected": True, "newSession": True},
            }
        ),
    )
    assert events == [Configured(new_session=True, read_only=False)]
    assert p.state is ProtocolState.CONFIGURED
    assert p.limits == Configured(new_session=True, read_only=False)
    assert p.max_custom_data_bytes == 2048
    assert p.pending == ()  # answered without tracingId: the configure is matched by action


def test_full_session_response_fields() -> None:
    p = new_protocol()
    p.connection_made()
    p.configure(tracing_id="t-001")
    body = {
        "connected": True,
        "newSession": False,
        "readOnly": False,
        "clearedExistingSession": False,
        "maxCustomDataBytes": 1024,
        "allowedMedia": {
            "inbound": {"fileTypes": [{"type": "image/png"}, {"type": "image/jpeg"}], "maxFileSizeKB": 10240}
        },
        "blockedExtensions": [".exe", ".bat"],
        "durationSeconds": 259200,
        "expirationDate": 1767268800,
        "someFutureField": {"x": 1},
    }
    [event] = feed(p, wire.frame("SessionResponse", body, tracing_id="t-001"))
    assert event == Configured(
        new_session=False,
        read_only=False,
        max_custom_data_bytes=1024,
        allowed_mime_types=("image/png", "image/jpeg"),
        max_file_size_kb=10240,
        blocked_extensions=(".exe", ".bat"),
        duration_s=259200,
        expires_at=datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
    )
    assert p.max_custom_data_bytes == 1024


def test_read_only_session_response() -> None:
    p = new_protocol()
    p.connection_made()
    p.configure(tracing_id="t")
    [event] = feed(p, wire.session_response("t", newSession=False, readOnly=True))
    assert isinstance(event, Configured)
    assert event.read_only
    assert p.state is ProtocolState.READ_ONLY
    with pytest.raises(GenesysProtocolError, match="read_only"):
        p.send_message(tracing_id="m", text="hi")
    p.request_jwt(tracing_id="j")  # history stays readable (§5.1)
    assert sent(p)[-1]["action"] == "getJwt"


@pytest.mark.parametrize("intent", ["send_message", "send_typing", "echo", "close_session", "request_jwt"])
def test_intents_before_configured_raise_naming_the_state(intent: str) -> None:
    p = new_protocol()
    calls = {
        "send_message": lambda: p.send_message(tracing_id="m", text="hi"),
        "send_typing": lambda: p.send_typing(),
        "echo": lambda: p.echo(tracing_id="e"),
        "close_session": lambda: p.close_session(),
        "request_jwt": lambda: p.request_jwt(tracing_id="j"),
    }
    with pytest.raises(GenesysProtocolError, match="disconnected"):
        calls[intent]()
    p.connection_made()
    with pytest.raises(GenesysProtocolError, match="connected"):
        calls[intent]()
    p.configure()
    with pytest.raises(GenesysProtocolError, match="configuring"):
        calls[intent]()
    assert len(p.frames_to_send()) == 1  # only the configure


def test_configure_needs_an_open_socket_and_not_twice_while_configuring() -> None:
    p = new_protocol()
    with pytest.raises(GenesysProtocolError, match="disconnected"):
        p.configure()
    p.connection_made()
    p.configure()
    with pytest.raises(GenesysProtocolError, match="configuring"):
        p.configure()


def test_deployment_not_found_fails_the_configure_and_allows_another() -> None:
    p = new_protocol()
    p.connection_made()
    p.configure(tracing_id="t")
    # §4.1: the real (older fixture) answer carries no tracingId.
    [event] = feed(p, '{"type":"response","class":"string","code":400,"body":"Deployment not found"}')
    assert event == ErrorReceived(400, "Deployment not found", PendingRequest("t", "configureSession"))
    assert p.state is ProtocolState.CONNECTED
    p.configure(start_new=True, tracing_id="t2")
    assert sent(p)[-1]["startNew"] is True


def test_configure_rate_limited_with_429_from_the_real_log() -> None:
    p = new_protocol()
    p.connection_made()
    p.configure(tracing_id="t")
    body = {"errorCode": 429, "errorMessage": "ConfigureSession rate too high for this session", "retryAfter": 3}
    [event] = feed(p, wire.frame("TooManyRequestsErrorMessage", body, code=429))
    assert event == RateLimited(
        3.0, 429, "ConfigureSession rate too high for this session", PendingRequest("t", "configureSession")
    )
    assert p.state is ProtocolState.CONNECTED


# --- onMessage shapes (§4.3) --------------------------------------------------------------------------


def test_text_with_custom_attributes(configured: GuestProtocol) -> None:
    configured.send_message(
        tracing_id="m-42", text="My order has not arrived", custom_attributes={"orderId": "A-991", "tier": "gold"}
    )
    assert sent(configured) == [
        {
            "action": "onMessage",
            "token": TOKEN,
            "tracingId": "m-42",
            "message": {
                "type": "Text",
                "text": "My order has not arrived",
                "channel": {"metadata": {"customAttributes": {"orderId": "A-991", "tier": "gold"}}},
            },
        }
    ]


def test_quick_reply_response(configured: GuestProtocol) -> None:
    br = ButtonResponse(type="quick_reply", text="Track my order", payload="track_order")
    configured.send_message(tracing_id="m-43", button_response=br)
    assert sent(configured)[0]["message"] == {
        "type": "Text",
        "text": "",
        "content": [
            {
                "contentType": "ButtonResponse",
                "buttonResponse": {"type": "QuickReply", "text": "Track my order", "payload": "track_order"},
            }
        ],
    }


def test_card_button_response(configured: GuestProtocol) -> None:
    br = ButtonResponse(type="button", text="Choose plan A", payload="plan_a")
    configured.send_message(tracing_id="m", button_response=br)
    assert sent(configured)[0]["message"] == {
        "type": "Structured",
        "text": "Choose plan A",
        "content": [
            {
                "contentType": "ButtonResponse",
                "buttonResponse": {"type": "Button", "text": "Choose plan A", "payload": "plan_a"},
            }
        ],
    }


def test_date_picker_response(configured: GuestProtocol) -> None:
    br = ButtonResponse(
        type="date_picker", text="Mon 10:00", payload="2026-12-01T10:00:00.000Z", originating_message_id="picker-1"
    )
    configured.send_message(tracing_id="m", button_response=br)
    assert sent(configured)[0]["message"] == {
        "type": "Text",
        "text": "",
        "content": [
            {
                "contentType": "ButtonResponse",
                "buttonResponse": {
                    "type": "DatePicker",
                    "text": "Mon 10:00",
                    "payload": "2026-12-01T10:00:00.000Z",
                    "originatingMessageId": "picker-1",
                },
            }
        ],
    }


def test_attachment_reference_with_caption(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="m", text="the receipt", attachment_ids=["att-1", "att-2"])
    assert sent(configured)[0]["message"] == {
        "type": "Text",
        "text": "the receipt",
        "content": [
            {"contentType": "Attachment", "attachment": {"id": "att-1"}},
            {"contentType": "Attachment", "attachment": {"id": "att-2"}},
        ],
    }


def test_nothing_to_send_is_rejected(configured: GuestProtocol) -> None:
    with pytest.raises(CommandRejected) as info:
        configured.send_message(tracing_id="m")
    assert info.value.reason == "schema_invalid"


def test_text_limit_is_4096_utf8_bytes(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="ok", text="é" * 2048)  # exactly 4096 bytes
    with pytest.raises(CommandRejected) as info:
        configured.send_message(tracing_id="big", text="é" * 2048 + "x")
    assert info.value.reason == "message_too_long"
    assert "4097" in info.value.detail
    assert [f["tracingId"] for f in sent(configured)] == ["ok"]
    assert [p.tracing_id for p in configured.pending] == ["ok"]


def test_attribute_limit_defaults_to_2048_and_follows_the_session_response() -> None:
    p = new_protocol()
    with pytest.raises(CommandRejected) as info:  # size checks come before state checks
        p.send_message(tracing_id="m", text="x", custom_attributes={"k": "v" * 2048})
    assert info.value.reason == "attributes_too_large"
    p.connection_made()
    p.configure(tracing_id="t")
    feed(p, wire.session_response("t", maxCustomDataBytes=10))
    p.frames_to_send()
    p.send_message(tracing_id="m1", text="x", custom_attributes={"abcd": "efghij"})  # 10 bytes
    with pytest.raises(CommandRejected, match="attributes_too_large"):
        p.send_message(tracing_id="m2", text="x", custom_attributes={"abcd": "efghijk"})
    with pytest.raises(CommandRejected, match="attributes_too_large"):
        p.send_join(custom_attributes={"abcd": "efghijk"})
    assert len(p.frames_to_send()) == 1


def test_typing_and_join_shapes(configured: GuestProtocol) -> None:
    configured.send_typing(tracing_id="ty")
    configured.send_join(tracing_id="jo", custom_attributes={"a": "b"})
    configured.clear_conversation(tracing_id="cl")
    assert [f["message"] for f in sent(configured)] == [
        {"type": "Event", "events": [{"eventType": "Typing", "typing": {"type": "On"}}]},
        {
            "type": "Event",
            "events": [{"eventType": "Presence", "presence": {"type": "Join"}}],
            "channel": {"metadata": {"customAttributes": {"a": "b"}}},
        },
        {"type": "Event", "events": [{"eventType": "Presence", "presence": {"type": "Clear"}}]},
    ]
    assert configured.pending == (
        PendingRequest("jo", "onMessage", event="Join", has_attributes=True),
        PendingRequest("cl", "onMessage", event="Clear"),
    )
    assert configured.recent_typing == ("ty",)  # written, never pending


# --- acknowledgement and inbound echoes (§4.3, §5.3) --------------------------------------------------


def test_inbound_echo_acknowledges_the_message(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="m-42", text="hello")
    [event] = feed(configured, wire.inbound_echo("m-42"))
    assert isinstance(event, MessageEchoed)
    assert event.tracing_id == "m-42"
    assert event.request == text_request("m-42")
    assert event.message.id == "5befde6373a23f32f20b59b4e1cba0e6"
    assert configured.pending == ()


def test_inbound_message_from_another_connection_has_no_request(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="m-42", text="hello")
    events = feed(configured, wire.inbound_echo(None, "from my phone"), wire.inbound_echo("someone-else"))
    assert [(type(e), e.request) for e in events if isinstance(e, MessageEchoed)] == [
        (MessageEchoed, None),
        (MessageEchoed, None),
    ]
    assert [p.tracing_id for p in configured.pending] == ["m-42"]


def test_inbound_typing_and_join_echoes_only_resolve_the_request(configured: GuestProtocol) -> None:
    configured.send_typing(tracing_id="ty")
    configured.send_join(tracing_id="jo")
    join_echo = wire.frame(
        "StructuredMessage",
        {
            "type": "Event",
            "direction": "Inbound",
            "id": "j1",
            "events": [{"eventType": "Presence", "presence": {"type": "Join"}}],
        },
        type_="message",
        tracing_id="jo",
    )
    assert feed(configured, wire.typing_on(None, direction="Inbound", tracing_id="ty"), join_echo) == []
    assert configured.pending == ()
    assert configured.recent_typing == ()  # the typing echo settled the notice


# --- outbound messages and events (§5.2, §5.3) --------------------------------------------------------


def test_outbound_text_and_structured(configured: GuestProtocol) -> None:
    structured = wire.frame(
        "StructuredMessage",
        {
            "type": "Structured",
            "direction": "Outbound",
            "id": "q1",
            "text": "Pick one",
            "content": [{"contentType": "QuickReply", "quickReply": {"text": "Yes", "payload": "yes"}}],
        },
        type_="message",
    )
    events = feed(configured, wire.outbound_text(), structured)
    assert [type(e) for e in events] == [AgentMessage, AgentMessage]
    assert isinstance(events[0], AgentMessage)
    assert events[0].message.text == "Hi! I'm the order assistant."
    assert events[0].message.originating_entity == "Bot"


def test_agent_typing_duration_and_default(configured: GuestProtocol) -> None:
    events = feed(configured, wire.typing_on(3000), wire.typing_on(None))
    assert [(type(e), getattr(e, "duration_ms", None)) for e in events] == [
        (AgentTyping, 3000),
        (AgentTyping, 5000),
    ]


def test_read_only_disconnect_as_seen_in_real_traffic(configured: GuestProtocol) -> None:
    [event] = feed(configured, wire.disconnect_read_only("true"))
    assert isinstance(event, ConversationDisconnected)
    assert event.read_only is True
    assert event.message.channel is not None
    assert configured.state is ProtocolState.READ_ONLY
    with pytest.raises(GenesysProtocolError, match="read_only"):
        configured.send_message(tracing_id="m", text="still there?")


@pytest.mark.parametrize(("value", "read_only"), [(True, True), ("TRUE", True), ("false", False), (None, False)])
def test_disconnect_read_only_flag_variants(configured: GuestProtocol, value: Any, read_only: bool) -> None:
    [event] = feed(configured, wire.disconnect_read_only(value))
    assert isinstance(event, ConversationDisconnected)
    assert event.read_only is read_only
    assert configured.state is (ProtocolState.READ_ONLY if read_only else ProtocolState.CONFIGURED)


def test_unhandled_outbound_event_is_reported(configured: GuestProtocol) -> None:
    cobrowse = wire.frame(
        "StructuredMessage",
        {
            "type": "Event",
            "direction": "Outbound",
            "id": "c",
            "events": [{"eventType": "CoBrowse", "coBrowse": {"type": "Offering"}}],
        },
        type_="message",
    )
    [event] = feed(configured, cobrowse)
    assert isinstance(event, UnknownFrame)
    assert event.reason == "unhandled"


# --- errors (§6) --------------------------------------------------------------------------------------


def test_409_read_only_error(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="m", text="hi")
    [event] = feed(configured, wire.string_error(409, "Session is read-only, no new messages allowed", "m"))
    assert event == ErrorReceived(409, "Session is read-only, no new messages allowed", text_request("m"))
    assert configured.state is ProtocolState.READ_ONLY


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (4011, "Message length 5000 is larger than 4096"),
        (4013, "Custom Attributes in channel metadata is larger than 2048 bytes"),
        (5000, "Request failed."),
    ],
)
def test_errors_attributed_by_tracing_id(configured: GuestProtocol, code: int, text: str) -> None:
    configured.send_message(tracing_id="m1", text="a")
    configured.send_message(tracing_id="m2", text="b")
    [event] = feed(configured, wire.string_error(code, text, "m2"))
    assert event == ErrorReceived(code, text, text_request("m2"))
    assert [p.tracing_id for p in configured.pending] == ["m1"]
    assert configured.state is ProtocolState.CONFIGURED


def test_untraced_error_goes_to_the_oldest_pending_message(configured: GuestProtocol) -> None:
    configured.request_jwt(tracing_id="j")
    configured.send_message(tracing_id="m1", text="a")
    configured.send_message(tracing_id="m2", text="b")
    [event] = feed(configured, wire.string_error(4011, "Message length 5000 is larger than 4096"))
    assert isinstance(event, ErrorReceived)
    assert event.request == text_request("m1")


def test_error_with_a_foreign_tracing_id_is_attributed_to_nothing(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="m1", text="a")
    [event] = feed(configured, wire.string_error(5000, "Request failed.", "not-ours"))
    assert event == ErrorReceived(5000, "Request failed.", None)
    assert len(configured.pending) == 1


def test_typing_disabled_403(configured: GuestProtocol) -> None:
    configured.send_typing(tracing_id="ty")
    [event] = feed(configured, wire.string_error(403, "Turn on the Feature Toggle or fix the configuration.", "ty"))
    assert event == ErrorReceived(
        403, "Turn on the Feature Toggle or fix the configuration.", PendingRequest("ty", "onMessage", event="Typing")
    )


def test_4006_is_an_error_and_an_expiry(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="m", text="a")
    events = feed(configured, wire.string_error(4006, "Session has expired", "m"))
    assert events == [ErrorReceived(4006, "Session has expired", text_request("m")), SessionExpired()]
    assert configured.state is ProtocolState.CLOSED


def test_error_class_frame(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="m", text="a")
    [event] = feed(
        configured,
        wire.frame("Error", {"errorCode": 4020, "errorMessage": "missing parameter"}, code=4020, tracing_id="m"),
    )
    assert event == ErrorReceived(4020, "missing parameter", text_request("m"))


@pytest.mark.parametrize(
    ("code", "message"), [(4029, "Message rate too high for this session"), (429, "Message rate too high")]
)
def test_too_many_requests_both_codes(configured: GuestProtocol, code: int, message: str) -> None:
    configured.send_message(tracing_id="m", text="a")
    body = {"errorCode": code, "errorMessage": message, "retryAfter": 3}
    [event] = feed(configured, wire.frame("TooManyRequestsErrorMessage", body, code=429, tracing_id="m"))
    assert event == RateLimited(3.0, code, message, text_request("m"))
    assert configured.state is ProtocolState.CONFIGURED


def test_rate_limit_without_retry_after_uses_the_default(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="m", text="a")
    configured.send_message(tracing_id="m2", text="b")
    events = feed(
        configured,
        wire.frame("TooManyRequestsErrorMessage", {"errorCode": 4029}, code=429, tracing_id="m"),
        wire.string_error(429, "slow down", "m2"),
    )
    assert events == [
        RateLimited(3.0, 4029, "", text_request("m")),
        RateLimited(3.0, 429, "slow down", text_request("m2")),
    ]


# --- session-level events (§5.4) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"), [({}, None), ({"reason": "signedIn"}, "signedIn"), ({"reasonCode": "signedIn"}, "signedIn")]
)
def test_connection_closed_reason_spellings(
    configured: GuestProtocol, body: dict[str, Any], reason: str | None
) -> None:
    assert feed(configured, wire.frame("ConnectionClosedEvent", body, type_="message")) == [ConnectionClosed(reason)]
    assert configured.state is ProtocolState.CLOSED


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        ("SessionExpiredEvent", SessionExpired()),
        ("SessionClearedEvent", SessionCleared()),
        ("LogoutEvent", LoggedOut()),
    ],
)
def test_session_ending_events(configured: GuestProtocol, cls: str, expected: ProtocolEvent) -> None:
    assert feed(configured, wire.frame(cls, {}, type_="message")) == [expected]
    assert configured.state is ProtocolState.CLOSED
    with pytest.raises(GenesysProtocolError, match="closed"):
        configured.send_message(tracing_id="m", text="a")


def test_session_expired_event_without_body(configured: GuestProtocol) -> None:
    assert feed(configured, '{"type":"response","class":"SessionExpiredEvent","code":200}') == [SessionExpired()]


def test_clear_flow(configured: GuestProtocol) -> None:
    configured.clear_conversation(tracing_id="cl")
    events = feed(
        configured,
        wire.frame("string", "", tracing_id="cl"),  # the 200 answer (§4.3g)
        wire.frame("SessionClearedEvent", {}, type_="message"),
        wire.frame("ConnectionClosedEvent", {}, type_="message"),
    )
    assert events == [SessionCleared(), ConnectionClosed(None)]
    assert configured.pending == ()


def test_clear_not_supported(configured: GuestProtocol) -> None:
    configured.clear_conversation(tracing_id="cl")
    [event] = feed(configured, wire.string_error(403, "Presence events Conversation Clear are not supported", "cl"))
    assert isinstance(event, ErrorReceived)
    assert event.request == PendingRequest("cl", "onMessage", event="Clear")


def test_close_session_then_start_new_on_the_same_socket(configured: GuestProtocol) -> None:
    feed(configured, wire.disconnect_read_only())
    configured.close_session(tracing_id="c")
    assert sent(configured) == [
        {"action": "closeSession", "token": TOKEN, "tracingId": "c", "closeAllConnections": True}
    ]
    assert feed(configured, wire.frame("SessionResponse", {"connected": False, "readOnly": True}, tracing_id="c")) == [
        SessionClosed()
    ]
    assert configured.state is ProtocolState.CLOSED
    configured.configure(start_new=True, tracing_id="t2")
    assert sent(configured)[0]["startNew"] is True
    [event] = feed(configured, wire.session_response("t2"))
    assert event == Configured(new_session=True, read_only=False)
    assert configured.state is ProtocolState.CONFIGURED


# --- echo, jwt, configuration (§4.4, §4.5, §4.8) ------------------------------------------------------


def test_echo_round_trip_with_string_metadata(configured: GuestProtocol) -> None:
    configured.echo(tracing_id="hc-7")
    assert sent(configured) == [
        {"action": "echo", "token": TOKEN, "tracingId": "hc-7", "message": {"type": "Text", "text": "ping"}}
    ]
    reply = (
        '{"type":"response","class":"StructuredMessage","code":200,"tracingId":"hc-7",'
        '"body":{"type":"Text","direction":"Inbound","id":"9d2c","text":"ping",'
        '"metadata":{"durationSeconds":"259200","expirationDate":"1767268800"}}}'
    )
    assert feed(configured, reply) == [
        EchoReplied("hc-7", duration_s=259200, expires_at=datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
    ]
    assert configured.pending == ()


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"durationSeconds": str(10**12), "expirationDate": 7 * 10**400}, EchoReplied("hc-8")),
        ({"durationSeconds": -5, "expirationDate": "-1"}, EchoReplied("hc-8")),
        ({"durationSeconds": "0", "expirationDate": "1767268800"},
         EchoReplied("hc-8", expires_at=datetime(2026, 1, 1, 12, 0, tzinfo=UTC))),
        ({"durationSeconds": 47_347_200}, EchoReplied("hc-8", duration_s=47_347_200)),  # 18 months: kept
    ],
)  # fmt: skip
def test_a_garbled_session_lifetime_in_an_echo_reply_is_ignored(
    configured: GuestProtocol, metadata: dict[str, object], expected: EchoReplied
) -> None:
    configured.echo(tracing_id="hc-8")
    body = {"type": "Text", "direction": "Inbound", "id": "9d2d", "text": "ping", "metadata": metadata}
    assert feed(configured, wire.frame("StructuredMessage", body, tracing_id="hc-8")) == [expected]


@pytest.mark.parametrize("duration", [10**12, -(10**11), 0])
def test_a_garbled_session_lifetime_in_a_session_response_is_ignored(duration: int) -> None:
    p = new_protocol()
    p.connection_made()
    p.configure()
    events = feed(p, wire.session_response(durationSeconds=duration))
    assert events == [Configured(new_session=True, read_only=False)]


def test_echo_reply_from_an_older_server(configured: GuestProtocol) -> None:
    configured.echo(tracing_id="hc")
    body = {"type": "Text", "direction": "Inbound", "id": "1", "text": "ping"}
    assert feed(configured, wire.frame("StructuredMessage", body)) == [EchoReplied(None)]


def test_jwt(configured: GuestProtocol) -> None:
    configured.request_jwt(tracing_id="j-1")
    assert sent(configured) == [{"action": "getJwt", "token": TOKEN, "tracingId": "j-1"}]
    [event] = feed(configured, wire.frame("JwtResponse", {"jwt": "ey.secret", "exp": 1767268800}, tracing_id="j-1"))
    assert event == JwtIssued("ey.secret", 1767268800.0, PendingRequest("j-1", "getJwt"))
    assert "ey.secret" not in repr(event)


def test_get_configuration(configured: GuestProtocol) -> None:
    configured.get_configuration(tracing_id="g")
    assert sent(configured) == [
        {"action": "getConfiguration", "token": TOKEN, "tracingId": "g", "deploymentId": DEPLOYMENT}
    ]
    body = {
        "allowedMedia": {"inbound": {"fileTypes": [{"type": "*/*"}]}},
        "maxCustomDataBytes": 2048,
        "messageRoutingEnabled": True,
    }
    [event] = feed(configured, wire.frame("GetConfigurationResponse", body, tracing_id="g"))
    assert event == ConfigurationReceived(2048, ("*/*",), None, (), True, None, PendingRequest("g", "getConfiguration"))


# --- attachments (§4.6) -------------------------------------------------------------------------------


def test_upload_flow(configured: GuestProtocol) -> None:
    configured.request_upload(
        tracing_id="u", attachment_id="a-1", file_name="receipt.png", file_type="image/png", file_size=48213
    )
    assert sent(configured) == [
        {
            "action": "onAttachment",
            "token": TOKEN,
            "tracingId": "u",
            "attachmentId": "a-1",
            "fileName": "receipt.png",
            "fileType": "image/png",
            "fileSize": 48213,
            "errorsAsJson": True,
        }
    ]
    presigned = {
        "attachmentId": "a-1",
        "url": "https://upload.example.invalid/x",
        "headers": {"x-amz-tagging": "t"},
        "fileName": "receipt.png",
        "fileSize": 48213,
        "fileType": "image/png",
    }
    success = {
        "attachmentId": "a-1",
        "downloadUrl": "https://dl.example.invalid/x",
        "timestamp": "2025-05-01T09:15:02.481Z",
    }
    events = feed(
        configured,
        wire.frame("PresignedUrlResponse", presigned),  # no tracingId: matched by attachment id
        wire.frame("UploadSuccessEvent", success, type_="message"),
    )
    assert events == [
        UploadUrlIssued(
            "a-1",
            "https://upload.example.invalid/x",
            {"x-amz-tagging": "t"},
            PendingRequest("u", "onAttachment", "a-1"),
            refresh=False,
        ),
        UploadSucceeded("a-1", "https://dl.example.invalid/x"),
    ]


def test_upload_refused_and_failed(configured: GuestProtocol) -> None:
    configured.request_upload(
        tracing_id="u", attachment_id="a-1", file_name="x.exe", file_type="application/x", file_size=1
    )
    refused = {"attachmentId": "a-1", "errorCode": 4001, "errorMessage": "file type invalid"}
    failure = {"attachmentId": "a-2", "errorCode": 4003, "errorMessage": "virus", "timestamp": "2025-05-01T09:15:02Z"}
    events = feed(
        configured,
        wire.frame("GenerateUrlError", refused, type_="message"),
        wire.frame("UploadFailureEvent", failure, type_="message"),
    )
    assert events == [
        UploadFailed("a-1", 4001, "file type invalid", PendingRequest("u", "onAttachment", "a-1")),
        UploadFailed("a-2", 4003, "virus"),
    ]


def test_refresh_and_delete_attachment(configured: GuestProtocol) -> None:
    configured.refresh_attachment_url(tracing_id="r", attachment_id="a-1")
    configured.delete_attachment(tracing_id="d", attachment_id="a-2")
    assert [f["action"] for f in sent(configured)] == ["getAttachment", "deleteAttachment"]
    refresh = {"attachmentId": "a-1", "url": "https://dl.example.invalid/new", "headers": {}, "fileSize": 10}
    events = feed(
        configured,
        wire.frame("PresignedUrlResponse", refresh, tracing_id="r"),
        wire.frame("AttachmentDeletedResponse", {"attachmentId": "a-2"}, type_="message"),
    )
    assert events == [
        UploadUrlIssued(
            "a-1", "https://dl.example.invalid/new", {}, PendingRequest("r", "getAttachment", "a-1"), refresh=True
        ),
        AttachmentDeleted("a-2", PendingRequest("d", "deleteAttachment", "a-2")),
    ]


# --- connections (§2.4, §4.9) -------------------------------------------------------------------------


def test_connection_lost_returns_unanswered_requests(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="m1", text="a")
    configured.send_typing(tracing_id="ty")
    configured.echo(tracing_id="e")
    unsent = configured.frames_to_send()
    assert len(unsent) == 3
    configured.send_message(tracing_id="m2", text="b")  # queued, never written
    lost = configured.connection_lost()
    assert lost == [text_request("m1"), PendingRequest("e", "echo"), text_request("m2")]
    assert configured.state is ProtocolState.DISCONNECTED
    assert configured.frames_to_send() == []
    assert configured.pending == ()
    assert configured.recent_typing == ()
    assert configured.limits is not None  # remembered across connections
    configured.connection_made()
    assert configured.state is ProtocolState.CONNECTED
    with pytest.raises(GenesysProtocolError, match="connected"):
        configured.send_message(tracing_id="m3", text="c")


def test_closed_stays_closed_after_connection_lost(configured: GuestProtocol) -> None:
    feed(configured, wire.frame("SessionExpiredEvent", {}))
    assert configured.connection_lost() == []
    assert configured.state is ProtocolState.CLOSED
    configured.connection_made()  # a fresh session may follow on a new socket
    assert configured.state is ProtocolState.CONNECTED


def test_connection_made_twice_is_a_bug() -> None:
    p = new_protocol()
    p.connection_made()
    with pytest.raises(GenesysProtocolError, match="connected"):
        p.connection_made()


def test_generated_tracing_ids() -> None:
    p = new_protocol()
    p.connection_made()
    p.configure()
    assert sent(p)[0]["tracingId"] == "gen-1"
    assert (
        GuestProtocol(token="t", deployment_id="d")._new_id() != GuestProtocol(token="t", deployment_id="d")._new_id()
    )


def test_token_is_not_in_reprs(configured: GuestProtocol) -> None:
    assert TOKEN not in repr(configured)


# --- leniency (§3.2) ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason", "label"),
    [
        ("not json at all", "not_json", "<not_json>"),
        ("[1, 2]", "not_object", "<not_object>"),
        ('"a string"', "not_object", "<not_object>"),
        ('{"type":"message","class":"BrandNewEvent","code":200,"body":{"x":1}}', "unknown_class", "BrandNewEvent"),
        ('{"type":"message","class":"Unknown","code":200,"body":{}}', "unknown_class", "Unknown"),
        ('{"type":"message","code":200,"body":{}}', "unknown_class", "<unknown_class>"),
        (
            '{"type":"response","class":"SessionResponse","code":200,"body":{"newSession":true}}',
            "invalid_body",
            "SessionResponse",
        ),
        ('{"type":"response","class":"JwtResponse","code":200,"body":"nope"}', "invalid_body", "JwtResponse"),
        ('{"class":"string","body":"no code"}', "unhandled", "string"),
    ],
)
def test_odd_frames_are_reported(configured: GuestProtocol, text: str, reason: str, label: str) -> None:
    [event] = feed(configured, text)
    assert isinstance(event, UnknownFrame)
    assert (event.reason, event.frame_class) == (reason, label)
    assert configured.state is ProtocolState.CONFIGURED


def test_unknown_class_keeps_the_raw_dict(configured: GuestProtocol) -> None:
    [event] = feed(configured, '{"type":"message","class":"BrandNewEvent","code":200,"body":{"x":1}}')
    assert isinstance(event, UnknownFrame)
    assert event.raw == {"type": "message", "class": "BrandNewEvent", "code": 200, "body": {"x": 1}}


def test_dispatch_is_on_class_not_type(configured: GuestProtocol) -> None:
    # A fixture carries type "message" for the echo of the guest's own onMessage (§3.2).
    configured.send_message(tracing_id="m", text="a")
    [event] = feed(
        configured,
        wire.frame(
            "StructuredMessage", {"type": "Text", "direction": "Inbound", "id": "1"}, type_="response", tracing_id="m"
        ),
    )
    assert isinstance(event, MessageEchoed)
    assert event.request is not None


def test_bytes_frames_are_accepted(configured: GuestProtocol) -> None:
    configured.receive(wire.outbound_text().encode())
    [event] = configured.events_received()
    assert isinstance(event, AgentMessage)
