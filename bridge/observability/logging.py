"""Structured logs: one JSON object per line, secrets redacted, stdlib records through the same renderer.

Only the application calls :func:`configure_logging` (never at import). Modules log with
``structlog.get_logger(__name__)`` and stable snake_case event names plus fields; per-task context
(``session_id``, ``partition``) is bound with ``structlog.contextvars.bound_contextvars``. Libraries that
log through the stdlib (aio-pika, aiormq, websockets, httpx, aiohttp) end up in the very same chain
through :class:`structlog.stdlib.ProcessorFormatter`, so their records are redacted and rendered alike.

The chain, each step doing one thing::

    merge_contextvars → add_log_level → add_logger_name → TimeStamper(ISO, UTC)   (both kinds of record)
    → exception to a structured ``exception`` field → redact_secrets → lead_fields → JSON (or console)

Redaction (:func:`redact_secrets`) is the last step before rendering, so nothing a processor or an
exception adds escapes it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TextIO

import structlog
from pydantic import SecretBytes, SecretStr
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["MASK", "NOISY_LIBRARIES", "configure_logging", "lead_fields", "redact", "redact_secrets"]

#: What a secret is replaced with.
MASK = "***"

#: Libraries whose INFO/DEBUG chatter (one line per frame, request or heartbeat) would drown ours.
NOISY_LIBRARIES: tuple[str, ...] = (
    "aio_pika",
    "aiormq",
    "pamqp",
    "websockets",
    "httpx",
    "httpcore",
    "aiohttp",
    "asyncio",
)

# --- redaction -----------------------------------------------------------------------------------------

#: Keys whose whole value is a secret, compared after lower-casing and dropping ``_`` and ``-``.
_SECRET_KEYS = frozenset(
    {
        "token",
        "jwt",
        "authorization",
        "proxyauthorization",
        "password",
        "passwd",
        "secret",
        "clientsecret",
        "apikey",
        "cookie",
        "setcookie",
        "amqpurl",
        "statekey",
        "statekeyfile",
        "stateoldkeys",
        "xamzsecuritytoken",
    }
)
#: Key endings that mark a secret too: ``resume_token``, ``session_token``, ``access_token``, ``old_password``.
_SECRET_SUFFIXES = ("token", "jwt", "password", "secret")
#: Keys that name a URL: their query string is masked whole (a presigned URL's signature lives there).
_URL_SUFFIXES = ("url", "uri", "href", "location")

# scheme://user:password@host → scheme://user:***@host
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*):[^@/?#\s]*@")
# Authorization header values written out in text.
_AUTH_SCHEME = re.compile(r"(?i)\b(?P<head>bearer|basic|digest)\s+[A-Za-z0-9._~+/=-]+")
# JSON Web Tokens anywhere (header.payload.signature, the header always starts eyJ).
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# Query parameters that sign or authorise a request (S3/GCS/Azure presigns, tokens, keys).
_SECRET_PARAM = re.compile(
    r"(?i)(?P<head>[?&](?:x-amz-[a-z-]+|x-goog-[a-z-]+|signature|sig|policy|key-pair-id|"
    r"token|access_token|jwt|key|api_key|apikey|password|code|credential)=)[^&#\s\"']*"
)
# "token": "…" inside a logged JSON frame (the Guest API puts the session token in every request, §3.1).
_JSON_SECRET = re.compile(
    r"(?i)(?P<head>\"(?:token|jwt|resumeToken|password|authorization)\"\s*:\s*\")(?:[^\"\\]|\\.)*\""
)


def _is_secret_key(key: str) -> bool:
    norm = key.lower().replace("_", "").replace("-", "")
    return norm in _SECRET_KEYS or norm.endswith(_SECRET_SUFFIXES)


def _is_url_key(key: str) -> bool:
    return key.lower().endswith(_URL_SUFFIXES)


def _redact_text(text: str) -> str:
    """Mask secrets inside free text: URL passwords, auth headers, JWTs, signing query params, JSON tokens."""
    if "://" in text and "@" in text:
        text = _USERINFO.sub(rf"\g<head>:{MASK}@", text)
    text = _AUTH_SCHEME.sub(rf"\g<head> {MASK}", text)
    if "eyJ" in text:
        text = _JWT.sub(MASK, text)
    if "=" in text:
        text = _SECRET_PARAM.sub(rf"\g<head>{MASK}", text)
    if '"' in text:
        text = _JSON_SECRET.sub(rf'\g<head>{MASK}"', text)
    return text


def _redact_url(text: str) -> str:
    """A value under a ``…url`` key: credentials masked and the whole query string dropped."""
    text = _redact_text(text)
    head, sep, _query = text.partition("?")
    return f"{head}?{MASK}" if sep else head


def redact(value: Any, key: str | None = None) -> Any:
    """Return ``value`` with every secret masked, recursing into mappings, lists, tuples and sets.

    ``key`` is the name the value is filed under: secret-looking keys (``token``, ``jwt``,
    ``authorization``, ``password``, ``amqp_url``, ``state_key``, any ``*_token`` …) are masked whole;
    ``…url`` keys lose their query string. ``SecretStr``/``SecretBytes`` are always masked. Strings
    anywhere are scanned for URL passwords, ``Bearer …``, JWTs, signing query params and JSON tokens.
    """
    if isinstance(value, (SecretStr, SecretBytes)):
        return MASK
    if key is not None and _is_secret_key(key):
        return MASK if value is not None else None
    if isinstance(value, str):
        return _redact_url(value) if key is not None and _is_url_key(key) else _redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact(v, k if isinstance(k, str) else None) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(item, key) for item in value]
    return value


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: :func:`redact` every field of the event, ``event`` included."""
    return {key: redact(value, key) for key, value in event_dict.items()}


_LEAD_FIELDS = ("timestamp", "level", "event", "logger")


def lead_fields(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: put ``timestamp, level, event, logger`` first so lines read left to right."""
    ordered = {key: event_dict[key] for key in _LEAD_FIELDS if key in event_dict}
    ordered.update(event_dict)
    return ordered


# --- configuration ----------------------------------------------------------------------------------------


def _shared_chain() -> list[Processor]:
    """Steps for every record, structlog's or a stdlib library's (``foreign_pre_chain``)."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]


def _render_chain(fmt: Literal["json", "console"]) -> list[Processor]:
    """Steps the formatter runs last: exception → redaction → rendering."""
    if fmt == "json":
        # Locals are never rendered: they would hold tokens and message bodies.
        exceptions: Processor = structlog.processors.ExceptionRenderer(
            ExceptionDictTransformer(show_locals=False, use_rich=False)
        )
        renderer: Processor = structlog.processors.JSONRenderer()
    else:
        exceptions = structlog.processors.format_exc_info
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    return [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        structlog.processors.StackInfoRenderer(),
        exceptions,
        redact_secrets,
        lead_fields,
        renderer,
    ]


class _BridgeHandler(logging.StreamHandler[TextIO]):
    """Marks the handler we installed, so that configuring again replaces it instead of doubling lines."""


def configure_logging(
    *,
    level: str,
    fmt: Literal["json", "console"],
    stream: TextIO | None = None,
    library_level: str = "WARNING",
    noisy_libraries: Iterable[str] = NOISY_LIBRARIES,
) -> None:
    """Route structlog and stdlib logging to one handler on ``stream`` (default ``sys.stderr``).

    Call once at start from the application (calling again replaces the previous setup, for tests).
    ``level`` applies to the bridge's own loggers; ``noisy_libraries`` are held at ``library_level``
    unless ``level`` is stricter.
    """
    handler = _BridgeHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=_shared_chain(), processors=_render_chain(fmt))
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _BridgeHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    numeric = max(logging.getLevelNamesMapping()[level.upper()], logging.getLevelNamesMapping()[library_level.upper()])
    for name in noisy_libraries:
        logging.getLogger(name).setLevel(numeric)

    structlog.configure(
        processors=[
            # First: a record below the level is dropped before any other step runs. Otherwise every DEBUG
            # call on a hot path (state changes, echo answers) paid for its timestamp and context, only for
            # the stdlib logger to drop it at the end.
            structlog.stdlib.filter_by_level,
            *_shared_chain(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        # Not cached: structlog.testing.capture_logs (used by tests) cannot see cached loggers.
        cache_logger_on_first_use=False,
    )
