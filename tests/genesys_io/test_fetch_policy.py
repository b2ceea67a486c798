"""Attachment downloads refuse internal addresses (request forgery), on every redirect hop.

``httpx.MockTransport`` plays public hosts (a fake resolver says where names point); a real aiohttp
server on 127.0.0.1 checks the refusal of a loopback address end to end, and the peer-address check
against a resolver that lies (DNS rebinding).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from aiohttp import web

from bridge.config import Settings
from bridge.errors import CommandRejected, GenesysUnavailable
from bridge.genesys.fetch_policy import FetchPolicy, address_problem
from bridge.genesys.rest import GenesysRest

DNS = {
    "files.example.com": ["93.184.216.34"],
    "cdn.example.net": ["151.101.1.1", "2a04:4e42::1"],
    "metadata.internal": ["169.254.169.254"],
    "sneaky.example.com": ["93.184.216.34", "10.0.0.7"],  # one private answer among public ones
    "mapped.example.com": ["::ffff:127.0.0.1"],
}


async def fake_dns(host: str, port: int) -> list[str]:
    if host not in DNS:
        raise GenesysUnavailable(f"GET {host}: name resolution failed")
    return DNS[host]


def mock_rest(
    handler: Callable[[httpx.Request], httpx.Response], **policy: object
) -> tuple[GenesysRest, list[httpx.URL]]:
    seen: list[httpx.URL] = []

    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return handler(request)

    rest = GenesysRest(
        transport=httpx.MockTransport(recording),
        fetch_policy=FetchPolicy(resolve=fake_dns, **policy),  # type: ignore[arg-type]
    )
    return rest, seen


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"png")


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fd00::1", "private"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-global"),
        ("::ffff:10.0.0.1", "private"),
        ("93.184.216.34", None),
        ("2a04:4e42::1", None),
    ],
)
def test_address_rules(address: str, problem: str | None) -> None:
    assert address_problem(address) == problem


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://169.254.169.254/latest/meta-data/iam?sig=s3cr3t", "link-local"),
        ("http://metadata.internal/computeMetadata/v1/?sig=s3cr3t", "link-local"),
        ("https://sneaky.example.com/a.png?sig=s3cr3t", "private"),
        ("https://mapped.example.com/a.png?sig=s3cr3t", "loopback"),
        ("http://[::1]:8080/admin?sig=s3cr3t", "loopback"),
        ("ftp://files.example.com/a.png?sig=s3cr3t", "scheme"),
        ("file:///etc/passwd?sig=s3cr3t", "scheme"),
    ],
)
async def test_internal_and_non_http_urls_are_refused_before_any_request(url: str, rule: str) -> None:
    rest, seen = mock_rest(ok)
    async with rest:
        with pytest.raises(CommandRejected) as info:
            await rest.fetch_bytes(url, max_bytes=100)
    assert seen == []
    assert info.value.reason == "attachment_failed"
    assert rule in info.value.detail
    assert "s3cr3t" not in str(info.value)  # names the rule and host, never the full URL


async def test_a_public_host_is_fetched() -> None:
    rest, seen = mock_rest(ok)
    async with rest:
        assert await rest.fetch_bytes("https://cdn.example.net/a.png", max_bytes=100) == b"png"
    assert [u.host for u in seen] == ["cdn.example.net"]


async def test_a_redirect_to_a_private_address_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "files.example.com":
            return httpx.Response(302, headers={"Location": "http://10.0.0.5:9000/internal?sig=s3cr3t"})
        return httpx.Response(200, content=b"secret")

    rest, seen = mock_rest(handler)
    async with rest:
        with pytest.raises(CommandRejected) as info:
            await rest.fetch_bytes("https://files.example.com/a.png", max_bytes=100)
    assert [u.host for u in seen] == ["files.example.com"]  # the internal hop was never requested
    assert info.value.reason == "attachment_failed"
    assert "private" in info.value.detail
    assert "s3cr3t" not in str(info.value)


async def test_public_redirects_are_followed_up_to_the_limit() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        hops = int(request.url.params.get("n", "0"))
        if hops < 3:
            return httpx.Response(307, headers={"Location": f"https://cdn.example.net/a.png?n={hops + 1}"})
        return httpx.Response(200, content=b"png")

    rest, seen = mock_rest(handler)
    async with rest:
        assert await rest.fetch_bytes("https://files.example.com/a.png", max_bytes=100) == b"png"
    assert len(seen) == 4

    rest, seen = mock_rest(handler, max_redirects=2)
    async with rest:
        with pytest.raises(CommandRejected) as info:
            await rest.fetch_bytes("https://files.example.com/a.png", max_bytes=100)
    assert len(seen) == 3
    assert "more than 2 redirects" in info.value.detail


async def test_the_host_allow_list_applies_to_every_hop() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "files.example.com":
            return httpx.Response(302, headers={"Location": "https://cdn.example.net/a.png"})
        return httpx.Response(200, content=b"png")

    policy = FetchPolicy.of(hosts=["Files.Example.com", " "])
    assert policy.hosts == frozenset({"files.example.com"})
    rest, seen = mock_rest(handler, hosts=policy.hosts)
    async with rest:
        with pytest.raises(CommandRejected) as info:
            await rest.fetch_bytes("https://files.example.com/a.png", max_bytes=100)
        assert "cdn.example.net is not in BRIDGE_ATTACHMENT_FETCH_HOSTS" in info.value.detail
        with pytest.raises(CommandRejected):
            await rest.fetch_bytes("https://cdn.example.net/a.png", max_bytes=100)
    assert [u.host for u in seen] == ["files.example.com"]


async def test_an_unresolvable_host_is_unavailable() -> None:
    rest, seen = mock_rest(ok)
    async with rest:
        with pytest.raises(GenesysUnavailable):
            await rest.fetch_bytes("https://nowhere.example.org/a.png", max_bytes=100)
    assert seen == []


def test_settings_read_the_policy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_ATTACHMENT_FETCH_HOSTS", "files.example.com, cdn.example.net")
    monkeypatch.setenv("BRIDGE_ATTACHMENT_FETCH_ALLOW_PRIVATE", "true")
    settings = Settings.load()
    policy = FetchPolicy.of(
        allow_private=settings.attachment_fetch_allow_private, hosts=settings.attachment_fetch_hosts
    )
    assert policy.allow_private
    assert policy.hosts == frozenset({"files.example.com", "cdn.example.net"})
    assert Settings.model_fields["attachment_fetch_allow_private"].default is False  # refused by default


# --- a real server on 127.0.0.1 -------------------------------------------------------------------------


@pytest.fixture
async def local_server() -> AsyncIterator[str]:
    """``/file`` returns 3 bytes; ``/hop`` redirects to ``/file``. Yields ``http://127.0.0.1:<port>``."""

    async def file(request: web.Request) -> web.Response:
        return web.Response(body=b"abc")

    async def hop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/file")

    app = web.Application()
    app.router.add_get("/file", file)
    app.router.add_get("/hop", hop)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_a_local_server_is_refused_by_default(local_server: str) -> None:
    async with GenesysRest() as rest:
        with pytest.raises(CommandRejected) as info:
            await rest.fetch_bytes(f"{local_server}/file", max_bytes=100)
    assert info.value.reason == "attachment_failed"
    assert "loopback" in info.value.detail
    assert "BRIDGE_ATTACHMENT_FETCH_ALLOW_PRIVATE" in info.value.detail


async def test_a_local_server_is_fetched_when_private_addresses_are_allowed(local_server: str) -> None:
    async with GenesysRest(fetch_policy=FetchPolicy.of(allow_private=True)) as rest:
        assert await rest.fetch_bytes(f"{local_server}/file", max_bytes=100) == b"abc"
        assert await rest.fetch_bytes(f"{local_server}/hop", max_bytes=100) == b"abc"


async def test_the_connected_address_is_checked_when_dns_lies(local_server: str) -> None:
    # DNS rebinding: the check's lookup says public, the connect's lookup says loopback. The address
    # actually connected to is refused before the body is read.
    port = local_server.rsplit(":", 1)[1]

    async def lying_dns(host: str, port: int) -> list[str]:
        return ["93.184.216.34"]

    async with GenesysRest(fetch_policy=FetchPolicy(resolve=lying_dns)) as rest:
        with pytest.raises(CommandRejected) as info:
            await rest.fetch_bytes(f"http://localhost:{port}/file", max_bytes=100)
    assert "loopback" in info.value.detail
