"""Credentials of an authenticated session, in virtual time: exchanged once, renewed before the JWT
expires, bounded retries after 401s, and a refused renewal is final."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from structlog.testing import capture_logs

from bridge.errors import GenesysAuthFailed, GenesysRateLimited, GenesysUnavailable
from bridge.genesys.auth import Tokens
from bridge.ports import LoopClock
from bridge.session.auth import MAX_AUTH_RETRIES, RETRY_AFTER_UNAVAILABLE_S, Credentials
from bridge.session.session import RecordKeeper
from genesys_bridge_client.contract.commands import AuthCodeGrant, SessionAuth
from tests.cancel_aside import turn_the_cancel_aside
from tests.store.helpers import make_record

pytestmark = pytest.mark.looptime

GRANT = AuthCodeGrant(code="c0de", redirect_uri="https://x.example/cb")
JWT_LIFE = timedelta(minutes=15)


class FakeAuth:
    """Genesys' token endpoints: JWTs live JWT_LIFE on the loop's clock; refusals on demand."""

    def __init__(self, clock: LoopClock) -> None:
        self.clock = clock
        self.calls: list[str] = []
        self.refuse_refresh = False
        self.unavailable = 0
        self.rate_limited_for_s: float | None = None
        self.refreshed_at: list[float] = []
        self._called = asyncio.Condition()

    async def wait_calls(self, what: str, count: int) -> None:
        """Until ``what`` was called ``count`` times (awaited, not polled)."""
        async with self._called:
            await self._called.wait_for(lambda: self.calls.count(what) >= count)

    async def _note(self, what: str) -> None:
        self.calls.append(what)
        async with self._called:
            self._called.notify_all()

    def _tokens(self, n: int) -> Tokens:
        return Tokens(jwt=f"jwt-{n}", refresh_token="refresh-1", expires_at=self.clock.now() + JWT_LIFE)

    async def exchange_grant(
        self, rest_base: str, deployment_id: str, grant: SessionAuth, *, origin: str | None
    ) -> Tokens:
        await self._note("exchange")
        return self._tokens(len(self.calls))

    async def refresh_jwt(
        self, rest_base: str, deployment_id: str, refresh_token: str, *, origin: str | None
    ) -> Tokens:
        self.refreshed_at.append(asyncio.get_running_loop().time())
        await self._note("refresh")
        if self.rate_limited_for_s is not None:
            retry_after_s, self.rate_limited_for_s = self.rate_limited_for_s, None
            raise GenesysRateLimited(retry_after_s)
        if self.unavailable:
            self.unavailable -= 1
            raise GenesysUnavailable("fake: no route")
        if self.refuse_refresh:
            raise GenesysAuthFailed(401, "fake: refresh token revoked")
        return self._tokens(len(self.calls))

    async def revoke_jwt(self, rest_base: str, jwt: str, *, origin: str | None) -> None:
        await self._note(f"revoke {jwt}")


def _credentials(*, grant: SessionAuth | None = GRANT, refresh_first: bool = False) -> tuple[Credentials, FakeAuth]:
    clock = LoopClock()
    auth = FakeAuth(clock)
    authenticated = grant is not None or refresh_first  # as the registry records it at the start
    keeper = RecordKeeper(make_record(authenticated=authenticated), clock=clock, store=None)
    credentials = Credentials(
        keeper=keeper,
        client=auth,
        rest_base="http://genesys.invalid",
        origin=None,
        clock=clock,
        grant=grant,
        refresh_first=refresh_first,
    )
    return credentials, auth


async def test_an_anonymous_session_has_no_jwt() -> None:
    credentials, auth = _credentials(grant=None)
    assert not credentials.authenticated
    assert await credentials.for_configure() is None
    assert auth.calls == []


async def test_the_grant_is_exchanged_once_then_the_jwt_is_reused_until_due() -> None:
    credentials, auth = _credentials()
    assert await credentials.for_configure() == "jwt-1"
    assert await credentials.for_configure() == "jwt-1"
    assert auth.calls == ["exchange"]


async def test_the_jwt_is_renewed_before_it_expires() -> None:
    credentials, auth = _credentials()
    await credentials.for_configure()
    loop = asyncio.get_running_loop()
    start = loop.time()
    keeper = asyncio.create_task(credentials.keep_fresh())
    try:
        await auth.wait_calls("refresh", 2)
    finally:
        keeper.cancel()
    # 80 % of a 15-minute life: renewed at 12 minutes, long before the JWT expires at 15.
    assert loop.time() - start == pytest.approx(2 * 12 * 60, abs=2)


async def test_a_refused_jwt_is_renewed_and_retries_are_bounded() -> None:
    credentials, _auth = _credentials()
    await credentials.for_configure()
    for attempt in range(MAX_AUTH_RETRIES):
        credentials.refused()
        assert await credentials.for_configure() == f"jwt-{attempt + 2}"
    credentials.refused()
    with pytest.raises(GenesysAuthFailed):
        await credentials.for_configure()


async def test_an_accepted_configure_resets_the_count() -> None:
    credentials, _auth = _credentials()
    await credentials.for_configure()
    for _ in range(2 * MAX_AUTH_RETRIES):
        credentials.refused()
        await credentials.for_configure()
        credentials.accepted()


async def test_a_refused_refresh_is_final() -> None:
    credentials, auth = _credentials()
    await credentials.for_configure()
    auth.refuse_refresh = True
    credentials.refused()
    with pytest.raises(GenesysAuthFailed):
        await credentials.for_configure()


async def test_a_refresh_that_cannot_reach_genesys_is_tried_again_later() -> None:
    credentials, auth = _credentials()
    await credentials.for_configure()
    auth.unavailable = 1
    keeper = asyncio.create_task(credentials.keep_fresh())
    try:
        await auth.wait_calls("refresh", 2)
    finally:
        keeper.cancel()
    assert auth.calls == ["exchange", "refresh", "refresh"]


@pytest.mark.parametrize(
    ("rate_limited_for_s", "retried_after_s"),
    [(None, RETRY_AFTER_UNAVAILABLE_S), (40.0, 40.0), (1.0, RETRY_AFTER_UNAVAILABLE_S)],
    ids=["unavailable", "rate limited for longer", "rate limited for less"],
)
async def test_a_failed_renewal_is_tried_again_once_its_wait_is_over(
    rate_limited_for_s: float | None, retried_after_s: float
) -> None:
    credentials, auth = _credentials()
    await credentials.for_configure()
    if rate_limited_for_s is None:
        auth.unavailable = 1
    else:
        auth.rate_limited_for_s = rate_limited_for_s
    keeper = asyncio.create_task(credentials.keep_fresh())
    try:
        await auth.wait_calls("refresh", 2)
    finally:
        keeper.cancel()
    # One wait between the two tries: Genesys' retry-after, never less than the wait after an outage.
    first, second = auth.refreshed_at
    assert second - first == pytest.approx(retried_after_s, abs=0.01)


async def test_after_a_restart_the_jwt_is_renewed_before_the_first_configure() -> None:
    credentials, auth = _credentials(grant=None, refresh_first=True)
    expired = Tokens(jwt="old", refresh_token="refresh-1", expires_at=datetime(2000, 1, 1).astimezone())
    credentials._keeper.note_tokens(expired)  # as the journal had it
    assert await credentials.for_configure() == "jwt-1"
    assert auth.calls == ["refresh"]


async def test_revoke_uses_the_current_jwt() -> None:
    credentials, auth = _credentials()
    await credentials.revoke()
    assert auth.calls == ["exchange", "revoke jwt-1"]


async def test_an_exchange_that_cannot_reach_genesys_is_final_and_never_anonymous() -> None:
    credentials, auth = _credentials()

    async def unreachable(rest_base: str, deployment_id: str, grant: SessionAuth, *, origin: str | None) -> Tokens:
        raise GenesysUnavailable("fake: 503")

    auth.exchange_grant = unreachable  # type: ignore[method-assign]
    with pytest.raises(GenesysAuthFailed):
        await credentials.for_configure()
    assert credentials.authenticated  # a failed exchange never turns the session anonymous
    with pytest.raises(GenesysAuthFailed):
        await credentials.for_configure()  # the code is not sent twice, and there is no JWT to fall back on


async def test_the_socket_is_due_for_a_new_jwt_a_minute_before_its_own_expires() -> None:
    credentials, _auth = _credentials()
    await credentials.for_configure()
    credentials.accepted()
    assert not credentials.socket_due()
    await asyncio.sleep((JWT_LIFE - timedelta(seconds=61)).total_seconds())
    assert not credentials.socket_due()
    await asyncio.sleep(2)
    assert credentials.socket_due()


async def test_a_short_lived_jwt_is_not_renewed_in_a_tight_loop() -> None:
    clock = LoopClock()
    auth = FakeAuth(clock)
    keeper = RecordKeeper(make_record(authenticated=True), clock=clock, store=None)
    keeper.note_tokens(Tokens(jwt="j", refresh_token="r", expires_at=clock.now() + timedelta(seconds=30)))
    credentials = Credentials(keeper=keeper, client=auth, rest_base="http://genesys.invalid", origin=None, clock=clock)
    loop = asyncio.get_running_loop()
    start = loop.time()
    renewing = asyncio.create_task(credentials.keep_fresh())
    try:
        await auth.wait_calls("refresh", 1)
    finally:
        renewing.cancel()
    assert loop.time() - start >= 14.9  # half its life at least (30 s), never at once


class AuthTurningTheCancelAside(FakeAuth):
    """A refresh whose HTTP call ends a cancellation of its caller with ``GenesysUnavailable`` of its own, or
    with new tokens."""

    def __init__(self, clock: LoopClock, *, ends_with: str) -> None:
        super().__init__(clock)
        self.ends_with = ends_with
        self.refreshing = asyncio.Event()

    async def refresh_jwt(
        self, rest_base: str, deployment_id: str, refresh_token: str, *, origin: str | None
    ) -> Tokens:
        error = GenesysUnavailable("fake: the connection was closed") if self.ends_with == "error" else None
        await turn_the_cancel_aside(self.refreshing, raising=error)
        return self._tokens(0)


@pytest.mark.parametrize("ends_with", ["error", "result"])
async def test_a_cancelled_renewal_loop_ends_even_when_the_call_turns_the_cancel_aside(ends_with: str) -> None:
    credentials, _ = _credentials()
    auth = AuthTurningTheCancelAside(LoopClock(), ends_with=ends_with)
    credentials._client = auth
    await credentials.for_configure()
    keeper = asyncio.create_task(credentials.keep_fresh())
    await auth.refreshing.wait()
    loop = asyncio.get_running_loop()
    cancelled_at = loop.time()
    keeper.cancel()
    with capture_logs() as logs:
        async with asyncio.timeout(3 * 60 * 60):
            with pytest.raises(asyncio.CancelledError):
                await keeper
    assert loop.time() == cancelled_at  # at once, not after a retry's wait
    assert not [entry for entry in logs if entry["log_level"] == "warning"]  # our own cancel is not Genesys'
