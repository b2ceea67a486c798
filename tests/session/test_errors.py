"""Genesys errors and the rules of the road, against the in-memory peer in virtual time."""

from __future__ import annotations

import asyncio

import pytest

from genesys_bridge_client.contract import MessageSend, SessionEnded
from tests.session.conftest import running

pytestmark = pytest.mark.looptime


async def test_message_too_long_4011_is_failed_with_code() -> None:
    async with running() as h:
        await h.start()
        h.peer.errors["long one"] = 4011
        outcome = await h.say("s1", "long one")
        assert (outcome.status, outcome.reason, outcome.genesys_code) == ("failed", "message_too_long", 4011)
        assert (await h.say("s1", "still alive")).status == "delivered"


async def test_attributes_too_large_4013() -> None:
    async with running() as h:
        await h.start()
        h.peer.errors["attrs"] = 4013
        outcome = await h.say("s1", "attrs")
        assert (outcome.reason, outcome.genesys_code) == ("attributes_too_large", 4013)


async def test_oversized_text_rejected_before_sending() -> None:
    async with running() as h:
        h.peer.max_custom_data_bytes = 512  # the session's limit from SessionResponse (§5.1)
        await h.start()
        big = {f"k{i}": "v" * 100 for i in range(6)}
        outcome = await h.say("s1", "hi", custom_attributes=big)
        assert (outcome.status, outcome.reason) == ("rejected", "attributes_too_large")
        assert "hi" not in h.peer.sent_texts()


async def test_read_only_409_fails_and_ends_session() -> None:
    async with running() as h:
        await h.start()
        h.peer.errors["late"] = 409
        outcome = await h.say("s1", "late")
        assert (outcome.status, outcome.reason, outcome.genesys_code) == ("failed", "read_only", 409)
        (ended,) = await h.sink.wait_type("session.ended", 1, "s1")
        assert ended.reason == "read_only"


async def test_429_retry_after_is_honoured_without_loss_or_duplicate() -> None:
    async with running() as h:
        await h.start()
        h.peer.rate_limit_next = 2
        loop = asyncio.get_running_loop()
        before = loop.time()
        command = MessageSend(command_id="m-429", session_id="s1", text="patience")
        await h.submit(command)
        outcome = await h.sink.wait_outcome("m-429")
        assert outcome.status == "delivered"
        assert loop.time() - before >= 6.0  # two retryAfter waits of 3 s
        notices = [o for o in h.sink.outcomes("m-429") if o.status == "will_retry"]
        assert len(notices) == 2
        assert h.sample("genesys_bridge_rate_limit_delay_seconds_count", kind="genesys") == 2
        assert h.sample("genesys_bridge_rate_limit_delay_seconds_sum", kind="genesys") == 6.0
        assert h.sample("genesys_bridge_rate_limit_drops_total", kind="message") == 0
        sends = [
            f for f in h.peer.received if f.get("action") == "onMessage" and f["message"].get("text") == "patience"
        ]
        assert len(sends) == 3
        assert len({f["tracingId"] for f in sends}) == 1  # the same tracingId every time
        assert h.peer.sent_texts().count("patience") == 3
        assert (
            len(
                [
                    m
                    for m in h.peer.history[h.registry.get("s1").record.token.get_secret_value()]
                    if m.get("text") == "patience"
                ]
            )
            == 1
        )


async def test_expiry_4006_ends_session_expired() -> None:
    async with running() as h:
        await h.start()
        h.peer.errors["too late"] = 4006
        outcome = await h.say("s1", "too late")
        assert outcome.status == "failed"
        assert outcome.genesys_code == 4006
        (ended,) = await h.sink.wait_type("session.ended", 1, "s1")
        assert ended.reason == "expired"


async def test_session_expired_event_ends_session() -> None:
    async with running() as h:
        await h.start()
        h.peer.push_all("SessionExpiredEvent", {})
        (ended,) = await h.sink.wait_type("session.ended", 1, "s1")
        assert ended.reason == "expired"
        assert h.registry.get("s1") is None or h.registry.get("s1").state.value == "ended"


async def test_typing_403_is_typing_disabled_and_not_sent_again() -> None:
    async with running() as h:
        await h.start()
        h.peer.typing_forbidden = True
        first = await h.typing("s1")
        assert (first.status, first.reason, first.genesys_code) == ("failed", "typing_disabled", 403)
        await asyncio.sleep(10)
        typing_frames = len(
            [f for f in h.peer.received if f["action"] == "onMessage" and f["message"]["type"] == "Event"]
        )
        second = await h.typing("s1")
        assert second.reason == "typing_disabled"
        assert typing_frames == len(
            [f for f in h.peer.received if f["action"] == "onMessage" and f["message"]["type"] == "Event"]
        )


async def test_typing_is_coalesced_per_interval() -> None:
    async with running() as h:
        await h.start()
        first = await h.typing("s1")
        second = await h.typing("s1")
        assert (first.status, first.reason) == ("delivered", "ok")
        assert (second.status, second.reason) == ("delivered", "typing_coalesced")
        await asyncio.sleep(5)
        third = await h.typing("s1")
        assert third.reason == "ok"


async def test_typing_dropped_when_budget_spent() -> None:
    async with running() as h:
        await h.start()
        await h.say("s1", "one")
        await h.say("s1", "two")  # the burst of 2 is spent
        outcome = await h.typing("s1")
        assert (outcome.status, outcome.reason) == ("delivered", "typing_coalesced")
        assert "budget" in outcome.detail
        assert h.sample("genesys_bridge_rate_limit_drops_total", kind="typing") == 1
        assert (
            h.sample("genesys_bridge_commands_total", type="typing.send", status="delivered", reason="typing_coalesced")
            == 1
        )


async def test_send_budget_paces_messages() -> None:
    async with running() as h:
        await h.start()
        loop = asyncio.get_running_loop()
        before = loop.time()
        ids = [f"pace-{i}" for i in range(6)]
        for command_id in ids:
            await h.submit(MessageSend(command_id=command_id, session_id="s1", text=command_id))
        for command_id in ids:
            assert (await h.sink.wait_outcome(command_id)).status == "delivered"
        # at most 2 in any 1 s: out at 0, 0, 1, 1, 2, 2; the 3rd and the 5th wait, each for a pair.
        assert loop.time() - before == pytest.approx(2.0, abs=0.05)
        assert h.sample("genesys_bridge_rate_limit_delay_seconds_count", kind="message") == 2
        # each of the two waited one second for a slot
        assert h.sample("genesys_bridge_rate_limit_delay_seconds_sum", kind="message") == pytest.approx(2.0, abs=0.05)


async def test_no_echo_is_failed_timeout() -> None:
    async with running(delivery_timeout_s=7.0) as h:
        await h.start()
        h.peer.swallow_messages = 1
        loop = asyncio.get_running_loop()
        before = loop.time()
        outcome = await h.say("s1", "into the void")
        assert (outcome.status, outcome.reason) == ("failed", "timeout")
        assert loop.time() - before == pytest.approx(7.0, abs=0.05)


async def test_configure_rejected_ends_session() -> None:
    async with running() as h:
        h.peer.configure_error = 400
        from genesys_bridge_client.contract import SessionStart
        from tests.session.conftest import DEPLOYMENT

        await h.submit(
            SessionStart(command_id="st", session_id="s1", deployment_id=DEPLOYMENT, region="mypurecloud.com")
        )
        outcome = await h.sink.wait_outcome("st")
        assert (outcome.status, outcome.reason) == ("failed", "genesys_error")
        (ended,) = await h.sink.wait_type("session.ended", 1, "s1")
        assert ended.reason == "rejected_by_genesys"


async def test_clear_forbidden_leaves_the_conversation_to_the_agent() -> None:
    async with running() as h:
        await h.start()
        h.peer.clear_forbidden = True
        outcome = await h.end("s1")
        assert outcome.status == "delivered"
        assert "403" in outcome.detail
        (ended,) = await h.sink.wait_type("session.ended", 1, "s1")
        # Not cleared: the guest walked away, and the conversation stays open for the agent.
        assert isinstance(ended, SessionEnded)
        assert ended.reason == "guest_left"
        assert ended.detail is not None
        assert "stays open for the agent" in ended.detail
        assert not any(f["action"] == "closeSession" for f in h.peer.received)
        assert h.store.records["s1"].closed


async def test_only_a_delivered_send_counts_as_a_genesys_round_trip() -> None:
    async with running() as h:
        await h.start()
        assert (await h.say("s1", "hello")).status == "delivered"
        h.peer.errors["refused"] = 400
        assert (await h.say("s1", "refused")).status == "failed"
        assert h.sample("genesys_bridge_genesys_echo_seconds_count") == 1


async def test_text_and_id_cut_inside_an_emoji_are_published_and_the_session_goes_on() -> None:
    # Unpaired surrogates, written as JSON escapes (§3.2): neither UTF-8 nor the record's JSON can hold one.
    async with running() as h:
        token = await h.start()
        body = h.peer.agent_say(token, "", live=False)
        body.update(id="5befde63\udc00", text="Your order ships soon \ud83d")  # the history keeps this copy
        h.peer.push_body(token, body)
        (received,) = await h.sink.wait_type("message.received", 1, "s1")
        assert (received.genesys_message_id, received.text) == ("5befde63\ufffd", "Your order ships soon \ufffd")
        # The history's copy, read after a reconnect, is the same message: not published again.
        h.peer.drop_all()
        await h.sink.wait_type("session.resumed", 1, "s1")
        h.peer.agent_say(token, "after the reconnect")
        await h.sink.wait_type("message.received", 2, "s1")
        assert [m.text for m in h.sink.of_type("message.received", "s1")][1:] == ["after the reconnect"]
        assert (await h.say("s1", "still here")).status == "delivered"
        assert not h.sink.of_type("session.ended", "s1")


@pytest.mark.parametrize("duration", [10**12, -(10**11)])
async def test_a_garbled_session_lifetime_is_ignored_and_the_session_goes_on(duration: int) -> None:
    # Its expiry would be computed from it (§5.1): a date past year 9999 ended the session.
    async with running() as h:
        h.peer.duration_s = duration
        token = await h.start()
        h.peer.agent_say(token, "hello")
        await h.sink.wait_type("message.received", 1, "s1")
        assert (await h.say("s1", "hi")).status == "delivered"
        assert not h.sink.of_type("session.ended", "s1")
        assert h.registry.get("s1").record.genesys_ttl_s is None
