"""The simulator as the benchmarks run it: its own process, Genesys limits raised, plus an agent driver.

``python -m bench.sim_server [--no-agent]`` prints ``listening on http://127.0.0.1:<port> bench <port2>``
first. The first port is the simulator (``BRIDGE_GENESYS_BASE_URL``); the second serves the fan-in
driver, which makes the agent speak in *this* process so no HTTP request is spent per message:

- ``POST /bench/say {"count": k}``: k agent messages, round-robin over the live connected sessions
  (``"connected": false``: over every live session, connected or not, e.g. while the bridge is down).
- ``POST /bench/say_paced {"rate": r, "duration_s": d}``: r messages/s for d seconds (open loop).

Each message's text is ``bench <CLOCK_MONOTONIC ns>``: the load generator (same machine, same clock)
subtracts it from the arrival time of the ``message.received`` event.

Raised for the benchmark (the bridge keeps its own Genesys-respecting budget): the per-session message
rate, configureSession/min, echo/min, history/min and connections/min limits are off.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import time
from typing import Any

from aiohttp import web

from bridge.simulator.config import SimulatorConfig
from bridge.simulator.server import Simulator
from bridge.simulator.session import Session

__all__ = ["bench_config", "main"]

_TICK_S = 0.01  # paced mode: publish in 10 ms steps


def bench_config(*, agent: bool) -> SimulatorConfig:
    """The simulator config of the suite: the "everything-on" profile the recorded baselines ran
    against, rate limits off (see module docstring)."""
    return dataclasses.replace(
        SimulatorConfig.everything_on(),
        host="127.0.0.1",
        port=0,
        compression=False,
        connections_per_min=None,
        message_rate_per_s=None,
        configure_per_min=None,
        echo_per_min=None,
        history_per_min=None,
        requests_per_connection_per_min=None,
        agent_script=agent,
        agent_greeting=None,
        outbox_max_frames=4096,
    )


class _Driver:
    """Round-robin agent messages over the live sessions (the list is refreshed once per call)."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim
        self._next = 0

    def _targets(self, *, connected: bool) -> list[Session]:
        live = [s for s in self._sim.sessions() if s.active and (s.connections or not connected)]
        if not live:
            raise web.HTTPConflict(text="no live session")
        return live

    async def say(self, count: int, *, connected: bool = True) -> int:
        targets = self._targets(connected=connected)
        for _ in range(count):
            session = targets[self._next % len(targets)]
            self._next += 1
            await self._sim.agent_say(session, f"bench {time.monotonic_ns()}")
        return count

    async def say_paced(self, rate: float, duration_s: float) -> int:
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        total = int(rate * duration_s)
        while sent < total:
            due = min(total, int((loop.time() - start) * rate) + 1)
            if due > sent:
                await self.say(due - sent)
                sent = due
            await asyncio.sleep(_TICK_S)
        return sent


def _routes(driver: _Driver) -> web.Application:
    async def say(request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        sent = await driver.say(int(body["count"]), connected=bool(body.get("connected", True)))
        return web.json_response({"sent": sent})

    async def say_paced(request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        sent = await driver.say_paced(float(body["rate"]), float(body["duration_s"]))
        return web.json_response({"sent": sent})

    app = web.Application()
    app.router.add_post("/bench/say", say)
    app.router.add_post("/bench/say_paced", say_paced)
    return app


async def _serve(agent: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Simulator(bench_config(agent=agent)) as sim:
        runner = web.AppRunner(_routes(_Driver(sim)), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            print(f"listening on {sim.base_url} bench {runner.addresses[0][1]}", flush=True)
            await stop.wait()
        finally:
            await runner.cleanup()


def main() -> None:
    """Parse options and serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-agent", action="store_true", help="no scripted bot replies (throughput runs)")
    args = parser.parse_args()
    asyncio.run(_serve(agent=not args.no_agent))


if __name__ == "__main__":
    main()
