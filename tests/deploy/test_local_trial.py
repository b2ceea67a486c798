"""deploy/docker-compose.yaml and deploy/bridge.env.example: they parse and say what the daemon understands."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge import cli
from bridge.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / "deploy" / "bridge.env.example"

_INTERPOLATION = re.compile(r"\$\{(\w+):-([^}]*)\}")


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # merge keys (<<) included
    return doc


def _interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with nothing set in the environment."""
    return _INTERPOLATION.sub(lambda m: m.group(2), value)


def _settings_from_env(env: dict[str, str]) -> Settings:
    fields = {"BRIDGE_" + name.upper(): name for name in Settings.model_fields}
    unknown = set(env) - set(fields)
    assert not unknown, f"not settings of the daemon: {sorted(unknown)}"
    return Settings.model_validate({fields[k]: v for k, v in env.items()})


def test_compose_runs_rabbitmq_the_simulator_and_the_bridge() -> None:
    services = _compose()["services"]
    assert set(services) == {"rabbitmq", "simulator", "bridge"}

    rabbit = services["rabbitmq"]
    assert re.fullmatch(r"rabbitmq:\d+\.\d+\.\d+-management", rabbit["image"]), "pinned, with the management UI"
    assert "15672:15672" in rabbit["ports"]
    assert rabbit["healthcheck"]["test"][0] == "CMD"

    simulator = services["simulator"]
    assert simulator["command"] == ["simulate", "--host", "0.0.0.0", "--port", "9000"]
    assert simulator["healthcheck"] == {"disable": True}, "the image's health check is the bridge's"

    bridge = services["bridge"]
    assert bridge["command"] == ["run"]
    assert bridge["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    assert bridge["environment"]["BRIDGE_GENESYS_BASE_URL"] == "http://simulator:9000"
    # The same hardening as the chart: read-only root, /tmp writable, no capabilities.
    for service in (simulator, bridge):
        assert service["build"]["context"] == ".."
        assert service["read_only"] is True
        assert service["tmpfs"] == ["/tmp"]
        assert service["cap_drop"] == ["ALL"]


def test_compose_bridge_environment_is_valid_settings() -> None:
    bridge = _compose()["services"]["bridge"]
    env = {k: _interpolate(str(v)) for k, v in bridge["environment"].items()}
    settings = _settings_from_env(env)
    assert str(settings.genesys_base_url).rstrip("/") == "http://simulator:9000"
    assert settings.amqp_url.get_secret_value().startswith("amqp://")
    assert settings.state_key is not None


def test_compose_stop_grace_outlasts_the_drain() -> None:
    bridge = _compose()["services"]["bridge"]
    grace = int(bridge["stop_grace_period"].removesuffix("s"))
    drain = float(bridge["environment"].get("BRIDGE_DRAIN_TIMEOUT_S", Settings().drain_timeout_s))
    assert grace > drain


def test_env_example_is_valid_settings() -> None:
    env: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=value: {line!r}"
        assert value, f"{key} is set empty; comment it out instead (empty is not unset)"
        env[key] = value
    settings = _settings_from_env(env)
    assert settings.http_port == 8080


def _commands() -> list[tuple[str, list[str]]]:
    """``(service, command)`` for every service of the compose file that runs the bridge's image."""
    services = _compose()["services"]
    return [(name, s["command"]) for name, s in sorted(services.items()) if s.get("image") == "genesys-bridge:local"]


COMMANDS = _commands()


def test_compose_runs_the_bridge_image_twice() -> None:
    assert [name for name, _ in COMMANDS] == ["bridge", "simulator"]


@pytest.mark.parametrize(("service", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_cli_accepts_what_the_compose_file_runs(
    service: str, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Each command the compose file gives the image is a subcommand of the CLI with the flags it passes.

    A missing subcommand or flag fails here: the trial would otherwise die at ``docker compose up``.
    """
    subcommand, *rest = command
    with pytest.raises(SystemExit) as exited:
        cli.main([subcommand, "--help"])
    out, err = capsys.readouterr()
    assert exited.value.code == 0, f"{service}: `genesys-bridge {subcommand}` is not a CLI subcommand: {err}"
    flags = [word.split("=", 1)[0] for word in rest if word.startswith("--")]
    missing = [flag for flag in flags if flag not in out]
    assert not missing, f"{service}: `genesys-bridge {subcommand}` takes no {missing}"


def _compose_commands(document: Path) -> list[list[str]]:
    """Every ``docker compose`` command in the ``sh`` blocks of ``document``, split into words."""
    blocks = re.findall(r"```sh\n(.*?)```", document.read_text(), flags=re.DOTALL)
    return [line.split() for block in blocks for line in block.splitlines() if line.startswith("docker compose")]


@pytest.mark.parametrize("document", ["README.md", "docs/deploy.md"])
def test_the_documented_compose_commands_name_this_compose_file(document: str) -> None:
    """What a reader pastes: the file it names is the one tested above, and what it builds exists."""
    commands = _compose_commands(ROOT / document)
    assert commands, f"{document} shows no docker compose command"
    for words in commands:
        assert words[words.index("-f") + 1] == "deploy/docker-compose.yaml", words
        assert words[words.index("-f") + 2] == "up", words
    for service in _compose()["services"].values():
        if "build" in service:
            context = (COMPOSE.parent / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).is_file()
