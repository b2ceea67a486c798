"""The engine on virtual time (looptime), driven through a recording fake of the Socket port.

Real sockets and virtual time don't mix (the loop would fast-forward while a frame is in the kernel),
so these tests play the guest through a fake socket: the engine and the connection writer are real.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

from bridge.simulator import SimulatorConfig
from bridge.simulator.actions import SESSION_ACTIONS
from bridge.simulator.connection import Connection
from bridge.simulator.engine import Engine


class RecordingSocket:
    """Implements the writer's Socket port: frames land in a queue, close ends the stream."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.close_code: int | None = None

    async def send_str(self, data: str, compress: int | None = None) -> None:
        self.frames.put_nowait(json.loads(data))

    async def close(self, *, code: int = 1000, message: bytes = b"", drain: bool = True) -> bool:
        self.close_code = code
        return True


def _guest(engine: Engine, socket: RecordingSocket) -> Connection:
    conn: Connection = Connection(
        conn_id=engine.next_connection_id(),
        deployment_id="d",
        origin=None,
        socket=socket,
        abort=lambda: None,
        max_frames=16,
        faults=lambda: engine.connection_faults(conn),
        rng=random.Random(0),
        flush_s=0.05,
        echo_bucket=None,
        request_bucket=None,
    )
    return conn


def _send(engine: Engine, conn: Connection, action: str, **fields: Any) -> None:
    engine.handle_text(conn, json.dumps({"action": action, "token": "tok", **fields}))


@pytest.mark.looptime
async def test_expiry_after_72h_of_inactivity_in_virtual_time() -> None:
    loop = asyncio.get_running_loop()
    engine = Engine(
        SimulatorConfig(agent_script=False), clock=loop.time, base_url=lambda: "http://sim", actions=SESSION_ACTIONS
    )
    socket = RecordingSocket()
    conn = _guest(engine, socket)
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(conn.run_writer())
        _send(engine, conn, "configureSession", deploymentId="d")
        assert (await socket.frames.get())["class"] == "SessionResponse"
        await asyncio.sleep(100_000)  # idle, but less than the TTL
        _send(engine, conn, "onMessage", message={"type": "Text", "text": "still here"})
        assert (await socket.frames.get())["body"]["text"] == "still here"
        active_at = loop.time()
        frame = await socket.frames.get()
        assert frame["class"] == "SessionExpiredEvent"
        assert loop.time() - active_at == pytest.approx(259_200)
        _send(engine, conn, "onMessage", message={"type": "Text", "text": "late"})
        assert (await socket.frames.get())["code"] == 4006
        conn.close()
    assert socket.close_code == 1000


@pytest.mark.looptime
async def test_delayed_agent_reply_and_frame_delay_in_virtual_time() -> None:
    loop = asyncio.get_running_loop()
    config = SimulatorConfig(agent_reply_delay_s=30.0, delay_s=2.0)
    engine = Engine(config, clock=loop.time, base_url=lambda: "http://sim", actions=SESSION_ACTIONS)
    socket = RecordingSocket()
    conn = _guest(engine, socket)
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(conn.run_writer())
        _send(engine, conn, "configureSession", deploymentId="d")
        await socket.frames.get()
        start = loop.time()
        _send(engine, conn, "onMessage", message={"type": "Text", "text": "hi"})
        assert (await socket.frames.get())["body"]["direction"] == "Inbound"
        assert (await socket.frames.get())["body"]["events"][0]["eventType"] == "Typing"
        assert loop.time() - start == pytest.approx(2.0)  # every frame left 2 s late
        reply = await socket.frames.get()
        assert reply["body"]["text"] == "You said: hi"
        assert loop.time() - start == pytest.approx(32.0)  # 30 s reply delay + 2 s frame delay
        conn.close()
