"""The Guest API WebSocket adapter: :class:`bridge.ports.Connector` on top of websockets 17.

A thin shell. It opens the socket (protocol reference §2), moves text frames in and out (§3), closes
with 1000 (§4.9), and maps every websockets/OS exception to the bridge's tree exactly once, here:

=====================================================  ==========================================
what happened                                          raised
=====================================================  ==========================================
connect refused, DNS failure, TLS error, open timeout  ``GenesysUnavailable``
upgrade answered 5xx, malformed handshake              ``GenesysUnavailable``
upgrade answered 429                                   ``GenesysRateLimited`` (``Retry-After``)
upgrade answered another 4xx (403 = access denied,      ``GenesysRejected(status, ...)``
§2.3: deployment id, allowed domains, feature toggles)
socket closed by the server (any code) or dropped      ``GenesysUnavailable`` with ``close_code``
(1006) while sending or reading                        and ``close_reason``
socket closed by us (:meth:`close`)                    ``frames()`` ends normally
=====================================================  ==========================================

Callers decide retry or give up with :func:`bridge.errors.is_retryable`; nothing here retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Literal

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)
from websockets.frames import CloseCode
from websockets.typing import Origin

import bridge
from bridge.config import Settings
from bridge.errors import GenesysProtocolError, GenesysRateLimited, GenesysRejected, GenesysUnavailable
from bridge.genesys.translate import retry_after_header
from bridge.genesys.urls import websocket_sdk_origin

__all__ = ["DEFAULT_USER_AGENT", "WebsocketsConnection", "WebsocketsConnector"]

_log = structlog.get_logger(__name__)

#: ``User-Agent`` on the upgrade. KMP sends its own too (§2.3); it helps Genesys support find us.
DEFAULT_USER_AGENT = f"genesys-bridge/{bridge.__version__}"

#: Java's close reason (§4.9). A plain close never ends the Genesys session.
_CLOSE_REASON = "Guest client disconnect"


class WebsocketsConnection:
    """One open Guest API WebSocket (:class:`bridge.ports.GenesysConnection`).

    Caller's duties: iterate :meth:`frames` from exactly one task (websockets forbids concurrent
    reads); send from one task at a time; call :meth:`close` when done, even after an error.
    """

    __slots__ = ("_closing", "_ws")

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._closing = False

    def __repr__(self) -> str:
        return f"<WebsocketsConnection {self._ws.id} state={self._ws.state.name}>"

    async def send(self, frame: str) -> None:
        """Send one JSON text frame (§3.1).

        Raises:
            GenesysUnavailable: the socket is closed or closing (by either side).
        """
        try:
            await self._ws.send(frame)
        except ConnectionClosed as exc:
            raise _closed_error(exc) from exc

    async def ping(self, timeout_s: float | None) -> None:
        """Send an RFC 6455 ping (§2.4) and wait up to ``timeout_s`` for its pong; ``None`` does not wait.

        The session's keepalive calls it: websockets' own keepalive is off, as it holds a task per socket.

        Raises:
            TimeoutError: no pong within ``timeout_s``.
            GenesysUnavailable: the socket is closed or closing (by either side).
        """
        try:
            pong = await self._ws.ping()
            if timeout_s is not None:
                async with asyncio.timeout(timeout_s):
                    await pong
        except ConnectionClosed as exc:
            raise _closed_error(exc) from exc

    async def frames(self) -> AsyncIterator[str]:
        """Yield received text frames until the socket closes (§3: frames are UTF-8 JSON text).

        Binary frames are not part of the protocol: they are logged and skipped. The iteration
        ends normally only after :meth:`close` was called; any other close — the server's close
        frame with whatever code, or a drop without one (1006) — raises ``GenesysUnavailable``
        carrying the close code and reason (§6: server close codes are undocumented, so every
        server close means "reconnect and configure again").
        """
        while True:
            try:
                message = await self._ws.recv()
            except ConnectionClosed as exc:
                if self._closing:
                    return
                raise _closed_error(exc) from exc
            if isinstance(message, bytes):
                _log.warning("genesys_binary_frame_ignored", size=len(message))
                continue
            yield message
            del message  # not kept while the next frame is awaited (an idle socket would hold its last one)

    async def close(self) -> None:
        """Close with 1000 "Guest client disconnect" (§4.9). Never raises; idempotent.

        This does not end the Genesys session or conversation: the token stays valid for a later
        ``configureSession``. Waits at most the connector's ``close_timeout_s`` for the closing handshake.
        """
        self._closing = True
        try:
            await self._ws.close(CloseCode.NORMAL_CLOSURE, _CLOSE_REASON)
        except (OSError, WebSocketException) as exc:  # close is best effort: the socket is gone either way
            _log.debug("genesys_close_failed", error=repr(exc))


class WebsocketsConnector:
    """Opens Guest API WebSockets (:class:`bridge.ports.Connector`). Build one per process and share it.

    websockets' own keepalive is off: the sessions ping (``WebsocketsConnection.ping``) on one timer for
    the process (``bridge.session.keepalive``), instead of a task per socket.

    Args:
        open_timeout_s: TCP + TLS + HTTP upgrade must finish within this.
        close_timeout_s: how long :meth:`WebsocketsConnection.close` waits for the closing handshake.
        max_size: largest incoming message. Frames are small (text ≤ 4096 bytes + attributes ≤ 2048,
            §8), so 64 KiB is ample and bounds what a misbehaving peer can make us buffer.
        max_queue: incoming messages buffered before websockets stops reading the socket (back-pressure
            to the server). A session actor drains promptly; a small queue keeps per-session memory low.
        write_limit: outgoing bytes buffered before ``send`` waits (back-pressure from the server).
        user_agent: ``User-Agent`` header on the upgrade.
        proxy: websockets' proxy setting: ``True`` follows ``HTTPS_PROXY``/``NO_PROXY`` from the
            environment, ``None`` connects directly, a URL forces that proxy.
    """

    def __init__(
        self,
        *,
        open_timeout_s: float = 10.0,
        close_timeout_s: float = 5.0,
        max_size: int = 64 * 1024,
        max_queue: int = 8,
        write_limit: int = 16 * 1024,
        user_agent: str = DEFAULT_USER_AGENT,
        proxy: str | Literal[True] | None = True,
    ) -> None:
        self.open_timeout_s = open_timeout_s
        self.close_timeout_s = close_timeout_s
        self.max_size = max_size
        self.max_queue = max_queue
        self.write_limit = write_limit
        self.user_agent = user_agent
        self.proxy: str | Literal[True] | None = proxy

    @classmethod
    def from_settings(cls, settings: Settings) -> WebsocketsConnector:
        """The production connector: the open timeout from ``BRIDGE_WS_CONNECT_TIMEOUT_S``."""
        return cls(open_timeout_s=settings.ws_connect_timeout_s)

    def __repr__(self) -> str:
        return (
            f"WebsocketsConnector(open_timeout_s={self.open_timeout_s}, max_size={self.max_size}, "
            f"max_queue={self.max_queue})"
        )

    async def connect(self, url: str, *, origin: str | None) -> WebsocketsConnection:
        """Open ``url`` (``wss://webmessaging.<domain>/v1?deploymentId=…``, §2.1) with ``Origin: origin``.

        ``origin`` comes from :func:`bridge.genesys.urls.resolve_origin`. ``None`` sends what Genesys'
        mobile SDK sends, the bare host of ``url`` (:func:`bridge.genesys.urls.websocket_sdk_origin`,
        §2.3): an upgrade always carries an ``Origin``. No subprotocol and no auth header are sent
        (§2.1): authentication happens inside the socket.

        Raises:
            GenesysUnavailable: could not connect, timed out, or the server failed (5xx). Retryable.
            GenesysRateLimited: the upgrade was answered 429. Retry after ``retry_after_s``.
            GenesysRejected: the upgrade was refused with a 4xx (``code`` is the HTTP status). Final.
            GenesysProtocolError: ``url`` is not a WebSocket URL (a bug in URL building).
        """
        sent_origin = origin or websocket_sdk_origin(url)
        try:
            ws = await connect(
                url,
                origin=Origin(sent_origin) if sent_origin else None,
                # permessage-deflate OFF: it triples memory per connection (71 KiB vs 22 KiB, measured
                # in docs/performance.md) and our frames are tiny JSON, so it saves almost nothing.
                compression=None,
                subprotocols=None,  # §2.1: no Sec-WebSocket-Protocol
                user_agent_header=self.user_agent,
                proxy=self.proxy,
                open_timeout=self.open_timeout_s,
                ping_interval=None,  # the session's keepalive pings (bridge.session.keepalive)
                close_timeout=self.close_timeout_s,
                max_size=self.max_size,
                max_queue=self.max_queue,
                write_limit=self.write_limit,
            )
        except InvalidStatus as exc:
            raise _status_error(exc) from exc
        except InvalidURI as exc:
            raise GenesysProtocolError(f"not a WebSocket URL: {exc}") from exc
        except TimeoutError as exc:
            raise GenesysUnavailable(f"WebSocket open timed out after {self.open_timeout_s}s") from exc
        except (OSError, WebSocketException) as exc:
            # OSError: refused, unreachable, DNS, TLS. WebSocketException: a broken handshake or proxy.
            raise GenesysUnavailable(f"WebSocket connect failed: {exc!r}") from exc
        _drop_handshake(ws)
        return WebsocketsConnection(ws)


def _drop_handshake(ws: ClientConnection) -> None:
    """Let go of the upgrade's request and response headers, kept by the connection for its whole life.

    They are only needed during the handshake (about 2 KiB per live session, docs/performance.md) and
    nothing here reads them later. The request is dropped. The response cannot be: websockets 17 reads
    ``response`` once more to tell the handshake response from later frames (``ClientConnection.
    process_event``: ``response is None`` means "still handshaking"), and its frame parser, a generator
    that parsed the handshake and keeps parsing frames in the same call, holds it as a local anyway. So it
    is emptied in place: a bare 101 response, without headers or body.
    """
    ws.request = None
    if ws.response is not None:
        ws.response.headers.clear()
        ws.response.body = b""


def _status_error(exc: InvalidStatus) -> GenesysUnavailable | GenesysRateLimited | GenesysRejected:
    """Classify an HTTP answer to the upgrade (§2.3: 403 = ``WebsocketAccessDenied`` in KMP)."""
    status = exc.response.status_code
    phrase = exc.response.reason_phrase
    if status == 429:
        return GenesysRateLimited(retry_after_header(exc.response.headers.get("Retry-After")), "on WebSocket upgrade")
    if 400 <= status < 500:
        return GenesysRejected(status, f"WebSocket upgrade refused: {status} {phrase}")
    return GenesysUnavailable(f"WebSocket upgrade failed: {status} {phrase}")


def _closed_error(exc: ConnectionClosed) -> GenesysUnavailable:
    """A socket we did not close is gone: report the server's close code and reason.

    No close frame received: 1006 when the TCP connection just dropped, or the code websockets sent
    itself (e.g. 1009 when a frame was over ``max_size``).
    """
    if exc.rcvd is not None:
        code, reason = int(exc.rcvd.code), exc.rcvd.reason
        detail = f"WebSocket closed by server: {code} {reason}"
    elif exc.sent is not None:
        code, reason = int(exc.sent.code), exc.sent.reason
        detail = f"WebSocket closed locally: {code} {reason}"
    else:
        code, reason = int(CloseCode.ABNORMAL_CLOSURE), ""
        detail = "WebSocket dropped without a close frame"
    return GenesysUnavailable(f"{detail} (close code {code})".replace("  ", " "), close_code=code, close_reason=reason)
