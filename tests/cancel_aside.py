"""A fake broker or HTTP call that turns a cancellation of its caller aside, as some library calls do.

aiormq re-raises a channel's close reason that races a cancel, and Python 3.11's ``asyncio.wait_for``
returns a result that arrived with one. Fakes of the bridge's ports call :func:`turn_the_cancel_aside`
where their real call would wait for the broker, to test that a loop still stops when its task is asked to.
"""

from __future__ import annotations

import asyncio

__all__ = ["turn_the_cancel_aside"]


async def turn_the_cancel_aside(waiting: asyncio.Event, *, raising: BaseException | None = None) -> None:
    """Set ``waiting``, then wait for an answer that never comes. Cancelled, end with ``raising`` (an error of
    the call's own) or, without it, normally (as if the answer had come): never with ``CancelledError``."""
    waiting.set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        if raising is not None:
            raise raising from None
