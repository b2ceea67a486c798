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

from bridge.errors import GenesysAuthFailed, GenesysProtocolError, GenesysRateLimited, GenesysUnavailable
from bridge.genesys.auth import Tokens
from bridge.ports import Clock
from bridge.record import SessionRecord
from bridge.session.ports import AuthClient
from bridge.tasks import stop_if_asked
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
        "_life_s",
        "_obtained",
        "_origin",
        "_refusals",
        "_renewing",
        "_rest_base",
        "_socket_deadline",
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
        # Schedules run on the monotonic clock (virtual time in tests); a JWT's expiry is a wall-clock date,
        # turned into "seconds of life left" once, when the JWT is obtained.
        self._obtained = clock.monotonic()
        self._life_s = self._life_left()
        self._socket_deadline: float | None = None  # monotonic: the open socket's JWT is due to be replaced
        # One renewal at a time: the command task (a revoke, a re-configure) and the renewal task share the
        # refresh token, and a refresh whose answer was dropped must not race a second one.
        self._renewing = asyncio.Lock()

    @property
    def authenticated(self) -> bool:
        """True for a session started with ``auth`` (kept in the record from its creation, so a restart or a
        failed exchange can never turn it anonymous): every configure must carry a JWT."""
        return self._keeper.record.authenticated

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
        async with self._renewing:
            if self._grant is not None:
                await self._exchange(self._grant)
            elif self._stale or self._due():
                await self._refresh()
        jwt = self._keeper.record.auth_jwt
        if jwt is None:
            raise GenesysAuthFailed(401, "no JWT: the session's credentials were lost")
        return jwt.get_secret_value()

    def accepted(self) -> None:
        """Genesys accepted a configure with the current JWT: the open socket now holds it."""
        self._refusals = 0
        left = self._life_left()
        margin = min(REFRESH_MARGIN.total_seconds(), left / 2) if left is not None else 0.0
        self._socket_deadline = self._clock.monotonic() + left - margin if left is not None else None

    def socket_due(self) -> bool:
        """True when the open socket's JWT expires within :data:`REFRESH_MARGIN` (or has): configure it
        again with a renewed one before the next request, or Genesys answers that request 401."""
        deadline = self._socket_deadline
        return self.authenticated and deadline is not None and self._clock.monotonic() >= deadline

    def refused(self) -> None:
        """Genesys answered 401 for the current JWT: renew it before the next configure."""
        self._refusals += 1
        self._stale = True

    async def refresh(self) -> None:
        """Renew the JWT now with the refresh token (saved encrypted with the record).

        Raises:
            GenesysAuthFailed: the refresh token was refused (revoked, expired): final.
            GenesysUnavailable, GenesysRateLimited: Genesys' REST API could not serve it now.
            GenesysProtocolError: its answer held no token.
        """
        async with self._renewing:
            await self._refresh()

    async def _exchange(self, grant: SessionAuth) -> None:
        """Exchange the grant; any failure is final: a code is good once, so it is never sent twice."""
        self._grant = None
        try:
            tokens = await self._auth().exchange_grant(self._rest_base, self._deployment_id, grant, origin=self._origin)
        except (GenesysUnavailable, GenesysRateLimited, GenesysProtocolError) as exc:
            raise GenesysAuthFailed(0, f"the code exchange failed: {exc}") from exc
        await self._store(tokens)

    async def _refresh(self) -> None:
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
        floor = 0.0
        while True:
            # A renewal whose journal write took a cancel of this task as a failed save returns normally.
            stop_if_asked()
            await asyncio.sleep(max(self._seconds_until_due(), floor))
            # A JWT that comes back already due (our clock ahead of Genesys') must not be renewed in a loop, and
            # a renewal that failed is tried again this much later: the JWT may still be good for a while, and
            # a configure that needs one renews it.
            floor = RETRY_AFTER_UNAVAILABLE_S
            # A failure may be a cancel of this task that the HTTP call turned into an error: stop then, and do
            # not report it as Genesys'.
            try:
                await self.refresh()
            except GenesysRateLimited as exc:
                stop_if_asked()
                log.warning("session_jwt_refresh_rate_limited", retry_after_s=exc.retry_after_s)
                floor = max(exc.retry_after_s, RETRY_AFTER_UNAVAILABLE_S)
            except (GenesysUnavailable, GenesysProtocolError) as exc:
                stop_if_asked()
                log.warning("session_jwt_refresh_unavailable", error=str(exc))

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
        self._keeper.note_tokens(tokens)
        self._obtained = self._clock.monotonic()
        self._life_s = self._life_left()
        await self._keeper.save()

    def _life_left(self) -> float | None:
        """Seconds until the current JWT expires, by its ``exp`` (None when it does not say)."""
        expires_at = self._keeper.record.auth_jwt_expires_at
        return (expires_at - self._clock.now()).total_seconds() if expires_at is not None else None

    def _due(self) -> bool:
        return self._seconds_until_due() <= 0

    def _seconds_until_due(self) -> float:
        """Until the JWT is due for renewal: after 80 % of its life and at least a minute before it expires,
        but never sooner than half its life (a short-lived JWT is not renewed in a tight loop)."""
        life = self._life_s
        if life is None:
            after = UNKNOWN_LIFETIME.total_seconds()
        else:
            life = max(0.0, life)
            after = min(life * 0.8, max(life - REFRESH_MARGIN.total_seconds(), life / 2))
        return max(0.0, self._obtained + after - self._clock.monotonic())
