"""WebsocketsConnector against a real local websockets server (real sockets, no mocks)."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from bridge.config import Settings
from bridge.errors import GenesysRateLimited, GenesysRejected, GenesysUnavailable, is_retryable
from bridge.genesys.connector import DEFAULT_USER_AGENT, WebsocketsConnection, WebsocketsConnector

Handler = Callable[[ServerConnection], Awaitable[None]]
ProcessRequest = Callable[[ServerConnection, Request], Response | None]


@asynccontextmanager
async def ws_server(
    handler: Handler,
    *,
    process_request: ProcessRequest | None = None,
) -> AsyncIterator[str]:
    """A real server on an ephemeral port; yields its ``ws://`` URL."""
    async with serve(handler, "127.0.0.1", 0, process_request=process_request, compression="deflate") as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/v1?deploymentId=dep-1"


def connector() -> WebsocketsConnector:
    return WebsocketsConnector(proxy=None)


async def drain(conn: WebsocketsConnection, into: list[str] | None = None) -> None:
    """Read every frame until the socket closes, keeping them in ``into``."""
    async for frame in conn.frames():
        if into is not None:
            into.append(frame)


async def test_upgrade_sends_origin_user_agent_and_no_subprotocol_or_compression() -> None:
    seen: asyncio.Future[Headers] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        seen.set_result(ws.request.headers if ws.request else Headers())
        await ws.wait_closed()

    async with ws_server(handler) as url:
        conn = await connector().connect(url, origin="https://app.example.com")
        headers = await seen
        await conn.close()

    assert headers["Origin"] == "https://app.example.com"
    assert headers["User-Agent"] == DEFAULT_USER_AGENT
    assert "Sec-WebSocket-Protocol" not in headers
    # The server offers deflate; the client must not ask for it (perf: 3x memory per socket).
    assert "Sec-WebSocket-Extensions" not in headers


async def test_without_an_origin_the_sdk_origin_is_sent() -> None:
    """Like Genesys' mobile SDK: the socket URL's bare host (``webmessaging.<domain>`` in production)."""
    seen: asyncio.Future[Headers] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        seen.set_result(ws.request.headers if ws.request else Headers())
        await ws.wait_closed()

    async with ws_server(handler) as url:
        conn = await connector().connect(url, origin=None)
        headers = await seen
        await conn.close()
    assert headers.get_all("Origin") == ["127.0.0.1"]


async def test_frames_yield_text_skip_binary_and_end_on_our_close() -> None:
    received: asyncio.Queue[str] = asyncio.Queue(maxsize=10)
    closed: asyncio.Future[tuple[int | None, str | None]] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        await ws.send('{"class":"A"}')
        await ws.send(b"\x00binary")
        await ws.send('{"class":"B"}')
        async for message in ws:
            assert isinstance(message, str)
            await received.put(message)
        closed.set_result((ws.close_code, ws.close_reason))

    async with ws_server(handler) as url:
        conn = await connector().connect(url, origin=None)
        await conn.send('{"action":"echo"}')
        assert await received.get() == '{"action":"echo"}'
        frames = []
        async for frame in conn.frames():
            frames.append(frame)
            if len(frames) == 2:
                await conn.close()
        assert frames == ['{"class":"A"}', '{"class":"B"}']
        assert await closed == (1000, "Guest client disconnect")


async def test_no_handshake_response_keeps_its_headers() -> None:
    """Memory: every response object of the upgrade is emptied, wherever websockets still holds one."""
    marker = "x-handshake-marker"

    sent: asyncio.Future[Response | None] = asyncio.get_running_loop().create_future()

    def mark(_: ServerConnection, __: Request, response: Response) -> Response:
        response.headers[marker] = "held"
        return response

    async def handler(ws: ServerConnection) -> None:
        sent.set_result(ws.response)  # the server's own copy, which this test does not judge
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, process_response=mark) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await connector().connect(f"ws://127.0.0.1:{port}/v1", origin="https://app.example.com")
        server_copy = await sent
        gc.collect()
        held = [o for o in gc.get_objects() if isinstance(o, Response) and o is not server_copy and marker in o.headers]
        await conn.close()
    assert held == []


async def test_handshake_headers_are_dropped_and_the_connection_still_works() -> None:
    """Memory: the upgrade's headers are let go once it is done; frames, pings and the close still work."""
    received: asyncio.Queue[str] = asyncio.Queue(maxsize=10)
    closed: asyncio.Future[tuple[int | None, str | None]] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        await ws.send('{"class":"A"}')
        pong = await ws.ping()  # answered by the client's reader, which must still run
        await pong
        async for message in ws:
            await received.put(str(message))
        closed.set_result((ws.close_code, ws.close_reason))

    async with ws_server(handler) as url:
        conn = await connector().connect(url, origin="https://app.example.com")
        ws = conn._ws  # the websockets connection it wraps
        assert ws.request is None
        assert ws.response is not None
        assert ws.response.status_code == 101
        assert len(ws.response.headers) == 0
        frames: list[str] = []
        async for frame in conn.frames():
            frames.append(frame)
            await conn.send('{"action":"echo"}')
            assert await received.get() == '{"action":"echo"}'
            await conn.close()
        assert frames == ['{"class":"A"}']
        assert await closed == (1000, "Guest client disconnect")


async def test_server_close_raises_unavailable_with_code_and_reason() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send('{"class":"A"}')
        await ws.close(4000, "going away now")

    async with ws_server(handler) as url:
        conn = await connector().connect(url, origin=None)
        frames: list[str] = []
        with pytest.raises(GenesysUnavailable) as info:
            await drain(conn, frames)
        await conn.close()
    assert frames == ['{"class":"A"}']
    assert info.value.close_code == 4000
    assert info.value.close_reason == "going away now"
    assert "4000" in str(info.value)
    assert is_retryable(info.value)


async def test_clean_server_close_1000_is_still_unavailable() -> None:
    """Only a close WE start ends frames() normally; the server closing with 1000 means reconnect."""

    async def handler(ws: ServerConnection) -> None:
        await ws.close()

    async with ws_server(handler) as url:
        conn = await connector().connect(url, origin=None)
        with pytest.raises(GenesysUnavailable) as info:
            await drain(conn)
    assert info.value.close_code == 1000


async def test_abrupt_drop_is_1006() -> None:
    async def handler(ws: ServerConnection) -> None:
        ws.transport.abort()  # TCP reset, no close frame
        await ws.wait_closed()

    async with ws_server(handler) as url:
        conn = await connector().connect(url, origin=None)
        with pytest.raises(GenesysUnavailable) as info:
            await drain(conn)
        assert info.value.close_code == 1006
        with pytest.raises(GenesysUnavailable):
            await conn.send("{}")
        await conn.close()  # never raises, even on a dead socket
        await conn.close()  # idempotent


def _reject(status: HTTPStatus, headers: dict[str, str] | None = None) -> ProcessRequest:
    def process_request(ws: ServerConnection, request: Request) -> Response:
        response = ws.respond(status, "no\n")
        for key, value in (headers or {}).items():
            response.headers[key] = value
        return response

    return process_request


async def _never(ws: ServerConnection) -> None:  # pragma: no cover - the upgrade is refused first
    await ws.wait_closed()


@pytest.mark.parametrize("status", [HTTPStatus.FORBIDDEN, HTTPStatus.UNAUTHORIZED, HTTPStatus.NOT_FOUND, 400])
async def test_4xx_upgrade_is_rejected_with_status(status: int) -> None:
    async with ws_server(_never, process_request=_reject(HTTPStatus(status))) as url:
        with pytest.raises(GenesysRejected) as info:
            await connector().connect(url, origin="https://app.example.com")
    assert info.value.code == status
    assert not is_retryable(info.value)


@pytest.mark.parametrize("status", [HTTPStatus.INTERNAL_SERVER_ERROR, HTTPStatus.SERVICE_UNAVAILABLE])
async def test_5xx_upgrade_is_unavailable(status: HTTPStatus) -> None:
    async with ws_server(_never, process_request=_reject(status)) as url:
        with pytest.raises(GenesysUnavailable) as info:
            await connector().connect(url, origin=None)
    assert str(int(status)) in str(info.value)
    assert is_retryable(info.value)


async def test_429_upgrade_is_rate_limited_with_retry_after() -> None:
    reject = _reject(HTTPStatus.TOO_MANY_REQUESTS, {"Retry-After": "7"})
    async with ws_server(_never, process_request=reject) as url:
        with pytest.raises(GenesysRateLimited) as info:
            await connector().connect(url, origin=None)
    assert info.value.retry_after_s == 7.0


async def test_connect_refused_is_unavailable() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(GenesysUnavailable) as info:
        await connector().connect(f"ws://127.0.0.1:{port}/v1?deploymentId=x", origin=None)
    assert is_retryable(info.value)


@pytest.mark.looptime
async def test_open_timeout_is_unavailable() -> None:
    """A server that accepts TCP and never answers the upgrade: virtual time runs the timeout out."""
    accepted = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        accepted.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        slow = WebsocketsConnector(open_timeout_s=5.0, proxy=None)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(GenesysUnavailable, match="timed out"):
            await slow.connect(f"ws://127.0.0.1:{port}/v1", origin=None)
        assert loop.time() - start == pytest.approx(5.0, abs=0.5)
        assert accepted.is_set()
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_frames_larger_than_max_size_drop_the_socket() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("x" * 2048)
        await ws.wait_closed()

    async with ws_server(handler) as url:
        small = WebsocketsConnector(max_size=1024, proxy=None)
        conn = await small.connect(url, origin=None)
        with pytest.raises(GenesysUnavailable) as info:
            await drain(conn)
        await conn.close()
    assert info.value.close_code == 1009  # message too big


async def test_from_settings_uses_the_ws_settings() -> None:
    settings = Settings(ws_connect_timeout_s=3.0)
    built = WebsocketsConnector.from_settings(settings)
    assert built.open_timeout_s == 3.0
    assert built.max_size == 64 * 1024
    assert "open_timeout_s=3.0" in repr(built)


async def test_a_ping_returns_once_its_pong_came_back() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with ws_server(handler) as url:
        conn = await connector().connect(url, origin=None)
        await conn.ping(5.0)
        await conn.ping(None)  # sent, not waited for
        await conn.close()
        with pytest.raises(GenesysUnavailable):
            await conn.ping(5.0)


@pytest.mark.looptime
async def test_a_ping_to_a_peer_that_stopped_reading_times_out() -> None:
    async def handler(ws: ServerConnection) -> None:
        ws.transport.pause_reading()  # a peer that hangs: our ping is never read, no pong comes
        await ws.wait_closed()

    async with ws_server(handler) as url:
        conn = await connector().connect(url, origin=None)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TimeoutError):
            await conn.ping(20.0)
        assert loop.time() - start == pytest.approx(20.0, abs=0.5)
        await conn.close()  # no closing handshake either: it gives up after its close timeout
