"""The requests a Guest API connection sent and has not seen answered, and how answers find them (§6, §10).

Genesys echoes ``tracingId`` on acknowledgements, but real error frames often carry none (§3.2, §6: the
KMP fixtures of 403, 4006, 4007, 4011, 4013 and 429 are all untraced). A traced error goes to the request
with its ``tracingId``. An untraced error goes to the pending request that can *legally* receive that
error class, or to none: :data:`ERROR_OWNERS` is that table, the one place the rule lives.

Typing notices are never pending (§4.3f, §14.6: their echo is optional, so they would stay pending for
ever and soak up untraced errors). The last few written are remembered in a small bounded set instead,
so that an error about one (the 403 of a deployment with typing off) still reaches it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from typing import Final

from bridge.genesys.events import SESSION_ERROR_CODES, PendingRequest, RequestKind

__all__ = [
    "ERROR_OWNERS",
    "RATE_LIMIT_CODES",
    "RECENT_TYPING_LIMIT",
    "TYPING",
    "ErrorClass",
    "Owner",
    "PendingRequests",
    "classify_error",
]

#: ``PendingRequest.event`` of a typing indicator (§4.3f).
TYPING: Final = "Typing"
#: How many written typing notices stay answerable. Typing is throttled to one per 5 s (§8) and is
#: refused at once when refused at all, so a handful covers late and out-of-order answers.
RECENT_TYPING_LIMIT: Final = 4

#: 429 and 4029 (errorCode): Genesys' rate limit, both seen (§5.4, §8).
RATE_LIMIT_CODES: Final = frozenset({429, 4029})
_UPLOAD_CODES: Final = range(4001, 4006)  # file type / size / content / name / name length (§4.6, §6)
_ATTACHMENT_CODES: Final = range(4008, 4011)  # attachment expired / not found / not uploaded (§6, §11.10)


class ErrorClass(enum.Enum):
    """What an error frame is about, as far as finding its request goes (§6)."""

    SESSION = "session"  # 4006, 4007: the session is gone; no request owns it
    TEXT_TOO_LONG = "text_too_long"  # 4011
    ATTRIBUTES_TOO_LARGE = "attributes_too_large"  # 4013
    RATE_LIMITED = "rate_limited"  # 429, 4029 (§8)
    UPLOAD_REFUSED = "upload_refused"  # 4001–4005: onAttachment's file checks (§4.6)
    ATTACHMENT_UNUSABLE = "attachment_unusable"  # 4008–4010: a referenced attachment cannot be used
    CLEAR_REFUSED = "clear_refused"  # 403 "Presence events Conversation Clear are not supported" (§4.3g)
    FEATURE_OFF = "feature_off"  # 403 "Turn on the Feature Toggle or fix the configuration." (§4.3f)
    OTHER = "other"  # anything else: 400, 401, 403, 409, 4020, 5000 ...


class Owner(enum.Enum):
    """Which pending request may own an untraced error (a row of :data:`ERROR_OWNERS` lists these)."""

    CONFIGURE = "configure"  # the configure being answered, only while configuring (§4.1: nothing else is sent)
    LAST_WRITTEN = "last_written"  # the newest request written (a typing notice included), else the newest pending
    TEXT = "text"  # the oldest onMessage that carried the caller's text
    ATTRIBUTES = "attributes"  # the oldest onMessage (message or Join) that carried custom attributes
    UPLOAD = "upload"  # the onAttachment the body names, else the oldest one
    ATTACHMENT_USE = "attachment_use"  # the getAttachment/deleteAttachment/onMessage naming it, else the oldest
    CLEAR = "clear"  # the oldest Presence Clear
    TYPING = "typing"  # the newest typing notice written recently
    MESSAGE = "message"  # the oldest onMessage (message or presence)


#: Error class → who may own it when untraced, tried in order; the first that finds a request wins, and
#: an empty row (or no match) attributes the error to no request.
ERROR_OWNERS: Final[Mapping[ErrorClass, tuple[Owner, ...]]] = {
    # §6: 4006/4007 end the session (KMP: terminal state); failing some bystander request would be a lie.
    ErrorClass.SESSION: (),
    # §4.3: only a message with text can be too long. A button response's text is the agent's option.
    ErrorClass.TEXT_TOO_LONG: (Owner.TEXT,),
    # §4.3: attributes ride on messages and on the autostart Join (KMP reports 4013 on autostart too).
    ErrorClass.ATTRIBUTES_TOO_LARGE: (Owner.ATTRIBUTES,),
    # §8: a rate limiter refuses the frame that went over, the newest one; the per-connection request
    # limit counts every action, so any kind may own it. While configuring it is the configure (§5.4).
    ErrorClass.RATE_LIMITED: (Owner.CONFIGURE, Owner.LAST_WRITTEN),
    ErrorClass.UPLOAD_REFUSED: (Owner.UPLOAD,),
    # §11.10: 4010 answers an onMessage referencing an unfinished upload; 4008/4009 a refresh or delete.
    ErrorClass.ATTACHMENT_UNUSABLE: (Owner.ATTACHMENT_USE,),
    # §4.3g: KMP recognises this 403 by its text; only a Clear can receive it.
    ErrorClass.CLEAR_REFUSED: (Owner.CLEAR,),
    # §4.3f: the typing feature toggle is the one a guest trips by sending; otherwise as any error.
    ErrorClass.FEATURE_OFF: (Owner.CONFIGURE, Owner.TYPING, Owner.MESSAGE),
    ErrorClass.OTHER: (Owner.CONFIGURE, Owner.MESSAGE),
}


def classify_error(code: int, detail: str = "") -> ErrorClass:
    """The class of an error frame with ``code`` and text ``detail`` (§6). Pure; never raises."""
    if code in SESSION_ERROR_CODES:
        return ErrorClass.SESSION
    if code == 4011:
        return ErrorClass.TEXT_TOO_LONG
    if code == 4013:
        return ErrorClass.ATTRIBUTES_TOO_LARGE
    if code in RATE_LIMIT_CODES:
        return ErrorClass.RATE_LIMITED
    if code in _UPLOAD_CODES:
        return ErrorClass.UPLOAD_REFUSED
    if code in _ATTACHMENT_CODES:
        return ErrorClass.ATTACHMENT_UNUSABLE
    if code == 403:
        text = detail.casefold()
        if "conversation clear" in text:
            return ErrorClass.CLEAR_REFUSED
        if "feature toggle" in text:
            return ErrorClass.FEATURE_OFF
    return ErrorClass.OTHER


def _may_own(owner: Owner, request: PendingRequest) -> bool:
    """Whether ``request`` fits the ``owner`` role (the roles that pick the oldest fitting request)."""
    kind = request.kind
    match owner:
        case Owner.CONFIGURE:
            return kind is RequestKind.CONFIGURE
        case Owner.TEXT:
            return kind is RequestKind.MESSAGE and request.has_text
        case Owner.ATTRIBUTES:
            return kind in (RequestKind.MESSAGE, RequestKind.PRESENCE) and request.has_attributes
        case Owner.UPLOAD:
            return request.action == "onAttachment"
        case Owner.ATTACHMENT_USE:
            return request.action in ("getAttachment", "deleteAttachment") or (
                kind is RequestKind.MESSAGE and bool(request.attachment_ids)
            )
        case Owner.CLEAR:
            return kind is RequestKind.PRESENCE and request.event == "Clear"
        case Owner.MESSAGE:
            return kind in (RequestKind.MESSAGE, RequestKind.PRESENCE)
        case Owner.LAST_WRITTEN | Owner.TYPING:  # pragma: no cover - picked by recency, not by fit
            return False


class PendingRequests:
    """Unanswered requests of one connection, oldest first, keyed by ``tracingId``, plus the typing
    notices written recently (never pending, see the module docstring).

    The owner (the protocol) adds every request it writes (:meth:`add`, or :meth:`note_typing` for typing)
    and takes each one out when it is answered, or when its caller gives up (:meth:`forget`).
    """

    __slots__ = ("_by_id", "_last_written", "_typing")

    def __init__(self) -> None:
        # Insertion-ordered: "oldest" and "newest" below are send order.
        self._by_id: dict[str, PendingRequest] = {}
        self._typing: dict[str, None] = {}  # insertion-ordered set, at most RECENT_TYPING_LIMIT ids
        self._last_written: str | None = None

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[PendingRequest]:
        return iter(list(self._by_id.values()))

    @property
    def recent_typing(self) -> tuple[str, ...]:
        """``tracingId``s of typing notices written recently and not answered, oldest first."""
        return tuple(self._typing)

    def add(self, pending: PendingRequest) -> None:
        """Record a request just written; a reused ``tracingId`` moves to the end."""
        self._by_id.pop(pending.tracing_id, None)
        self._by_id[pending.tracing_id] = pending
        self._last_written = pending.tracing_id

    def note_typing(self, tracing_id: str) -> None:
        """Record a typing notice just written. It is not pending (nothing waits for its echo)."""
        self._typing.pop(tracing_id, None)
        self._typing[tracing_id] = None
        while len(self._typing) > RECENT_TYPING_LIMIT:
            del self._typing[next(iter(self._typing))]
        self._last_written = tracing_id

    def clear(self) -> None:
        self._by_id.clear()
        self._typing.clear()
        self._last_written = None

    def get(self, tracing_id: str) -> PendingRequest | None:
        return self._by_id.get(tracing_id)

    def remove(self, request: PendingRequest) -> None:
        """Forget ``request`` (answered, or superseded)."""
        del self._by_id[request.tracing_id]

    def take(self, tracing_id: str | None) -> PendingRequest | None:
        """The request with this ``tracingId``, removed; ``None`` for no or an unknown id."""
        return self._by_id.pop(tracing_id, None) if tracing_id is not None else None

    def forget(self, tracing_id: str) -> PendingRequest | None:
        """Drop the request (or recent typing notice) with this ``tracingId``; return it, or ``None``.

        For a caller that stopped waiting (a timeout, a typing echo): a later answer with this id is then
        attributed to nothing, and an untraced error can no longer be pinned on it.
        """
        if tracing_id in self._typing:
            del self._typing[tracing_id]
            return _typing_request(tracing_id)
        return self._by_id.pop(tracing_id, None)

    def take_oldest(self, *actions: str) -> PendingRequest | None:
        """The oldest pending request of one of the wire ``actions``, removed."""
        for p in self._by_id.values():
            if p.action in actions:
                return self._by_id.pop(p.tracing_id)
        return None

    def take_attachment(self, attachment_id: str | None) -> PendingRequest | None:
        """The oldest pending attachment action about ``attachment_id``, removed."""
        if attachment_id is None:
            return None
        for p in self._by_id.values():
            if p.attachment_id == attachment_id:
                return self._by_id.pop(p.tracing_id)
        return None

    def attribute(
        self,
        tracing_id: str | None,
        *,
        configuring: bool,
        code: int | None = None,
        detail: str = "",
        attachment_id: str | None = None,
    ) -> PendingRequest | None:
        """The request an error answers, removed (§6, §10).

        By ``tracingId`` when the frame has one: a pending request, or a recent typing notice (returned as
        a ``Typing`` request); an id that is not ours is attributed to nothing. Without one, by the
        :data:`ERROR_OWNERS` row of ``classify_error(code, detail)``; ``attachment_id`` is the attachment
        the error body names, if any. ``code=None`` (the old call) is treated as an unclassified error.
        """
        if tracing_id is not None:
            return self.forget(tracing_id)
        error_class = classify_error(code, detail) if code is not None else ErrorClass.OTHER
        return self.take_owner(error_class, configuring=configuring, attachment_id=attachment_id)

    def take_owner(
        self, error_class: ErrorClass, *, configuring: bool, attachment_id: str | None = None
    ) -> PendingRequest | None:
        """The request that may own an untraced error of ``error_class`` (:data:`ERROR_OWNERS`), removed."""
        for owner in ERROR_OWNERS[error_class]:
            found = self._find(owner, configuring=configuring, attachment_id=attachment_id)
            if found is not None:
                return self.forget(found)
        return None

    def _find(self, owner: Owner, *, configuring: bool, attachment_id: str | None) -> str | None:
        """The ``tracingId`` of the request filling ``owner``, or ``None``."""
        match owner:
            case Owner.CONFIGURE if not configuring:
                return None
            case Owner.LAST_WRITTEN:
                last = self._last_written
                if last is not None and (last in self._by_id or last in self._typing):
                    return last
                # The newest frame was answered already: the newest still unanswered is the best guess.
                return next(reversed(self._by_id), None)
            case Owner.TYPING:
                return next(reversed(self._typing), None)
            case Owner.UPLOAD | Owner.ATTACHMENT_USE if attachment_id is not None:
                # The body names the attachment: only a request about that one may own the error.
                fits = (p for p in self._by_id.values() if _may_own(owner, p) and p.names_attachment(attachment_id))
                return next((p.tracing_id for p in fits), None)
        return next((p.tracing_id for p in self._by_id.values() if _may_own(owner, p)), None)


def _typing_request(tracing_id: str) -> PendingRequest:
    """The request a typing notice would be, for events that answer one."""
    return PendingRequest(tracing_id, "onMessage", event=TYPING)
