"""Region URLs (§2.1, §2.2) and the override base (simulator or proxy)."""

from __future__ import annotations

import pytest

from bridge.errors import CommandRejected, ConfigError
from bridge.genesys.urls import ALIAS_DOMAINS, REGION_DOMAINS, endpoints_for, resolve_domain

ALL_DOMAINS = [
    "mypurecloud.com", "use2.us-gov-pure.cloud", "usw2.pure.cloud", "cac1.pure.cloud", "sae1.pure.cloud",
    "mypurecloud.ie", "euw2.pure.cloud", "mypurecloud.de", "euc2.pure.cloud", "mec1.pure.cloud", "aps1.pure.cloud",
    "mypurecloud.jp", "apne2.pure.cloud", "apne3.pure.cloud", "apse1.pure.cloud", "mypurecloud.com.au",
    "mxc1.pure.cloud",
]  # fmt: skip


def test_there_are_17_regions() -> None:
    assert sorted(REGION_DOMAINS) == sorted(ALL_DOMAINS)
    assert len(REGION_DOMAINS) == 17


@pytest.mark.parametrize("domain", ALL_DOMAINS)
def test_region_urls(domain: str) -> None:
    e = endpoints_for(domain)
    assert e.websocket_url("0f4f1d2a-5b1e") == f"wss://webmessaging.{domain}/v1?deploymentId=0f4f1d2a-5b1e"
    assert e.rest_base == f"https://api.{domain}"
    assert e.history_url == f"https://api.{domain}/api/v2/webmessaging/messages"
    assert e.deployment_config_url("dep") == f"https://api-cdn.{domain}/webdeployments/v1/deployments/dep/config.json"
    assert not e.overridden


@pytest.mark.parametrize("domain", ALL_DOMAINS)
def test_aws_region_names_resolve(domain: str) -> None:
    assert endpoints_for(REGION_DOMAINS[domain]).domain == domain


def test_application_is_url_encoded() -> None:
    url = endpoints_for("mypurecloud.ie").websocket_url("a b&c", application="genesys-bridge/1.0 x")
    assert url == "wss://webmessaging.mypurecloud.ie/v1?deploymentId=a%20b%26c&application=genesys-bridge%2F1.0%20x"


def test_region_is_case_and_space_insensitive() -> None:
    assert endpoints_for("  MyPureCloud.IE ").domain == "mypurecloud.ie"


@pytest.mark.parametrize("region", ["", "mypurecloud.org", "api.mypurecloud.com", "genesyscloud.com", "x" * 500])
def test_unknown_region_is_rejected(region: str) -> None:
    with pytest.raises(CommandRejected) as info:
        endpoints_for(region)
    assert info.value.reason == "unknown_region"
    assert len(info.value.detail) < 1000


@pytest.mark.parametrize("alias", sorted(ALIAS_DOMAINS))
def test_aliases_are_off_by_default(alias: str) -> None:
    with pytest.raises(CommandRejected, match="alias"):
        resolve_domain(alias)
    e = endpoints_for(alias, allow_aliases=True)
    assert e.rest_base == f"https://api.{alias}"


@pytest.mark.parametrize(
    ("override", "ws", "rest"),
    [
        ("http://127.0.0.1:9000", "ws://127.0.0.1:9000/v1", "http://127.0.0.1:9000"),
        ("http://127.0.0.1:9000/", "ws://127.0.0.1:9000/v1", "http://127.0.0.1:9000"),
        ("https://proxy.example.invalid/genesys/", "wss://proxy.example.invalid/genesys/v1",
         "https://proxy.example.invalid/genesys"),
        ("ws://localhost:1234", "ws://localhost:1234/v1", "http://localhost:1234"),
    ],
)  # fmt: skip
def test_override_replaces_both_bases(override: str, ws: str, rest: str) -> None:
    e = endpoints_for("mypurecloud.com", override=override)
    assert e.overridden
    assert e.websocket_url("dep", application="genesys-bridge") == f"{ws}?deploymentId=dep&application=genesys-bridge"
    assert e.rest_base == rest
    assert e.history_url == f"{rest}/api/v2/webmessaging/messages"
    assert e.deployment_config_url("dep") == f"{rest}/webdeployments/v1/deployments/dep/config.json"


def test_override_with_settings_anyurl() -> None:
    from bridge.config import Settings

    settings = Settings(genesys_base_url="http://127.0.0.1:9000")
    e = endpoints_for("mypurecloud.de", override=str(settings.genesys_base_url))
    assert e.rest_base == "http://127.0.0.1:9000"


def test_override_still_validates_the_region() -> None:
    with pytest.raises(CommandRejected, match="unknown_region"):
        endpoints_for("nowhere", override="http://127.0.0.1:9000")


def test_malformed_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        endpoints_for("mypurecloud.com", override="ftp://x")
