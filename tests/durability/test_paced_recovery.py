"""A paced recovery must not hold back commands for sessions that are already resumed.

Resumes are paced (``BRIDGE_RESUME_RATE_PER_S``) to stay within Genesys' connection limits (§8). The intake
may only start once every resumed session exists in the registry, or a command for a session not yet
spawned is rejected as ``unknown_session``. So the registry registers every resumed actor at once and
paces only their first connects; the intake starts right away, and a command waits only for its own
session (with 1,000 sessions at 10/s, not for the 100 s of the whole recovery).
"""

from __future__ import annotations

import signal
from datetime import datetime

from bridge.simulator import Simulator
from tests.daemon import Daemon
from tests.durability.conftest import EnvFactory
from tests.durability.helpers import assert_resumed_in_place, open_sessions
from tests.e2e.harness import Integrator

SESSIONS = 8
RATE_PER_S = 4  # the last session connects ~1.75 s after the first


async def test_command_for_a_resumed_session_does_not_wait_for_the_whole_recovery(
    sim: Simulator, client: Integrator, bridge_env: EnvFactory
) -> None:
    async with Daemon(bridge_env(), name="first") as first:
        await first.started()
        convs = await open_sessions(client, sim, [f"q{i}" for i in range(SESSIONS)])
        assert await first.stop(signal.SIGTERM) == 0
    command_ids = [await client.say(conv.session_id, f"queued for {conv.session_id}") for conv in convs]
    # DEBUG: session_state_changed, the log line read below, is logged at DEBUG.
    async with Daemon(bridge_env(resume_rate_per_s=str(RATE_PER_S), log_level="DEBUG"), name="second") as second:
        await second.recovered()
        outcomes = [await client.events.outcome(command_id) for command_id in command_ids]
        await client.events.wait_every_session([c.session_id for c in convs], "session.resumed")
        connects = [
            datetime.fromisoformat(e["timestamp"])
            for e in second.events("session_state_changed", new="connecting")
            if e.get("session_id") in {c.session_id for c in convs}
        ]
    # No queued command was refused as unknown_session, whatever the pacing; each was delivered once.
    assert [o.status for o in outcomes] == ["delivered"] * SESSIONS, outcomes
    assert all(len(client.events.outcomes(command_id)) == 1 for command_id in command_ids)
    # The command of the session resumed first (journal order, not name order) ran before the paced
    # recovery even reached the last session.
    assert len(connects) == SESSIONS
    first_resumed = min(
        range(SESSIONS), key=lambda i: client.events.of(convs[i].session_id, "session.resumed")[0].occurred_at
    )
    assert outcomes[first_resumed].occurred_at < max(connects), (outcomes[first_resumed], max(connects))


async def test_sigterm_during_a_paced_recovery_drains_and_loses_no_session(
    sim: Simulator, client: Integrator, bridge_env: EnvFactory
) -> None:
    async with Daemon(bridge_env(), name="first") as first:
        await first.started()
        convs = await open_sessions(client, sim, [f"d{i}" for i in range(SESSIONS)])
        assert await first.stop(signal.SIGTERM) == 0
    # DEBUG: the test waits for a session_state_changed line, which is logged at DEBUG.
    async with Daemon(bridge_env(resume_rate_per_s="2", log_level="DEBUG"), name="interrupted") as interrupted:
        await interrupted.started()
        await interrupted.wait_log("session_state_changed", session_id=convs[0].session_id, new="active")
        assert await interrupted.stop(signal.SIGTERM) == 0  # most sessions never got their connect slot
        assert interrupted.events("drain_finished")
        assert not interrupted.events("recovery_finished")
    async with Daemon(bridge_env(), name="third") as third:
        finished = await third.recovered()
        assert finished["results"] == {"resumed": SESSIONS}
    for conv in convs:
        assert_resumed_in_place(sim, conv)
        assert not client.events.of(conv.session_id, "session.ended")
