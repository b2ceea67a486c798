"""What group commit buys the journal: ``python -m bench.journal_commit [--writers N] [--saves M] [--reps R]``.

Not part of ``python -m bench``; about a minute, against the local RabbitMQ. ``N`` writers (sessions) each
append ``M`` journal records one after the other, as the journal store does (one write per session in
flight), to one stream of the run's own. Alternated, per repetition: every record its own stream message
(one confirm each, pipelined across writers: the journal before group commit), then group commit with 1, 2
and 4 batches in flight. Reports records/s, the CPU of this process and of RabbitMQ per record, and
records per stream message: median [min–max] over the repetitions.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import aio_pika
from pydantic import SecretStr

from bench.common import AMQP_URL, run_and_report, unique_prefix
from bench.micro_journal import record, young_record
from bench.procs import cpu_seconds, find_rabbitmq_pid
from bench.stats import Spread, render_table, spread
from bridge.amqp.connection import ReopeningConnection
from bridge.amqp.journal import StreamJournal
from bridge.config import Settings
from bridge.store.codec import encode_record
from bridge.store.crypto import KeyRing, generate_key

__all__ = ["main"]

#: (label, batch records, batches in flight); one record per batch and no bound is the journal without it.
Config = tuple[str, int, int]
CONFIGS: tuple[Config, ...] = (
    ("one message per record", 1, 1_000_000),
    ("group commit, 1 in flight", 256, 1),
    ("group commit, 2 in flight (default)", 256, 2),
    ("group commit, 4 in flight", 256, 4),
)


async def _one(
    connection: ReopeningConnection, settings: Settings, body: bytes, writers: int, saves: int, config: Config
) -> dict[str, float]:
    _, records, in_flight = config
    journal = StreamJournal(
        connection,
        stream=settings.journal_stream,
        max_age=settings.journal_max_age,
        confirm_timeout_s=settings.publish_timeout_s,
        batch_max_records=records,
        batches_in_flight=in_flight,
    )
    rabbit = find_rabbitmq_pid()
    async with journal:

        async def writer() -> None:
            for _ in range(saves):
                await journal.append(body)

        cpu0, broker0, t0 = time.process_time(), cpu_seconds(rabbit) if rabbit else 0.0, time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(writers):
                tg.create_task(writer())
        elapsed = time.perf_counter() - t0
        cpu1, broker1 = time.process_time(), cpu_seconds(rabbit) if rabbit else 0.0
    total = writers * saves
    return {
        "records_per_s": total / elapsed,
        "cpu_us": (cpu1 - cpu0) / total * 1e6,
        "broker_us": (broker1 - broker0) / total * 1e6,
        "per_message": total / journal.messages_written,
    }


async def _run(writers: int, saves: int, reps: int) -> dict[str, Any]:
    stream = unique_prefix("journal_commit")
    settings = Settings(amqp_url=SecretStr(AMQP_URL), journal_stream=stream)
    now = datetime.now(UTC)
    rec = young_record(record())
    body = encode_record(rec, KeyRing.of(generate_key()), written_at=now)
    results: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in CONFIGS}
    try:
        async with ReopeningConnection(settings, name=stream) as connection:
            for _ in range(reps):
                for config in CONFIGS:
                    results[config[0]].append(await _one(connection, settings, body, writers, saves, config))
    finally:
        conn = await aio_pika.connect(AMQP_URL)
        async with conn:
            await (await conn.channel()).queue_delete(stream)
    figures = {
        label: {key: spread(r[key] for r in runs).as_json() for key in runs[0]} for label, runs in results.items()
    }
    sizes = {"writers": writers, "saves": saves, "reps": reps, "record_bytes": len(body)}
    return {"status": "ok", **sizes, "figures": figures}


def _render(doc: dict[str, Any]) -> str:
    if doc["status"] != "ok":
        return f"journal_commit failed: {doc['reason']}"
    rows = [
        [
            label,
            Spread.of(f["records_per_s"]).fmt(),
            Spread.of(f["cpu_us"]).fmt(),
            Spread.of(f["broker_us"]).fmt(),
            Spread.of(f["per_message"]).fmt(1),
        ]
        for label, f in doc["figures"].items()
    ]
    head = f"{doc['writers']} writers × {doc['saves']} records of {doc['record_bytes']:,} bytes, {doc['reps']} reps"
    table = render_table(["journal", "records/s", "CPU µs/record", "RabbitMQ µs/record", "records/message"], rows)
    return f"{head}\n{table}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--writers", type=int, default=64)
    parser.add_argument("--saves", type=int, default=50)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    run_and_report("journal_commit", lambda: _run(args.writers, args.saves, args.reps), _render)


if __name__ == "__main__":
    main()
