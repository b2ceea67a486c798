"""Per-session objects keep no instance ``__dict__``: at 10,000 sessions each dict is ~100 bytes times the
objects of every session (docs/performance.md, capacity). A new attribute must be added to ``__slots__``."""

from __future__ import annotations

import pytest

from bridge.recent_ids import RecentIds
from bridge.recent_outcomes import RecentOutcomes
from bridge.session.actor import SessionActor
from bridge.session.auth import Credentials
from bridge.session.commands import CommandRunner
from bridge.session.flow import Inbox, SendBudget
from bridge.session.inbound import HeldEvents, InboundDispatcher, ReorderBuffer
from bridge.session.link import GenesysLink
from bridge.session.session import PendingSends, RecordKeeper, Session, SessionEvents, SessionGate
from tests.session.conftest import running

pytestmark = pytest.mark.looptime

PER_SESSION = (
    SessionActor,
    Session,
    SessionGate,
    PendingSends,
    RecentIds,
    RecentOutcomes,
    RecordKeeper,
    SessionEvents,
    Inbox,
    SendBudget,
    Credentials,
    CommandRunner,
    InboundDispatcher,
    HeldEvents,
    ReorderBuffer,
    GenesysLink,
)


async def test_a_live_sessions_objects_have_no_instance_dict() -> None:
    async with running() as h:
        await h.start()
        actor = h.registry.get("s1")
        assert actor is not None
        found: list[object] = []
        todo: list[object] = [actor]
        while todo:  # every object of the session reachable through bridge.session attributes
            obj = todo.pop()
            if any(obj is seen for seen in found):
                continue
            found.append(obj)
            for name in getattr(type(obj), "__slots__", ()):
                value = getattr(obj, name, None)
                if isinstance(value, PER_SESSION):
                    todo.append(value)
        assert {type(o) for o in found} >= {SessionActor, Session, SessionGate, RecordKeeper, GenesysLink, Inbox}
        for obj in found:
            assert not hasattr(obj, "__dict__"), type(obj).__name__
        await h.say("s1", "still works")  # and the session runs as before
