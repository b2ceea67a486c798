"""A session's recent Genesys ids: the bounded tail that dedupes messages across reconnects and restarts,
packed in one string. Any id the wire can carry must be found exactly, never as a part of another."""

from __future__ import annotations

import copy
import json
import random

import pytest

from bridge.recent_ids import RECENT_IDS_KEPT, RecentIds
from tests.store.helpers import make_record


def test_the_oldest_id_goes_past_the_bound() -> None:
    ids = RecentIds(size=3)
    for message_id in ("a", "b", "c", "d"):
        ids = ids.with_added(message_id)
    assert "a" not in ids
    assert list(ids) == ["b", "c", "d"]
    assert len(ids) == 3


def test_an_id_seen_again_becomes_the_newest() -> None:
    ids = RecentIds(("a", "b", "c"), size=3).with_added("a").with_added("d")  # d evicts the oldest, now b
    assert list(ids) == ["c", "a", "d"]
    assert "b" not in ids


def test_a_value_never_changes() -> None:
    before = RecentIds(("a",))
    after = before.with_added("b")
    assert list(before) == ["a"]
    assert list(after) == ["a", "b"]
    assert copy.deepcopy(before) is before


def test_a_record_tail_longer_than_the_bound_keeps_its_newest() -> None:
    tail = [f"m{i}" for i in range(RECENT_IDS_KEPT + 50)]
    assert list(RecentIds(tail)) == tail[-RECENT_IDS_KEPT:]


def test_an_id_given_twice_counts_where_it_was_given_last() -> None:
    ids = RecentIds(("a", "b", "a"))
    assert list(ids) == ["b", "a"]
    assert len(ids) == 2


def test_a_long_churn_keeps_exactly_the_newest() -> None:
    ids = RecentIds(size=200)
    for i in range(5_000):
        ids = ids.with_added(f"m{i}")
    assert list(ids) == [f"m{i}" for i in range(4_800, 5_000)]
    assert len(ids) == 200


#: Ids that quote, escape or spell the packed form around others; one ends with a comma, as ``,"`` also
#: starts an item.
ODD = ['a","b', "a", "a,", ",", ",a", "b", '"', "\\", 'x\\"', ',"a"', ',\n"a"', "ü", "", " a ", "a\nb", "\\\\"]


@pytest.mark.parametrize("message_id", ODD)
def test_an_odd_id_is_found_exactly_and_never_inside_another(message_id: str) -> None:
    others = [o for o in ODD if o != message_id]
    ids = RecentIds(others)
    assert message_id not in ids
    assert all(o in ids for o in others)
    ids = ids.with_added(message_id)
    assert message_id in ids
    assert list(ids) == [*others, message_id]


def test_random_ids_behave_as_a_list_would() -> None:
    """Against a plain list, for ids drawn from the characters that make the packed form's punctuation."""
    rng = random.Random(7)
    alphabet = ',"\\\n{}: aü'
    ids, model = RecentIds(size=5), list[str]()
    for _ in range(3_000):
        message_id = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4)))
        assert (message_id in ids) == (message_id in model)
        ids = ids.with_added(message_id)
        model = [*[m for m in model if m != message_id][-4:], message_id]
        assert list(ids) == model
        assert len(ids) == len(model)


def test_an_id_json_cannot_hold_is_refused_and_never_found() -> None:
    ids = RecentIds(("a",))
    with pytest.raises(ValueError):
        ids.with_added("\ud800")
    assert "\ud800" not in ids
    assert list(ids) == ["a"]


def test_a_non_string_is_never_an_id() -> None:
    assert None not in RecentIds(("None",))
    assert 1 not in RecentIds(("1",))


def test_the_record_writes_the_ids_as_a_json_list_and_reads_them_back() -> None:
    record = make_record("s-1").replaced({"recent_message_ids": RecentIds(ODD)})
    sealed = json.loads(record.sealed_json())
    assert sealed["recent_message_ids"] == ODD
    assert sealed == json.loads(record.model_dump_json(context={"reveal_secrets": True}))
    assert json.loads(record.model_dump_json())["recent_message_ids"] == ODD
    assert record.model_dump()["recent_message_ids"] == ODD
    back = type(record).model_validate_json(record.sealed_json())
    assert back.recent_message_ids == record.recent_message_ids
    assert list(back.recent_message_ids) == ODD


def test_a_record_without_ids_writes_an_empty_list() -> None:
    record = make_record("s-1")
    assert json.loads(record.sealed_json())["recent_message_ids"] == []
    assert len(record.recent_message_ids) == 0
