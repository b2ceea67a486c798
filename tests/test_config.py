"""Settings: validated at start, clear errors naming the variable, docs/configuration.md's table in sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import Settings, settings_table, unknown_variables
from bridge.errors import EXIT_CONFIG, ConfigError


def test_defaults_are_the_documented_ones() -> None:
    s = Settings.load()
    assert s.amqp_url.get_secret_value() == "amqp://guest:guest@127.0.0.1:5672/"
    assert (s.command_exchange, s.intake_queue) == ("genesys.commands", "genesys.bridge.commands")
    assert (s.event_exchange, s.dead_letter_queue) == ("genesys.events", "genesys.bridge.dead-letter")
    assert (s.http_host, s.http_port) == ("0.0.0.0", 8080)
    assert s.send_rate_per_s == 2.0
    assert s.typing_interval_s == 5.0
    assert s.genesys_base_url is None
    assert s.allowed_deployments == []
    assert (s.send_rate_per_s, s.send_burst) == (2.0, 2)  # at most 2 sends in any 1 s
    assert (s.default_origin, s.deployment_origins) == (None, {})
    assert s.deployment_config_ttl_s == 300.0


def test_the_journal_format_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_JOURNAL_FORMAT", " 2 ")
    assert Settings.load().journal_format == 2


def test_comma_separated_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_ALLOWED_DEPLOYMENTS", " dep-a, dep-b ,,")
    assert Settings.load().allowed_deployments == ["dep-a", "dep-b"]


def test_per_deployment_origins_are_a_json_object(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_DEPLOYMENT_ORIGINS", '{"dep-a": "https://shop.example.com", "dep-b": "app.example.com"}')
    assert Settings.load().deployment_origins == {"dep-a": "https://shop.example.com", "dep-b": "app.example.com"}
    monkeypatch.setenv("BRIDGE_DEPLOYMENT_ORIGINS", " ")
    assert Settings.load().deployment_origins == {}


@pytest.mark.parametrize(
    "value",
    [
        "dep-a=https://shop.example.com",  # not JSON
        '["https://shop.example.com"]',  # not an object
        '{"dep-a": 7}',  # not a string
        '{"dep-a": ""}',
        '{"dep-a": "https://shop.example.com\\r\\nX-Evil: 1"}',  # would split the header
        '{"dep-a": "https://shop example.com"}',
        '{" ": "https://shop.example.com"}',
    ],
)
def test_bad_per_deployment_origins_name_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("BRIDGE_DEPLOYMENT_ORIGINS", value)
    with pytest.raises(ConfigError, match="BRIDGE_DEPLOYMENT_ORIGINS"):
        Settings.load()


@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [
        ("BRIDGE_PREFETCH", "many", "BRIDGE_PREFETCH"),
        ("BRIDGE_HTTP_PORT", "70000", "BRIDGE_HTTP_PORT"),
        ("BRIDGE_GENESYS_BASE_URL", "ftp://example.invalid", "BRIDGE_GENESYS_BASE_URL"),
        ("BRIDGE_ECHO_INTERVAL_S", "5", "BRIDGE_ECHO_INTERVAL_S"),
        ("BRIDGE_LOG_FORMAT", "xml", "BRIDGE_LOG_FORMAT"),
        ("BRIDGE_DEPLOYMENT_CONFIG_TTL_S", "0", "BRIDGE_DEPLOYMENT_CONFIG_TTL_S"),
        ("BRIDGE_JOURNAL_FORMAT", "3", "BRIDGE_JOURNAL_FORMAT: Input should be 1 or 2"),
        ("BRIDGE_JOURNAL_FORMAT", "binary", "BRIDGE_JOURNAL_FORMAT: Input should be 1 or 2"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, env: str, value: str, needle: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as excinfo:
        Settings.load()
    assert needle in str(excinfo.value)
    assert value not in ("", None)


def test_secret_is_not_in_repr() -> None:
    s = Settings.load(amqp_url="amqp://u:hunter2@h:5672/")
    assert "hunter2" not in repr(s)


CONFIGURATION_DOC = Path(__file__).parents[1] / "docs" / "configuration.md"


def test_config_exit_code_is_documented() -> None:
    assert str(EXIT_CONFIG) in CONFIGURATION_DOC.read_text()


def test_settings_table_is_current() -> None:
    assert settings_table() in CONFIGURATION_DOC.read_text(), (
        "docs/configuration.md's settings table is stale: paste the output of "
        "`python -c 'from bridge.config import settings_table; print(settings_table())'`"
    )


def test_unknown_bridge_variables_are_found_with_the_closest_setting() -> None:
    environ = {
        "BRIDGE_LOG_LEVL": "DEBUG",  # a typo
        "BRIDGE_DEADLETTER_QUEUE": "x",  # a missing underscore
        "bridge_amqp_uri": "amqp://",  # any case, as Settings reads it
        "BRIDGE_XYZZY": "1",  # like nothing
        "BRIDGE_LOG_LEVEL": "INFO",  # known
        "bridge_intake_queue": "q",  # known, in lower case
        "PATH": "/usr/bin",  # not ours
        "MY_BRIDGE_THING": "1",  # not ours either: the prefix is at the start
    }
    assert unknown_variables(environ) == [
        ("BRIDGE_DEADLETTER_QUEUE", "BRIDGE_DEAD_LETTER_QUEUE"),
        ("BRIDGE_LOG_LEVL", "BRIDGE_LOG_LEVEL"),
        ("BRIDGE_XYZZY", None),
        ("bridge_amqp_uri", "BRIDGE_AMQP_URL"),
    ]


def test_every_setting_is_a_known_variable() -> None:
    assert unknown_variables({"BRIDGE_" + name.upper(): "" for name in Settings.model_fields}) == []
    assert unknown_variables({}) == []
