"""AMQP messages the bridge publishes: events, and dead-letter copies of rejected commands. Pure.

Each is an :class:`Outbound`: a body and its AMQP properties, ready for
:func:`bridge.amqp.confirm.publish_confirmed`.

Event properties are filled as integrators expect (docs/rabbitmq.md, "Event message properties"):
``message_id`` = ``event_id`` (the dedupe key), ``correlation_id`` = the command's AMQP ``correlation_id``
property for its outcome, else the body's correlation id (or, failing that, the command id the event
answers), ``traceparent``/``tracestate`` headers = the causing command's trace context, ``type`` = event
type, ``timestamp`` = ``occurred_at``, JSON content type, persistent delivery, ``app_id`` = ``genesys-bridge``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from aio_pika.abc import AbstractIncomingMessage
from aiormq import spec

from bridge.ports import TraceContext
from genesys_bridge_client.contract import Event
from genesys_bridge_client.contract.codec import encode_event
from genesys_bridge_client.contract.properties import fitting_property

__all__ = [
    "APP_ID",
    "MAX_HEADER_DETAIL_CHARS",
    "ORIGINAL_EXCHANGE_HEADER",
    "ORIGINAL_ROUTING_KEY_HEADER",
    "REDACTED_HEADER",
    "REJECT_DETAIL_HEADER",
    "REJECT_REASON_HEADER",
    "Outbound",
    "copy_message",
    "dead_letter_message",
    "event_message",
    "origin_headers",
    "without_auth_secrets",
]

APP_ID: Final = "genesys-bridge"
REDACTED_HEADER: Final = "x-bridge-redacted"
#: The secrets a command may carry (``session.start.auth``), never kept in clear outside the bridge.
_AUTH_SECRETS: Final = ("code", "code_verifier", "id_token")
REJECT_REASON_HEADER: Final = "x-bridge-reject-reason"
REJECT_DETAIL_HEADER: Final = "x-bridge-reject-detail"
ORIGINAL_EXCHANGE_HEADER: Final = "x-bridge-original-exchange"
ORIGINAL_ROUTING_KEY_HEADER: Final = "x-bridge-original-routing-key"
#: Header values travel in the content header frame; keep a hostile detail from inflating it.
MAX_HEADER_DETAIL_CHARS: Final = 1024
PERSISTENT: Final = 2
NOT_PERSISTENT: Final = 1


@dataclass(frozen=True, slots=True)
class Outbound:
    """A message to publish: its body and its AMQP properties. The same one may go to several destinations."""

    body: bytes
    properties: spec.Basic.Properties

    @classmethod
    def of(
        cls,
        body: bytes,
        *,
        headers: dict[str, Any] | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
        persistent: bool = True,
        priority: int | None = None,
        correlation_id: str | None = None,
        reply_to: str | None = None,
        message_id: str | None = None,
        timestamp: datetime | None = None,
        message_type: str | None = None,
        app_id: str | None = None,
    ) -> Outbound:
        """The message with these properties; those left ``None`` are not sent."""
        return cls(
            body,
            spec.Basic.Properties(
                headers=headers or {},
                content_type=content_type,
                content_encoding=content_encoding,
                delivery_mode=PERSISTENT if persistent else NOT_PERSISTENT,
                priority=priority or 0,
                correlation_id=correlation_id,
                reply_to=reply_to,
                message_id=message_id,
                timestamp=timestamp,
                message_type=message_type,
                app_id=app_id,
            ),
        )


def event_message(event: Event, *, correlation_id: str | None = None, trace: TraceContext | None = None) -> Outbound:
    """The AMQP message for ``event``; the same object can be published to several destinations.

    ``correlation_id`` is the requester's own AMQP property, which request/reply clients match replies on:
    it wins over the ids in the body. ``trace`` becomes the ``traceparent``/``tracestate`` headers.
    """
    return Outbound.of(
        encode_event(event),
        headers=dict(trace.headers()) if trace is not None else None,
        content_type="application/json",
        message_id=event.event_id,
        correlation_id=fitting_property(correlation_id or event.correlation_id or event.causation_id),
        message_type=event.type,
        timestamp=event.occurred_at,
        app_id=APP_ID,
    )


def dead_letter_message(original: AbstractIncomingMessage, *, reason: str, detail: str) -> Outbound:
    """A copy of ``original`` (body and properties) with the rejection reason in headers.

    Dropped on purpose: ``expiration`` (the evidence must not expire in the DLQ) and ``user_id``
    (the broker refuses a ``user_id`` other than our own login and would close the channel). A
    ``session.start``'s ``auth`` secrets (an authorization code, a PKCE verifier, an ID token) are replaced by
    ``[redacted]`` and the copy says so in ``x-bridge-redacted``: the dead-letter queue is not encrypted.
    """
    headers: dict[str, Any] = dict(original.headers or {})
    body, redacted = without_auth_secrets(original.body)
    if redacted:
        headers[REDACTED_HEADER] = "auth"
    headers[REJECT_REASON_HEADER] = reason
    headers[REJECT_DETAIL_HEADER] = detail[:MAX_HEADER_DETAIL_CHARS]
    headers.update(origin_headers(original))
    return copy_message(original, headers=headers, body=body)


def origin_headers(original: AbstractIncomingMessage) -> dict[str, str]:
    """Where ``original`` was first published: its exchange and routing key. A copy the router forwarded into
    a partition queue already carries them (its own exchange is the default one), so they are kept."""
    headers = original.headers or {}
    return {
        ORIGINAL_EXCHANGE_HEADER: str(headers.get(ORIGINAL_EXCHANGE_HEADER, original.exchange or "")),
        ORIGINAL_ROUTING_KEY_HEADER: str(headers.get(ORIGINAL_ROUTING_KEY_HEADER, original.routing_key or "")),
    }


def copy_message(
    original: AbstractIncomingMessage, *, headers: dict[str, Any] | None, body: bytes | None = None
) -> Outbound:
    """A persistent copy of ``original``'s body (or ``body``) and properties with ``headers`` instead of its own.

    Dropped on purpose: ``expiration`` (a copy kept as evidence must not expire) and ``user_id`` (the broker
    refuses a ``user_id`` other than our own login and would close the channel).
    """
    return Outbound.of(
        original.body if body is None else body,
        headers=headers,
        content_type=original.content_type,
        content_encoding=original.content_encoding,
        priority=original.priority,
        correlation_id=original.correlation_id,
        reply_to=original.reply_to,
        message_id=original.message_id,
        timestamp=original.timestamp,
        message_type=original.type,
        app_id=original.app_id,
    )


def without_auth_secrets(body: bytes) -> tuple[bytes, bool]:
    """``body`` with the values of ``auth``'s secrets replaced by ``[redacted]``, and whether any were.
    A body that is not a JSON object with an ``auth`` object comes back as it was."""
    try:
        command = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body, False
    auth = command.get("auth") if isinstance(command, dict) else None
    if not isinstance(auth, dict) or not any(key in auth for key in _AUTH_SECRETS):
        return body, False
    command["auth"] = {key: "[redacted]" if key in _AUTH_SECRETS else value for key, value in auth.items()}
    text = json.dumps(command, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode(), True
    except UnicodeEncodeError:  # half a surrogate pair, escaped in the original: UTF-8 cannot hold it unescaped
        return json.dumps(command, separators=(",", ":")).encode(), True
