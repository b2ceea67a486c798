"""Micro-benchmark, not in the suite: building the bridge's events validated vs with ``model_construct``.

What the bridge builds per command and per agent message, in one process: a ``command.outcome`` from a
``SettledOutcome`` under a stamp, a ``session.state_changed``, and a ``message.received`` from a normalised
Genesys frame. Each is built N times validated (the constructor: what the bridge does), N times with
``model_construct`` given the same fields, and N times with ``model_construct`` given every field (no
default left to fill), the three alternating by repetition. Encoding is timed apart: it is the same for all.
Prints µs per event, median [min–max] of the repetitions.

    python -m bench.micro_events [--n 100000] [--reps 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench.stats import spread
from bridge.contract.outcomes import SettledOutcome, event_stamp
from bridge.genesys.frames import StructuredMessage
from bridge.genesys.normalize import normalize_message
from genesys_bridge_client.contract.codec import encode_event
from genesys_bridge_client.contract.commands import MessageSend
from genesys_bridge_client.contract.common import EventModel
from genesys_bridge_client.contract.events import CommandOutcome, MessageReceived, SessionStateChanged

NOW = datetime(2026, 11, 26, 13, 41, 2, tzinfo=UTC)
COMMAND = MessageSend(session_id="order-4711", command_id="cmd-1", text="hello")
OUTCOME = SettledOutcome.of(COMMAND, "delivered", "ok", genesys_message_id="5e4d3c2b1a0f4e9d8c7b6a5f4e3d2c1b")
FRAME = StructuredMessage.model_validate(
    {
        "id": "a8d6c6b2e9f04c6f8d1e2b3a4c5d6e7f",
        "type": "Text",
        "direction": "Outbound",
        "text": "Sorry to hear that. Shall I refund you?",
        "originatingEntity": "Human",
        "channel": {"time": "2026-11-26T13:41:02.087Z", "from": {"nickname": "Ann"}},
    }
)


def _outcome_fields() -> dict[str, Any]:
    stamp = event_stamp(session_id="order-4711", seq=5, occurred_at=NOW, cause=COMMAND)
    return {**stamp, **OUTCOME.model_dump()}


def _state_fields() -> dict[str, Any]:
    stamp = event_stamp(session_id="order-4711", seq=6, occurred_at=NOW, cause=None)
    return {**stamp, "old": "connecting", "new": "active", "detail": None}


def _message_fields() -> dict[str, Any]:
    n = normalize_message(FRAME)
    stamp = event_stamp(session_id="order-4711", seq=7, occurred_at=NOW, cause=None)
    raw = FRAME.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {
        **stamp,
        "genesys_message_id": FRAME.id,
        "direction": n.direction,
        "sender": n.sender,
        "text": n.text,
        "parts": n.parts,
        "genesys_time": n.genesys_time,
        "backfilled": False,
        "raw": raw,
    }


CASES: list[tuple[str, type[EventModel], Callable[[], dict[str, Any]]]] = [
    ("command.outcome", CommandOutcome, _outcome_fields),
    ("session.state_changed", SessionStateChanged, _state_fields),
    ("message.received", MessageReceived, _message_fields),
]


def _us_per_event(build: Callable[..., EventModel], fields: dict[str, Any], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        build(**fields)
    return (time.perf_counter() - start) / n * 1e6


def _every_field(cls: type[EventModel], fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` plus every default, so ``model_construct`` has nothing to fill in."""
    defaults = {
        name: info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
        for name, info in cls.model_fields.items()
    }
    return defaults | fields


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    for label, cls, make in CASES:
        fields = make()
        full = _every_field(cls, fields)
        validated: list[float] = []
        constructed: list[float] = []
        constructed_full: list[float] = []
        for _ in range(args.reps):
            validated.append(_us_per_event(cls, fields, args.n))
            constructed.append(_us_per_event(cls.model_construct, fields, args.n))
            constructed_full.append(_us_per_event(cls.model_construct, full, args.n))
        event = cls(**fields)
        start = time.perf_counter()
        for _ in range(args.n):
            encode_event(event)  # type: ignore[arg-type]
        encode_us = (time.perf_counter() - start) / args.n * 1e6
        v, c, f = spread(validated), spread(constructed), spread(constructed_full)
        print(
            f"{label:22} validated {v.fmt(2)} µs   model_construct {c.fmt(2)} µs   "
            f"model_construct, every field {f.fmt(2)} µs   encode {encode_us:.2f} µs"
        )


if __name__ == "__main__":
    main()
