"""A session's recent Genesys message ids: the bounded, oldest-first tail that the session record keeps
(``recent_message_ids``) so that a message is published once, across reconnects and restarts. Pure, no I/O.

Packed in one string of the ids' JSON strings (``bridge.packed_tail``); ``in`` is one substring search.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Final

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema, to_json

from bridge.packed_tail import PackedTail

__all__ = ["RECENT_IDS_KEPT", "RecentIds"]

#: How many ids a session remembers. Backfill stops at the first one it meets, so a few dozen suffice.
RECENT_IDS_KEPT: Final = 200


class RecentIds(PackedTail[str]):
    """A session's recent Genesys ids, oldest first; ``in`` asks whether an id is among them."""

    __slots__ = ()

    def __init__(self, ids: Iterable[str] = (), *, size: int = RECENT_IDS_KEPT) -> None:
        super().__init__(ids, size=size)

    @classmethod
    def _key(cls, value: str) -> str:
        return value

    @classmethod
    def _json(cls, value: str) -> str:
        return to_json(value).decode()

    @classmethod
    def _head(cls, key: str) -> str:
        return cls._json(key)

    @classmethod
    def _decode(cls, array: str) -> list[str]:
        ids: list[str] = json.loads(array)
        return ids

    @classmethod
    def _value_schema(cls, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.str_schema()
