"""aiohttp handlers: the guest WebSocket (§2.1), REST history (§9), the authentication token endpoints
(§4.2), upload/download targets (§4.6) and the public deployment ``config.json`` (§2.2). They translate
HTTP to engine calls and back, nothing more.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any, TypeGuard

from aiohttp import WSMsgType, web

from bridge.simulator.attachments import PRESIGN_HEADER, complete_upload
from bridge.simulator.auth import JwtState
from bridge.simulator.connection import Connection
from bridge.simulator.engine import Engine
from bridge.simulator.limits import per_minute
from bridge.simulator.wire import error

__all__ = ["CONNECTIONS", "ENGINE", "add_routes"]

ENGINE = web.AppKey("engine", Engine)
CONNECTIONS = web.AppKey("connections", set[Connection])

_READ_CHUNK = 64 * 1024


def _platform_error(status: int, message: str, code: str) -> web.Response:
    """A Platform-API-style error body."""
    return web.json_response({"message": message, "code": code, "status": status}, status=status)


async def websocket(request: web.Request) -> web.StreamResponse:
    """``GET /v1?deploymentId=…``: upgrade checks, then one reader loop and one writer task per socket."""
    engine = request.app[ENGINE]
    cfg = engine.config
    deployment_id = request.query.get("deploymentId", "")
    origin = request.headers.get("Origin")
    if not deployment_id:
        return web.Response(status=400, text="deploymentId is required")
    if not engine.deployment_known(deployment_id) and cfg.unknown_deployment_mode == "upgrade_403":
        return web.Response(status=403, text="Deployment not found")
    if cfg.origin_check == "upgrade" and not engine.origin_allowed(origin):
        return web.Response(status=403, text="Origin not allowed")
    if not engine.take_connection_slot(deployment_id):
        return web.Response(
            status=429, text="Too many connections for this deployment", headers={"Retry-After": str(cfg.retry_after_s)}
        )
    ws = web.WebSocketResponse(compress=cfg.compression, max_msg_size=cfg.max_frame_bytes, heartbeat=None)
    if not ws.can_prepare(request).ok:
        return web.Response(status=400, text="WebSocket upgrade expected")
    await ws.prepare(request)
    transport = request.transport

    def abort() -> None:
        if transport is not None:
            transport.abort()

    conn = Connection(
        conn_id=engine.next_connection_id(),
        deployment_id=deployment_id,
        origin=origin,
        socket=ws,
        abort=abort,
        max_frames=cfg.outbox_max_frames,
        faults=lambda: engine.connection_faults(conn),
        rng=engine.rng,
        flush_s=cfg.reorder_flush_s,
        echo_bucket=per_minute(cfg.echo_per_min, engine.clock),
        request_bucket=per_minute(cfg.requests_per_connection_per_min, engine.clock),
    )
    connections = request.app[CONNECTIONS]
    connections.add(conn)
    async with asyncio.TaskGroup() as tasks:
        writer = tasks.create_task(conn.run_writer(), name=f"sim-writer-{conn.conn_id}")
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    engine.handle_text(conn, message.data)
                elif message.type is WSMsgType.BINARY:
                    engine.reply(conn, error(400, "Request failed."))  # §3: text frames only
        finally:
            connections.discard(conn)
            engine.connection_gone(conn)
            if not conn.close_queued:
                writer.cancel()  # otherwise it finishes the close handshake it started
    return ws


async def history(request: web.Request) -> web.Response:
    """``GET /api/v2/webmessaging/messages``: the session's messages, newest first, paged (§9)."""
    engine = request.app[ENGINE]
    cfg = engine.config
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    claims = engine.jwt.verify(token.strip(), time.time()) if scheme.lower() == "bearer" else None
    if claims is None:
        return _platform_error(401, "Authentication failed: missing, invalid or expired JWT", "bad.credentials")
    session = engine.find(session_id=str(claims.get("sid")))
    if session is None:
        return _platform_error(404, "Session not found", "not.found")
    try:
        page_size = int(request.query.get("pageSize", cfg.history_page_size))
        page_number = int(request.query.get("pageNumber", 1))
    except ValueError:
        return _platform_error(400, "pageSize and pageNumber must be integers", "bad.request")
    if page_size < 1 or page_number < 1:
        return _platform_error(400, "pageSize and pageNumber must be positive", "bad.request")
    if session.history_bucket is not None and not session.history_bucket.try_take():
        response = _platform_error(429, "Rate limit exceeded the maximum", "too.many.requests")
        response.headers["Retry-After"] = str(cfg.retry_after_s)
        return response
    page_size = min(page_size, cfg.history_max_page_size)
    messages = session.history
    total = len(messages)
    end = total - (page_number - 1) * page_size  # newest first: page 1 is the tail of the list
    entities: list[dict[str, Any]] = messages[max(0, end - page_size) : end][::-1] if end > 0 else []
    body = {
        "entities": entities,
        "pageSize": page_size,
        "pageNumber": page_number,
        "total": total,
        "pageCount": math.ceil(total / page_size),
    }
    return web.json_response(body)


async def upload(request: web.Request) -> web.Response:
    """``PUT /uploads/<id>``: the presigned upload target. The presign header is required (§11.10)."""
    engine = request.app[ENGINE]
    attachment_id = request.match_info["attachment_id"]
    found = engine.uploads.get(attachment_id)
    if found is None:
        return web.Response(status=404, text="NoSuchUpload")
    tag = request.headers.get(PRESIGN_HEADER)
    if tag != found[1].upload_tag:
        return web.Response(status=403, text="AccessDenied: the presigned headers must be sent")
    limit = engine.config.max_file_bytes()
    chunks: list[bytes] = []
    size = 0
    too_big = False
    while chunk := await request.content.read(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            too_big = True
            break
        chunks.append(chunk)
    status = complete_upload(engine, attachment_id, tag, b"".join(chunks), too_big)
    return web.Response(status=status)


async def download(request: web.Request) -> web.Response:
    """``GET /downloads/<id>``: uploaded files and the agent's files."""
    blob = request.app[ENGINE].blobs.get(request.match_info["blob_id"])
    if blob is None:
        return web.Response(status=404, text="NoSuchKey")
    data, mime, name = blob
    return web.Response(body=data, content_type=mime, headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def deployment_config(request: web.Request) -> web.Response:
    """``/webdeployments/v1/deployments/<id>/config.json``: the public Messenger config (§2.2)."""
    engine = request.app[ENGINE]
    cfg = engine.config
    deployment_id = request.match_info["deployment_id"]
    if not engine.deployment_known(deployment_id):
        return web.Response(status=404, text="Not Found")
    base = engine.base_url()
    ws_base = "ws" + base.removeprefix("http")
    body = {
        "id": deployment_id,
        "version": "1",
        "languages": ["en-us"],
        "defaultLanguage": "en-us",
        "apiEndpoint": base,
        "status": "Active",
        "auth": {"enabled": cfg.auth_enabled, "allowSessionUpgrade": cfg.allow_session_upgrade},
        "journeyEvents": {"enabled": False},
        "messenger": {
            "enabled": True,
            "apps": {
                "conversations": {
                    "messagingEndpoint": ws_base,
                    "showAgentTypingIndicator": True,
                    "showUserTypingIndicator": cfg.typing_enabled,
                    "autoStart": {"enabled": cfg.autostart},
                    "conversationDisconnect": {
                        "enabled": cfg.disconnect_enabled,
                        "type": "ReadOnly" if cfg.disconnect_mode == "read_only" else "Send",
                    },
                    "conversationClear": {"enabled": cfg.clear_enabled},
                }
            },
            "styles": {"primaryColor": "#ff4f1f"},
            "launcherButton": {"visibility": "On"},
            "fileUpload": {
                "modes": [{"fileTypes": list(cfg.allowed_media), "maxFileSizeKB": cfg.max_file_size_kb}],
            },
        },
    }
    return web.json_response(body)


async def _json_object(request: web.Request) -> dict[str, Any] | None:
    """The request body as a JSON object, or None when it is not one."""
    try:
        body = json.loads(await request.read() or b"null")
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _nonempty(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)


def _bad_request(message: str) -> web.Response:
    return _platform_error(400, message, "bad.request")


def _token_response(jwt: str, refresh_token: str) -> web.Response:
    return web.json_response({"jwt": jwt, "refreshToken": refresh_token})


async def oauth_exchange(request: web.Request) -> web.Response:
    """``POST /api/v2/webdeployments/token/oauthcodegrantjwtexchange`` (§4.2 step 1): an authorization code
    (``code`` + ``redirectUri``, optional ``codeVerifier``) or an implicit-flow ``idToken`` + ``nonce``
    becomes ``{jwt, refreshToken}``."""
    engine = request.app[ENGINE]
    body = await _json_object(request)
    if body is None:
        return _bad_request("The request body must be a JSON object")
    deployment_id = body.get("deploymentId")
    oauth = body.get("oauth")
    if not _nonempty(deployment_id) or not isinstance(oauth, dict):
        return _bad_request("deploymentId and oauth are required")
    if _nonempty(oauth.get("code")):
        if not _nonempty(oauth.get("redirectUri")):
            return _bad_request("oauth.redirectUri is required with oauth.code")
        if oauth.get("codeVerifier") is not None and not isinstance(oauth.get("codeVerifier"), str):
            return _bad_request("oauth.codeVerifier must be a string")
        subject = str(oauth["code"])
    elif _nonempty(oauth.get("idToken")):
        if not _nonempty(oauth.get("nonce")):
            return _bad_request("oauth.nonce is required with oauth.idToken")
        subject = str(oauth["idToken"])
    else:
        return _bad_request("oauth.code or oauth.idToken is required")
    if not engine.deployment_known(deployment_id):
        return _bad_request("Deployment not found")
    if not engine.config.auth_enabled:
        return _platform_error(403, "Authentication is not enabled for this deployment", "forbidden")
    if engine.auth.refused(subject):
        return _platform_error(401, "Authentication failed: the identity provider refused the code", "bad.credentials")
    issued, grant = engine.auth.exchange(deployment_id, subject)
    engine.changed()
    return _token_response(issued.jwt, grant.refresh_token)


async def refresh_token(request: web.Request) -> web.Response:
    """``POST /api/v2/webdeployments/token/refresh`` (§4.2 step 3): a new JWT for a live refresh token; the
    refresh token stays the same."""
    engine = request.app[ENGINE]
    body = await _json_object(request)
    if body is None:
        return _bad_request("The request body must be a JSON object")
    token = body.get("refreshToken")
    deployment_id = body.get("deploymentId")
    if not _nonempty(token) or (deployment_id is not None and not isinstance(deployment_id, str)):
        return _bad_request("refreshToken is required")
    refreshed = engine.auth.refresh(token, deployment_id)
    engine.changed()
    if refreshed is None:
        return _platform_error(401, "Refresh token is invalid, revoked or expired", "bad.credentials")
    issued, grant = refreshed
    return _token_response(issued.jwt, grant.refresh_token)


async def revoke_token(request: web.Request) -> web.Response:
    """``DELETE /api/v2/webdeployments/token/revoke`` with ``Authorization: bearer <jwt>`` (§4.2 step 4): log
    the JWT's identity out everywhere; its connections get ``LogoutEvent``."""
    engine = request.app[ENGINE]
    scheme, _, jwt = request.headers.get("Authorization", "").partition(" ")
    issued = engine.auth.lookup(jwt.strip()) if scheme.lower() == "bearer" else None
    # Like any bearer-authenticated Platform call, an expired or already revoked JWT is refused too.
    if issued is None or engine.auth.state(issued) is not JwtState.VALID:
        return _platform_error(
            401, "Authentication failed: missing, invalid, expired or revoked JWT", "bad.credentials"
        )
    engine.logout(issued.identity)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    """Register the Genesys-facing routes (the control API registers its own)."""
    app.router.add_get("/v1", websocket)
    app.router.add_get("/api/v2/webmessaging/messages", history)
    app.router.add_post("/api/v2/webdeployments/token/oauthcodegrantjwtexchange", oauth_exchange)
    app.router.add_post("/api/v2/webdeployments/token/refresh", refresh_token)
    app.router.add_delete("/api/v2/webdeployments/token/revoke", revoke_token)
    app.router.add_put("/uploads/{attachment_id}", upload)
    app.router.add_get("/downloads/{blob_id}", download)
    app.router.add_get("/webdeployments/v1/deployments/{deployment_id}/config.json", deployment_config)
