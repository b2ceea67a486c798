"""The load generator: publishes contract commands and times the events that answer them.

Lean aio-pika on purpose (its CPU is part of the box's budget): commands are JSON built by hand, events
are read with ``json.loads`` (only the fields we time by), and the event queue is consumed with
``no_ack``. Two connections, so publishing and consuming do not share a socket.

Latency is *command publish → event arrival* (or, for agent messages, the simulator's stamp → event
arrival), on ``loop.time()`` = CLOCK_MONOTONIC, which is the same clock in every process of the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractIncomingMessage, AbstractQueue

from bench.common import AMQP_URL
from bridge.amqp.tools import DeploymentNames

__all__ = ["DEPLOYMENT", "LoadGen", "Tally", "message_send"]

DEPLOYMENT = "bench-deployment"
_PUBLISH_WINDOW = 2000  # publishes awaiting their confirm at once: bounds the load generator's memory


#: Sends per session and second in :meth:`LoadGen.make_busy`: under the bridge's per-session budget of 2/s.
BUSY_RATE_PER_SESSION: Final = 1.8


@dataclass
class Tally:
    """What arrived while a phase ran: latencies (seconds) and non-delivered outcomes by reason."""

    latencies: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    arrived: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def note_failure(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1
        self.changed.set()


class LoadGen:
    """Publishes commands to ``command_exchange`` and follows ``event_exchange``. Use ``async with``."""

    def __init__(self, amqp_url: str, *, command_exchange: str, event_exchange: str) -> None:
        self._url = amqp_url
        self._command_exchange_name = command_exchange
        self._event_exchange_name = event_exchange
        self._pub_conn: AbstractConnection | None = None
        self._sub_conn: AbstractConnection | None = None
        self._commands: AbstractExchange | None = None
        self._events: AbstractExchange | None = None
        self._queue: AbstractQueue | None = None
        self.sub_channel: AbstractChannel | None = None
        self._sent_at: dict[str, float] = {}
        self._started: set[str] = set()
        self.started_changed = asyncio.Event()
        self._start_outcomes = 0
        self._opened = 0
        self.counts: dict[str, int] = {}
        self.counts_changed = asyncio.Event()
        self.tally = Tally()
        self._window = asyncio.Semaphore(_PUBLISH_WINDOW)
        self._loop = asyncio.get_running_loop()

    @classmethod
    def of(cls, names: DeploymentNames, amqp_url: str = AMQP_URL) -> LoadGen:
        """A load generator on the command and event exchanges of ``names``."""
        return cls(amqp_url, command_exchange=names.command_exchange, event_exchange=names.event_exchange)

    async def __aenter__(self) -> Self:
        self._pub_conn = await aio_pika.connect(self._url, client_properties={"connection_name": "bench-loadgen-pub"})
        self._sub_conn = await aio_pika.connect(self._url, client_properties={"connection_name": "bench-loadgen-sub"})
        pub = await self._pub_conn.channel(publisher_confirms=True)
        self._commands = await pub.declare_exchange(
            self._command_exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self.sub_channel = await self._sub_conn.channel()
        await self.sub_channel.set_qos(prefetch_count=0)
        self._events = await self.sub_channel.declare_exchange(
            self._event_exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self._queue = await self.sub_channel.declare_queue(exclusive=True, auto_delete=True)
        await self._queue.consume(self._on_event, no_ack=True)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for conn in (self._sub_conn, self._pub_conn):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()

    # --- following events -------------------------------------------------------------------------------
    async def follow(self, binding: str) -> None:
        """Receive events matching ``binding`` (e.g. ``command.outcome.#``) from now on."""
        assert self._queue is not None
        assert self._events is not None
        await self._queue.bind(self._events, routing_key=binding)

    async def unfollow(self, binding: str) -> None:
        """Stop receiving events matching ``binding``."""
        assert self._queue is not None
        assert self._events is not None
        await self._queue.unbind(self._events, routing_key=binding)

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        now = self._loop.time()
        data: dict[str, Any] = json.loads(message.body)
        kind = str(data.get("type"))
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.counts_changed.set()
        if kind == "command.outcome":
            sent = self._sent_at.pop(str(data.get("command_id") or data.get("causation_id")), None)
            if data.get("command_type") == "session.start":
                if data.get("status") == "delivered":
                    self._start_outcomes += 1
                    self.started_changed.set()
                else:
                    self.tally.note_failure(f"session.start:{data.get('reason')}")
            elif sent is not None:
                if data.get("status") == "delivered":
                    self.tally.latencies.append(now - sent)
                else:
                    self.tally.note_failure(str(data.get("reason")))
                self.tally.arrived += 1
                self.tally.changed.set()
        elif kind == "session.started":
            self._started.add(str(data.get("session_id")))
            self.started_changed.set()
        elif kind == "message.received":
            text = str(data.get("text") or "")
            if text.startswith("bench "):
                self.tally.latencies.append(now - int(text[6:]) / 1e9)
                self.tally.arrived += 1
                self.tally.changed.set()

    def new_tally(self) -> Tally:
        """Start counting afresh (the previous tally is returned to nobody: read it first)."""
        self.tally = Tally()
        self._sent_at.clear()
        return self.tally

    # --- publishing commands ----------------------------------------------------------------------------
    async def publish(self, command: dict[str, Any], *, timed: bool = True) -> None:
        """Publish one command and wait for its confirm (run many of these at once to pipeline)."""
        assert self._commands is not None
        command_id = command.setdefault("command_id", uuid.uuid4().hex)
        body = json.dumps(command).encode()
        if timed:
            self._sent_at[command_id] = self._loop.time()
        await self._commands.publish(
            aio_pika.Message(
                body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=command_id,
            ),
            routing_key=str(command["type"]),
        )

    async def publish_many(self, commands: list[dict[str, Any]], *, timed: bool = True) -> None:
        """Publish all, pipelined (at most ``_PUBLISH_WINDOW`` confirms outstanding)."""

        async def one(cmd: dict[str, Any]) -> None:
            try:
                await self.publish(cmd, timed=timed)
            finally:
                self._window.release()

        async with asyncio.TaskGroup() as tg:
            for cmd in commands:
                await self._window.acquire()
                tg.create_task(one(cmd))

    async def publish_paced(self, make: Callable[[int], dict[str, Any]], rate: float, duration_s: float) -> int:
        """Open loop: ``rate`` commands/s for ``duration_s`` (``make(i)`` builds the i-th). Returns how many.

        Commands go out in 5 ms steps; publishes overlap (their confirms are pipelined). When the
        window of outstanding confirms is full the pacing falls behind, which shows as latency.
        """
        total = int(rate * duration_s)
        start = self._loop.time()
        sent = 0

        async def one(cmd: dict[str, Any]) -> None:
            try:
                await self.publish(cmd)
            finally:
                self._window.release()

        async with asyncio.TaskGroup() as tg:
            while sent < total:
                due = min(total, int((self._loop.time() - start) * rate) + 1)
                while sent < due:
                    await self._window.acquire()
                    tg.create_task(one(make(sent)))
                    sent += 1
                await asyncio.sleep(0.005)
        return sent

    async def wait_arrived(self, count: int, timeout_s: float) -> bool:
        """Wait until ``count`` timed events arrived (or failed); False on timeout."""
        tally = self.tally
        try:
            async with asyncio.timeout(timeout_s):
                while tally.arrived + sum(tally.failures.values()) < count:
                    tally.changed.clear()
                    await tally.changed.wait()
        except TimeoutError:
            return False
        return True

    async def wait_count(self, kind: str, count: int, timeout_s: float) -> bool:
        """Wait until ``count`` events of type ``kind`` arrived in total; False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                while self.counts.get(kind, 0) < count:
                    self.counts_changed.clear()
                    await self.counts_changed.wait()
        except TimeoutError:
            return False
        return True

    # --- sessions ---------------------------------------------------------------------------------------
    async def make_busy(self, session_ids: list[str], sends: int, timeout_s: float) -> None:
        """Send each session ``sends`` ``message.send`` (round-robin, ``BUSY_RATE_PER_SESSION`` per session and
        second) and wait for every outcome, so each record carries that much history. The caller follows
        ``command.outcome.#`` first.

        Raises:
            RuntimeError: not every outcome arrived within ``timeout_s`` after the last send.
        """
        sent = await self.publish_paced(
            lambda i: message_send(session_ids[i % len(session_ids)]),
            len(session_ids) * BUSY_RATE_PER_SESSION,
            sends / BUSY_RATE_PER_SESSION,
        )
        if not await self.wait_arrived(sent, timeout_s=timeout_s):
            raise RuntimeError(f"not every outcome of the {sent} sends arrived within {timeout_s:g}s")

    def started_count(self) -> int:
        """How many distinct sessions reported ``session.started`` so far."""
        return len(self._started)

    async def start_sessions(self, session_ids: list[str], timeout_s: float, *, deployments: int = 1) -> float:
        """Publish ``session.start`` for each id (pipelined) and wait for every ``session.started``.

        ``deployments`` > 1 spreads the sessions round-robin over that many deployment ids (the bridge
        allows 1,000 new Genesys connections per deployment per minute, Genesys' limit, §8).

        Returns the seconds from the first publish to the last ``session.started``; it then also waits
        for every start's ``command.outcome``, so no start outcome is still under way afterwards. Raises
        ``TimeoutError`` (with how many started) after ``timeout_s``, or ``RuntimeError`` when the
        bridge refuses a start.
        """
        await self.follow("session.started.#")
        await self.follow("session.ended.#")  # a session that dies while opening shows in the error
        await self.follow("command.outcome.#")
        target = len(self._started) + len(session_ids)
        outcomes_target = self._start_outcomes + len(session_ids)
        started = time.monotonic()
        elapsed = math.nan
        commands = [
            {
                "type": "session.start",
                "session_id": sid,
                "deployment_id": DEPLOYMENT if deployments == 1 else f"{DEPLOYMENT}-{(self._opened + k) % deployments}",
                "region": "mypurecloud.com",
                "custom_attributes": {"bench": sid},
            }
            for k, sid in enumerate(session_ids)
        ]
        self._opened += len(session_ids)
        try:
            async with asyncio.timeout(timeout_s), asyncio.TaskGroup() as tg:
                tg.create_task(self.publish_many(commands, timed=False))
                while len(self._started) < target or self._start_outcomes < outcomes_target:
                    if len(self._started) >= target and math.isnan(elapsed):
                        elapsed = time.monotonic() - started
                    if self.tally.failures:
                        raise RuntimeError(f"session.start refused: {self.tally.failures}")
                    self.started_changed.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            await self.started_changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"in {timeout_s:.0f} s: {len(self._started)}/{target} session.started, "
                f"{self._start_outcomes}/{outcomes_target} session.start outcomes delivered, "
                f"{self.counts.get('session.ended', 0)} session.ended"
            ) from None
        finally:
            await self.unfollow("session.started.#")
            await self.unfollow("session.ended.#")
            await self.unfollow("command.outcome.#")
        return time.monotonic() - started if math.isnan(elapsed) else elapsed


def message_send(session_id: str) -> dict[str, Any]:
    """A small ``message.send`` command (the benchmark's unit of work)."""
    return {"type": "message.send", "session_id": session_id, "text": "hello from the benchmark"}
