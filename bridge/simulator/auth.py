"""Authenticated web messaging (§4.2): identities, and the JWTs and refresh tokens the REST token endpoints
issue for them.

An :class:`Identity` is one customer, keyed by what the client exchanged (the authorization code or the
``idToken``): exchanging the same string again logs the same customer in again. A revoke ends every login
of the identity at once: its JWTs and refresh tokens belong to a *generation*, and a revoke starts a new
one, so everything issued before is dead while the identity (and the sessions it owns) lives on.

Validity is decided on the simulator's injected clock (the one expiry and rate limits use), so virtual
time moves JWT and refresh-token expiry too. The ``exp`` claim a client reads is the wall-clock
equivalent at the moment of issue (as ``SessionResponse.expirationDate`` is).
"""

from __future__ import annotations

import enum
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.simulator.config import SimulatorConfig
from bridge.simulator.jwt import JwtSigner
from bridge.simulator.limits import Clock

__all__ = ["AuthRegistry", "Identity", "IssuedJwt", "JwtState", "RefreshGrant"]

#: The ``iss`` claim of the simulator's JWTs.
ISSUER = "genesys-simulator"


class JwtState(enum.StrEnum):
    """What a JWT presented to the simulator is worth."""

    VALID = "valid"
    EXPIRED = "expired"  # → 401 "User is unauthorized": refresh, then configure again
    REVOKED = "revoked"  # its identity logged out since it was issued → 403
    UNKNOWN = "unknown"  # never issued here → 403


@dataclass(eq=False, kw_only=True)
class Identity:
    """One authenticated customer (the JWT's ``sub``)."""

    identity_id: str  # the ``sub`` claim
    subject: str  # the authorization code or idToken it was exchanged from
    deployment_id: str
    generation: int = 0  # bumped by each revoke; older JWTs and refresh tokens are dead
    jwts: list[IssuedJwt] = field(default_factory=list)  # every JWT issued, oldest first
    logouts: int = 0

    def __repr__(self) -> str:
        return f"<Identity {self.identity_id} gen={self.generation}>"


@dataclass(eq=False, kw_only=True)
class IssuedJwt:
    """One JWT the token endpoints issued."""

    jwt: str
    identity: Identity
    generation: int
    expires_at: float  # on the simulator clock
    exp: int  # the ``exp`` claim, wall-clock epoch seconds


@dataclass(eq=False, kw_only=True)
class RefreshGrant:
    """One refresh token: a login of an identity, good until ``expires_at`` unless revoked."""

    refresh_token: str
    identity: Identity
    generation: int
    expires_at: float  # on the simulator clock; a refresh does not extend it


class AuthRegistry:
    """Every identity, JWT and refresh token of one simulator. Synchronous; O(1) lookups.

    ``config`` is read at each call (tests may swap the engine's config at run time). The refused codes
    and the count of refreshes to fail start from the config and change through the control API.
    """

    def __init__(self, config: Callable[[], SimulatorConfig], *, clock: Clock, signer: JwtSigner) -> None:
        self._config = config
        self._clock = clock
        self._signer = signer
        self._refused: set[str] = set()
        self.failing_refreshes = config().fail_next_refreshes
        self._identities: dict[tuple[str, str], Identity] = {}  # (deploymentId, subject) → identity
        self._jwts: dict[str, IssuedJwt] = {}
        self._grants: dict[str, RefreshGrant] = {}
        self._count = 0

    # --- control ----------------------------------------------------------------------------------------
    def refuse_code(self, code: str) -> None:
        """From now on, exchanging ``code`` (or an idToken equal to it) is refused with 401."""
        self._refused.add(code)

    def fail_next_refresh(self, count: int = 1) -> None:
        """The next ``count`` refreshes are refused with 401, whatever their token."""
        self.failing_refreshes = max(0, count)

    def refused(self, subject: str) -> bool:
        """Whether the test marked this code or idToken as refused."""
        return subject in self._refused or subject in self._config().refused_auth_codes

    # --- the token endpoints ----------------------------------------------------------------------------
    def exchange(self, deployment_id: str, subject: str) -> tuple[IssuedJwt, RefreshGrant]:
        """A successful ``oauthcodegrantjwtexchange``: the subject's identity (new or known), a fresh JWT and
        a new refresh token. The caller has checked that the subject is not refused."""
        key = (deployment_id, subject)
        identity = self._identities.get(key)
        if identity is None:
            self._count += 1
            identity = Identity(
                identity_id=f"sim-user-{self._count}-{secrets.token_hex(4)}",
                subject=subject,
                deployment_id=deployment_id,
            )
            self._identities[key] = identity
        grant = RefreshGrant(
            refresh_token=secrets.token_urlsafe(32),
            identity=identity,
            generation=identity.generation,
            expires_at=self._clock() + self._config().refresh_token_ttl_s,
        )
        self._grants[grant.refresh_token] = grant
        return self._issue(identity), grant

    def refresh(self, refresh_token: str, deployment_id: str | None) -> tuple[IssuedJwt, RefreshGrant] | None:
        """A ``token/refresh``: a new JWT for a live refresh token (which stays the same), else None (401).

        A refresh the control API set to fail is refused even for a good token, and uses up one failure.
        """
        if self.failing_refreshes > 0:
            self.failing_refreshes -= 1
            return None
        grant = self._grants.get(refresh_token)
        if grant is None or grant.generation != grant.identity.generation or self._clock() >= grant.expires_at:
            return None
        if deployment_id is not None and deployment_id != grant.identity.deployment_id:
            return None
        return self._issue(grant.identity), grant

    def lookup(self, jwt: str) -> IssuedJwt | None:
        """The record of a JWT issued here, or None."""
        return self._jwts.get(jwt)

    def state(self, issued: IssuedJwt | None) -> JwtState:
        """Whether a JWT is good now."""
        if issued is None:
            return JwtState.UNKNOWN
        if issued.generation != issued.identity.generation:
            return JwtState.REVOKED
        if self._clock() >= issued.expires_at:
            return JwtState.EXPIRED
        return JwtState.VALID

    def revoke(self, identity: Identity) -> None:
        """Log the identity out everywhere: every JWT and refresh token issued so far stops working."""
        identity.generation += 1
        identity.logouts += 1

    def expire_jwts(self, identity: Identity) -> None:
        """Make every JWT of the identity issued so far expired now (refresh tokens are untouched)."""
        now = self._clock()
        for issued in identity.jwts:
            issued.expires_at = min(issued.expires_at, now)

    def _issue(self, identity: Identity) -> IssuedJwt:
        ttl = self._config().jwt_ttl_s
        now = int(time.time())
        exp = now + ttl
        claims = {
            "iss": ISSUER,
            "sub": identity.identity_id,
            "deploymentId": identity.deployment_id,
            "iat": now,
            "exp": exp,
            "jti": secrets.token_hex(8),  # two JWTs issued in the same second still differ
        }
        issued = IssuedJwt(
            jwt=self._signer.issue(claims),
            identity=identity,
            generation=identity.generation,
            expires_at=self._clock() + ttl,
            exp=exp,
        )
        self._jwts[issued.jwt] = issued
        identity.jwts.append(issued)
        return issued
