"""The message contract v1: commands in, events out. pydantic models are the single source of truth."""

from genesys_bridge_client.contract.commands import (
    COMMAND_TYPES,
    AttachmentRefresh,
    Command,
    MessageSend,
    SessionEnd,
    SessionLogout,
    SessionStart,
    TypingSend,
)
from genesys_bridge_client.contract.common import (
    MAX_ATTRIBUTE_BYTES,
    MAX_SESSION_ID_CHARS,
    MAX_TEXT_BYTES,
    SCHEMA_VERSION,
)
from genesys_bridge_client.contract.events import (
    EVENT_TYPES,
    CommandOutcome,
    Event,
    MessageReceived,
    MessengerFeatures,
    PresenceReceived,
    SessionEnded,
    SessionResumed,
    SessionStarted,
    SessionStateChanged,
    TypingReceived,
)

__all__ = [
    "COMMAND_TYPES",
    "EVENT_TYPES",
    "MAX_ATTRIBUTE_BYTES",
    "MAX_SESSION_ID_CHARS",
    "MAX_TEXT_BYTES",
    "SCHEMA_VERSION",
    "AttachmentRefresh",
    "Command",
    "CommandOutcome",
    "Event",
    "MessageReceived",
    "MessageSend",
    "MessengerFeatures",
    "PresenceReceived",
    "SessionEnd",
    "SessionEnded",
    "SessionLogout",
    "SessionResumed",
    "SessionStart",
    "SessionStarted",
    "SessionStateChanged",
    "TypingReceived",
    "TypingSend",
]
