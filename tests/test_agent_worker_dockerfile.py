"""The agent worker image beyond what tests/test_dockerfiles.py checks for every image:
two stages, non-root runtime without build tools, and requirement pins."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from tests.test_dockerfiles import instructions as dockerfile_instructions

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "images" / "agent-worker"
DOCKERFILE = IMAGE / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    return dockerfile_instructions(DOCKERFILE)


def test_base_images_pinned_to_a_version_tag() -> None:
    bases = [args.split()[0] for keyword, args in instructions() if keyword == "FROM"]
    assert len(bases) == 2, "multi-stage: a build stage and a runtime stage"
    for base in bases:
        assert "@" not in base, "no digests: a tag the registry can be checked against"
        name, _, tag = base.partition(":")
        assert name == "python" and re.fullmatch(r"\d+\.\d+\.\d+-slim-\w+", tag), base


def test_runtime_stage_is_non_root_and_without_build_tools() -> None:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    runtime = steps[last_from:]
    users = [args for keyword, args in runtime if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    runtime_text = " ".join(args for _, args in runtime)
    assert "pip uninstall" in runtime_text
    for tool in ("apt-get install", "gcc", "build-essential", "pip install"):
        assert tool not in runtime_text
    assert any(k == "COPY" and "--from=build" in a for k, a in runtime)
    env = " ".join(args for keyword, args in runtime if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # read-only root filesystem


def test_requirements_pin_the_serve_versions() -> None:
    pins = dict(
        line.split("==")
        for line in (IMAGE / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert all(re.fullmatch(r"[\w.]+", v) for v in pins.values())
    serve = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["serve"]
    wanted = (
        "starlette",
        "uvicorn",
        "httpx",
        "redis",
        "aiokafka",
        "qdrant-client",
        "prometheus-client",
        "opentelemetry-api",
        "opentelemetry-sdk",
        "opentelemetry-exporter-otlp-proto-grpc",
    )
    for requirement in serve:
        name, _, version = requirement.partition("==")
        if name in wanted:
            assert pins.get(name) == version, name
    assert set(wanted) <= set(pins)
