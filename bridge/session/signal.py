"""A flag that tasks can wait for: :class:`asyncio.Event`'s behaviour at a fraction of its memory.

Every :class:`asyncio.Event` allocates a ``collections.deque`` for its waiters when it is made, about 600
bytes, and a session holds several events for its whole life, mostly with nobody waiting. A session's
signals keep their waiters in a list made only while someone waits (docs/performance.md, memory per session).
"""

from __future__ import annotations

import asyncio

__all__ = ["Signal"]


class Signal:
    """Like :class:`asyncio.Event` (``set``, ``clear``, ``is_set``, ``wait``), for one event loop.

    ``set`` wakes every task waiting at that moment, even if ``clear`` follows before they run, as
    :class:`asyncio.Event` does. A cancelled waiter leaves no trace.
    """

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        """Reset the flag: later :meth:`wait` calls wait for the next :meth:`set`."""
        self._set = False

    async def wait(self) -> bool:
        """Return (True) once the flag is set; at once if it is set now."""
        if self._set:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            waiters = self._waiters
            if waiters is not None and waiter in waiters:  # cancelled before a set()
                waiters.remove(waiter)
                if not waiters:
                    self._waiters = None
        return True
