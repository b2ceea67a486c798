"""The Genesys REST adapter: history (§9), presigned attachment upload (§4.6), deployment config (§2.2).

The only module that imports httpx. One shared :class:`httpx.AsyncClient` (connection pool) serves
every session. httpx errors are mapped to the bridge's tree once, here:

=================================================  ===========================================
what happened                                      raised
=================================================  ===========================================
connect/read/write error, timeout, 5xx             ``GenesysUnavailable`` (retryable)
429                                                ``GenesysRateLimited`` (``Retry-After``, §8)
any other 4xx (401 expired JWT, 403, 404 ...)      ``GenesysRejected(status, detail)`` (final)
a 2xx body that is not the JSON we expect          ``GenesysProtocolError``
``fetch_bytes`` body larger than ``max_bytes``     ``CommandRejected("too_large", ...)``
``fetch_bytes`` URL or hop refused by the policy   ``CommandRejected("attachment_failed", ...)``
=================================================  ===========================================

``fetch_bytes`` downloads a URL a command names, so it applies a
:class:`bridge.genesys.fetch_policy.FetchPolicy` (no internal addresses by default) to the URL and to
every redirect hop, which it follows itself.

Secrets: presigned URLs carry their signature in the query string and history calls carry a JWT, so
nothing here ever logs or puts in an exception message a query string or an ``Authorization`` header;
URLs are described as ``scheme://host/path`` only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

import httpx
import structlog
from pydantic import ValidationError

import bridge
from bridge.errors import (
    CommandRejected,
    GenesysAuthFailed,
    GenesysProtocolError,
    GenesysRateLimited,
    GenesysRejected,
    GenesysUnavailable,
)
from bridge.genesys import wire_json
from bridge.genesys.auth import EXCHANGE_PATH, REFRESH_PATH, REVOKE_PATH, Tokens, exchange_body, parse_tokens
from bridge.genesys.fetch_policy import FetchPolicy, refuse
from bridge.genesys.frames import StructuredMessage
from bridge.genesys.translate import retry_after_header
from bridge.genesys.urls import history_sdk_origin
from genesys_bridge_client.contract.commands import SessionAuth

__all__ = ["DEFAULT_USER_AGENT", "GenesysRest", "HistoryPage", "safe_url"]

_log = structlog.get_logger(__name__)

DEFAULT_USER_AGENT = f"genesys-bridge/{bridge.__version__}"

#: Error details quote at most this much of a JSON error message.
_DETAIL_CHARS = 200


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of ``GET /api/v2/webmessaging/messages`` (§9). Page 1 holds the newest messages.

    ``skipped`` counts entities that were not objects and could not be read (lenient parsing: one odd
    entity never loses the page).
    """

    entities: tuple[StructuredMessage, ...]
    page_size: int
    page_number: int
    total: int
    page_count: int
    skipped: int = 0


def safe_url(url: httpx.URL | str) -> str:
    """``scheme://host[:port]/path`` of ``url``: no query string (signatures, tokens), no user info."""
    u = httpx.URL(url)
    port = f":{u.port}" if u.port is not None else ""
    return f"{u.scheme}://{u.host}{port}{u.path}"


class GenesysRest:
    """Genesys REST calls over one shared connection pool. Build one per process; ``aclose`` at shutdown.

    Args:
        timeout_s: read/write/pool timeout of every request.
        connect_timeout_s: TCP + TLS connect timeout.
        max_connections: pool size across all sessions (history backfill after a mass reconnect is
            the burst to size for).
        max_keepalive_connections: idle connections kept open.
        user_agent: ``User-Agent`` header on every request.
        transport: an httpx transport to use instead of the network (tests use ``httpx.MockTransport``).
        fetch_policy: which attachment URLs :meth:`fetch_bytes` may download; the default refuses
            every non-public address (build it from settings with :meth:`FetchPolicy.of`).
    """

    def __init__(
        self,
        *,
        timeout_s: float = 15.0,
        connect_timeout_s: float = 5.0,
        max_connections: int = 100,
        max_keepalive_connections: int = 20,
        user_agent: str = DEFAULT_USER_AGENT,
        transport: httpx.AsyncBaseTransport | None = None,
        fetch_policy: FetchPolicy | None = None,
    ) -> None:
        self._fetch_policy = fetch_policy if fetch_policy is not None else FetchPolicy()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_keepalive_connections),
            headers={"User-Agent": user_agent},
            transport=transport,
            follow_redirects=False,  # presigned PUTs and bearer GETs must not be replayed elsewhere
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool. Idempotent."""
        await self._client.aclose()

    async def fetch_history(
        self, rest_base: str, jwt: str, *, page_number: int, page_size: int, origin: str | None
    ) -> HistoryPage:
        """Fetch one history page (§9): newest messages on page 1.

        Args:
            rest_base: ``https://api.<domain>`` or the override base, without a trailing path.
            jwt: from ``getJwt`` (§4.5); the session token is NOT a bearer token (§11.9).
            origin: sent as ``Origin`` (from :func:`bridge.genesys.urls.resolve_origin`). ``None`` sends
                what Genesys' mobile SDK sends, the region domain
                (:func:`bridge.genesys.urls.history_sdk_origin`, §2.3).

        Raises:
            GenesysRejected: 401 when the JWT expired (fetch a new one), other 4xx.
            GenesysRateLimited: 429 (10 history GETs/min/session, §8).
            GenesysUnavailable: network trouble or 5xx.
            GenesysProtocolError: the body is not a history page.
        """
        headers = {
            "Authorization": f"Bearer {jwt}",
            "Accept": "application/json",
            "Origin": origin or history_sdk_origin(rest_base),
        }
        url = rest_base.rstrip("/") + "/api/v2/webmessaging/messages"
        params = {"pageSize": page_size, "pageNumber": page_number}
        response = await self._send("GET", url, headers=headers, params=params)
        return _parse_history(_json_object(response), page_number=page_number, page_size=page_size)

    async def upload(self, url: str, headers: Mapping[str, str], content: bytes, content_type: str) -> None:
        """PUT ``content`` to a presigned upload URL (§4.6 step 3).

        Every presign header is sent as given (e.g. ``x-amz-tagging``; a signed URL rejects the PUT
        without them, §11.10), plus ``Content-Type``. Success is any 2xx; Genesys then announces
        ``UploadSuccessEvent``/``UploadFailureEvent`` on the socket.

        Raises:
            GenesysRejected: 4xx (expired or tampered signature answers 403).
            GenesysUnavailable: network trouble or 5xx.
        """
        request_headers = {**headers, "Content-Type": content_type}
        await self._send("PUT", url, headers=request_headers, content=content)

    async def fetch_bytes(self, url: str, *, max_bytes: int) -> bytes:
        """Download ``url`` (an attachment source a command named) streamed, refusing bodies larger than
        ``max_bytes`` and any URL the fetch policy refuses.

        The body is never held beyond ``max_bytes``: a larger ``Content-Length`` is refused before
        reading, and a stream that grows past the limit is aborted at once. Redirects are followed here,
        hop by hop, up to the policy's ``max_redirects``: each hop's URL and resolved addresses are checked
        before it is requested, and the address actually connected to before its body is read.

        Raises:
            CommandRejected: ``too_large`` when the body exceeds ``max_bytes``; ``attachment_failed`` when
                the policy refuses the URL, a redirect hop or the connected address, or there are too many
                redirects.
            GenesysRejected, GenesysRateLimited, GenesysUnavailable: as for every request (and
                ``GenesysUnavailable`` when a host name does not resolve).
        """
        policy = self._fetch_policy
        try:
            request = self._client.build_request("GET", url)
        except httpx.InvalidURL as exc:
            raise refuse("not a valid URL") from exc
        for _hop in range(policy.max_redirects + 1):
            await policy.check_url(str(request.url))
            where = safe_url(request.url)
            try:
                response = await self._client.send(request, stream=True, follow_redirects=False)
            except httpx.HTTPError as exc:
                raise _transport_error("GET", where, exc) from exc
            try:
                policy.check_peer(request.url.host, _peer_address(response))
                if response.next_request is not None:
                    request = response.next_request  # a 3xx with a Location: check it like the first URL
                    continue
                return await _read_limited(response, where, max_bytes)
            finally:
                await response.aclose()
        raise refuse(f"more than {policy.max_redirects} redirects")

    async def exchange_grant(
        self, rest_base: str, deployment_id: str, grant: SessionAuth, *, origin: str | None
    ) -> Tokens:
        """Exchange an OAuth code or ID token for a Genesys JWT and refresh token (§4.2 step 1).

        Raises:
            GenesysAuthFailed: the exchange was refused (4xx; its status is the code). Never retry blindly:
                an authorization code is good once.
            GenesysUnavailable: network trouble or 5xx.
            GenesysProtocolError: the answer holds no tokens.
        """
        body = json.dumps(exchange_body(deployment_id, grant)).encode()
        response = await self._auth_call("POST", rest_base, EXCHANGE_PATH, origin=origin, content=body)
        return parse_tokens(_json_object(response))

    async def refresh_jwt(
        self, rest_base: str, deployment_id: str, refresh_token: str, *, origin: str | None
    ) -> Tokens:
        """A new JWT for ``refresh_token`` (§4.2 step 3). Raises as :meth:`exchange_grant`."""
        body = json.dumps({"refreshToken": refresh_token, "deploymentId": deployment_id}).encode()
        response = await self._auth_call("POST", rest_base, REFRESH_PATH, origin=origin, content=body)
        return parse_tokens(_json_object(response), previous_refresh_token=refresh_token)

    async def revoke_jwt(self, rest_base: str, jwt: str, *, origin: str | None) -> None:
        """Revoke the session's tokens: Genesys logs every device of the customer out (§4.2 step 4).
        Raises as :meth:`exchange_grant`."""
        await self._auth_call("DELETE", rest_base, REVOKE_PATH, origin=origin, bearer=jwt)

    async def _auth_call(
        self,
        method: str,
        rest_base: str,
        path: str,
        *,
        origin: str | None,
        content: bytes | None = None,
        bearer: str | None = None,
    ) -> httpx.Response:
        headers = {"Accept": "application/json", "Origin": origin or history_sdk_origin(rest_base)}
        if content is not None:
            headers["Content-Type"] = "application/json"
        if bearer is not None:
            headers["Authorization"] = f"bearer {bearer}"
        try:
            return await self._send(method, rest_base.rstrip("/") + path, headers=headers, content=content)
        except GenesysRejected as exc:
            raise GenesysAuthFailed(exc.code, exc.detail) from exc

    async def fetch_deployment_config(self, config_url: str) -> dict[str, Any]:
        """Fetch a deployment's public ``config.json`` (§2.2; no auth). Redirects are followed (CDN).

        The fetch seam of :class:`bridge.genesys.deployment_config.DeploymentConfigs`, which parses,
        caches and backs off; call that instead of this.

        Raises:
            GenesysRejected: 404 for an unknown deployment, other 4xx.
            GenesysUnavailable: network trouble or 5xx.
            GenesysProtocolError: the body is not a JSON object.
        """
        response = await self._send("GET", config_url, headers={"Accept": "application/json"}, follow_redirects=True)
        return _json_object(response)

    async def _send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, int] | None = None,
        content: bytes | None = None,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        """One request with the error mapping applied. The response body is read."""
        where = safe_url(url)
        try:
            response = await self._client.request(
                method, url, headers=headers, params=params, content=content, follow_redirects=follow_redirects
            )
        except httpx.HTTPError as exc:
            raise _transport_error(method, where, exc) from exc
        _raise_for_status(response)
        return response


def _peer_address(response: httpx.Response) -> object:
    """The remote socket address of the connection that answered, or ``None`` (a test transport)."""
    stream = response.extensions.get("network_stream")
    get_extra_info = getattr(stream, "get_extra_info", None)
    return get_extra_info("server_addr") if callable(get_extra_info) else None


async def _read_limited(response: httpx.Response, where: str, max_bytes: int) -> bytes:
    """The body of a streamed ``response``, refused as ``too_large`` once past ``max_bytes``."""
    _raise_for_status(response)
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise CommandRejected("too_large", f"{where}: {declared} bytes is over the {max_bytes} limit")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise CommandRejected("too_large", f"{where}: body is over the {max_bytes} byte limit")
            chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise _transport_error("GET", where, exc) from exc
    return b"".join(chunks)


def _transport_error(method: str, where: str, exc: httpx.HTTPError) -> GenesysUnavailable:
    # httpx exception texts can include the full URL; we describe it ourselves instead.
    kind = type(exc).__name__
    return GenesysUnavailable(f"{method} {where} failed: {kind}")


def _raise_for_status(response: httpx.Response) -> None:
    status = response.status_code
    if status < 300:
        return
    where = f"{response.request.method} {safe_url(response.request.url)}"
    if status == 429:
        raise GenesysRateLimited(retry_after_header(response.headers.get("Retry-After")), where)
    if 300 <= status < 500:
        raise GenesysRejected(status, f"{where}: {status} {response.reason_phrase}{_error_message(response)}")
    raise GenesysUnavailable(f"{where}: {status} {response.reason_phrase}")


def _error_message(response: httpx.Response) -> str:
    """``": <message>"`` from a Genesys JSON error body, if there is one (never an S3 XML body: it
    quotes the signed request)."""
    if not response.headers.get("Content-Type", "").startswith("application/json"):
        return ""
    try:
        body = wire_json.loads(response.content)  # a streamed response that was not read raises ResponseNotRead
    except (ValueError, UnicodeDecodeError, RecursionError, httpx.ResponseNotRead):
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return f": {str(message)[:_DETAIL_CHARS]}" if message else ""


def _json_object(response: httpx.Response) -> dict[str, Any]:
    where = f"{response.request.method} {safe_url(response.request.url)}"
    try:
        body = wire_json.loads(response.content)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise GenesysProtocolError(f"{where}: body is not JSON") from exc
    if not isinstance(body, dict):
        raise GenesysProtocolError(f"{where}: body is not a JSON object")
    return body


def _int(body: Mapping[str, Any], key: str, default: int) -> int:
    value = body.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _parse_history(body: dict[str, Any], *, page_number: int, page_size: int) -> HistoryPage:
    """``WebMessagingMessageEntityList`` (§9), read leniently: missing counts default sensibly."""
    raw = body.get("entities")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise GenesysProtocolError("history page: `entities` is not a list")
    entities: list[StructuredMessage] = []
    skipped = 0
    for item in raw:
        try:
            entities.append(StructuredMessage.model_validate(item))
        except ValidationError:
            skipped += 1
    if skipped:
        _log.warning("genesys_history_entities_skipped", skipped=skipped, page_number=page_number)
    size = _int(body, "pageSize", page_size)
    total = _int(body, "total", len(entities))
    page_count = _int(body, "pageCount", -(-total // size) if size > 0 else 0)
    return HistoryPage(
        entities=tuple(entities),
        page_size=size,
        page_number=_int(body, "pageNumber", page_number),
        total=total,
        page_count=page_count,
        skipped=skipped,
    )
