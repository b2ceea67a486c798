"""One exception tree for the whole bridge, and the one place that decides "retry or give up".

::

    BridgeError
    ├── ConfigError                  bad settings; the process exits with EXIT_CONFIG
    ├── ContractError                a command is malformed or breaks a limit; dead-letter, never retry
    │   └── CommandRejected          carries a machine-readable reason code
    ├── InvalidTransition            a session state machine was driven illegally (a bug)
    ├── GenesysError
    │   ├── GenesysProtocolError     the peer sent something we cannot make sense of
    │   ├── GenesysUnavailable       connect failed or the socket dropped: retry with backoff
    │   ├── GenesysRateLimited       429/4029: retry after ``retry_after_s``
    │   ├── GenesysRejected          an error frame with a Genesys code: final for that request
    │   │   └── GenesysAuthFailed    an authenticated session cannot be (re)authenticated: final
    │   └── SessionGone              expired, cleared, closed by Genesys: final for the session
    ├── BrokerError
    │   ├── BrokerUnavailable        connection or channel lost: retry with backoff
    │   ├── PublishTimeout           no confirm in time: retry (events are idempotent by id)
    │   └── PublishReturned          unroutable (mandatory): final, reported
    └── StoreError                   the session journal cannot be read or written
        └── StateKeyError            missing or wrong encryption key: a startup error

Callers classify with :func:`is_retryable`; nobody else decides.
"""

from __future__ import annotations

__all__ = [
    "EXIT_CONFIG",
    "EXIT_OK",
    "EXIT_STARTUP",
    "BridgeError",
    "BrokerError",
    "BrokerUnavailable",
    "CommandRejected",
    "ConfigError",
    "ContractError",
    "GenesysAuthFailed",
    "GenesysError",
    "GenesysProtocolError",
    "GenesysRateLimited",
    "GenesysRejected",
    "GenesysUnavailable",
    "InvalidTransition",
    "PublishReturned",
    "PublishTimeout",
    "SessionGone",
    "StateKeyError",
    "StoreError",
    "is_retryable",
]

#: Process exit codes, documented in the README.
EXIT_OK = 0
EXIT_STARTUP = 1  # a dependency could not be reached or declared at start
EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h: a setting is invalid


class BridgeError(Exception):
    """Root of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """A setting is missing or invalid."""


class ContractError(BridgeError):
    """A command breaks the message contract. Never retried."""


class CommandRejected(ContractError):
    """A command was refused, with a reason code from the contract's closed vocabulary."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class InvalidTransition(BridgeError):
    """A state machine was asked for a transition its table does not allow."""

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"illegal event {event!r} in state {state!r}")
        self.state = state
        self.event = event


class GenesysError(BridgeError):
    """Anything that went wrong on the Genesys side."""


class GenesysProtocolError(GenesysError):
    """The peer broke the protocol, or we were asked to break it (e.g. send before configure)."""


class GenesysUnavailable(GenesysError):
    """Connecting failed or the socket dropped. Retryable.

    When a WebSocket closed, ``close_code``/``close_reason`` carry what the server sent (``1006`` and
    ``""`` when the connection dropped without a close frame); otherwise they are ``None``.
    """

    def __init__(self, detail: str = "", *, close_code: int | None = None, close_reason: str | None = None) -> None:
        super().__init__(detail)
        self.close_code = close_code
        self.close_reason = close_reason


class GenesysRateLimited(GenesysError):
    """Genesys answered 429/4029 (protocol reference §5.4, §8). Retry after ``retry_after_s``."""

    def __init__(self, retry_after_s: float, detail: str = "") -> None:
        super().__init__(f"rate limited, retry after {retry_after_s}s {detail}".rstrip())
        self.retry_after_s = retry_after_s


class GenesysRejected(GenesysError):
    """An error frame with a Genesys code (protocol reference §6). Final for that request."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"genesys error {code}: {detail}")
        self.code = code
        self.detail = detail


class GenesysAuthFailed(GenesysRejected):
    """An authenticated session could not be (re)authenticated: the code exchange or the token refresh was
    refused, or Genesys refused the session's JWT (§4.2, §6). ``code`` is the HTTP status or Genesys code."""


class SessionGone(GenesysError):
    """The Genesys session cannot be used any more (expired, cleared, closed elsewhere)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"session gone ({reason}) {detail}".rstrip())
        self.reason = reason


class BrokerError(BridgeError):
    """Anything that went wrong talking to RabbitMQ."""


class BrokerUnavailable(BrokerError):
    """The broker connection or channel is gone. Retryable."""


class PublishTimeout(BrokerError):
    """A publish was not confirmed in time. Retryable: events carry a stable ``event_id``."""


class PublishReturned(BrokerError):
    """A mandatory publish was returned as unroutable. Final."""


class StoreError(BridgeError):
    """The session journal cannot be read or written."""


class StateKeyError(StoreError):
    """The state encryption key is missing or does not open the journal."""


_RETRYABLE: tuple[type[BaseException], ...] = (
    GenesysUnavailable,
    GenesysRateLimited,
    BrokerUnavailable,
    PublishTimeout,
    ConnectionError,
    TimeoutError,
    OSError,
)


def is_retryable(exc: BaseException) -> bool:
    """Decide, in one place, whether an operation that raised ``exc`` should be tried again.

    Contract errors, rejections by Genesys, illegal transitions and gone sessions are final;
    transport-level trouble (sockets, broker, timeouts, rate limits) is retried with backoff.
    """
    if isinstance(exc, (ContractError, GenesysRejected, SessionGone, InvalidTransition, PublishReturned)):
        return False
    if isinstance(exc, StoreError):
        return False
    return isinstance(exc, _RETRYABLE)
