"""A session's bounded command inbox. Policy when full: **reject** (the registry answers ``overflow``).

Unlike ``asyncio.Queue`` it can be *closed*: the consumer's :meth:`next` then returns ``None`` once the
current command is done, and :meth:`drain` hands back what was never started (to requeue on shutdown or
to answer ``session_ended`` when the session is over). One consumer task; producers never wait.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque

from bridge.ports import Envelope

__all__ = ["Inbox", "Offer"]


class Offer(enum.Enum):
    """The result of :meth:`Inbox.offer`."""

    ACCEPTED = "accepted"
    FULL = "full"
    CLOSED = "closed"


class Inbox:
    """Bounded FIFO of envelopes with close semantics."""

    def __init__(self, maxsize: int) -> None:
        self._maxsize = maxsize
        self._items: deque[Envelope] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def offer(self, envelope: Envelope) -> Offer:
        """Append without waiting; ``FULL`` and ``CLOSED`` leave the envelope to the caller."""
        if self._closed:
            return Offer.CLOSED
        if len(self._items) >= self._maxsize:
            return Offer.FULL
        self._items.append(envelope)
        self._wakeup.set()
        return Offer.ACCEPTED

    async def next(self) -> Envelope | None:
        """The oldest envelope, waiting for one; ``None`` once closed (queued ones stay for :meth:`drain`)."""
        while not self._closed:
            if self._items:
                return self._items.popleft()
            self._wakeup.clear()
            await self._wakeup.wait()
        return None

    def close(self) -> None:
        """Stop handing out envelopes; wakes the consumer."""
        self._closed = True
        self._wakeup.set()

    def drain(self) -> list[Envelope]:
        """Remove and return every queued envelope (never started)."""
        items = list(self._items)
        self._items.clear()
        return items
