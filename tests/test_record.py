"""SessionRecord.replaced: the keeper's copy-with-changes, equal to pydantic's model_copy without its per-copy
set of fields, and never a change to the record it was made from. And what a record journalled by an
earlier release loads as."""

from __future__ import annotations

import pytest

from bridge.recent_ids import RecentIds
from bridge.record import REVEAL_SECRETS, SessionRecord
from tests.store.helpers import T0, make_record


def test_replaced_is_what_model_copy_makes() -> None:
    record = make_record("s-1", n=1)
    changes = {"seq": 99, "state": "active", "recent_message_ids": RecentIds(("m-1",)), "updated_at": T0}
    replaced = record.replaced(changes)
    copied = record.model_copy(update=changes)
    assert replaced == copied
    assert replaced.model_dump_json(context=REVEAL_SECRETS) == copied.model_dump_json(context=REVEAL_SECRETS)
    assert SessionRecord.model_validate_json(replaced.model_dump_json(context=REVEAL_SECRETS)) == replaced
    assert record.seq != 99  # the original is unchanged


def test_copies_share_one_set_of_fields() -> None:
    first = make_record("s-1").replaced({"seq": 1})
    second = first.replaced({"seq": 2})
    assert first.model_fields_set is second.model_fields_set
    assert first.model_fields_set == set(SessionRecord.model_fields)


def test_an_unknown_field_is_a_bug_not_a_silent_attribute() -> None:
    with pytest.raises(ValueError, match="no_such_field"):
        make_record("s-1").replaced({"no_such_field": 1})


@pytest.mark.parametrize("garbled", [10**12, 0, -5])
def test_a_garbled_genesys_lifetime_journalled_by_an_earlier_release_loads_as_not_given(garbled: int) -> None:
    """Every expiry is computed from it: 10^12 seconds overflowed a date at the session's next message."""
    journalled = make_record("s-1").model_dump(context=REVEAL_SECRETS, mode="json") | {"genesys_ttl_s": garbled}
    assert SessionRecord.model_validate(journalled).genesys_ttl_s is None


def test_a_sane_genesys_lifetime_loads_as_it_was_saved() -> None:
    record = make_record("s-1").replaced({"genesys_ttl_s": 259_200})
    assert SessionRecord.model_validate_json(record.model_dump_json(context=REVEAL_SECRETS)).genesys_ttl_s == 259_200
