"""Recovery is visible in logs and metrics, and a recovering replica is ready (connected and consuming).

The restarted daemon resumes slowly here (``BRIDGE_RESUME_RATE_PER_S=8``, Genesys answering each
``configureSession`` after 100 ms), so the test can watch ``/readyz`` and ``/metrics`` during recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import aiohttp

from bridge.simulator import Simulator
from tests.daemon import Daemon, metric_value
from tests.durability.conftest import EnvFactory
from tests.durability.helpers import open_sessions
from tests.e2e.harness import Integrator

SESSIONS = 6
PENDING = "genesys_bridge_recovery_pending_sessions"
RECOVERED = "genesys_bridge_sessions_recovered_total"


async def _watch(daemon: Daemon, seen: list[tuple[int, str, float | None]], done: asyncio.Event) -> None:
    """Sample (readyz status, body, pending gauge) every 20 ms until ``done``, then once more. An observer
    of another process (there is nothing to await), bounded by the test's timeout."""
    async with aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.http_port}"
        while True:
            last = done.is_set()
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(base + "/readyz") as ready:
                    body = await ready.text()
                async with http.get(base + "/metrics") as metrics:
                    pending = metric_value(await metrics.text(), PENDING)
                seen.append((ready.status, body, pending))
            if last:
                return
            await asyncio.sleep(0.02)


async def test_recovery_is_logged_and_counted_and_a_recovering_replica_is_ready(
    sim: Simulator, client: Integrator, bridge_env: EnvFactory
) -> None:
    """Readiness means connected and consuming: a replica resuming its partitions' sessions serves their
    commands as each session comes back, so ``/readyz`` is true while the pending gauge counts down."""
    async with Daemon(bridge_env(), name="first") as first:
        await first.started()
        convs = await open_sessions(client, sim, [f"r{i}" for i in range(SESSIONS)])
        assert await first.stop(signal.SIGKILL) == -signal.SIGKILL

    await sim.set_delay(None, 0.1, classes=["SessionResponse"])
    seen: list[tuple[int, str, float | None]] = []
    done = asyncio.Event()
    async with Daemon(bridge_env(resume_rate_per_s="8"), name="second") as second, asyncio.TaskGroup() as tg:
        await second.started()
        tg.create_task(_watch(second, seen, done))
        finished = await second.recovered()
        await client.events.wait_every_session([c.session_id for c in convs], "session.resumed")
        done.set()

    assert sum(e["sessions"] for e in second.events("partition_gained")) == SESSIONS
    assert finished["sessions"] == SESSIONS
    assert finished["results"] == {"resumed": SESSIONS}
    # Ready while recovering, and from then on.
    assert all(status == 200 for status, _, _ in seen), seen
    # The pending gauge counted down while the sessions were being resumed, and ended at zero.
    pendings = [p for _, _, p in seen if p is not None]
    assert max(pendings) > 0
    assert pendings[-1] == 0


async def test_recovery_metrics_after_restart(sim: Simulator, client: Integrator, bridge_env: EnvFactory) -> None:
    async with Daemon(bridge_env(), name="first") as first:
        await first.started()
        await open_sessions(client, sim, ["m0", "m1", "m2"])
        assert await first.stop(signal.SIGTERM) == 0
    async with Daemon(bridge_env(), name="second") as second:
        await second.recovered()
        assert await second.metric(PENDING) == 0
        assert await second.metric(RECOVERED, {"result": "started"}) == 3
        status, _ = await second.get("/readyz")
        assert status == 200
