"""``SettledOutcome``: what a command came to, kept in session records. Complete outcomes share one set of
field names (memory per session); that must not change what they dump, compare or copy to."""

from __future__ import annotations

from bridge.contract.outcomes import SettledOutcome
from genesys_bridge_client.contract import MessageSend


def test_outcomes_share_their_field_names_and_still_dump_compare_and_copy_as_before() -> None:
    command = MessageSend(command_id="c-1", session_id="s1", text="hi")
    first = SettledOutcome.of(command, "delivered", "ok", genesys_message_id="g-1")
    second = SettledOutcome.of(command, "failed", "timeout", "no echo")
    read_back = SettledOutcome.model_validate_json(first.model_dump_json())
    assert first.model_fields_set is second.model_fields_set is read_back.model_fields_set
    assert read_back == first
    assert first.model_dump(exclude_unset=True) == first.model_dump()

    copied = first.model_copy(update={"detail": "already settled"})
    assert (copied.detail, first.detail) == ("already settled", "")
    assert copied.model_fields_set == first.model_fields_set

    partial = SettledOutcome(command_id="c-2", command_type="message.send", status="delivered", reason="ok")
    assert partial.model_fields_set == {"command_id", "command_type", "status", "reason"}
    assert partial.model_dump(exclude_unset=True) == {
        "command_id": "c-2",
        "command_type": "message.send",
        "status": "delivered",
        "reason": "ok",
    }
