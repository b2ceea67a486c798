"""genesys-bridge's client: the message contract (``genesys_bridge_client.contract``) and ``BridgeClient``."""

from genesys_bridge_client.client import (
    DEFAULT_COMMAND_EXCHANGE,
    DEFAULT_EVENT_EXCHANGE,
    BridgeClient,
    BridgeNotDeclared,
    EventStream,
    OutcomeTimeout,
)
from genesys_bridge_client.contract import (
    AttachmentRefresh,
    Command,
    CommandOutcome,
    Event,
    MessageReceived,
    MessageSend,
    PresenceReceived,
    SessionEnd,
    SessionEnded,
    SessionResumed,
    SessionStart,
    SessionStarted,
    SessionStateChanged,
    TypingReceived,
    TypingSend,
)
from genesys_bridge_client.contract.commands import AuthCodeGrant, AuthImplicitGrant, JourneyContext, SessionLogout
from genesys_bridge_client.contract.content import AttachmentUpload, ButtonResponse

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_COMMAND_EXCHANGE",
    "DEFAULT_EVENT_EXCHANGE",
    "AttachmentRefresh",
    "AttachmentUpload",
    "AuthCodeGrant",
    "AuthImplicitGrant",
    "BridgeClient",
    "BridgeNotDeclared",
    "ButtonResponse",
    "Command",
    "CommandOutcome",
    "Event",
    "EventStream",
    "JourneyContext",
    "MessageReceived",
    "MessageSend",
    "OutcomeTimeout",
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
