"""Which ``Origin`` a session sends (§2.3): the resolver, the SDK defaults, and a domain-restricted simulator."""

from __future__ import annotations

import pytest

from bridge.config import Settings
from bridge.errors import GenesysRejected
from bridge.genesys.connector import WebsocketsConnector
from bridge.genesys.urls import endpoints_for, history_sdk_origin, resolve_origin, websocket_sdk_origin
from bridge.simulator import Simulator, SimulatorConfig

DEPLOYMENT = "0f4f1d2a-5b1e-4e0e-9f3a-2f5d8c1a7b10"
SHOP = "https://shop.example.com"


@pytest.mark.parametrize(
    ("command", "per_deployment", "default", "expected"),
    [
        ("https://cmd.example.com", SHOP, "https://default.example.com", "https://cmd.example.com"),
        (None, SHOP, "https://default.example.com", SHOP),
        (None, None, "https://default.example.com", "https://default.example.com"),
        (None, None, None, None),
        ("", None, "", None),  # empty is "not given" at every level
    ],
)
def test_command_beats_deployment_beats_default(
    command: str | None, per_deployment: str | None, default: str | None, expected: str | None
) -> None:
    origins = {DEPLOYMENT: per_deployment} if per_deployment else {}
    settings = Settings(deployment_origins=origins, default_origin=default)
    assert resolve_origin(settings, DEPLOYMENT, command) == expected


def test_another_deployment_gets_the_default() -> None:
    settings = Settings(deployment_origins={DEPLOYMENT: SHOP}, default_origin="https://default.example.com")
    assert resolve_origin(settings, "another", None) == "https://default.example.com"


@pytest.mark.parametrize(
    ("region", "upgrade", "history"),
    [
        ("mypurecloud.com", "webmessaging.mypurecloud.com", "mypurecloud.com"),
        ("eu-west-1", "webmessaging.mypurecloud.ie", "mypurecloud.ie"),
        ("euw2.pure.cloud", "webmessaging.euw2.pure.cloud", "euw2.pure.cloud"),
    ],
)
def test_the_sdk_origins_of_a_region(region: str, upgrade: str, history: str) -> None:
    endpoints = endpoints_for(region)
    assert websocket_sdk_origin(endpoints.websocket_url(DEPLOYMENT)) == upgrade
    assert history_sdk_origin(endpoints.rest_base) == history


def test_the_sdk_origins_behind_an_override() -> None:
    endpoints = endpoints_for("mypurecloud.com", override="http://127.0.0.1:9000")
    assert websocket_sdk_origin(endpoints.websocket_url(DEPLOYMENT)) == "127.0.0.1"
    assert history_sdk_origin(endpoints.rest_base) == "127.0.0.1"


async def test_a_domain_restricted_deployment_needs_its_configured_origin() -> None:
    """The simulator refuses the upgrade (403, §2.3) unless the Origin is one of the allowed domains."""
    config = SimulatorConfig(agent_script=False, allowed_origins=frozenset({SHOP}), origin_match="exact")
    connector = WebsocketsConnector(proxy=None)
    async with Simulator(config) as sim:
        url = endpoints_for("mypurecloud.com", override=sim.base_url).websocket_url(DEPLOYMENT)
        configured = Settings(genesys_base_url=sim.base_url, deployment_origins={DEPLOYMENT: SHOP})
        conn = await connector.connect(url, origin=resolve_origin(configured, DEPLOYMENT, None))
        await conn.close()

        unconfigured = Settings(genesys_base_url=sim.base_url)
        with pytest.raises(GenesysRejected) as refused:
            await connector.connect(url, origin=resolve_origin(unconfigured, DEPLOYMENT, None))
        assert refused.value.code == 403
