"""Every example in examples/ runs as a real process against a bridge and the simulator, and holds a
whole conversation: it starts the session, answers the agent, and ends the session when the agent says bye."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import pytest

from bridge.testing import Sandbox

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*_service.py")))
async def test_the_example_holds_a_conversation(genesys_bridge: Sandbox, script: str) -> None:
    session_id = f"example-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "RABBITMQ_URL": genesys_bridge.amqp_url,
        "GENESYS_COMMAND_EXCHANGE": genesys_bridge.command_exchange,
        "GENESYS_EVENT_EXCHANGE": genesys_bridge.event_exchange,
        "GENESYS_DEPLOYMENT_ID": genesys_bridge.deployment_id,
        "GENESYS_REGION": genesys_bridge.region,
        "SESSION_ID": session_id,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / script), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert await genesys_bridge.guest_messages(session_id, 1) == ["Hi, where is my order 4711?"]
        await genesys_bridge.agent_say(session_id, "Let me look.")
        assert (await genesys_bridge.guest_messages(session_id, 2))[-1] == "You said: Let me look."
        await genesys_bridge.agent_say(session_id, "bye")
        assert (await genesys_bridge.guest_messages(session_id, 3))[-1] == "Goodbye!"
        out, err = await process.communicate()
        assert process.returncode == 0, err.decode()[-2000:]
        assert "session ended: " in out.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
