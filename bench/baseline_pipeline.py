"""Baseline: the raw pipeline ceiling the bridge is compared to (docs/performance.md).

No bridge code. Only aio-pika and websockets, written the way an efficient hand-written program would:

1. ``M`` small commands wait in a fresh **quorum** queue (pre-filled before the clock starts).
2. One consumer (manual ack, prefetch ``P``) hands each delivery to its own task, so up to ``P`` commands
   are in flight at once.
3. Each task sends an ``onMessage``-shaped frame on one of ``N`` open WebSockets to an echo server that
   runs in a **separate process** (``bench/echo_server.py``), and waits for the echo with its tracing id.
4. It publishes a ``command.outcome``-shaped event (persistent, ``mandatory``) on a separate connection
   with publisher confirms and waits for the confirm (confirms are pipelined across the tasks).
5. Then it acks the command.

Reported per repetition and as median [min–max]: commands/s, consume→ack latency p50/p99/max, CPU per
command of this process, and the CPU share of this process, the echo server and RabbitMQ. Loopback only;
bounded runtime (``--max-seconds``, default 60). Run ``python -m bench.baseline_pipeline``.

``--durable`` adds, still without bridge code, the broker work the bridge's guarantees cost per command
(docs/performance.md), each on a connection of its own as in the daemon, over the daemon's default layout
of ``--partitions`` (16) quorum queues and as many streams: the commands wait in an intake quorum queue, a
router in this process copies each one into its session's partition queue with a confirmed publish before
it acks it (copies pipelined, up to ``P``); the pipeline consumes every partition queue, and writes two
confirmed records of ``--record-bytes`` to the partition's stream, one before the frame is sent and one
after the echo, before it publishes the event. The router starts with the clock, as the bridge's own does
when the benchmark resumes the paused daemon, so its copies are inside the measured window. What is left
between this and the bridge is the bridge's own work.

``--paced RATE`` publishes the commands during each repetition, at ``RATE`` per second in 5 ms steps (as
``bench/throughput.py`` paces the bridge's), instead of before it: latency is then each command's send →
its outcome event's arrival at a consumer of the event queue, the bridge's latency as ``bench/throughput.py``
measures it (publish → ``command.outcome`` arrival). The publisher and that consumer run in this process, so
their CPU counts in this process's figure (the bridge's load generator is a process of its own).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractQueue
from websockets.asyncio.client import ClientConnection, connect

NAME = "baseline_pipeline"
#: A paced command's steps, timed one after the other: send → handed to the pipeline (the queues and, with
#: ``--durable``, the router's copy), each journal record, the echo, the outcome's publish → confirm, and its
#: publish → arrival at the event queue's consumer (which overlaps the confirm).
STEPS = ("way in", "first record", "echo", "second record", "outcome confirm", "outcome arrival")
#: Paced: how long the outcomes may still take once every command was handed to the pipeline.
OUTCOMES_WAIT_S = 30.0
#: A file that exists while the first repetition's clock runs (named by ``python -m bench.profile``).
CLOCK_FILE_ENV = "BENCH_CLOCK_FILE"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
_TICKS = os.sysconf("SC_CLK_TCK")


# --- measurement helpers (kept here so this script stands alone) ---------------------------------------


def _cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of ``pid`` from /proc (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime and stime: fields 14 and 15 of stat(5)


def find_pids(comm: str) -> list[int]:
    """Pids whose command name is ``comm`` (``beam.smp`` is RabbitMQ)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == comm:
                    pids.append(int(entry.name))
    return pids


@dataclass
class CpuMeter:
    """CPU seconds used by some processes between :meth:`start` and :meth:`stop`."""

    pids: list[int]
    _start: float = 0.0

    def start(self) -> None:
        self._start = sum(_cpu_seconds(p) for p in self.pids)

    def stop(self) -> float:
        return sum(_cpu_seconds(p) for p in self.pids) - self._start


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank quantile ``q`` in (0, 1]: always an observed sample."""
    ordered = sorted(samples)
    return ordered[max(math.ceil(q * len(ordered)), 1) - 1] if ordered else math.nan


def spread(values: list[float]) -> dict[str, float]:
    """Median with min and max: how every figure is reported (the machine is noisy)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: absolute numbers only mean something next to this."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "aio_pika": metadata.version("aio-pika"),
        "websockets": metadata.version("websockets"),
    }


def write_results(payload: dict[str, Any], name: str = NAME) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


# --- the pipeline ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    amqp_url: str
    sessions: int
    commands: int
    reps: int
    prefetch: int
    max_seconds: float
    durable: bool = False
    record_bytes: int = 3072
    partitions: int = 16
    loop: str = "asyncio"
    paced: float = 0.0  # commands/s published during the repetition instead of before it; 0: drain a full queue


@dataclass(frozen=True)
class RepResult:
    rep: int
    commands: int
    seconds: float
    commands_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_us_per_command: float
    pipeline_cpu_pct: float
    echo_cpu_pct: float
    broker_cpu_pct: float
    #: Paced only: the mean of each step of a command, ms (see :data:`STEPS`).
    steps_ms: dict[str, float] = field(default_factory=dict)


class EchoLink:
    """One open WebSocket; a reader resolves the waiting round trip by tracing id."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.waiting: dict[str, asyncio.Future[None]] = {}

    async def roundtrip(self, tracing_id: str, frame: str) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting[tracing_id] = done
        try:
            await self.ws.send(frame)
            await done
        finally:
            self.waiting.pop(tracing_id, None)

    async def read(self) -> None:
        """Run until the socket closes (the echo of a frame is parsed like a Genesys echo would be)."""
        with contextlib.suppress(Exception):
            async for message in self.ws:
                tracing_id = json.loads(message).get("tracingId")
                waiter = self.waiting.get(tracing_id) if isinstance(tracing_id, str) else None
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)


@contextlib.asynccontextmanager
async def echo_process() -> Any:
    """Start ``bench.echo_server`` in its own process; yield ``(port, pid)``."""
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
        [sys.executable, "-m", "bench.echo_server", "--port", "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        if not line.startswith("PORT "):
            raise RuntimeError(f"echo server did not start: {line!r}")
        yield int(line.split()[1]), proc.pid
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # the server stops when stdin closes
        proc.terminate()
        await asyncio.to_thread(proc.wait, 10)


async def open_links(port: int, count: int) -> list[EchoLink]:
    links: list[EchoLink] = []
    url = f"ws://127.0.0.1:{port}/v1?deploymentId=bench"
    for start in range(0, count, 200):  # in waves: a 4096 backlog, but no need to stampede
        batch = await asyncio.gather(
            *(
                connect(url, compression=None, ping_interval=None, max_size=64 * 1024, proxy=None)
                for _ in range(min(200, count - start))
            )
        )
        links.extend(EchoLink(ws) for ws in batch)
    return links


def command_message(i: int, sessions: int, sent_at: float | None = None) -> aio_pika.Message:
    """The ``i``-th command, for session ``i % sessions``; ``sent_at`` (``perf_counter``) when paced."""
    command: dict[str, Any] = {
        "type": "message.send",
        "command_id": uuid.uuid4().hex,
        "session": i % sessions,
        "text": "hello from the benchmark",
    }
    if sent_at is not None:
        command["sent_at"] = sent_at
    return aio_pika.Message(
        json.dumps(command).encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT, content_type="application/json"
    )


async def publish_paced(channel: AbstractChannel, queue_name: str, opts: Options) -> None:
    """Open loop: ``opts.commands`` commands at ``opts.paced`` per second, in 5 ms steps, confirms pipelined
    (as the bridge's load generator paces them). Each carries its send time, which its outcome event
    carries on, so latency is send → the outcome's arrival."""
    exchange = channel.default_exchange
    start = time.perf_counter()
    sent = 0
    async with asyncio.TaskGroup() as publishes:
        while sent < opts.commands:
            due = min(opts.commands, int((time.perf_counter() - start) * opts.paced) + 1)
            while sent < due:
                message = command_message(sent, opts.sessions, sent_at=time.perf_counter())
                publishes.create_task(exchange.publish(message, routing_key=queue_name))
                sent += 1
            await asyncio.sleep(0.005)


async def prefill(channel: AbstractChannel, queue_name: str, count: int, sessions: int) -> None:
    """Put ``count`` commands in the queue (pipelined confirms); not timed."""
    exchange = channel.default_exchange
    for start in range(0, count, 500):
        await asyncio.gather(
            *(
                exchange.publish(command_message(i, sessions), routing_key=queue_name)
                for i in range(start, min(count, start + 500))
            )
        )


async def run_rep(
    rep: int,
    opts: Options,
    *,
    links: list[EchoLink],
    command_queue: AbstractQueue,
    events: AbstractExchange,
    prefill_channel: AbstractChannel,
    meters: dict[str, CpuMeter],
    durable: Durable | None = None,
    extra_queues: list[AbstractQueue] | None = None,
    outcomes: AbstractQueue | None = None,
) -> RepResult:
    """One repetition. ``outcomes`` (the event queue) is consumed when paced: each outcome's arrival ends its
    command's latency."""
    first_queue = durable.intake.name if durable else command_queue.name
    if not opts.paced:
        await prefill(prefill_channel, first_queue, opts.commands, opts.sessions)
    latencies: list[float] = []
    steps: dict[str, list[float]] = {step: [] for step in STEPS}

    def timed(step: str, since: float) -> float:
        now = time.perf_counter()
        if opts.paced:
            steps[step].append(now - since)
        return now

    async def handle(message: AbstractIncomingMessage) -> None:
        started = time.perf_counter()
        command = json.loads(message.body)
        started = command.get("sent_at", started)
        mark = timed("way in", started)
        link = links[command["session"] % len(links)]
        frame = json.dumps(
            {
                "action": "onMessage",
                "token": "bench-token",
                "tracingId": command["command_id"],
                "message": {"type": "Text", "text": command["text"]},
            }
        )
        if durable is not None:
            await durable.write_record(command["session"])  # the send, journalled before it leaves
            mark = timed("first record", mark)
        await link.roundtrip(command["command_id"], frame)
        mark = timed("echo", mark)
        if durable is not None:
            await durable.write_record(command["session"])  # its outcome, before the event and the ack
            mark = timed("second record", mark)
        event = {
            "type": "command.outcome",
            "event_id": uuid.uuid4().hex,
            "causation_id": command["command_id"],
            "status": "delivered",
        }
        if opts.paced:
            event["sent_at"] = started  # the latency ends where the outcome arrives (on_outcome)
            event["published_at"] = mark
        await events.publish(
            aio_pika.Message(
                json.dumps(event).encode(),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                content_type="application/json",
                message_id=event["event_id"],
                correlation_id=command["command_id"],
                type="command.outcome",
            ),
            routing_key="command.outcome.bench",
            mandatory=True,
        )
        timed("outcome confirm", mark)
        await message.ack()
        if not opts.paced:
            latencies.append(time.perf_counter() - started)

    for meter in meters.values():
        meter.start()
    clock_file = os.environ.get(CLOCK_FILE_ENV) if rep == 1 else None
    if clock_file:
        os.close(os.open(clock_file, os.O_CREAT | os.O_WRONLY, 0o644))  # a profiler samples from here on
    cpu_start = time.process_time()
    started = time.perf_counter()
    received = 0
    every_one = asyncio.Event()
    every_outcome = asyncio.Event()
    queues = [command_queue, *(extra_queues or ())]
    async with asyncio.TaskGroup() as tasks:

        async def on_message(message: AbstractIncomingMessage) -> None:
            nonlocal received
            tasks.create_task(handle(message))
            received += 1
            if received == opts.commands:
                every_one.set()

        async def on_outcome(message: AbstractIncomingMessage) -> None:
            outcome = json.loads(message.body)
            latencies.append(timed("outcome arrival", outcome["published_at"]) - outcome["sent_at"])
            if len(latencies) == opts.commands:
                every_outcome.set()

        if durable is not None:
            tasks.create_task(durable.route(opts.commands))
        tags = [await queue.consume(on_message) for queue in queues]
        outcome_tag = None
        if opts.paced:
            assert outcomes is not None, "a paced repetition times each command to its outcome's arrival"
            outcome_tag = await outcomes.consume(on_outcome, no_ack=True)
            tasks.create_task(publish_paced(prefill_channel, first_queue, opts))
        await every_one.wait()
        for queue, tag in zip(queues, tags, strict=True):
            await queue.cancel(tag)
        if outcomes is not None and outcome_tag is not None:
            try:
                async with asyncio.timeout(OUTCOMES_WAIT_S):
                    await every_outcome.wait()
            except TimeoutError:
                raise RuntimeError(
                    f"{opts.commands - len(latencies)} of {opts.commands} outcomes did not arrive within "
                    f"{OUTCOMES_WAIT_S:g} s of the last command"
                ) from None
            await outcomes.cancel(outcome_tag)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_start
    if clock_file:
        os.unlink(clock_file)  # ... and stops here
    echo_cpu = meters["echo"].stop()
    broker_cpu = meters["broker"].stop()
    return RepResult(
        rep=rep,
        commands=len(latencies),
        seconds=round(elapsed, 3),
        commands_per_s=round(len(latencies) / elapsed, 1),
        p50_ms=round(percentile(latencies, 0.50) * 1000, 2),
        p99_ms=round(percentile(latencies, 0.99) * 1000, 2),
        max_ms=round(max(latencies) * 1000, 2),
        cpu_us_per_command=round(cpu / len(latencies) * 1e6, 1),
        pipeline_cpu_pct=round(cpu / elapsed * 100, 1),
        echo_cpu_pct=round(echo_cpu / elapsed * 100, 1),
        broker_cpu_pct=round(broker_cpu / elapsed * 100, 1),
        steps_ms={step: round(statistics.mean(values) * 1000, 2) for step, values in steps.items() if values},
    )


async def run(opts: Options) -> dict[str, Any]:
    """Every repetition within ``max_seconds``; a run cut short reports the repetitions it finished."""
    results: list[RepResult] = []
    timed_out = False
    try:
        async with asyncio.timeout(opts.max_seconds):
            await pipeline(opts, results)
    except TimeoutError:
        timed_out = True
        print(f"stopped after {opts.max_seconds}s with {len(results)} of {opts.reps} repetitions done", flush=True)
    keys = (
        "commands_per_s",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "cpu_us_per_command",
        "pipeline_cpu_pct",
        "echo_cpu_pct",
        "broker_cpu_pct",
    )
    summary = {key: spread([getattr(r, key) for r in results]) for key in keys} if results else {}
    summary |= {
        f"{step} ms (mean)": spread([r.steps_ms[step] for r in results])
        for step in STEPS
        if results and all(step in r.steps_ms for r in results)
    }
    return {
        "benchmark": NAME,
        "machine": machine_info(),
        "options": {k: v for k, v in asdict(opts).items() if k != "amqp_url"},
        "websocket_compression": "off (permessage-deflate triples memory per connection)",
        "timed_out": timed_out,
        "latency": "send → outcome arrival" if opts.paced else "consume → ack",
        "repetitions": [asdict(r) for r in results],
        "summary": summary,
    }


class Durable:
    """The broker work of the bridge's guarantees, without its code: a router hop and journal records, over
    ``partitions`` quorum queues and as many streams, as the daemon lays them out."""

    def __init__(
        self,
        intake: AbstractQueue,
        forward: AbstractChannel,
        partitions: list[str],
        journal: AbstractChannel,
        streams: list[str],
        record_bytes: int,
    ) -> None:
        self.intake = intake
        self._forward = forward.default_exchange
        self._partitions = partitions
        self._journal = journal.default_exchange
        self._streams = streams
        self._body = os.urandom(record_bytes)  # a sealed record is random-looking bytes

    async def write_record(self, session: int) -> None:
        """One confirmed write to ``session``'s partition stream (the daemon's journal record)."""
        await self._journal.publish(
            aio_pika.Message(self._body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=self._streams[session % len(self._streams)],
            mandatory=True,
        )

    async def route(self, count: int) -> None:
        """Copy ``count`` deliveries of the intake into their sessions' partition queues (confirmed,
        pipelined), acking each once its copy is confirmed; returns when all are.

        The caller starts it with the repetition's clock, as the bridge's router only runs once the paused
        daemon resumes: copies made while the queue is filled would be work outside the measured window."""

        async def copy(message: AbstractIncomingMessage) -> None:
            session = json.loads(message.body)["session"]
            await self._forward.publish(
                aio_pika.Message(
                    message.body,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    content_type=message.content_type,
                    message_id=message.message_id,
                ),
                routing_key=self._partitions[session % len(self._partitions)],
                mandatory=True,
            )
            await message.ack()

        copied = 0
        async with asyncio.TaskGroup() as copies, self.intake.iterator() as deliveries:
            async for message in deliveries:
                copies.create_task(copy(message))
                copied += 1
                if copied == count:
                    break


async def pipeline(opts: Options, results: list[RepResult]) -> None:
    """Set up (echo process, AMQP connections, queues, N WebSockets), run the repetitions, tear down."""
    # Named as bench.common.unique_prefix names (this script imports nothing of the bridge's), so that a
    # killed run's queues are swept with the rest of its run.
    prefix = f"bench.baseline.{os.environ.get('BENCH_RUN_ID', 'alone')}.{uuid.uuid4().hex[:6]}"
    async with (
        echo_process() as (port, echo_pid),
        await aio_pika.connect(opts.amqp_url) as consume_conn,
        await aio_pika.connect(opts.amqp_url) as publish_conn,
        contextlib.AsyncExitStack() as durable_stack,
    ):
        consume_channel = await consume_conn.channel()
        await consume_channel.set_qos(prefetch_count=opts.prefetch)
        publish_channel = await publish_conn.channel(publisher_confirms=True)
        prefill_channel = await publish_conn.channel(publisher_confirms=True)
        command_queue = await consume_channel.declare_queue(
            f"{prefix}.commands", durable=True, arguments={"x-queue-type": "quorum"}
        )
        events = await publish_channel.declare_exchange(f"{prefix}.events", aio_pika.ExchangeType.TOPIC, durable=True)
        event_queue = await publish_channel.declare_queue(f"{prefix}.events", durable=True)
        await event_queue.bind(events, "#")
        # Paced, the outcomes are consumed as the bridge's load generator consumes them: not on a publishing
        # connection.
        outcome_queue = await consume_channel.declare_queue(event_queue.name, passive=True)
        queues = [command_queue.name, event_queue.name]
        durable: Durable | None = None
        extra_queues: list[AbstractQueue] = []
        if opts.durable:
            conns = [await durable_stack.enter_async_context(await aio_pika.connect(opts.amqp_url)) for _ in range(3)]
            intake_channel, forward_channel, journal_channel = (
                await conns[0].channel(),
                await conns[1].channel(publisher_confirms=True),
                await conns[2].channel(publisher_confirms=True),
            )
            await intake_channel.set_qos(prefetch_count=opts.prefetch)
            intake = await intake_channel.declare_queue(
                f"{prefix}.intake", durable=True, arguments={"x-queue-type": "quorum"}
            )
            partitions = [command_queue] + [
                await consume_channel.declare_queue(
                    f"{prefix}.commands.p{index}", durable=True, arguments={"x-queue-type": "quorum"}
                )
                for index in range(1, opts.partitions)
            ]
            streams = [
                (
                    await journal_channel.declare_queue(
                        f"{prefix}.journal.p{index}", durable=True, arguments={"x-queue-type": "stream"}
                    )
                ).name
                for index in range(opts.partitions)
            ]
            consumed = [queue.name for queue in partitions]
            queues += [intake.name, *consumed[1:], *streams]
            durable = Durable(intake, forward_channel, consumed, journal_channel, streams, opts.record_bytes)
            extra_queues = partitions[1:]
        links = await open_links(port, opts.sessions)
        meters = {"echo": CpuMeter([echo_pid]), "broker": CpuMeter(find_pids("beam.smp"))}
        try:
            async with asyncio.TaskGroup() as readers:
                for link in links:
                    readers.create_task(link.read())
                try:
                    for rep in range(1, opts.reps + 1):
                        result = await run_rep(
                            rep,
                            opts,
                            links=links,
                            command_queue=command_queue,
                            events=events,
                            prefill_channel=prefill_channel,
                            meters=meters,
                            durable=durable,
                            extra_queues=extra_queues,
                            outcomes=outcome_queue,
                        )
                        results.append(result)
                        print_row(result)
                        await event_queue.purge()
                finally:
                    await asyncio.gather(*(link.ws.close() for link in links))
        finally:
            await cleanup(publish_conn, queues=tuple(queues), exchange=events.name)


async def cleanup(connection: aio_pika.abc.AbstractConnection, *, queues: tuple[str, ...], exchange: str) -> None:
    """Delete what the run declared, on a fresh channel (the others may be closed by now)."""
    try:
        channel = await connection.channel()
        for name in queues:
            await channel.queue_delete(name)
        await channel.exchange_delete(exchange)
        await channel.close()
    except Exception as exc:  # report, don't mask the run's own outcome
        print(f"cleanup failed, delete {queues} and {exchange} by hand: {exc!r}", file=sys.stderr)


HEADER = (
    f"{'rep':>3} {'cmds':>6} {'secs':>6} {'cmds/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
    f"{'µs/cmd':>7} {'self%':>6} {'echo%':>6} {'rabbit%':>7}"
)


def print_row(r: RepResult) -> None:
    print(
        f"{r.rep:>3} {r.commands:>6} {r.seconds:>6.2f} {r.commands_per_s:>8.0f} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} "
        f"{r.max_ms:>7.1f} {r.cpu_us_per_command:>7.0f} {r.pipeline_cpu_pct:>6.0f} {r.echo_cpu_pct:>6.0f} "
        f"{r.broker_cpu_pct:>7.0f}",
        flush=True,
    )


def print_summary(summary: dict[str, dict[str, float]]) -> None:
    print("\nmedian [min–max]")
    for key, s in summary.items():
        print(f"  {key:<26} {s['median']:>10.1f}  [{s['min']:.1f}–{s['max']:.1f}]")


def run_on_loop(opts: Options) -> dict[str, Any]:
    """:func:`run` on the event loop ``opts.loop`` names."""
    factory = asyncio.new_event_loop
    if opts.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(run(opts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--amqp-url", default=os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    parser.add_argument("--sessions", type=int, default=1000, help="open WebSockets (N)")
    parser.add_argument("--commands", type=int, default=4000, help="commands per repetition (M)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (at least 3 for a spread)")
    parser.add_argument("--prefetch", type=int, default=256, help="commands in flight (P)")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="hard bound on the whole run")
    parser.add_argument("--durable", action="store_true", help="add the broker work of the bridge's guarantees")
    parser.add_argument("--record-bytes", type=int, default=3072, help="journal record size with --durable")
    parser.add_argument("--partitions", type=int, default=16, help="partition queues and streams with --durable")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="event loop to run on")
    parser.add_argument("--result", default=NAME, help="results file name under bench/results (no .json)")
    parser.add_argument(
        "--paced",
        type=float,
        default=0.0,
        help="publish the commands at this rate during each repetition (latency at a load), not before it",
    )
    args = parser.parse_args()
    opts = Options(
        amqp_url=args.amqp_url,
        sessions=args.sessions,
        commands=args.commands,
        reps=args.reps,
        prefetch=args.prefetch,
        max_seconds=args.max_seconds,
        durable=args.durable,
        record_bytes=args.record_bytes,
        partitions=args.partitions,
        loop=args.loop,
        paced=args.paced,
    )
    print(
        f"baseline pipeline{' (durable)' if opts.durable else ''}: {opts.sessions} WebSockets, "
        f"{opts.commands} commands x {opts.reps}, prefetch {opts.prefetch}, on {opts.loop}"
        + (f", published at {opts.paced:g}/s during each repetition" if opts.paced else "")
    )
    print(HEADER)
    payload = run_on_loop(opts)
    print_summary(payload["summary"])
    print(f"\nwrote {write_results(payload, args.result)}")


if __name__ == "__main__":
    main()
