"""The :class:`Simulator`: a local Genesys Web Messaging server plus its Python control API
(:class:`~bridge.simulator.control.SimulatorControl`).

Usage from a test::

    async with Simulator(SimulatorConfig(agent_script=False)) as sim:
        url = sim.base_url                      # BRIDGE_GENESYS_BASE_URL
        ...                                     # the bridge opens ws://…/v1?deploymentId=…
        session = await sim.wait_session(attribute=("bridge_session_id", "s1"))
        await sim.agent_say(session, "Hello from the agent")
        received = await sim.wait_received(session, count=1)

The control operations exist over HTTP too, under ``/control/`` (:mod:`bridge.simulator.control_http`).
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

from aiohttp import web

from bridge.serving import serve_app
from bridge.simulator import control_http, handlers
from bridge.simulator.actions import SESSION_ACTIONS
from bridge.simulator.config import SimulatorConfig
from bridge.simulator.connection import Connection
from bridge.simulator.control import SimulatorControl
from bridge.simulator.engine import Engine
from bridge.simulator.limits import Clock

__all__ = ["Simulator"]


class Simulator(SimulatorControl):
    """A running (or startable) simulated Genesys side. Bind with ``port=0`` and read :attr:`port`."""

    def __init__(self, config: SimulatorConfig | None = None, *, clock: Clock | None = None) -> None:
        """``clock`` replaces the event loop's clock for rate limits and expiry (tests only)."""
        super().__init__(config or SimulatorConfig())
        self._clock = clock
        self._runner: web.AppRunner | None = None
        self._connections: set[Connection] = set()

    # --- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind and serve. Raises OSError when the port is taken."""
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        clock = self._clock or asyncio.get_running_loop().time
        self._engine = Engine(self.config, clock=clock, base_url=lambda: self.base_url, actions=SESSION_ACTIONS)
        app = web.Application(client_max_size=self.config.max_file_bytes() + 1)
        app[handlers.ENGINE] = self._engine
        app[handlers.CONNECTIONS] = self._connections
        handlers.add_routes(app)
        control_http.add_routes(app, self)
        self._runner, self._port = await serve_app(app, self.config.host, self.config.port, backlog=1024)

    async def stop(self) -> None:
        """Drop every socket abruptly (a vanished server) and stop listening. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._engine is not None:
            self._engine.close_all()
        for conn in list(self._connections):
            conn.abort()
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """``http://host:port`` — what ``BRIDGE_GENESYS_BASE_URL`` takes (WS at ``ws://host:port/v1``)."""
        if self.config.public_base_url:
            return self.config.public_base_url.rstrip("/")
        host = self.config.host
        host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # a bind-all host is not reachable as such
        return f"http://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://host:port/v1`` (add ``?deploymentId=…``)."""
        return "ws" + self.base_url.removeprefix("http") + "/v1"
