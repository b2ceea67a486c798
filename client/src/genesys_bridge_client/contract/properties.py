"""How the contract's ids travel in AMQP properties (``message_id``, ``correlation_id``). Pure.

An AMQP property such as ``correlation_id`` is a short string: at most 255 bytes of UTF-8. The contract
allows longer ids (a ``correlation_id`` of 256 characters, a ``command_id`` of 128, each up to 4 bytes in
UTF-8), which the message body always carries whole. An id a property cannot hold is left out of it, so
the publish still goes out; whoever matches on the property must also be able to match on the body. A
requester matching replies by ``correlation_id`` sends :func:`correlation_key` instead of the command id.
"""

from __future__ import annotations

import hashlib
from typing import Final

__all__ = ["MAX_PROPERTY_BYTES", "correlation_key", "fitting_property"]

#: The longest AMQP short-string property, in bytes of UTF-8.
MAX_PROPERTY_BYTES: Final = 255


def fitting_property(value: str | None) -> str | None:
    """``value`` if an AMQP short-string property can carry it, else None (leave the property out)."""
    return value if value is not None and len(value.encode()) <= MAX_PROPERTY_BYTES else None


def correlation_key(command_id: str) -> str:
    """The ``correlation_id`` a requester sends with ``command_id`` to match its reply by: the id itself when
    a property can carry it, else ``sha256:`` and the hex SHA-256 of its UTF-8 (the bridge copies the
    property onto the outcome, so the same key comes back; the outcome's body has the id whole)."""
    fitting = fitting_property(command_id)
    return fitting if fitting is not None else "sha256:" + hashlib.sha256(command_id.encode()).hexdigest()
