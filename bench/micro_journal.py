"""What one journal save costs in CPU: ``python -m bench.micro_journal [--saves N]``.

Not part of ``python -m bench``; in-process, no broker, seconds. It encodes one realistic session record
(a live session some way into its conversation: 200 recent Genesys ids, 32 recent outcomes, attributes,
a token) N times (default 10,000) with ``bridge.store.codec.encode_record``, as every journal save does,
and times each step of it apart on the same record: the ``model_dump``, the inner JSON, the Fernet seal
(``KeyRing.seal``), the envelope JSON. Best of 3 runs, microseconds per save.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from bench.common import write_result
from bench.stats import render_table
from bridge.contract.outcomes import SettledOutcome
from bridge.record import RECENT_OUTCOMES_KEPT, SessionRecord
from bridge.session.session import RECENT_IDS_KEPT
from bridge.store.codec import _dumps, encode_record
from bridge.store.crypto import KeyRing, generate_key

__all__ = ["main", "record"]


def record() -> SessionRecord:
    """A session record as it stands after a few hundred messages."""
    now = datetime.now(UTC)
    outcomes = tuple(
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
        recent_message_ids=tuple(uuid.uuid4().hex for _ in range(RECENT_IDS_KEPT)),
        seq=412,
        recent_outcomes=outcomes,
        start_command_id=str(uuid.uuid4()),
        created_at=now,
        updated_at=now,
    )


def _best_us(step: Callable[[], Any], n: int) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            step()
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--saves", type=int, default=10_000)
    n = parser.parse_args(argv).saves
    rec = record()
    keys = KeyRing.of(generate_key())
    now = datetime.now(UTC)
    inner = rec.model_dump(mode="json")
    plain = _dumps(inner)
    sealed = keys.seal(plain)
    envelope = {"v": 1, "kind": "session", "session_id": rec.session_id, "closed": False, "sealed": sealed}
    figures = {
        "encode_record (all of it)": _best_us(lambda: encode_record(rec, keys, written_at=now), n),
        "model_dump(mode='json')": _best_us(lambda: rec.model_dump(mode="json"), n),
        "inner JSON (_dumps)": _best_us(lambda: _dumps(inner), n),
        "KeyRing.seal (Fernet)": _best_us(lambda: keys.seal(plain), n),
        "envelope JSON (_dumps)": _best_us(lambda: _dumps(envelope), n),
    }
    rows = [[name, f"{us:,.1f}"] for name, us in figures.items()]
    print(f"record: {len(plain):,} bytes of JSON, {len(sealed):,} sealed; {n:,} saves, best of 3")
    print(render_table(["step", "µs per save"], rows))
    write_result("micro_journal", {"saves": n, "record_bytes": len(plain), "us_per_save": figures})


if __name__ == "__main__":
    main()
