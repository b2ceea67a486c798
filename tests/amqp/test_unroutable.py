"""Unroutable routing keys: an informational event whose key was just returned is left out for the hold,
then published again; every other event type is always published. Pure, with a manual clock."""

from __future__ import annotations

from bridge.amqp.unroutable import HOLD_S, KEYS_MAX, UnroutableKeys
from tests.session.fakes import ManualClock

STATE = "session.state_changed"
KEY = "session.state_changed.dep-1"


def test_a_returned_state_change_key_is_held_then_published_again() -> None:
    clock = ManualClock()
    keys = UnroutableKeys(clock)
    assert not keys.skips(STATE, KEY)
    keys.returned(STATE, KEY)
    assert keys.skips(STATE, KEY)
    assert not keys.skips(STATE, "session.state_changed.dep-2")  # another deployment: its own key
    clock.t += HOLD_S
    assert not keys.skips(STATE, KEY)  # the hold is over: published, and held again only if returned again
    assert not keys.skips(STATE, KEY)


def test_other_event_types_are_never_held() -> None:
    keys = UnroutableKeys(ManualClock())
    for event_type in ("command.outcome", "message.received", "session.ended"):
        keys.returned(event_type, f"{event_type}.dep-1")
        assert not keys.skips(event_type, f"{event_type}.dep-1")


def test_the_keys_kept_are_bounded() -> None:
    clock = ManualClock()
    keys = UnroutableKeys(clock)
    for i in range(KEYS_MAX + 1):
        keys.returned(STATE, f"{STATE}.dep-{i}")
    assert not keys.skips(STATE, f"{STATE}.dep-0")  # the oldest were forgotten: published again
    assert keys.skips(STATE, f"{STATE}.dep-{KEYS_MAX}")
