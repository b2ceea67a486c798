"""Socket loss, reconnect, history backfill and the ends Genesys decides, in virtual time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bridge.errors import GenesysUnavailable
from genesys_bridge_client.contract import MessageSend, PresenceReceived
from tests.cancel_aside import turn_the_cancel_aside
from tests.session.conftest import running

pytestmark = pytest.mark.looptime


async def test_drop_while_agent_talks_publishes_each_missed_message_once() -> None:
    async with running() as h:
        token = await h.start()
        h.peer.agent_say(token, "before the drop")
        await h.sink.wait_type("message.received", 1, "s1")
        h.peer.drop_all()
        missed = [h.peer.agent_say(token, f"missed {i}", live=False) for i in range(30)]  # > one history page
        resumed = (await h.sink.wait_type("session.resumed", 1, "s1"))[0]
        assert resumed.cause == "reconnect"
        assert resumed.missed_messages == 30
        received = await h.sink.wait_type("message.received", 31, "s1")
        assert [m.text for m in received] == ["before the drop"] + [f"missed {i}" for i in range(30)]
        assert all(m.backfilled for m in received[1:])
        assert [m.genesys_message_id for m in received[1:]] == [m["id"] for m in missed]
        # configureSession again with the same token and startNew:false (§4.1)
        configures = [f for f in h.peer.received if f["action"] == "configureSession"]
        assert len(configures) == 2
        assert {f["token"] for f in configures} == {token}
        assert all(f.get("startNew") in (False, None) for f in configures)
        assert h.sample("genesys_bridge_reconnects_total", target="genesys") == 1
        assert h.sample("genesys_bridge_backfilled_messages_total") == 30
        # a second drop with nothing new: nothing published twice
        h.peer.drop_all()
        await h.sink.wait_type("session.resumed", 2, "s1")
        assert len(h.sink.of_type("message.received", "s1")) == 31
        h.peer.agent_say(token, "live again")
        await h.sink.wait_type("message.received", 32, "s1")
        states = [(e.old, e.new) for e in h.sink.of_type("session.state_changed", "s1")]
        assert ("active", "reconnecting") in states
        assert ("reconnecting", "active") in states


async def test_unanswered_send_found_in_history_is_delivered_not_resent() -> None:
    async with running() as h:
        token = await h.start()
        h.peer.drop_after_receive = 1  # Genesys got it, the echo was lost with the socket
        outcome = await h.say("s1", "did it arrive?")
        assert outcome.status == "delivered"
        assert outcome.genesys_message_id == h.peer.history[token][-1]["id"]
        assert h.peer.sent_texts().count("did it arrive?") == 1
        # the guest's own message is not published back as message.received
        assert not h.sink.of_type("message.received", "s1")


async def test_unanswered_send_missing_from_history_is_resent_same_tracing_id() -> None:
    async with running() as h:
        await h.start()
        h.peer.swallow_messages = 1
        command = MessageSend(command_id="lost", session_id="s1", text="again please")
        await h.submit(command)
        await h.peer.wait_received(lambda r: any(f.get("message", {}).get("text") == "again please" for f in r))
        h.peer.drop_all()
        outcome = await h.sink.wait_outcome("lost")
        assert outcome.status == "delivered"
        sends = [f for f in h.peer.received if f.get("message", {}).get("text") == "again please"]
        assert len(sends) == 2
        assert sends[0]["tracingId"] == sends[1]["tracingId"]


async def test_reconnect_backs_off_while_genesys_is_unreachable() -> None:
    async with running() as h:
        await h.start()
        h.peer.refuse_connects = 3
        loop = asyncio.get_running_loop()
        before = loop.time()
        h.peer.drop_all()
        await h.sink.wait_type("session.resumed", 1, "s1")
        assert loop.time() - before == pytest.approx(4.0, abs=0.1)  # 4 waits of 1 s (the injected backoff)
        assert h.sample("genesys_bridge_reconnects_total", target="genesys") == 4


async def test_gives_up_after_reconnect_budget() -> None:
    async with running(reconnect_give_up_s=10.0) as h:
        await h.start()
        queued = MessageSend(command_id="stuck", session_id="s1", text="anyone?")
        h.peer.refuse_connects = 1000
        h.peer.drop_all()
        await h.submit(queued)
        (ended,) = await h.sink.wait_type("session.ended", 1, "s1")
        assert ended.reason == "failed"
        outcome = await h.sink.wait_outcome("stuck")
        assert (outcome.status, outcome.reason) == ("failed", "session_ended")
        assert h.sample("genesys_bridge_session_failures_total", reason="gave_up") == 1


async def test_new_session_on_resume_is_conversation_lost() -> None:
    async with running() as h:
        await h.start()
        h.peer.configure_new_session = True
        h.peer.drop_all()
        (ended,) = await h.sink.wait_type("session.ended", 1, "s1")
        assert ended.reason == "conversation_lost"


async def test_connection_closed_event_is_reported_not_fought() -> None:
    async with running() as h:
        await h.start()
        h.peer.push_all("ConnectionClosedEvent", {"reason": "signedIn"})
        (ended,) = await h.sink.wait_type("session.ended", 1, "s1")
        assert ended.reason == "closed_by_genesys"
        assert len([f for f in h.peer.received if f["action"] == "configureSession"]) == 1


async def test_agent_disconnect_in_read_only_mode_ends_session() -> None:
    async with running() as h:
        token = await h.start()
        h.peer.disconnect(token, read_only=True)
        (ended,) = await h.sink.wait_type("session.ended", 1, "s1")
        assert (ended.reason, ended.detail) == ("agent_disconnected", "read_only")
        assert h.registry.get("s1") is None or h.registry.get("s1").state.value == "ended"
        rejected = await h.say("s1", "hello?")
        assert rejected.status == "rejected"


async def test_agent_disconnect_in_send_mode_keeps_the_session_writable() -> None:
    """§5.3: without readOnly the guest may write on; the bridge says the agent left and keeps the session."""
    async with running() as h:
        token = await h.start()
        h.peer.disconnect(token, read_only=False)
        (presence,) = await h.sink.wait_type("presence.received", 1, "s1")
        assert isinstance(presence, PresenceReceived)
        assert (presence.kind, presence.read_only) == ("disconnect", False)
        delivered = await h.say("s1", "anyone there?")
        assert delivered.status == "delivered"
        assert not h.sink.of_type("session.ended", "s1")


async def test_disconnect_missed_during_outage_ends_after_backfill() -> None:
    async with running() as h:
        token = await h.start()
        h.peer.drop_all()
        h.peer.agent_say(token, "bye now", live=False)
        h.peer.history[token].append(
            {
                "id": "disc-1",
                "type": "Event",
                "direction": "Outbound",
                "channel": {"time": "2030-01-01T00:00:00+00:00"},
                "events": [{"eventType": "Presence", "presence": {"type": "Disconnect"}}],
                "metadata": {"readOnly": "true"},
            }
        )
        (ended,) = await h.sink.wait_type("session.ended", 1, "s1")
        assert ended.reason == "agent_disconnected"
        assert [m.text for m in h.sink.of_type("message.received", "s1")] == ["bye now"]


async def test_replayed_disconnect_older_than_last_message_is_ignored() -> None:
    async with running() as h:
        token = await h.start()
        h.peer.agent_say(token, "newest")
        await h.sink.wait_type("message.received", 1, "s1")
        old = {
            "id": "old-disc",
            "type": "Event",
            "direction": "Outbound",
            "channel": {"time": "2000-01-01T00:00:00+00:00"},
            "events": [{"eventType": "Presence", "presence": {"type": "Disconnect"}}],
        }
        h.peer.push_all("StructuredMessage", old)
        assert (await h.say("s1", "still here")).status == "delivered"
        assert not h.sink.of_type("session.ended", "s1")


async def test_checkpoint_waits_for_the_broker_confirm() -> None:
    async with running() as h:
        token = await h.start()
        h.sink.block()
        body = h.peer.agent_say(token, "held by back-pressure")
        await asyncio.sleep(1)
        assert body["id"] not in h.registry.get("s1").record.recent_message_ids
        h.sink.unblock()
        await h.sink.wait_type("message.received", 1, "s1")
        await asyncio.sleep(0)
        assert h.registry.get("s1").record.last_message_id == body["id"]
        assert h.store.records["s1"].last_message_id == body["id"]


async def test_replayed_read_only_disconnect_reconnects_instead_of_refusing_sends() -> None:
    async with running() as h:
        token = await h.start()
        h.peer.agent_say(token, "newest")
        await h.sink.wait_type("message.received", 1, "s1")
        old = {
            "id": "old-ro-disc",
            "type": "Event",
            "direction": "Outbound",
            "channel": {"time": "2000-01-01T00:00:00+00:00"},
            "events": [{"eventType": "Presence", "presence": {"type": "Disconnect"}}],
            "metadata": {"readOnly": "true"},
        }
        h.peer.push_all("StructuredMessage", old)
        await h.sink.wait_type("session.resumed", 1, "s1")
        assert (await h.say("s1", "still writable")).status == "delivered"
        assert not h.sink.of_type("session.ended", "s1")


class _Abandoned(Exception):
    """Raised in a test's block so the registry's TaskGroup aborts: it cancels every session, with no drain."""


async def test_a_cancelled_session_does_not_reconnect_when_its_connect_turned_the_cancel_into_a_socket_error() -> None:
    """A session cancelled without a drain (its stop flag unset) while a reconnect's connect ends the cancel
    with a socket error of its own must end there, not back off and connect again until cancelled once more."""
    connecting = asyncio.Event()
    connects = 0

    async def connect(url: str, *, origin: str | None) -> Any:
        nonlocal connects
        connects += 1
        if connects == 1:
            await turn_the_cancel_aside(connecting, raising=GenesysUnavailable("fake: the connect failed"))
        raise GenesysUnavailable("fake: Genesys unreachable")

    async def abandon_while_reconnecting() -> None:
        async with asyncio.timeout(30), running() as h:
            await h.start()
            h.peer.connect = connect  # type: ignore[method-assign]
            h.peer.drop_all()
            await connecting.wait()
            raise _Abandoned

    with pytest.raises(ExceptionGroup) as aborted:
        await abandon_while_reconnecting()
    assert aborted.group_contains(_Abandoned)
    assert connects == 1
