"""Typed, frozen settings read from the environment. The only module that reads ``os.environ``.

Every setting is ``BRIDGE_<NAME>`` (upper case). Units are in the names. ``Settings.load()`` validates
everything at start; a bad value raises :class:`bridge.errors.ConfigError`, which the CLI turns into
exit code ``EXIT_CONFIG`` (78) before any connection opens.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from typing import Annotated, Final, Literal

from pydantic import AnyUrl, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bridge.errors import ConfigError
from bridge.partition.layout import MAX_PARTITIONS

__all__ = ["ENV_PREFIX", "Settings", "environment_unknowns", "settings_table", "unknown_variables"]

#: Every setting's environment variable is this prefix plus the field name in upper case.
ENV_PREFIX: Final = "BRIDGE_"

#: The longest Origin accepted in settings (a command's ``origin`` has the same limit).
_MAX_ORIGIN_CHARS: Final = 512


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """All configuration of the daemon. Construct with :meth:`load` in production, or with keywords in tests."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid", case_sensitive=False)

    # --- RabbitMQ -----------------------------------------------------------------------------------
    amqp_url: SecretStr = Field(
        default=SecretStr("amqp://guest:guest@127.0.0.1:5672/"),
        description="RabbitMQ URL. Holds a password, so it is never logged.",
    )
    command_exchange: str = Field(default="genesys.commands", description="Durable topic exchange for commands.")
    intake_queue: str = Field(default="genesys.bridge.commands", description="Quorum queue the bridge consumes.")
    event_exchange: str = Field(default="genesys.events", description="Topic exchange events are published to.")
    dead_letter_queue: str = Field(
        default="genesys.bridge.dead-letter", description="Where rejected and poison commands end up."
    )
    delivery_limit: int = Field(
        default=5, ge=1, description="Quorum `x-delivery-limit`: redeliveries before a command is dead-lettered."
    )
    prefetch: int = Field(default=256, ge=1, le=65535, description="Unacked commands held at once, all sessions.")
    publish_timeout_s: float = Field(default=10.0, gt=0, description="Wait for a publisher confirm at most this.")
    publish_buffer_size: int = Field(
        default=10_000, ge=1, description="Events buffered while the broker is away; full means back-pressure."
    )
    max_command_bytes: int = Field(
        default=1_048_576, ge=1024, description="Larger command bodies are rejected as `too_large`."
    )
    broker_reconnect_max_s: float = Field(default=30.0, gt=0, description="Upper bound of broker reconnect backoff.")

    # --- HTTP (metrics and probes) ------------------------------------------------------------------
    http_host: str = Field(default="0.0.0.0", description="Bind address for /metrics, /healthz, /readyz.")
    http_port: int = Field(default=8080, ge=0, le=65535, description="Port for /metrics, /healthz, /readyz.")
    admin_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port of the read-only admin endpoint (GET /sessions/{id}); unset: no admin endpoint.",
    )
    admin_host: str = Field(
        default="127.0.0.1",
        description="Bind address of the admin endpoint (loopback: reach it with a port-forward).",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="When set, the admin endpoint asks for `Authorization: Bearer <token>`.",
    )

    # --- Genesys ------------------------------------------------------------------------------------
    genesys_base_url: AnyUrl | None = Field(
        default=None,
        description=(
            "Unset in production. Replaces the Genesys WebSocket and REST bases for every session "
            "(simulator or proxy): http://h:p gives REST http://h:p/api/v2/... and WebSocket ws://h:p/v1."
        ),
    )
    allowed_deployments: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated deployment ids. When set, `session.start` for any other is rejected.",
    )
    default_origin: str | None = Field(
        default=None,
        description=(
            "Origin header on the WebSocket upgrade and history requests when neither the command nor "
            "`BRIDGE_DEPLOYMENT_ORIGINS` names one. Unset: what Genesys' mobile SDK sends, the Genesys host (§2.3)."
        ),
    )
    deployment_origins: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description=(
            'JSON object of deployment id → Origin, e.g. `{"<id>": "https://shop.example.com"}`, for '
            "deployments restricted to allowed domains (§2.3). A command's `origin` still wins."
        ),
    )
    deployment_config_ttl_s: float = Field(
        default=300.0,
        gt=0,
        description=(
            "A deployment's public config.json (which Messenger features are on, §2.2) is reused this long "
            "before it is fetched again."
        ),
    )
    application_name: str = Field(default="genesys-bridge", description="`application` query parameter (§2.1).")
    send_rate_per_s: float = Field(
        default=2.0,
        gt=0,
        description="Per-session send rate shared by messages and typing (Genesys limit, §8): the long-run average.",
    )
    send_burst: int = Field(
        default=2,
        ge=1,
        description=(
            "At most this many sends per session in any `send_burst / send_rate_per_s` seconds (a sliding "
            "window): the defaults allow 2 in any 1 s."
        ),
    )
    typing_interval_s: float = Field(default=5.0, ge=0, description="At most one typing indicator per interval.")
    echo_interval_s: float = Field(
        default=240.0, ge=30.0, description="Health-check `echo` interval; Genesys allows 2/min per connection."
    )
    ws_ping_interval_s: float | None = Field(
        default=30.0, gt=0, description="WebSocket ping interval; empty disables pings (cost: see perf notes)."
    )
    ws_ping_timeout_s: float | None = Field(
        default=20.0,
        gt=0,
        description="Close the socket if a ping is unanswered this long; empty: a missing pong never closes it.",
    )
    ws_connect_timeout_s: float = Field(default=10.0, gt=0, description="Upgrade plus `SessionResponse` timeout.")
    reconnect_initial_s: float = Field(default=0.5, gt=0, description="First reconnect backoff (jittered, doubling).")
    reconnect_max_s: float = Field(default=30.0, gt=0, description="Upper bound of reconnect backoff.")
    reconnect_give_up_s: float = Field(
        default=600.0, gt=0, description="Stop reconnecting a session after this long and report it failed."
    )
    delivery_timeout_s: float = Field(
        default=30.0, gt=0, description="A sent message with no echo by then has outcome `failed`/`timeout`."
    )
    session_idle_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description=(
            "End a session with reason `idle` after this long without agent activity; empty: never. With the "
            "deployment's Disconnect off (Genesys' default) the agent's end is never announced, so without it a "
            "session holds its socket until Genesys' TTL (72 h by default)."
        ),
    )
    reorder_window_s: float = Field(
        default=0.0,
        ge=0,
        le=5.0,
        description=(
            "Hold live agent messages this long and publish them in Genesys' `channel.time` order (Genesys "
            "promises no ordering, §10); 0 publishes each as it arrives."
        ),
    )
    history_page_size: int = Field(default=25, ge=1, le=100, description="Page size for history backfill (§9).")
    history_max_pages: int = Field(default=10, ge=1, description="Backfill stops after this many pages.")
    attachment_fetch_allow_private: bool = Field(
        default=False,
        description=(
            "Let attachment URLs reach loopback, private, link-local and other non-public addresses "
            "(refused by default: a command must not make the bridge read internal endpoints)."
        ),
    )
    attachment_fetch_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated host names attachment URLs may use (exact match); empty: any public host.",
    )

    # --- Sessions -----------------------------------------------------------------------------------
    max_sessions: int = Field(default=10_000, ge=1, description="Live sessions held at once; more are rejected.")
    inbox_size: int = Field(default=64, ge=1, description="Commands queued per session before `overflow`.")
    inbox_max_age_s: float = Field(
        default=60.0, gt=0, description="A command older than this in a session inbox fails with `overflow`."
    )
    # Sized by the redelivery window it covers: a duplicate comes from a lost ack (redelivered within seconds
    # of the reconnect) or a publisher retrying after its own timeout (minutes). 250,000 entries at about
    # 200 bytes each (bench/idempotency_memory.py) is ~48 MiB when full, and cover 11 minutes at 375
    # commands/s, one bridge's measured saturation (docs/performance.md), 42 minutes at 100 commands/s.
    idempotency_cache_size: int = Field(
        default=250_000,
        ge=0,
        description=(
            "Outcomes remembered by `command_id` to answer duplicates (about 200 bytes each): "
            "the default covers 11 minutes of redeliveries at 375 commands/s, 42 at 100/s."
        ),
    )
    startup_timeout_s: float = Field(
        default=60.0, gt=0, description="Broker connect and journal replay must finish within this at start."
    )
    drain_timeout_s: float = Field(default=20.0, gt=0, description="SIGTERM: settle in-flight work within this.")

    # --- Durable sessions ---------------------------------------------------------------------------
    durable_sessions: bool = Field(
        default=True,
        description="Journal sessions so a restart resumes them (needs a state key); false: they die with the process.",
    )
    state_key: SecretStr | None = Field(
        default=None, description="urlsafe-base64 32-byte key that encrypts session tokens in the journal."
    )
    state_key_file: str | None = Field(default=None, description="File holding the state key (instead of the env).")
    state_old_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Comma-separated retired keys, used only to read old records."
    )
    journal_stream: str = Field(default="genesys.bridge.journal", description="RabbitMQ stream for session records.")
    journal_max_age: str = Field(default="7D", description="Stream retention by age (`x-max-age`).")
    rejournal_interval_s: float = Field(
        default=3600.0, gt=0, description="Live sessions are re-journalled this often so retention keeps them."
    )
    journal_format: Literal[1, 2] = Field(
        default=1,
        description=(
            "Format of the session records written: 1 (JSON) or 2 (binary: smaller, cheaper to seal). Both are "
            "read; set 2 only once no replica runs a release that cannot read it (docs/durability.md)."
        ),
    )
    resume_rate_per_s: float = Field(
        default=100.0,
        gt=0,
        description="Cap on sessions resumed per second after a restart (on top of the connect window).",
    )
    genesys_connects_per_min: int = Field(
        default=1000,
        ge=1,
        description=(
            "New Genesys connections per deployment in any 60 s (Genesys' limit, default 1000, §8). "
            "Lower it when browsers share the deployment."
        ),
    )

    # --- Scale-out ----------------------------------------------------------------------------------
    partitions: int = Field(
        default=16,
        ge=1,
        le=MAX_PARTITIONS,
        description=(
            "Partition queues sessions are spread over (`<intake>.p<N>`), owned one replica each. Fixed for the "
            "life of a deployment: a bridge refuses to start with another value (docs/scaling.md, changing it)."
        ),
    )
    probe_interval_s: float = Field(
        default=2.0,
        gt=0,
        description=(
            "How often each replica probes every partition; the active consumer learns it owns a partition "
            "from the probes, so a failover takes up to this long to be noticed."
        ),
    )
    balance_interval_s: float = Field(
        default=5.0, gt=0, description="How often a replica compares its partitions with its fair share."
    )
    fence_grace_s: float = Field(
        default=1.0,
        ge=0,
        description=(
            "A replica that loses a partition lets in-flight commands settle this long, then closes the "
            "partition's sockets; a new owner waits as long before it resumes them."
        ),
    )

    replica_name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
        description=(
            "This replica's name in its broker connections' names (`genesys-bridge.<name>.p3`, ...) and in the "
            "admin endpoint's `owner`; the chart sets the pod's name. Unset: the host name."
        ),
    )

    # --- Process ------------------------------------------------------------------------------------
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        default="auto",
        description=(
            "The event loop: `uvloop` (libuv, faster sockets and callbacks), `asyncio` (the standard library's), "
            "or `auto`: uvloop when it is installed (the image has it), else asyncio. `uvloop` without uvloop "
            "installed refuses to start."
        ),
    )

    # --- Logs ---------------------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level.")
    log_format: Literal["json", "console"] = Field(default="json", description="JSON for machines, console for you.")
    otel_enabled: bool = Field(
        default=False,
        description=(
            "Emit OpenTelemetry spans for command handling and Genesys round trips (needs the `otel` extra; "
            "export is configured by the standard OTEL_* variables)."
        ),
    )

    @field_validator("allowed_deployments", mode="before")
    @classmethod
    def _csv_deployments(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("attachment_fetch_hosts", mode="before")
    @classmethod
    def _csv_hosts(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("state_old_keys", mode="before")
    @classmethod
    def _csv_keys(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("journal_format", mode="before")
    @classmethod
    def _format_number(cls, value: object) -> object:
        # The environment gives text, which a choice of integers does not take as it is.
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value

    @field_validator("deployment_origins", mode="before")
    @classmethod
    def _json_origins(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON object: {exc.msg}") from None
        return value

    @field_validator("deployment_origins")
    @classmethod
    def _header_safe_origins(cls, value: dict[str, str]) -> dict[str, str]:
        for deployment_id, origin in value.items():
            if not deployment_id.strip():
                raise ValueError("a deployment id is empty")
            if not origin or len(origin) > _MAX_ORIGIN_CHARS or not origin.isprintable() or " " in origin:
                raise ValueError(f"the origin of {deployment_id!r} is not a header-safe Origin")
        return value

    @field_validator("genesys_base_url")
    @classmethod
    def _http_base(cls, value: AnyUrl | None) -> AnyUrl | None:
        if value is not None and value.scheme not in {"http", "https"}:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("ws_ping_interval_s", "ws_ping_timeout_s", "admin_port", "admin_token", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _bounds(self) -> Settings:
        if self.reconnect_initial_s > self.reconnect_max_s:
            raise ValueError("reconnect_initial_s must not exceed reconnect_max_s")
        return self

    @classmethod
    def load(cls, **overrides: object) -> Settings:
        """Read and validate settings from the environment (plus ``overrides``).

        Raises:
            ConfigError: with one line per invalid setting, naming its environment variable.
        """
        try:
            return cls(**overrides)  # type: ignore[arg-type]
        except ValidationError as exc:
            lines = []
            for err in exc.errors():
                name = "BRIDGE_" + "_".join(str(p) for p in err["loc"]).upper() if err["loc"] else "settings"
                lines.append(f"{name}: {err['msg']}")
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def settings_table() -> str:
    """The README's settings table (env var, default, meaning), generated from :class:`Settings`."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        shown = "*(unset)*" if default in (None, [], "") else f"`{default}`"
        rows.append(f"| `BRIDGE_{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """The ``BRIDGE_*`` names in ``environ`` that are no setting, each with the closest setting's name or ``None``.

    Pure: the caller passes the environment (the daemon passes ``os.environ``) and decides what to do with
    the answer; the daemon logs a warning for each, never fails, because a stray variable must not stop a
    bridge that is otherwise configured. Names are matched case-insensitively, as :class:`Settings` reads
    them. Sorted by name.
    """
    known = sorted(name.upper() for name in Settings.model_fields)
    unknown: list[tuple[str, str | None]] = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper.removeprefix(ENV_PREFIX) in known:
            continue
        # Compared without the prefix: every name shares it, which would make any two names look alike.
        closest = difflib.get_close_matches(upper.removeprefix(ENV_PREFIX), known, n=1)
        unknown.append((name, ENV_PREFIX + closest[0] if closest else None))
    return unknown


def environment_unknowns() -> list[tuple[str, str | None]]:
    """:func:`unknown_variables` of this process' environment (this module is the one that reads it)."""
    return unknown_variables(os.environ)
