"""The idempotency cache's compact storage: a duplicate's answer is the original event, field for field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bridge.session.settled import SettledCache, cache_key
from genesys_bridge_client.contract.content import AttachmentPart
from genesys_bridge_client.contract.events import CommandOutcome, FieldError

NOW = datetime(2026, 12, 5, 10, 11, 12, 345678, tzinfo=UTC)


def outcome(command_id: str | None = None, **kw: object) -> CommandOutcome:
    command_id = command_id or str(uuid.uuid4())
    fields: dict[str, object] = {
        "event_id": uuid.uuid4().hex,
        "session_id": "order-4711",
        "seq": 7,
        "occurred_at": NOW,
        "causation_id": command_id,
        "correlation_id": None,
        "command_id": command_id,
        "command_type": "message.send",
        "status": "delivered",
        "reason": "ok",
        "detail": "",
        "genesys_message_id": uuid.uuid4().hex,
    }
    fields.update(kw)
    return CommandOutcome.model_validate(fields)


CASES = {
    "delivered": outcome(),
    "hex command id, uuid event id": outcome(uuid.uuid4().hex, event_id=str(uuid.uuid4())),
    "free-form ids": outcome(
        "Cmd-ÄÖ-1", session_id="x" * 128, correlation_id="req-981", event_id="E1", genesys_message_id="G"
    ),
    "upper-case uuid": outcome(str(uuid.uuid4()).upper(), genesys_message_id=uuid.uuid4().hex.upper()),
    "failed with a code": outcome(status="failed", reason="read_only", detail="Genesys: 409 ✓", genesys_code=409),
    "negative code, big seq": outcome(status="failed", reason="genesys_error", genesys_code=-1, seq=2**40),
    "rejected outside a session": outcome(
        status="rejected", reason="unknown_session", detail="no live session", seq=0, genesys_message_id=None
    ),
    "other causation": outcome(causation_id="someone-else"),
    "no causation": outcome(causation_id=None, command_type=None),
    "before the epoch": outcome(occurred_at=datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=UTC)),
}


@pytest.mark.parametrize("original", CASES.values(), ids=CASES.keys())
def test_a_kept_outcome_comes_back_equal(original: CommandOutcome) -> None:
    cache = SettledCache(10)
    assert original.command_id is not None
    cache.put(original.command_id, original, "dep-1", "billing")
    kept = cache.get(original.command_id)
    assert kept is not None
    again, deployment_id, route = kept
    assert again == original
    assert again.model_dump_json() == original.model_dump_json()  # what the duplicate's publish carries
    assert (deployment_id, route) == ("dep-1", "billing")


@pytest.mark.parametrize(
    "original",
    [
        outcome(attachment=AttachmentPart(id="a1", url="https://x.invalid/a", file_name="a.pdf", mime_type="app/pdf")),
        outcome(status="rejected", reason="schema_invalid", errors=[FieldError(loc="$.text", message="required")]),
        outcome(occurred_at=NOW.astimezone(timezone(timedelta(hours=2)))),  # serialised with its own offset
    ],
    ids=["attachment", "field errors", "not UTC"],
)
def test_outcomes_that_do_not_pack_are_kept_whole(original: CommandOutcome) -> None:
    cache = SettledCache(10)
    assert original.command_id is not None
    cache.put(original.command_id, original, None, None)
    kept = cache.get(original.command_id)
    assert kept is not None
    assert kept[0] is original
    assert kept[0].model_dump_json() == original.model_dump_json()


def test_shapes_and_words_past_their_one_byte_forms_still_come_back_equal() -> None:
    """Past 255 shapes an outcome spells its three words; past 112 words a word takes a two-byte index."""
    cache = SettledCache(1000)
    kept = [
        outcome(command_type=f"type.{n}", reason="ok" if n % 2 else "timeout", detail="d" * (n % 300))
        for n in range(400)
    ]
    for n, o in enumerate(kept):
        assert o.command_id is not None
        cache.put(o.command_id, o, f"deployment-{n}", f"route-{n % 7}")
    for n, o in enumerate(kept):
        assert o.command_id is not None
        assert cache.get(o.command_id) == (o, f"deployment-{n}", f"route-{n % 7}")


def test_routing_none_and_unknown_ids() -> None:
    cache = SettledCache(10)
    first = outcome()
    assert first.command_id is not None
    cache.put(first.command_id, first, None, None)
    assert cache.get(first.command_id) == (first, None, None)
    assert cache.get(str(uuid.uuid4())) is None
    assert cache.get("not-kept") is None


def test_the_two_spellings_of_a_uuid_are_two_commands() -> None:
    u = uuid.uuid4()
    spellings = [str(u), u.hex, str(u).upper(), u.hex.upper(), "{" + str(u) + "}"]
    assert len({cache_key(s) for s in spellings}) == len(spellings)
    cache = SettledCache(10)
    hyphenated = outcome(str(u))
    cache.put(str(u), hyphenated, None, None)
    assert str(u) in cache
    assert u.hex not in cache
    assert str(u).upper() not in cache


def test_least_recently_used_goes_first_and_a_hit_counts_as_use() -> None:
    cache = SettledCache(3)
    ids = [str(uuid.uuid4()) for _ in range(5)]
    for command_id in ids[:3]:
        cache.put(command_id, outcome(command_id), None, None)
    assert cache.touch(ids[0])  # a duplicate of the oldest: now the newest
    assert not cache.touch(ids[4])
    cache.put(ids[3], outcome(ids[3]), None, None)
    assert [c in cache for c in ids[:4]] == [True, False, True, True]
    cache.put(ids[4], outcome(ids[4]), None, None)
    assert [c in cache for c in ids] == [True, False, False, True, True]
    assert len(cache) == 3
    # the stale position of the touched id was skipped, not evicted: it goes when it is the oldest again
    for n in range(3):
        extra = f"later-{n}"
        cache.put(extra, outcome(extra), None, None)
    assert ids[0] not in cache
    assert len(cache) == 3


def test_a_re_kept_outcome_replaces_the_old_and_counts_once() -> None:
    cache = SettledCache(2)
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    cache.put(a, outcome(a, reason="ok"), None, None)
    cache.put(b, outcome(b), None, None)
    newer = outcome(a, status="failed", reason="timeout")
    cache.put(a, newer, "dep", None)
    cache.put(c, outcome(c), None, None)
    assert [x in cache for x in (a, b, c)] == [True, False, True]
    assert cache.get(a) == (newer, "dep", None)


def test_size_zero_keeps_nothing() -> None:
    cache = SettledCache(0)
    first = outcome()
    assert first.command_id is not None
    cache.put(first.command_id, first, None, None)
    assert len(cache) == 0
    assert not cache.touch(first.command_id)


def test_many_entries_stay_bounded_and_answerable() -> None:
    cache = SettledCache(1000)
    kept = [outcome() for _ in range(3000)]
    for o in kept:
        assert o.command_id is not None
        cache.put(o.command_id, o, "dep", None)
    assert len(cache) == 1000
    for o in kept[-1000:]:
        assert o.command_id is not None
        assert cache.get(o.command_id) == (o, "dep", None)
    assert all(o.command_id not in cache for o in kept[:2000] if o.command_id)


def test_times_before_and_after_the_first_entry() -> None:
    cache = SettledCache(10)
    kept = [outcome(occurred_at=NOW + timedelta(microseconds=d)) for d in (0, -1, 1, -(10**15), 10**15)]
    for o in kept:
        assert o.command_id is not None
        cache.put(o.command_id, o, None, None)
    for o in kept:
        assert o.command_id is not None
        assert cache.get(o.command_id) == (o, None, None)


def test_many_duplicates_of_one_command_keep_the_order_bounded() -> None:
    cache = SettledCache(10)
    for n in range(3):
        cache.put(f"c-{n}", outcome(f"c-{n}"), None, None)
    for _ in range(10_000):
        assert cache.touch("c-1")
    assert len(cache._order) <= 2 * 3 + 1024 + 1
    cache.put("c-3", outcome("c-3"), None, None)
    assert all(cache.get(f"c-{n}") is not None for n in range(4))  # still bounded by size, nothing lost


def test_what_the_packed_format_cannot_hold_is_kept_whole() -> None:
    cache = SettledCache(10)
    big = outcome("c-big").model_copy(update={"genesys_code": 2**40, "detail": "bad \udcff surrogate"})
    cache.put("c-big", big, None, None)
    kept = cache.get("c-big")
    assert kept is not None
    assert kept[0] == big
