"""GenesysRest: httpx.MockTransport (httpx's own injected transport seam) plus a real aiohttp server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from aiohttp import web

from bridge.errors import (
    CommandRejected,
    GenesysProtocolError,
    GenesysRateLimited,
    GenesysRejected,
    GenesysUnavailable,
    is_retryable,
)
from bridge.genesys.fetch_policy import FetchPolicy
from bridge.genesys.rest import DEFAULT_USER_AGENT, GenesysRest, safe_url
from bridge.genesys.translate import MAX_RETRY_AFTER_S

JWT = "eyJhbGciOi.secret-jwt.sig"
PRESIGNED = "https://uploads.example.com/bucket/abc?X-Amz-Signature=deadbeef&X-Amz-Credential=AKIA"

ENTITY = {
    "id": "5befde6373a23f32f20b59b4e1cba0e6",
    "channel": {"time": "2026-11-26T10:00:00.000Z", "messageId": "m1", "from": {"nickname": "Ann"}},
    "type": "Text",
    "text": "hello",
    "direction": "Outbound",
    "originatingEntity": "Human",
    "futureField": {"kept": True},
}


async def public_dns(host: str, port: int) -> list[str]:
    """Every name is at a public address (the mock transport never resolves anything itself)."""
    return ["93.184.216.34"]


def rest_with(handler: Callable[[httpx.Request], httpx.Response]) -> GenesysRest:
    return GenesysRest(transport=httpx.MockTransport(handler), fetch_policy=FetchPolicy(resolve=public_dns))


async def test_fetch_history_request_and_parse() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = {"entities": [ENTITY, "not-an-object"], "pageSize": 25, "pageNumber": 2, "total": 26, "pageCount": 2}
        return httpx.Response(200, json=body)

    async with rest_with(handler) as rest:
        page = await rest.fetch_history(
            "https://api.mypurecloud.com/", JWT, page_number=2, page_size=25, origin="https://app.example.com"
        )

    (request,) = seen
    assert request.method == "GET"
    assert request.url.path == "/api/v2/webmessaging/messages"
    assert dict(request.url.params) == {"pageSize": "25", "pageNumber": "2"}
    assert request.headers["Authorization"] == f"Bearer {JWT}"
    assert request.headers["Origin"] == "https://app.example.com"
    assert request.headers["User-Agent"] == DEFAULT_USER_AGENT
    assert (page.page_size, page.page_number, page.total, page.page_count, page.skipped) == (25, 2, 26, 2, 1)
    (message,) = page.entities
    assert message.id == ENTITY["id"]
    assert message.text == "hello"
    assert message.channel is not None
    assert message.channel.time == "2026-11-26T10:00:00.000Z"
    assert message.model_extra == {"futureField": {"kept": True}}


async def test_history_text_cut_inside_an_emoji_comes_back_with_a_replacement_character() -> None:
    entity = {**ENTITY, "id": "5befde63\udc00", "text": "see you \ud83d"}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, text=json.dumps({"entities": [entity]}), headers={"Content-Type": "application/json"}
        )

    async with rest_with(handler) as rest:
        page = await rest.fetch_history("https://api.mypurecloud.com/", JWT, page_number=1, page_size=25, origin=None)
    (message,) = page.entities
    assert (message.id, message.text) == ("5befde63\ufffd", "see you \ufffd")


async def test_a_surrogate_encoded_as_if_it_were_a_character_comes_back_replaced() -> None:
    # Not UTF-8, but Python's JSON decoder lets it through as U+D83D.
    body = b'{"entities":[{"id":"m1","type":"Text","text":"see you \xed\xa0\xbd"}]}'

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})

    async with rest_with(handler) as rest:
        page = await rest.fetch_history("https://api.mypurecloud.com/", JWT, page_number=1, page_size=25, origin=None)
    assert page.entities[0].text == "see you \ufffd"


async def test_a_refusal_whose_message_holds_half_a_surrogate_pair_is_reported_readably() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, text='{"message":"bad \\ud83d"}', headers={"Content-Type": "application/json"})

    async with rest_with(handler) as rest:
        with pytest.raises(GenesysRejected) as info:
            await rest.fetch_history("https://api.mypurecloud.com/", JWT, page_number=1, page_size=25, origin=None)
    assert "bad \ufffd" in str(info.value)


@pytest.mark.parametrize("body", [b"[" * 5000 + b"]" * 5000, b'{"total":' + b"7" * 5000 + b"}"])
async def test_a_body_python_cannot_decode_is_a_protocol_error(body: bytes) -> None:
    # Nested past the recursion limit, or an integer past Python's 4,300 digits: neither leaks as itself.
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})

    async with rest_with(handler) as rest:
        with pytest.raises(GenesysProtocolError):
            await rest.fetch_history("https://api.mypurecloud.com/", JWT, page_number=1, page_size=25, origin=None)


async def test_fetch_history_with_the_default_origin_and_missing_counts() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"entities": [ENTITY, ENTITY]})

    async with rest_with(handler) as rest:
        page = await rest.fetch_history("http://127.0.0.1:9000", JWT, page_number=1, page_size=25, origin=None)
    assert seen[0].headers["Origin"] == "127.0.0.1"  # the SDK's own value: the REST host without `api.`
    assert str(seen[0].url).startswith("http://127.0.0.1:9000/api/v2/webmessaging/messages?")
    assert (len(page.entities), page.page_number, page.page_size, page.total, page.page_count) == (2, 1, 25, 2, 1)


async def test_fetch_history_sends_the_region_domain_as_origin_like_the_sdk() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"entities": []})

    async with rest_with(handler) as rest:
        await rest.fetch_history("https://api.mypurecloud.ie", JWT, page_number=1, page_size=25, origin=None)
    assert seen[0].headers["Origin"] == "mypurecloud.ie"


@pytest.mark.parametrize("status", [401, 403, 404, 400])
async def test_4xx_is_rejected_without_leaking_the_jwt(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"message": "JWT expired", "code": "bad.credentials"})

    async with rest_with(handler) as rest:
        with pytest.raises(GenesysRejected) as info:
            await rest.fetch_history("https://api.x.com", JWT, page_number=1, page_size=25, origin=None)
    assert info.value.code == status
    assert "JWT expired" in str(info.value)
    assert JWT not in str(info.value)
    assert "pageSize" not in str(info.value)
    assert not is_retryable(info.value)


async def test_429_is_rate_limited_with_retry_after() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "12"})

    async with rest_with(handler) as rest:
        with pytest.raises(GenesysRateLimited) as info:
            await rest.fetch_history("https://api.x.com", JWT, page_number=1, page_size=25, origin=None)
    assert info.value.retry_after_s == 12.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 3.0),
        ({"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, 3.0),
        ({"Retry-After": "-5"}, 0.0),
        ({"Retry-After": "inf"}, 3.0),
        ({"Retry-After": "86400"}, MAX_RETRY_AFTER_S),
    ],
    ids=["absent", "http-date", "negative", "infinite", "a-day"],
)
async def test_429_retry_after_absent_or_a_date_waits_3_s_and_never_below_0(
    headers: dict[str, str], expected: float
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers=headers)

    async with rest_with(handler) as rest:
        with pytest.raises(GenesysRateLimited) as info:
            await rest.fetch_history("https://api.x.com", JWT, page_number=1, page_size=25, origin=None)
    assert info.value.retry_after_s == expected


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_unavailable(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status)

    async with rest_with(handler) as rest:
        with pytest.raises(GenesysUnavailable) as info:
            await rest.fetch_deployment_config("https://api-cdn.x.com/webdeployments/v1/deployments/d/config.json")
    assert is_retryable(info.value)


@pytest.mark.parametrize(
    "error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("eof")]
)
async def test_transport_errors_are_unavailable_and_hide_the_query(error: httpx.HTTPError) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    async with rest_with(handler) as rest:
        with pytest.raises(GenesysUnavailable) as info:
            await rest.upload(PRESIGNED, {}, b"data", "image/png")
    assert "uploads.example.com/bucket/abc" in str(info.value)
    assert "Signature" not in str(info.value)
    assert "deadbeef" not in str(info.value)


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]"])
async def test_body_that_is_not_a_json_object_is_a_protocol_error(body: bytes) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    async with rest_with(handler) as rest:
        with pytest.raises(GenesysProtocolError):
            await rest.fetch_deployment_config("https://api-cdn.x.com/config.json")


async def test_history_entities_not_a_list_is_a_protocol_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"entities": {"oops": 1}})

    async with rest_with(handler) as rest:
        with pytest.raises(GenesysProtocolError):
            await rest.fetch_history("https://api.x.com", JWT, page_number=1, page_size=25, origin=None)


async def test_upload_puts_bytes_with_every_presign_header_and_content_type() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async with rest_with(handler) as rest:
        await rest.upload(PRESIGNED, {"x-amz-tagging": "a=b", "x-amz-meta-id": "42"}, b"\x89PNG", "image/png")

    (request,) = seen
    assert request.method == "PUT"
    assert str(request.url) == PRESIGNED
    assert request.headers["x-amz-tagging"] == "a=b"
    assert request.headers["x-amz-meta-id"] == "42"
    assert request.headers["Content-Type"] == "image/png"
    assert request.content == b"\x89PNG"


async def test_upload_403_is_rejected_and_does_not_quote_the_s3_body() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        xml = b"<Error><Code>SignatureDoesNotMatch</Code><StringToSign>deadbeef</StringToSign></Error>"
        return httpx.Response(403, content=xml, headers={"Content-Type": "application/xml"})

    async with rest_with(handler) as rest:
        with pytest.raises(GenesysRejected) as info:
            await rest.upload(PRESIGNED, {}, b"x", "text/plain")
    assert info.value.code == 403
    assert "deadbeef" not in str(info.value)
    assert "X-Amz" not in str(info.value)


async def test_fetch_deployment_config_returns_the_json() -> None:
    config = {"id": "d", "messenger": {"apps": {"conversations": {"conversationClear": {"enabled": True}}}}}

    def handler(request: httpx.Request) -> httpx.Response:
        assert "Authorization" not in request.headers  # public JSON, §2.2
        return httpx.Response(200, json=config)

    async with rest_with(handler) as rest:
        assert await rest.fetch_deployment_config("https://api-cdn.x.com/config.json") == config


async def test_fetch_bytes_refuses_a_declared_length_over_the_limit() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"x" * 100)

    async with rest_with(handler) as rest:
        with pytest.raises(CommandRejected) as info:
            await rest.fetch_bytes("https://files.example.com/a.png?token=s3cr3t", max_bytes=10)
        assert info.value.reason == "too_large"
        assert "s3cr3t" not in str(info.value)
        assert await rest.fetch_bytes("https://files.example.com/a.png", max_bytes=100) == b"x" * 100


async def test_fetch_bytes_http_errors_are_mapped() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"message": "gone"})

    async with rest_with(handler) as rest:
        with pytest.raises(GenesysRejected) as info:
            await rest.fetch_bytes("https://files.example.com/a.png", max_bytes=10)
    assert info.value.code == 404


async def test_safe_url_drops_query_and_user_info() -> None:
    assert safe_url("https://u:p@h.example.com:8443/a/b?X-Amz-Signature=1#f") == "https://h.example.com:8443/a/b"


# --- a real server: the streaming abort must not wait for (or buffer) the whole body ----------------


@pytest.fixture
async def endless_server() -> AsyncIterator[str]:
    """``/endless`` streams 1 KiB chunks without a Content-Length and never finishes on its own (the
    handler is cancelled when the client goes away); ``/small`` returns 3 bytes. Yields the base URL."""

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        while True:  # each write drains to the socket: a client that stops reading stops us
            await response.write(b"x" * 1024)

    async def small(request: web.Request) -> web.Response:
        return web.Response(body=b"abc")

    app = web.Application()
    app.router.add_get("/endless", endless)
    app.router.add_get("/small", small)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_fetch_bytes_aborts_a_stream_past_max_bytes(endless_server: str) -> None:
    base = endless_server
    async with GenesysRest(fetch_policy=FetchPolicy(allow_private=True)) as rest:  # the server is on 127.0.0.1
        assert await rest.fetch_bytes(f"{base}/small", max_bytes=3) == b"abc"
        with pytest.raises(CommandRejected) as info:
            await rest.fetch_bytes(f"{base}/endless", max_bytes=8 * 1024)
    assert info.value.reason == "too_large"
