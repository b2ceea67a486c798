"""Three restarts in a row across 100 sessions lose nothing.

Each round: the agent sends one message to every session while the bridge is down and the integrator queues
one command per session; the bridge is restarted (SIGKILL, SIGTERM, SIGKILL), resumes all 100 in place,
publishes every missed message and delivers every queued command. At the end every session has been
resumed three times on its original Genesys session and nothing is missing.
"""

from __future__ import annotations

import signal

from bridge.simulator import Simulator
from genesys_bridge_client.contract.events import CommandOutcome
from tests.daemon import Daemon
from tests.durability.conftest import EnvFactory
from tests.durability.helpers import agent_ids_published, assert_resumed_in_place, open_sessions, wait_all_published
from tests.e2e.harness import Integrator

SESSIONS = 100
STOPS = (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL)


async def test_three_restarts_across_100_sessions_lose_nothing(
    sim: Simulator, client: Integrator, bridge_env: EnvFactory
) -> None:
    daemon = Daemon(bridge_env(), name="run-0")
    async with daemon:
        await daemon.started()
        convs = await open_sessions(client, sim, [f"m{i:03d}" for i in range(SESSIONS)])
    # leaving the block SIGKILLs run-0 (a crash right after the starts)
    command_ids: list[str] = []
    for round_, sig in enumerate(STOPS, start=1):
        for conv in convs:
            await conv.say(sim, f"agent {conv.session_id} while down {round_}")
            command_id = await client.say(conv.session_id, f"cmd {conv.session_id} round {round_}")
            conv.commands.append((command_id, f"cmd {conv.session_id} round {round_}"))
            command_ids.append(command_id)
        before_round = len(client.events.events)
        async with Daemon(bridge_env(), name=f"run-{round_}") as daemon:
            finished = await daemon.recovered(timeout_s=50)
            assert finished["results"] == {"resumed": SESSIONS}, finished
            await wait_all_published(client.events, convs)
            ids = [c.session_id for c in convs]
            await client.events.wait_every_session(ids, "session.resumed", since=before_round)
            assert all(len(client.events.of(sid, "session.resumed")) == round_ for sid in ids)
            for command_id in command_ids:
                await client.events.outcome(command_id)
            code = await daemon.stop(sig)
            assert code == (0 if sig is signal.SIGTERM else -signal.SIGKILL)

    published = agent_ids_published(client.events)
    for conv in convs:
        assert_resumed_in_place(sim, conv)
        assert len(client.events.of(conv.session_id, "session.resumed")) == len(STOPS)
        assert not client.events.of(conv.session_id, "session.ended")
        assert all(published[mid] >= 1 for mid in conv.agent_ids)
        texts = [text for _, text in conv.commands]
        assert [r.text for r in sim.received(conv.token) if r.text in texts] == texts
    for command_id in command_ids:
        # Each command reached Genesys once (above). A command answered just before a SIGKILL, whose ack
        # died with the process, is redelivered and answered again, under the same command_id.
        settled = [o for o in client.events.outcomes(command_id) if o.status != "will_retry"]
        assert 1 <= len(settled) <= 2, settled
        assert all(isinstance(o, CommandOutcome) and o.status == "delivered" for o in settled), settled
    # A message re-published after a SIGKILL (its checkpoint unconfirmed) comes back under the same id.
    assert all(count <= 2 for count in published.values()), published
