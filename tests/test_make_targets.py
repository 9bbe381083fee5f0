"""What the Makefile's targets run, read from `make -n` (the commands make would execute)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def dry_run(target: str, *options: str) -> str:
    # Under `make test-fast` this runs inside make: its flags and level must not leak in.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", *options, target],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_generate_never_touches_the_golden_plans() -> None:
    commands = dry_run("generate")
    assert "swarmstack generate" in commands
    assert "--update-golden" not in commands and "tests/golden" not in commands


def test_golden_rewrites_the_snapshot_and_shows_the_diff() -> None:
    commands = dry_run("golden").splitlines()
    update = next(i for i, c in enumerate(commands) if "tests/test_golden.py --update-golden" in c)
    shown = commands[update + 1 :]
    assert any("git status --short" in c and "tests/golden" in c for c in shown)  # new files
    assert any(c.endswith("git --no-pager diff --stat") for c in shown)
    assert any(c.endswith("git --no-pager diff -- tests/golden") for c in shown)


def test_fast_installs_python_packages_only_and_leaves_the_services_out() -> None:
    # As on a fresh machine: -W makes every install step out of date, so all are listed.
    commands = dry_run("test-fast", "-W", "pyproject.toml")
    assert "pip install --quiet -e '.[dev,serve]'" in commands  # what its tests import
    assert "apt-get" not in commands and "redis-server" not in commands
    assert ".venv-vllm" not in commands and "torch" not in commands
    assert commands.splitlines()[-1] == '.venv/bin/pytest -m "not e2e"'


def test_system_deps_install_redis_and_promtool_from_debian() -> None:
    commands = dry_run("system-deps")
    assert "command -v redis-server" in commands and "command -v promtool" in commands
    install = next(line for line in commands.splitlines() if "apt-get install" in line)
    assert "redis-server" in install and "prometheus" in install.split("redis-server", 1)[1]
