"""The simulator's knobs: every limit and every behaviour the protocol reference marks uncertain.

``SimulatorConfig()`` is a real Genesys org as it comes out of the box (the protocol reference,
``docs/genesys-protocol.md``; each field cites the section it models): conversation disconnect, clear,
guest typing and autostart are off, error frames carry no ``tracingId``, and frames arrive in order.
:meth:`SimulatorConfig.everything_on` is a deployment with every optional feature switched on (what the
simulator did before it defaulted to the truth). :data:`PROFILES` names both for the command line.

``None`` on a limit switches that limit off. The object is frozen and keyword-only; build a variant with
:func:`dataclasses.replace`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = [
    "DEFAULT_ALLOWED_MEDIA",
    "DEFAULT_BLOCKED_EXTENSIONS",
    "PROFILES",
    "DisconnectOvertake",
    "ErrorTracing",
    "SimulatorConfig",
]

#: Whether error frames copy the request's ``tracingId`` (§3.2, §6).
ErrorTracing = Literal["never", "always"]
#: How an agent Disconnect races the agent's last message (§3.2, §5.3, §10).
DisconnectOvertake = Literal["off", "late", "lost"]

#: §5.1 fixture: the inbound file types a session may upload.
DEFAULT_ALLOWED_MEDIA: tuple[str, ...] = ("image/png", "image/jpeg", "image/gif", "application/pdf", "text/plain")
#: §4.6: extensions that are always blocked, whatever the type list says.
DEFAULT_BLOCKED_EXTENSIONS: tuple[str, ...] = (".exe", ".bat", ".cmd", ".com", ".js", ".msi", ".scr", ".vbs")


@dataclass(frozen=True, kw_only=True)
class SimulatorConfig:
    """How the simulated Genesys side behaves. See ``docs/simulator.md`` for the full table."""

    # --- listening -------------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 0  # 0 = pick a free port; read it back from Simulator.port
    #: Base URL put into presigned upload/download URLs; default ``http://<host>:<bound port>``.
    public_base_url: str | None = None
    #: permessage-deflate off by default: it triples memory per socket (docs/performance.md).
    compression: bool = False
    max_frame_bytes: int = 64 * 1024  # §8: real frame limit unknown; our frames stay far below
    #: Frames queued per connection before the connection counts as stuck and is dropped (1006).
    outbox_max_frames: int = 1024

    # --- deployment and upgrade (§2.3, §12) --------------------------------------------------------------
    allowed_deployments: frozenset[str] | None = None  # None = any deploymentId is known
    #: How an unknown deployment fails: 400 "Deployment not found" at configure, or HTTP 403 at the upgrade.
    unknown_deployment_mode: Literal["configure_400", "upgrade_403"] = "configure_400"
    allowed_origins: frozenset[str] | None = None  # None = any Origin (or none) is accepted
    #: "host" compares host names only (what Messenger does client-side); "exact" compares the whole origin.
    origin_match: Literal["host", "exact"] = "host"
    #: Where a disallowed Origin fails: HTTP 403 at the upgrade, or 403 "HTTP authorization error" at configure.
    origin_check: Literal["upgrade", "configure"] = "upgrade"
    #: §8: new WebSocket connections per deployment per minute (real default 1000). Off by default so
    #: benchmarks can open 10,000 sockets quickly; the upgrade answers HTTP 429 when exceeded.
    connections_per_min: int | None = None

    # --- session (§4.1, §5.1, §7) ----------------------------------------------------------------------
    session_duration_s: float = 259_200.0  # inactivity TTL, 72 h
    max_connections_per_session: int = 3  # a 4th closes the oldest with ConnectionClosedEvent
    max_token_chars: int = 2048
    #: §6/§14.4: the code for a request sent before configureSession (or for another token): 4007 "session
    #: not found" by default.
    unconfigured_code: int = 4007
    #: Close code used when the server drops a connection after ConnectionClosedEvent (§5.4; undocumented).
    server_close_code: int = 1000

    # --- limits (§8) -----------------------------------------------------------------------------------
    max_text_bytes: int = 4096  # → 4011
    max_custom_data_bytes: int = 2048  # → 4013
    message_rate_per_s: float | None = 2.0  # onMessage per session → 429 / errorCode 4029
    #: §8, §14.1 [?]: how Genesys counts that rate: a token bucket (a refill every 1/rate s) or a sliding
    #: window (at most ``message_rate_per_s`` in any 1 s, the stricter reading).
    message_rate_counting: Literal["bucket", "window"] = "bucket"
    #: Whether typing and presence events count against ``message_rate_per_s`` (§14.1 unknown).
    rate_counts_events: bool = True
    configure_per_min: int | None = 60  # per token → 429 "ConfigureSession rate too high for this session"
    echo_per_min: int | None = 2  # per connection
    requests_per_connection_per_min: int | None = None  # §8 says 60; off by default (conflicts with 2/s)
    history_per_min: int | None = 10  # REST history GETs per session
    retry_after_s: int = 3

    #: §3.2/§6: whether error frames (``class:"string"``, ``TooManyRequestsErrorMessage``,
    #: ``GenerateUrlError``) carry the request's ``tracingId``. No fixture or real capture shows one, and
    #: the official client pins an error on its oldest pending message instead: "never" by default.
    error_tracing_id: ErrorTracing = "never"

    # --- deployment features (§2.2 config.json; all off in a new deployment) ----------------------------
    typing_enabled: bool = False  # showUserTypingIndicator (§4.3f); off → 403 on guest typing
    echo_own_typing: bool = False  # §14.6 unknown: echo the guest's own Typing to the session's connections
    clear_enabled: bool = False  # conversationClear.enabled (§4.3g); off → 403
    #: conversationDisconnect.enabled (§5.3, §11.12: off by default). Off: an agent Disconnect ends the
    #: conversation without any frame to the guest, and the session stays writable.
    disconnect_enabled: bool = False
    #: conversationDisconnect.type (§5.3): "read_only" (ReadOnly) or "send" (Send: the session stays
    #: writable and the guest's next message starts a new conversation).
    disconnect_mode: Literal["read_only", "send"] = "read_only"
    autostart: bool = False  # autoStart.enabled (§4.3g; only reported: the client decides to send Join)
    allowed_media: tuple[str, ...] = DEFAULT_ALLOWED_MEDIA  # "*/*" allows any type
    max_file_size_kb: int = 10_240
    blocked_extensions: tuple[str, ...] = DEFAULT_BLOCKED_EXTENSIONS
    #: §4.6 [?]: whether ``getAttachment`` refreshes the URL of an *agent's* file too (Genesys' SDK uses it for
    #: the guest's own uploads; for agent files nobody says). Off: 4009 "Attachment not found" for those.
    refresh_agent_attachments: bool = False

    # --- tokens and history (§4.5, §9) -----------------------------------------------------------------
    #: Lifetime of every JWT: ``getJwt``'s and the authenticated-session ones the token endpoints issue
    #: (§4.2: "at most 15 minutes"). Measured on the simulator's clock.
    jwt_ttl_s: int = 900
    history_page_size: int = 25
    history_max_page_size: int = 100

    # --- authenticated web messaging (§4.2) --------------------------------------------------------------
    #: ``auth.enabled`` in config.json. Off (a new deployment): the code exchange answers 403 and
    #: ``configureAuthenticatedSession`` 403 "Turn on the Feature Toggle or fix the configuration.".
    auth_enabled: bool = False
    #: ``auth.allowSessionUpgrade`` [?]: whether an authenticated configure on a token whose session is
    #: anonymous upgrades that session in place (``newSession:false``, the transcript kept). Off: the
    #: anonymous session is replaced by a new authenticated one.
    allow_session_upgrade: bool = False
    #: [?] Whether an anonymous ``configureSession`` is refused with 403 "Authentication is required for this
    #: deployment". Nothing in the reference says Genesys can require authentication; off.
    auth_required: bool = False
    #: Codes and idTokens the code exchange refuses with 401 (more through ``refuse_auth_code``).
    refused_auth_codes: frozenset[str] = frozenset()
    #: How many of the first refreshes answer 401 whatever their token (more through ``fail_next_refresh``).
    fail_next_refreshes: int = 0
    #: Refresh-token lifetime (§4.2: 24 hours); a refresh returns the same token and does not extend it.
    refresh_token_ttl_s: int = 86_400
    #: After a revoke (logout), close the identity's connections after their ``LogoutEvent`` [?].
    close_on_logout: bool = True
    #: Whether ``configureAuthenticatedSession`` is accepted on a connection that is already configured (how
    #: a client re-authenticates after a refresh without reconnecting). Off: 400 "Request failed.".
    reconfigure_allowed: bool = True
    #: [?] Whether ``echo`` on a connection whose JWT expired is refused with 401 like other requests.
    #: Off: a health check keeps working, so a client tells "JWT expired" from "connection dead".
    echo_needs_auth: bool = False

    # --- scripted agent (§12) --------------------------------------------------------------------------
    agent_script: bool = True
    agent_reply_delay_s: float = 0.0  # between the Typing event and the reply
    agent_typing_duration_ms: int = 5000
    agent_nickname: str = "Sim Bot"
    agent_image: str | None = None
    agent_originating_entity: Literal["Bot", "Human"] = "Bot"
    #: Sent after an Inbound Presence Join (autostart); None = no greeting.
    agent_greeting: str | None = "Hi! I am the simulator bot. Try: quick, card, carousel, attachment, date, bye."

    # --- fault injection defaults (per session overrides via the control API) ---------------------------
    delay_s: float = 0.0
    #: §3.2/§10: real Genesys promises no ordering; frames (responses, echoes, agent messages, events) are
    #: shuffled within windows of this many frames, each keeping its true ``channel.time``. 1 = in order.
    reorder_window: int = 1
    reorder_flush_s: float = 0.05  # a partial window is flushed after this long
    #: §3.2/§10: "a Disconnect overtakes the agent's last message". The message is always in history
    #: (§9); its frame reaches the socket before the Presence Disconnect ("off"), after it ("late") or
    #: never ("lost"). Applies whenever a Disconnect frame follows a last message: the scripted ``bye``
    #: and ``Simulator.agent_say_and_disconnect``.
    disconnect_overtakes_last_message: DisconnectOvertake = "off"
    random_seed: int | None = None  # reorder shuffle seed, for reproducible runs
    #: Ended sessions kept for inspection (received/history) before the oldest are forgotten.
    retain_ended_sessions: int = 10_000

    @classmethod
    def everything_on(cls) -> SimulatorConfig:
        """A deployment with every optional feature on: Disconnect (ReadOnly), Clear, guest typing and
        autostart, and error frames that carry ``tracingId``. Everything else is the real default.

        Vary it with :func:`dataclasses.replace`, e.g. ``replace(SimulatorConfig.everything_on(),
        agent_script=False)``.
        """
        return cls(
            typing_enabled=True,
            clear_enabled=True,
            disconnect_enabled=True,
            disconnect_mode="read_only",
            autostart=True,
            error_tracing_id="always",
        )

    @classmethod
    def profile(cls, name: str) -> SimulatorConfig:
        """The config of a named profile (a key of :data:`PROFILES`). KeyError for an unknown name."""
        return PROFILES[name]

    def max_file_bytes(self) -> int:
        """The upload size limit in bytes (``maxFileSizeKB`` × 1024)."""
        return self.max_file_size_kb * 1024


#: Named configs, for ``--profile`` on the command line: "real" (a new Genesys deployment, the default)
#: and "everything-on" (:meth:`SimulatorConfig.everything_on`).
PROFILES: Mapping[str, SimulatorConfig] = MappingProxyType(
    {"real": SimulatorConfig(), "everything-on": SimulatorConfig.everything_on()}
)
