"""Where a region's Guest API lives (protocol reference §2.1, §2.2). Pure string work, no I/O.

``endpoints_for(region, override=...)`` is the one entry point: the caller passes the command's region
(a Genesys region domain such as ``mypurecloud.ie``; the AWS region name such as ``eu-west-1`` is
accepted too) and ``Settings.genesys_base_url`` as ``override``. An override (simulator or proxy)
replaces every base: REST and config under it, WebSocket at ``ws(s)://<host>/v1`` (§2.1, like KMP's
``TRANSPORT_CUSTOM_ENDPOINT``). The region is validated even with an override, so that a command that
would fail in production also fails against the simulator.

The ``Origin`` of a session's requests (§2.3) is decided here too: :func:`resolve_origin` picks the
configured one (command, then per deployment, then the default), and when none is configured the I/O
adapters send what Genesys' mobile SDK sends (:func:`websocket_sdk_origin`, :func:`history_sdk_origin`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from bridge.config import Settings
from bridge.errors import CommandRejected, ConfigError

__all__ = [
    "ALIAS_DOMAINS",
    "AWS_REGIONS",
    "REGION_DOMAINS",
    "GenesysEndpoints",
    "endpoints_for",
    "history_sdk_origin",
    "resolve_domain",
    "resolve_origin",
    "websocket_sdk_origin",
]

#: The 17 region domains of §2.2: domain → AWS region.
REGION_DOMAINS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "mypurecloud.com": "us-east-1",
        "use2.us-gov-pure.cloud": "us-east-2",
        "usw2.pure.cloud": "us-west-2",
        "cac1.pure.cloud": "ca-central-1",
        "sae1.pure.cloud": "sa-east-1",
        "mypurecloud.ie": "eu-west-1",
        "euw2.pure.cloud": "eu-west-2",
        "mypurecloud.de": "eu-central-1",
        "euc2.pure.cloud": "eu-central-2",
        "mec1.pure.cloud": "me-central-1",
        "aps1.pure.cloud": "ap-south-1",
        "mypurecloud.jp": "ap-northeast-1",
        "apne2.pure.cloud": "ap-northeast-2",
        "apne3.pure.cloud": "ap-northeast-3",
        "apse1.pure.cloud": "ap-southeast-1",
        "mypurecloud.com.au": "ap-southeast-2",
        "mxc1.pure.cloud": "mx-central-1",
    }
)

#: AWS region name → domain, so that ``eu-west-1`` works as well as ``mypurecloud.ie``.
AWS_REGIONS: Final[Mapping[str, str]] = MappingProxyType({aws: domain for domain, aws in REGION_DOMAINS.items()})

#: Alias domains from the Messenger CSP templates (§2.2). Whether ``webmessaging.<alias>`` serves the
#: Guest API is unknown [?], so they are refused unless ``allow_aliases=True``. Alias → canonical domain.
ALIAS_DOMAINS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "use1.pure.cloud": "mypurecloud.com",
        "euw1.pure.cloud": "mypurecloud.ie",
        "euc1.pure.cloud": "mypurecloud.de",
        "apne1.pure.cloud": "mypurecloud.jp",
        "apse2.pure.cloud": "mypurecloud.com.au",
    }
)

_WS_SCHEME: Final = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
_HTTP_SCHEME: Final = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


def resolve_domain(region: str, *, allow_aliases: bool = False) -> str:
    """The region domain for ``region`` (a domain or an AWS region name, any case).

    Raises:
        CommandRejected: ``unknown_region`` when it is neither (or an alias while aliases are off).
    """
    key = region.strip().lower().rstrip(".")
    if key in REGION_DOMAINS:
        return key
    if key in AWS_REGIONS:
        return AWS_REGIONS[key]
    if allow_aliases and key in ALIAS_DOMAINS:
        return key  # use the alias itself: whoever enabled aliases wants that host
    hint = " (a CSP alias; not known to serve the Guest API)" if key in ALIAS_DOMAINS else ""
    raise CommandRejected(
        "unknown_region",
        f"unknown Genesys region {region[:100]!r}{hint}; expected one of: {', '.join(REGION_DOMAINS)}",
    )


@dataclass(frozen=True, slots=True)
class GenesysEndpoints:
    """The URLs of one region (or of an override base). Build with :func:`endpoints_for`.

    ``ws_base`` is ``wss://webmessaging.<domain>/v1``; ``rest_base`` is ``https://api.<domain>`` (REST
    paths such as ``/api/v2/webmessaging/messages`` go under it); ``cdn_base`` serves the public
    deployment config (``https://api-cdn.<domain>``).
    """

    domain: str
    ws_base: str
    rest_base: str
    cdn_base: str
    overridden: bool = False

    def websocket_url(self, deployment_id: str, *, application: str | None = None) -> str:
        """``<ws_base>?deploymentId=..[&application=..]``, URL-encoded (§2.1)."""
        params = {"deploymentId": deployment_id}
        if application:
            params["application"] = application
        return f"{self.ws_base}?{urlencode(params, quote_via=quote)}"

    def deployment_config_url(self, deployment_id: str) -> str:
        """Public deployment config JSON (§2.2): ``<cdn>/webdeployments/v1/deployments/<id>/config.json``."""
        return f"{self.cdn_base}/webdeployments/v1/deployments/{quote(deployment_id, safe='')}/config.json"

    @property
    def history_url(self) -> str:
        """``GET`` target of the history backfill (§9)."""
        return f"{self.rest_base}/api/v2/webmessaging/messages"


def _from_override(domain: str, override: str) -> GenesysEndpoints:
    parts = urlsplit(override.strip())
    scheme = parts.scheme.lower()
    if scheme not in _WS_SCHEME or not parts.netloc:
        raise ConfigError(f"genesys_base_url {override!r} is not an http(s)/ws(s) URL")
    path = parts.path.rstrip("/")
    rest = urlunsplit((_HTTP_SCHEME[scheme], parts.netloc, path, "", ""))
    ws = urlunsplit((_WS_SCHEME[scheme], parts.netloc, f"{path}/v1", "", ""))
    return GenesysEndpoints(domain=domain, ws_base=ws, rest_base=rest, cdn_base=rest, overridden=True)


def endpoints_for(region: str, *, override: str | None = None, allow_aliases: bool = False) -> GenesysEndpoints:
    """Endpoints for ``region``; ``override`` (e.g. ``http://127.0.0.1:9000``) replaces every base.

    Raises:
        CommandRejected: ``unknown_region`` for a region outside §2.2.
        ConfigError: ``override`` is not an http(s)/ws(s) URL (``Settings`` normally catches this at start).
    """
    domain = resolve_domain(region, allow_aliases=allow_aliases)
    if override:
        return _from_override(domain, str(override))
    return GenesysEndpoints(
        domain=domain,
        ws_base=f"wss://webmessaging.{domain}/v1",
        rest_base=f"https://api.{domain}",
        cdn_base=f"https://api-cdn.{domain}",
    )


def resolve_origin(settings: Settings, deployment_id: str, command_origin: str | None) -> str | None:
    """The ``Origin`` for a session's WebSocket upgrade and history requests (§2.3).

    Precedence: the command's ``origin``, then ``BRIDGE_DEPLOYMENT_ORIGINS[deployment_id]``, then
    ``BRIDGE_DEFAULT_ORIGIN``. ``None`` when none is set: pass it on as is, and the connector and the
    REST client send the SDK's own value (:func:`websocket_sdk_origin`, :func:`history_sdk_origin`).
    Call it for every connect and history request rather than storing the result, so that a settings
    change applies on the next restart to resumed sessions too.
    """
    return command_origin or settings.deployment_origins.get(deployment_id) or settings.default_origin or None


def websocket_sdk_origin(url: str) -> str:
    """The ``Origin`` Genesys' mobile SDK sends on the upgrade of ``url``: the bare host of the socket URL
    (``webmessaging.mypurecloud.com``; no scheme, as the SDK sends it on Android and iOS alike, §2.3).

    A request without any ``Origin`` may be refused; a deployment restricted to allowed domains needs
    one of those instead of this default: configure it (:func:`resolve_origin`).
    """
    return urlsplit(url).hostname or ""


def history_sdk_origin(rest_base: str) -> str:
    """The ``Origin`` Genesys' mobile SDK sends with a history request (§9): its configured region domain,
    which is the REST host without ``api.`` (``https://api.mypurecloud.ie`` → ``mypurecloud.ie``)."""
    host = urlsplit(rest_base).hostname or ""
    return host.removeprefix("api.")
