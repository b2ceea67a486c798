"""Fixtures for the simulator conformance tests: a simulator per test and a plain ``websockets`` guest."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from bridge.simulator import Simulator, SimulatorConfig

DEPLOYMENT = "0f4f1d2a-5b1e-4e0e-9f3a-2f5d8c1a7b10"
RECV_TIMEOUT_S = 5.0
#: The "everything-on" profile with the scripted agent off: for tests of Disconnect, Clear and typing.
EVERYTHING_ON = dataclasses.replace(SimulatorConfig.everything_on(), agent_script=False)


class Guest:
    """A guest speaking raw frames, as the protocol reference writes them."""

    def __init__(self, ws: ClientConnection, token: str) -> None:
        self.ws = ws
        self.token = token

    async def send(self, action: str, **fields: Any) -> None:
        await self.ws.send(json.dumps({"action": action, "token": self.token, **fields}))

    async def recv(self) -> dict[str, Any]:
        async with asyncio.timeout(RECV_TIMEOUT_S):
            frame = json.loads(await self.ws.recv())
        assert isinstance(frame, dict)
        return frame

    async def recv_class(self, cls: str) -> dict[str, Any]:
        """Skip frames until one of class ``cls`` arrives."""
        while True:
            frame = await self.recv()
            if frame["class"] == cls:
                return frame

    async def configure(self, *, start_new: bool | None = None, tracing_id: str = "t-001") -> dict[str, Any]:
        fields: dict[str, Any] = {"deploymentId": DEPLOYMENT, "tracingId": tracing_id}
        if start_new is not None:
            fields["startNew"] = start_new
        await self.send("configureSession", **fields)
        return await self.recv()

    async def closed(self) -> int | None:
        """Wait for the socket to close; returns the close code the client saw (1006 = abrupt)."""
        async with asyncio.timeout(RECV_TIMEOUT_S):
            await self.ws.wait_closed()
        return self.ws.close_code

    async def say(self, text: str, *, tracing_id: str = "m-1", **message: Any) -> None:
        await self.send("onMessage", tracingId=tracing_id, message={"type": "Text", "text": text, **message})


GuestFactory = Callable[..., Awaitable[Guest]]


@pytest.fixture
def config() -> SimulatorConfig:
    """The default config of these tests: a real deployment, the scripted agent off unless a test turns it on."""
    return SimulatorConfig(agent_script=False)


@pytest.fixture
async def sim(config: SimulatorConfig) -> AsyncIterator[Simulator]:
    async with Simulator(config) as simulator:
        yield simulator


async def open_guest(
    sim: Simulator,
    stack: AsyncExitStack,
    token: str | None = None,
    *,
    configure: bool = True,
    deployment: str = DEPLOYMENT,
    origin: str | None = None,
) -> Guest:
    """Connect a plain websockets client (closed with ``stack``) and optionally configure it."""
    url = f"{sim.ws_url}?deploymentId={deployment}"
    ws = await stack.enter_async_context(
        connect(url, compression=None, origin=Origin(origin) if origin else None, ping_interval=None)
    )
    guest = Guest(ws, token or str(uuid.uuid4()))
    if configure:
        frame = await guest.configure()
        assert frame["class"] == "SessionResponse", frame
    return guest


@pytest.fixture
async def guest_factory(sim: Simulator) -> AsyncIterator[GuestFactory]:
    """``await guest(token=None, configure=True, deployment=DEPLOYMENT, origin=None)`` → a connected Guest."""
    async with AsyncExitStack() as stack:

        async def make(token: str | None = None, **kwargs: Any) -> Guest:
            return await open_guest(sim, stack, token, **kwargs)

        yield make


def frozen_clock() -> float:
    """A clock that never moves: token buckets never refill, so limits trip deterministically."""
    return 0.0


@pytest.fixture
async def guest(guest_factory: GuestFactory) -> Guest:
    return await guest_factory()
