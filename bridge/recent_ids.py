"""A session's recent Genesys message ids: the bounded, oldest-first tail that the session record keeps
(``recent_message_ids``) so that a message is published once, across reconnects and restarts. Pure, no I/O.

An immutable value, packed in one string. A busy session holds 200 ids; kept as 200 strings, a dict for
``in`` and the record's tuple of them, they took about 24 KiB per session, packed they take about 7 KiB
(docs/performance.md, memory per busy session).

The string is the ids' JSON string literals (as :func:`json.dumps` writes them, ASCII only), each after a
comma: ``,"a","b"``. So the journal writes the tail into the record's JSON as it is (:meth:`json_items`),
and ``in`` is one substring search for ``,"<literal>"``. That search can only match a whole id: inside a
literal every ``"`` is escaped, so ``,"`` occurs only where a literal starts; and since the needle is itself
a complete literal, the ``"`` it ends with stands where the matched literal ends too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, Final

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

__all__ = ["RECENT_IDS_KEPT", "RecentIds"]

#: How many ids a session remembers. Backfill stops at the first one it meets, so a few dozen suffice.
RECENT_IDS_KEPT: Final = 200

#: Where a literal starts in the packed string (and nowhere else: see the module's docstring).
_START: Final = ',"'


class RecentIds:
    """Insertion-ordered, bounded, drop-oldest, immutable: :meth:`with_added` returns the next value.

    Built from any iterable of ids, oldest first; an id given twice counts where it was given last. Iterating
    yields the ids oldest first, as new strings (the packed form keeps no string per id).
    """

    __slots__ = ("_count", "_packed", "_size")

    def __init__(self, ids: Iterable[str] = (), *, size: int = RECENT_IDS_KEPT) -> None:
        newest_last = list(dict.fromkeys(reversed(list(ids))))[::-1][-size:] if size > 0 else []
        self._packed = "".join(_literal(message_id) for message_id in newest_last)
        self._count = len(newest_last)
        self._size = size

    def __contains__(self, message_id: object) -> bool:
        return isinstance(message_id, str) and _literal(message_id) in self._packed

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecentIds):
            return NotImplemented
        return self._packed == other._packed

    def __hash__(self) -> int:
        return hash(self._packed)

    def __copy__(self) -> RecentIds:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, Any]) -> RecentIds:
        return self

    def __repr__(self) -> str:
        return f"RecentIds({self._ids()!r})"

    def with_added(self, message_id: str) -> RecentIds:
        """These ids with ``message_id`` as the newest; the oldest is dropped past the bound. An id already
        here moves to the newest end."""
        literal = _literal(message_id)
        packed, count = self._packed, self._count
        if literal in packed:
            packed = packed.replace(literal, "", 1)
            count -= 1
        packed += literal
        count += 1
        while count > self._size:
            packed = packed[packed.index(_START, 1) :]
            count -= 1
        added = RecentIds.__new__(RecentIds)
        added._packed, added._count, added._size = packed, count, self._size
        return added

    def json_items(self) -> str:
        """The ids as the items of a JSON array, oldest first, comma-separated and without the brackets
        (``"a","b"``; empty for no ids). ASCII only."""
        return self._packed[1:]

    def _ids(self) -> list[str]:
        ids: list[str] = json.loads(f"[{self.json_items()}]")
        return ids

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        """In a model: validated from a list (or, in Python, any sequence) of ids, or taken as it is; written
        as a list of ids, oldest first."""
        ids = core_schema.list_schema(core_schema.str_schema())
        from_ids = core_schema.no_info_after_validator_function(cls, ids)
        return core_schema.json_or_python_schema(
            json_schema=from_ids,
            python_schema=core_schema.union_schema([core_schema.is_instance_schema(cls), from_ids]),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda value: value._ids(), return_schema=ids
            ),
        )


def _literal(message_id: str) -> str:
    return "," + json.dumps(message_id)
