"""Scenario helpers: open sessions through the bridge, speak for the agent, check what came out."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from bridge.simulator import Simulator
from bridge.simulator.session import GenesysSessionState, Session
from genesys_bridge_client.contract.events import Event, MessageReceived
from tests.e2e.harness import EventCollector, Integrator

__all__ = [
    "Conversation",
    "agent_ids_published",
    "assert_resumed_in_place",
    "open_sessions",
    "queue_commands",
    "wait_all_published",
    "wait_received_texts",
]


@dataclass
class Conversation:
    """One session as the test sees it on both sides: the bridge's ``session_id`` and the simulator's."""

    session_id: str
    token: str
    sim_session_id: str
    agent_ids: list[str] = field(default_factory=list)  # every agent message id, in send order
    sent_before_kill: int = 0  # agent_ids[:sent_before_kill] were sent while the first daemon ran
    commands: list[tuple[str, str]] = field(default_factory=list)  # (command_id, text) queued while down

    async def say(self, sim: Simulator, text: str) -> str:
        message_id = await sim.agent_say(self.token, text)
        self.agent_ids.append(message_id)
        return message_id


async def open_sessions(client: Integrator, sim: Simulator, session_ids: list[str]) -> list[Conversation]:
    """Start every session through the bridge (with a first guest text naming it) and await the start."""
    for sid in session_ids:
        await client.start(sid, initial_message=f"hello from {sid}")
    await client.events.wait_every_session(session_ids, "session.started")
    conversations = []
    for sid in session_ids:
        session = await sim.wait_session(first_text=f"hello from {sid}", timeout_s=30)
        conversations.append(Conversation(sid, session.token, session.session_id))
    return conversations


async def queue_commands(client: Integrator, conversations: list[Conversation], per_session: int) -> None:
    """Publish ``per_session`` ``message.send`` commands to every session (queued while the bridge is down)."""
    for k in range(per_session):
        for conv in conversations:
            text = f"cmd {conv.session_id} #{k}"
            command_id = await client.say(conv.session_id, text)
            conv.commands.append((command_id, text))


def _published_agent_id(event: Event) -> str | None:
    """The Genesys message id of an agent message the bridge published (an outbound ``message.received``)."""
    return event.genesys_message_id if isinstance(event, MessageReceived) and event.direction == "outbound" else None


def agent_ids_published(events: EventCollector) -> Counter[str]:
    """How often each Genesys message id was published as an outbound ``message.received``."""
    return Counter(mid for mid in map(_published_agent_id, events.events) if mid is not None)


async def wait_all_published(events: EventCollector, conversations: list[Conversation]) -> None:
    """Await until every agent message of every conversation was published at least once."""
    await events.wait_each((mid for conv in conversations for mid in conv.agent_ids), _published_agent_id)


def assert_resumed_in_place(sim: Simulator, conv: Conversation) -> Session:
    """The bridge resumed the *same* Genesys session: its original token with ``startNew:false``.

    The simulator answers ``startNew:true`` (or an unknown token) with a new session (new simulator session
    id, ``newSession:true``) and marks the old one ``replaced``; so the same simulator session, still active,
    with the same token, is what proves an in-place resume (§4.1).
    """
    session = sim.session(conv.token)
    assert session.session_id == conv.sim_session_id, f"{conv.session_id}: a new Genesys session was made"
    assert session.state is GenesysSessionState.ACTIVE, f"{conv.session_id}: {session.state}"
    assert session.token == conv.token
    assert not [s for s in sim.sessions() if s.token == conv.token and s.state is GenesysSessionState.REPLACED]
    return session


async def wait_received_texts(sim: Simulator, conv: Conversation, texts: list[str]) -> None:
    """Await until the simulator received every text in ``texts`` from the guest."""

    def ready() -> bool | None:
        got = {r.text for r in sim.session(conv.token).received}
        return True if set(texts) <= got else None

    await sim.wait_for(ready, timeout_s=30)
