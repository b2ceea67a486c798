"""JSON as Genesys sends it, decoded into values the bridge can always write out again. Pure, no I/O.

JSON may write any UTF-16 code unit as a ``\\uXXXX`` escape, an unpaired surrogate included: text cut in
the middle of an emoji by a system that counts UTF-16 units comes out that way (protocol reference §3.2).
Python's decoder keeps such a surrogate as it is, and a string holding one can be neither encoded as UTF-8
nor written as JSON by pydantic: one in an agent's text or a message id would fail the event's publish or
the session record's save, and end the session. :func:`loads` replaces each unpaired surrogate with
U+FFFD, the replacement character, as a UTF-8 decoder does with bytes it cannot read. A surrogate pair
written as two escapes is one character after decoding, and is kept.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

__all__ = ["loads"]

_ESCAPE: Final = re.compile(r"\\u[dD]")
_ESCAPE_BYTES: Final = re.compile(rb"\\u[dD]")
_SURROGATE_UTF8: Final = re.compile(rb"\xed[\xa0-\xbf]")


def loads(data: str | bytes) -> Any:
    """``data`` decoded as ``json.loads`` decodes it, with every unpaired surrogate in its strings (keys
    included) replaced by U+FFFD.

    Two strings that differ only in their unpaired surrogates come out equal (two such ids are then one
    id, and two such keys of one object one key).

    Raises:
        ValueError: ``data`` is not JSON (``json.JSONDecodeError``), or holds a number ``json.loads``
            refuses (an integer of more than 4,300 digits).
        UnicodeDecodeError: ``data`` is bytes in no encoding JSON allows.
        RecursionError: ``data`` is nested too deeply.
    """
    value = json.loads(data)
    suspect = _suspect_text(data) if isinstance(data, str) else _suspect_bytes(data)
    return _repaired(value) if suspect else value


# The checks run on every frame, so they avoid what scans slowly: a regular expression with an alternation,
# or one that starts with a range of characters, took longer than ``json.loads`` over the same frame. The one
# range left runs only on bytes holding its first byte (REST bodies; Hangul text has it too).


def _suspect_text(data: str) -> bool:
    """Whether ``data`` may hold a surrogate: as an escape, or (text that did not come from a WebSocket,
    which checks its frames are UTF-8) as it is."""
    if _ESCAPE.search(data) is not None:
        return True
    if data.isascii():
        return False
    try:
        data.encode()
    except UnicodeEncodeError:
        return True
    return False


def _suspect_bytes(data: bytes) -> bool:
    """Whether ``data`` may hold a surrogate: as an escape, encoded as if it were a character (``json.loads``
    lets ``\\xed\\xa0\\xbd`` through as U+D83D), or in UTF-16 or UTF-32, which JSON allows and Genesys
    does not send (a zero byte in their first character)."""
    return (
        _ESCAPE_BYTES.search(data) is not None
        or (b"\xed" in data and _SURROGATE_UTF8.search(data) is not None)
        or b"\x00" in data[:4]
    )


def _repaired(value: Any) -> Any:
    """``value`` with its unpaired surrogates replaced; ``value`` itself when it has none."""
    text = json.dumps(value, ensure_ascii=False)  # surrogates written as they are, not escaped
    # Through UTF-16 and back: a pair is one character already, so only unpaired surrogates are left to
    # replace, one U+FFFD each.
    repaired = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value if repaired == text else json.loads(repaired)
