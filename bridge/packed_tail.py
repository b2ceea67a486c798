"""A bounded, oldest-first tail of JSON values, packed in one immutable string: the form of the session
record's histories (``bridge.recent_ids``, ``bridge.recent_outcomes``). Pure, no I/O.

A busy session's record holds 200 recent Genesys ids and 32 settled outcomes, and the journal writes the
record for every command. As Python objects (a string per id, a model per outcome, a dict and tuples
around them) they took about 35 KiB per busy session, and were encoded to JSON again at every save
(docs/performance.md, memory per busy session). Packed, a tail is one string: its values' compact JSON,
each after a comma and a newline (``,\\n"a",\\n"b"``). The journal writes it into the record's JSON as it
is (:meth:`PackedTail.json_items`; JSON allows the newline between items).

A value is found by its key with one substring search: the comma and newline, then the value's JSON up to
the end of its key's JSON string (:meth:`PackedTail._head`). That matches the item of that key and no
other. Compact JSON never holds a raw newline (a string escapes it), so the newline stands only where an
item starts; from there the needle and the item read alike, and a JSON string ends at the same place in
both, so the key's string matches whole. (A comma alone would not do: ``,"`` also ends an id that ends
with a comma.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, Final, Generic, Self, TypeVar

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

__all__ = ["PackedTail"]

V = TypeVar("V")

#: Where an item starts, and nowhere else in the packed string (see the module's docstring).
_START: Final = ",\n"


class PackedTail(Generic[V]):
    """Insertion-ordered, bounded, drop-oldest, immutable: :meth:`with_added` returns the next value.

    Built from any iterable of values, oldest first; a key given twice counts where it was given last.
    Iterating decodes the values, oldest first (the packed form keeps no object per value). A subclass
    says how a value is keyed, written and read back, and declares ``__slots__ = ()``.
    """

    __slots__ = ("_count", "_packed", "_size")

    def __init__(self, values: Iterable[V] = (), *, size: int) -> None:
        newest: dict[str, V] = {}
        for value in values:
            key = self._key(value)
            newest.pop(key, None)  # counted where it was given last
            newest[key] = value
        kept = list(newest.values())[-size:] if size > 0 else []
        self._packed = "".join(self._item(value) for value in kept)
        self._count = len(kept)
        self._size = size

    # What a subclass defines.

    @classmethod
    def _key(cls, value: V) -> str:
        raise NotImplementedError

    @classmethod
    def _json(cls, value: V) -> str:
        """The value's compact JSON, as pydantic-core writes it (it reads the record back).

        Raises:
            ValueError: JSON cannot hold the value (a lone surrogate in a string).
        """
        raise NotImplementedError

    @classmethod
    def _head(cls, key: str) -> str:
        """How the JSON of the value keyed ``key`` starts, up to and including the end of the key's string."""
        raise NotImplementedError

    @classmethod
    def _decode(cls, array: str) -> list[V]:
        """The values of ``array``, a JSON array of items."""
        raise NotImplementedError

    @classmethod
    def _value_schema(cls, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        raise NotImplementedError

    # The tail.

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._find(key) >= 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[V]:
        return iter(self._decode(f"[{self.json_items()}]"))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, PackedTail)
        return (self._packed, self._size) == (other._packed, other._size)

    def __hash__(self) -> int:
        return hash((self._packed, self._size))

    def __copy__(self) -> Self:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)!r})"

    @property
    def full(self) -> bool:
        """Whether the tail is at its bound: a value may have been dropped, and a new key will drop the oldest."""
        return self._count >= self._size

    def with_added(self, value: V) -> Self:
        """This tail with ``value`` as the newest; the oldest is dropped past the bound. A value whose key
        is already here replaces it, at the newest end.

        Raises:
            ValueError: JSON cannot hold the value (a lone surrogate in a string); this tail is unchanged.
        """
        item = self._item(value)
        packed, count = self._packed, self._count
        start = packed.find(self._needle(self._key(value)))
        if start >= 0:
            packed = packed[:start] + packed[_end_of(packed, start) :]
            count -= 1
        packed += item
        count += 1
        while count > self._size:
            packed = packed[_end_of(packed, 0) :]
            count -= 1
        added = object.__new__(type(self))
        added._packed, added._count, added._size = packed, count, self._size
        return added

    def json_items(self) -> str:
        """The values as the items of a JSON array, oldest first, comma-separated and without the brackets
        (empty for none)."""
        return self._packed[1:]

    def _item_json(self, key: str) -> str | None:
        """The JSON of the value keyed ``key``, or None."""
        start = self._find(key)
        return None if start < 0 else self._packed[start + len(_START) : _end_of(self._packed, start)]

    def _find(self, key: str) -> int:
        """Where the item of ``key`` starts, or -1."""
        try:
            return self._packed.find(self._needle(key))
        except ValueError:  # a key JSON cannot hold (a lone surrogate) was never added
            return -1

    @classmethod
    def _item(cls, value: V) -> str:
        return _START + cls._json(value)

    @classmethod
    def _needle(cls, key: str) -> str:
        return _START + cls._head(key)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        """In a model: validated from a list (or, in Python, any sequence) of values, or taken as it is;
        written as a list, oldest first."""
        from_values = core_schema.no_info_after_validator_function(
            cls, core_schema.list_schema(cls._value_schema(handler))
        )
        return core_schema.json_or_python_schema(
            json_schema=from_values,
            python_schema=core_schema.union_schema([core_schema.is_instance_schema(cls), from_values]),
            serialization=core_schema.plain_serializer_function_ser_schema(
                _as_json_values, return_schema=core_schema.list_schema()
            ),
        )


def _end_of(packed: str, start: int) -> int:
    """Where the item starting at ``start`` ends: where the next one starts, or the end."""
    end = packed.find(_START, start + 1)
    return len(packed) if end < 0 else end


def _as_json_values(tail: PackedTail[Any]) -> list[Any]:
    values: list[Any] = json.loads(f"[{tail.json_items()}]")
    return values
