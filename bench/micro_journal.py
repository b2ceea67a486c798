"""What one journal save costs in CPU: ``python -m bench.micro_journal [--saves N] [--result NAME]``.

Not part of ``python -m bench``; in-process, no broker, seconds. It encodes two realistic session records
(a young session, and one some way into its conversation: 200 recent Genesys ids, 32 recent outcomes,
attributes, a token) N times each (default 10,000) with ``bridge.store.codec.encode_record``, as every
journal save does, in both record formats (``BRIDGE_JOURNAL_FORMAT`` 1, JSON around a Fernet token, and 2,
binary around an AES-GCM seal), and times the steps apart on the same record: pydantic's JSON with the
secrets revealed, each seal. It also times a replay's reading of one record of each format
(``parse_envelope`` and ``open_record``), and the encoding format 1 replaced: ``model_dump``, the inner JSON
with ``json.dumps``, the seal, the envelope with ``json.dumps``. Best of 3 runs, µs per save; the body sizes.
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
from bridge.store.codec import MarkerEnvelope, _dumps, encode_record, open_record, parse_envelope
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


def _read(body: bytes, keys: KeyRing) -> SessionRecord:
    envelope = parse_envelope(body)
    assert not isinstance(envelope, MarkerEnvelope)
    return open_record(envelope, keys)


def _steps(rec: SessionRecord, keys: KeyRing, now: datetime, n: int) -> dict[str, float]:
    plain = rec.sealed_json()
    clear = bytes(12 + len(rec.session_id))
    json_body = encode_record(rec, keys, written_at=now)
    binary_body = encode_record(rec, keys, written_at=now, record_format=2)
    return {
        "encode_record, format 1 (all of it)": _best_us(lambda: encode_record(rec, keys, written_at=now), n),
        "  SessionRecord.sealed_json (secrets revealed)": _best_us(rec.sealed_json, n),
        "  KeyRing.seal (Fernet)": _best_us(lambda: keys.seal(plain), n),
        "encode_record, format 2 (all of it)": _best_us(
            lambda: encode_record(rec, keys, written_at=now, record_format=2), n
        ),
        "  KeyRing.seal_binary (AES-256-GCM)": _best_us(lambda: keys.seal_binary(plain, clear), n),
        "read a format 1 record (parse_envelope, open_record)": _best_us(lambda: _read(json_body, keys), n),
        "read a format 2 record (parse_envelope, open_record)": _best_us(lambda: _read(binary_body, keys), n),
        "previous encoding (model_dump, json.dumps twice, seal)": _best_us(lambda: _previous(rec, keys, now), n),
    }


def _body_bytes(rec: SessionRecord, keys: KeyRing, now: datetime) -> dict[str, int]:
    return {f"format {fmt}": len(encode_record(rec, keys, written_at=now, record_format=fmt)) for fmt in (1, 2)}


def young_record(record: SessionRecord) -> SessionRecord:
    """``record`` as a young session holds it: no history yet."""
    return record.replaced({"recent_message_ids": RecentIds(), "recent_outcomes": RecentOutcomes()})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--saves", type=int, default=10_000)
    parser.add_argument("--result", default="micro_journal", help="results file name (default: micro_journal)")
    args = parser.parse_args(argv)
    n = args.saves
    keys = KeyRing.of(generate_key())
    now = datetime.now(UTC)
    busy = record()
    young = young_record(busy)
    figures = {label: _steps(rec, keys, now, n) for label, rec in (("young", young), ("busy", busy))}
    sizes = {label: len(rec.model_dump_json()) for label, rec in (("young", young), ("busy", busy))}
    bodies = {label: _body_bytes(rec, keys, now) for label, rec in (("young", young), ("busy", busy))}
    rows = [[step, *(f"{figures[label][step]:,.1f}" for label in figures)] for step in figures["young"]]
    print(f"records of {sizes['young']:,} and {sizes['busy']:,} bytes of JSON; {n:,} saves each, best of 3")
    print(render_table(["step", "µs per save, young", "µs per save, busy"], rows))
    print("journal body bytes: " + "; ".join(f"{label} {fig}" for label, fig in bodies.items()))
    write_result(args.result, {"saves": n, "record_bytes": sizes, "body_bytes": bodies, "us_per_save": figures})


if __name__ == "__main__":
    main()
