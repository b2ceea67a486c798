"""Session states and the one transition table that drives them. Pure: no I/O, no clock.

The vocabulary follows mautrix bridge states (connecting, connected, transient disconnect, ...):

- ``starting``: the actor exists; nothing was sent to Genesys yet.
- ``connecting``: first socket open plus ``configureSession`` (protocol reference §4.1), waiting for
  ``SessionResponse``.
- ``active``: configured; messages, typing and echo flow under the rules of the road (§8).
- ``reconnecting``: the socket dropped (or the first connect failed); backing off, reconnecting with the
  same token and ``startNew:false``, then backfilling history (§4.1, §9). Commands wait.
- ``ending``: a ``session.end`` is in progress (Presence ``Clear`` or close-and-forget, §4.3 g).
- ``ended``: over for good, with a reason (guest ended, agent disconnect, expiry, clear, ...). Terminal.
- ``failed``: the bridge gave up on the session (reconnect budget spent, or a bug). Terminal.
- ``suspended``: the bridge shut down; the socket was closed *without* ending the Genesys session
  (§4.9), so a later process resumes it. Terminal for this process only.

:func:`transition` is the only way to move; an illegal move raises :class:`bridge.errors.InvalidTransition`
naming the state and the trigger. :func:`render_mermaid` draws ``docs/sessions.md``'s diagram from the table.
"""

from __future__ import annotations

import enum
from types import MappingProxyType

from bridge.errors import InvalidTransition

__all__ = ["TERMINAL_STATES", "TRANSITIONS", "SessionState", "SessionTrigger", "render_mermaid", "transition"]


class SessionState(enum.Enum):
    """Where a session stands, as the bridge sees it. The value is what events and records carry."""

    STARTING = "starting"
    CONNECTING = "connecting"
    ACTIVE = "active"
    RECONNECTING = "reconnecting"
    ENDING = "ending"
    ENDED = "ended"
    FAILED = "failed"
    SUSPENDED = "suspended"


class SessionTrigger(enum.Enum):
    """What happened to move a session."""

    CONNECT = "connect"  # the actor opens its first socket
    CONFIGURED = "configured"  # SessionResponse connected:true (first time or after a reconnect)
    SOCKET_LOST = "socket_lost"  # the socket closed or could not be opened; retry with backoff
    END_REQUESTED = "end_requested"  # a session.end command started
    END_DONE = "end_done"  # the guest-side end finished (cleared, or closed and forgotten)
    GONE = "gone"  # Genesys ended it: disconnect, read-only, expiry, clear, closed, rejected, lost
    FAIL = "fail"  # the bridge gives up (reconnect budget spent, or a bug)
    SHUTDOWN = "shutdown"  # the bridge stops; the Genesys session stays alive for a later resume


S = SessionState
T = SessionTrigger

#: The whole state machine. Anything not listed is illegal.
TRANSITIONS: MappingProxyType[tuple[SessionState, SessionTrigger], SessionState] = MappingProxyType(
    {
        (S.STARTING, T.CONNECT): S.CONNECTING,
        (S.STARTING, T.FAIL): S.FAILED,
        (S.STARTING, T.SHUTDOWN): S.SUSPENDED,
        (S.CONNECTING, T.CONFIGURED): S.ACTIVE,
        (S.CONNECTING, T.SOCKET_LOST): S.RECONNECTING,
        (S.CONNECTING, T.GONE): S.ENDED,
        (S.CONNECTING, T.FAIL): S.FAILED,
        (S.CONNECTING, T.SHUTDOWN): S.SUSPENDED,
        (S.ACTIVE, T.SOCKET_LOST): S.RECONNECTING,
        (S.ACTIVE, T.END_REQUESTED): S.ENDING,
        (S.ACTIVE, T.GONE): S.ENDED,
        (S.ACTIVE, T.FAIL): S.FAILED,
        (S.ACTIVE, T.SHUTDOWN): S.SUSPENDED,
        (S.RECONNECTING, T.CONFIGURED): S.ACTIVE,
        (S.RECONNECTING, T.GONE): S.ENDED,
        (S.RECONNECTING, T.FAIL): S.FAILED,
        (S.RECONNECTING, T.SHUTDOWN): S.SUSPENDED,
        (S.ENDING, T.END_DONE): S.ENDED,
        (S.ENDING, T.GONE): S.ENDED,
        (S.ENDING, T.FAIL): S.FAILED,
        (S.ENDING, T.SHUTDOWN): S.SUSPENDED,
    }
)

#: States an actor never leaves.
TERMINAL_STATES: frozenset[SessionState] = frozenset({S.ENDED, S.FAILED, S.SUSPENDED})


def transition(state: SessionState, trigger: SessionTrigger) -> SessionState:
    """Return the state ``trigger`` leads to from ``state``.

    Raises:
        InvalidTransition: the table has no such move (a bug in the caller), naming state and trigger.
    """
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        raise InvalidTransition(state.value, trigger.value) from None


def render_mermaid() -> str:
    """The state diagram as a Mermaid ``stateDiagram-v2`` block, generated from :data:`TRANSITIONS`."""
    lines = ["```mermaid", "stateDiagram-v2", f"    [*] --> {S.STARTING.value}"]
    lines.extend(f"    {src.value} --> {dst.value}: {trig.value}" for (src, trig), dst in TRANSITIONS.items())
    lines.extend(f"    {state.value} --> [*]" for state in SessionState if state in TERMINAL_STATES)
    lines.append("```")
    return "\n".join(lines)
