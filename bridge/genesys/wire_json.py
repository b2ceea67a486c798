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
from typing import Any

__all__ = ["loads"]


def loads(data: str | bytes) -> Any:
    """``data`` decoded as ``json.loads`` decodes it, with every unpaired surrogate in its strings (keys
    included) replaced by U+FFFD.

    Raises:
        ValueError: ``data`` is not JSON (``json.JSONDecodeError``).
        UnicodeDecodeError: ``data`` is bytes in no encoding JSON allows.
        RecursionError: ``data`` is nested too deeply.
    """
    value = json.loads(data)
    # Only an escape can put a surrogate into the decoded text: UTF-8 itself cannot carry one, and the
    # WebSocket refuses such bytes in a text frame. (Bytes in UTF-16 or UTF-32, which JSON allows and
    # Genesys does not send, have a zero byte in their first character: checked the long way.)
    if isinstance(data, str):
        return _repaired(value) if "\\ud" in data or "\\uD" in data else value
    escaped = b"\\ud" in data or b"\\uD" in data or b"\x00" in data[:4]
    return _repaired(value) if escaped else value


def _repaired(value: Any) -> Any:
    """``value`` with its unpaired surrogates replaced; ``value`` itself when it has none."""
    text = json.dumps(value, ensure_ascii=False)  # surrogates written as they are, not escaped
    # Through UTF-16 and back: a pair is one character already, so only unpaired surrogates are left to
    # replace, one U+FFFD each.
    repaired = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value if repaired == text else json.loads(repaired)
