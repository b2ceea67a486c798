"""Small working fakes of the session layer's ports: an in-memory Genesys peer, sink, deliveries.

The peer speaks real Guest API JSON frames (protocol reference §3-§6) through the real GuestProtocol, so
the actor is tested end to end without sockets, under virtual time (looptime).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.errors import GenesysUnavailable, PublishTimeout
from bridge.genesys import wire_json
from bridge.genesys.deployment_config import DeploymentFeatures
from bridge.genesys.frames import StructuredMessage
from bridge.ports import Envelope, TraceContext, event_routing_key
from genesys_bridge_client.contract import Command, Event
from genesys_bridge_client.contract.events import CommandOutcome

# --- broker side ---------------------------------------------------------------------------------------


class FakeSink:
    """Records published events; ``block()`` holds publishes (back-pressure), ``hold(type)`` holds those of
    one type until ``unblock()`` (``held`` is set once one waits), ``fail_next`` raises."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.reply_to: list[str | None] = []
        self.routing_keys: list[str] = []
        self.correlation_ids: list[str | None] = []
        self.traces: list[TraceContext | None] = []
        self._changed = asyncio.Condition()
        self._open = asyncio.Event()
        self._open.set()
        self.fail_next = 0
        self._held_type: str | None = None
        self._released = asyncio.Event()
        self.held = asyncio.Event()

    def block(self) -> None:
        self._open.clear()

    def hold(self, event_type: str) -> None:
        self._held_type = event_type
        self._released.clear()

    def unblock(self) -> None:
        self._held_type = None
        self._released.set()
        self._open.set()

    async def publish(
        self,
        event: Event,
        *,
        deployment_id: str | None,
        route: str | None = None,
        reply_to: str | None = None,
        correlation_id: str | None = None,
        trace: TraceContext | None = None,
    ) -> None:
        await self._open.wait()
        if event.type == self._held_type:
            self.held.set()
            await self._released.wait()
        if self.fail_next:
            self.fail_next -= 1
            raise PublishTimeout("fake: no confirm")
        self.events.append(event)
        self.reply_to.append(reply_to)
        self.routing_keys.append(event_routing_key(event.type, deployment_id, route))
        self.correlation_ids.append(correlation_id)
        self.traces.append(trace)
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[list[Event]], bool]) -> list[Event]:
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self.events))
        return self.events

    async def wait_outcome(self, command_id: str, *, settled: bool = True) -> CommandOutcome:
        def found(events: list[Event]) -> bool:
            return any(self._match(e, command_id, settled) for e in events)

        await self.wait_for(found)
        return next(e for e in self.events if self._match(e, command_id, settled))  # type: ignore[return-value]

    @staticmethod
    def _match(event: Event, command_id: str, settled: bool) -> bool:
        return (
            isinstance(event, CommandOutcome)
            and event.command_id == command_id
            and (event.status != "will_retry" or not settled)
        )

    async def wait_type(self, event_type: str, count: int = 1, session_id: str | None = None) -> list[Event]:
        def enough(events: list[Event]) -> bool:
            return len(self.of_type(event_type, session_id)) >= count

        await self.wait_for(enough)
        return self.of_type(event_type, session_id)

    def of_type(self, event_type: str, session_id: str | None = None) -> list[Any]:
        return [e for e in self.events if e.type == event_type and (session_id is None or e.session_id == session_id)]

    def outcomes(self, command_id: str) -> list[CommandOutcome]:
        return [e for e in self.events if isinstance(e, CommandOutcome) and e.command_id == command_id]


class FakeDelivery:
    """Records how it was settled; ``settled`` is awaited by tests."""

    def __init__(self) -> None:
        self.how: list[str] = []
        self.dead_letter_reason: str | None = None
        self.settled = asyncio.Event()

    async def ack(self) -> None:
        self.how.append("ack")
        self.settled.set()

    async def dead_letter(self, reason: str, detail: str) -> None:
        self.how.append("dead_letter")
        self.dead_letter_reason = reason
        self.settled.set()

    async def requeue(self) -> None:
        self.how.append("requeue")
        self.settled.set()


def envelope(
    command: Command,
    *,
    received_at: float = 0.0,
    reply_to: str | None = None,
    correlation_id: str | None = None,
    trace: TraceContext | None = None,
) -> Envelope:
    return Envelope(
        command=command,
        delivery=FakeDelivery(),
        reply_to=reply_to,
        correlation_id=correlation_id,
        trace=trace,
        received_at=received_at,
    )


# --- Genesys side ---------------------------------------------------------------------------------------

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _frame(cls: str, body: Any, *, code: int = 200, kind: str = "message", tracing_id: str | None = None) -> str:
    data: dict[str, Any] = {"type": kind, "class": cls, "code": code, "body": body}
    if tracing_id is not None:
        data["tracingId"] = tracing_id
    return json.dumps(data)


class FakeConnection:
    """One in-memory socket: ``send`` hands the frame to the peer; ``frames`` yields what the peer pushes."""

    def __init__(self, peer: FakeGenesys) -> None:
        self._peer = peer
        self._queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue(maxsize=1000)
        self.open = True

    def push(self, item: str | BaseException | None) -> None:
        self._queue.put_nowait(item)

    async def send(self, frame: str) -> None:
        if not self.open:
            raise GenesysUnavailable("fake: socket closed")
        self._peer.handle(self, json.loads(frame))

    async def frames(self) -> AsyncIterator[str]:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def ping(self, timeout_s: float | None) -> None:
        if not self.open:
            raise GenesysUnavailable("fake: socket closed")
        self._peer.pings.append(asyncio.get_running_loop().time())
        self._peer._changed.set()
        if self._peer.deaf_to_pings:
            if timeout_s is None:
                return
            await asyncio.sleep(timeout_s)
            raise TimeoutError

    async def close(self) -> None:
        if self.open:
            self.open = False
            self._peer.connections.remove(self)
            self._peer._changed.set()
            self.push(None)

    def drop(self) -> None:
        """An abrupt close (1006): the reader gets GenesysUnavailable."""
        if self.open:
            self.open = False
            self._peer.connections.remove(self)
            self.push(GenesysUnavailable("fake: 1006 abnormal closure"))


@dataclass
class FakeGenesys:
    """A scripted Genesys peer for one or more sessions (keyed by token). Also the Connector."""

    clock: Callable[[], float] = field(default=lambda: asyncio.get_running_loop().time())
    connections: list[FakeConnection] = field(default_factory=list)
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # token -> oldest first
    received: list[dict[str, Any]] = field(default_factory=list)
    known_tokens: set[str] = field(default_factory=set)
    refuse_connects: int = 0  # the next N connects fail (GenesysUnavailable)
    configure_error: int | None = None  # e.g. 400: configureSession refused
    configure_new_session: bool | None = None  # force newSession in the SessionResponse
    duration_s: int | None = 259_200  # SessionResponse durationSeconds (§5.1); None leaves it out
    configure_read_only: bool = False
    errors: dict[str, int] = field(default_factory=dict)  # message text -> error code
    rate_limit_next: int = 0  # the next N onMessage get 429 retryAfter
    retry_after_s: int = 3
    typing_forbidden: bool = False
    echo_typing: bool = True
    clear_forbidden: bool = False
    swallow_messages: int = 0  # the next N onMessage get no echo at all
    drop_after_receive: int = 0  # drop the socket right after receiving the next N onMessage (echo lost)
    hold_echoes: int = 0  # the next N onMessage reach the history but their echo never comes
    allowed_media: Sequence[str] = ("image/png", "image/jpeg")
    max_custom_data_bytes: int = 2048
    connect_origins: list[str | None] = field(default_factory=list)
    pings: list[float] = field(default_factory=list)  # loop time of each WebSocket ping, over every connection
    deaf_to_pings: bool = False  # no pong ever comes back
    deaf_to_echoes: bool = False  # no echo is ever answered
    echo_expires_at: int | None = None  # an echo answer carries this expirationDate (epoch seconds)
    connect_error: BaseException | None = None  # every connect raises it (e.g. a bug's RuntimeError)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    # Connector
    async def connect(self, url: str, *, origin: str | None) -> FakeConnection:
        self.connect_origins.append(origin)
        self._changed.set()
        if self.connect_error is not None:
            raise self.connect_error
        if self.refuse_connects:
            self.refuse_connects -= 1
            raise GenesysUnavailable("fake: connection refused")
        conn = FakeConnection(self)
        self.connections.append(conn)
        return conn

    # peer behaviour
    def handle(self, conn: FakeConnection, frame: dict[str, Any]) -> None:
        self.received.append(frame)
        self._changed.set()
        action, tid, token = frame.get("action"), frame.get("tracingId"), frame.get("token", "")
        if action in ("configureSession", "configureAuthenticatedSession"):
            if self.configure_error:
                conn.push(_frame("string", "Deployment not found", code=self.configure_error, kind="response"))
                return
            new = token not in self.known_tokens if self.configure_new_session is None else self.configure_new_session
            self.known_tokens.add(token)
            self.history.setdefault(token, [])
            body = {
                "connected": True,
                "newSession": new,
                "readOnly": self.configure_read_only,
                "maxCustomDataBytes": self.max_custom_data_bytes,
                "allowedMedia": {
                    "inbound": {"fileTypes": [{"type": t} for t in self.allowed_media], "maxFileSizeKB": 10}
                },
                "blockedExtensions": [".exe"],
            }
            if self.duration_s is not None:
                body["durationSeconds"] = self.duration_s
            conn.push(_frame("SessionResponse", body, kind="response", tracing_id=tid))
        elif action == "onMessage":
            self._on_message(conn, token, tid, frame["message"])
        elif action == "echo":
            if self.deaf_to_echoes:
                return
            body = {"type": "Text", "direction": "Inbound", "id": uuid.uuid4().hex, "text": "ping"}
            if self.echo_expires_at is not None:  # §4.4: newer servers tell the session's timing, as strings
                body["metadata"] = {"durationSeconds": "259200", "expirationDate": str(self.echo_expires_at)}
            conn.push(_frame("StructuredMessage", body, kind="response", tracing_id=tid))
        elif action == "getJwt":
            conn.push(
                _frame("JwtResponse", {"jwt": f"jwt-{token}", "exp": 4102444800}, kind="response", tracing_id=tid)
            )
        elif action == "onAttachment":
            body = {
                "attachmentId": frame["attachmentId"],
                "url": f"https://upload.invalid/{frame['attachmentId']}",
                "headers": {"x-amz-tagging": "abc"},
                "fileName": frame["fileName"],
                "fileType": frame["fileType"],
                "fileSize": frame["fileSize"],
            }
            conn.push(_frame("PresignedUrlResponse", body, kind="response", tracing_id=tid))

    def _on_message(self, conn: FakeConnection, token: str, tid: str | None, message: dict[str, Any]) -> None:
        if message.get("type") == "Event":
            event = message["events"][0]
            if event.get("eventType") == "Typing":
                if self.typing_forbidden:
                    body = "Turn on the Feature Toggle or fix the configuration."
                    conn.push(_frame("string", body, code=403, kind="response", tracing_id=tid))
                elif self.echo_typing:
                    echo = {"type": "Event", "direction": "Inbound", "id": uuid.uuid4().hex, "events": [event]}
                    conn.push(_frame("StructuredMessage", echo, tracing_id=tid))
            elif event.get("presence", {}).get("type") == "Clear":
                if self.rate_limit_next:  # untraced, as Genesys sends errors (§5.5)
                    self.rate_limit_next -= 1
                    body = {"errorCode": 4029, "errorMessage": "Message rate too high", "retryAfter": 1}
                    conn.push(_frame("TooManyRequestsErrorMessage", body, code=429, kind="response"))
                elif self.clear_forbidden:
                    body = "Presence events Conversation Clear are not supported"
                    conn.push(_frame("string", body, code=403, kind="response", tracing_id=tid))
                else:
                    conn.push(_frame("string", "OK", kind="response", tracing_id=tid))
                    conn.push(_frame("SessionClearedEvent", {}))
                    conn.push(_frame("ConnectionClosedEvent", {}))
                    conn.push(None)
            return
        text = message.get("text") or ""
        if self.rate_limit_next:
            self.rate_limit_next -= 1
            body = {"errorCode": 4029, "errorMessage": "Message rate too high", "retryAfter": self.retry_after_s}
            conn.push(_frame("TooManyRequestsErrorMessage", body, code=429, kind="response", tracing_id=tid))
            return
        if text in self.errors:
            conn.push(_frame("string", f"error for {text}", code=self.errors[text], kind="response", tracing_id=tid))
            return
        if self.swallow_messages:
            self.swallow_messages -= 1
            return
        body = self._record(
            token, {"type": "Text", "direction": "Inbound", "text": text, "content": message.get("content", [])}
        )
        if self.drop_after_receive:
            self.drop_after_receive -= 1
            conn.drop()
            return
        if self.hold_echoes:
            self.hold_echoes -= 1
            return
        conn.push(_frame("StructuredMessage", body, tracing_id=tid))

    def _record(self, token: str, body: dict[str, Any]) -> dict[str, Any]:
        log = self.history.setdefault(token, [])
        body = {
            "id": uuid.uuid4().hex,
            "channel": {"time": (_EPOCH + timedelta(seconds=self.clock() + len(log) * 1e-3)).isoformat()},
            **body,
        }
        log.append(body)
        return body

    def agent_say(self, token: str, text: str, *, live: bool = True) -> dict[str, Any]:
        """An agent message: recorded in history, pushed to the live sockets when ``live``."""
        body = self._record(
            token, {"type": "Text", "direction": "Outbound", "text": text, "originatingEntity": "Human"}
        )
        if live:
            for conn in list(self.connections):
                conn.push(_frame("StructuredMessage", body))
        return body

    def push_body(self, token: str, body: dict[str, Any]) -> None:
        """Push a recorded message body to the live sockets (e.g. later, or in another order)."""
        for conn in list(self.connections):
            conn.push(_frame("StructuredMessage", body))

    def push_all(self, cls: str, body: Any, *, code: int = 200, kind: str = "message") -> None:
        for conn in list(self.connections):
            conn.push(_frame(cls, body, code=code, kind=kind))

    def disconnect(self, token: str, *, read_only: bool = True) -> dict[str, Any]:
        body = self._record(
            token,
            {
                "type": "Event",
                "direction": "Outbound",
                "events": [{"eventType": "Presence", "presence": {"type": "Disconnect"}}],
                "metadata": {"readOnly": "true"} if read_only else {},
            },
        )
        for conn in list(self.connections):
            conn.push(_frame("StructuredMessage", body))
        return body

    def drop_all(self) -> None:
        for conn in list(self.connections):
            conn.drop()

    async def wait_received(self, predicate: Callable[[list[dict[str, Any]]], bool]) -> None:
        while not predicate(self.received):
            self._changed.clear()
            await self._changed.wait()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Once ``predicate`` holds, checked after every frame, ping, connect attempt and close by the bridge."""
        while not predicate():
            self._changed.clear()
            await self._changed.wait()

    async def wait_pings(self, count: int) -> list[float]:
        """The loop times of the first ``count`` pings, once that many came."""
        await self.wait_until(lambda: len(self.pings) >= count)
        return self.pings[:count]

    def sent_texts(self) -> list[str]:
        return [
            f["message"].get("text", "")
            for f in self.received
            if f.get("action") == "onMessage" and f["message"].get("type") != "Event"
        ]


@dataclass
class _Page:
    entities: list[StructuredMessage]
    page_count: int


class FakeHistory:
    """REST history over the peer's log: newest first, ``page_size`` per page (§9)."""

    def __init__(self, peer: FakeGenesys) -> None:
        self.peer = peer
        self.calls = 0

    async def fetch_history(
        self, rest_base: str, jwt: str, *, page_number: int, page_size: int, origin: str | None
    ) -> _Page:
        self.calls += 1
        token = jwt.removeprefix("jwt-")
        newest = list(reversed(self.peer.history.get(token, [])))
        start = (page_number - 1) * page_size
        chunk = newest[start : start + page_size]
        pages = max(1, -(-len(newest) // page_size))
        # Through JSON and the adapter's decoder, as the REST history arrives (an escape stays one).
        return _Page([StructuredMessage.model_validate(wire_json.loads(json.dumps(e))) for e in chunk], pages)


class FakeUploads:
    """Records PUTs; tells the peer to announce ``UploadSuccessEvent`` (or failure)."""

    def __init__(self, peer: FakeGenesys, *, sources: Mapping[str, bytes] | None = None) -> None:
        self.peer = peer
        self.sources = dict(sources or {})
        self.puts: list[tuple[str, dict[str, str], int, str]] = []
        self.fail_scan = False

    async def upload(self, url: str, headers: Mapping[str, str], content: bytes, content_type: str) -> None:
        self.puts.append((url, dict(headers), len(content), content_type))
        attachment_id = url.rsplit("/", 1)[1]
        if self.fail_scan:
            body = {"attachmentId": attachment_id, "errorCode": 4003, "errorMessage": "virus", "timestamp": "x"}
            self.peer.push_all("UploadFailureEvent", body)
        else:
            body = {"attachmentId": attachment_id, "downloadUrl": "https://dl.invalid/x", "timestamp": "x"}
            self.peer.push_all("UploadSuccessEvent", body)

    async def fetch_bytes(self, url: str, *, max_bytes: int) -> bytes:
        if url not in self.sources:
            raise GenesysUnavailable(f"fake: cannot fetch {url}")
        return self.sources[url]


@dataclass(frozen=True)
class FakeEndpoints:
    rest_base: str = "http://rest.invalid"

    def websocket_url(self, deployment_id: str, *, application: str | None = None) -> str:
        return f"ws://ws.invalid/v1?deploymentId={deployment_id}"

    def deployment_config_url(self, deployment_id: str) -> str:
        return f"http://cdn.invalid/webdeployments/v1/deployments/{deployment_id}/config.json"


def resolve_endpoints(region: str) -> FakeEndpoints:
    from bridge.errors import CommandRejected

    if region == "nowhere.invalid":
        raise CommandRejected("unknown_region", f"unknown region {region}")
    return FakeEndpoints()


class FixedFeatures:
    """A ``FeatureSource`` that knows one answer for every deployment (``None``: the config could not be read)."""

    def __init__(self, features: DeploymentFeatures | None) -> None:
        self.features = features
        self.asked: list[str] = []

    async def get(self, deployment_id: str, *, config_url: str) -> DeploymentFeatures | None:
        self.asked.append(config_url)
        return self.features


class ManualClock:
    """A ``Clock`` that moves only when the test moves it (``clock.t += ...``)."""

    def __init__(self) -> None:
        self.t = 0.0

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)
