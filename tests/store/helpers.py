"""Small builders shared by the store tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from bridge.observability.metrics import Metrics
from bridge.record import SessionRecord

__all__ = ["T0", "FixedClock", "corrupt_count", "make_record", "new_metrics"]

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class FixedClock:
    """A clock that only moves when told (both wall and monotonic time)."""

    def __init__(self, now: datetime = T0) -> None:
        self.current = now
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)
        self.mono += seconds

    def monotonic(self) -> float:
        return self.mono

    def now(self) -> datetime:
        return self.current


def make_record(session_id: str = "s-1", *, token: str | None = None, n: int = 0, **changes: object) -> SessionRecord:
    """A live record; ``n`` makes successive snapshots of one session distinguishable (seq, updated_at)."""
    base = SessionRecord(
        session_id=session_id,
        token=SecretStr(token or f"tok-{session_id}"),
        deployment_id="dep-1",
        region="usw2.pure.cloud",
        origin="https://shop.example",
        custom_attributes={"email": "pii@example.com"},
        state="connected",
        last_message_id=f"m-{n}" if n else None,
        seq=n,
        created_at=T0,
        updated_at=T0 + timedelta(seconds=n),
    )
    return base.model_copy(update=changes) if changes else base


def new_metrics() -> Metrics:
    return Metrics(process_metrics=False)


def corrupt_count(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("genesys_bridge_journal_corrupt_records_total") or 0.0
