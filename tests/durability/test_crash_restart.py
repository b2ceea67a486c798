"""A crash (SIGKILL) and a drain (SIGTERM) mid-conversation lose nothing (docs/durability.md).

The agent keeps talking through the outage and the integrator keeps sending commands, which queue in
RabbitMQ. After a restart every session must be resumed in place (same token, ``startNew:false``), every
missed agent message published, and every queued command delivered to Genesys in order, once.
"""

from __future__ import annotations

import contextlib
import signal
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from bridge.simulator import Simulator
from genesys_bridge_client.contract.events import CommandOutcome, SessionResumed
from tests.daemon import Daemon
from tests.durability.conftest import EnvFactory
from tests.durability.helpers import (
    Conversation,
    agent_ids_published,
    assert_resumed_in_place,
    open_sessions,
    queue_commands,
    wait_all_published,
    wait_received_texts,
)
from tests.e2e.harness import Integrator

SESSIONS = 4
SAID_BEFORE = 3  # agent messages published and confirmed before the stop
SAID_AT_STOP = 2  # sent right before the signal: their events or checkpoints may be in flight
SAID_WHILE_DOWN = 3
SAID_DURING_RECOVERY = 1
COMMANDS_WHILE_DOWN = 3


async def _conversation_until_stop(
    sim: Simulator, client: Integrator, env: EnvFactory, sig: signal.Signals
) -> list[Conversation]:
    async with Daemon(env(), name="first") as first:
        await first.started()
        conversations = await open_sessions(client, sim, [f"s{i}" for i in range(SESSIONS)])
        for k in range(SAID_BEFORE):
            for conv in conversations:
                await conv.say(sim, f"agent {conv.session_id} before #{k}")
        await wait_all_published(client.events, conversations)
        for k in range(SAID_AT_STOP):  # the agent keeps sending as the bridge goes down
            for conv in conversations:
                await conv.say(sim, f"agent {conv.session_id} at stop #{k}")
        code = await first.stop(sig)
        assert code == (0 if sig is signal.SIGTERM else -signal.SIGKILL), first.tail()
        if sig is signal.SIGTERM:
            assert first.events("drain_finished"), first.tail()
    for conv in conversations:
        conv.sent_before_kill = len(conv.agent_ids)
    for k in range(SAID_WHILE_DOWN):
        for conv in conversations:
            await conv.say(sim, f"agent {conv.session_id} while down #{k}")
    await queue_commands(client, conversations, COMMANDS_WHILE_DOWN)
    return conversations


@contextlib.asynccontextmanager
async def _after_restart(
    sim: Simulator, client: Integrator, env: EnvFactory, conversations: list[Conversation]
) -> AsyncIterator[Daemon]:
    """Restart the bridge; the agent talks during the recovery; yield once everything came through."""
    async with Daemon(env(), name="second") as second:
        await second.wait_log("partition_gained")  # the first partition's sessions are being resumed
        for conv in conversations:  # the agent goes on talking while the bridge recovers
            for k in range(SAID_DURING_RECOVERY):
                await conv.say(sim, f"agent {conv.session_id} during recovery #{k}")
        await second.started()
        assert (await second.recovered())["sessions"] == SESSIONS
        await client.events.wait_every_session([c.session_id for c in conversations], "session.resumed")
        await wait_all_published(client.events, conversations)
        for conv in conversations:
            for command_id, _ in conv.commands:
                outcome = await client.events.outcome(command_id)
                assert outcome.status == "delivered", outcome
            await wait_received_texts(sim, conv, [text for _, text in conv.commands])
        yield second


def _check_resumed(sim: Simulator, client: Integrator, conversations: list[Conversation]) -> None:
    for conv in conversations:
        assert_resumed_in_place(sim, conv)
        resumed = client.events.of(conv.session_id, "session.resumed")
        assert len(resumed) == 1, resumed
        assert isinstance(resumed[0], SessionResumed)
        assert resumed[0].cause == "restart"
        assert not client.events.of(conv.session_id, "session.ended")


def _check_commands(sim: Simulator, client: Integrator, conversations: list[Conversation]) -> None:
    """Queued commands reached Genesys in publish order, each once, and were answered once."""
    for conv in conversations:
        texts = [text for _, text in conv.commands]
        received = [r.text for r in sim.received(conv.token) if r.text in texts]
        assert received == texts, f"{conv.session_id}: Genesys got {received}, expected {texts}"
        for command_id, _ in conv.commands:
            settled = [o for o in client.events.outcomes(command_id) if o.status != "will_retry"]
            assert len(settled) == 1, settled
            assert isinstance(settled[0], CommandOutcome)


def _duplicates_by_session(client: Integrator, conversations: list[Conversation]) -> dict[str, list[str]]:
    published = agent_ids_published(client.events)
    for conv in conversations:
        missing = [mid for mid in conv.agent_ids if published[mid] == 0]
        assert not missing, f"{conv.session_id}: agent messages never published: {missing}"
    return {conv.session_id: [mid for mid in conv.agent_ids if published[mid] > 1] for conv in conversations}


async def test_sigkill_mid_conversation_resumes_every_session_and_loses_nothing(
    sim: Simulator, client: Integrator, bridge_env: EnvFactory
) -> None:
    conversations = await _conversation_until_stop(sim, client, bridge_env, signal.SIGKILL)
    async with _after_restart(sim, client, bridge_env, conversations):
        _check_resumed(sim, client, conversations)
        _check_commands(sim, client, conversations)
        duplicates = _duplicates_by_session(client, conversations)
        published = agent_ids_published(client.events)
        for conv in conversations:
            dup = duplicates[conv.session_id]
            before = conv.agent_ids[: conv.sent_before_kill]
            after = conv.agent_ids[conv.sent_before_kill :]
            # Missed while down (or sent during recovery): exactly once each.
            assert all(published[mid] == 1 for mid in after), Counter({m: published[m] for m in after})
            # A re-publication is only allowed where the kill could have eaten the checkpoint. The first
            # process published a prefix of ``before``, in order; the restart resumes from a checkpoint that
            # is a (possibly shorter) prefix of it. So the duplicates are one contiguous run of ``before``
            # (from the saved checkpoint to the last message the first process published), twice each, and
            # the second copy is the restart's backfill.
            if dup:
                start = before.index(dup[0])
                assert dup == before[start : start + len(dup)], f"{conv.session_id}: duplicates {dup} not contiguous"
            for mid in dup:
                copies = [e for e in client.events.messages(conv.session_id) if e.genesys_message_id == mid]
                assert len(copies) == 2, copies
                assert copies[1].backfilled, copies
                assert copies[0].model_dump(include={"text", "genesys_time"}) == copies[1].model_dump(
                    include={"text", "genesys_time"}
                )


async def test_sigterm_then_restart_resumes_every_session_without_any_duplicate(
    sim: Simulator, client: Integrator, bridge_env: EnvFactory
) -> None:
    conversations = await _conversation_until_stop(sim, client, bridge_env, signal.SIGTERM)
    async with _after_restart(sim, client, bridge_env, conversations):
        _check_resumed(sim, client, conversations)
        _check_commands(sim, client, conversations)
        duplicates = _duplicates_by_session(client, conversations)
        assert duplicates == {conv.session_id: [] for conv in conversations}
        published = agent_ids_published(client.events)
        assert all(count == 1 for count in published.values()), published


@pytest.mark.parametrize(("before", "after"), [("1", "2"), ("2", "1")])
async def test_a_restart_into_the_other_journal_format_resumes_every_session(
    sim: Simulator, client: Integrator, bridge_env: EnvFactory, before: str, after: str
) -> None:
    """BRIDGE_JOURNAL_FORMAT switched across a drain (an upgrade to the binary records, and a return from
    them): the new process reads what the old one wrote and loses nothing."""
    conversations = await _conversation_until_stop(
        sim, client, lambda: bridge_env(journal_format=before), signal.SIGTERM
    )
    async with _after_restart(sim, client, lambda: bridge_env(journal_format=after), conversations):
        _check_resumed(sim, client, conversations)
        _check_commands(sim, client, conversations)
        assert _duplicates_by_session(client, conversations) == {conv.session_id: [] for conv in conversations}
