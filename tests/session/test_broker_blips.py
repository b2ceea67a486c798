"""A broker or journal blip never ends a Genesys session; retry decisions follow ``is_retryable``.

Virtual time (looptime); the harness injects a backoff of 1 s per try, so the time a retry took shows
that the injected backoff (not a formula of the emitter's own) paced it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from bridge.errors import BrokerUnavailable, GenesysProtocolError, PublishReturned, PublishTimeout
from bridge.observability.metrics import Metrics
from bridge.ports import LoopClock
from bridge.session.outcomes import OutcomeBook
from genesys_bridge_client.contract import Event, MessageSend
from genesys_bridge_client.contract.events import CommandOutcome
from tests.cancel_aside import turn_the_cancel_aside
from tests.session.conftest import Harness, running
from tests.session.fakes import FakeDelivery, FakeSink, envelope

pytestmark = pytest.mark.looptime


def _fail_store(h: Harness, failures: int) -> None:
    """The next ``failures`` record saves raise BrokerUnavailable, as the journal does when its broker blips."""
    original = h.store.save
    left = failures

    async def save(record: Any) -> None:
        nonlocal left
        if left:
            left -= 1
            raise BrokerUnavailable("fake: journal broker away")
        await original(record)

    h.store.save = save  # type: ignore[method-assign]


async def test_journal_blip_does_not_end_the_session() -> None:
    async with running() as h:
        token = await h.start()
        _fail_store(h, 1000)
        body = h.peer.agent_say(token, "while the journal is away")
        await h.sink.wait_type("message.received", 1, "s1")
        assert (await h.say("s1", "still talking")).status == "delivered"
        assert h.sample("genesys_bridge_session_record_save_failures_total") >= 2
        del h.store.save  # the journal is back
        h.peer.agent_say(token, "journal back")
        await h.sink.wait_type("message.received", 2, "s1")
        await asyncio.sleep(0)
        assert body["id"] in h.store.records["s1"].recent_message_ids  # the next save carried the backlog
        assert not h.sink.of_type("session.ended", "s1")
        assert h.registry.get("s1") is not None


async def test_event_publish_retries_without_limit_on_the_injected_backoff() -> None:
    async with running() as h:
        token = await h.start()
        h.sink.fail_next = 20  # far more than any fixed attempt budget
        loop = asyncio.get_running_loop()
        before = loop.time()
        h.peer.agent_say(token, "through a broker blip")
        (received,) = await h.sink.wait_type("message.received", 1, "s1")
        assert received.text == "through a broker blip"
        assert loop.time() - before == pytest.approx(20.0, abs=0.1)  # 20 waits of the injected 1 s
        assert not h.sink.of_type("session.ended", "s1")
        assert (await h.say("s1", "alive")).status == "delivered"


async def test_will_retry_notice_lost_to_the_broker_does_not_end_the_session() -> None:
    async with running() as h:
        await h.start()
        original = h.sink.publish

        async def publish(event: Event, **routing: Any) -> None:
            if isinstance(event, CommandOutcome) and event.status == "will_retry":
                raise PublishTimeout("fake: no confirm")
            await original(event, **routing)

        h.sink.publish = publish  # type: ignore[method-assign]
        h.peer.rate_limit_next = 1
        outcome = await h.say("s1", "patience", command_id="rl")
        assert outcome.status == "delivered"
        assert not h.sink.of_type("session.ended", "s1")


async def test_finish_closes_the_socket_even_when_publishing_fails() -> None:
    async with running() as h:
        token = await h.start()
        original = h.sink.publish
        refused = asyncio.Event()

        async def publish(event: Event, **routing: Any) -> None:
            if event.type in ("session.state_changed", "session.ended"):
                refused.set()
                raise PublishReturned("fake: final")
            await original(event, **routing)

        h.sink.publish = publish  # type: ignore[method-assign]
        assert h.peer.connections
        h.peer.disconnect(token, read_only=True)
        await refused.wait()  # the session is ending (after its final history check), not draining
        await h.registry.drain(10.0)  # returns once the (crashed) actor is done
        assert h.peer.connections == []  # the WebSocket was closed, not orphaned
        assert h.store.records["s1"].closed


async def test_local_protocol_refusal_is_final_not_retried() -> None:
    """a GenesysProtocolError is final per is_retryable; it was retried 10 times."""
    async with running() as h:
        await h.start()
        actor = h.registry.get("s1")
        assert actor is not None
        protocol = actor._core.link._protocol  # the one way to make the protocol refuse
        calls = 0

        def refuse(**kwargs: Any) -> None:
            nonlocal calls
            calls += 1
            raise GenesysProtocolError("send_message is not allowed in state read_only")

        protocol.send_message = refuse  # type: ignore[method-assign]
        outcome = await h.say("s1", "refused")
        assert (outcome.status, outcome.reason) == ("failed", "genesys_error")
        assert calls == 1


class _RaisingSink(FakeSink):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def publish(self, event: Event, **routing: Any) -> None:
        raise self.error


@pytest.mark.parametrize(
    ("error", "settled_as"),
    [(PublishTimeout("no confirm"), "requeue"), (BrokerUnavailable("away"), "requeue"), (PublishReturned("x"), "ack")],
)
async def test_outcome_publish_failure_requeues_only_when_retryable(error: Exception, settled_as: str) -> None:
    """a final broker error used to requeue the command for ever (up to the delivery limit)."""
    metrics = Metrics(CollectorRegistry(), process_metrics=False)
    book = OutcomeBook(sink=_RaisingSink(error), metrics=metrics, clock=LoopClock(), cache_size=10)
    env = envelope(MessageSend(command_id="c", session_id="s", text="x"))
    assert book.admit(env) == "new"
    outcome = CommandOutcome(
        event_id="e",
        session_id="s",
        seq=1,
        occurred_at=LoopClock().now(),
        command_id="c",
        command_type="message.send",
        status="delivered",
        reason="ok",
    )
    await book.settle(env, outcome, deployment_id=None)
    delivery = env.delivery
    assert isinstance(delivery, FakeDelivery)
    assert delivery.how == [settled_as]


async def test_a_drain_ends_an_event_publish_whose_cancel_the_broker_call_turned_aside() -> None:
    """The drain cancels a session still retrying an event's publish; a broker call that ends the cancel with
    a broker error of its own (as aiormq's can) must not count as one more failed try: the session ends."""
    async with running() as h:
        token = await h.start()
        publishing = asyncio.Event()

        async def publish(event: Event, **routing: Any) -> None:
            await turn_the_cancel_aside(publishing, raising=BrokerUnavailable("fake: the channel closed"))

        h.sink.publish = publish  # type: ignore[method-assign]
        h.peer.agent_say(token, "never published")
        await publishing.wait()
        with capture_logs() as logs:
            await h.registry.drain(1.0)
        assert "drain_cancel_unfinished" not in {entry["event"] for entry in logs}
        assert h.registry.get("s1") is None


def _inbound_publishes_turn_the_cancel_aside(h: Harness) -> asyncio.Event:
    """Make the publish of an agent's message end a cancel with ``PublishReturned`` of its own (as a broker call
    can); the event is set once such a publish waits for the cancel."""
    publishing = asyncio.Event()
    original = h.sink.publish

    async def publish(event: Event, **routing: Any) -> None:
        if event.type == "message.received":
            await turn_the_cancel_aside(publishing, raising=PublishReturned("fake: returned with the cancel"))
        await original(event, **routing)

    h.sink.publish = publish  # type: ignore[method-assign]
    return publishing


async def test_a_session_cancelled_at_the_drain_deadline_is_suspended_when_a_call_made_the_cancel_a_final_error() -> (
    None
):
    """A call that ends the deadline's cancel with a final error of its own (a TaskGroup puts a child's error
    before the cancel) must not end the session as a crash: the record stays live for the next owner."""
    async with running() as h:
        token = await h.start()
        publishing = _inbound_publishes_turn_the_cancel_aside(h)
        h.peer.agent_say(token, "never published")
        await publishing.wait()
        with capture_logs() as logs:
            await h.registry.drain(1.0)
        logged = {entry["event"] for entry in logs}
        assert "session_crashed" not in logged
        assert "session_cancelled_with_error" in logged
        assert not h.sink.of_type("session.ended", "s1")
        assert h.store.records["s1"].state not in ("ended", "failed")
        assert h.registry.get("s1") is None


class _RequeueWaitingForTheBroker(FakeDelivery):
    """A requeue that waits for its frame to be written, as a real one may."""

    async def requeue(self) -> None:
        await asyncio.sleep(0)
        await super().requeue()


async def test_a_session_cancelled_at_the_drain_deadline_with_a_final_error_still_requeues_its_command() -> None:
    """Python 3.13's TaskGroup, raising a child's error over a cancel from outside, cancels its task again so
    that the cancel is not lost. The session's clean-up must still run to its end: the command in flight and
    the one queued behind it are handed back, not left to come back only when their channel closes. (On
    3.11 and 3.12 nothing is cancelled again: this guards the code on 3.13.)"""
    async with running() as h:
        token = await h.start()
        publishing = _inbound_publishes_turn_the_cancel_aside(h)
        h.peer.swallow_messages = 1  # the first send waits for an echo that never comes
        deliveries = []
        for command_id in ("in-flight", "queued"):
            deliveries.append(delivery := _RequeueWaitingForTheBroker())
            send = MessageSend(command_id=command_id, session_id="s1", text=f"{command_id}, no echo")
            await h.registry.submit(dataclasses.replace(h.env(send), delivery=delivery))
        await h.peer.wait_until(lambda: any(f.get("action") == "onMessage" for f in h.peer.received))
        h.peer.agent_say(token, "never published")
        await publishing.wait()
        with capture_logs() as logs:
            await h.registry.drain(1.0)
        assert "session_cancelled_with_error" in {entry["event"] for entry in logs}
        assert [delivery.how for delivery in deliveries] == [["requeue"], ["requeue"]]
