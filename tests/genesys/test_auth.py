"""Authenticated web messaging, the pure parts (§4.2): request bodies, token answers, JWT expiry, the
configure frame, and which refusals are final."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from bridge.errors import GenesysProtocolError
from bridge.genesys.auth import exchange_body, jwt_expiry, parse_tokens, refuses_authentication
from bridge.genesys.events import Configured, PendingRequest
from genesys_bridge_client.contract.commands import AuthCodeGrant, AuthImplicitGrant
from tests.genesys.driver import DEPLOYMENT, TOKEN, feed, new_protocol, sent


def _jwt(claims: dict[str, object]) -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256'})}.{part(claims)}.signature"


def test_exchange_bodies_for_both_grants() -> None:
    code = AuthCodeGrant(code="c0de", redirect_uri="https://x.example/cb", code_verifier="v" * 43)
    assert exchange_body("dep", code) == {
        "deploymentId": "dep",
        "oauth": {"code": "c0de", "redirectUri": "https://x.example/cb", "codeVerifier": "v" * 43},
    }
    implicit = AuthImplicitGrant(id_token="id.tok.en", nonce="n-1")
    assert exchange_body("dep", implicit) == {"deploymentId": "dep", "oauth": {"idToken": "id.tok.en", "nonce": "n-1"}}


def test_grants_never_show_their_secrets_in_a_repr() -> None:
    assert "c0de" not in repr(AuthCodeGrant(code="c0de", redirect_uri="https://x.example/cb"))
    assert "secret-id-token" not in repr(AuthImplicitGrant(id_token="secret-id-token", nonce="n"))


def test_token_answers_and_expiry() -> None:
    jwt = _jwt({"exp": 1_800_000_000, "sub": "u"})
    tokens = parse_tokens({"jwt": jwt, "refreshToken": "r1"})
    assert tokens.expires_at == datetime.fromtimestamp(1_800_000_000, UTC)
    assert "r1" not in repr(tokens)
    assert jwt not in repr(tokens)
    kept = parse_tokens({"jwt": jwt}, previous_refresh_token="r0")  # a refresh may renew the JWT only
    assert kept.refresh_token == "r0"
    with pytest.raises(GenesysProtocolError):
        parse_tokens({"refreshToken": "r1"})
    with pytest.raises(GenesysProtocolError):
        parse_tokens({"jwt": jwt})


@pytest.mark.parametrize(
    "jwt", ["opaque", "a.b", "a.!!!.c", _jwt({"sub": "no exp"}), _jwt({"exp": "soon"}), _jwt({"exp": True})]
)
def test_a_jwt_without_a_readable_expiry_has_none(jwt: str) -> None:
    assert jwt_expiry(jwt) is None


def test_a_jwt_nested_past_the_recursion_limit_has_no_expiry() -> None:
    payload = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).rstrip(b"=").decode()
    assert jwt_expiry(f"e30.{payload}.signature") is None


@pytest.mark.parametrize(
    ("code", "authenticated", "final"),
    [(4017, False, True), (4017, True, True), (403, True, True), (403, False, False), (401, True, False)],
)
def test_which_configure_refusals_end_the_session_auth_failed(code: int, authenticated: bool, final: bool) -> None:
    assert refuses_authentication(code, authenticated=authenticated) is final


def test_an_authenticated_configure_carries_the_jwt_and_the_journey_context() -> None:
    p = new_protocol()
    p.connection_made()
    context = {"customer": {"id": "c-1", "idType": "cookie"}, "customerSession": {"id": "", "type": "web"}}
    p.configure(tracing_id="t-9", jwt="the-jwt", journey_context=context)
    assert sent(p) == [
        {
            "action": "configureAuthenticatedSession",
            "token": TOKEN,
            "tracingId": "t-9",
            "deploymentId": DEPLOYMENT,
            "startNew": False,
            "journeyContext": context,
            "data": {"code": "the-jwt"},
        }
    ]
    assert p.pending == (PendingRequest("t-9", "configureAuthenticatedSession"),)
    # A SessionResponse without a tracingId still answers the authenticated configure.
    frame = {"type": "response", "class": "SessionResponse", "code": 200, "body": {"connected": True}}
    events = feed(p, json.dumps(frame))
    assert [type(e) for e in events] == [Configured]
    assert p.pending == ()
