"""What the agent side sends (§5.2, §5.3): Outbound messages and events, and the agent leaving.

The scripted agent (:mod:`bridge.simulator.messaging`) and the control API (:class:`Simulator`) both go
through these functions, so a message is stamped, kept in history and fanned out the same way whoever
speaks. The agent leaving follows the deployment's conversation-disconnect settings, and its last
message may be overtaken by the Disconnect (knob ``disconnect_overtakes_last_message``, §3.2, §10).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.simulator.wire import envelope, iso_now, new_message_id, new_uuid

if TYPE_CHECKING:
    from bridge.simulator.config import DisconnectOvertake
    from bridge.simulator.engine import Engine
    from bridge.simulator.session import Session

__all__ = ["disconnect", "is_typing", "say", "say_and_disconnect"]


def is_typing(body: dict[str, Any]) -> bool:
    """Whether a message body is a Typing event (kept out of history, §9)."""
    events = body.get("events") or []
    return body.get("type") == "Event" and any(isinstance(e, dict) and e.get("eventType") == "Typing" for e in events)


def say(
    engine: Engine,
    session: Session,
    body: dict[str, Any],
    *,
    nickname: str | None = None,
    originating_entity: str | None = None,
    image: str | None = None,
    deliver: bool = True,
) -> str:
    """Stamp an Outbound message, keep it in history (unless typing) and, if ``deliver``, send it to every
    connection of the session. Returns its message id. The session must be active."""
    full = _record(engine, session, body, nickname=nickname, originating_entity=originating_entity, image=image)
    if deliver:
        _deliver(engine, session, full)
    return str(full["id"])


def disconnect(engine: Engine, session: Session, *, read_only: bool) -> str | None:
    """The agent/bot leaves: the conversation ends (§5.3). Returns the Presence Disconnect's id.

    With ``disconnect_enabled`` off (a new deployment's default, §11.12) nothing reaches the guest, the
    session stays writable and None is returned. Otherwise every connection gets a Presence Disconnect;
    ``read_only`` (type ReadOnly) adds ``metadata.readOnly:"true"`` and makes later messages fail with
    409, while type Send leaves the session writable. Either way the guest's next message starts a new
    conversation, and the agent's pending scripted replies are cancelled.
    """
    message_id: str | None = None
    if engine.config.disconnect_enabled:
        body: dict[str, Any] = {
            "type": "Event",
            "events": [{"eventType": "Presence", "presence": {"type": "Disconnect"}}],
        }
        if read_only:
            body["metadata"] = {"readOnly": "true"}
        message_id = say(engine, session, body)
        session.read_only = session.read_only or read_only
    session.conversation_id = None
    for handle in session.timers:
        handle.cancel()
    session.timers.clear()
    return message_id


def say_and_disconnect(
    engine: Engine,
    session: Session,
    body: dict[str, Any],
    *,
    read_only: bool,
    overtake: DisconnectOvertake,
    nickname: str | None = None,
    originating_entity: str | None = None,
) -> tuple[str, str | None]:
    """The agent's last message, then :func:`disconnect`. Returns (message id, Disconnect id or None).

    The message is in history in every case. ``overtake`` says whether its frame reaches the socket
    before the Disconnect ("off"), after it ("late") or never ("lost"). Without a Disconnect frame
    (``disconnect_enabled`` off) nothing can overtake it, and it is delivered normally.
    """
    full = _record(engine, session, body, nickname=nickname, originating_entity=originating_entity, image=None)
    if overtake == "off" or not engine.config.disconnect_enabled:
        _deliver(engine, session, full)
        return str(full["id"]), disconnect(engine, session, read_only=read_only)
    disconnect_id = disconnect(engine, session, read_only=read_only)
    if overtake == "late":
        _deliver(engine, session, full)
    return str(full["id"]), disconnect_id


def _record(
    engine: Engine,
    session: Session,
    body: dict[str, Any],
    *,
    nickname: str | None,
    originating_entity: str | None,
    image: str | None,
) -> dict[str, Any]:
    """Stamp an Outbound body (id, ``channel.time``, sender) and keep it in history unless typing (§9)."""
    cfg = engine.config
    if session.conversation_id is None:
        session.conversation_id = new_uuid()
    sender: dict[str, Any] = {"nickname": nickname or cfg.agent_nickname}
    if image or cfg.agent_image:
        sender["image"] = image or cfg.agent_image
    full: dict[str, Any] = {
        "id": new_message_id(),
        **body,
        "direction": "Outbound",
        "channel": {"time": iso_now(), "type": "Private", "from": sender, "to": {}},
        "originatingEntity": originating_entity or cfg.agent_originating_entity,
        "metadata": {"correlationId": new_uuid(), **(body.get("metadata") or {})},
    }
    if not is_typing(full):
        session.history.append(full)
    engine.touch(session)
    return full


def _deliver(engine: Engine, session: Session, full: dict[str, Any]) -> None:
    engine.broadcast(session, envelope("StructuredMessage", full, kind="message"))
