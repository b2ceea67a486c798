"""End to end against the real simulator over real sockets: WebsocketsConnector + GenesysRest + registry.

Real time (sockets and virtual time do not mix); every wait is on an event, bounded by the test timeout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CollectorRegistry

from bridge.genesys.connector import WebsocketsConnector
from bridge.genesys.rest import GenesysRest
from bridge.genesys.urls import endpoints_for
from bridge.observability.metrics import Metrics
from bridge.ports import LoopClock
from bridge.session.registry import SessionRegistry, session_deps
from bridge.simulator import Simulator, SimulatorConfig
from bridge.store.memory import MemorySessionStore
from genesys_bridge_client.contract import MessageSend, SessionStart
from tests.session.conftest import DEPLOYMENT, Harness, settings
from tests.session.fakes import FakeSink, envelope

#: These tests were written against a deployment with Disconnect, Clear and guest typing on.
EVERYTHING_ON = SimulatorConfig.everything_on()


class SimHarness(Harness):
    sim: Simulator

    def token(self, session_id: str = "s1") -> str:
        actor = self.registry.get(session_id)
        assert actor is not None
        return actor.record.token.get_secret_value()


@contextlib.asynccontextmanager
async def live(config: SimulatorConfig | None = None, **overrides: Any) -> AsyncIterator[SimHarness]:
    config = config or dataclasses.replace(EVERYTHING_ON, agent_script=False)
    async with Simulator(config) as sim, GenesysRest() as rest:
        sink = FakeSink()
        metrics = Metrics(CollectorRegistry(), process_metrics=False)
        overrides.setdefault("delivery_timeout_s", 10.0)
        deps = session_deps(
            settings=settings(genesys_base_url=sim.base_url, **overrides),
            sink=sink,
            connector=WebsocketsConnector(proxy=None),
            endpoints=functools.partial(endpoints_for, override=sim.base_url),
            history=rest,
            uploads=rest,
            metrics=metrics,
            store=MemorySessionStore(),
            backoff=lambda: itertools.repeat(0.05),
        )
        registry = SessionRegistry(deps)
        h = SimHarness(None, sink, registry, metrics, MemorySessionStore(), None, None, LoopClock(), deps.heartbeat)  # type: ignore[arg-type]
        h.sim = sim
        async with registry:
            yield h


async def test_full_conversation_with_the_scripted_bot() -> None:
    async with live(EVERYTHING_ON) as h:
        await h.start()
        assert (await h.say("s1", "quick")).status == "delivered"
        replies = await h.sink.wait_type("message.received", 1, "s1")
        assert replies[0].direction == "outbound"
        assert replies[0].sender.kind == "bot"
        assert (await h.typing("s1")).status == "delivered"
        assert (await h.end("s1")).status == "delivered"
        (ended,) = await h.sink.wait_type("session.ended", 1, "s1")
        assert ended.reason == "guest_ended"


async def test_genesys_errors() -> None:
    config = dataclasses.replace(EVERYTHING_ON, agent_script=False, max_text_bytes=20, typing_enabled=False)
    async with live(config) as h:
        await h.start()
        too_long = await h.say("s1", "x" * 30)
        assert (too_long.status, too_long.reason, too_long.genesys_code) == ("failed", "message_too_long", 4011)
        typing = await h.typing("s1")
        assert (typing.status, typing.reason) == ("failed", "typing_disabled")
        h.sim.session(h.token()).read_only = True
        read_only = await h.say("s1", "anyone?")
        assert (read_only.reason, read_only.genesys_code) == ("read_only", 409)
        (ended,) = await h.sink.wait_type("session.ended", 1, "s1")
        assert ended.reason == "read_only"


async def test_rate_limit_429_without_loss_or_duplicate() -> None:
    config = dataclasses.replace(EVERYTHING_ON, agent_script=False, message_rate_per_s=1.0, retry_after_s=1)
    async with live(config, send_rate_per_s=20.0, send_burst=20) as h:
        await h.start()
        ids = [f"r{i}" for i in range(4)]
        for command_id in ids:
            await h.submit(MessageSend(command_id=command_id, session_id="s1", text=command_id))
        outcomes = [await h.sink.wait_outcome(c) for c in ids]
        assert [o.status for o in outcomes] == ["delivered"] * 4
        assert any(o.status == "will_retry" for c in ids for o in h.sink.outcomes(c))
        texts = [m.get("text") for m in h.sim.history(h.token())]
        assert texts == ids  # each once, in order


async def test_expiry_4006() -> None:
    async with live() as h:
        await h.start()
        await h.sim.expire(h.token())
        (ended,) = await h.sink.wait_type("session.ended", 1, "s1")
        assert ended.reason == "expired"


async def test_drop_while_agent_talks_every_missed_message_once() -> None:
    async with live() as h:
        await h.start()
        token = h.token()
        said = [await h.sim.agent_say(token, f"live {i}") for i in range(3)]
        await h.sink.wait_type("message.received", 3, "s1")
        await h.sim.drop_connections(token)
        for i in range(3):  # commands queued during the outage: each delivered once, in order
            await h.submit(MessageSend(command_id=f"g{i}", session_id="s1", text=f"guest {i}"))
        said += [await h.sim.agent_say(token, f"during {i}") for i in range(5)]
        await h.sink.wait_type("session.resumed", 1, "s1")
        said += [await h.sim.agent_say(token, f"after {i}") for i in range(3)]
        received = await h.sink.wait_type("message.received", 11, "s1")
        ids = [m.genesys_message_id for m in received]
        assert sorted(ids) == sorted(said)
        assert len(set(ids)) == len(ids) == 11
        assert [(await h.sink.wait_outcome(f"g{i}")).status for i in range(3)] == ["delivered"] * 3
        guest_texts = [r.text for r in h.sim.received(token) if r.text and r.text.startswith("guest")]
        assert guest_texts == ["guest 0", "guest 1", "guest 2"]
        assert (await h.say("s1", "back")).status == "delivered"


async def test_idempotent_duplicate_and_drain() -> None:
    async with live() as h:
        await h.start()
        first = await h.say("s1", "once", command_id="same")
        again = envelope(MessageSend(command_id="same", session_id="s1", text="once"))
        await h.registry.submit(again)
        await again.delivery.settled.wait()  # type: ignore[attr-defined]
        assert h.sink.outcomes("same") == [first, first]
        assert [r.text for r in h.sim.received(h.token()) if r.text] == ["once"]
        token = h.token()
        await h.registry.drain(5.0)
        session = h.sim.session(token)
        assert session.state.value == "active"  # the Genesys session lives on for a resume
        assert not session.connections


async def test_start_with_initial_message_and_attributes() -> None:
    async with live() as h:
        command = SessionStart(
            command_id=uuid.uuid4().hex,
            session_id="s1",
            deployment_id=DEPLOYMENT,
            region="mypurecloud.com",
            initial_message="my order is late",
            custom_attributes={"orderId": "A-991"},
        )
        await h.registry.submit(envelope(command))
        outcome = await h.sink.wait_outcome(command.command_id)
        assert outcome.status == "delivered"
        assert outcome.genesys_message_id
        session = h.sim.session_by_attribute("orderId", "A-991")
        assert session is not None
        assert session.first_text == "my order is late"
