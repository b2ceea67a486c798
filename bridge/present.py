"""Readable one-line renderings of events, for ``genesys-bridge tail`` and ``make demo``. Pure."""

from __future__ import annotations

from typing import assert_never

from genesys_bridge_client.contract.content import (
    AttachmentPart,
    ButtonResponsePart,
    CardPart,
    CarouselPart,
    ContentPart,
    DatePickerPart,
    QuickReplyPart,
    UnknownPart,
)
from genesys_bridge_client.contract.events import (
    CommandOutcome,
    Event,
    MessageReceived,
    PresenceReceived,
    SessionEnded,
    SessionResumed,
    SessionStarted,
    SessionStateChanged,
    TypingReceived,
)

__all__ = ["describe_event", "describe_part"]


def describe_part(part: ContentPart) -> str:
    """One short line for a rich content part."""
    match part:
        case QuickReplyPart(text=text, payload=payload):
            return f"[quick reply] {text!r} -> {payload}"
        case CardPart(title=title, actions=actions):
            buttons = ", ".join(a.text for a in actions)
            return f"[card] {title}" + (f" (buttons: {buttons})" if buttons else "")
        case CarouselPart(cards=cards):
            return "[carousel] " + " | ".join(c.title for c in cards)
        case AttachmentPart(file_name=name, mime_type=mime, url=url):
            return f"[attachment] {name or '?'} ({mime or 'unknown type'}) {url or ''}".rstrip()
        case DatePickerPart(title=title, available_times=slots):
            return f"[date picker] {title or ''} {len(slots)} slots".replace("  ", " ")
        case ButtonResponsePart(type=kind, text=text):
            return f"[chose {kind}] {text!r}"
        case UnknownPart(content_type=content_type):
            return f"[{content_type}] (not modelled; see raw)"
        case _:
            assert_never(part)


def describe_event(event: Event) -> str:
    """A one-line, human-readable summary of an event (the JSON stays the contract)."""
    head = f"{event.session_id or '-':<14} #{event.seq:<3} {event.type:<22}"
    match event:
        case SessionStarted(new_session=new, deployment_id=dep):
            return f"{head} {'new' if new else 'adopted'} Genesys session on deployment {dep}"
        case SessionResumed(cause=cause, missed_messages=missed):
            return f"{head} after {cause}, {missed} missed message(s) follow"
        case SessionEnded(reason=reason, detail=detail):
            return f"{head} reason={reason}" + (f" ({detail})" if detail else "")
        case SessionStateChanged(old=old, new=new):
            return f"{head} {old} -> {new}"
        case PresenceReceived(kind=kind, read_only=read_only, sender=sender):
            who = sender.nickname if sender and sender.nickname else (sender.kind if sender else "agent")
            return f"{head} {who} {'joined' if kind == 'join' else 'left'}" + (" (read-only)" if read_only else "")
        case TypingReceived(sender=sender):
            who = sender.nickname if sender and sender.nickname else (sender.kind if sender else "agent")
            return f"{head} {who} is typing..."
        case MessageReceived(sender=sender, text=text, parts=parts, direction=direction, backfilled=backfilled):
            who = "guest" if direction == "inbound" else (sender.nickname or sender.kind if sender else "genesys")
            lines = [f"{head} {who}: {text!r}" + (" (backfilled)" if backfilled else "")]
            lines += [f"{'':>44}{describe_part(p)}" for p in parts]
            return "\n".join(lines)
        case CommandOutcome(command_type=ctype, status=status, reason=reason, detail=detail):
            extra = f" genesys_id={event.genesys_message_id}" if event.genesys_message_id else ""
            tail = f" ({detail})" if detail and status != "delivered" else ""
            return f"{head} {ctype or '?'} {status}/{reason}{extra}{tail}"
        case _:
            assert_never(event)
