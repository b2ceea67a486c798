"""What one journal save costs in CPU: ``python -m bench.micro_journal [--saves N]``.

Not part of ``python -m bench``; in-process, no broker, seconds. It encodes two realistic session records
(a young session, and one some way into its conversation: 200 recent Genesys ids, 32 recent outcomes,
attributes, a token) N times each (default 10,000) with ``bridge.store.codec.encode_record``, as every
journal save does, and times its steps apart on the same record: pydantic's JSON with the secrets revealed,
the Fernet seal (``KeyRing.seal``). Beside it, in the same run, the encoding it replaced: ``model_dump``, the
inner JSON with ``json.dumps``, the seal, the envelope with ``json.dumps``. Best of 3 runs, µs per save.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from bench.common import us_per_call, write_result
from bench.stats import render_table
from bridge.contract.outcomes import SettledOutcome
from bridge.recent_ids import RECENT_IDS_KEPT, RecentIds
from bridge.recent_outcomes import RECENT_OUTCOMES_KEPT, RecentOutcomes
from bridge.record import SessionRecord
from bridge.store.codec import _dumps, encode_record
from bridge.store.crypto import KeyRing, generate_key

__all__ = ["main", "record", "young_record"]


def record() -> SessionRecord:
    """A session record as it stands after a few hundred messages."""
    now = datetime.now(UTC)
    outcomes = RecentOutcomes(
        SettledOutcome(
            command_id=str(uuid.uuid4()),
            command_type="message.send",
            status="delivered",
            reason="ok",
            genesys_message_id=uuid.uuid4().hex,
        )
        for _ in range(RECENT_OUTCOMES_KEPT)
    )
    return SessionRecord(
        session_id="order-4711",
        token=SecretStr(str(uuid.uuid4())),
        deployment_id=str(uuid.uuid4()),
        region="mypurecloud.com",
        custom_attributes={"customer": "4711", "channel": "web"},
        state="active",
        last_message_id=uuid.uuid4().hex,
        last_message_time=now,
        recent_message_ids=RecentIds(uuid.uuid4().hex for _ in range(RECENT_IDS_KEPT)),
        seq=412,
        recent_outcomes=outcomes,
        start_command_id=str(uuid.uuid4()),
        created_at=now,
        updated_at=now,
    )


def _best_us(step: Callable[[], Any], n: int) -> float:
    return min(us_per_call(step, n) for _ in range(3))


def _previous(rec: SessionRecord, keys: KeyRing, now: datetime) -> bytes:
    """The encoding before pydantic's JSON: a ``model_dump``, ``json.dumps`` inside and around the seal."""
    inner = rec.model_dump(mode="json")
    for name, value in rec:
        if isinstance(value, SecretStr):
            inner[name] = value.get_secret_value()
    envelope = {
        "v": 1,
        "kind": "session",
        "session_id": rec.session_id,
        "closed": rec.closed,
        "written_at": now.isoformat(),
        "sealed": keys.seal(_dumps(inner)),
    }
    return _dumps(envelope)


def _steps(rec: SessionRecord, keys: KeyRing, now: datetime, n: int) -> dict[str, float]:
    plain = rec.sealed_json()
    return {
        "encode_record (all of it)": _best_us(lambda: encode_record(rec, keys, written_at=now), n),
        "  SessionRecord.sealed_json (secrets revealed)": _best_us(rec.sealed_json, n),
        "  KeyRing.seal (Fernet)": _best_us(lambda: keys.seal(plain), n),
        "previous encoding (model_dump, json.dumps twice, seal)": _best_us(lambda: _previous(rec, keys, now), n),
    }


def young_record(record: SessionRecord) -> SessionRecord:
    """``record`` as a young session holds it: no history yet."""
    return record.replaced({"recent_message_ids": RecentIds(), "recent_outcomes": RecentOutcomes()})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--saves", type=int, default=10_000)
    n = parser.parse_args(argv).saves
    keys = KeyRing.of(generate_key())
    now = datetime.now(UTC)
    busy = record()
    young = young_record(busy)
    figures = {label: _steps(rec, keys, now, n) for label, rec in (("young", young), ("busy", busy))}
    sizes = {label: len(rec.model_dump_json()) for label, rec in (("young", young), ("busy", busy))}
    rows = [[step, *(f"{figures[label][step]:,.1f}" for label in figures)] for step in figures["young"]]
    print(f"records of {sizes['young']:,} and {sizes['busy']:,} bytes of JSON; {n:,} saves each, best of 3")
    print(render_table(["step", "µs per save, young", "µs per save, busy"], rows))
    write_result("micro_journal", {"saves": n, "record_bytes": sizes, "us_per_save": figures})


if __name__ == "__main__":
    main()
