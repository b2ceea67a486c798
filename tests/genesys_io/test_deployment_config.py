"""A deployment's config.json: the pure parse, the cache on virtual time, and the simulator over HTTP."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.config import Settings
from bridge.errors import GenesysRateLimited, GenesysRejected, GenesysUnavailable
from bridge.genesys.deployment_config import (
    DeploymentConfigs,
    DeploymentFeatures,
    UploadMode,
    parse_deployment_config,
)
from bridge.genesys.rest import GenesysRest
from bridge.genesys.urls import endpoints_for
from bridge.simulator import Simulator, SimulatorConfig

DEPLOYMENT = "7c0a1b2e-3d4f-4a5b-8c6d-9e0f1a2b3c4d"
URL = f"https://api-cdn.mypurecloud.ie/webdeployments/v1/deployments/{DEPLOYMENT}/config.json"

#: Shaped like the mobile SDK's DeploymentConfig test fixtures: every object the model declares, plus
#: fields it ignores (styles, notifications, markdown ...), with the features we read switched on.
CONFIG: dict[str, Any] = {
    "id": DEPLOYMENT,
    "version": "7",
    "languages": ["en-us", "de"],
    "defaultLanguage": "en-us",
    "apiEndpoint": "https://api.mypurecloud.ie",
    "messenger": {
        "enabled": True,
        "apps": {
            "conversations": {
                "messagingEndpoint": "wss://webmessaging.mypurecloud.ie",
                "showAgentTypingIndicator": True,
                "showUserTypingIndicator": True,
                "autoStart": {"enabled": True},
                "conversationDisconnect": {"enabled": True, "type": "ReadOnly"},
                "conversationClear": {"enabled": True},
                "notifications": {"enabled": False, "notificationContentType": "ExcludeMessagesContent"},
                "markdown": {"enabled": True},
                "humanize": {"enabled": False},
            }
        },
        "styles": {"primaryColor": "#1f4fff"},
        "launcherButton": {"visibility": "On"},
        "fileUpload": {
            "enableAttachments": True,
            "modes": [
                {"fileTypes": ["image/png", "image/jpeg"], "maxFileSizeKB": 10240},
                {"fileTypes": ["application/pdf", "image/png"], "maxFileSizeKB": 2048},
            ],
        },
    },
    "journeyEvents": {"enabled": False},
    "status": "Active",
    "auth": {"enabled": False, "allowSessionUpgrade": False},
}


def with_conversations(**fields: Any) -> dict[str, Any]:
    body = copy.deepcopy(CONFIG)
    body["messenger"]["apps"]["conversations"].update(fields)
    return body


# --- the pure parse -----------------------------------------------------------------------------------


def test_the_sdk_shaped_fixture() -> None:
    features = parse_deployment_config(CONFIG)
    assert features == DeploymentFeatures(
        active=True,
        clear_enabled=True,
        disconnect_enabled=True,
        disconnect_mode="read_only",
        user_typing_enabled=True,
        autostart_enabled=True,
        uploads_enabled=True,
        upload_modes=(
            UploadMode(file_types=("image/png", "image/jpeg"), max_file_size_kb=10240),
            UploadMode(file_types=("application/pdf", "image/png"), max_file_size_kb=2048),
        ),
        auth_enabled=False,
    )
    assert features.upload_types == ("image/png", "image/jpeg", "application/pdf")
    assert features.upload_max_bytes == 10240 * 1024


def test_features_switched_off() -> None:
    body = with_conversations(
        showUserTypingIndicator=False,
        autoStart={"enabled": False},
        conversationDisconnect={"enabled": False, "type": "Send"},
        conversationClear={"enabled": False},
    )
    body["status"] = "Inactive"
    body["auth"] = {"enabled": True}
    features = parse_deployment_config(body)
    assert (features.clear_enabled, features.disconnect_enabled, features.disconnect_mode) == (False, False, "send")
    assert (features.user_typing_enabled, features.autostart_enabled) == (False, False)
    assert (features.active, features.auth_enabled) == (False, True)


def test_missing_objects_are_unknown_not_off() -> None:
    """The oldest SDK fixtures carry no conversationDisconnect, conversationClear or auth at all."""
    conversations = {"messagingEndpoint": "wss://webmessaging.mypurecloud.ie"}
    body = {"id": DEPLOYMENT, "messenger": {"apps": {"conversations": conversations}}}
    assert parse_deployment_config(body) == DeploymentFeatures()
    assert DeploymentFeatures().upload_types is None
    assert DeploymentFeatures().upload_max_bytes is None


@pytest.mark.parametrize(
    ("body", "unknown"),
    [
        (with_conversations(conversationClear={"enabled": "true"}), "clear_enabled"),
        (with_conversations(conversationClear=True), "clear_enabled"),
        (with_conversations(showUserTypingIndicator=1), "user_typing_enabled"),
        (with_conversations(autoStart=None), "autostart_enabled"),
        (with_conversations(conversationDisconnect={"enabled": True, "type": "Whisper"}), "disconnect_mode"),
        (with_conversations(conversationDisconnect={"enabled": True}), "disconnect_mode"),
        ({**CONFIG, "status": "Paused"}, "active"),
        ({**CONFIG, "auth": []}, "auth_enabled"),
    ],
)
def test_an_odd_field_is_unknown_and_spares_the_rest(body: dict[str, Any], unknown: str) -> None:
    features = parse_deployment_config(body)
    assert getattr(features, unknown) is None
    expected = parse_deployment_config(CONFIG)
    others = [f for f in DeploymentFeatures.__dataclass_fields__ if f != unknown]
    assert [getattr(features, f) for f in others] == [getattr(expected, f) for f in others]


@pytest.mark.parametrize(
    ("file_upload", "modes"),
    [
        ({"modes": []}, ()),  # the list is there and empty: nothing may be uploaded
        ({}, None),
        ({"modes": "all"}, None),
        ({"modes": [{"fileTypes": ["*/*"], "maxFileSizeKB": 100.0}]}, (UploadMode(("*/*",), 100),)),
        ({"modes": [{"maxFileSizeKB": 5}, {"fileTypes": ["a/b"]}]}, (UploadMode((), 5),)),
        ({"modes": [{"fileTypes": ["a/b", 7], "maxFileSizeKB": 1}]}, (UploadMode(("a/b",), 1),)),
        ({"modes": [{"fileTypes": ["a/b"], "maxFileSizeKB": True}, "x", {"maxFileSizeKB": -1}]}, None),
    ],
)
def test_upload_modes_are_read_leniently(file_upload: dict[str, Any], modes: tuple[UploadMode, ...] | None) -> None:
    body = copy.deepcopy(CONFIG)
    body["messenger"]["fileUpload"] = file_upload
    features = parse_deployment_config(body)
    assert features.upload_modes == modes
    assert features.uploads_enabled is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=24), inner, max_size=6),
    max_leaves=40,
)
KEYS = st.sampled_from(
    [
        "messenger",
        "apps",
        "conversations",
        "conversationClear",
        "conversationDisconnect",
        "enabled",
        "type",
        "fileUpload",
        "modes",
        "fileTypes",
        "maxFileSizeKB",
        "status",
        "auth",
        "autoStart",
        "showUserTypingIndicator",
    ]
)
NEAR_CONFIG = st.recursive(
    st.none() | st.booleans() | st.integers() | st.sampled_from(["ReadOnly", "Send", "Active", "*/*"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=30,
)


@given(body=JSON | NEAR_CONFIG)
def test_any_json_parses_without_raising(body: object) -> None:
    features = parse_deployment_config(json.loads(json.dumps(body)))
    assert isinstance(features, DeploymentFeatures)


# --- the cache, on virtual time ----------------------------------------------------------------------


class FakeFetch:
    """Serves ``config.json`` bodies from a script: each call takes ``latency_s`` and returns (or raises)
    the next scripted answer, or the last one again when the script is used up."""

    def __init__(self, *answers: Mapping[str, Any] | Exception, latency_s: float = 0.1) -> None:
        self.answers = list(answers)
        self.latency_s = latency_s
        self.calls: list[tuple[str, float]] = []

    async def __call__(self, url: str) -> Mapping[str, Any]:
        loop = asyncio.get_running_loop()
        self.calls.append((url, loop.time()))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        await asyncio.sleep(self.latency_s)
        if isinstance(answer, Exception):
            raise answer
        return answer


def configs(fetch: FakeFetch, **kw: Any) -> DeploymentConfigs:
    return DeploymentConfigs(fetch=fetch, clock=asyncio.get_running_loop().time, **kw)


def call_times(fetch: FakeFetch) -> list[float]:
    return [round(t, 6) for _, t in fetch.calls]


@pytest.mark.looptime
async def test_fetched_once_then_cached_for_the_ttl() -> None:
    fetch = FakeFetch(CONFIG)
    cache = configs(fetch, ttl_s=300.0)
    start = asyncio.get_running_loop().time()
    first = await cache.get(DEPLOYMENT, config_url=URL)
    assert first is not None
    assert first.clear_enabled is True
    await asyncio.sleep(299.0)
    assert await cache.get(DEPLOYMENT, config_url=URL) is first
    await asyncio.sleep(1.0)
    assert await cache.get(DEPLOYMENT, config_url=URL) == first  # fetched again: the TTL ran out
    assert [url for url, _ in fetch.calls] == [URL, URL]
    assert [t - start for t in call_times(fetch)] == [0.0, 300.1]


@pytest.mark.looptime
async def test_concurrent_callers_share_one_fetch() -> None:
    fetch = FakeFetch(CONFIG, latency_s=2.0)
    cache = configs(fetch)
    results = await asyncio.gather(*(cache.get(DEPLOYMENT, config_url=URL) for _ in range(5)))
    assert len(fetch.calls) == 1
    assert all(r is results[0] for r in results)
    assert results[0] is not None


@pytest.mark.looptime
async def test_each_deployment_is_fetched_on_its_own() -> None:
    other = URL.replace(DEPLOYMENT, "other")
    fetch = FakeFetch(CONFIG)
    cache = configs(fetch)
    await asyncio.gather(cache.get(DEPLOYMENT, config_url=URL), cache.get("other", config_url=other))
    assert sorted(url for url, _ in fetch.calls) == sorted([URL, other])


@pytest.mark.looptime
async def test_a_failure_is_unknown_and_backs_off() -> None:
    fetch = FakeFetch(GenesysUnavailable("down"), GenesysUnavailable("down"), GenesysUnavailable("down"), CONFIG)
    cache = configs(fetch, retry_initial_s=5.0, retry_max_s=300.0)
    start = asyncio.get_running_loop().time()
    assert await cache.get(DEPLOYMENT, config_url=URL) is None  # at 0.1: the first failure
    assert await cache.get(DEPLOYMENT, config_url=URL) is None  # within the backoff: no new fetch
    assert len(fetch.calls) == 1
    await asyncio.sleep(5.0)
    assert await cache.get(DEPLOYMENT, config_url=URL) is None  # second failure: now 10 s
    await asyncio.sleep(9.0)
    assert await cache.get(DEPLOYMENT, config_url=URL) is None
    assert len(fetch.calls) == 2
    await asyncio.sleep(1.0)
    assert await cache.get(DEPLOYMENT, config_url=URL) is None  # third failure: now 20 s
    await asyncio.sleep(20.0)
    features = await cache.get(DEPLOYMENT, config_url=URL)
    assert features is not None
    assert features.disconnect_mode == "read_only"
    assert [round(t - start, 6) for t in call_times(fetch)] == [0.0, 5.1, 15.2, 35.3]


@pytest.mark.looptime
async def test_the_backoff_is_capped() -> None:
    fetch = FakeFetch(GenesysUnavailable("down"), latency_s=0.0)
    cache = configs(fetch, retry_initial_s=5.0, retry_max_s=12.0)
    start = asyncio.get_running_loop().time()
    for _ in range(5):
        assert await cache.get(DEPLOYMENT, config_url=URL) is None
        await asyncio.sleep(12.0)
    assert [t - start for t in call_times(fetch)] == [0.0, 12.0, 24.0, 36.0, 48.0]


@pytest.mark.looptime
async def test_a_429_waits_at_least_its_retry_after() -> None:
    fetch = FakeFetch(GenesysRateLimited(60.0, "GET config.json"), CONFIG, latency_s=0.0)
    cache = configs(fetch, retry_initial_s=5.0)
    assert await cache.get(DEPLOYMENT, config_url=URL) is None
    await asyncio.sleep(59.0)
    assert await cache.get(DEPLOYMENT, config_url=URL) is None
    await asyncio.sleep(1.0)
    assert await cache.get(DEPLOYMENT, config_url=URL) is not None
    assert len(fetch.calls) == 2


@pytest.mark.looptime
async def test_a_failed_refresh_keeps_the_last_good_features() -> None:
    fetch = FakeFetch(CONFIG, GenesysRejected(404, "GET config.json: 404 Not Found"), latency_s=0.0)
    cache = configs(fetch, ttl_s=60.0)
    good = await cache.get(DEPLOYMENT, config_url=URL)
    await asyncio.sleep(60.0)
    assert await cache.get(DEPLOYMENT, config_url=URL) is good  # the refresh failed: stale, not unknown
    assert await cache.get(DEPLOYMENT, config_url=URL) is good  # and no refetch within the backoff
    assert len(fetch.calls) == 2


@pytest.mark.looptime
async def test_a_cancelled_fetch_lets_a_waiter_fetch() -> None:
    fetch = FakeFetch(CONFIG, latency_s=10.0)
    cache = configs(fetch)
    leader = asyncio.create_task(cache.get(DEPLOYMENT, config_url=URL))
    await asyncio.sleep(1.0)
    waiter = asyncio.create_task(cache.get(DEPLOYMENT, config_url=URL))
    await asyncio.sleep(1.0)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert await waiter is not None
    assert len(fetch.calls) == 2


@pytest.mark.looptime
async def test_a_bug_in_the_fetch_is_not_swallowed() -> None:
    cache = configs(FakeFetch(KeyError("bug")))
    with pytest.raises(KeyError):
        await cache.get(DEPLOYMENT, config_url=URL)


@pytest.mark.looptime
async def test_the_oldest_entry_is_forgotten_first() -> None:
    fetch = FakeFetch(CONFIG, latency_s=0.0)
    cache = configs(fetch, max_entries=2)
    urls = [URL.replace(DEPLOYMENT, name) for name in ("a", "b", "c")]
    for name, url in zip("abc", urls, strict=True):
        await cache.get(name, config_url=url)
    await cache.get("b", config_url=urls[1])  # still cached
    await cache.get("a", config_url=urls[0])  # forgotten when c arrived: fetched again
    assert [url for url, _ in fetch.calls] == [urls[0], urls[1], urls[2], urls[0]]


@pytest.mark.parametrize(
    "kw",
    [{"ttl_s": 0.0}, {"retry_initial_s": 0.0}, {"retry_initial_s": 10.0, "retry_max_s": 5.0}, {"max_entries": 0}],
)
async def test_nonsense_settings_are_refused(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        configs(FakeFetch(CONFIG), **kw)


# --- the simulator over HTTP -------------------------------------------------------------------------


async def test_the_simulator_config_over_http() -> None:
    sim_config = SimulatorConfig(
        agent_script=False,
        allowed_deployments=frozenset({DEPLOYMENT}),
        clear_enabled=False,
        typing_enabled=True,
        disconnect_enabled=True,
        disconnect_mode="send",
        autostart=True,
        allowed_media=("image/png",),
        max_file_size_kb=512,
    )
    async with Simulator(sim_config) as sim, GenesysRest() as rest:
        endpoints = endpoints_for("mypurecloud.ie", override=sim.base_url)
        settings = Settings(genesys_base_url=sim.base_url, deployment_config_ttl_s=60.0)
        clock = asyncio.get_running_loop().time
        cache = DeploymentConfigs.from_settings(settings, fetch=rest.fetch_deployment_config, clock=clock)
        assert "ttl_s=60.0" in repr(cache)
        features = await cache.get(DEPLOYMENT, config_url=endpoints.deployment_config_url(DEPLOYMENT))
        unknown = await cache.get("not-there", config_url=endpoints.deployment_config_url("not-there"))
    assert features == DeploymentFeatures(
        active=True,
        clear_enabled=False,
        disconnect_enabled=True,
        disconnect_mode="send",
        user_typing_enabled=True,
        autostart_enabled=True,
        upload_modes=(UploadMode(file_types=("image/png",), max_file_size_kb=512),),
        auth_enabled=False,
    )
    assert unknown is None  # 404: unknown, never an exception
