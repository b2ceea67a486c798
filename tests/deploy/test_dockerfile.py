"""The Dockerfile's structure (no Docker engine runs here), and the image's install steps in a clean venv."""

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

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


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


def test_dependencies_install_before_the_source_is_copied(instructions: list[Instruction]) -> None:
    copies = [i.args for i in _all(instructions, "COPY")]
    pyproject = next(n for n, c in enumerate(copies) if "pyproject.toml" in c)
    source = next(n for n, c in enumerate(copies) if c.split()[0] == "bridge")
    assert pyproject < source
    order = [i for i in instructions if i.keyword in {"COPY", "RUN"}]
    first_pip = next(n for n, i in enumerate(order) if i.keyword == "RUN" and "pip wheel" in i.args)
    assert "pyproject.toml" in order[first_pip - 1].args, "the dependency layer depends on pyproject.toml only"


def test_dependency_list_snippet_reads_pyproject(instructions: list[Instruction]) -> None:
    """The image's first layer installs exactly pyproject.toml's dependencies: run its snippet here."""
    run = next(i.args for i in _all(instructions, "RUN") if "tomllib" in i.args)
    snippet = re.search(r'python -c "(.+?)"\s*>', run)
    assert snippet, run
    out = subprocess.run(
        [sys.executable, "-c", snippet.group(1)], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    with (ROOT / "pyproject.toml").open("rb") as fh:
        expected = tomllib.load(fh)["project"]["dependencies"]
    assert out.split("\n")[: len(expected)] == expected


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
    assert allowed == {"pyproject.toml", "README.md", "bridge"}
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
    """What the Dockerfile does, minus Docker: build the wheel, install it in a fresh venv, run the CLI."""
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dist), str(ROOT)],
        check=True,
        env=env,
        capture_output=True,
    )
    (wheel,) = dist.glob("genesys_bridge-*.whl")

    # As in the image: a venv without pip, filled by the outer pip (`pip --python`).
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, clear=True).create(target)
    python = target / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", str(wheel)],
        check=True,
        env=env,
        capture_output=True,
    )

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
