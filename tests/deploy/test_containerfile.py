"""deploy/Containerfile and deploy/build-image.sh, checked without a container runtime.

No image can be built on CI (no daemon, no registry for the base image), so what can be checked
offline is: the Containerfile's stages (parsed by dockerfile-parse, the parser OpenShift's build
tools use), that it copies every package the project ships and pins the same torch as
deploy/bootstrap.sh, and that build-image.sh drives a runtime correctly (a stand-in `podman`
/ `docker` on PATH records the commands it is given).
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser  # type: ignore[import-untyped]

ROOT = Path(__file__).parents[2]
CONTAINERFILE = ROOT / "deploy" / "Containerfile"


def _stages() -> list[list[dict[str, Any]]]:
    with CONTAINERFILE.open("rb") as handle:
        parsed = DockerfileParser(fileobj=handle)
        structure: list[dict[str, Any]] = parsed.structure
    stages: list[list[dict[str, Any]]] = []
    for instruction in structure:
        if instruction["instruction"] == "FROM":
            stages.append([])
        if stages and instruction["instruction"] != "COMMENT":
            stages[-1].append(instruction)
    return stages


def _values(stage: list[dict[str, Any]], name: str) -> list[str]:
    return [str(i["value"]) for i in stage if i["instruction"] == name]


def test_two_stages_and_a_final_stage_without_build_tools() -> None:
    builder, final = _stages()
    assert _values(builder, "FROM")[0].endswith(" AS builder")
    for command in _values(final, "RUN"):
        assert not re.search(r"\b(apt-get|apk|pip|gcc|make|cc)\b", command), command
    copies = _values(final, "COPY")
    assert copies and all(c.startswith("--from=builder /opt/") for c in copies), copies


def test_final_stage_runs_as_a_numeric_non_root_user_with_a_healthcheck() -> None:
    final = _stages()[1]
    (user,) = _values(final, "USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric: runAsNonRoot can verify it
    (health,) = _values(final, "HEALTHCHECK")
    assert "http://127.0.0.1:8000/healthz" in health
    assert _values(final, "ENTRYPOINT") == ['["coe", "serve"]']
    assert "8000" in _values(final, "EXPOSE")


def test_builder_copies_every_shipped_package_and_pins_bootstraps_torch() -> None:
    builder = _stages()[0]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in found}
    copied = {c.split()[0] for c in _values(builder, "COPY")}
    assert packages <= copied, packages - copied
    bootstrap = (ROOT / "deploy" / "bootstrap.sh").read_text()
    (pinned,) = set(re.findall(r"torch==(\d[\w.]*)", bootstrap))
    assert f"TORCH_VERSION={pinned}" in _values(builder, "ARG")
    install = next(r for r in _values(builder, "RUN") if "-c /tmp/constraints.txt" in r)
    extras = set(re.findall(r'"\.\[([\w,]+)\]"', install)[0].split(","))
    assert extras <= set(pyproject["project"]["optional-dependencies"])


@pytest.fixture
def fake_runtime(tmp_path: Path) -> tuple[Path, Path]:
    """A `docker` on PATH that records its arguments and succeeds."""
    log = tmp_path / "calls.txt"
    runtime = tmp_path / "bin" / "docker"
    runtime.parent.mkdir()
    runtime.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    runtime.chmod(0o755)
    return runtime.parent, log


def _build(path: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), **env}
    return subprocess.run(
        ["bash", str(ROOT / "deploy" / "build-image.sh"), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )


def test_build_script_drives_the_runtime(fake_runtime: tuple[Path, Path]) -> None:
    bin_dir, log = fake_runtime
    result = _build(f"{bin_dir}:/usr/bin:/bin", "coe:test", PUSH="1", PLATFORM="linux/amd64")
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "info"
    build = next(c for c in calls if c.startswith("build "))
    assert "-f deploy/Containerfile -t coe:test" in build
    assert "--build-arg PYTHON_IMAGE=docker.io/library/python:3.11-slim" in build
    assert "--platform linux/amd64" in build
    assert calls[-1] == "push coe:test"


def test_build_script_says_why_it_cannot_build(tmp_path: Path) -> None:
    missing = _build("/usr/bin:/bin", CONTAINER_RUNTIME="no-such-runtime")
    assert missing.returncode == 3
    assert "no container runtime found" in missing.stderr
