"""The requests a Guest API connection sent and has not seen answered, and how answers find them (§6).

Genesys echoes ``tracingId`` on most answers, but not always on errors [INF]; :class:`PendingRequests`
keeps requests in send order so the fallbacks (the oldest request of an action, the request for an
attachment id) are well defined.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from bridge.genesys.events import PendingRequest

__all__ = ["CONFIGURE_ACTIONS", "TYPING", "PendingRequests"]

#: Wire actions that configure a session (§4.1).
CONFIGURE_ACTIONS: Final = frozenset({"configureSession", "configureAuthenticatedSession"})
#: ``PendingRequest.event`` of a typing indicator (never acknowledged, §14.6).
TYPING: Final = "Typing"


class PendingRequests:
    """Unanswered requests of one connection, oldest first, keyed by ``tracingId``.

    The owner (the protocol) adds every request it sends and takes each one out when it is answered.
    """

    __slots__ = ("_by_id",)

    def __init__(self) -> None:
        # Insertion-ordered: the oldest pending onMessage is the fallback owner of untraced errors.
        self._by_id: dict[str, PendingRequest] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[PendingRequest]:
        return iter(list(self._by_id.values()))

    def add(self, pending: PendingRequest) -> None:
        """Record a request just sent; a reused ``tracingId`` moves to the end."""
        self._by_id.pop(pending.tracing_id, None)
        self._by_id[pending.tracing_id] = pending

    def clear(self) -> None:
        self._by_id.clear()

    def get(self, tracing_id: str) -> PendingRequest | None:
        return self._by_id.get(tracing_id)

    def remove(self, request: PendingRequest) -> None:
        """Forget ``request`` (answered, or superseded)."""
        del self._by_id[request.tracing_id]

    def take(self, tracing_id: str | None) -> PendingRequest | None:
        """The request with this ``tracingId``, removed; ``None`` for no or an unknown id."""
        return self._by_id.pop(tracing_id, None) if tracing_id is not None else None

    def take_oldest(self, action: str) -> PendingRequest | None:
        """The oldest pending request of wire ``action``, removed."""
        for p in self._by_id.values():
            if p.action == action:
                return self._by_id.pop(p.tracing_id)
        return None

    def take_attachment(self, attachment_id: str | None) -> PendingRequest | None:
        """The oldest pending request about ``attachment_id``, removed."""
        if attachment_id is None:
            return None
        for p in self._by_id.values():
            if p.attachment_id == attachment_id:
                return self._by_id.pop(p.tracing_id)
        return None

    def attribute(self, tracing_id: str | None, *, configuring: bool) -> PendingRequest | None:
        """The request an error answers: by ``tracingId``; without one, the configure being answered
        (while ``configuring``) or the oldest pending ``onMessage`` (Genesys does not always echo the
        id on errors [INF]). An unknown ``tracingId`` is attributed to nothing."""
        if tracing_id is not None:
            return self._by_id.pop(tracing_id, None)
        if configuring:
            for action in CONFIGURE_ACTIONS:
                found = self.take_oldest(action)
                if found is not None:
                    return found
        return self.take_oldest("onMessage")
