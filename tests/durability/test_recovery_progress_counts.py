"""Unit tests of :class:`bridge.recovery.RecoveryProgress`: what counts as a recovered session, and when."""

from __future__ import annotations

import asyncio

from bridge.recovery import RecoveryProgress


async def test_each_session_counts_once_and_the_last_finishes_the_recovery() -> None:
    progress = RecoveryProgress(["a", "b", "c"])
    assert (progress.total, progress.pending, progress.done) == (3, 3, False)

    progress.settle("a", "resumed")
    progress.settle("a", "ended:expired")  # a later end of a resumed session is not a second recovery
    progress.settle("other", "resumed")  # never pending: ignored
    assert progress.pending == 2
    progress.settle("b", "ended:conversation_lost")
    assert not progress.done
    progress.settle("c", "not_started")
    async with asyncio.timeout(1):
        await progress.finished()
    progress.log_finished()
    assert progress.results == {"resumed": 1, "ended:conversation_lost": 1, "not_started": 1}


async def test_nothing_to_recover_is_finished_at_once() -> None:
    progress = RecoveryProgress([])
    assert progress.done
    async with asyncio.timeout(1):
        await progress.finished()


async def test_recovery_does_not_wait_for_an_actor_that_exited_without_a_word() -> None:
    progress = RecoveryProgress(["a", "b"])
    progress.settle("a", "exited")
    assert not progress.done
    progress.settle("b", "exited")
    async with asyncio.timeout(1):
        await progress.finished()
    assert progress.results["exited"] == 2
