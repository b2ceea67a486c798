"""Which request an error frame answers, traced or not (protocol reference §6, §10). Frame by frame, no loop.

Real error frames often carry no ``tracingId`` (the KMP fixtures of 403, 4006, 4007, 4011, 4013 and 429 are
all untraced), so an untraced error goes to the pending request that can legally receive its class, or to
none. Typing notices are never pending.
"""

from __future__ import annotations

import pytest

from bridge.genesys.events import (
    ErrorReceived,
    MessageEchoed,
    PendingRequest,
    ProtocolState,
    RateLimited,
    RequestKind,
    SessionExpired,
    UploadFailed,
)
from bridge.genesys.pending import (
    ERROR_OWNERS,
    RECENT_TYPING_LIMIT,
    ErrorClass,
    PendingRequests,
    classify_error,
)
from bridge.genesys.protocol import GuestProtocol
from genesys_bridge_client.contract.content import ButtonResponse
from tests.genesys import wire
from tests.genesys.driver import configured_protocol, feed, new_protocol, sent, text_request

TOO_LONG = "Message length 5000 is larger than 4096"
ATTRIBUTES_TOO_LARGE = "Custom Attributes in channel metadata is larger than 2048 bytes"
TYPING_OFF = "Turn on the Feature Toggle or fix the configuration."
CLEAR_OFF = "Presence events Conversation Clear are not supported"
QUICK_REPLY = ButtonResponse(type="quick_reply", text="Track my order", payload="track_order")


def too_many_requests(tracing_id: str | None = None) -> str:
    """The KMP fixture: ``TooManyRequestsErrorMessage`` 429 / errorCode 4029, no tracingId (§5.4)."""
    body = {"retryAfter": 3, "errorCode": 4029, "errorMessage": "Message rate too high for this session"}
    return wire.frame("TooManyRequestsErrorMessage", body, code=429, tracing_id=tracing_id)


def written(p: GuestProtocol) -> None:
    """Collect (and drop) the queued frames: they were written to the socket."""
    p.frames_to_send()


@pytest.fixture
def configured() -> GuestProtocol:
    return configured_protocol()


# --- the table, pure -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "detail", "expected"),
    [
        (4006, "Session has expired", ErrorClass.SESSION),
        (4007, "Session not found", ErrorClass.SESSION),
        (4011, TOO_LONG, ErrorClass.TEXT_TOO_LONG),
        (4013, ATTRIBUTES_TOO_LARGE, ErrorClass.ATTRIBUTES_TOO_LARGE),
        (429, "ConfigureSession rate too high for this session", ErrorClass.RATE_LIMITED),
        (4029, "Message rate too high for this session", ErrorClass.RATE_LIMITED),
        (4001, "file type invalid", ErrorClass.UPLOAD_REFUSED),
        (4005, "file name too long", ErrorClass.UPLOAD_REFUSED),
        (4008, "Attachment has expired", ErrorClass.ATTACHMENT_UNUSABLE),
        (4010, "Attachment not successfully uploaded", ErrorClass.ATTACHMENT_UNUSABLE),
        (403, CLEAR_OFF, ErrorClass.CLEAR_REFUSED),
        (403, TYPING_OFF, ErrorClass.FEATURE_OFF),
        (403, "HTTP authorization error", ErrorClass.OTHER),
        (409, "Session is read-only, no new messages allowed", ErrorClass.OTHER),
        (4020, "missing parameter", ErrorClass.OTHER),
        (5000, "Request failed.", ErrorClass.OTHER),
        (0, "", ErrorClass.OTHER),
    ],
)
def test_error_classes(code: int, detail: str, expected: ErrorClass) -> None:
    assert classify_error(code, detail) is expected


def test_every_error_class_has_a_row() -> None:
    assert set(ERROR_OWNERS) == set(ErrorClass)
    assert ERROR_OWNERS[ErrorClass.SESSION] == ()


def test_the_table_on_bare_pending_requests() -> None:
    pending = PendingRequests()
    pending.add(PendingRequest("jwt", "getJwt"))
    pending.add(PendingRequest("qr", "onMessage"))
    pending.add(PendingRequest("m1", "onMessage", has_text=True))
    pending.add(PendingRequest("m2", "onMessage", has_text=True, has_attributes=True))
    assert pending.take_owner(ErrorClass.SESSION, configuring=False) is None
    assert pending.take_owner(ErrorClass.CLEAR_REFUSED, configuring=False) is None
    assert pending.take_owner(ErrorClass.ATTRIBUTES_TOO_LARGE, configuring=False) == PendingRequest(
        "m2", "onMessage", has_text=True, has_attributes=True
    )
    assert pending.take_owner(ErrorClass.TEXT_TOO_LONG, configuring=False) == text_request("m1")
    assert pending.take_owner(ErrorClass.TEXT_TOO_LONG, configuring=False) is None
    assert pending.take_owner(ErrorClass.OTHER, configuring=False) == PendingRequest("qr", "onMessage")
    assert [p.tracing_id for p in pending] == ["jwt"]


def test_request_kinds() -> None:
    assert [
        PendingRequest("a", "configureSession").kind,
        PendingRequest("b", "onMessage", has_text=True).kind,
        PendingRequest("c", "onMessage", event="Join").kind,
        PendingRequest("d", "onMessage", event="Typing").kind,
        PendingRequest("e", "getAttachment", "a-1").kind,
        PendingRequest("f", "echo").kind,
    ] == [
        RequestKind.CONFIGURE,
        RequestKind.MESSAGE,
        RequestKind.PRESENCE,
        RequestKind.TYPING,
        RequestKind.ATTACHMENT,
        RequestKind.OTHER,
    ]


def test_what_a_message_carried_is_recorded(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="m", text="see attached", attachment_ids=["a-1"], custom_attributes={"k": "v"})
    configured.send_message(tracing_id="qr", button_response=QUICK_REPLY)
    configured.send_join(tracing_id="jo", custom_attributes={"k": "v"})
    assert configured.pending == (
        PendingRequest("m", "onMessage", has_text=True, has_attributes=True, attachment_ids=("a-1",)),
        PendingRequest("qr", "onMessage"),
        PendingRequest("jo", "onMessage", event="Join", has_attributes=True),
    )


# --- typing is never pending (§4.3f, §14.6) ------------------------------------------------------------


def test_typing_is_written_but_never_pending(configured: GuestProtocol) -> None:
    configured.send_typing(tracing_id="ty")
    assert [f["message"]["events"][0]["eventType"] for f in sent(configured)] == ["Typing"]
    assert configured.pending == ()
    assert configured.recent_typing == ("ty",)
    assert configured.connection_lost() == []
    assert configured.recent_typing == ()


def test_typing_then_untraced_429_goes_to_the_message(configured: GuestProtocol) -> None:
    configured.send_typing(tracing_id="ty")  # never echoed: once, it stayed pending and took the 429
    configured.send_message(tracing_id="m", text="where is my order?")
    written(configured)
    assert configured.pending == (text_request("m"),)
    assert feed(configured, too_many_requests()) == [
        RateLimited(3.0, 4029, "Message rate too high for this session", text_request("m"))
    ]
    assert configured.pending == ()


def test_recent_typing_is_bounded(configured: GuestProtocol) -> None:
    for n in range(RECENT_TYPING_LIMIT + 2):
        configured.send_typing(tracing_id=f"ty{n}")
    assert configured.recent_typing == tuple(f"ty{n}" for n in range(2, RECENT_TYPING_LIMIT + 2))
    assert configured.pending == ()


def test_traced_typing_403_still_reaches_the_typing_notice(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="m", text="hi")
    configured.send_typing(tracing_id="ty")
    [event] = feed(configured, wire.string_error(403, TYPING_OFF, "ty"))
    assert event == ErrorReceived(403, TYPING_OFF, PendingRequest("ty", "onMessage", event="Typing"))
    assert configured.pending == (text_request("m"),)
    assert configured.recent_typing == ()


def test_untraced_typing_403_goes_to_the_typing_notice_not_the_message(configured: GuestProtocol) -> None:
    # The KMP fixture of a deployment with typing off carries no tracingId.
    configured.send_message(tracing_id="m", text="hi")
    configured.send_typing(tracing_id="ty")
    [event] = feed(configured, wire.string_error(403, TYPING_OFF))
    assert event == ErrorReceived(403, TYPING_OFF, PendingRequest("ty", "onMessage", event="Typing"))
    assert configured.pending == (text_request("m"),)


def test_untraced_feature_403_without_recent_typing_is_any_error(configured: GuestProtocol) -> None:
    configured.send_typing(tracing_id="ty")
    feed(configured, wire.typing_on(None, direction="Inbound", tracing_id="ty"))  # echoed: settled
    configured.send_message(tracing_id="m", text="hi")
    [event] = feed(configured, wire.string_error(403, TYPING_OFF))
    assert event == ErrorReceived(403, TYPING_OFF, text_request("m"))


# --- untraced errors go to a request that can legally receive them ------------------------------------


def test_untraced_4011_goes_to_the_message_with_text(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="qr", button_response=QUICK_REPLY)  # older, but has no text of ours
    configured.send_message(tracing_id="m", text="x")
    [event] = feed(configured, wire.string_error(4011, TOO_LONG))
    assert event == ErrorReceived(4011, TOO_LONG, text_request("m"))
    assert configured.pending == (PendingRequest("qr", "onMessage"),)


def test_untraced_4013_goes_to_the_message_with_attributes(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="m1", text="plain")
    configured.send_message(tracing_id="m2", text="tagged", custom_attributes={"orderId": "A-991"})
    [event] = feed(configured, wire.string_error(4013, ATTRIBUTES_TOO_LARGE))
    assert event == ErrorReceived(
        4013, ATTRIBUTES_TOO_LARGE, PendingRequest("m2", "onMessage", has_text=True, has_attributes=True)
    )
    assert configured.pending == (text_request("m1"),)


def test_untraced_4013_may_go_to_the_autostart_join(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="m", text="plain")
    configured.send_join(tracing_id="jo", custom_attributes={"orderId": "A-991"})
    [event] = feed(configured, wire.string_error(4013, ATTRIBUTES_TOO_LARGE))
    assert isinstance(event, ErrorReceived)
    assert event.request == PendingRequest("jo", "onMessage", event="Join", has_attributes=True)


def test_untraced_429_goes_to_the_last_written_of_two_messages(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="m1", text="one")
    configured.send_message(tracing_id="m2", text="two")
    events = feed(configured, too_many_requests(), wire.string_error(4029, "Message rate too high"))
    assert events == [
        RateLimited(3.0, 4029, "Message rate too high for this session", text_request("m2")),
        # m2 is answered: the newest still unanswered is the best guess for the next one.
        RateLimited(3.0, 4029, "Message rate too high", text_request("m1")),
    ]


def test_untraced_429_after_a_typing_notice_goes_to_the_notice(configured: GuestProtocol) -> None:
    # The rate limiter refuses the newest frame; the earlier message may still be echoed.
    configured.send_message(tracing_id="m", text="one")
    configured.send_typing(tracing_id="ty")
    [event] = feed(configured, too_many_requests())
    assert isinstance(event, RateLimited)
    assert event.request == PendingRequest("ty", "onMessage", event="Typing")
    assert configured.pending == (text_request("m"),)


def test_untraced_errors_with_nothing_legal_pending_go_to_no_request(configured: GuestProtocol) -> None:
    configured.request_jwt(tracing_id="j")
    configured.send_message(tracing_id="qr", button_response=QUICK_REPLY)
    events = feed(
        configured,
        wire.string_error(4011, TOO_LONG),
        wire.string_error(4013, ATTRIBUTES_TOO_LARGE),
        wire.string_error(403, CLEAR_OFF),
        wire.string_error(4010, "Attachment not successfully uploaded"),
    )
    assert events == [
        ErrorReceived(4011, TOO_LONG, None),
        ErrorReceived(4013, ATTRIBUTES_TOO_LARGE, None),
        ErrorReceived(403, CLEAR_OFF, None),
        ErrorReceived(4010, "Attachment not successfully uploaded", None),
    ]
    assert [p.tracing_id for p in configured.pending] == ["j", "qr"]


def test_untraced_429_with_nothing_pending_goes_to_no_request(configured: GuestProtocol) -> None:
    assert feed(configured, too_many_requests()) == [
        RateLimited(3.0, 4029, "Message rate too high for this session", None)
    ]


def test_other_untraced_errors_go_to_the_oldest_pending_message(configured: GuestProtocol) -> None:
    configured.request_jwt(tracing_id="j")
    configured.send_message(tracing_id="qr", button_response=QUICK_REPLY)
    configured.send_message(tracing_id="m", text="x")
    [event] = feed(configured, wire.string_error(5000, "Request failed."))
    assert event == ErrorReceived(5000, "Request failed.", PendingRequest("qr", "onMessage"))


def test_untraced_clear_refusal_goes_to_the_clear(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="m", text="bye")
    configured.clear_conversation(tracing_id="cl")
    [event] = feed(configured, wire.string_error(403, CLEAR_OFF))
    assert event == ErrorReceived(403, CLEAR_OFF, PendingRequest("cl", "onMessage", event="Clear"))
    assert configured.pending == (text_request("m"),)


def test_traced_errors_still_go_by_tracing_id(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="qr", button_response=QUICK_REPLY)
    configured.send_message(tracing_id="m1", text="one")
    configured.send_message(tracing_id="m2", text="two")
    events = feed(
        configured,
        wire.string_error(4011, TOO_LONG, "qr"),  # not a legal owner, but the frame says so
        too_many_requests("m1"),  # not the last written
        wire.string_error(4007, "Session not found", "m2"),
    )
    assert events == [
        ErrorReceived(4011, TOO_LONG, PendingRequest("qr", "onMessage")),
        RateLimited(3.0, 4029, "Message rate too high for this session", text_request("m1")),
        ErrorReceived(4007, "Session not found", text_request("m2")),
    ]
    assert configured.pending == ()


# --- session-level errors (§6) -------------------------------------------------------------------------


def test_untraced_4007_is_session_level(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="m", text="hi")
    [event] = feed(configured, wire.string_error(4007, "Session not found"))
    assert event == ErrorReceived(4007, "Session not found", None)
    assert event.ends_session
    assert configured.pending == (text_request("m"),)


def test_untraced_4006_is_session_level_and_ends_the_session(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="m", text="hi")
    events = feed(configured, wire.string_error(4006, "Session has expired"))
    assert events == [ErrorReceived(4006, "Session has expired", None), SessionExpired()]
    assert isinstance(events[0], ErrorReceived)
    assert events[0].ends_session
    assert configured.state is ProtocolState.CLOSED


def test_only_session_codes_end_the_session() -> None:
    assert not ErrorReceived(4011, TOO_LONG, None).ends_session
    assert not ErrorReceived(403, TYPING_OFF, None).ends_session


# --- configuring (§4.1) --------------------------------------------------------------------------------


def test_untraced_error_while_reconfiguring_goes_to_the_configure(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="m", text="hi")
    configured.configure(tracing_id="t-002")
    [event] = feed(configured, wire.string_error(400, "Request failed."))
    assert event == ErrorReceived(400, "Request failed.", PendingRequest("t-002", "configureSession"))
    assert configured.state is ProtocolState.CONNECTED
    assert configured.pending == (text_request("m"),)


def test_untraced_4006_while_configuring_leaves_no_stale_configure() -> None:
    p = new_protocol()
    p.connection_made()
    p.configure(tracing_id="t-1")
    assert feed(p, wire.string_error(4006, "Session has expired")) == [
        ErrorReceived(4006, "Session has expired", None),
        SessionExpired(),
    ]
    p.configure(start_new=True, tracing_id="t-2")
    assert p.pending == (PendingRequest("t-2", "configureSession"),)
    [event] = feed(p, wire.string_error(400, "Deployment not found"))
    assert event == ErrorReceived(400, "Deployment not found", PendingRequest("t-2", "configureSession"))


# --- attachments (§4.6) --------------------------------------------------------------------------------


def test_attachment_error_naming_its_attachment(configured: GuestProtocol) -> None:
    configured.refresh_attachment_url(tracing_id="r1", attachment_id="a-1")
    configured.refresh_attachment_url(tracing_id="r2", attachment_id="a-2")
    body = {"errorCode": 4009, "errorMessage": "Attachment not found", "attachmentId": "a-2"}
    [event] = feed(configured, wire.frame("Error", body, code=4009))
    assert event == ErrorReceived(4009, "Attachment not found", PendingRequest("r2", "getAttachment", "a-2"))


def test_attachment_error_naming_an_attachment_nobody_asked_about(configured: GuestProtocol) -> None:
    configured.refresh_attachment_url(tracing_id="r1", attachment_id="a-1")
    body = {"errorCode": 4009, "errorMessage": "Attachment not found", "attachmentId": "a-9"}
    [event] = feed(configured, wire.frame("Error", body, code=4009))
    assert event == ErrorReceived(4009, "Attachment not found", None)


def test_untraced_4010_goes_to_the_message_referencing_an_attachment(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="m1", text="no attachment")
    configured.send_message(tracing_id="m2", attachment_ids=["a-1"])
    [event] = feed(configured, wire.string_error(4010, "Attachment not successfully uploaded"))
    assert event == ErrorReceived(
        4010, "Attachment not successfully uploaded", PendingRequest("m2", "onMessage", attachment_ids=("a-1",))
    )


def test_untraced_upload_errors_go_to_the_oldest_upload(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="m", text="hi")
    for n in (1, 2, 3):
        configured.request_upload(
            tracing_id=f"u{n}", attachment_id=f"a-{n}", file_name="x.exe", file_type="application/x", file_size=1
        )
    refused = {"errorCode": 4001, "errorMessage": "file type invalid"}  # GenerateUrlError without the id
    events = feed(
        configured,
        wire.string_error(4002, "file size invalid"),
        wire.frame("GenerateUrlError", refused, type_="message"),
    )
    assert events == [
        ErrorReceived(4002, "file size invalid", PendingRequest("u1", "onAttachment", "a-1")),
        UploadFailed(None, 4001, "file type invalid", PendingRequest("u2", "onAttachment", "a-2")),
    ]
    assert [p.tracing_id for p in configured.pending] == ["m", "u3"]


# --- forgetting a request the caller gave up on -------------------------------------------------------


def test_forget_drops_a_request_so_errors_and_echoes_do_not_find_it(configured: GuestProtocol) -> None:
    configured.send_message(tracing_id="m1", text="one")
    configured.send_message(tracing_id="m2", text="two")
    assert configured.forget("m1") == text_request("m1")
    assert configured.forget("m1") is None
    assert configured.pending == (text_request("m2"),)
    [error] = feed(configured, wire.string_error(5000, "Request failed."))
    assert error == ErrorReceived(5000, "Request failed.", text_request("m2"))
    [late] = feed(configured, wire.inbound_echo("m1"))
    assert isinstance(late, MessageEchoed)
    assert late.request is None


def test_forget_drops_a_recent_typing_notice(configured: GuestProtocol) -> None:
    configured.send_typing(tracing_id="ty")
    assert configured.forget("ty") == PendingRequest("ty", "onMessage", event="Typing")
    [event] = feed(configured, wire.string_error(403, TYPING_OFF, "ty"))
    assert event == ErrorReceived(403, TYPING_OFF, None)
