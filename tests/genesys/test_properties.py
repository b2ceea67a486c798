"""Property tests: whatever the peer sends, ``receive`` never raises (§3.2 "never fatal")."""

from __future__ import annotations

import json
from typing import Any, get_args

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.genesys.events import ProtocolEvent
from bridge.genesys.frames import BODY_MODELS
from bridge.genesys.protocol import GuestProtocol

EVENT_TYPES = get_args(ProtocolEvent)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)

classes = st.sampled_from([*BODY_MODELS, "string", "Unknown", "Whatever"])
known_keys = st.sampled_from([
    "connected", "newSession", "readOnly", "maxCustomDataBytes", "expirationDate", "type", "direction", "id", "text",
    "content", "events", "metadata", "channel", "attachmentId", "url", "headers", "errorCode", "retryAfter", "reason",
    "reasonCode", "jwt", "exp", "allowedMedia",
])  # fmt: skip
bodies = st.dictionaries(known_keys | st.text(max_size=8), json_values, max_size=8) | json_values
envelopes = st.fixed_dictionaries(
    {"class": classes, "body": bodies},
    optional={
        "type": st.sampled_from(["response", "message", "x"]) | json_values,
        "code": st.sampled_from([200, 400, 403, 409, 429, 4006, 4011, 4029, 5000]) | json_values,
        "tracingId": st.sampled_from(["m1", "e1", "t1"]) | json_values,
    },
)


def fresh(configured: bool) -> GuestProtocol:
    p = GuestProtocol(token="tok", deployment_id="dep")
    p.connection_made()
    p.configure(tracing_id="t1")
    if configured:
        p.receive('{"class":"SessionResponse","code":200,"body":{"connected":true}}')
        p.send_message(tracing_id="m1", text="hi")
        p.echo(tracing_id="e1")
    p.events_received()
    return p


def check(p: GuestProtocol) -> None:
    events = p.events_received()
    assert all(isinstance(e, EVENT_TYPES) for e in events)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.text(max_size=200), st.booleans())
def test_arbitrary_text_never_raises(text: str, configured: bool) -> None:
    p = fresh(configured)
    p.receive(text)
    check(p)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=100))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    p = fresh(True)
    p.receive(data)
    check(p)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(envelopes, min_size=1, max_size=4), st.booleans())
def test_arbitrary_envelopes_never_raise(objs: list[dict[str, Any]], configured: bool) -> None:
    p = fresh(configured)
    for obj in objs:
        p.receive(json.dumps(obj))
    check(p)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(json_values)
def test_arbitrary_json_never_raises(value: Any) -> None:
    p = fresh(True)
    p.receive(json.dumps(value))
    check(p)
