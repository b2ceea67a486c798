"""A wrong key, a corrupt record and a journal that cannot be declared each fail or degrade clearly.

- Wrong key: the daemon refuses to start (exit 78, ``EXIT_CONFIG``) with a ``StateKeyError`` that says what
  to do, and leaves the journal untouched: the right key still resumes every session.
- Corrupt records: skipped with ``journal_record_skipped`` (error) and the metric; the others resume.
- A classic queue squatting on the journal's name: the daemon exits non-zero with a ``StoreError`` naming
  the stream and the setting to change.
"""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime

import aio_pika

from bridge.config import Settings
from bridge.errors import EXIT_CONFIG, EXIT_STARTUP
from bridge.partition.layout import journal_stream_of, partition_of
from bridge.simulator import Simulator
from bridge.store import generate_key
from tests.conftest import BrokerNames
from tests.daemon import Daemon
from tests.durability.conftest import EnvFactory
from tests.durability.helpers import assert_resumed_in_place, open_sessions
from tests.e2e.harness import Integrator


async def _append_raw(amqp_url: str, stream: str, bodies: list[bytes]) -> None:
    """Append ``bodies`` to the journal stream as a foreign writer would (default exchange, confirms on)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for body in bodies:
            await channel.default_exchange.publish(aio_pika.Message(body, type="session"), routing_key=stream)


async def test_wrong_key_is_a_clear_startup_error_and_leaves_the_journal_intact(
    sim: Simulator, client: Integrator, bridge_env: EnvFactory
) -> None:
    async with Daemon(bridge_env(), name="first") as first:
        await first.started()
        convs = await open_sessions(client, sim, ["k0", "k1"])
        assert await first.stop(signal.SIGTERM) == 0

    async with Daemon(bridge_env(state_key=generate_key()), name="wrong-key") as wrong:
        assert await wrong.exited() == EXIT_CONFIG
        failed = await wrong.wait_log("startup_failed")
        assert failed["level"] == "error"
        assert failed["kind"] == "StateKeyError"
        # The first partition whose journal holds a record tells: the key is refused before any is resumed.
        assert "live session records in the journal opens with the configured state keys" in failed["error"]
        assert "BRIDGE_STATE_KEY" in failed["error"]
        assert all(e["sessions"] == 0 for e in wrong.events("partition_gained"))

    async with Daemon(bridge_env(), name="right-key") as right:
        finished = await right.recovered()
        assert finished["results"] == {"resumed": 2}
        for conv in convs:
            assert_resumed_in_place(sim, conv)


async def test_corrupt_records_are_skipped_with_an_error_and_the_metric_others_resume(
    sim: Simulator, client: Integrator, bridge_env: EnvFactory, names: BrokerNames, amqp_url: str
) -> None:
    async with Daemon(bridge_env(), name="first") as first:
        await first.started()
        convs = await open_sessions(client, sim, ["c0", "c1", "c2"])
        assert await first.stop(signal.SIGTERM) == 0  # every start acked: c1 must not come back by redelivery

    now = datetime.now(UTC).isoformat()
    forged = {"v": 1, "kind": "session", "session_id": "c1", "closed": False, "written_at": now, "sealed": "gAAAA"}
    stream = journal_stream_of(names.journal_stream, partition_of("c1", Settings.model_fields["partitions"].default))
    await _append_raw(amqp_url, stream, [b"\x00garbage{", json.dumps(forged).encode()])

    async with Daemon(bridge_env(), name="second") as second:
        finished = await second.recovered()
        assert finished["results"] == {"resumed": 2}
        skipped = second.events("journal_record_skipped")
        assert [e["reason"] for e in skipped] == ["not_json", "undecryptable"], skipped
        assert all(e["level"] == "error" for e in skipped)
        assert skipped[1]["session_id"] == "c1"
        assert await second.metric("genesys_bridge_journal_corrupt_records_total") == 2
        for conv in (convs[0], convs[2]):
            assert_resumed_in_place(sim, conv)
        # c1's newest record is unreadable: it is never resumed with an older snapshot.
        assert not client.events.of("c1", "session.resumed")
        status, _ = await second.get("/readyz")
        assert status == 200


async def test_journal_that_cannot_be_declared_fails_the_start(
    bridge_env: EnvFactory, names: BrokerNames, amqp_url: str
) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        squatted = journal_stream_of(names.journal_stream, 0)
        await channel.declare_queue(squatted, durable=True)  # a classic queue squats on partition 0's stream
    async with Daemon(bridge_env(), name="squatted") as daemon:
        assert await daemon.exited() == EXIT_STARTUP
        failed = await daemon.wait_log("startup_failed")
        assert failed["kind"] == "StoreError", failed
        assert squatted in failed["error"]
        assert "cannot be declared" in failed["error"]
        assert "BRIDGE_JOURNAL_STREAM" in failed["error"]
        assert not daemon.events("partition_gained", partition=0)
