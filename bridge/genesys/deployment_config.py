"""What a deployment's public ``config.json`` says about its Messenger features (§2.2), and a cache of it.

Real orgs have most Messenger features off by default (§5.3: conversation disconnect; §4.3: clear, user
typing), and using a feature that is off costs an error frame (403) or never happens (no Disconnect
event). The deployment config says which are on before we try:

- :func:`parse_deployment_config` is pure and lenient: it reads the few fields the bridge uses and never
  raises. A field that is missing or of the wrong type is ``None`` ("the config did not say"), not
  ``False``: the caller then falls back to trying and reading the error.
- :class:`DeploymentConfigs` fetches each deployment's config once, keeps it ``ttl_s``, backs off after a
  failure, and lets concurrent callers for one deployment share one fetch. A failed fetch is never
  fatal: :meth:`DeploymentConfigs.get` returns the last good value, or ``None`` when there never was one.

Field names follow the official mobile transport's ``DeploymentConfig`` model (§0, [KMP]). The upload
limits here are the deployment's *configured* ones; the ``SessionResponse``'s ``allowedMedia`` (§4.6) is
what a live session enforces and wins when both are known.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from bridge.backoff import backoff_delay
from bridge.config import Settings
from bridge.errors import GenesysError, GenesysRateLimited

__all__ = [
    "DeploymentConfigs",
    "DeploymentFeatures",
    "DisconnectMode",
    "FetchConfig",
    "UploadMode",
    "parse_deployment_config",
]

_log = structlog.get_logger(__name__)

#: ``conversationDisconnect.type`` (§5.3): ``ReadOnly`` makes the session read-only after a disconnect,
#: ``Send`` ends the conversation but keeps the session writable.
DisconnectMode = Literal["read_only", "send"]
_DISCONNECT_TYPES: Mapping[str, DisconnectMode] = {"ReadOnly": "read_only", "Send": "send"}

#: Fetches a ``config.json`` URL and returns its JSON object (``GenesysRest.fetch_deployment_config``).
#: Raises a :class:`bridge.errors.GenesysError` on failure.
FetchConfig = Callable[[str], Awaitable[Mapping[str, Any]]]


@dataclass(frozen=True, slots=True)
class UploadMode:
    """One ``messenger.fileUpload.modes[]`` entry: these file types up to this size (§4.6, §8)."""

    file_types: tuple[str, ...]
    max_file_size_kb: int

    @property
    def max_bytes(self) -> int:
        return self.max_file_size_kb * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentFeatures:
    """The Messenger features of one deployment. ``None`` everywhere means "the config did not say".

    Attributes:
        active: ``status`` is ``Active`` (``False``: ``Inactive``).
        clear_enabled: ``conversationClear.enabled``; off → Presence ``Clear`` is refused with 403 (§4.3).
        disconnect_enabled: ``conversationDisconnect.enabled``; off → no Presence ``Disconnect`` (§5.3).
        disconnect_mode: ``conversationDisconnect.type``: ``read_only`` or ``send`` (§5.3).
        user_typing_enabled: ``showUserTypingIndicator``; off → guest typing is refused with 403 (§4.3).
        autostart_enabled: ``autoStart.enabled``; on → send Presence ``Join`` on a new session (§4.3).
        uploads_enabled: ``fileUpload.enableAttachments``, when the config carries it.
        upload_modes: ``fileUpload.modes`` (§4.6); ``()`` when the list is empty.
        auth_enabled: ``auth.enabled``: the deployment expects authenticated sessions (§4.2).
    """

    active: bool | None = None
    clear_enabled: bool | None = None
    disconnect_enabled: bool | None = None
    disconnect_mode: DisconnectMode | None = None
    user_typing_enabled: bool | None = None
    autostart_enabled: bool | None = None
    uploads_enabled: bool | None = None
    upload_modes: tuple[UploadMode, ...] | None = None
    auth_enabled: bool | None = None

    @property
    def upload_types(self) -> tuple[str, ...] | None:
        """Every file type of every upload mode, in order, without repeats (``*/*`` means any, §4.6)."""
        if self.upload_modes is None:
            return None
        return tuple(dict.fromkeys(t for mode in self.upload_modes for t in mode.file_types))

    @property
    def upload_max_bytes(self) -> int | None:
        """The largest upload any mode allows, in bytes (``maxFileSizeKB`` × 1024)."""
        if not self.upload_modes:
            return None
        return max(mode.max_bytes for mode in self.upload_modes)


def _object(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _upload_mode(value: object) -> UploadMode | None:
    mode = _object(value)
    size = mode.get("maxFileSizeKB")
    if isinstance(size, float) and size.is_integer():
        size = int(size)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return None
    types = mode.get("fileTypes")
    file_types = tuple(t for t in types if isinstance(t, str)) if isinstance(types, list) else ()
    return UploadMode(file_types=file_types, max_file_size_kb=size)


def _upload_modes(value: object) -> tuple[UploadMode, ...] | None:
    if not isinstance(value, list):
        return None
    modes = tuple(mode for item in value if (mode := _upload_mode(item)) is not None)
    return modes if modes or not value else None  # entries that were all unreadable say nothing


def parse_deployment_config(body: object) -> DeploymentFeatures:
    """Read the features the bridge uses from a ``config.json`` body (§2.2). Pure; never raises.

    Anything other than the documented shape (a missing object, a string where a bool belongs, a body
    that is not an object at all) leaves the affected features ``None``; unknown fields are ignored.
    """
    root = _object(body)
    messenger = _object(root.get("messenger"))
    conversations = _object(_object(messenger.get("apps")).get("conversations"))
    disconnect = _object(conversations.get("conversationDisconnect"))
    file_upload = _object(messenger.get("fileUpload"))
    status = root.get("status")
    disconnect_type = disconnect.get("type")
    return DeploymentFeatures(
        active={"Active": True, "Inactive": False}.get(status) if isinstance(status, str) else None,
        clear_enabled=_bool(_object(conversations.get("conversationClear")).get("enabled")),
        disconnect_enabled=_bool(disconnect.get("enabled")),
        disconnect_mode=_DISCONNECT_TYPES.get(disconnect_type) if isinstance(disconnect_type, str) else None,
        user_typing_enabled=_bool(conversations.get("showUserTypingIndicator")),
        autostart_enabled=_bool(_object(conversations.get("autoStart")).get("enabled")),
        uploads_enabled=_bool(file_upload.get("enableAttachments")),
        upload_modes=_upload_modes(file_upload.get("modes")),
        auth_enabled=_bool(_object(root.get("auth")).get("enabled")),
    )


@dataclass(slots=True)
class _Entry:
    """What is known about one config URL."""

    features: DeploymentFeatures | None = None
    fresh_until: float = float("-inf")  # the last good fetch is used without refetching until then
    retry_at: float = float("-inf")  # after a failure: no new fetch before then
    failures: int = 0  # consecutive


class DeploymentConfigs:
    """Deployment configs fetched on demand and cached per URL. Build one per process and share it.

    Args:
        fetch: fetches one ``config.json`` URL (the seam; production passes
            ``GenesysRest.fetch_deployment_config``). Its :class:`bridge.errors.GenesysError` counts as a
            failed fetch; anything else is a bug and propagates.
        clock: monotonic seconds that follow the event loop (``Clock.monotonic``), so virtual time works.
        ttl_s: a good config is reused this long before it is fetched again.
        retry_initial_s: after a first failure, no new fetch for this long; doubled per consecutive
            failure, at most ``retry_max_s`` (and never sooner than a 429's ``Retry-After``).
        retry_max_s: upper bound of the failure backoff.
        max_entries: configs remembered at once; the least recently fetched is forgotten first.
    """

    def __init__(
        self,
        *,
        fetch: FetchConfig,
        clock: Callable[[], float],
        ttl_s: float = 300.0,
        retry_initial_s: float = 5.0,
        retry_max_s: float = 300.0,
        max_entries: int = 1024,
    ) -> None:
        if ttl_s <= 0 or retry_initial_s <= 0 or retry_max_s < retry_initial_s or max_entries < 1:
            raise ValueError("ttl_s and retry_initial_s must be > 0, retry_max_s >= retry_initial_s, max_entries >= 1")
        self._fetch = fetch
        self._clock = clock
        self._ttl_s = ttl_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._max_entries = max_entries
        self._entries: dict[str, _Entry] = {}
        self._in_flight: dict[str, asyncio.Event] = {}

    @classmethod
    def from_settings(cls, settings: Settings, *, fetch: FetchConfig, clock: Callable[[], float]) -> DeploymentConfigs:
        """The production cache: ``ttl_s`` from ``BRIDGE_DEPLOYMENT_CONFIG_TTL_S``, the rest as defaults."""
        return cls(fetch=fetch, clock=clock, ttl_s=settings.deployment_config_ttl_s)

    def __repr__(self) -> str:
        return f"DeploymentConfigs(ttl_s={self._ttl_s}, entries={len(self._entries)}, in_flight={len(self._in_flight)})"

    async def get(self, deployment_id: str, *, config_url: str) -> DeploymentFeatures | None:
        """The features of ``deployment_id``, whose config lives at ``config_url``
        (``GenesysEndpoints.deployment_config_url``).

        Fetches at most once per ``ttl_s``; callers that arrive while a fetch is running wait for it
        instead of fetching again. Never raises a fetch error: after a failure it returns the last good
        features (stale but still the best knowledge), or ``None`` when nothing is known yet, and does not
        fetch again until the backoff has passed. ``None`` means "unknown": try the feature and read the
        error.
        """
        while True:
            entry = self._entries.get(config_url)
            now = self._clock()
            if entry is not None and (now < entry.fresh_until or now < entry.retry_at):
                return entry.features
            running = self._in_flight.get(config_url)
            if running is None:
                return await self._refresh(deployment_id, config_url)
            await running.wait()  # then read what the fetch left behind (or fetch, if it was cancelled)

    async def _refresh(self, deployment_id: str, config_url: str) -> DeploymentFeatures | None:
        done = self._in_flight[config_url] = asyncio.Event()
        try:
            try:
                body = await self._fetch(config_url)
            except GenesysError as exc:
                return self._failed(deployment_id, config_url, exc)
            features = parse_deployment_config(body)
            self._store(config_url, _Entry(features=features, fresh_until=self._clock() + self._ttl_s))
            _log.debug("deployment_config_fetched", deployment_id=deployment_id, features=features)
            return features
        finally:
            # Also when cancelled: the waiters wake, find no fresh entry and one of them fetches.
            del self._in_flight[config_url]
            done.set()

    def _failed(self, deployment_id: str, config_url: str, exc: GenesysError) -> DeploymentFeatures | None:
        previous = self._entries.get(config_url) or _Entry()
        failures = previous.failures + 1
        wait_s = backoff_delay(failures, self._retry_initial_s, self._retry_max_s, jitter_s=0.0)
        if isinstance(exc, GenesysRateLimited):
            wait_s = max(wait_s, exc.retry_after_s)
        self._store(config_url, _Entry(features=previous.features, retry_at=self._clock() + wait_s, failures=failures))
        _log.warning(
            "deployment_config_fetch_failed",
            deployment_id=deployment_id,
            error=str(exc),
            failures=failures,
            retry_in_s=wait_s,
            stale=previous.features is not None,
        )
        return previous.features

    def _store(self, config_url: str, entry: _Entry) -> None:
        self._entries.pop(config_url, None)  # re-insert: dict order is fetch order, oldest first
        self._entries[config_url] = entry
        while len(self._entries) > self._max_entries:
            del self._entries[next(iter(self._entries))]
