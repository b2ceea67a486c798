"""configure_logging: real stdlib + structlog loggers rendered to a stream, secrets redacted.

Tests here are ``async def`` even when they await nothing: under pytest-asyncio 1.x, looptime's plugin
creates (and leaks) an event loop for a *sync* test, which fails the next async test on ResourceWarning.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import structlog
from pydantic import SecretStr

from bridge.observability.logging import MASK, NOISY_LIBRARIES, configure_logging, redact

PASSWORD = "hunter2-pw"
TOKEN = "6c1b0f1e-session-token"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJndWVzdCJ9.c2lnbmF0dXJl"
SIGNATURE = "f00dfeedsignature"
PRESIGNED = f"https://shyrka-prod.s3.amazonaws.com/up/abc.png?X-Amz-Credential=AKIAX&X-Amz-Signature={SIGNATURE}"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Configure logging onto a string buffer for one test, then undo it."""
    root = logging.getLogger()
    saved_level = root.level
    saved_levels = {name: logging.getLogger(name).level for name in NOISY_LIBRARIES}
    saved_handlers = list(root.handlers)
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="json", stream=stream)
    try:
        yield stream
    finally:
        for handler in [h for h in root.handlers if h not in saved_handlers]:
            root.removeHandler(handler)
        root.setLevel(saved_level)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
        structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_one_json_object_per_line_with_standard_fields_and_bound_context(log_stream: io.StringIO) -> None:
    log = structlog.get_logger("bridge.session.actor")
    with structlog.contextvars.bound_contextvars(session_id="s-42"):
        log.info("session_state_changed", old="connecting", new="connected", note="multi\nline")
    log.info("outside")

    first, second = lines(log_stream)
    assert list(first)[:4] == ["timestamp", "level", "event", "logger"]
    assert first["event"] == "session_state_changed"
    assert first["level"] == "info"
    assert first["logger"] == "bridge.session.actor"
    assert first["session_id"] == "s-42"
    assert (first["old"], first["new"], first["note"]) == ("connecting", "connected", "multi\nline")
    stamp = datetime.fromisoformat(first["timestamp"])
    assert stamp.utcoffset() is not None
    assert stamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert "session_id" not in second


async def test_redaction_of_structlog_fields_nested_and_typed(log_stream: io.StringIO) -> None:
    log = structlog.get_logger("bridge.app")
    log.info(
        "secrets_everywhere",
        token=TOKEN,
        resume_token=TOKEN,
        jwt=JWT,
        authorization=f"Bearer {JWT}",
        password=PASSWORD,
        amqp_url=f"amqp://guest:{PASSWORD}@rabbit:5672/",
        broker=f"amqp://guest:{PASSWORD}@rabbit:5672/vhost",
        state_key=SecretStr("k" * 43),
        settings_secret=SecretStr(PASSWORD),
        upload={"url": PRESIGNED, "headers": {"x-amz-tagging": "a=b", "Authorization": f"Bearer {JWT}"}},
        pending=[{"attachment": {"upload_url": PRESIGNED}}, ("Bearer abc.def", JWT)],
        frame=f'{{"action":"configureSession","token":"{TOKEN}","deploymentId":"dep-1"}}',
        text=f"see {PRESIGNED} now",
        deployment_id="dep-1",
        tracing_id="t-1",
        routing_key="message.received.dep-1",
    )
    out = log_stream.getvalue()
    for secret in (TOKEN, JWT, PASSWORD, SIGNATURE, "k" * 43, "abc.def"):
        assert secret not in out
    (line,) = lines(log_stream)
    assert line["token"] == line["resume_token"] == line["jwt"] == line["password"] == MASK
    assert line["authorization"] == MASK
    assert line["amqp_url"] == MASK
    assert line["broker"] == f"amqp://guest:{MASK}@rabbit:5672/vhost"
    assert line["state_key"] == line["settings_secret"] == MASK
    assert line["upload"]["url"] == f"https://shyrka-prod.s3.amazonaws.com/up/abc.png?{MASK}"
    assert line["upload"]["headers"] == {"x-amz-tagging": "a=b", "Authorization": MASK}
    assert line["pending"][0]["attachment"]["upload_url"].endswith(f"?{MASK}")
    assert json.loads(line["frame"]) == {"action": "configureSession", "token": MASK, "deploymentId": "dep-1"}
    assert "X-Amz-Signature=***" in line["text"]
    # Not secrets: kept as they are.
    kept = (line["deployment_id"], line["tracing_id"], line["routing_key"])
    assert kept == ("dep-1", "t-1", "message.received.dep-1")


async def test_stdlib_library_records_go_through_the_same_renderer_and_redaction(log_stream: io.StringIO) -> None:
    logging.getLogger("aiormq.connection").warning(
        "Connection to amqp://guest:%s@127.0.0.1:5672/ lost; headers %s",
        PASSWORD,
        {"Authorization": f"Bearer {JWT}"},
    )
    logging.getLogger("httpx").warning("HTTP Request: PUT %s 403", PRESIGNED)

    amqp, http = lines(log_stream)
    assert amqp["logger"] == "aiormq.connection"
    assert amqp["level"] == "warning"
    assert "timestamp" in amqp
    assert f"amqp://guest:{MASK}@127.0.0.1:5672/" in amqp["event"]
    assert PASSWORD not in amqp["event"]
    assert JWT not in amqp["event"]
    assert http["logger"] == "httpx"
    assert SIGNATURE not in http["event"]


async def test_noisy_libraries_are_held_at_warning(log_stream: io.StringIO) -> None:
    logging.getLogger("websockets.client").info("> TEXT '{...}' [50 bytes]")
    logging.getLogger("aio_pika.robust_connection").debug("heartbeat")
    logging.getLogger("bridge.amqp").info("intake_consuming")
    assert [line["event"] for line in lines(log_stream)] == ["intake_consuming"]


async def test_exceptions_are_a_structured_field_without_locals_and_redacted(log_stream: io.StringIO) -> None:
    log = structlog.get_logger("bridge.app")

    def connect(secret_local: str) -> None:  # a local that must never be rendered
        raise ConnectionError(f"cannot reach amqp://guest:{secret_local}@rabbit/")

    def parse() -> None:
        raise ValueError("bad frame")

    try:
        connect(PASSWORD)
    except ConnectionError:
        log.exception("broker_connect_failed", attempt=3)
    try:
        parse()
    except ValueError:
        logging.getLogger("websockets.client").error("handler failed", exc_info=True)

    ours, theirs = lines(log_stream)
    assert PASSWORD not in json.dumps(ours)
    (exc,) = ours["exception"]
    assert exc["exc_type"] == "ConnectionError"
    assert exc["exc_value"] == f"cannot reach amqp://guest:{MASK}@rabbit/"
    assert exc["frames"]
    assert all("locals" not in frame for frame in exc["frames"])
    assert ours["attempt"] == 3
    assert theirs["exception"][0]["exc_type"] == "ValueError"


async def test_console_format_is_redacted_too() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = list(root.handlers)
    try:
        configure_logging(level="DEBUG", fmt="console", stream=stream)
        structlog.get_logger("bridge.x").debug("hello", token=TOKEN, url=PRESIGNED)
    finally:
        for handler in [h for h in root.handlers if h not in saved]:
            root.removeHandler(handler)
        structlog.reset_defaults()
        for name in NOISY_LIBRARIES:
            logging.getLogger(name).setLevel(logging.NOTSET)
    out = stream.getvalue()
    assert "hello" in out
    assert TOKEN not in out
    assert SIGNATURE not in out


async def test_configuring_again_replaces_the_handler(log_stream: io.StringIO) -> None:
    second = io.StringIO()
    configure_logging(level="INFO", fmt="json", stream=second)
    structlog.get_logger("bridge.x").info("once")
    assert log_stream.getvalue() == ""
    assert [line["event"] for line in lines(second)] == ["once"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi", f"Authorization: Bearer {MASK}"),
        ("basic dXNlcjpwYXNz here", f"basic {MASK} here"),
        (f"jwt {JWT} end", f"jwt {MASK} end"),
        ("https://h/p?deploymentId=d&sig=xyz&x=1", f"https://h/p?deploymentId=d&sig={MASK}&x=1"),
        ("ws://h/v1?deploymentId=d", "ws://h/v1?deploymentId=d"),
        ('{"jwt": "a\\"b", "x": 1}', f'{{"jwt": "{MASK}", "x": 1}}'),
        ("plain text, nothing secret", "plain text, nothing secret"),
    ],
)
async def test_redact_free_text(value: str, expected: str) -> None:
    assert redact(value) == expected


async def test_redact_leaves_non_secrets_and_other_types_alone() -> None:
    assert redact({"count": 3, "ok": True, "none": None, "token": None, "ratio": 0.5}) == {
        "count": 3,
        "ok": True,
        "none": None,
        "token": None,
        "ratio": 0.5,
    }
    assert redact({"callback_url": "https://h/cb"}) == {"callback_url": "https://h/cb"}
    assert redact(("a", f"Bearer {TOKEN}")) == ["a", f"Bearer {MASK}"]


async def test_records_below_the_level_are_dropped_before_any_processing(log_stream: io.StringIO) -> None:
    # The hot paths log at DEBUG (state changes, echo answers): below the level that must cost a level check,
    # not a timestamp, the bound context and a formatter wrap first.
    assert structlog.get_config()["processors"][0] is structlog.stdlib.filter_by_level
    log = structlog.get_logger("bridge.session")
    log.debug("session_state_changed", old="starting", new="connecting")
    log.info("session_ended", reason="idle")
    assert [line["event"] for line in lines(log_stream)] == ["session_ended"]
