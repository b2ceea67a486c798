"""No secret reaches the logs: session tokens, JWTs and the AMQP password, from a real daemon's JSON logs.

The daemon logs at DEBUG while a conversation runs, including a socket drop (the resume fetches a JWT
and pages history with it, §4.5, §9). The broker account is created for the test with a random password,
so the password is a string that appears nowhere else.
"""

from __future__ import annotations

import io
import logging
import secrets
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import structlog

from bridge.errors import EXIT_STARTUP
from bridge.observability.logging import NOISY_LIBRARIES, configure_logging
from bridge.simulator import Simulator
from tests.conftest import BrokerNames
from tests.daemon import Daemon, daemon_env
from tests.e2e.harness import _rabbitmqctl, integrator
from tests.e2e.stack import cleanup_names, e2e_settings, e2e_stack, quiet_simulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def _record_jwts(sim: Simulator) -> list[str]:
    """Every JWT the simulator hands out (``getJwt``, §4.5), recorded as it is issued."""
    issued: list[str] = []
    signer = sim.engine.jwt
    issue = signer.issue

    def recording_issue(claims: dict[str, Any]) -> str:
        jwt = issue(claims)
        issued.append(jwt)
        return jwt

    signer.issue = recording_issue  # type: ignore[method-assign]
    return issued


@pytest.fixture
async def broker_account() -> AsyncIterator[tuple[str, str]]:
    """A broker user with a random password, full rights on ``/``; deleted afterwards."""
    user = f"e2e-{secrets.token_hex(4)}"
    password = f"pw-{secrets.token_hex(12)}"
    await _rabbitmqctl("add_user", user, password)
    try:
        await _rabbitmqctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")
        yield user, password
    finally:
        await _rabbitmqctl("delete_user", user)


async def test_logs_never_contain_tokens_jwts_or_the_amqp_password(
    broker_names: BrokerNames, amqp_url: str, broker_account: tuple[str, str]
) -> None:
    user, password = broker_account
    try:
        async with Simulator(quiet_simulator()) as sim:
            issued = _record_jwts(sim)

            settings = e2e_settings(
                broker_names,
                f"amqp://{user}:{password}@127.0.0.1:5672/",
                genesys_base_url=sim.base_url,
                log_level="DEBUG",
            )
            async with (
                integrator(
                    amqp_url, command_exchange=settings.command_exchange, event_exchange=settings.event_exchange
                ) as client,
                Daemon(daemon_env(settings)) as daemon,
            ):
                await daemon.started()
                events = client.events
                await client.started("s", custom_attributes={"order": "A-1"})
                session = sim.nth_session(0)
                assert session is not None
                said = await client.say("s", "hello")
                assert (await events.outcome(said)).status == "delivered"
                await sim.drop_connections(session)
                await sim.agent_say(session, "while you were away")
                await events.wait_for(lambda _: bool(events.of("s", "session.resumed")))
                await events.wait_for(lambda _: any(m.backfilled for m in events.messages("s")))
                end = await client.send({"type": "session.end", "session_id": "s"})
                await events.outcome(end)
                assert await daemon.stop(signal.SIGTERM) == 0
        logs = "\n".join(daemon.lines)
        assert issued, "the resume fetched a JWT"
        assert daemon.events("session_state_changed"), "the logs cover the conversation"
        assert any(r.get("session_id") == "s" for r in daemon.logs)
        assert session.token not in logs
        for jwt in issued:
            assert jwt not in logs
            assert jwt.split(".")[2] not in logs, "not even the signature"
        assert password not in logs
    finally:
        await cleanup_names(broker_names, amqp_url)


async def test_a_refused_login_exits_1_and_logs_no_password(broker_names: BrokerNames, amqp_url: str) -> None:
    password = f"wrong-{secrets.token_hex(12)}"
    settings = e2e_settings(
        broker_names, f"amqp://guest:{password}@127.0.0.1:5672/", genesys_base_url="http://127.0.0.1:9"
    )
    async with Daemon(daemon_env(settings)) as daemon:
        await daemon.exited()
    assert daemon.returncode == EXIT_STARTUP, daemon.tail(20)
    (failed,) = daemon.events("startup_failed")
    assert "ACCESS_REFUSED" in failed["error"]
    assert not any("Traceback" in line for line in daemon.lines), "a clean exit, not a crash"
    assert password not in "\n".join(daemon.lines)


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Every log line of this process, libraries at DEBUG too, as the daemon renders them (JSON)."""
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    saved_libraries = {name: logging.getLogger(name).level for name in NOISY_LIBRARIES}
    stream = io.StringIO()
    configure_logging(level="DEBUG", fmt="json", stream=stream, library_level="DEBUG")
    try:
        yield stream
    finally:
        for handler in [h for h in root.handlers if h not in saved_handlers]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(saved_level)
        for name, level in saved_libraries.items():
            logging.getLogger(name).setLevel(level)
        structlog.reset_defaults()


async def test_library_debug_logs_are_redacted_too(
    broker_names: BrokerNames, amqp_url: str, broker_account: tuple[str, str], log_stream: io.StringIO
) -> None:
    """In-process, with websockets, aio-pika and httpx logging frames and requests at DEBUG."""
    user, password = broker_account
    async with e2e_stack(broker_names, f"amqp://{user}:{password}@127.0.0.1:5672/") as stack:
        issued = _record_jwts(stack.sim)
        client, events = stack.client, stack.client.events
        await client.started("s")
        session = stack.sim_session("s")
        assert (await events.outcome(await client.say("s", "hello"))).status == "delivered"
        await stack.sim.drop_connections(session)
        await stack.sim.agent_say(session, "while you were away")
        await events.wait_for(lambda _: any(m.backfilled for m in events.messages("s")))
    logs = log_stream.getvalue()
    # The sources were there, masked: the frames websockets logs, the URLs aio-pika logs.
    assert '\\"token\\":\\"***' in logs
    assert f"amqp://{user}:***@" in logs
    assert issued
    assert session.token not in logs
    for jwt in issued:
        assert jwt not in logs
    assert password not in logs
