"""The session state machine: the table, illegal moves, and the generated diagram in docs/sessions.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.errors import InvalidTransition
from bridge.session.state import TERMINAL_STATES, TRANSITIONS, SessionState, SessionTrigger, render_mermaid, transition

DOC = Path(__file__).resolve().parents[2] / "docs" / "sessions.md"


def test_happy_path() -> None:
    state = SessionState.STARTING
    for trigger in (
        SessionTrigger.CONNECT,
        SessionTrigger.CONFIGURED,
        SessionTrigger.SOCKET_LOST,
        SessionTrigger.CONFIGURED,
        SessionTrigger.END_REQUESTED,
        SessionTrigger.END_DONE,
    ):
        state = transition(state, trigger)
    assert state is SessionState.ENDED


def test_illegal_transition_names_state_and_trigger() -> None:
    with pytest.raises(InvalidTransition, match="'configured' in state 'ended'") as info:
        transition(SessionState.ENDED, SessionTrigger.CONFIGURED)
    assert (info.value.state, info.value.event) == ("ended", "configured")


def test_terminal_states_have_no_way_out() -> None:
    assert not [key for key in TRANSITIONS if key[0] in TERMINAL_STATES]


def test_every_live_state_can_shut_down_and_fail() -> None:
    for state in SessionState:
        if state in TERMINAL_STATES:
            continue
        assert transition(state, SessionTrigger.SHUTDOWN) is SessionState.SUSPENDED
        assert transition(state, SessionTrigger.FAIL) is SessionState.FAILED


def test_docs_show_the_current_diagram() -> None:
    assert render_mermaid() in DOC.read_text(encoding="utf-8"), "regenerate with bridge.session.state.render_mermaid()"
