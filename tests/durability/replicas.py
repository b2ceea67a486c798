"""Several bridge daemons of one deployment, and which partitions each owns, read from their logs."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Self

from bridge.partition.layout import partition_of
from tests.daemon import WAIT_S, Daemon
from tests.durability.conftest import EnvFactory

__all__ = ["Replicas", "owned_partitions"]

#: Fast enough that a test sees ownership move in about a second (the defaults are for production).
FAST = {"probe_interval_s": "0.3", "balance_interval_s": "0.6", "fence_grace_s": "0.3"}


def owned_partitions(daemon: Daemon) -> set[int]:
    """The partitions ``daemon`` owns now, by its ``partition_gained`` / ``_released`` / ``_lost`` logs."""
    owned: set[int] = set()
    if not daemon.alive:
        return owned
    for entry in daemon.logs:
        event = entry.get("event")
        if event == "partition_gained":
            owned.add(entry["partition"])
        elif event in ("partition_released", "partition_lost"):
            owned.discard(entry["partition"])
    return owned


class Replicas:
    """Bridge daemons sharing one deployment's queues; each gets its own HTTP port and replica name.

    Use as ``async with Replicas(env, partitions=6) as fleet:``; leaving kills every daemon still alive.
    """

    def __init__(self, env: EnvFactory, *, partitions: int, **settings: str) -> None:
        self.partitions = partitions
        self._env = env
        self._settings = {"partitions": str(partitions), **FAST, **settings}
        self.daemons: list[Daemon] = []
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    @property
    def alive(self) -> list[Daemon]:
        return [d for d in self.daemons if d.alive]

    async def add(self, name: str) -> Daemon:
        """Start one more replica named ``name`` and await its start (consumers registered)."""
        daemon = await self._stack.enter_async_context(
            Daemon(self._env(replica_name=name, **self._settings), name=name)
        )
        self.daemons.append(daemon)
        await daemon.started()
        return daemon

    def owner(self, session_id: str) -> Daemon | None:
        """The replica that owns ``session_id``'s partition now, if any."""
        partition = partition_of(session_id, self.partitions)
        return next((d for d in self.alive if partition in owned_partitions(d)), None)

    def sessions_of(self, daemon: Daemon, session_ids: Iterable[str]) -> list[str]:
        """The ones of ``session_ids`` whose partition ``daemon`` owns now."""
        owned = owned_partitions(daemon)
        return [sid for sid in session_ids if partition_of(sid, self.partitions) in owned]

    async def wait(self, predicate: Callable[[], bool], *, what: str, timeout_s: float = WAIT_S) -> None:
        """Await ``predicate()`` over all replicas' logs (re-checked on every line any of them writes)."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    seen = {d: len(d.lines) for d in self.daemons}  # before the check: no line goes unseen
                    if predicate():
                        return
                    waits = [asyncio.ensure_future(d.lines_beyond(seen[d])) for d in self.daemons if d.alive]
                    try:
                        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        for w in waits:
                            w.cancel()
        except TimeoutError:
            tails = "\n".join(f"--- {d.name} ---\n{d.tail(15)}" for d in self.daemons)
            raise AssertionError(f"timed out waiting for {what}:\n{tails}") from None

    def balanced(self) -> bool:
        """Every partition owned by exactly one live replica, and every live replica at its fair share or
        one below it."""
        counts = [len(owned_partitions(d)) for d in self.alive]
        owned = [p for d in self.alive for p in owned_partitions(d)]
        share = -(-self.partitions // max(1, len(counts)))
        return sorted(owned) == list(range(self.partitions)) and all(share - 1 <= c <= share for c in counts)

    async def wait_balanced(self, *, timeout_s: float = WAIT_S) -> None:
        await self.wait(self.balanced, what="every partition owned, each replica at its share", timeout_s=timeout_s)

    async def stop(self, daemon: Daemon, sig: signal.Signals) -> int:
        return await daemon.stop(sig)
