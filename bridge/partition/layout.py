"""Which partition a session belongs to, and the names of a partition's queue and journal stream. Pure.

The hash is part of the contract with other tools (an operator's script, a broker-side route): a session
belongs to partition ``int.from_bytes(sha256(session_id as UTF-8)[:8], "big") % partitions``. Python's
``hash()`` is salted per process, so it could not be used: every replica, and every tool, must agree.
"""

from __future__ import annotations

import hashlib
import math
from typing import Final

__all__ = [
    "MAX_PARTITIONS",
    "PROBE_TYPE",
    "fair_share",
    "floor_share",
    "hunger_queue",
    "journal_stream_of",
    "partition_of",
    "partition_queue",
    "presence_queue",
    "surplus",
]

#: The most partitions a deployment may have (``BRIDGE_PARTITIONS``): also how far tools look for queues.
MAX_PARTITIONS: Final = 1024

#: AMQP ``type`` of a probe message: it tells the active consumer of a queue that it is the active one.
PROBE_TYPE: Final = "genesys-bridge.probe"


def partition_of(session_id: str, partitions: int) -> int:
    """The partition of ``session_id`` among ``partitions`` (``0 <= result < partitions``). Stable everywhere."""
    digest = hashlib.sha256(session_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % partitions


def partition_queue(intake_queue: str, partition: int) -> str:
    """The queue of ``partition``: ``<intake queue>.p<N>``."""
    return f"{intake_queue}.p{partition}"


def presence_queue(intake_queue: str) -> str:
    """The presence queue, ``<intake queue>.replicas``: one consumer per replica (docs/scaling.md)."""
    return f"{intake_queue}.replicas"


def hunger_queue(intake_queue: str) -> str:
    """The hunger queue, ``<intake queue>.hungry``: one consumer per replica below its fair share's floor."""
    return f"{intake_queue}.hungry"


def journal_stream_of(journal_stream: str, partition: int) -> str:
    """The journal stream of ``partition``: ``<journal stream>.p<N>``, so a new owner reads only its sessions."""
    return f"{journal_stream}.p{partition}"


def fair_share(partitions: int, replicas: int) -> int:
    """The most partitions one of ``replicas`` replicas should own: ``ceil(partitions / replicas)``."""
    return math.ceil(partitions / max(1, replicas))


def floor_share(partitions: int, replicas: int) -> int:
    """The fewest partitions one of ``replicas`` replicas should own: ``floor(partitions / replicas)``."""
    return partitions // max(1, replicas)


def surplus(owned: int, partitions: int, replicas: int) -> int:
    """How many of its ``owned`` partitions a replica should release to get down to its fair share."""
    return max(0, owned - fair_share(partitions, replicas))
