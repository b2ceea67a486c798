"""How the bridge's concurrent work ends: loops that stop when asked, and steps that all run out.

**A loop stops when its task was asked to.** A drain stops the daemon's loops (the fleet's probes and
balance, the re-journal, the broker links' reconnects; a session's, at the drain's deadline) with
``task.cancel()``, and the request reaches the task through whatever it awaits at that moment. A library
call does not always end with the ``CancelledError`` then: aiormq runs each channel call in a task of its
own, which re-raises a channel's close reason that races the cancel, and Python 3.11's ``asyncio.wait_for``
returns a result that arrived with the cancel. A loop that takes such an error as broker trouble (or the
result as a success) goes round again and sleeps until its next interval, with nobody left to cancel it: the
TaskGroup that owns it waits forever, and the drain never ends. The request stays counted on the task
(``Task.cancelling()``) until someone takes it back (``asyncio.timeout`` and :class:`TaskGroup` do, for their
own), so a loop asks before each round and each retry (:func:`stop_if_asked`). Never ask in code that runs
while a TaskGroup of the same task aborts (a drain's ``finally``): the group's own cancel is still counted
there.

**A TaskGroup takes back its own cancel** (:class:`TaskGroup`, used in place of asyncio's). A child that
fails cancels the task running the group, to stop its body, and the group takes that request back when it
exits. asyncio's before Python 3.13 does not when the child fails after the body ended, while the group
waits for its children: the task leaves the group counted as asked to stop, and every later
:func:`asked_to_stop` in it would say yes (a session's connection loop would end instead of reconnecting).
Also before 3.13, a cancel from outside that meets a child's error is not raised again after the group's
error: only its count remains, which is why code that catches a group's error asks :func:`asked_to_stop`.
From 3.13 on that cancel is raised again at the task's next await (its count unchanged), so code that turns
such an error into its cancel and then cleans up takes that one first (``SessionActor.run``).

**Steps that must all run out** (every probe of a round, every partition's fence in a drain) are awaited
with :func:`each_to_its_end`: unlike a TaskGroup, one step's failure does not cancel the others, and none
is left running with nobody to await it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from types import TracebackType
from typing import Final, TypeVar

import structlog

__all__ = ["TaskGroup", "asked_to_stop", "each_to_its_end", "stop_if_asked"]

T = TypeVar("T")

log = structlog.get_logger(__name__)


#: Python 3.13 made asyncio's TaskGroup take its cancel back whenever it made one.
_GROUP_KEEPS_ITS_CANCEL: Final = sys.version_info < (3, 13)


class TaskGroup(asyncio.TaskGroup):
    """asyncio's TaskGroup, which also takes back the cancel it makes when a child fails after the body ended
    (see the module's docstring). Use it wherever a TaskGroup is needed."""

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        made_before = self._made_its_cancel()
        try:
            await super().__aexit__(et, exc, tb)
        finally:
            # A cancel made before the exit is taken back at its start; one made while the group waited
            # for its children (the body had ended) was delivered to that wait and never taken back.
            if _GROUP_KEEPS_ITS_CANCEL and self._made_its_cancel() and not made_before:
                # The task that entered the group, which the group cancelled (not whichever task exits it).
                parent: asyncio.Task[object] | None = getattr(self, "_parent_task", None)
                if parent is not None:
                    parent.uncancel()

    def _made_its_cancel(self) -> bool:
        made: bool = getattr(self, "_parent_cancel_requested", False)
        return made


def asked_to_stop() -> bool:
    """Whether ``cancel()`` was called on the running task and nobody took the request back."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def stop_if_asked() -> None:
    """Raise ``CancelledError`` when the running task was asked to stop (:func:`asked_to_stop`).

    Call it in a loop that catches broker errors, before every round and every retry: a cancellation a
    library turned into an error or a result of its own then still ends the loop.
    """
    if asked_to_stop():
        raise asyncio.CancelledError


async def each_to_its_end(*steps: Awaitable[T]) -> list[T]:
    """Run ``steps`` together until every one has ended; return their results in order, or raise the first
    failure (in argument order) once all have ended; later failures are logged, not raised. A cancellation of the
    caller cancels every step, waits until each has unwound, and is raised whatever the steps end with."""
    results = await asyncio.gather(*steps, return_exceptions=True)
    values: list[T] = []
    failures: list[BaseException] = []
    for result in results:
        if isinstance(result, BaseException):
            failures.append(result)
        else:
            values.append(result)
    for later in failures[1:]:  # the caller sees only the first: the others would go unseen
        log.error("step_failed_beside_another", error=repr(later), exc_info=later)
    if failures:
        raise failures[0]
    return values
