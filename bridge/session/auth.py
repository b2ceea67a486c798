"""An authenticated session's Genesys credentials: exchanged once, refreshed ahead of expiry, kept encrypted.

Authenticated web messaging (§4.2): the customer's OAuth code (or ID token) is exchanged over REST for a
Genesys JWT and a refresh token; every configure of the session (``configureAuthenticatedSession``) carries
the JWT. A JWT lives minutes, so :meth:`Credentials.keep_fresh` renews it before it expires. A socket whose
configure-JWT expired is answered 401 ("User is unauthorized"); the session then reconnects with a fresh
JWT and sends again (nothing is lost: a refused message was not delivered), at most
:data:`MAX_AUTH_RETRIES` times in a row, as Genesys' own SDK does. Whatever is refused for good (the
exchange, the refresh, a 403 "Session authentication failed") raises :class:`GenesysAuthFailed`, and the
session ends ``auth_failed``. Anonymous sessions have no credentials: :meth:`Credentials.for_configure`
answers None and nothing else here runs.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Final, Protocol

import structlog

from bridge.errors import GenesysAuthFailed, GenesysUnavailable
from bridge.genesys.auth import Tokens
from bridge.ports import Clock
from bridge.record import SessionRecord
from bridge.session.ports import AuthClient
from genesys_bridge_client.contract.commands import SessionAuth

__all__ = ["MAX_AUTH_RETRIES", "Credentials"]

log = structlog.get_logger(__name__)

#: Configures refused with 401 in a row before the session ends ``auth_failed`` (Genesys' SDK tries 3 times).
MAX_AUTH_RETRIES: Final = 3
#: Renew the JWT this long before it expires at the latest (and after 80 % of its life at the earliest).
REFRESH_MARGIN: Final = timedelta(seconds=60)
#: A JWT whose expiry is unknown is renewed this often.
UNKNOWN_LIFETIME: Final = timedelta(minutes=10)
#: After a refresh that could not reach Genesys, try again this much later (the JWT may still be valid).
RETRY_AFTER_UNAVAILABLE_S: Final = 15.0


class TokenKeeper(Protocol):
    """Where the tokens live: the session's record, saved encrypted (the session's RecordKeeper)."""

    @property
    def record(self) -> SessionRecord: ...

    def note_tokens(self, tokens: Tokens) -> None: ...

    async def save(self) -> bool: ...


class Credentials:
    """One session's JWT and refresh token. Use from the session's own tasks."""

    __slots__ = (
        "_client",
        "_clock",
        "_grant",
        "_keeper",
        "_obtained_at",
        "_origin",
        "_refusals",
        "_rest_base",
        "_stale",
    )

    def __init__(
        self,
        *,
        keeper: TokenKeeper,
        client: AuthClient | None,
        rest_base: str,
        origin: str | None,
        clock: Clock,
        grant: SessionAuth | None = None,
        refresh_first: bool = False,
    ) -> None:
        """``grant``: the customer's code or ID token from ``session.start``, exchanged on the first configure
        (never stored). ``refresh_first``: renew the JWT before the first configure (a resume after a restart:
        the journalled JWT has likely expired)."""
        self._keeper = keeper
        self._client = client
        self._rest_base = rest_base
        self._origin = origin
        self._clock = clock
        self._grant = grant
        self._stale = refresh_first
        self._refusals = 0
        self._obtained_at = clock.now()

    @property
    def authenticated(self) -> bool:
        """True for a session started with ``auth``: every configure must carry a JWT."""
        return self._grant is not None or self._keeper.record.authenticated

    async def for_configure(self) -> str | None:
        """The JWT for the next configure, None for an anonymous session. Exchanges the grant the first time;
        renews the JWT when it was refused or is about to expire.

        Raises:
            GenesysAuthFailed: refused for good (exchange or refresh refused, or too many 401s in a row).
            GenesysUnavailable: Genesys' REST API could not be reached (retry with backoff).
        """
        if not self.authenticated:
            return None
        if self._refusals > MAX_AUTH_RETRIES:
            raise GenesysAuthFailed(401, f"Genesys refused {self._refusals} fresh JWTs in a row")
        if self._grant is not None:
            grant, self._grant = self._grant, None  # a code is good once: never exchanged twice
            await self._store(
                await self._auth().exchange_grant(self._rest_base, self._deployment_id, grant, origin=self._origin)
            )
        elif self._stale or self._due():
            await self.refresh()
        jwt = self._keeper.record.auth_jwt
        if jwt is None:
            raise GenesysAuthFailed(401, "no JWT: the session's credentials were lost")
        return jwt.get_secret_value()

    def accepted(self) -> None:
        """Genesys accepted a configure with the current JWT."""
        self._refusals = 0

    def refused(self) -> None:
        """Genesys answered 401 for the current JWT: renew it before the next configure."""
        self._refusals += 1
        self._stale = True

    async def refresh(self) -> None:
        """Renew the JWT now with the refresh token (saved encrypted with the record).

        Raises:
            GenesysAuthFailed: the refresh token was refused (revoked, expired): final.
            GenesysUnavailable: Genesys' REST API could not be reached.
        """
        refresh_token = self._keeper.record.auth_refresh_token
        if refresh_token is None:
            raise GenesysAuthFailed(401, "no refresh token to renew the JWT with")
        tokens = await self._auth().refresh_jwt(
            self._rest_base, self._deployment_id, refresh_token.get_secret_value(), origin=self._origin
        )
        await self._store(tokens)
        log.info("session_jwt_refreshed", expires_at=tokens.expires_at)

    async def keep_fresh(self) -> None:
        """Renew the JWT before it expires, for as long as the caller lets it run (it never returns).

        Raises:
            GenesysAuthFailed: a renewal was refused for good; the session must end ``auth_failed``.
        """
        while True:
            await asyncio.sleep(self._seconds_until_due())
            try:
                await self.refresh()
            except GenesysUnavailable as exc:
                log.warning("session_jwt_refresh_unavailable", error=str(exc))
                await asyncio.sleep(RETRY_AFTER_UNAVAILABLE_S)

    async def revoke(self) -> None:
        """Revoke the session's tokens (``session.logout``): Genesys logs every device of the customer out.

        Raises:
            GenesysAuthFailed: the revoke was refused even with a renewed JWT.
            GenesysUnavailable: Genesys' REST API could not be reached.
        """
        jwt = await self.for_configure()
        if jwt is None:
            return
        try:
            await self._auth().revoke_jwt(self._rest_base, jwt, origin=self._origin)
        except GenesysAuthFailed:
            await self.refresh()  # an expired JWT cannot revoke: renew it once and try again
            renewed = self._keeper.record.auth_jwt
            assert renewed is not None  # stored by refresh()
            await self._auth().revoke_jwt(self._rest_base, renewed.get_secret_value(), origin=self._origin)

    # --- internals -------------------------------------------------------------------------------------

    @property
    def _deployment_id(self) -> str:
        return self._keeper.record.deployment_id

    def _auth(self) -> AuthClient:
        if self._client is None:
            raise GenesysAuthFailed(0, "authenticated sessions need an auth client (none is configured)")
        return self._client

    async def _store(self, tokens: Tokens) -> None:
        self._stale = False
        self._obtained_at = self._clock.now()
        self._keeper.note_tokens(tokens)
        await self._keeper.save()

    def _due_at(self) -> timedelta:
        """How long after :attr:`_obtained_at` the JWT is due for renewal."""
        expires_at = self._keeper.record.auth_jwt_expires_at
        if expires_at is None:
            return UNKNOWN_LIFETIME
        life = max(timedelta(0), expires_at - self._obtained_at)
        return max(timedelta(0), min(life * 0.8, life - REFRESH_MARGIN))

    def _due(self) -> bool:
        return self._seconds_until_due() <= 0

    def _seconds_until_due(self) -> float:
        due = self._obtained_at + self._due_at()
        return max(0.0, (due - self._clock.now()).total_seconds())
