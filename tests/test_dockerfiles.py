"""The images' Dockerfiles: hadolint clean, pinned bases, non-root, and the worker's CMD.

Model servers run the stock vLLM image (no Dockerfile here): what it needs from the pod
is tested in tests/test_model_serving.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from components.agents.spec import WORKER_COMMAND
from loadtests.services import WORKER_COMMAND as LOCAL_WORKER_COMMAND

ROOT = Path(__file__).resolve().parent.parent
WORKER_DOCKERFILE = ROOT / "images" / "agent-worker" / "Dockerfile"
DOCKERFILES = sorted({WORKER_DOCKERFILE, *ROOT.glob("images/*/Dockerfile")})


def hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    if found.exists():
        return str(found)
    path = shutil.which("hadolint")
    if path is None:
        pytest.fail("hadolint not found: install the serve extras (`make test-fast` does)")
    return path


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_clean(dockerfile: Path) -> None:
    assert dockerfile.is_file(), f"{dockerfile} is missing"
    result = subprocess.run(
        [hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_base_images_pinned_to_a_version_tag_and_user_is_not_root(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    stages: set[str] = set()
    for keyword, args in steps:
        if keyword == "FROM":
            parts = args.split()
            image = parts[0]
            if len(parts) >= 3 and parts[1].upper() == "AS":
                stages.add(parts[2])
            if image in stages:
                continue  # an earlier build stage
            if "@" in image:  # a digest must be a real one; only tags are used here
                pytest.fail(f"{dockerfile}: digest-pinned base {image}; pin a version tag")
            name, _, tag = image.rpartition(":")
            assert name and tag and tag != "latest", f"{dockerfile}: unpinned base {image}"
            assert re.search(r"\d", tag), f"{dockerfile}: base tag {tag} is not a version"
    users = [args for keyword, args in steps if keyword == "USER"]
    assert users, f"{dockerfile}: no USER instruction (runs as root)"
    final = users[-1].split(":")[0]
    assert final not in ("root", "0"), f"{dockerfile}: final USER is root"


def test_worker_image_runs_the_command_the_pods_and_the_local_target_run() -> None:
    assert WORKER_DOCKERFILE.is_file(), "images/agent-worker/Dockerfile is missing"
    steps = instructions(WORKER_DOCKERFILE)
    entrypoints = [json.loads(args) for keyword, args in steps if keyword == "ENTRYPOINT"]
    cmds = [json.loads(args) for keyword, args in steps if keyword == "CMD"]
    argv: list[str] = [*(entrypoints[-1] if entrypoints else []), *(cmds[-1] if cmds else [])]
    assert argv, "the worker image has no CMD/ENTRYPOINT"
    assert argv == list(WORKER_COMMAND), (argv, WORKER_COMMAND)  # the Deployment's command
    assert LOCAL_WORKER_COMMAND[1:] == argv[1:], (argv, LOCAL_WORKER_COMMAND)
