"""What a session logs on its way: state changes at DEBUG (the ``session.state_changed`` event carries them),
``session_ended`` at INFO, so a production log at INFO has one line per ending and none per state change."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from tests.session.conftest import running

pytestmark = pytest.mark.looptime


async def test_state_changes_are_logged_at_debug_and_the_end_at_info() -> None:
    with capture_logs() as logs:
        async with running() as h:
            await h.start()
            outcome = await h.end("s1")
            assert outcome.status == "delivered"
            await h.sink.wait_type("session.ended", 1, "s1")
            changes = await h.sink.wait_type("session.state_changed", 3, "s1")
    levels = {(e["event"], e["log_level"]) for e in logs if e["event"] in ("session_state_changed", "session_ended")}
    assert levels == {("session_state_changed", "debug"), ("session_ended", "info")}
    logged = [(e["old"], e["new"]) for e in logs if e["event"] == "session_state_changed"]
    published = [(c.old, c.new) for c in changes]  # type: ignore[attr-defined]
    assert logged[: len(published)] == published, "every published state change is logged, in order"
