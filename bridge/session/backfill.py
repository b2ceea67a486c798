"""History backfill after a reconnect or restart (protocol reference §4.1 "Resume", §9).

Pages are fetched newest first until a message id the session already published shows up (or the pages
run out, or ``max_pages`` is reached). What was missed is returned oldest first, sorted by
``channel.time`` (§10: the only ordering key; entities without a time keep their page position).
Deduplication is by Genesys message id (``body.id``), never by tracingId (§9).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from bridge.genesys.frames import StructuredMessage
from bridge.genesys.normalize import parse_genesys_time
from bridge.session.ports import HistoryClient

__all__ = ["Backfill", "EntityKind", "classify", "fetch_missed", "message_time"]

log = structlog.get_logger(__name__)


class EntityKind(enum.Enum):
    """What a history entity (or a live StructuredMessage) means to the session."""

    OUTBOUND_MESSAGE = "outbound_message"  # agent/bot/system text or rich content: publish
    INBOUND_MESSAGE = "inbound_message"  # the guest's own message (ours, or from another connection)
    DISCONNECT = "disconnect"  # Outbound Presence Disconnect (§5.3)
    IGNORED = "ignored"  # typing, receipts, inbound presence events: nothing to publish from history


@dataclass(frozen=True, slots=True)
class Backfill:
    """The result of one backfill: ``missed`` oldest first; ``reached_known`` false means a possible gap."""

    missed: list[StructuredMessage]
    reached_known: bool
    pages: int


def message_time(message: StructuredMessage) -> datetime | None:
    """``channel.time`` parsed (aware UTC), or None when absent or unreadable (§9: may be null)."""
    return parse_genesys_time(message.channel.time if message.channel else None)


def classify(message: StructuredMessage) -> EntityKind:
    """Classify a StructuredMessage by direction, type and first event (§5.2, §5.3)."""
    inbound = (message.direction or "").lower() == "inbound"
    if message.type == "Event":
        event = message.events[0] if message.events else {}
        presence = event.get("presence") if isinstance(event, dict) else None
        if (
            not inbound
            and event.get("eventType") == "Presence"
            and isinstance(presence, dict)
            and presence.get("type") == "Disconnect"
        ):
            return EntityKind.DISCONNECT
        return EntityKind.IGNORED
    if message.type not in ("Text", "Structured"):
        return EntityKind.IGNORED  # Receipt and anything new
    return EntityKind.INBOUND_MESSAGE if inbound else EntityKind.OUTBOUND_MESSAGE


async def fetch_missed(
    client: HistoryClient,
    *,
    rest_base: str,
    jwt: str,
    origin: str | None,
    is_known: Callable[[str], bool],
    has_known: bool,
    page_size: int,
    max_pages: int,
) -> Backfill:
    """Page history from page 1 until a known id; return the unknown ones, oldest first.

    ``has_known`` False (nothing published yet) means every entity on the fetched pages is new.
    Raises whatever the client raises (``GenesysUnavailable`` is retryable: the caller reconnects).
    """
    collected: list[StructuredMessage] = []
    reached = not has_known
    pages = 0
    for page_number in range(1, max_pages + 1):
        page = await client.fetch_history(rest_base, jwt, page_number=page_number, page_size=page_size, origin=origin)
        pages += 1
        for entity in page.entities:  # newest first
            if entity.id is not None and is_known(entity.id):
                reached = True
                break
            collected.append(entity)
        if (has_known and reached) or not page.entities or page_number >= page.page_count:
            break
    if has_known and not reached:
        log.warning("backfill_gap", pages=pages, fetched=len(collected))
    collected.reverse()  # oldest first
    indexed = list(enumerate(collected))
    # Stable sort by channel.time; an entity without a time keeps the time of the one before it.
    keyed: list[tuple[datetime | None, int, StructuredMessage]] = []
    last: datetime | None = None
    for index, entity in indexed:
        when = message_time(entity) or last
        last = when
        keyed.append((when, index, entity))
    if all(when is not None for when, _, _ in keyed):
        keyed.sort(key=lambda item: (item[0], item[1]))
    return Backfill(missed=[entity for _, _, entity in keyed], reached_known=reached, pages=pages)
