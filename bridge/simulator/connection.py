"""One guest WebSocket as the simulator sees it: a bounded outbox drained by one writer task.

The engine never awaits a socket. It calls :meth:`Connection.send` / :meth:`Connection.close` /
:meth:`Connection.abort`, which are synchronous and O(1); the writer task (owned by the WebSocket
handler's TaskGroup) serialises frames onto the socket and applies the fault plan: per-frame delay,
shuffling within a window (§3.2 "no guarantee to ordering"), nothing else. Duplicates and injected
errors are decided by the engine, which knows what a frame means.

Back-pressure: the outbox holds ``outbox_max_frames``; a guest that stops reading until it fills is
dropped abruptly (as a real server drops a stuck consumer), never blocked on.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bridge.simulator.limits import TokenBucket
from bridge.simulator.wire import Frame, dumps

__all__ = ["Connection", "FaultPlan", "Socket"]


@dataclass(kw_only=True)
class FaultPlan:
    """Fault injection for one session (or the simulator-wide default)."""

    delay_s: float = 0.0  # every frame leaves this much later (FIFO order kept)
    reorder_window: int = 1  # frames shuffled together before sending; 1 = in order
    duplicate_next: int = 0  # the next N logical frames are sent twice
    fail_next: int = 0  # the next N requests are answered with 5000 "Request failed."
    fail_actions: frozenset[str] | None = None  # only these actions consume fail_next; None = any
    classes: frozenset[str] | None = None  # delay only frames of these classes; None = all


class Socket(Protocol):
    """What the writer needs from a server-side WebSocket (aiohttp's WebSocketResponse fits)."""

    async def send_str(self, data: str, compress: int | None = None) -> None: ...

    async def close(self, *, code: int = ..., message: bytes = ..., drain: bool = ...) -> bool: ...


@dataclass(slots=True)
class _Item:
    due: float
    text: str | None  # None = close marker
    close_code: int = 1000
    close_reason: str = ""


class Connection:
    """One guest socket, configured or not: the engine keeps which session it serves. Attributes are read by
    the engine only."""

    def __init__(
        self,
        *,
        conn_id: int,
        deployment_id: str,
        origin: str | None,
        socket: Socket,
        abort: Callable[[], None],
        max_frames: int,
        faults: Callable[[], FaultPlan],
        rng: random.Random,
        flush_s: float,
        echo_bucket: TokenBucket | None,
        request_bucket: TokenBucket | None,
    ) -> None:
        self.conn_id = conn_id
        self.deployment_id = deployment_id
        self.origin = origin
        self.echo_bucket = echo_bucket
        self.request_bucket = request_bucket
        self.closed = False  # no more frames will be queued
        self.close_queued = False  # a close frame is queued: the writer finishes the handshake
        self._socket = socket
        self._abort = abort
        self._faults = faults
        self._rng = rng
        self._flush_s = flush_s
        self._outbox: asyncio.Queue[_Item] = asyncio.Queue(maxsize=max_frames)
        self._loop = asyncio.get_running_loop()

    def __repr__(self) -> str:
        return f"<Connection #{self.conn_id} closed={self.closed}>"

    # --- called by the engine (synchronous, O(1)) ------------------------------------------------------
    def send(self, frame: Frame) -> None:
        """Queue one frame. A full outbox drops the connection (see module docstring)."""
        if not self.closed:
            self.send_text(dumps(frame), frame.get("class"))

    def send_text(self, text: str, cls: object) -> None:
        """Queue an already serialised frame of class ``cls`` (fan-out serialises once)."""
        if self.closed:
            return
        plan = self._faults()
        delay = plan.delay_s if plan.classes is None or cls in plan.classes else 0.0
        self._put(_Item(self._loop.time() + delay, text))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with a close frame after the frames already queued."""
        if self.closed:
            return
        self.closed = True
        self.close_queued = True
        self._put(_Item(self._loop.time(), None, code, reason))

    def abort(self) -> None:
        """Drop the TCP connection now, without a close frame (the guest sees 1006)."""
        self.closed = True
        self.close_queued = False
        self._abort()

    def _put(self, item: _Item) -> None:
        try:
            self._outbox.put_nowait(item)
        except asyncio.QueueFull:
            self.abort()  # a stuck reader: drop it rather than grow memory

    # --- the writer task ------------------------------------------------------------------------------
    async def run_writer(self) -> None:
        """Drain the outbox onto the socket until a close marker or a dead socket. Never raises."""
        try:
            while True:
                batch = await self._next_batch()
                for item in batch:
                    wait = item.due - self._loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    if item.text is None:
                        await self._socket.close(code=item.close_code, message=item.close_reason.encode())
                        return
                    await self._socket.send_str(item.text)
        except (ConnectionError, RuntimeError):
            # The guest went away mid-write (aiohttp raises ConnectionResetError or RuntimeError on a
            # closing transport); the reader side notices too and detaches the connection.
            self.closed = True

    async def _next_batch(self) -> list[_Item]:
        first = await self._outbox.get()
        window = self._faults().reorder_window
        if window <= 1 or first.text is None:
            return [first]
        batch = [first]
        closing: _Item | None = None
        deadline = self._loop.time() + self._flush_s
        while len(batch) < window:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    item = await self._outbox.get()
            except TimeoutError:
                break
            if item.text is None:
                closing = item
                break
            batch.append(item)
        # Shuffle delivery order only; each frame keeps the channel.time it was stamped with (§10).
        self._rng.shuffle(batch)
        if closing is not None:
            batch.append(closing)
        return batch
