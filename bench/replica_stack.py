"""Several bridge replicas sharing one deployment's queues, as real processes (docs/scaling.md).

``async with ReplicaStack(name, partitions=16) as stack:`` starts the simulator (unless ``simulator=False``);
``await stack.add("r0")`` starts one ``genesys-bridge run`` replica on the stack's names (unique to the
run), with its own HTTP port and replica name, and waits for its ``/readyz``. Every replica shares one
state key, so any of them can resume any session. The replicas' JSON logs go to files under ``LOG_DIR``
and are read incrementally (:meth:`Replica.entries`), which is how partition ownership is followed
(``partition_gained`` / ``partition_released`` / ``partition_lost``), as ``tests/durability/replicas.py``
does for the tests.

On exit every replica and the simulator are killed and every name the bridge declares is deleted, also on
failure: the exchanges, the intake queue and its partition queues ``<intake>.p<N>``, the presence and
hunger queues, the dead-letter queue and the journal streams ``<journal>.p<N>``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import aio_pika
import aiohttp

from bench.common import AMQP_URL, free_port, unique_prefix
from bench.procs import Child, find_rabbitmq_pid
from bench.stack import LOG_DIR
from bridge.amqp.tools import DeploymentNames
from bridge.partition.layout import partition_of

__all__ = ["Replica", "ReplicaStack", "delete_names", "log_time"]

_BANNER = re.compile(r"listening on (\S+) bench (\d+)")


def _bridge_argv() -> list[str]:
    """``python -m bridge run``, or ``BENCH_BRIDGE_CMD`` (split on spaces), as ``bench.stack`` does."""
    override = os.environ.get("BENCH_BRIDGE_CMD")
    return override.split() if override else [sys.executable, "-m", "bridge", "run"]


def log_time(entry: dict[str, Any]) -> float:
    """A JSON log entry's ``timestamp`` (ISO, UTC) as seconds since the epoch (nan when absent)."""
    stamp = entry.get("timestamp")
    if not isinstance(stamp, str):
        return float("nan")
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@dataclass
class Replica:
    """One replica: its process, HTTP port and log (parsed incrementally)."""

    name: str
    child: Child
    http_port: int
    _offset: int = 0
    _entries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def alive(self) -> bool:
        return self.child.alive()

    def entries(self) -> list[dict[str, Any]]:
        """Every JSON log entry so far (reads what was appended since the last call)."""
        with contextlib.suppress(OSError), open(self.child.log_path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
            end = data.rfind(b"\n") + 1
            self._offset += end
            for line in data[:end].splitlines():
                if line.startswith(b"{"):
                    with contextlib.suppress(ValueError):
                        self._entries.append(json.loads(line))
        return self._entries

    def events(self, name: str) -> list[dict[str, Any]]:
        """The log entries whose ``event`` is ``name``."""
        return [e for e in self.entries() if e.get("event") == name]

    def owned(self) -> set[int]:
        """The partitions this replica owns now, by its logs (nothing once it is dead)."""
        owned: set[int] = set()
        if not self.alive:
            return owned
        for entry in self.entries():
            event = entry.get("event")
            if event == "partition_gained":
                owned.add(int(entry["partition"]))
            elif event in ("partition_released", "partition_lost"):
                owned.discard(int(entry["partition"]))
        return owned

    def recovered(self) -> bool:
        """Every owned partition has finished resuming its sessions since it was last gained."""
        latest: dict[int, str] = {}
        for entry in self.entries():
            event = entry.get("event")
            if event in ("partition_gained", "partition_recovered"):
                latest[int(entry["partition"])] = event
        return all(latest.get(p) == "partition_recovered" for p in self.owned())

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError), open(self.child.log_path, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
        return ""


async def delete_names(queues: Iterable[str], exchanges: Iterable[str]) -> None:
    """Delete ``queues`` then ``exchanges`` (each in its own channel: a missing one closes it). Never raises."""
    with contextlib.suppress(Exception):
        conn = await aio_pika.connect(AMQP_URL, client_properties={"connection_name": "bench-cleanup"})
        async with conn:
            for q in queues:
                with contextlib.suppress(Exception):
                    ch = await conn.channel()
                    await ch.queue_delete(q)
                    await ch.close()
            for x in exchanges:
                with contextlib.suppress(Exception):
                    ch = await conn.channel()
                    await ch.exchange_delete(x)
                    await ch.close()


class ReplicaStack:
    """Simulator + K bridge replicas on names unique to this run. Attributes are valid inside ``async with``."""

    def __init__(
        self,
        name: str,
        *,
        partitions: int,
        max_sessions: int = 1000,
        simulator: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.prefix = unique_prefix(name)
        self.names = DeploymentNames(self.prefix)
        self.partitions = partitions
        self.max_sessions = max_sessions
        self.simulator = simulator
        self.extra_env = extra_env or {}
        self.state_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
        self.sim: Child | None = None
        self.sim_url = ""
        self.bench_url = ""
        self.replicas: list[Replica] = []
        self.rabbitmq_pid = find_rabbitmq_pid()
        self._stack = AsyncExitStack()
        self._http: aiohttp.ClientSession | None = None

    # --- names --------------------------------------------------------------------------------------
    def queue_names(self) -> list[str]:
        """Every queue and stream the replicas declare (what :meth:`__aexit__` deletes)."""
        return list(self.names.queues(self.partitions))

    # --- life ---------------------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        os.makedirs(LOG_DIR, exist_ok=True)
        try:
            self._stack.push_async_callback(
                delete_names, self.queue_names(), [self.names.command_exchange, self.names.event_exchange]
            )
            self._http = await self._stack.enter_async_context(aiohttp.ClientSession())
            if self.simulator:
                self.sim = await self._stack.enter_async_context(
                    Child(
                        [sys.executable, "-m", "bench.sim_server", "--no-agent"],
                        name="simulator",
                        log_path=f"{LOG_DIR}/{self.prefix}.sim.log",
                        announce=True,
                    )
                )
                match = _BANNER.match(await self.sim.first_line(timeout_s=20))
                assert match is not None, "unexpected simulator banner"
                self.sim_url = match.group(1)
                self.bench_url = f"http://127.0.0.1:{match.group(2)}"
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    def env(self, replica: str, http_port: int) -> dict[str, str]:
        """One replica's environment: the stack's names and key, its own port and name, JSON logs."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        env.update(
            self.names.environment(),
            BRIDGE_AMQP_URL=AMQP_URL,
            BRIDGE_STATE_KEY=self.state_key,
            BRIDGE_HTTP_HOST="127.0.0.1",
            BRIDGE_HTTP_PORT=str(http_port),
            BRIDGE_MAX_SESSIONS=str(self.max_sessions + 100),
            BRIDGE_PARTITIONS=str(self.partitions),
            BRIDGE_REPLICA_NAME=replica,
            BRIDGE_LOG_LEVEL=os.environ.get("BENCH_BRIDGE_LOG_LEVEL", "INFO"),
            BRIDGE_LOG_FORMAT="json",
        )
        if self.sim_url:
            env["BRIDGE_GENESYS_BASE_URL"] = self.sim_url
        env.update(self.extra_env)
        return env

    async def add(self, name: str, *, ready_timeout_s: float = 60.0) -> Replica:
        """Start one more replica named ``name`` and wait until its ``/readyz`` says 200."""
        port = free_port()
        child = await self._stack.enter_async_context(
            Child(
                _bridge_argv(),
                name=name,
                env=self.env(f"{self.name}-{name}", port),
                log_path=f"{LOG_DIR}/{self.prefix}.{name}.log",
            )
        )
        replica = Replica(name, child, port)
        self.replicas.append(replica)
        await self._wait_ready(replica, ready_timeout_s)
        return replica

    async def _wait_ready(self, replica: Replica, timeout_s: float) -> None:
        assert self._http is not None
        url = f"http://127.0.0.1:{replica.http_port}/readyz"
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while replica.alive:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with self._http.get(url) as resp:
                            if resp.status == 200:
                                return
                    await asyncio.sleep(0.05)
        raise RuntimeError(f"replica {replica.name} not ready; log tail:\n{replica.tail()}")

    async def kill(self, replica: Replica) -> None:
        """SIGKILL ``replica`` (a crash) and reap it."""
        await replica.child.stop(signal.SIGKILL)

    @property
    def alive(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive]

    @property
    def pids(self) -> dict[str, int | None]:
        """Processes whose CPU the benchmarks read: each live replica, the simulator, RabbitMQ, this process."""
        pids: dict[str, int | None] = {r.name: r.pid for r in self.alive}
        pids["simulator"] = self.sim.pid if self.sim else None
        pids["rabbitmq"] = self.rabbitmq_pid
        pids["loadgen"] = os.getpid()
        return pids

    # --- ownership ----------------------------------------------------------------------------------
    def balanced(self) -> bool:
        """Every partition owned by exactly one live replica, each at its fair share or one below it."""
        alive = self.alive
        counts = [len(r.owned()) for r in alive]
        owned = sorted(p for r in alive for p in r.owned())
        share = -(-self.partitions // max(1, len(alive)))
        return owned == list(range(self.partitions)) and all(share - 1 <= c <= share for c in counts)

    def settled(self) -> bool:
        """Balanced, and every owned partition has resumed its sessions."""
        return self.balanced() and all(r.recovered() for r in self.alive)

    async def wait(self, predicate: Callable[[], bool], *, what: str, timeout_s: float) -> None:
        """Poll ``predicate()`` every 100 ms; raise with every replica's log tail on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    if predicate():
                        return
                    await asyncio.sleep(0.1)
        except TimeoutError:
            tails = "\n".join(f"--- {r.name} ---\n{r.tail(8)}" for r in self.alive)
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}:\n{tails}") from None

    def owner_of(self, session_id: str) -> Replica | None:
        """The live replica that owns ``session_id``'s partition now."""
        partition = partition_of(session_id, self.partitions)
        return next((r for r in self.alive if partition in r.owned()), None)

    # --- HTTP ---------------------------------------------------------------------------------------
    async def metrics_text(self, replica: Replica) -> str:
        """``replica``'s /metrics page."""
        assert self._http is not None
        async with self._http.get(f"http://127.0.0.1:{replica.http_port}/metrics") as resp:
            return await resp.text()
