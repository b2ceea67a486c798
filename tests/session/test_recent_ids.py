"""A session's recent Genesys ids: the bounded tail that dedupes messages across reconnects and restarts."""

from __future__ import annotations

from bridge.session.session import RECENT_IDS_KEPT, RecentIds


def test_the_oldest_id_goes_past_the_bound() -> None:
    ids = RecentIds(size=3)
    for message_id in ("a", "b", "c", "d"):
        ids.add(message_id)
    assert "a" not in ids
    assert ids.snapshot() == ("b", "c", "d")
    assert len(ids) == 3


def test_an_id_seen_again_becomes_the_newest() -> None:
    ids = RecentIds(("a", "b", "c"), size=3)
    ids.add("a")
    ids.add("d")  # evicts the oldest, which is now b
    assert ids.snapshot() == ("c", "a", "d")
    assert "b" not in ids


def test_a_record_tail_longer_than_the_bound_keeps_its_newest() -> None:
    tail = tuple(f"m{i}" for i in range(RECENT_IDS_KEPT + 50))
    ids = RecentIds(tail)
    assert ids.snapshot() == tail[-RECENT_IDS_KEPT:]


def test_a_long_churn_keeps_exactly_the_newest() -> None:
    ids = RecentIds(size=200)
    for i in range(5_000):
        ids.add(f"m{i}")
    assert ids.snapshot() == tuple(f"m{i}" for i in range(4_800, 5_000))
