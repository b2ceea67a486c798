"""A session's recent outcomes: the bounded tail that answers a command redelivered after a restart,
packed in one string. The outcome of any command_id is found exactly, never the outcome of another whose
id or text merely contains it."""

from __future__ import annotations

import copy
import json
import random

import pytest

from bridge.contract.outcomes import SettledOutcome
from bridge.recent_outcomes import RECENT_OUTCOMES_KEPT, RecentOutcomes
from genesys_bridge_client.contract.content import AttachmentPart
from tests.store.helpers import make_record


def outcome(command_id: str, detail: str = "") -> SettledOutcome:
    return SettledOutcome(
        command_id=command_id, command_type="message.send", status="delivered", reason="ok", detail=detail
    )


def ids(tail: RecentOutcomes) -> list[str]:
    return [o.command_id for o in tail]


def test_the_oldest_outcome_goes_past_the_bound() -> None:
    tail = RecentOutcomes(size=3)
    for command_id in ("a", "b", "c"):
        assert not tail.full
        tail = tail.with_added(outcome(command_id))
    assert tail.full
    tail = tail.with_added(outcome("d"))
    assert "a" not in tail
    assert tail.get("a") is None
    assert ids(tail) == ["b", "c", "d"]
    assert len(tail) == 3


def test_a_command_settled_again_keeps_its_newest_outcome_as_the_newest() -> None:
    tail = RecentOutcomes([outcome("a"), outcome("b"), outcome("c")], size=3)
    tail = tail.with_added(outcome("a", "again")).with_added(outcome("d"))  # d evicts the oldest, now b
    assert ids(tail) == ["c", "a", "d"]
    assert tail.get("a") == outcome("a", "again")


def test_every_field_comes_back() -> None:
    full = SettledOutcome(
        command_id="c1",
        command_type="attachment.send",
        status="failed",
        reason="genesys_error",
        detail="refused",
        genesys_message_id="g1",
        genesys_code=4001,
        attachment=AttachmentPart(id="f1", url="https://x/f1", file_name="a.pdf", size_bytes=12),
    )
    tail = RecentOutcomes([outcome("c0"), full, outcome("c2")])
    assert tail.get("c1") == full
    assert list(tail) == [outcome("c0"), full, outcome("c2")]


def test_a_value_never_changes() -> None:
    before = RecentOutcomes([outcome("a")])
    after = before.with_added(outcome("b"))
    assert ids(before) == ["a"]
    assert ids(after) == ["a", "b"]
    assert copy.deepcopy(before) is before


def test_a_long_churn_keeps_exactly_the_newest() -> None:
    tail = RecentOutcomes()
    for i in range(1_000):
        tail = tail.with_added(outcome(f"m{i}"))
    assert ids(tail) == [f"m{i}" for i in range(1_000 - RECENT_OUTCOMES_KEPT, 1_000)]
    assert len(tail) == RECENT_OUTCOMES_KEPT


#: Ids that prefix, quote or spell the JSON around others (one ends with a comma); pydantic's JSON refuses
#: a lone surrogate, so no command carries one.
ODD = [
    'a","b',
    "a",
    "a1",
    "1a",
    "a,",
    ",",
    '"',
    "\\",
    'x\\"',
    ',{"command_id":"a",',
    ',\n{"command_id":"a"',
    "ü",
    "",
    " a ",
    "a\nb",
]


@pytest.mark.parametrize("command_id", ODD)
def test_an_odd_command_id_is_found_exactly_and_never_inside_another(command_id: str) -> None:
    others = [o for o in ODD if o != command_id]
    # Each other outcome's detail spells this one's item, as a text field could.
    decoy = f',{{"command_id":{json.dumps(command_id)},"command_type":"message.send"'
    tail = RecentOutcomes([outcome(o, detail=decoy) for o in others])
    assert command_id not in tail
    assert tail.get(command_id) is None
    assert all(tail.get(o) == outcome(o, detail=decoy) for o in others)
    tail = tail.with_added(outcome(command_id))
    assert tail.get(command_id) == outcome(command_id)
    assert ids(tail) == [*others, command_id]


def test_random_outcomes_behave_as_a_list_would() -> None:
    """Against a plain list, for ids and details drawn from the characters of the packed form's JSON."""
    rng = random.Random(11)
    alphabet = ',"\\\n{}: aü'

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4)))

    tail, model = RecentOutcomes(size=5), list[SettledOutcome]()
    for _ in range(2_000):
        settled = outcome(text(), detail=text())
        model = [*[o for o in model if o.command_id != settled.command_id][-4:], settled]
        tail = tail.with_added(settled)
        assert list(tail) == model
        probe = text()
        assert tail.get(probe) == next((o for o in model if o.command_id == probe), None)


def test_a_command_id_json_cannot_hold_is_never_found() -> None:
    assert RecentOutcomes([outcome("a")]).get("\ud800") is None


def test_a_non_string_is_never_a_command_id() -> None:
    assert None not in RecentOutcomes([outcome("None")])
    assert 1 not in RecentOutcomes([outcome("1")])


def test_the_record_writes_the_outcomes_as_a_json_list_and_reads_them_back() -> None:
    kept = RecentOutcomes(outcome(o, detail=f"for {o}") for o in ODD)
    record = make_record("s-1").replaced({"recent_outcomes": kept})
    sealed = json.loads(record.sealed_json())
    assert sealed["recent_outcomes"] == [json.loads(o.model_dump_json()) for o in kept]
    assert sealed == json.loads(record.model_dump_json(context={"reveal_secrets": True}))
    assert record.model_dump()["recent_outcomes"] == sealed["recent_outcomes"]
    back = type(record).model_validate_json(record.sealed_json())
    assert back.recent_outcomes == kept
    assert back.recent_outcomes.get("ü") == outcome("ü", detail="for ü")


def test_an_outcome_written_by_a_newer_release_loads_without_its_new_fields() -> None:
    record = make_record("s-1")
    sealed = json.loads(record.sealed_json())
    sealed["recent_outcomes"] = [{**json.loads(outcome("c1").model_dump_json()), "added_later": {"x": [1]}}]
    back = type(record).model_validate_json(json.dumps(sealed))
    assert back.recent_outcomes.get("c1") == outcome("c1")
    assert json.loads(back.sealed_json())["recent_outcomes"] == [json.loads(outcome("c1").model_dump_json())]


def test_a_record_without_outcomes_writes_an_empty_list() -> None:
    record = make_record("s-1")
    assert json.loads(record.sealed_json())["recent_outcomes"] == []
    assert len(record.recent_outcomes) == 0
