"""Fixtures: a SessionRegistry wired to in-memory fakes (peer, sink, history, uploads, store)."""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from bridge.config import Settings
from bridge.observability.metrics import Metrics
from bridge.observability.tracing import NO_TRACER, Tracer
from bridge.ports import Envelope, LoopClock
from bridge.session.heartbeat import Heartbeat
from bridge.session.ports import AuthClient, FeatureSource
from bridge.session.registry import SessionRegistry, session_deps
from bridge.store.memory import MemorySessionStore
from genesys_bridge_client.contract import MessageSend, SessionEnd, SessionStart, TypingSend
from tests.session.fakes import (
    FakeGenesys,
    FakeHistory,
    FakeSink,
    FakeUploads,
    envelope,
    resolve_endpoints,
)

DEPLOYMENT = "0f4f1d2a-5b1e-4e0e-9f3a-2f5d8c1a7b10"


def settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {"echo_interval_s": 240.0, "reconnect_initial_s": 0.5, "reconnect_max_s": 8.0}
    base.update(overrides)
    return Settings(**base)


@dataclass
class Harness:
    peer: FakeGenesys
    sink: FakeSink
    registry: SessionRegistry
    metrics: Metrics
    store: MemorySessionStore
    history: FakeHistory
    uploads: FakeUploads
    clock: LoopClock
    heartbeat: Heartbeat

    def env(self, command: Any, **kw: Any) -> Envelope:
        kw.setdefault("received_at", self.clock.monotonic())
        return envelope(command, **kw)

    async def submit(self, command: Any, **kw: Any) -> Envelope:
        env = self.env(command, **kw)
        await self.registry.submit(env)
        return env

    async def start(self, session_id: str = "s1", **kw: Any) -> str:
        """Start a session, wait for its outcome, return its Genesys token."""
        command = SessionStart(
            command_id=kw.pop("command_id", f"start-{session_id}"),
            session_id=session_id,
            deployment_id=DEPLOYMENT,
            region="mypurecloud.com",
            **kw,
        )
        await self.submit(command)
        outcome = await self.sink.wait_outcome(command.command_id)
        assert outcome.status == "delivered", outcome
        actor = self.registry.get(session_id)
        assert actor is not None
        return actor.record.token.get_secret_value()

    async def say(self, session_id: str, text: str, command_id: str | None = None, **kw: Any) -> Any:
        command = MessageSend(command_id=command_id or uuid.uuid4().hex, session_id=session_id, text=text, **kw)
        await self.submit(command)
        return await self.sink.wait_outcome(command.command_id)

    async def typing(self, session_id: str, command_id: str | None = None) -> Any:
        command = TypingSend(command_id=command_id or uuid.uuid4().hex, session_id=session_id)
        await self.submit(command)
        return await self.sink.wait_outcome(command.command_id)

    async def end(self, session_id: str, command_id: str | None = None) -> Any:
        command = SessionEnd(command_id=command_id or uuid.uuid4().hex, session_id=session_id)
        await self.submit(command)
        return await self.sink.wait_outcome(command.command_id)

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


def make_harness(
    *,
    features: FeatureSource | None = None,
    tracer: Tracer = NO_TRACER,
    auth: AuthClient | None = None,
    keepalive_phase: Callable[[float], float] | None = None,
    **overrides: Any,
) -> tuple[Harness, SessionRegistry]:
    peer = FakeGenesys()
    sink = FakeSink()
    metrics = Metrics(CollectorRegistry(), process_metrics=False)
    store = MemorySessionStore()
    history = FakeHistory(peer)
    uploads = FakeUploads(peer, sources={"https://files.invalid/a.png": b"\x89PNG" + b"0" * 100})
    clock = LoopClock()
    deps = session_deps(
        settings=settings(**overrides),
        sink=sink,
        connector=peer,
        endpoints=resolve_endpoints,
        history=history,
        uploads=uploads,
        metrics=metrics,
        clock=clock,
        store=store,
        backoff=lambda: itertools.repeat(1.0),
        features=features,
        tracer=tracer,
        auth=auth,
        keepalive_phase=keepalive_phase or (lambda interval: interval),
    )
    registry = SessionRegistry(deps)
    return Harness(peer, sink, registry, metrics, store, history, uploads, clock, deps.heartbeat), registry


@contextlib.asynccontextmanager
async def running(
    *,
    features: FeatureSource | None = None,
    tracer: Tracer = NO_TRACER,
    auth: AuthClient | None = None,
    keepalive_phase: Callable[[float], float] | None = None,
    **overrides: Any,
) -> AsyncIterator[Harness]:
    """A harness whose registry runs for the ``async with`` block (its TaskGroup lives in the test's task).
    ``keepalive_phase`` draws the first ping's and echo's delay; by default a whole interval."""
    h, registry = make_harness(
        features=features, tracer=tracer, auth=auth, keepalive_phase=keepalive_phase, **overrides
    )
    async with registry:
        yield h
