"""``onMessage`` (§4.3): validation, limits, the Inbound echo to every connection, presence, typing,
and handing guest text to the scripted agent.

Check order (the real order is unknown): shape → read-only (409) → text size (4011) → attribute size
(4013) → attachments uploaded (4010) → rate (429/4029). A rejected message does not use the rate budget.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.simulator import agent, outbound
from bridge.simulator.outbound import is_typing
from bridge.simulator.session import AttachmentStatus, Received
from bridge.simulator.wire import envelope, iso_now, new_message_id

if TYPE_CHECKING:
    from bridge.simulator.connection import Connection
    from bridge.simulator.engine import Engine
    from bridge.simulator.session import Session

__all__ = ["custom_data_bytes", "on_message"]

_MESSAGE_TYPES = frozenset({"Text", "Structured", "Event"})


def custom_data_bytes(attributes: dict[str, str]) -> int:
    """UTF-8 bytes of all keys plus values (§4.3a)."""
    return sum(_utf8_bytes(k) + _utf8_bytes(v) for k, v in attributes.items())


def _utf8_bytes(text: str) -> int:
    """How many bytes ``text`` takes in UTF-8. Half a surrogate pair (which JSON may send escaped, §3.2)
    counts as the 3 bytes an encoder that lets it through writes, instead of failing the request."""
    return len(text.encode("utf-8", "surrogatepass"))


def _presence(message: dict[str, Any]) -> str | None:
    for event in message.get("events") or []:
        if isinstance(event, dict) and event.get("eventType") == "Presence":
            presence = event.get("presence") or {}
            return str(presence.get("type")) if isinstance(presence, dict) else None
    return None


def _attributes(request: dict[str, Any], message: dict[str, Any]) -> dict[str, str] | None:
    """Custom attributes from ``message.channel`` or the top-level ``channel`` (§12 lenient parsing)."""
    channel = message.get("channel") if isinstance(message.get("channel"), dict) else request.get("channel")
    if not isinstance(channel, dict):
        return {}
    metadata = channel.get("metadata")
    attributes = metadata.get("customAttributes") if isinstance(metadata, dict) else None
    if attributes is None:
        return {}
    if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
        return None
    return {str(k): v for k, v in attributes.items()}


def on_message(
    engine: Engine, conn: Connection, session: Session, request: dict[str, Any], tracing_id: str | None
) -> None:
    """Handle one ``onMessage`` request on a configured, active session."""
    cfg = engine.config
    message = request.get("message")
    if not isinstance(message, dict) or message.get("type") not in _MESSAGE_TYPES:
        engine.refuse(conn, 400, "Request failed.", tracing_id)
        return
    presence = _presence(message)
    if presence == "Clear":
        _clear(engine, conn, session, message, tracing_id)
        return
    if session.read_only:
        engine.refuse(conn, 409, "Session is read-only, no new messages allowed", tracing_id)
        return
    if is_typing(message) and not cfg.typing_enabled:
        engine.refuse(conn, 403, "Turn on the Feature Toggle or fix the configuration.", tracing_id)
        return
    raw_text = message.get("text")
    text = raw_text if isinstance(raw_text, str) else ""
    size = _utf8_bytes(text)
    if size > cfg.max_text_bytes:
        engine.refuse(conn, 4011, f"Message length {size} is larger than {cfg.max_text_bytes}", tracing_id)
        return
    attributes = _attributes(request, message)
    if attributes is None:
        engine.refuse(conn, 400, "Request failed.", tracing_id)
        return
    if custom_data_bytes(attributes) > cfg.max_custom_data_bytes:
        text = f"Custom Attributes in channel metadata is larger than {cfg.max_custom_data_bytes} bytes"
        engine.refuse(conn, 4013, text, tracing_id)
        return
    content = _resolve_attachments(engine, session, message.get("content"))
    if content is None:
        engine.refuse(conn, 4010, "Attachment has not been successfully uploaded", tracing_id)
        return
    counts = message.get("type") != "Event" or cfg.rate_counts_events
    if counts and session.message_bucket is not None and not session.message_bucket.try_take():
        engine.throttle(conn, 4029, "Message rate too high for this session", tracing_id)
        return
    _accept(engine, conn, session, message, text, attributes, content, tracing_id, presence)


def _resolve_attachments(engine: Engine, session: Session, content: object) -> list[dict[str, Any]] | None:
    """Content with Attachment references expanded; None if one is not uploaded (§4.6 → 4010)."""
    if not isinstance(content, list):
        return []
    resolved: list[dict[str, Any]] = []
    pending: list[str] = []
    for item in content:
        if not isinstance(item, dict):
            continue
        if item.get("contentType") != "Attachment":
            resolved.append(item)
            continue
        ref = item.get("attachment")
        found = session.attachments.get(str(ref.get("id"))) if isinstance(ref, dict) else None
        if found is None or found.status not in (AttachmentStatus.UPLOADED, AttachmentStatus.SENT):
            return None
        resolved.append(found.content_item(engine.base_url() + f"/downloads/{found.attachment_id}"))
        pending.append(found.attachment_id)
    for attachment_id in pending:
        session.attachments[attachment_id].status = AttachmentStatus.SENT
    return resolved


def _accept(
    engine: Engine,
    conn: Connection,
    session: Session,
    message: dict[str, Any],
    text: str,
    attributes: dict[str, str],
    content: list[dict[str, Any]],
    tracing_id: str | None,
    presence: str | None,
) -> None:
    """Record the message, echo it Inbound to every connection (§4.3), and let the agent answer."""
    channel: dict[str, Any] = {"time": iso_now()}
    if attributes:
        channel["metadata"] = {"customAttributes": attributes}
    body: dict[str, Any] = {"id": new_message_id(), "type": message["type"], "direction": "Inbound", "channel": channel}
    if "text" in message:
        body["text"] = text
    if content:
        body["content"] = content
    for key in ("events", "metadata"):
        if message.get(key):
            body[key] = message[key]
    session.received.append(Received(body=body, tracing_id=tracing_id, connection_id=conn.conn_id))
    engine.registry.index_attributes(session, attributes)
    engine.registry.index_first_text(session, text)
    engine.touch(session)
    frame = envelope("StructuredMessage", body, kind="message", tracing_id=tracing_id)
    if is_typing(body):
        # §14.6: whether the guest's own typing is echoed is unknown; a knob.
        if engine.config.echo_own_typing:
            engine.broadcast(session, frame)
        return
    session.history.append(body)
    new_conversation = session.conversation_id is None
    if new_conversation:
        session.conversation_id = new_message_id()
    engine.broadcast(session, frame)
    if not engine.config.agent_script:
        return
    if presence == "Join":
        if new_conversation and engine.config.agent_greeting:
            _respond(engine, session, [agent.Say(agent.text_body(engine.config.agent_greeting))])
        return
    if body["type"] == "Event":
        return
    button = next((c.get("buttonResponse") for c in content if c.get("contentType") == "ButtonResponse"), None)
    steps = agent.reply_for(text, button if isinstance(button, dict) else None, lambda: _agent_attachment(engine))
    _respond(engine, session, steps)


def _respond(engine: Engine, session: Session, steps: list[agent.Step]) -> None:
    """Typing On first (§5.3), then the steps, after ``agent_reply_delay_s``."""
    outbound.say(
        engine,
        session,
        {
            "type": "Event",
            "events": [
                {"eventType": "Typing", "typing": {"type": "On", "duration": engine.config.agent_typing_duration_ms}}
            ],
        },
    )

    def play() -> None:
        cfg = engine.config
        for step in steps:
            if isinstance(step, agent.Say):
                outbound.say(engine, session, step.body)
            else:
                read_only = cfg.disconnect_mode == "read_only"
                overtake = cfg.disconnect_overtakes_last_message
                outbound.say_and_disconnect(engine, session, step.last_message, read_only=read_only, overtake=overtake)

    if engine.config.agent_reply_delay_s > 0:
        engine.later(session, engine.config.agent_reply_delay_s, play)
    else:
        play()


def _agent_attachment(engine: Engine) -> dict[str, Any]:
    blob_id = f"agent-{new_message_id()}"
    engine.blobs[blob_id] = (agent.PNG_1X1, "image/png", "simulator.png")
    return agent.attachment_content(blob_id, engine.base_url() + f"/downloads/{blob_id}", len(agent.PNG_1X1))


def _clear(engine: Engine, conn: Connection, session: Session, message: dict[str, Any], tracing_id: str | None) -> None:
    """§4.3g Presence Clear: 200, then SessionClearedEvent and ConnectionClosedEvent to all; 403 if disabled."""
    if not engine.config.clear_enabled:
        engine.refuse(conn, 403, "Presence events Conversation Clear are not supported", tracing_id)
        return
    body = {
        "id": new_message_id(),
        "type": "Event",
        "direction": "Inbound",
        "channel": {"time": iso_now()},
        "events": message.get("events") or [],
    }
    engine.reply(conn, envelope("StructuredMessage", body, tracing_id=tracing_id))
    engine.clear(session)
