"""``genesys-bridge send ... --wait``: a real CLI process against a running bridge, the simulator and RabbitMQ.

The exit code tells the settled outcome (0 delivered, 3 rejected, 4 failed, 5 none in time), and the
outcome is printed readable, or as JSON with ``--json``.
"""

from __future__ import annotations

import json
import uuid

import aio_pika
import pytest

from bridge.amqp.tools import delete_names
from bridge.cli import EXIT_FAILED, EXIT_NO_OUTCOME, EXIT_REJECTED
from tests.cli.helpers import cli, cli_env
from tests.conftest import BrokerNames
from tests.e2e.stack import e2e_settings, e2e_stack, quiet_simulator

DEPLOYMENT = "dep-cli"
SHOP = "https://shop.example.com"


async def test_wait_exits_with_the_settled_outcome(broker_names: BrokerNames, amqp_url: str) -> None:
    # Genesys refuses a session whose Origin is not among the deployment's allowed domains: a failed outcome.
    sim_config = quiet_simulator(allowed_origins=frozenset({SHOP}))
    async with e2e_stack(broker_names, amqp_url, sim_config=sim_config) as stack:
        env = cli_env(stack.settings)
        start = ("send", "start", "--deployment", DEPLOYMENT, "--region", "mypurecloud.com")

        delivered = await cli(*start, "--session", "s-ok", "--origin", SHOP, "--wait", env=env)
        assert delivered.returncode == 0, delivered.stderr
        assert "session.start delivered/ok" in delivered.stdout

        said = await cli("send", "message", "--session", "s-ok", "--text", "hi", "--wait", "--json", env=env)
        assert said.returncode == 0, said.stderr
        outcome = json.loads(said.stdout)
        assert (outcome["type"], outcome["command_type"], outcome["status"]) == (
            "command.outcome",
            "message.send",
            "delivered",
        )

        failed = await cli(*start, "--session", "s-refused", "--wait", env=env)
        assert failed.returncode == EXIT_FAILED, failed.stdout + failed.stderr
        assert "session.start failed/" in failed.stdout

        unknown = await cli("send", "typing", "--session", "nobody", "--wait", "--json", env=env)
        assert unknown.returncode == EXIT_REJECTED
        assert (json.loads(unknown.stdout)["status"], json.loads(unknown.stdout)["reason"]) == (
            "rejected",
            "unknown_session",
        )

        # Not even JSON: the bridge still answers the reply queue, matched by the AMQP correlation_id alone.
        garbage = await cli("send", "json", "this is not json", "--wait", env=env)
        assert garbage.returncode == EXIT_REJECTED
        assert "rejected/not_json" in garbage.stdout


async def test_wait_gives_up_after_the_timeout_when_no_bridge_answers(broker_names: BrokerNames, amqp_url: str) -> None:
    # No bridge runs: the command exchange exists (send declares it) but nothing consumes what reaches it.
    settings = e2e_settings(broker_names, amqp_url, genesys_base_url="http://127.0.0.1:9")
    try:
        command_id = uuid.uuid4().hex
        waited = await cli(
            "send",
            "json",
            json.dumps({"type": "typing.send", "command_id": command_id, "session_id": "s"}),
            "--wait",
            "--timeout",
            "0.5",
            env=cli_env(settings),
        )
        assert waited.returncode == EXIT_NO_OUTCOME
        assert waited.stdout == ""
        assert f"no outcome for {command_id} within 0.5 s" in waited.stderr
    finally:
        await delete_names(amqp_url, exchanges=(settings.command_exchange,))


async def test_wait_and_reply_to_are_exclusive(broker_names: BrokerNames, amqp_url: str) -> None:
    settings = e2e_settings(broker_names, amqp_url, genesys_base_url="http://127.0.0.1:9")
    refused = await cli("send", "--reply-to", "mine", "end", "--session", "s", "--wait", env=cli_env(settings))
    assert refused.returncode == 2
    assert "--reply-to" in refused.stderr
    # Refused before connecting: nothing was declared or published.
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
            await channel.declare_exchange(settings.command_exchange, passive=True)
