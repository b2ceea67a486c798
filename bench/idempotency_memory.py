"""Bytes per idempotency-cache entry: ``python -m bench.idempotency_memory [--entries N]``.

Not part of ``python -m bench``; in-process, no broker, a few seconds. It fills the command-id cache of
``bridge.session.outcomes.OutcomeBook`` with N realistic settled outcomes (default 100,000, the default
``BRIDGE_IDEMPOTENCY_CACHE_SIZE``) in two representations, one after the other in the same run, and
measures each with ``tracemalloc`` (allocations still held once the cache is full, divided by N):

- ``old``: the representation before the compact cache, rebuilt here for comparison: an
  ``OrderedDict[command_id, (CommandOutcome, deployment_id, route)]``;
- ``new``: ``bridge.session.settled.SettledCache``, what the bridge uses.

The outcomes are what a busy deployment settles: ``message.send`` delivered with a Genesys message id
(95 %), failures with a code and a detail, and rejections with a detail; UUID command ids, ``uuid4().hex``
event ids, 10 commands per session, 10 deployments, a third of the sessions with an owner route and a
correlation id. Each cache's outcomes are made while tracemalloc runs and the input list is dropped before
the reading, so what is counted is what the cache keeps alive. tracemalloc counts
requested bytes; the allocator rounds small objects up to 16 bytes, so the RSS cost is a little higher.
"""

from __future__ import annotations

import argparse
import gc
import random
import tracemalloc
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import write_result
from bench.stats import render_table
from bridge.session.settled import SettledCache
from genesys_bridge_client.contract.events import CommandOutcome

__all__ = ["main", "outcomes"]

Entry = tuple[CommandOutcome, str | None, str | None]


def outcomes(n: int, seed: int = 1) -> Iterator[tuple[str, CommandOutcome, str | None, str | None]]:
    """N realistic settled outcomes with their routing, as the bridge's sessions settle them."""
    rng = random.Random(seed)
    deployments = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(10)]
    start = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    for i in range(n):
        session = i // 10
        command_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        routed = session % 3 == 0
        roll = rng.random()
        fields: dict[str, Any] = {
            "event_id": uuid.UUID(int=rng.getrandbits(128), version=4).hex,
            "session_id": f"order-{100_000 + session}",
            "seq": 2 + i % 10,
            "occurred_at": start + timedelta(microseconds=rng.getrandbits(40)),
            "causation_id": command_id,
            "correlation_id": f"req-{i}" if routed else None,
            "command_id": command_id,
            "command_type": "message.send",
            "status": "delivered",
            "reason": "ok",
        }
        if roll < 0.95:
            fields["genesys_message_id"] = uuid.UUID(int=rng.getrandbits(128), version=4).hex
        elif roll < 0.98:
            fields.update(status="failed", reason="timeout", detail="no echo from Genesys within 30 s")
        else:
            fields.update(status="rejected", reason="overflow", detail="the session inbox is full (64 commands)")
        route = "billing" if routed else None
        yield command_id, CommandOutcome.model_validate(fields), deployments[session % 10], route


def _old(items: list[tuple[str, CommandOutcome, str | None, str | None]]) -> object:
    cache: OrderedDict[str, Entry] = OrderedDict()
    for command_id, outcome, deployment_id, route in items:
        cache[command_id] = (outcome, deployment_id, route)
        cache.move_to_end(command_id)
    return cache


def _new(items: list[tuple[str, CommandOutcome, str | None, str | None]]) -> object:
    cache = SettledCache(len(items))
    for command_id, outcome, deployment_id, route in items:
        cache.put(command_id, outcome, deployment_id, route)
    return cache


def _held_by(fill: Callable[[list[tuple[str, CommandOutcome, str | None, str | None]]], object], n: int) -> int:
    """Bytes still allocated once a cache of ``n`` entries is full and the rest of its input is gone.

    The outcomes are made inside the measurement: the old cache keeps them (that is its cost), the new one
    keeps only its records, and the command-id strings the old cache holds as keys are counted for both."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    items = list(outcomes(n))
    cache = fill(items)
    del items
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del cache
    return held


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args(argv)
    n = args.entries
    old = _held_by(_old, n)
    new = _held_by(_new, n)
    rows = [
        ["old: OrderedDict of CommandOutcome", f"{old / n:,.0f}", f"{old / 2**20:,.1f}"],
        ["new: SettledCache (packed records)", f"{new / n:,.0f}", f"{new / 2**20:,.1f}"],
    ]
    print(render_table(["representation", "bytes/entry", f"MiB for {n:,}"], rows))
    print(f"new / old: {new / old:.3f}")
    write_result(
        "idempotency_memory",
        {"entries": n, "old_bytes_per_entry": old / n, "new_bytes_per_entry": new / n},
    )


if __name__ == "__main__":
    main()
