"""The local gateway's pieces that need no service: the LiteLLM pin, the Makefile's venv,
and a run's master key kept out of reprs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from components.gateway.spec import LITELLM_VERSION
from loadtests.services import GatewayService

ROOT = Path(__file__).resolve().parent.parent


def test_the_local_proxy_is_the_release_the_stack_deploys() -> None:
    text = (ROOT / "loadtests" / "requirements-litellm.txt").read_text()
    pins = re.findall(r"^litellm==(\S+)$", text, flags=re.MULTILINE)
    assert pins == [LITELLM_VERSION]


def test_setup_serve_builds_the_litellm_venv() -> None:
    commands = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-n",
            "-W",
            "loadtests/requirements-litellm.txt",
            "setup-serve",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "-m venv .venv-litellm" in commands
    assert "-r loadtests/requirements-litellm.txt" in commands


def test_the_master_key_is_not_in_the_services_repr(tmp_path: Path) -> None:
    process = subprocess.Popen(["true"])
    process.wait()
    service = GatewayService(
        "litellm", "http://127.0.0.1:1", 1, process, tmp_path / "log", master_key="sk-secret"
    )
    assert "sk-secret" not in repr(service)


def test_affinity_places_every_call_of_a_session_on_one_replica() -> None:
    """The prefix-affinity benchmark's placement: a session's calls always land on the
    replica its id hashes to, and sessions spread over both replicas."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import prefix_affinity  # noqa: PLC0415  # pyright: ignore[reportMissingImports]

    placed = {sid: prefix_affinity.replica_for(sid, 2) for sid in (f"s-{i}" for i in range(64))}
    assert all(prefix_affinity.replica_for(sid, 2) == r for sid, r in placed.items())
    assert set(placed.values()) == {0, 1}
    assert 16 <= sum(placed.values()) <= 48  # neither replica takes (nearly) all of them
