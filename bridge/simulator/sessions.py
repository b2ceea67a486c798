"""Every session of one simulator, indexed for O(1) lookup by token, id, creation order, custom attribute
and first text, with a bounded memory of ended sessions (kept so tests can still read them).
"""

from __future__ import annotations

import secrets
from collections import deque

from bridge.simulator.session import Session

__all__ = ["GenesysSessions"]


class GenesysSessions:
    """Owns the session indexes. The engine creates and ends sessions through it."""

    def __init__(self, *, retain_ended: int) -> None:
        self._retain_ended = retain_ended
        self._by_key: dict[tuple[str, str], Session] = {}  # (deploymentId, token) → current session (§12)
        self._by_token: dict[str, Session] = {}
        self._latest_by_token: dict[str, Session] = {}  # also ended (cleared) sessions, until forgotten
        self._by_id: dict[str, Session] = {}  # every retained session, current or ended
        self._by_index: dict[int, Session] = {}  # insertion order is creation order
        self._by_attr: dict[tuple[str, str], Session] = {}
        self._by_first_text: dict[str, Session] = {}
        self._ended: deque[Session] = deque()
        self._count = 0

    def current(self, deployment_id: str, token: str) -> Session | None:
        """The session a configureSession for this token would resume or replace."""
        return self._by_key.get((deployment_id, token))

    def add(self, deployment_id: str, token: str, **fields: object) -> Session:
        """Create the token's new current session (``fields`` go to :class:`Session`)."""
        index = self._count
        self._count += 1
        session = Session(
            session_id=f"sim-{index}-{secrets.token_hex(4)}",
            index=index,
            deployment_id=deployment_id,
            token=token,
            **fields,  # type: ignore[arg-type]  # the engine passes Session's own keyword fields
        )
        self._by_key[(deployment_id, token)] = session
        self._by_token[token] = session
        self._latest_by_token[token] = session
        self._by_id[session.session_id] = session
        self._by_index[index] = session
        return session

    def ended(self, session: Session, *, keep_current: bool) -> None:
        """Record that ``session`` ended. ``keep_current`` leaves it reachable by token (expired, §4.1)."""
        if not keep_current:
            if self._by_key.get((session.deployment_id, session.token)) is session:
                del self._by_key[(session.deployment_id, session.token)]
            if self._by_token.get(session.token) is session:
                del self._by_token[session.token]
        self._ended.append(session)
        while len(self._ended) > self._retain_ended:
            self._forget(self._ended.popleft())

    def _forget(self, session: Session) -> None:
        self._by_id.pop(session.session_id, None)
        self._by_index.pop(session.index, None)
        for item in session.custom_attributes.items():
            if self._by_attr.get(item) is session:
                del self._by_attr[item]
        if session.first_text is not None and self._by_first_text.get(session.first_text) is session:
            del self._by_first_text[session.first_text]
        if self._by_key.get((session.deployment_id, session.token)) is session:
            del self._by_key[(session.deployment_id, session.token)]
        if self._by_token.get(session.token) is session:
            del self._by_token[session.token]
        if self._latest_by_token.get(session.token) is session:
            del self._latest_by_token[session.token]

    def latest_for_token(self, token: str) -> Session | None:
        """The newest retained session of a token, even one that was cleared."""
        return self._latest_by_token.get(token)

    def index_attributes(self, session: Session, attributes: dict[str, str]) -> None:
        """Merge custom attributes the guest sent and make them searchable."""
        session.custom_attributes.update(attributes)
        for item in attributes.items():
            self._by_attr[item] = session

    def index_first_text(self, session: Session, text: str) -> None:
        if session.first_text is None and text:
            session.first_text = text
            self._by_first_text.setdefault(text, session)

    def all(self) -> list[Session]:
        """Retained sessions in creation order."""
        return list(self._by_index.values())

    def find(
        self,
        *,
        token: str | None = None,
        session_id: str | None = None,
        attribute: tuple[str, str] | None = None,
        first_text: str | None = None,
        index: int | None = None,
        deployment_id: str | None = None,
    ) -> Session | None:
        """The session matching the first criterion given (latest match), or None."""
        if token is not None:
            return self._by_token.get(token) if deployment_id is None else self._by_key.get((deployment_id, token))
        if session_id is not None:
            return self._by_id.get(session_id)
        if attribute is not None:
            return self._by_attr.get(attribute)
        if first_text is not None:
            return self._by_first_text.get(first_text)
        if index is not None:
            return self._by_index.get(index if index >= 0 else self._count + index)
        return None
