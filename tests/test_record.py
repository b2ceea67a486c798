"""SessionRecord.replaced: the keeper's copy-with-changes, equal to pydantic's model_copy without its per-copy
set of fields, and never a change to the record it was made from."""

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
