"""A session's keepalives: the echo health check (§4.4) and WebSocket pings (§2.4). The first of each waits
its drawn phase, then one per interval; the real phase is spread over the interval, so sessions opened
together do not all check in at once. An unanswered one closes the socket and the session reconnects. They
wait on the process's heartbeat, and a session that ends leaves no beat behind. Virtual time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from bridge.errors import GenesysUnavailable
from bridge.session.ports import spread_phase
from genesys_bridge_client.contract import SessionStart
from tests.session.conftest import DEPLOYMENT, running

pytestmark = pytest.mark.looptime


def echoes(received: list[dict[str, object]]) -> int:
    return sum(1 for frame in received if frame.get("action") == "echo")


def configures(received: list[dict[str, object]]) -> int:
    return sum(1 for frame in received if frame.get("action") == "configureSession")


def phases(*, ping: float, echo: float) -> Callable[[float], float]:
    """A keepalive phase per interval: the ping's when it is the ping interval, the echo's otherwise."""
    return lambda interval: ping if interval == PING_S else echo


PING_S = 30.0


async def test_the_first_echo_waits_the_phase_then_one_each_interval() -> None:
    async with running(echo_interval_s=60.0, ws_ping_interval_s=None, keepalive_phase=lambda interval: 13.0) as h:
        loop = asyncio.get_running_loop()
        await h.start("s1")
        started = loop.time()
        times: list[float] = []
        for n in (1, 2, 3):
            await h.peer.wait_received(lambda frames, n=n: echoes(frames) >= n)
            times.append(loop.time() - started)
    assert times == pytest.approx([13.0, 73.0, 133.0], abs=0.01)


async def test_sessions_opened_together_echo_at_their_own_phases() -> None:
    phases = iter([5.0, 20.0, 41.0])
    async with running(echo_interval_s=60.0, ws_ping_interval_s=None, keepalive_phase=lambda i: next(phases)) as h:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.gather(*(h.start(f"s{i}") for i in range(3)))
        times: list[float] = []
        for n in (1, 2, 3):
            await h.peer.wait_received(lambda frames, n=n: echoes(frames) >= n)
            times.append(round(loop.time() - started, 1))
    assert times == [5.0, 20.0, 41.0]


def test_the_real_phase_falls_within_the_interval() -> None:
    drawn = [spread_phase(240.0) for _ in range(1000)]
    assert all(0.0 <= d < 240.0 for d in drawn)
    assert min(drawn) < 60.0 < 180.0 < max(drawn)  # spread over the interval, not bunched


async def test_pings_wait_their_phase_then_one_each_interval() -> None:
    async with running(ws_ping_interval_s=PING_S, keepalive_phase=phases(ping=7.0, echo=240.0)) as h:
        started = asyncio.get_running_loop().time()
        await h.start("s1")
        times = await h.peer.wait_pings(3)
    assert [t - started for t in times] == pytest.approx([7.0, 37.0, 67.0], abs=0.01)


async def test_an_unanswered_ping_closes_the_socket_and_the_session_reconnects() -> None:
    async with running(
        ws_ping_interval_s=PING_S, ws_ping_timeout_s=20.0, keepalive_phase=phases(ping=5.0, echo=240.0)
    ) as h:
        h.peer.deaf_to_pings = True
        await h.start("s1")
        (pinged,) = await h.peer.wait_pings(1)
        await h.peer.wait_received(lambda frames: configures(frames) >= 2)
        reconnected = asyncio.get_running_loop().time()
        assert reconnected - pinged >= 20.0  # the whole pong timeout, not sooner
        h.peer.deaf_to_pings = False
        await h.peer.wait_pings(3)  # the reconnected socket is pinged on, and answers
        assert configures(h.peer.received) == 2
        assert h.sink.of_type("session.ended") == []


async def test_no_pings_when_they_are_off_and_none_while_disconnected() -> None:
    async with running(ws_ping_interval_s=None, echo_interval_s=60.0) as h:
        await h.start("s1")
        await h.peer.wait_received(lambda frames: echoes(frames) >= 2)
        assert h.peer.pings == []
    async with running(ws_ping_interval_s=PING_S, keepalive_phase=phases(ping=5.0, echo=240.0)) as h:
        h.peer.refuse_connects = 1_000  # never connected: nothing to ping
        await h.submit(
            SessionStart(command_id="start-s1", session_id="s1", deployment_id=DEPLOYMENT, region="mypurecloud.com")
        )
        await h.peer.wait_until(lambda: len(h.peer.connect_origins) >= 40)  # 40 s: pings were due at 5 and 35
        assert h.peer.pings == []


async def test_a_session_that_ends_leaves_no_beat_behind() -> None:
    async with running(ws_ping_interval_s=PING_S) as h:
        await h.start("s1")
        await h.start("s2")
        assert len(h.heartbeat) == 4  # a ping and an echo each
        await h.end("s1")
        await h.sink.wait_type("session.ended", session_id="s1")
        assert len(h.heartbeat) == 2


async def test_an_unanswered_echo_closes_the_socket_and_the_session_reconnects() -> None:
    async with running(echo_interval_s=60.0, ws_ping_interval_s=None, keepalive_phase=lambda i: 10.0) as h:
        h.peer.deaf_to_echoes = True
        await h.start("s1")
        await h.peer.wait_received(lambda frames: echoes(frames) >= 1)
        echoed = asyncio.get_running_loop().time()
        await h.peer.wait_received(lambda frames: configures(frames) >= 2)
        assert asyncio.get_running_loop().time() - echoed >= 30.0  # the echo's whole 30 s, not sooner
        assert h.sink.of_type("session.ended") == []


async def test_an_echo_answer_with_the_session_timing_moves_the_known_expiry() -> None:
    expires = 1_900_000_000
    async with running(echo_interval_s=60.0, ws_ping_interval_s=None, keepalive_phase=lambda i: 10.0) as h:
        h.peer.echo_expires_at = expires
        await h.start("s1")
        actor = h.registry.get("s1")
        assert actor is not None
        await h.peer.wait_received(lambda frames: echoes(frames) >= 2)  # the first answer was read by then
        assert actor.record.expires_at is not None
        assert actor.record.expires_at.timestamp() == expires


async def test_without_a_pong_timeout_an_unanswered_ping_never_closes_the_socket() -> None:
    async with running(
        ws_ping_interval_s=PING_S, ws_ping_timeout_s=None, keepalive_phase=phases(ping=5.0, echo=240.0)
    ) as h:
        h.peer.deaf_to_pings = True
        await h.start("s1")
        await h.peer.wait_pings(5)  # one each interval, none waiting for its pong
        assert configures(h.peer.received) == 1


async def test_a_crashed_session_cancels_its_beats_before_it_reports_the_crash() -> None:
    async with running(ws_ping_interval_s=PING_S) as h:
        await h.start("s2")
        h.peer.connect_error = RuntimeError("a bug in the connector")
        h.sink.hold("session.ended")
        await h.submit(
            SessionStart(command_id="start-s1", session_id="s1", deployment_id=DEPLOYMENT, region="mypurecloud.com")
        )
        await h.sink.held.wait()  # s1 crashed and is reporting it
        assert len(h.heartbeat) == 2  # only s2's: s1's were cancelled before its group wound down
        h.sink.unblock()
        (ended,) = await h.sink.wait_type("session.ended", session_id="s1")
        assert ended.reason == "failed"


async def test_a_resume_that_fails_after_a_ping_closed_its_socket_still_reconnects() -> None:
    """A resume's catch-up fails after an unanswered ping closed the socket by our hand. The TaskGroup
    around that socket cancels the connection loop's task for it, and must take the cancel back: counted,
    it made the connection loop end as if asked to stop, leaving a session that never reconnected."""
    async with running(
        ws_ping_interval_s=PING_S, ws_ping_timeout_s=20.0, keepalive_phase=phases(ping=5.0, echo=240.0)
    ) as h:
        await h.start("s1")
        fetching, release = asyncio.Event(), asyncio.Event()
        fetch_history = h.history.fetch_history

        async def unreachable_history(*args: Any, **kwargs: Any) -> Any:
            fetching.set()
            await release.wait()
            raise GenesysUnavailable("fake: history unreachable")

        h.history.fetch_history = unreachable_history  # type: ignore[method-assign]
        h.peer.deaf_to_pings = True
        h.peer.drop_all()
        await fetching.wait()  # the resume's catch-up waits for the history
        await h.peer.wait_until(lambda: not h.peer.connections)  # the unanswered ping closed the socket
        h.history.fetch_history = fetch_history  # type: ignore[method-assign]
        h.peer.deaf_to_pings = False
        release.set()
        async with asyncio.timeout(120):
            await h.peer.wait_received(lambda frames: configures(frames) >= 3)
        assert h.sink.of_type("session.ended") == []
