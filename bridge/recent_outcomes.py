"""A session's recently settled command outcomes: the bounded, oldest-first tail that the session record
keeps (``recent_outcomes``), saved before a command is acked, so that a command redelivered to the next
process is answered with its outcome instead of being run again. Pure, no I/O.

Packed in one string of the outcomes' JSON (``bridge.packed_tail``). The JSON of a :class:`SettledOutcome`
starts with its ``command_id`` (its first field), so the outcome of a command is found with one substring
search for ``{"command_id":<its JSON string>`` after an item's start.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from pydantic import GetCoreSchemaHandler, TypeAdapter
from pydantic_core import core_schema, to_json

from bridge.contract.outcomes import SettledOutcome
from bridge.packed_tail import PackedTail

__all__ = ["RECENT_OUTCOMES_KEPT", "RecentOutcomes"]

#: How many settled outcomes a record keeps. Only commands still unacked at a crash are redelivered (the
#: one in flight, plus any whose ack was lost), so a short tail suffices.
RECENT_OUTCOMES_KEPT: Final = 32

_OUTCOMES: Final = TypeAdapter(list[SettledOutcome])


class RecentOutcomes(PackedTail[SettledOutcome]):
    """A session's recent outcomes by ``command_id``, oldest first; :meth:`get` finds one."""

    __slots__ = ()

    def __init__(self, outcomes: Iterable[SettledOutcome] = (), *, size: int = RECENT_OUTCOMES_KEPT) -> None:
        super().__init__(outcomes, size=size)

    def get(self, command_id: str) -> SettledOutcome | None:
        """The outcome kept for ``command_id``, decoded anew, or None."""
        found = self._item_json(command_id)
        return None if found is None else SettledOutcome.model_validate_json(found)

    @classmethod
    def _key(cls, value: SettledOutcome) -> str:
        return value.command_id

    @classmethod
    def _json(cls, value: SettledOutcome) -> str:
        return value.model_dump_json()

    @classmethod
    def _head(cls, key: str) -> str:
        # pydantic-core's encoder, as in the outcome's own JSON (non-ASCII characters as they are).
        return '{"command_id":' + to_json(key).decode()

    @classmethod
    def _decode(cls, array: str) -> list[SettledOutcome]:
        return _OUTCOMES.validate_json(array)

    @classmethod
    def _value_schema(cls, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return handler.generate_schema(SettledOutcome)
