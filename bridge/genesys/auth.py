"""Authenticated web messaging over REST, pure: request bodies, token responses, JWT expiry (§4.2).

The I/O is :class:`bridge.genesys.rest.GenesysRest`; the session's use of it is
:class:`bridge.session.auth.Credentials`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from bridge.errors import GenesysProtocolError
from genesys_bridge_client.contract.commands import AuthCodeGrant, SessionAuth

__all__ = [
    "AUTH_FORBIDDEN",
    "DOWNGRADE_REFUSED",
    "EXCHANGE_PATH",
    "REFRESH_PATH",
    "REVOKE_PATH",
    "UNAUTHORIZED",
    "Tokens",
    "exchange_body",
    "jwt_expiry",
    "parse_tokens",
    "refuses_authentication",
]

EXCHANGE_PATH: Final = "/api/v2/webdeployments/token/oauthcodegrantjwtexchange"
REFRESH_PATH: Final = "/api/v2/webdeployments/token/refresh"
REVOKE_PATH: Final = "/api/v2/webdeployments/token/revoke"
#: "User is unauthorized" (§6): the JWT expired. Renew it and configure again; Genesys' SDK tries 3 times.
UNAUTHORIZED: Final = 401
#: 4017: a token that was authenticated cannot be configured anonymously (§4.1, §6).
DOWNGRADE_REFUSED: Final = 4017
#: 403 to an authenticated configure: "Session authentication failed" / "Try to authenticate again" (§4.2).
AUTH_FORBIDDEN: Final = 403


def refuses_authentication(code: int, *, authenticated: bool) -> bool:
    """True when a configure refused with ``code`` is an authentication failure that a new JWT cannot fix:
    the customer must sign in again (403 to an authenticated configure), or an authenticated token was
    configured anonymously (4017). Final: the session ends ``auth_failed``."""
    return code == DOWNGRADE_REFUSED or (authenticated and code == AUTH_FORBIDDEN)


@dataclass(frozen=True, slots=True)
class Tokens:
    """A Genesys JWT (what ``configureAuthenticatedSession`` carries) and the refresh token that renews it.
    Both are secrets: never logged (``repr`` hides them), never published, encrypted at rest."""

    jwt: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime | None = None  # from the JWT's ``exp``; None when it does not say


def exchange_body(deployment_id: str, grant: SessionAuth) -> dict[str, Any]:
    """The ``oauthcodegrantjwtexchange`` body for ``grant`` (§4.2 step 1)."""
    if isinstance(grant, AuthCodeGrant):
        oauth: dict[str, str] = {"code": grant.code, "redirectUri": grant.redirect_uri}
        if grant.code_verifier is not None:
            oauth["codeVerifier"] = grant.code_verifier
    else:
        oauth = {"idToken": grant.id_token, "nonce": grant.nonce}
    return {"deploymentId": deployment_id, "oauth": oauth}


def parse_tokens(body: dict[str, Any], *, previous_refresh_token: str | None = None) -> Tokens:
    """Tokens from an exchange or refresh answer ``{"jwt": ..., "refreshToken": ...}``. A refresh answer
    without a refresh token keeps ``previous_refresh_token`` (Genesys may renew only the JWT).

    Raises:
        GenesysProtocolError: no JWT, or no refresh token and none to keep.
    """
    jwt = body.get("jwt")
    refresh = body.get("refreshToken") or previous_refresh_token
    if not isinstance(jwt, str) or not jwt:
        raise GenesysProtocolError("token answer without a jwt")
    if not isinstance(refresh, str) or not refresh:
        raise GenesysProtocolError("token answer without a refreshToken")
    return Tokens(jwt=jwt, refresh_token=refresh, expires_at=jwt_expiry(jwt))


def jwt_expiry(jwt: str) -> datetime | None:
    """The ``exp`` claim of ``jwt``, read without verifying it (the bridge only schedules the refresh by it;
    Genesys verifies). None when ``jwt`` is not a JWT or has no numeric ``exp``."""
    parts = jwt.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError, RecursionError):  # RecursionError: a payload nested too deeply
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return None
    try:
        return datetime.fromtimestamp(exp, UTC)
    except (OverflowError, OSError, ValueError):
        return None
