"""Await "the simulator reached state X" without sleeping: predicates re-checked after every change."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

__all__ = ["Waiters"]

T = TypeVar("T")


class Waiters:
    """Pending ``wait_for`` calls. :meth:`notify` costs O(pending waiters), usually zero or one."""

    def __init__(self) -> None:
        self._pending: list[tuple[Callable[[], object], asyncio.Future[object]]] = []

    def notify(self) -> None:
        """Re-check every pending predicate; resolve those now truthy with their value."""
        for predicate, future in list(self._pending):
            if future.done():
                continue
            try:
                value = predicate()
            except Exception as exc:  # a broken predicate fails its own waiter, not the server
                future.set_exception(exc)
                continue
            if value:
                future.set_result(value)

    async def wait_for(self, predicate: Callable[[], T | None], timeout_s: float | None) -> T:
        """Return ``predicate()`` once it is truthy. TimeoutError after ``timeout_s`` (None = no limit)."""
        value = predicate()
        if value:
            return value
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._pending.append(entry)
        try:
            async with asyncio.timeout(timeout_s):
                return await future  # type: ignore[return-value]  # resolved with predicate()'s value
        finally:
            self._pending.remove(entry)

    def cancel_all(self) -> None:
        """The simulator stops: cancel every pending wait."""
        for _, future in self._pending:
            if not future.done():
                future.cancel()
