"""The partition layout other tools rely on, and the share rules the fleet balances by (pure)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.partition.layout import (
    fair_share,
    floor_share,
    hunger_queue,
    journal_stream_of,
    partition_of,
    partition_queue,
    presence_queue,
    surplus,
)


@pytest.mark.parametrize(
    ("session_id", "partitions", "expected"),
    [("s-1", 16, 2), ("s-1", 1024, 1010), ("order-4711", 16, 3), ("order-4711", 1024, 403), ("", 16, 4)],
)
def test_partition_of_is_pinned(session_id: str, partitions: int, expected: int) -> None:
    """The documented hash, pinned: a change here moves every session of every deployment."""
    assert partition_of(session_id, partitions) == expected


@given(st.text(max_size=64), st.integers(min_value=1, max_value=1024))
def test_partition_of_is_the_documented_formula(session_id: str, partitions: int) -> None:
    digest = hashlib.sha256(session_id.encode("utf-8")).digest()
    assert partition_of(session_id, partitions) == int.from_bytes(digest[:8], "big") % partitions


def test_names_derive_from_the_intake_queue_and_the_journal_stream() -> None:
    assert partition_queue("genesys.bridge.commands", 3) == "genesys.bridge.commands.p3"
    assert presence_queue("genesys.bridge.commands") == "genesys.bridge.commands.replicas"
    assert hunger_queue("genesys.bridge.commands") == "genesys.bridge.commands.hungry"
    assert journal_stream_of("genesys.bridge.journal", 0) == "genesys.bridge.journal.p0"


@pytest.mark.parametrize(
    ("partitions", "replicas", "floor", "ceil"),
    [(16, 1, 16, 16), (16, 2, 8, 8), (16, 3, 5, 6), (16, 5, 3, 4), (6, 4, 1, 2), (1, 2, 0, 1), (4, 0, 4, 4)],
)
def test_shares(partitions: int, replicas: int, floor: int, ceil: int) -> None:
    assert (floor_share(partitions, replicas), fair_share(partitions, replicas)) == (floor, ceil)


@pytest.mark.parametrize(("owned", "expected"), [(0, 0), (6, 0), (7, 1), (16, 10)])
def test_surplus_is_what_lies_above_the_ceiling(owned: int, expected: int) -> None:
    assert surplus(owned, 16, 3) == expected
