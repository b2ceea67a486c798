"""The router's throughput ceiling: commands/s from the intake queue into the partition queues.

The bridge's router (``bridge/partition/router.py``) is the single active consumer of the intake queue: it
decodes and validates each command, publishes a copy into ``<intake>.p<N>`` with a confirm and
``mandatory``, and acks the original only after the confirm, one command at a time (so each partition
queue gets a session's commands in publish order). Measured here in isolation:

- **bridge router**: one replica (``BRIDGE_PARTITIONS`` = 16 by default, no simulator). Before it starts,
  this script declares the partition queues (the bridge's own arguments) and holds the single active
  consumer of each of them itself (prefetch 1, never acked), so the replica routes and owns nothing: no
  session work shares its process. The replica is paused (SIGSTOP) while N ``message.send`` commands are
  published to the command exchange (they wait in the intake queue), resumed (SIGCONT), and the clock runs
  until ``genesys_bridge_router_routed_total`` has grown by N (``/metrics`` polled every 100 ms).
- **raw baseline, sequential**: the same work with no bridge code, in a child process of its own: a plain
  aio-pika consumer (prefetch 256, one connection) on a pre-filled quorum queue with the intake queue's
  arguments; per message ``json.loads``, sha256 of the session id, a confirmed ``mandatory`` publish of a
  persistent copy into one of P quorum queues (a second connection), then the ack: one at a time, as the
  router does.
- **raw baseline, pipelined**: the same forwarder with up to 256 copies awaiting their confirms at once
  (the ack of each after its own confirm). What a forwarder that gives up strict one-at-a-time ordering
  under failure could reach: a ceiling, not a like-for-like comparison.
- The partition queues' dead-letter queue fills with the bridge's probes: they expire unconsumed in the
  partition queues this script holds, and expired messages are dead-lettered. An artefact of holding the
  queues; it is deleted with the rest.
- **broker-side routing**: with the ``rabbitmq_consistent_hash_exchange`` plugin enabled, a confirmed
  publish into an ``x-consistent-hash`` exchange bound to P quorum queues needs no forwarder at all. The
  script tries to declare one (it never enables a plugin) and says whether it could.

Repetitions alternate (baseline sequential, bridge, baseline pipelined, ...), since the machine is shared;
each figure is the median [min–max]. CPU per command is read from ``/proc`` (router process or baseline
child, and RabbitMQ's ``beam.smp``) over the same interval.

Run: ``python -m bench.router [--commands 20000] [--reps 3] [--partitions 16]``. Writes
``bench/results/router.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import sys
import time
import uuid
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from bench.common import AMQP_URL, run_and_report, unique_prefix
from bench.loadgen import message_send
from bench.procs import Child, CpuSample, find_rabbitmq_pid
from bench.replica_stack import ReplicaStack, delete_names
from bench.stack import LOG_DIR, bridge_available
from bench.stats import metric_sum, ratio, render_table, shown, spread
from bridge.amqp.topology import TopologyNames, intake_queue_arguments
from bridge.config import Settings

__all__ = ["main", "run"]

NAME = "router"
PREFETCH = 256
_ROUTED = "genesys_bridge_router_routed_total"
_FILL_WINDOW = 1000
_SESSIONS = 1000  # distinct session ids the commands are spread over


def _queue_arguments(prefix: str) -> dict[str, Any]:
    """The intake (and partition) queue arguments the bridge declares, for names under ``prefix``."""
    delivery_limit = Settings.model_fields["delivery_limit"].default
    assert isinstance(delivery_limit, int)
    names = TopologyNames(
        command_exchange=f"{prefix}.commands",
        intake_queue=f"{prefix}.intake",
        event_exchange=f"{prefix}.events",
        dead_letter_queue=f"{prefix}.dlq",
        delivery_limit=delivery_limit,
    )
    return intake_queue_arguments(names)


def _commands(count: int, prefix: str) -> list[bytes]:
    return [
        json.dumps({**message_send(f"{prefix}.s{i % _SESSIONS}"), "command_id": uuid.uuid4().hex}).encode()
        for i in range(count)
    ]


async def _fill(exchange: AbstractExchange, bodies: list[bytes], routing_key: str | None) -> None:
    """Publish ``bodies`` (confirmed, pipelined) to ``exchange`` with ``routing_key`` (None: the session id)."""
    window = asyncio.Semaphore(_FILL_WINDOW)

    async def one(body: bytes) -> None:
        try:
            key = routing_key if routing_key is not None else json.loads(body)["session_id"]
            await exchange.publish(
                aio_pika.Message(
                    body,
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=uuid.uuid4().hex,
                ),
                routing_key=key,
            )
        finally:
            window.release()

    async with asyncio.TaskGroup() as tg:
        for body in bodies:
            await window.acquire()
            tg.create_task(one(body))


async def _count(conn: aio_pika.abc.AbstractConnection, queue: str) -> int:
    channel = await conn.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await channel.close()


# --- the raw baseline (a child process) -----------------------------------------------------------------


async def _forward(source: str, target_prefix: str, partitions: int, count: int, pipelined: bool) -> dict[str, Any]:
    """Consume ``count`` messages from ``source`` and forward each into ``<target_prefix>.p<N>``."""
    consume_conn = await aio_pika.connect(AMQP_URL, client_properties={"connection_name": "bench-router-base-in"})
    publish_conn = await aio_pika.connect(AMQP_URL, client_properties={"connection_name": "bench-router-base-out"})
    async with consume_conn, publish_conn:
        out = await publish_conn.channel(publisher_confirms=True)
        channel = await consume_conn.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.declare_queue(source, passive=True)
        done = asyncio.Event()
        forwarded = 0
        window = asyncio.Semaphore(PREFETCH)
        tasks: set[asyncio.Task[None]] = set()

        async def forward_one(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal forwarded
            session_id = str(json.loads(message.body)["session_id"])
            digest = hashlib.sha256(session_id.encode("utf-8")).digest()
            target = f"{target_prefix}.p{int.from_bytes(digest[:8], 'big') % partitions}"
            copy = aio_pika.Message(
                message.body,
                headers=dict(message.headers or {}),
                content_type=message.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message.message_id,
                timestamp=message.timestamp,
            )
            await out.default_exchange.publish(copy, routing_key=target, mandatory=True)
            await message.ack()
            forwarded += 1
            if forwarded >= count:
                done.set()

        async def pipelined_one(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            try:
                await forward_one(message)
            finally:
                window.release()

        cpu0, t0 = time.process_time(), time.monotonic()
        taken = 0
        async with queue.iterator() as it:
            async for message in it:
                taken += 1
                if pipelined:
                    await window.acquire()
                    task = asyncio.create_task(pipelined_one(message))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                else:
                    await forward_one(message)
                if taken >= count:
                    break
        await done.wait()
        elapsed = time.monotonic() - t0
        cpu = time.process_time() - cpu0
    return {"forwarded": forwarded, "seconds": elapsed, "cpu_s": cpu}


async def baseline_rep(prefix: str, partitions: int, bodies: list[bytes], *, pipelined: bool) -> dict[str, Any]:
    """One baseline repetition: fill a source queue, forward it in a child process, clean up."""
    args = _queue_arguments(prefix)
    source = f"{prefix}.base.in"
    targets = [f"{prefix}.base.p{n}" for n in range(partitions)]
    try:
        conn = await aio_pika.connect(AMQP_URL, client_properties={"connection_name": "bench-router-base-fill"})
        async with conn:
            channel = await conn.channel(publisher_confirms=True)
            for name in (source, *targets):
                await channel.declare_queue(name, durable=True, arguments=args)
            await _fill(channel.default_exchange, bodies, source)
        argv = [sys.executable, "-m", "bench.router", "--forward", source, f"{prefix}.base", str(partitions)]
        argv += [str(len(bodies)), "pipelined" if pipelined else "sequential"]
        # A child of its own (dies with this process); its only stdout line is its result.
        async with Child(argv, name="forwarder", log_path=f"{LOG_DIR}/{prefix}.forwarder.log", announce=True) as child:
            rabbit = CpuSample.take({"rabbitmq": find_rabbitmq_pid()})
            line = await child.first_line(timeout_s=60 + len(bodies) / 100)
            broker = CpuSample.take({"rabbitmq": find_rabbitmq_pid()})
        result: dict[str, Any] = json.loads(line)
    finally:
        await delete_names([source, *targets], [])
    n = result["forwarded"]
    # The broker's CPU covers the child's whole life (start-up and connect too): a slight overestimate.
    broker_s = broker.seconds["rabbitmq"] - rabbit.seconds["rabbitmq"]
    return {
        "mode": "pipelined" if pipelined else "sequential",
        "commands": n,
        "seconds": round(result["seconds"], 3),
        "commands_per_s": round(n / result["seconds"], 1),
        "forwarder_cpu_us_per_command": round(result["cpu_s"] / n * 1e6, 1),
        "broker_cpu_us_per_command": round(broker_s / n * 1e6, 1),
    }


# --- the bridge's router ----------------------------------------------------------------------------------


async def router_rep(stack: ReplicaStack, bodies: list[bytes]) -> dict[str, Any]:
    """One repetition through the replica's router (see the module docstring)."""
    replica = stack.alive[0]
    conn = await aio_pika.connect(AMQP_URL, client_properties={"connection_name": "bench-router-fill"})
    async with conn:
        channel = await conn.channel(publisher_confirms=True)
        commands = await channel.declare_exchange(
            stack.names.command_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        routed0 = metric_sum(await stack.metrics_text(replica), _ROUTED)
        os.kill(replica.pid, signal.SIGSTOP)
        try:
            await _fill(commands, bodies, "message.send")
            pids = {"router": replica.pid, "rabbitmq": stack.rabbitmq_pid}
            cpu0 = CpuSample.take(pids)
        finally:
            os.kill(replica.pid, signal.SIGCONT)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        routed = 0.0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(60 + len(bodies) / 100):
                while routed < len(bodies):
                    await asyncio.sleep(0.1)
                    routed = metric_sum(await stack.metrics_text(replica), _ROUTED) - routed0
        elapsed = loop.time() - t0
        cpu1 = CpuSample.take(pids)
        left = await _count(conn, stack.names.intake_queue)
    n = max(1, int(routed))
    return {
        "commands": len(bodies),
        "routed": int(routed),
        "left_in_intake": left,
        "seconds": round(elapsed, 3),
        "commands_per_s": round(routed / elapsed, 1),
        "router_cpu_us_per_command": round((cpu1.seconds["router"] - cpu0.seconds["router"]) / n * 1e6, 1),
        "broker_cpu_us_per_command": round((cpu1.seconds["rabbitmq"] - cpu0.seconds["rabbitmq"]) / n * 1e6, 1),
    }


async def _hold_partitions(
    conn: aio_pika.abc.AbstractConnection, stack: ReplicaStack
) -> list[tuple[AbstractChannel, AbstractQueue]]:
    """Declare the partition queues and become their single active consumer (prefetch 1, never acked)."""
    args = _queue_arguments(stack.prefix)
    held = []
    for n in range(stack.partitions):
        channel = await conn.channel()
        await channel.set_qos(prefetch_count=1)
        queue = await channel.declare_queue(f"{stack.names.intake_queue}.p{n}", durable=True, arguments=args)
        await queue.consume(_never_ack)
        held.append((channel, queue))
    return held


async def _never_ack(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    return None


# --- broker-side routing (consistent hash exchange) -------------------------------------------------------


async def consistent_hash_available() -> str | None:
    """None when an ``x-consistent-hash`` exchange can be declared here; otherwise why not."""
    name = unique_prefix(f"{NAME}.chx-probe")
    conn = await aio_pika.connect(AMQP_URL, client_properties={"connection_name": "bench-router-chx-probe"})
    async with conn:
        channel = await conn.channel()
        # An unknown exchange type closes the whole connection; aiormq logs that as an error. Expected here.
        quiet = logging.getLogger("aiormq.connection")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            await channel.declare_exchange(name, "x-consistent-hash", auto_delete=True)
        except (aiormq.exceptions.AMQPError, aio_pika.exceptions.AMQPError) as exc:
            return f"the rabbitmq_consistent_hash_exchange plugin is not enabled on this broker ({exc})"
        finally:
            quiet.setLevel(level)
        with contextlib.suppress(Exception):
            await channel.exchange_delete(name)
    return None


async def consistent_hash_rep(partitions: int, bodies: list[bytes]) -> dict[str, Any]:
    """Confirmed publishes into an ``x-consistent-hash`` exchange bound to P quorum queues (routing key:
    the session id): the broker routes, no forwarder."""
    prefix = unique_prefix(f"{NAME}.chx")
    exchange_name = f"{prefix}.x"
    targets = [f"{prefix}.p{n}" for n in range(partitions)]
    args = _queue_arguments(prefix)
    try:
        conn = await aio_pika.connect(AMQP_URL, client_properties={"connection_name": "bench-router-chx"})
        async with conn:
            channel = await conn.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(exchange_name, "x-consistent-hash", durable=True)
            for name in targets:
                queue = await channel.declare_queue(name, durable=True, arguments=args)
                await queue.bind(exchange, routing_key="1")
            pids = {"rabbitmq": find_rabbitmq_pid()}
            cpu0 = CpuSample.take(pids)
            t0 = time.monotonic()
            await _fill(exchange, bodies, None)
            elapsed = time.monotonic() - t0
            cpu1 = CpuSample.take(pids)
    finally:
        await delete_names(targets, [exchange_name])
    return {
        "commands": len(bodies),
        "seconds": round(elapsed, 3),
        "commands_per_s": round(len(bodies) / elapsed, 1),
        "broker_cpu_us_per_command": round(
            (cpu1.seconds["rabbitmq"] - cpu0.seconds["rabbitmq"]) / len(bodies) * 1e6, 1
        ),
    }


# --- the benchmark ----------------------------------------------------------------------------------------


async def run(*, commands: int, reps: int, partitions: int) -> dict[str, Any]:
    """The whole benchmark; returns the results document."""
    missing = bridge_available()
    if missing is not None:
        return {"status": "not available yet", "reason": missing}
    chx_missing = await consistent_hash_available()
    seq: list[dict[str, Any]] = []
    pipe: list[dict[str, Any]] = []
    bridge: list[dict[str, Any]] = []
    chx: list[dict[str, Any]] = []
    async with ReplicaStack(NAME, partitions=partitions, simulator=False) as stack:
        hold = await aio_pika.connect(AMQP_URL, client_properties={"connection_name": "bench-router-hold"})
        async with hold:
            await _hold_partitions(hold, stack)
            await stack.add("r0")
            bodies = _commands(commands, stack.prefix)
            for rep in range(reps):
                seq.append(await baseline_rep(stack.prefix, partitions, bodies, pipelined=False))
                bridge.append(await router_rep(stack, bodies))
                pipe.append(await baseline_rep(stack.prefix, partitions, bodies, pipelined=True))
                if chx_missing is None:
                    chx.append(await consistent_hash_rep(partitions, bodies))
                print(
                    f"  rep {rep + 1}: baseline sequential {seq[-1]['commands_per_s']:.0f}/s, router "
                    f"{bridge[-1]['commands_per_s']:.0f}/s (routed {bridge[-1]['routed']}), baseline pipelined "
                    f"{pipe[-1]['commands_per_s']:.0f}/s"
                    + (f", consistent-hash exchange {chx[-1]['commands_per_s']:.0f}/s" if chx else ""),
                    flush=True,
                )
    router_rate = spread(r["commands_per_s"] for r in bridge)
    seq_rate = spread(r["commands_per_s"] for r in seq)
    pipe_rate = spread(r["commands_per_s"] for r in pipe)
    summary: dict[str, Any] = {
        "router_commands_per_s": router_rate.as_json(),
        "baseline_sequential_commands_per_s": seq_rate.as_json(),
        "baseline_pipelined_commands_per_s": pipe_rate.as_json(),
        "router_to_sequential": ratio(router_rate, seq_rate).as_json(),
        "router_to_pipelined": ratio(router_rate, pipe_rate).as_json(),
        "router_cpu_us_per_command": spread(r["router_cpu_us_per_command"] for r in bridge).as_json(),
        "router_broker_cpu_us_per_command": spread(r["broker_cpu_us_per_command"] for r in bridge).as_json(),
        "sequential_cpu_us_per_command": spread(r["forwarder_cpu_us_per_command"] for r in seq).as_json(),
        "sequential_broker_cpu_us_per_command": spread(r["broker_cpu_us_per_command"] for r in seq).as_json(),
        "pipelined_cpu_us_per_command": spread(r["forwarder_cpu_us_per_command"] for r in pipe).as_json(),
        "all_routed": all(r["routed"] >= r["commands"] for r in bridge),
    }
    if chx:
        summary["consistent_hash_commands_per_s"] = spread(r["commands_per_s"] for r in chx).as_json()
    return {
        "status": "ok",
        "options": {"commands": commands, "reps": reps, "partitions": partitions, "prefetch": PREFETCH},
        "consistent_hash_exchange": "measured" if chx_missing is None else chx_missing,
        "summary": summary,
        "router_reps": bridge,
        "baseline_sequential_reps": seq,
        "baseline_pipelined_reps": pipe,
        "consistent_hash_reps": chx,
    }


def render(doc: dict[str, Any]) -> str:
    """The printed table."""
    if doc["status"] != "ok":
        return f"router: {doc['status']}: {doc['reason']}"
    s = doc["summary"]

    rows = [
        ["bridge router (intake → partition queues), commands/s", shown(s["router_commands_per_s"])],
        ["raw baseline, sequential forwarder, commands/s", shown(s["baseline_sequential_commands_per_s"])],
        ["router / sequential baseline", shown(s["router_to_sequential"], 2)],
        [
            "raw baseline, pipelined forwarder (256 in flight), commands/s",
            shown(s["baseline_pipelined_commands_per_s"]),
        ],
        ["router / pipelined baseline", shown(s["router_to_pipelined"], 2)],
        [
            "CPU per command, µs: router process / its broker share",
            f"{shown(s['router_cpu_us_per_command'])} / {shown(s['router_broker_cpu_us_per_command'])}",
        ],
        [
            "CPU per command, µs: sequential forwarder / its broker share",
            f"{shown(s['sequential_cpu_us_per_command'])} / {shown(s['sequential_broker_cpu_us_per_command'])}",
        ],
        ["CPU per command, µs: pipelined forwarder", shown(s["pipelined_cpu_us_per_command"])],
    ]
    if "consistent_hash_commands_per_s" in s:
        rows.append(
            ["x-consistent-hash exchange (broker routes), commands/s", shown(s["consistent_hash_commands_per_s"])]
        )
    else:
        rows.append(["x-consistent-hash exchange", f"not measured: {doc['consistent_hash_exchange']}"])
    o = doc["options"]
    title = f"router ({o['commands']:,} commands, P={o['partitions']}, {len(doc['router_reps'])} reps)"
    return render_table([title, "median [min–max]"], rows)


def main() -> None:
    """``python -m bench.router`` (``--forward ...`` is the baseline's child process)."""
    if len(sys.argv) > 1 and sys.argv[1] == "--forward":
        source, target_prefix, partitions, count, mode = sys.argv[2:7]
        result = asyncio.run(_forward(source, target_prefix, int(partitions), int(count), mode == "pipelined"))
        print(json.dumps(result), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=20000, help="commands per repetition")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=16)
    args = parser.parse_args()
    run_and_report(NAME, lambda: run(commands=args.commands, reps=args.reps, partitions=args.partitions), render)


if __name__ == "__main__":
    main()
