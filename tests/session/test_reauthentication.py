"""An authenticated session configures its open socket again before the socket's JWT expires, so no
request is answered 401 (virtual time, the in-memory peer)."""

from __future__ import annotations

import asyncio

import pytest

from bridge.ports import LoopClock
from genesys_bridge_client.contract.commands import AuthCodeGrant
from tests.session.conftest import running
from tests.session.test_credentials import JWT_LIFE, FakeAuth

pytestmark = pytest.mark.looptime


async def test_a_command_after_the_jwts_life_reconfigures_the_socket_first() -> None:
    auth = FakeAuth(LoopClock())
    async with running(auth=auth) as h:
        await h.start(auth=AuthCodeGrant(code="c0de", redirect_uri="https://x.example/cb"))
        configures = [f for f in h.peer.received if f.get("action") == "configureAuthenticatedSession"]
        assert len(configures) == 1
        await asyncio.sleep(JWT_LIFE.total_seconds())  # the socket's JWT would be refused by now
        assert (await h.say("s1", "still here")).status == "delivered"
        frames = [f.get("action") for f in h.peer.received]
        assert frames.count("configureAuthenticatedSession") == 2
        reconfigure = len(frames) - 1 - frames[::-1].index("configureAuthenticatedSession")
        assert frames[reconfigure + 1 :].count("onMessage") == 1  # the message went after the new configure
        assert len(h.peer.connections) == 1  # on the same socket: no reconnect, no backfill
        assert "refresh" in auth.calls
