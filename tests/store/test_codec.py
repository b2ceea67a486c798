"""The record envelope in both formats: round trip, what stays in clear, and every way a body is refused."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from bridge.recent_ids import RecentIds
from bridge.record import REVEAL_SECRETS
from bridge.store.codec import (
    BINARY_VERSION,
    CorruptRecord,
    MarkerEnvelope,
    SessionEnvelope,
    encode_marker,
    encode_record,
    frame_batch,
    media_type,
    open_record,
    parse_envelope,
    unframe_batch,
)
from bridge.store.crypto import KeyRing, SealError, generate_key
from tests.store.helpers import T0, make_record

KEY = generate_key()
KEYS = KeyRing.of(KEY)


def test_round_trip_keeps_every_field_and_the_token() -> None:
    record = make_record("s-1", n=3, closed=False, recent_message_ids=RecentIds(("m-1", "m-2")))
    envelope = parse_envelope(encode_record(record, KEYS, written_at=T0))
    assert isinstance(envelope, SessionEnvelope)
    opened = open_record(envelope, KEYS)
    assert opened == record
    assert opened.token.get_secret_value() == "tok-s-1"


def test_only_routing_facts_are_in_clear() -> None:
    body = encode_record(make_record("s-1", token="SECRET-TOKEN"), KEYS, written_at=T0)
    text = body.decode()
    assert "SECRET-TOKEN" not in text
    assert "pii@example.com" not in text  # custom attributes are sealed too
    assert "dep-1" not in text
    assert set(json.loads(text)) == {"v", "kind", "session_id", "closed", "written_at", "sealed"}


def test_a_json_record_with_a_clear_key_of_its_own_is_read_as_before() -> None:
    """``clear`` is format 2's field; in JSON it is one more key a later writer may add, ignored."""
    body = json.loads(encode_record(make_record("s-1"), KEYS, written_at=T0))
    envelope = parse_envelope(json.dumps({**body, "clear": 5}).encode())
    assert isinstance(envelope, SessionEnvelope)
    assert open_record(envelope, KEYS) == make_record("s-1")


def test_marker_round_trip() -> None:
    envelope = parse_envelope(encode_marker("abc", written_at=T0))
    assert envelope == MarkerEnvelope(v=1, kind="marker", marker_id="abc", written_at=T0)


@pytest.mark.parametrize(
    ("body", "reason", "session_id"),
    [
        (b"\xff\xfe", "not_json", None),
        (b"{not json", "not_json", None),
        (b"[1, 2]", "bad_envelope", None),
        (b'{"v": 2, "kind": "session", "session_id": "s-9"}', "unsupported_version", "s-9"),
        (b'{"kind": "session"}', "unsupported_version", None),
        (b'{"v": 1, "kind": "session", "session_id": "s-9"}', "bad_envelope", "s-9"),
        (b'{"v": 1, "kind": "other", "session_id": "s-9"}', "bad_envelope", "s-9"),
        (b"[" * 100_000, "not_json", None),  # nested too deep for the parser
    ],
)
def test_unreadable_envelopes_are_refused_with_a_reason(body: bytes, reason: str, session_id: str | None) -> None:
    with pytest.raises(CorruptRecord) as info:
        parse_envelope(body)
    assert info.value.reason == reason
    assert info.value.session_id == session_id


def _rewrite(body: bytes, **changes: object) -> SessionEnvelope:
    data = json.loads(body)
    data.update(changes)
    envelope = parse_envelope(json.dumps(data).encode())
    assert isinstance(envelope, SessionEnvelope)
    return envelope


def test_outer_session_id_must_match_the_sealed_one() -> None:
    # Someone (or a bug) copies s-1's sealed record under s-2's name: s-2 must not resume s-1's conversation.
    envelope = _rewrite(encode_record(make_record("s-1"), KEYS, written_at=T0), session_id="s-2")
    with pytest.raises(CorruptRecord) as info:
        open_record(envelope, KEYS)
    assert (info.value.reason, info.value.session_id) == ("session_id_mismatch", "s-2")


def test_outer_closed_flag_must_match_the_sealed_one() -> None:
    envelope = _rewrite(encode_record(make_record("s-1", closed=True), KEYS, written_at=T0), closed=False)
    with pytest.raises(CorruptRecord, match="closed_mismatch"):
        open_record(envelope, KEYS)


def test_sealed_garbage_under_the_right_key_is_bad_payload() -> None:
    envelope = _rewrite(encode_record(make_record("s-1"), KEYS, written_at=T0), sealed=KEYS.seal(b'{"x": 1}'))
    with pytest.raises(CorruptRecord, match="bad_payload"):
        open_record(envelope, KEYS)


def test_wrong_key_raises_seal_error() -> None:
    envelope = parse_envelope(encode_record(make_record("s-1"), KEYS, written_at=T0))
    assert isinstance(envelope, SessionEnvelope)
    with pytest.raises(SealError):
        open_record(envelope, KeyRing.of(generate_key()))


@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_are_refused(body: bytes) -> None:
    reason = None
    try:
        parse_envelope(body)
    except CorruptRecord as exc:
        reason = exc.reason
    assert reason in {None, "not_json", "unsupported_version", "bad_envelope"}


@given(
    st.dictionaries(
        st.sampled_from(["v", "kind", "session_id", "closed", "written_at", "sealed", "x"]),
        st.one_of(st.none(), st.integers(), st.text(max_size=20), st.booleans()),
    )
)
def test_arbitrary_json_objects_parse_or_are_refused(data: dict[str, object]) -> None:
    try:
        envelope = parse_envelope(json.dumps(data).encode())
    except CorruptRecord:
        return
    if isinstance(envelope, SessionEnvelope):
        with pytest.raises((CorruptRecord, SealError)):
            open_record(envelope, KEYS)


def test_a_batch_unframes_into_its_bodies_in_order() -> None:
    bodies = [b'{"a":1}', b"", b"x" * 70_000]
    assert list(unframe_batch(frame_batch(bodies))) == bodies


def test_a_truncated_batch_ends_with_one_unreadable_body() -> None:
    good = encode_record(make_record("a"), KEYS, written_at=T0)
    data = frame_batch([good, encode_record(make_record("b"), KEYS, written_at=T0)])[:-10]
    first, last = unframe_batch(data)
    assert first == good
    with pytest.raises(CorruptRecord, match="not_json"):
        parse_envelope(last)


def test_the_envelope_escapes_the_session_id_and_holds_the_clear_fields() -> None:
    record = make_record('odd "id" ü\\n', closed=True)
    body = encode_record(record, KEYS, written_at=T0)
    data = json.loads(body)
    assert data["session_id"] == 'odd "id" ü\\n'
    assert data["closed"] is True
    assert data["written_at"] == T0.isoformat()
    envelope = parse_envelope(body)
    assert isinstance(envelope, SessionEnvelope)
    assert open_record(envelope, KEYS) == record


def test_only_the_sealed_copy_reveals_the_secrets() -> None:
    record = make_record("s-1", token="tok-secret", auth_jwt=SecretStr("jwt-secret"))
    assert "tok-secret" not in record.model_dump_json()
    assert "jwt-secret" not in json.dumps(record.model_dump(mode="json"))
    revealed = json.loads(record.model_dump_json(context=REVEAL_SECRETS))
    assert (revealed["token"], revealed["auth_jwt"]) == ("tok-secret", "jwt-secret")


# --- format 2 (binary) ------------------------------------------------------------------------------------


def _binary(record_id: str = "s-1", **changes: object) -> bytes:
    return encode_record(make_record(record_id, **changes), KEYS, written_at=T0, record_format=BINARY_VERSION)


@pytest.mark.parametrize("closed", [False, True])
def test_a_binary_record_round_trips_with_its_clear_fields(closed: bool) -> None:
    record = make_record('odd "id" ü\n', n=3, closed=closed, recent_message_ids=RecentIds(("m-1", "m-2")))
    body = encode_record(record, KEYS, written_at=T0, record_format=BINARY_VERSION)
    assert body[0] == BINARY_VERSION
    envelope = parse_envelope(body)
    assert isinstance(envelope, SessionEnvelope)
    assert (envelope.v, envelope.session_id, envelope.closed, envelope.written_at) == (
        2,
        'odd "id" ü\n',
        closed,
        T0,
    )
    assert open_record(envelope, KEYS) == record
    assert open_record(envelope, KeyRing.of(generate_key(), KEY)) == record  # under an old key too


def test_a_binary_record_keeps_the_secrets_sealed_and_is_smaller() -> None:
    record = make_record("s-1", token="SECRET-TOKEN")
    body = encode_record(record, KEYS, written_at=T0, record_format=BINARY_VERSION)
    for secret in (b"SECRET-TOKEN", b"pii@example.com", b"dep-1"):
        assert secret not in body
    assert len(body) < 0.8 * len(encode_record(record, KEYS, written_at=T0))


@pytest.mark.parametrize(
    ("change", "at"),
    [("the session id", 12), ("the closed flag", 1), ("the time written", 9)],
)
def test_a_binary_record_whose_clear_part_was_altered_does_not_open(change: str, at: int) -> None:
    """The clear part is authenticated with the sealed one: s-1's record renamed s-2 (or reopened, or
    backdated) fails to open, as a record under an unknown key does."""
    body = bytearray(_binary("s-1"))
    body[at] ^= 0x03 if change == "the session id" else 0x01
    envelope = parse_envelope(bytes(body))
    assert isinstance(envelope, SessionEnvelope)
    with pytest.raises(SealError):
        open_record(envelope, KEYS)


def test_a_binary_record_of_someone_elses_payload_is_still_refused_by_its_sealed_copy() -> None:
    """A writer with the key that put s-1's record under s-2's name: the sealed copy still disagrees."""
    clear = bytes((BINARY_VERSION, 0)) + bytes(8) + (3).to_bytes(2, "big") + b"s-2"
    body = clear + KEYS.seal_binary(make_record("s-1").sealed_json(), clear)
    envelope = parse_envelope(body)
    assert isinstance(envelope, SessionEnvelope)
    with pytest.raises(CorruptRecord) as info:
        open_record(envelope, KEYS)
    assert (info.value.reason, info.value.session_id) == ("session_id_mismatch", "s-2")


_GOOD = _binary("s-9")


@pytest.mark.parametrize(
    ("body", "reason", "session_id"),
    [
        (b"\x02", "bad_envelope", None),
        (b"\x03" + _GOOD[1:], "unsupported_version", None),  # a later binary format
        (b"\x01" + _GOOD[1:], "unsupported_version", None),
        (_GOOD[:12] + b"\xff" + _GOOD[13:], "bad_envelope", None),  # the session id is no UTF-8
        (_GOOD[:10] + b"\x00\x00" + _GOOD[12:], "bad_envelope", None),  # an empty session id
        (_GOOD[:10] + b"\xff\xff" + _GOOD[12:], "bad_envelope", None),  # longer than the body
        (_GOOD[:1] + b"\x04" + _GOOD[2:], "bad_envelope", "s-9"),  # a flag this code does not know
        (_GOOD[:40], "bad_envelope", "s-9"),  # cut inside the sealed part
        (_GOOD[:2] + b"\x7f" + b"\xff" * 7 + _GOOD[10:], "bad_envelope", "s-9"),  # a time no datetime holds
    ],
)
def test_unreadable_binary_envelopes_are_refused_with_a_reason(
    body: bytes, reason: str, session_id: str | None
) -> None:
    with pytest.raises(CorruptRecord) as info:
        parse_envelope(body)
    assert (info.value.reason, info.value.session_id) == (reason, session_id)


@given(st.binary(max_size=300))
def test_arbitrary_binary_bodies_parse_or_are_refused(tail: bytes) -> None:
    reason = None
    try:
        envelope = parse_envelope(bytes((BINARY_VERSION,)) + tail)
    except CorruptRecord as exc:
        reason = exc.reason
    assert reason in {None, "bad_envelope"}
    if reason is not None:
        return
    assert isinstance(envelope, SessionEnvelope)
    with pytest.raises((CorruptRecord, SealError)):
        open_record(envelope, KEYS)


def test_a_batch_holds_records_of_both_formats() -> None:
    bodies = [encode_record(make_record("a"), KEYS, written_at=T0), _binary("b"), encode_marker("m", written_at=T0)]
    envelopes = [parse_envelope(body) for body in unframe_batch(frame_batch(bodies))]
    assert [getattr(e, "session_id", None) for e in envelopes] == ["a", "b", None]


def test_the_media_type_says_which_bodies_are_json() -> None:
    """What a journal message's content type says: JSON for a format 1 record and a marker, bytes for a
    format 2 record and a batch (whose first bytes are a length)."""
    json_record, marker = encode_record(make_record("a"), KEYS, written_at=T0), encode_marker("m", written_at=T0)
    assert [media_type(body) for body in (json_record, marker)] == ["application/json"] * 2
    assert all(isinstance(json.loads(body), dict) for body in (json_record, marker))
    binary = [_binary("b"), frame_batch([json_record, marker])]
    assert [media_type(body) for body in binary] == ["application/octet-stream"] * 2
