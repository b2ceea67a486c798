"""The Dockerfile's structure (no Docker engine runs here), its hashed dependency lock, and the image's install
steps in a clean venv."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
LOCK = "requirements.lock"
#: The contract package: a distribution of this repository (client/), a dependency of the daemon.
OWN_CLIENT = "genesys-bridge-client"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order: comments dropped, backslash continuations joined (the default escape)."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continuation are dropped by Docker too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "dangling line continuation"
    return instructions


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)  # exec form is a JSON array; shell form is not JSON
    assert isinstance(value, list)
    assert all(isinstance(item, str) for item in value)
    return value


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def _all(instructions: list[Instruction], keyword: str) -> list[Instruction]:
    return [i for i in instructions if i.keyword == keyword]


def _final_stage(instructions: list[Instruction]) -> list[Instruction]:
    starts = [n for n, i in enumerate(instructions) if i.keyword == "FROM"]
    return instructions[starts[-1] :]


def test_multi_stage_on_pinned_python_311_slim(instructions: list[Instruction]) -> None:
    froms = _all(instructions, "FROM")
    assert len(froms) >= 2, "multi-stage: build and runtime"
    stage_names = set()
    for instruction in froms:
        image, _, alias = instruction.args.partition(" AS ")
        if image in stage_names:
            continue  # FROM an earlier stage
        match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-(\w+)@sha256:[0-9a-f]{64}", image)
        assert match, f"base not pinned to an exact version and digest: {image}"
        assert match.group(1, 2) == ("3", "11")
        assert ":latest" not in image
        stage_names.add(alias.strip())
    assert "--platform" not in " ".join(i.args for i in froms)


def _build_stages(instructions: list[Instruction]) -> list[Instruction]:
    """Every stage before the runtime: where /opt/venv is built."""
    starts = [n for n, i in enumerate(instructions) if i.keyword == "FROM"]
    return instructions[: starts[-1]]


def _runs_and_copies(instructions: list[Instruction]) -> list[Instruction]:
    return [i for i in _build_stages(instructions) if i.keyword in {"COPY", "RUN"}]


def test_dependencies_install_before_the_source_is_copied(instructions: list[Instruction]) -> None:
    order = _runs_and_copies(instructions)
    lock_run = next(n for n, i in enumerate(order) if i.keyword == "RUN" and LOCK in i.args)
    source = next(n for n, i in enumerate(order) if i.keyword == "COPY" and i.args.split()[0] == "bridge")
    assert lock_run < source
    # The dependency layer depends on the lock only, so a source edit does not rebuild it.
    copied_before = [i.args.split()[:-1] for i in order[:lock_run] if i.keyword == "COPY"]
    assert copied_before == [[LOCK]], copied_before


def test_dependencies_install_from_the_hashed_lock_and_the_bridge_without_any(
    instructions: list[Instruction],
) -> None:
    """Every pip install either takes the lock with --require-hashes or installs our own wheel with --no-deps."""
    installs = [
        command.strip()
        for i in _all(instructions, "RUN")
        for command in i.args.split("&&")
        if re.search(r"\bpip\b.*\binstall\b", command)
    ]
    assert installs
    from_lock = [c for c in installs if "--require-hashes" in c]
    assert len(from_lock) == 1, installs
    assert re.search(rf"(--requirement|-r)[ =]{re.escape(LOCK)}\b", from_lock[0]), from_lock[0]
    assert "--only-binary :all:" in from_lock[0], "wheels only: nothing compiled at build time"
    own = [c for c in installs if c not in from_lock]
    assert own, "the bridge's own wheel is installed"
    for command in own:
        assert "--no-deps" in command, f"installs dependencies past the lock: {command}"
        assert "genesys_bridge-" in command, command
    wheels = [c.strip() for i in _all(instructions, "RUN") for c in i.args.split("&&") if "pip wheel" in c]
    assert wheels
    assert all("--no-deps" in c for c in wheels), wheels


def _lock() -> dict[str, tuple[str, list[str]]]:
    """``name -> (version, hashes)`` from requirements.lock (pip's format: backslash continuations)."""
    text = (ROOT / LOCK).read_text().replace("\\\n", " ")
    entries: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        assert match, f"not pinned with ==: {line[:80]}"
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
        entries[canonicalize_name(match[1])] = (match[2], hashes)
    return entries


def _project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        project: dict[str, object] = tomllib.load(fh)["project"]
    return project


def test_the_lock_pins_every_runtime_dependency_with_hashes() -> None:
    lock = _lock()
    dependencies = [Requirement(r) for r in _project()["dependencies"]]  # type: ignore[attr-defined]
    assert dependencies
    for requirement in dependencies:
        name = canonicalize_name(requirement.name)
        if name == OWN_CLIENT:
            continue  # built from client/ in this repository, installed --no-deps
        assert name in lock, f"{LOCK} lacks {name}: run `make lock`"
        version, _ = lock[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{LOCK} pins {name}=={version}, outside pyproject's {requirement.specifier}: run `make lock`"
        )
    unhashed = sorted(name for name, (_, hashes) in lock.items() if not hashes)
    assert not unhashed, f"entries without hashes: {unhashed}"
    assert "genesys-bridge" not in lock, "the bridge itself is installed from its wheel, not from the lock"
    assert "genesys-bridge-client" not in lock, "so is its contract package, built from client/"


def test_the_lock_holds_runtime_dependencies_only() -> None:
    lock = _lock()
    extras: dict[str, list[str]] = _project()["optional-dependencies"]  # type: ignore[assignment]
    tools = {canonicalize_name(Requirement(r).name) for reqs in extras.values() for r in reqs}
    runtime = {canonicalize_name(Requirement(r).name) for r in _project()["dependencies"]}  # type: ignore[attr-defined]
    leaked = sorted((tools - runtime) & set(lock))
    assert not leaked, f"test/dev/bench tools in the image's lock: {leaked}"
    assert (ROOT / LOCK).read_text().startswith("# This file was autogenerated by uv"), "written by `make lock`"


def test_runtime_runs_as_a_fixed_non_root_uid(instructions: list[Instruction]) -> None:
    users = _all(_final_stage(instructions), "USER")
    assert users, "the runtime stage must set USER"
    uid, _, gid = users[-1].args.partition(":")
    assert uid.isdigit(), "numeric UID, so runAsNonRoot can verify it"
    assert int(uid) == 10001  # the chart's runAsUser
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_exec_form_entrypoint_and_stop_signal(instructions: list[Instruction]) -> None:
    final = _final_stage(instructions)
    (entrypoint,) = _all(final, "ENTRYPOINT")
    (cmd,) = _all(final, "CMD")
    assert _exec_form(entrypoint.args) == ["genesys-bridge"]
    assert _exec_form(cmd.args) == ["run"]
    assert [i.args for i in _all(final, "STOPSIGNAL")] == ["SIGTERM"]
    for healthcheck in _all(final, "HEALTHCHECK"):
        assert "CMD [" in healthcheck.args, "exec-form health check: no shell in the image's PATH is assumed"


def test_runtime_writes_only_under_tmp(instructions: list[Instruction]) -> None:
    env = " ".join(i.args for i in _all(_final_stage(instructions), "ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "HOME=/tmp" in env
    assert "TMPDIR=/tmp" in env
    workdirs = _all(_final_stage(instructions), "WORKDIR")
    assert workdirs[-1].args == "/tmp"
    assert "8080" in [i.args for i in _all(_final_stage(instructions), "EXPOSE")]


def test_dockerignore_keeps_the_context_small_and_secret_free() -> None:
    lines = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*", "allow-list: everything is ignored unless named"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == {"pyproject.toml", LOCK, "README.md", "bridge", "client"}
    # Everything the Dockerfile copies from the context is allowed in.
    copied = {
        token.rstrip("/")
        for i in _all(parse_dockerfile(DOCKERFILE.read_text()), "COPY")
        if "--from=" not in i.args
        for token in i.args.split()[:-1]
    }
    assert copied <= allowed


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_image_install_steps_work_in_a_clean_venv(tmp_path: Path) -> None:
    """What the Dockerfile does, minus Docker: the hashed lock into a fresh venv, then our wheel without
    dependencies; the CLI must then run from that venv alone."""
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dist), str(ROOT / "client"), str(ROOT)],
        check=True,
        env=env,
        capture_output=True,
    )
    (wheel,) = dist.glob("genesys_bridge-*.whl")
    (client_wheel,) = dist.glob("genesys_bridge_client-*.whl")

    # As in the image: a venv without pip, filled by the outer pip (`pip --python`).
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, clear=True).create(target)
    python = target / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    for args in (
        ["--require-hashes", "--only-binary", ":all:", "--requirement", str(ROOT / LOCK)],
        ["--no-deps", str(client_wheel), str(wheel)],
    ):
        done = subprocess.run([*pip, *args], check=False, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    check = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "check"], env=env, capture_output=True, text=True
    )
    assert check.returncode == 0, f"the lock misses a dependency of the wheel: {check.stdout}"

    # Run from an unrelated directory, so the checkout's `bridge/` cannot shadow the installed one.
    result = subprocess.run(
        [str(target / "bin" / "genesys-bridge"), "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "genesys-bridge" in result.stdout
    located = subprocess.run(
        [str(python), "-c", "import bridge, sys; sys.stdout.write(bridge.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert located.stdout.startswith(str(target)), "the CLI must run from the installed wheel"
